"""Text in, text out: a synthetic model with a byte-level BPE tokenizer
(moed mkmodel --tokenizer-corpus) behind /v1/completions, /v1/chat/completions,
/v1/tokenize and /v1/detokenize."""
import json
import os
import shutil
import unittest

import moedtest as mt

CORPUS = os.path.join(mt.FIXTURES, "..", "..", "tools", "demo-corpus.txt")
STRINGS = ["Hello world", "Größe und Gewicht", "日本語のテキスト", "emoji 🎉🚀 ok",
           "  spaces\n\nand\tlines  ", "code: if (x) { return y; }"]
CHATML_PROMPT = "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n"


class Text(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = mt.make_model("--skewed", "--tokenizer-corpus", CORPUS, name="textmodel")
        cls.d = mt.Daemon(cls.model, name="text").start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.d.stop()
        if rc != 0:
            raise AssertionError("moed serve exited %d:\n%s" % (rc, cls.d.tail()))

    def tokenize(self, text, special=True):
        r = self.d.post("/v1/tokenize", {"prompt": text, "add_special_tokens": special})
        self.assertEqual(r.status, 200, r)
        return r.json()["tokens"]

    def detokenize(self, ids, skip=False):
        r = self.d.post("/v1/detokenize", {"tokens": ids, "skip_special_tokens": skip})
        self.assertEqual(r.status, 200, r)
        return r.json()["prompt"]

    def test_models_says_text(self):
        m = self.d.get("/v1/models").json()["data"][0]
        self.assertTrue(m["tokenizer"])
        self.assertTrue(m["chat"])

    def test_tokenize_round_trip(self):
        for s in STRINGS:
            with self.subTest(s=s):
                ids = self.tokenize(s)
                self.assertGreater(len(ids), 0)
                self.assertEqual(self.detokenize(ids), s)

    def test_text_prompt_equals_token_prompt(self):
        for s in STRINGS[:3]:
            a = self.d.complete(s, max_tokens=10)
            b = self.d.complete(self.tokenize(s), max_tokens=10)
            self.assertEqual(a["choices"][0]["tokens"], b["choices"][0]["tokens"])
            self.assertEqual(a["choices"][0]["text"], b["choices"][0]["text"])
            # text is the decode of the tokens, special tokens skipped (the
            # stream never splits a character)
            self.assertEqual(a["choices"][0]["text"],
                             self.detokenize(a["choices"][0]["tokens"], skip=True))

    def test_stream_text_deltas(self):
        body = {"prompt": "Hello world", "max_tokens": 16, "temperature": 0}
        full = self.d.complete(body["prompt"], max_tokens=16)["choices"][0]
        status, events = mt.stream(self.d.port, body)
        self.assertEqual(status, 200)
        self.assertEqual(events[-1], "[DONE]")
        text = "".join(e["choices"][0].get("text", "") for e in events[:-1] if e["choices"])
        self.assertEqual(text, full["text"])

    def test_stop_string(self):
        full = self.d.complete("Hello world", max_tokens=24)["choices"][0]["text"]
        cands = [full[i:i + 2] for i in range(1, len(full) - 1)
                 if full[i:i + 2].strip() and "\ufffd" not in full[i:i + 2]]
        if not cands:
            self.skipTest("greedy text has no usable substring: %r" % full)
        stop = cands[len(cands) // 2]
        r = self.d.complete("Hello world", max_tokens=24, stop=[stop])["choices"][0]
        self.assertEqual(r["text"], full[:full.index(stop)])
        self.assertEqual(r["finish_reason"], "stop")
        self.assertTrue(full.startswith(self.detokenize(r["tokens"], skip=True)))

    def test_chat(self):
        msgs = [{"role": "user", "content": "Hi there!"}]
        r = self.d.post("/v1/chat/completions",
                        {"messages": msgs, "max_tokens": 8, "temperature": 0})
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertEqual(j["object"], "chat.completion")
        self.assertTrue(j["id"].startswith("chatcmpl-"))
        msg = j["choices"][0]["message"]
        self.assertEqual(msg["role"], "assistant")
        ids = self.tokenize(CHATML_PROMPT % "Hi there!", special=False)
        self.assertEqual(j["usage"]["prompt_tokens"], len(ids))
        c = self.d.complete(ids, max_tokens=8)["choices"][0]
        if j["choices"][0]["finish_reason"] == "length" and c["finish_reason"] == "length":
            self.assertEqual(msg["content"], c["text"])
        # streamed: role first, content deltas, usage, [DONE]
        status, events = mt.stream(self.d.port, {"messages": msgs, "max_tokens": 8,
                                                 "temperature": 0},
                                   path="/v1/chat/completions")
        self.assertEqual(status, 200)
        self.assertEqual(events[-1], "[DONE]")
        self.assertEqual(events[0]["choices"][0]["delta"].get("role"), "assistant")
        self.assertTrue(all(e["object"] == "chat.completion.chunk" for e in events[:-1]))
        text = "".join(e["choices"][0]["delta"].get("content", "")
                       for e in events[:-1] if e["choices"])
        self.assertEqual(text, msg["content"])
        self.assertEqual(events[-2]["usage"]["completion_tokens"],
                         j["usage"]["completion_tokens"])

    def test_errors(self):
        post = self.d.post
        mt.assert_error(self, post("/v1/chat/completions", {"messages": [
            {"role": "robot", "content": "x"}]}), 400, "messages[0].role")
        mt.assert_error(self, post("/v1/chat/completions", {"messages": [
            {"role": "user", "content": 5}]}), 400, "messages[0].content")
        mt.assert_error(self, post("/v1/chat/completions", {"max_tokens": 3}), 400, "messages")
        mt.assert_error(self, post("/v1/chat/completions", {"messages": [
            {"role": "user", "content": "x"}], "n": 2}), 400, "n")
        mt.assert_error(self, post("/v1/chat/completions", {"messages": [
            {"role": "user", "content": "x"}], "tools": [{"type": "function"}]}), 400, "tools")
        mt.assert_error(self, post("/v1/chat/completions", {"messages": [
            {"role": "user", "content": "x"}], "prompt": "x"}), 400, "prompt")
        mt.assert_error(self, post("/v1/chat/completions", "not json"), 400)
        mt.assert_error(self, post("/v1/tokenize", {"prompt": 5}), 400, "prompt")
        mt.assert_error(self, post("/v1/tokenize", {"prompt": "x", "add_special_tokens": 1}),
                        400, "add_special_tokens")
        mt.assert_error(self, post("/v1/detokenize", {"tokens": "x"}), 400, "tokens")
        mt.assert_error(self, post("/v1/detokenize", {"tokens": [1],
                                                      "skip_special_tokens": "yes"}),
                        400, "skip_special_tokens")
        mt.assert_error(self, post("/v1/detokenize", {"tokens": [1, 99999]}), 400, "tokens[1]")
        mt.assert_error(self, post("/v1/completions", {"prompt": "", "max_tokens": 2}),
                        400, "prompt")


class OtherTemplate(unittest.TestCase):
    """A chat template moed does not render gets a 400, never a guess."""

    def test_unknown_template(self):
        model = mt.make_model("--tokenizer-corpus", CORPUS, name="jinja")
        path = os.path.join(model, "tokenizer_config.json")
        with open(path) as f:
            cfg = json.load(f)
        cfg["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
        with open(path, "w") as f:
            json.dump(cfg, f)
        d = mt.Daemon(model, name="jinja").start()
        try:
            r = d.post("/v1/chat/completions",
                       {"messages": [{"role": "user", "content": "x"}]})
            mt.assert_error(self, r, 400, "chat")
            self.assertEqual(d.complete("plain text still works", max_tokens=2)
                             ["usage"]["completion_tokens"] >= 0, True)
        finally:
            self.assertEqual(d.stop(), 0)


if __name__ == "__main__":
    mt.main()
