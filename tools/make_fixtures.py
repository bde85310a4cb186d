#!/usr/bin/env python3
"""Make the reference fixtures: tiny random MoE checkpoints saved with HF
transformers, plus the reference logits, greedy tokens and router choices that
transformers itself computes from the saved files.  Run on a machine with
torch + transformers (see ../shared/GPU.md).  Usage: make_fixtures.py OUTDIR"""
import json, os, sys
import torch
import transformers
from transformers import (MixtralConfig, MixtralForCausalLM, OlmoeConfig,
                          OlmoeForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM)
from safetensors import safe_open

VOCAB = 160
GREEDY_STEPS = 16


def specs():
    common = dict(vocab_size=VOCAB, hidden_size=64, num_attention_heads=4,
                  max_position_embeddings=512, rms_norm_eps=1e-6,
                  initializer_range=0.08, bos_token_id=None, eos_token_id=None,
                  pad_token_id=None)
    yield ("mixtral_f32", MixtralForCausalLM, MixtralConfig(
        **common, intermediate_size=48, num_hidden_layers=2,
        num_key_value_heads=2, num_local_experts=8, num_experts_per_tok=2,
        rope_theta=10000.0, tie_word_embeddings=False), torch.float32, None)
    yield ("qwen3moe_f32_sharded", Qwen3MoeForCausalLM, Qwen3MoeConfig(
        **common, intermediate_size=80, moe_intermediate_size=40,
        num_hidden_layers=3, num_key_value_heads=2, head_dim=32,
        num_experts=8, num_experts_per_tok=2, norm_topk_prob=True,
        decoder_sparse_step=1, mlp_only_layers=[1], rope_theta=1000000.0,
        tie_word_embeddings=True), torch.float32, "300KB")
    yield ("olmoe_bf16", OlmoeForCausalLM, OlmoeConfig(
        **common, intermediate_size=40, num_hidden_layers=2,
        num_key_value_heads=4, num_experts=8, num_experts_per_tok=2,
        norm_topk_prob=False, rope_theta=10000.0,
        tie_word_embeddings=False), torch.bfloat16, None)


def prompts():
    g = torch.Generator().manual_seed(1234)
    out = []
    for n in (1, 7, 23, 61):
        out.append(torch.randint(0, VOCAB, (n,), generator=g).tolist())
    return out


def routes_of(out):
    rl = getattr(out, "router_logits", None)
    if rl is None:
        raise SystemExit("no router_logits in output")
    res = []
    for t in rl:
        if isinstance(t, tuple):
            t = t[0]
        t = t.reshape(-1, t.shape[-1])
        res.append(t)
    return res


def main(outdir):
    torch.manual_seed(0)
    info = {"transformers": transformers.__version__, "torch": torch.__version__}
    for name, cls, cfg, dtype, shard in specs():
        d = os.path.join(outdir, name)
        model = cls(cfg)
        # Norm weights start at 1.0; perturb them so a test catches a norm
        # that forgets its weight.
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "norm" in pname:
                    p.add_(0.2 * torch.randn_like(p))
        model = model.to(dtype)
        kw = {"max_shard_size": shard} if shard else {}
        model.save_pretrained(d, **kw)
        # Reference: reload what was saved, compute in fp32.
        ref = cls.from_pretrained(d, dtype=torch.float32).eval()
        k = cfg.num_experts_per_tok
        cases = []
        for p in prompts():
            ids = torch.tensor([p])
            with torch.no_grad():
                out = ref(ids, output_router_logits=True)
                logits = out.logits[0, -1].tolist()
                routes = []
                for t in routes_of(out):
                    top = torch.topk(t, k, dim=-1).indices
                    routes.append([sorted(r) for r in top.tolist()])
                seq = list(p)
                greedy = []
                for _ in range(GREEDY_STEPS):
                    o = ref(torch.tensor([seq]))
                    nxt = int(torch.argmax(o.logits[0, -1]))
                    greedy.append(nxt)
                    seq.append(nxt)
                gen = ref.generate(ids, max_new_tokens=GREEDY_STEPS,
                                   do_sample=False, pad_token_id=0)
                gen = gen[0, len(p):].tolist()
            cases.append({"prompt": p, "last_logits": logits,
                          "greedy": greedy, "generate_greedy": gen,
                          "routes": routes})
        tensors = {}
        for f in sorted(os.listdir(d)):
            if f.endswith(".safetensors"):
                with safe_open(os.path.join(d, f), "pt") as sf:
                    for key in sf.keys():
                        tensors[key] = [f, str(sf.get_slice(key).get_dtype()),
                                        list(sf.get_slice(key).get_shape())]
        info[name] = {"files": sorted(os.listdir(d)), "tensors": tensors,
                      "n_router_outputs": len(cases[0]["routes"])}
        with open(os.path.join(d, "reference.json"), "w") as f:
            json.dump({"family": cfg.model_type, "saved_dtype": str(dtype),
                       "transformers": transformers.__version__,
                       "top_k": k, "cases": cases}, f)
        print(name, "ok", info[name]["files"], flush=True)
    with open(os.path.join(outdir, "fixtures_info.json"), "w") as f:
        json.dump(info, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
