#!/usr/bin/env python3
"""Make the tokenizer fixtures in tests/fixtures/tok/: small BPE tokenizers
trained with HF tokenizers and saved as real tokenizer.json files, the ids and
texts HF gives for a corpus of test strings, and chat-template renders from
transformers' apply_chat_template.  Needs tokenizers (0.23) and transformers;
see ../shared/GPU.md.

  make_tok_fixtures.py --synth-corpus FILE
      write the corpus that moed's C trainer learns synth512 from (no HF
      needed); then tok_train_bytelevel(corpus, 512) -> synth512/tokenizer.json
  make_tok_fixtures.py OUTDIR [SYNTH_DIR]
      train, save and encode everything under OUTDIR; SYNTH_DIR holds the
      C-trained tokenizer.json, which HF must load and encode as moed does.

Fixtures (each a directory with tokenizer.json, reference.json and maybe
tokenizer_config.json):
  bl_qwen    byte-level BPE like Qwen2: NFC, Split(Qwen regex) + ByteLevel
  bl_neox    byte-level BPE like GPT-NeoX/OLMoE: NFC, ByteLevel(use_regex)
  sp_llama   SentencePiece-style BPE, byte fallback, Metaspace(first) like
             newer Llama/Mistral files; TemplateProcessing adds <s>
  sp_legacy  the same model with Prepend+Replace normalizers (older files)
  synth512   trained by moed (C), checked here against HF

Strings that are not valid UTF-8 reach HF as bytes.decode('utf-8',
'replace'), which is what moed does with them before encoding.  OUTDIR/debug/
(not committed) shows how HF normalized and cut each string.

Made with tokenizers 0.23.2 and transformers 5.17.0 (GPU host, one run):
  python3 tools/make_tok_fixtures.py OUT tests/fixtures/tok/synth512
then OUT/* (less debug/) copied to tests/fixtures/tok/.
"""
import json
import os
import random
import sys
import traceback

QWEN_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
           r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# Chat templates as they appear in tokenizer_config.json files; moed's
# tokenizer/tok_chat.c recognises exactly these strings.
CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'"
          " + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
CHATML_QWEN = ("{% for message in messages %}{% if loop.first and messages[0]['role']"
               " != 'system' %}{{ '<|im_start|>system\\nYou are a helpful assistant."
               "<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n'"
               " + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
               "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
INST = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user')"
        " != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must"
        " alternate user/assistant/user/assistant/...') }}{% endif %}"
        "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
        "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
        "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
        "{% endif %}{% endfor %}")

WORDS = {
    "en": "the of and to in is was for on that with as by at from it an be this are "
          "have which or one had not but what all were when we there can more if no "
          "time about out up them some could into other than then now only its over "
          "model expert cache token layer router weights memory tensor batch server "
          "request stream prompt daemon predictor latency throughput GPU CPU".split(),
    "fr": "le la les des une pour avec être été très déjà où français café naïve "
          "élève garçon œuvre Noël crème brûlée à ça".split(),
    "de": "der die das und ist nicht mit für über Straße Größe Mädchen schön "
          "Übung Äpfel Öl heißen".split(),
    "es": "el la los que por para niño año señor mañana corazón información "
          "¿qué ¡hola".split(),
    "ru": "и в не на что быть он с как это по но они мы модель память кэш".split(),
    "el": "και το της είναι για με που στην λόγος αλφάβητο".split(),
    "zh": list("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则任取据处理府研质"),
    "ja": list("日本語のテキストとひらがなカタカナ漢字東京大阪こんにちはありがとう"),
    "ko": "안녕하세요 감사합니다 한국어 모델 토큰 서버 데이터".split(),
    "ar": "مرحبا بالعالم النموذج الذاكرة".split(),
    "hi": "नमस्ते दुनिया मॉडल स्मृति".split(),
    "emoji": "😀 😃 🚀 🔥 ✨ 👍 🎉 ❤️ 🇫🇷 🇯🇵 👨‍👩‍👧 👍🏽 🤖 ☕".split(),
}

CODE = [
    "def f(x):\n    return x * 2\n",
    "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}\n",
    "if __name__ == '__main__':\n    main()\n",
    "static int add(int a, int b) { return a + b; }\n",
    "    if (rc < 0)\n        goto fail;\n",
    "SELECT id, name FROM users WHERE age >= 21;\n",
    "const x = {a: 1, b: [2, 3]};  // comment\n",
    "#include <stdio.h>\n\nint main(void)\n{\n\tprintf(\"hi\\n\");\n}\n",
    "  \t  mixed = [1,2,3]\r\n\tpass\n",
    "fn main() { println!(\"{}\", 42); }\n",
    "$ ls -la /tmp && echo \"done\" | tee log.txt\n",
    "{\"key\": \"value\", \"n\": 3.14159, \"ok\": true}\n",
]


def training_lines(seed=7, n=4000):
    """A varied corpus: sentences in many scripts, numbers, code, emoji."""
    rnd = random.Random(seed)
    langs = list(WORDS)
    out = []
    for i in range(n):
        kind = rnd.random()
        if kind < 0.15:
            out.append(rnd.choice(CODE))
            continue
        lang = rnd.choice(langs)
        words = WORDS[lang]
        joiner = "" if lang in ("zh", "ja") else " "
        k = rnd.randint(3, 14)
        s = joiner.join(rnd.choice(words) for _ in range(k))
        if rnd.random() < 0.3:
            s += " " + str(rnd.randint(0, 99999))
        if rnd.random() < 0.2:
            s += " " + rnd.choice(WORDS["emoji"])
        if rnd.random() < 0.5:
            s = s[:1].upper() + s[1:] + rnd.choice([".", "!", "?", ",", ":", ";"])
        out.append(s + "\n")
    return out


def test_strings():
    """At least 200 inputs, as bytes (some are not valid UTF-8)."""
    t = [
        "", " ", "  ", "\n", "\n\n\n", "\t", " \n \n", "a", "Hello world",
        "Hello, world! How are you today?", "  leading spaces", "trailing spaces   ",
        "multiple   spaces   between", "tabs\tand\tnewlines\nmixed \t\n end",
        "line one\nline two\r\nline three\rline four", "don't can't won't I'm we've they'll he'd",
        "DON'T I'LL WE'VE", "It's 3.14159 and 1,000,000 and 2024-01-31", "1234567890",
        "x=1+2*3/4-5", "email@example.com http://example.org/path?q=1&r=2#frag",
        "café naïve Ångström crème brûlée", "cafe\u0301 A\u030angstrom", "e\u0301\u0301",
        "Straße größer Übung", "¿Qué tal? ¡Muy bien!", "Привет, мир! Как дела?",
        "Γειά σου Κόσμε", "你好，世界！今天天气很好。", "日本語のテキストです。カタカナもあります。",
        "안녕하세요 세계", "\u1100\u1161\u11a8 jamo", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया",
        "สวัสดีชาวโลก", "Tiếng Việt có dấu", "😀", "😀😃😄", "🚀 launch 🔥🔥",
        "family: 👨‍👩‍👧‍👦 flags: 🇫🇷🇯🇵 skin: 👍🏽", "❤️ vs ❤", "emoji🤖inside", "☕️ coffee",
        "\u00a0nbsp\u00a0here", "ideographic\u3000space", "zero\u200bwidth\u200djoiner",
        "\ufeffBOM at start", "mongolian\u180evowel sep", "nel\u0085char", "line\u2028sep\u2029para",
        "control \x00 nul \x07 bell \x1b esc", "\x7f del", "math: ∑ ∫ √ ∞ ≠ ≤ ≥ π",
        "arrows → ← ↑ ↓ ⇒", "quotes “smart” ‘single’ «guillemets»", "dash – em — ellipsis …",
        "▁already▁has▁metaspace", "▁", "▁▁ leading", "<0x41> looks like a byte token",
        "def f(x):\n    return x * 2\n", "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}\n",
        "    four spaces\n        eight spaces\n\t\ttwo tabs\n", "  \t  mixed = [1,2,3]\r\n\tpass\n",
        "a  b   c    d     e", "a\n\nb\n\n\nc", "word\n  \n  word", "end with newline\n",
        "   ", "\n \n", " \t \t ", "!!!???...", "(((nested)))", "snake_case camelCase PascalCase",
        "<|endoftext|>", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
        "before<|endoftext|>after", "<|endoftext|><|endoftext|>", " <|endoftext|> spaced ",
        "<|im_start|", "<|im_end", "|im_end|>", "<|im_start|><|im_end|>", "<tool_call>{}</tool_call>",
        "<s>", "</s>", "<s>hello</s>", "hello<s>world", " <s> spaced </s> ", "<s><s></s>",
        "<unk>", "a<unk>b", "<<s>>", "[INST] question [/INST] answer</s>",
        "<|padding|>", "x<|padding|>y",
        "a <mask> b", "  <mask>", "<mask>", "x\t<mask>\ty", "[FOO]   next", "[FOO]\n\nz",
        "xyz axyz xyzb xyz.", "xyzxyz", " xyz ", "caf\u00e9 and cafe\u0301 again",
    ]
    b = [s.encode("utf-8") for s in t]
    b += [
        b"\xff", b"\xfe\xff", b"abc\x80def", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80",
        b"\xf0\x9f\x98", b"\xf0\x9f\x98 emoji cut", b"\xe4\xbd", b"tail \xe4\xbd",
        b"\xf4\x90\x80\x80", b"\xf5\x80", b"ok \xc3\x28 bad", b"\xa0\xa1",
        b"mixed \xe4\xbd\xa0\xe5\xa5 and valid \xe5\xa5\xbd", b"\x80\x80\x80",
        b"<|endoftext|>\xff", b"<s>\xfe</s>",
    ]
    # A long one: many pieces in one call, long runs of spaces and letters.
    long = ("The expert cache keeps hot experts resident. " * 20 + " " * 300 +
            "x" * 500 + "\n" * 50 + "数据" * 100 + "🙂" * 30)
    b.append(long.encode("utf-8"))
    # Generated mixtures to pass 200 and shake out the regexes.
    rnd = random.Random(11)
    pool = [w for ws in WORDS.values() for w in ws] + ["\n", "\t", "  ", "   ", "\r\n",
                                                       "123", "4", "'s", "'LL", "<s>",
                                                       "<|endoftext|>", "</s>", ".", ","]
    while len(b) < 260:
        k = rnd.randint(1, 12)
        parts = []
        for _ in range(k):
            parts.append(rnd.choice(pool))
            parts.append(rnd.choice(["", " ", " ", "  ", "\n", "\t", ""]))
        b.append("".join(parts).encode("utf-8"))
    return b


def tok_modules():
    from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models,
                            normalizers, pre_tokenizers, processors, trainers)
    return (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
            pre_tokenizers, processors, trainers)


def make_byte_level(lines, qwen, vocab_size, specials):
    (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
     pre_tokenizers, processors, trainers) = tok_modules()
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    if qwen:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN_RE), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2,
                                  special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer=trainer)
    return tok


def merges_of(model_json):
    out = []
    for m in model_json["merges"]:
        out.append(tuple(m) if isinstance(m, list) else tuple(m.split(" ")))
    return out


def make_sentencepiece(lines, vocab_size):
    """Llama-style: <unk> <s> </s>, <0x00>..<0xFF>, then the trained pieces."""
    (AddedToken, Regex, Tokenizer, decoders, models, normalizers,
     pre_tokenizers, processors, trainers) = tok_modules()
    base = Tokenizer(models.BPE(unk_token="<unk>"))
    base.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always",
                                                  split=True)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - 256, min_frequency=2,
                                  special_tokens=["<unk>", "<s>", "</s>"],
                                  limit_alphabet=120, show_progress=False)
    base.train_from_iterator(lines, trainer=trainer)
    trained = json.loads(base.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for i in range(256):
        vocab["<0x%02X>" % i] = len(vocab)
    for piece, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        if piece not in vocab:
            vocab[piece] = len(vocab)
    merges = merges_of(trained)

    def build(legacy):
        tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>",
                                   byte_fallback=True, fuse_unk=True))
        tok.add_special_tokens([AddedToken(s, special=True, normalized=False)
                                for s in ("<unk>", "<s>", "</s>")])
        if legacy:
            tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"),
                                                   normalizers.Replace(" ", "\u2581")])
        else:
            tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581",
                                                         prepend_scheme="first", split=False)
        try:
            strip = decoders.Strip(content=" ", left=1, right=0)
        except TypeError:
            strip = decoders.Strip(" ", 1, 0)
        tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                         decoders.Fuse(), strip])
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
        return tok
    return build(False), build(True)


def stream_pieces(tok, ids):
    from tokenizers.decoders import DecodeStream
    ds = DecodeStream(skip_special_tokens=False)
    return [ds.step(tok, i) for i in ids]


def reference(tok, strings, with_stream):
    cases = []
    for k, raw in enumerate(strings):
        text = raw.decode("utf-8", "replace")
        ids = tok.encode(text, add_special_tokens=False).ids
        ids_sp = tok.encode(text, add_special_tokens=True).ids
        dec = tok.decode(ids, skip_special_tokens=False)
        dec_skip = tok.decode(ids, skip_special_tokens=True)
        c = {"i": k, "ids": ids}
        if ids_sp != ids:
            c["ids_special"] = ids_sp
        if dec != text:
            c["decoded"] = dec
        if dec_skip != dec:
            c["decoded_skip"] = dec_skip
        if with_stream and k < 80:
            try:
                c["stream"] = stream_pieces(tok, ids)
            except Exception as e:  # older tokenizers: no DecodeStream
                c["stream_error"] = repr(e)
        cases.append(c)
    return cases


def write_cases(path, cases, extra):
    with open(path, "w") as f:
        f.write("{\n")
        for k, v in extra.items():
            f.write("%s: %s,\n" % (json.dumps(k), json.dumps(v)))
        f.write('"cases": [\n')
        f.write(",\n".join(json.dumps(c, ensure_ascii=True) for c in cases))
        f.write("\n]}\n")


def chat_cases():
    u, a, s = "user", "assistant", "system"

    def m(*pairs):
        return [{"role": r, "content": c} for r, c in pairs]
    return [
        (m((u, "Hello!")), True), (m((u, "Hello!")), False),
        (m((s, "You are terse."), (u, "Hi"), (a, "Hello."), (u, "2+2?")), True),
        (m((u, "Hi"), (a, "Hello."), (u, "Bye")), True),
        (m((u, "Line1\nLine2 {{ not jinja }} <|im_end|> [INST] x [/INST]")), True),
        (m((u, "héllo 你好 😀"), (a, "ok")), False),
        ([], True), ([], False),
        (m((u, "a"), (u, "b")), False),
        (m((a, "first")), True),
        (m((s, "sys only")), True),
        (m((u, ""), (a, "")), False),
        (m((u, "q1"), (a, "a1"), (u, "q2"), (a, "a2")), False),
        (m((u, "q1"), (a, "a1"), (u, "q2"), (a, "a2")), True),
        (m((s, "be nice"), (u, "hi")), False),
        (m(("tool", "{\"r\": 1}"), (u, "ok")), True),
    ]


def chat_renderers():
    """Ways to call transformers' apply_chat_template, best first."""
    import transformers
    out = []

    def auto(d, tpl, msgs, agp):
        tk = transformers.AutoTokenizer.from_pretrained(d)
        return tk.apply_chat_template(msgs, tokenize=False, add_generation_prompt=agp)
    out.append(("AutoTokenizer.apply_chat_template", auto))
    for cls in ("PreTrainedTokenizerFast", "TokenizersBackend"):
        if hasattr(transformers, cls):
            def fast(d, tpl, msgs, agp, cls=cls):
                cfg = json.load(open(os.path.join(d, "tokenizer_config.json")))
                tk = getattr(transformers, cls)(
                    tokenizer_file=os.path.join(d, "tokenizer.json"),
                    bos_token=cfg.get("bos_token"), eos_token=cfg.get("eos_token"))
                return tk.apply_chat_template(msgs, chat_template=tpl, tokenize=False,
                                              add_generation_prompt=agp)
            out.append((cls + ".apply_chat_template", fast))

    def jinja(d, tpl, msgs, agp):
        from transformers.utils.chat_template_utils import render_jinja_template
        cfg = json.load(open(os.path.join(d, "tokenizer_config.json")))
        r = render_jinja_template(conversations=[msgs], chat_template=tpl,
                                  add_generation_prompt=agp, bos_token=cfg.get("bos_token"),
                                  eos_token=cfg.get("eos_token"))
        return r[0][0]
    out.append(("render_jinja_template", jinja))
    return out


def chat_reference(outdir, fixtures):
    """fixtures: [(fixture name, template name, template)]."""
    import transformers
    from jinja2.exceptions import TemplateError
    good = []
    for name, fn in chat_renderers():
        try:
            d = os.path.join(outdir, fixtures[0][0])
            r = fn(d, fixtures[0][2], [{"role": "user", "content": "hi"}], True)
            assert isinstance(r, str) and "hi" in r, repr(r)
            good.append((name, fn))
        except Exception:
            print("chat renderer failed:", name, traceback.format_exc(limit=3))
    cases = []
    for fx, tname, tpl in fixtures:
        d = os.path.join(outdir, fx)
        for msgs, agp in chat_cases():
            c = {"fixture": fx, "template": tname, "messages": msgs,
                 "add_generation_prompt": agp}
            for name, fn in good:  # the first that works; template errors count
                try:
                    c["text"] = fn(d, tpl, msgs, agp)
                except TemplateError as e:
                    c["error"] = str(e)
                except Exception as e:
                    print("chat:", name, fx, repr(e))
                    continue
                c["method"] = name
                break
            cases.append(c)
    write_cases(os.path.join(outdir, "chat_reference.json"), cases,
                {"transformers": transformers.__version__})
    print("chat: %d cases, methods %s" % (len(cases), sorted({c.get("method") for c in cases},
                                                             key=str)))


def debug_pretok(outdir, name, tok, strings):
    """Not a fixture: how HF cut each string, to debug moed against."""
    d = os.path.join(outdir, "debug")
    os.makedirs(d, exist_ok=True)
    out = []
    for raw in strings:
        text = raw.decode("utf-8", "replace")
        try:
            norm = tok.normalizer.normalize_str(text) if tok.normalizer else text
            pre = tok.pre_tokenizer.pre_tokenize_str(norm) if tok.pre_tokenizer else [(norm, None)]
            out.append({"norm": norm, "pre": [p[0] for p in pre],
                        "tokens": tok.encode(text, add_special_tokens=False).tokens})
        except Exception as e:
            out.append({"error": repr(e)})
    with open(os.path.join(d, name + ".json"), "w") as f:
        f.write("[\n" + ",\n".join(json.dumps(x) for x in out) + "\n]\n")


def save_fixture(outdir, name, tok, strings, config):
    import tokenizers
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"), pretty=False)
    if config is not None:
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump(config, f, indent=1, ensure_ascii=False)
    # Reload from disk: the reference comes from the file as saved.
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    cases = reference(tok, strings, True)
    write_cases(os.path.join(d, "reference.json"), cases,
                {"tokenizers": tokenizers.__version__, "vocab_size": tok.get_vocab_size()})
    run("debug " + name, lambda: debug_pretok(outdir, name, tok, strings))
    print("%s: vocab %d, %d cases" % (name, tok.get_vocab_size(), len(cases)))


def run(name, fn):
    try:
        fn()
    except Exception:
        print("FAILED", name)
        traceback.print_exc()


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--synth-corpus":
        with open(sys.argv[2], "w") as f:
            f.write("".join(training_lines(seed=3, n=300)))
        return
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    strings = test_strings()
    with open(os.path.join(outdir, "cases.json"), "w") as f:
        f.write('{"hex": [\n' + ",\n".join(json.dumps(s.hex()) for s in strings) + "\n]}\n")
    lines = training_lines()
    chatml_cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None,
                  "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
                  "add_bos_token": False, "chat_template": CHATML_QWEN}
    neox_cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>",
                "eos_token": "<|endoftext|>", "add_bos_token": False, "chat_template": CHATML}
    inst_cfg = {"tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "add_bos_token": True,
                "add_eos_token": False, "chat_template": INST}

    def qwen():
        from tokenizers import AddedToken
        tok = make_byte_level(lines, True, 1000, ["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
        tok.add_tokens([AddedToken("<tool_call>", special=False, normalized=False),
                        AddedToken("</tool_call>", special=False, normalized=False),
                        AddedToken("cafe\u0301", special=False, normalized=True)])
        save_fixture(outdir, "bl_qwen", tok, strings, chatml_cfg)

    def neox():
        from tokenizers import AddedToken
        tok = make_byte_level(lines, False, 800, ["<|endoftext|>", "<|padding|>"])
        tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True, normalized=False)])
        tok.add_tokens([AddedToken("[FOO]", rstrip=True, special=False, normalized=False),
                        AddedToken("xyz", single_word=True, special=False, normalized=False)])
        save_fixture(outdir, "bl_neox", tok, strings, neox_cfg)

    def sp():
        first, legacy = make_sentencepiece(lines, 1000)
        save_fixture(outdir, "sp_llama", first, strings, inst_cfg)
        save_fixture(outdir, "sp_legacy", legacy, strings, None)

    def synth():
        from tokenizers import Tokenizer
        d = sys.argv[2]
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        cases = reference(tok, strings, True)
        os.makedirs(os.path.join(outdir, "synth512"), exist_ok=True)
        write_cases(os.path.join(outdir, "synth512", "reference.json"), cases,
                    {"vocab_size": tok.get_vocab_size()})
        run("debug synth512", lambda: debug_pretok(outdir, "synth512", tok, strings))
        print("synth512: HF loaded it, vocab %d" % tok.get_vocab_size())

    run("bl_qwen", qwen)
    run("bl_neox", neox)
    run("sp", sp)
    if len(sys.argv) == 3:
        run("synth512", synth)
    run("chat", lambda: chat_reference(outdir, [("bl_qwen", "chatml_qwen", CHATML_QWEN),
                                                ("bl_neox", "chatml", CHATML),
                                                ("sp_llama", "inst", INST)]))


if __name__ == "__main__":
    main()
