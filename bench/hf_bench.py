#!/usr/bin/env python3
"""transformers beside moed's CUDA path (issue 6), on the GPU host.

On the same mkmodel checkpoint that bench/cuda_bench measures, with the same
prompts (its tok() token ids):
  resident  the whole model in bf16 on the GPU: decode tok/s at batch 1 and
            16 (greedy, KV cache, one forward per step) and prefill tok/s of
            4 prompts of 512 tokens;
  check     the model in f32 on the GPU (TF32 off): last-position logits,
            router top-k sets and 16 greedy tokens against `moed run --json`
            outputs given with --moed NAME=FILE (host and cuda backends);
  offload_F accelerate CPU offload with the experts of the first
            round(F x layers) layers on the GPU and the other experts in
            CPU memory (everything else on the GPU): the same decode and
            prefill measurements, fewer steps; one phase per F of
            --offload-frac (a comma-separated list).
Each phase is written to OUT_JSON as it finishes; a phase that fails records
its error and the next one still runs.

  hf_bench.py MODEL_DIR OUT_JSON [--moed NAME=FILE]... [--prompt 1,2,3]
              [--offload-frac 0.5,0.25,0.125] [--deadline SECONDS]
"""
import argparse
import gc
import json
import sys
import time
import traceback

import torch

T0 = time.time()
RES = {}


def log(*a):
    print(f"[hf_bench {time.time() - T0:7.1f}s]", *a, flush=True)


def save(path):
    with open(path, "w") as f:
        json.dump(RES, f, indent=1)


def tok(i, v):
    """bench/cuda_bench.c's tok()."""
    return (((i * 2654435761) & 0xFFFFFFFF) >> 7) % v


def sync():
    torch.cuda.synchronize()


def fwd(model, ids, pkv=None, last_only=False):
    kw = {"input_ids": ids, "use_cache": True}
    if pkv is not None:
        kw["past_key_values"] = pkv
    if last_only:
        try:
            return model(**kw, logits_to_keep=1)
        except TypeError:
            pass
    return model(**kw)


@torch.no_grad()
def decode(model, n, base, plen, warm, steps):
    v = model.config.vocab_size
    ids = torch.tensor([[tok(base + i * 37 + j, v) for j in range(plen)] for i in range(n)],
                       device="cuda")
    out = fwd(model, ids, last_only=True)
    pkv = out.past_key_values
    nxt = out.logits[:, -1].argmax(-1, keepdim=True)
    gen = []
    t0 = time.perf_counter()
    for st in range(warm + steps):
        if st == warm:
            sync()
            t0 = time.perf_counter()
        out = fwd(model, nxt, pkv)
        pkv = out.past_key_values
        nxt = out.logits[:, -1].argmax(-1, keepdim=True)
        gen.append(nxt)
    sync()
    t = time.perf_counter() - t0
    toks = torch.cat(gen, 1).tolist() if gen else []
    return {"batch": n, "prompt": plen, "warm_steps": warm, "steps": steps,
            "seconds": t, "tok_s": n * steps / t, "tokens_seq0": toks[0] if toks else []}


@torch.no_grad()
def prefill(model, s, p, runs):
    v = model.config.vocab_size
    ids = torch.tensor([[tok(20000 + i * p + j, v) for j in range(p)] for i in range(s)],
                       device="cuda")
    times = []
    for _ in range(runs):
        sync()
        t0 = time.perf_counter()
        out = fwd(model, ids, last_only=True)
        sync()
        times.append(time.perf_counter() - t0)
        del out
    best = sorted(times)[len(times) // 2]
    return {"seqs": s, "len": p, "seconds_each": times, "median_seconds": best,
            "tok_s": s * p / best}


def bench(model, quick):
    r = {}
    if quick:
        r["decode_b1"] = decode(model, 1, 0, 32, 1, 4)
        log("decode b1", r["decode_b1"]["tok_s"])
        r["decode_b16"] = decode(model, 16, 1000, 8, 1, 3)
        log("decode b16", r["decode_b16"]["tok_s"])
        r["prefill"] = prefill(model, 4, 512, 1)
    else:
        decode(model, 1, 9000, 16, 0, 2)  # warm-up
        r["decode_b1"] = decode(model, 1, 0, 32, 8, 64)
        log("decode b1", r["decode_b1"]["tok_s"])
        r["decode_b16"] = decode(model, 16, 1000, 8, 4, 32)
        log("decode b16", r["decode_b16"]["tok_s"])
        prefill(model, 4, 512, 1)  # warm-up
        r["prefill"] = prefill(model, 4, 512, 3)
    log("prefill", r["prefill"]["tok_s"])
    return r


def routes_of(out):
    """tools/make_fixtures.py's: per layer, [tokens][n_experts] router scores."""
    rl = getattr(out, "router_logits", None)
    if rl is None:
        raise RuntimeError("no router_logits in output")
    res = []
    for t in rl:
        if isinstance(t, tuple):
            t = t[0]
        res.append(t.reshape(-1, t.shape[-1]))
    return res


@torch.no_grad()
def check(model, prompt, moed, k):
    ids = torch.tensor([prompt], device="cuda")
    out = model(input_ids=ids, output_router_logits=True)
    ref = out.logits[0, -1].double().cpu()
    routes = [[sorted(r) for r in torch.topk(t, k, dim=-1).indices.tolist()]
              for t in routes_of(out)]
    seq, greedy = list(prompt), []
    for _ in range(16):
        o = model(input_ids=torch.tensor([seq], device="cuda"))
        nxt = int(torch.argmax(o.logits[0, -1]))
        greedy.append(nxt)
        seq.append(nxt)
    r = {"prompt": prompt, "hf_greedy": greedy, "hf_max_abs_logit": float(ref.abs().max())}
    for name, path in moed.items():
        try:
            with open(path) as f:
                m = json.load(f)
            lg = torch.tensor(m["last_logits"], dtype=torch.float64)
            mr = [[sorted(p) for p in layer] for layer in m["routes"]]
            diff = sum(a != b for la, lb in zip(routes, mr) for a, b in zip(la, lb))
            r[name] = {"max_abs_dlogit": float((lg - ref).abs().max()),
                       "argmax_same": int(lg.argmax()) == int(ref.argmax()),
                       "route_sets_differing": diff,
                       "route_sets": sum(len(la) for la in routes),
                       "greedy": m["tokens"], "greedy_same": m["tokens"] == greedy}
        except Exception as e:  # a missing or failed moed run
            r[name] = {"error": repr(e)}
    return r


def offload_map(path, frac):
    """device_map: everything on GPU 0 except the experts of layers >=
    round(frac x L), which accelerate keeps in CPU memory."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(path)
    with init_empty_weights():
        sk = AutoModelForCausalLM.from_config(cfg)
    mods = dict(sk.named_modules())
    L = cfg.num_hidden_layers
    n_gpu = int(round(frac * L))

    def direct(name):
        m = mods[name]
        return any(True for _ in m.parameters(recurse=False)) or \
            any(True for _ in m.buffers(recurse=False))

    def path_ok(off):
        for o in off:
            if o not in mods:
                return False
            parts = o.split(".")
            for i in range(len(parts)):
                if direct(".".join(parts[:i])) if i else direct(""):
                    return False
        return True

    for suffix in ("mlp.experts", "mlp", ""):
        off = {f"model.layers.{i}" + (f".{suffix}" if suffix else "") for i in range(n_gpu, L)}
        if path_ok(off):
            break
    dm = {}

    def walk(mod, prefix):
        if prefix in off:
            dm[prefix] = "cpu"
        elif prefix and not any(o.startswith(prefix + ".") for o in off):
            dm[prefix] = 0
        else:
            for name, ch in mod.named_children():
                walk(ch, f"{prefix}.{name}" if prefix else name)

    walk(sk, "")
    return dm, n_gpu, sorted(off)


def redispatch(model, dm):
    from accelerate import dispatch_model
    from accelerate.hooks import remove_hook_from_submodules

    remove_hook_from_submodules(model)
    return dispatch_model(model, device_map=dm, main_device=0)


def placement(model):
    on = {}
    for name, p in model.named_parameters():
        key = "experts" if "experts" in name else "other"
        dev = p.device.type
        on.setdefault(key, {}).setdefault(dev, 0)
        on[key][dev] += p.numel() * p.element_size()
    return on


def ceilings():
    """Copy rates on this card: device-to-device (bytes read + written),
    host-to-device from pinned and from pageable memory."""
    def timed(fn, reps):
        fn()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(reps):
            fn()
        b.record()
        sync()
        return a.elapsed_time(b) / 1e3 / reps

    n = 1 << 31
    x = torch.empty(n, dtype=torch.uint8, device="cuda").random_()
    y = torch.empty_like(x)
    d2d = timed(lambda: y.copy_(x), 10)
    del x, y
    n = 1 << 30
    d = torch.empty(n, dtype=torch.uint8, device="cuda")
    hp = torch.ones(n, dtype=torch.uint8).pin_memory()
    h2d_pinned = timed(lambda: d.copy_(hp, non_blocking=True), 5)
    hq = torch.ones(n, dtype=torch.uint8)
    h2d_pageable = timed(lambda: d.copy_(hq), 3)
    return {"d2d_GBps_read_plus_write": 2 * (1 << 31) / d2d / 1e9,
            "h2d_pinned_GBps": n / h2d_pinned / 1e9, "h2d_pageable_GBps": n / h2d_pageable / 1e9}


def phase(name, fn, out):
    log("phase", name)
    try:
        RES[name] = fn()
    except Exception as e:
        RES[name] = {"error": repr(e), "trace": traceback.format_exc()[-3000:]}
        log("phase", name, "failed:", repr(e))
    save(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--moed", action="append", default=[])
    ap.add_argument("--prompt", default="5,17,42,99,3,250,1000,7")
    ap.add_argument("--offload-frac", default="0.5,0.25,0.125")
    ap.add_argument("--deadline", type=float, default=0)
    a = ap.parse_args()
    import transformers
    import accelerate
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    RES["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__,
                       "accelerate": accelerate.__version__,
                       "gpu": torch.cuda.get_device_name(0)}
    from transformers import AutoModelForCausalLM
    moed = dict(x.split("=", 1) for x in a.moed)
    prompt = [int(x) for x in a.prompt.split(",")]
    st = {}

    def late():
        return a.deadline > 0 and time.time() - T0 > a.deadline

    def load():
        t0 = time.time()
        st["m"] = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16,
                                                       device_map="cuda").eval()
        m = st["m"]
        return {"seconds": time.time() - t0, "class": type(m).__name__,
                "experts_impl": str(getattr(m.config, "_experts_implementation", None)),
                "attn_impl": str(getattr(m.config, "_attn_implementation", None)),
                "gpu_bytes": torch.cuda.memory_allocated()}

    phase("ceilings", ceilings, a.out)
    torch.cuda.empty_cache()
    phase("load_resident", load, a.out)
    if "m" in st:
        phase("resident", lambda: bench(st["m"], False), a.out)

        def chk():
            k = st["m"].config.num_experts_per_tok
            with torch.no_grad():
                b16 = st["m"](input_ids=torch.tensor([prompt], device="cuda")).logits[0, -1]
                b16 = b16.double().cpu()
            st["m"] = st["m"].float()
            r = check(st["m"], prompt, moed, k)
            with torch.no_grad():
                f32 = st["m"](input_ids=torch.tensor([prompt], device="cuda")).logits[0, -1]
            r["hf_bf16_vs_f32_max_abs_dlogit"] = float((b16 - f32.double().cpu()).abs().max())
            return r

        phase("check_f32", chk, a.out)
        st.pop("m", None)
        gc.collect()
        torch.cuda.empty_cache()
    def off(frac):
        dm, n_gpu, offl = offload_map(a.model, frac)
        t0 = time.time()
        try:
            m = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16,
                                                     device_map=dm).eval()
            how = "from_pretrained(device_map)"
        except Exception as e:
            log("from_pretrained with device_map failed:", repr(e), "; dispatch_model")
            m = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.bfloat16).eval()
            m = redispatch(m, dm)
            how = "dispatch_model"
        try:
            with torch.no_grad():
                m(input_ids=torch.tensor([prompt], device="cuda"))
        except Exception as e:
            log("forward after loading failed:", repr(e), "; dispatch_model")
            m = redispatch(m, dm)
            how += " + dispatch_model"
        r = {"frac": frac, "load_seconds": time.time() - t0, "how": how,
             "gpu_layers_experts": n_gpu, "offloaded_modules": offl,
             "placement_bytes": placement(m),
             "hf_device_map_values": sorted({str(v) for v in
                                             getattr(m, "hf_device_map", {}).values()})}
        log("offload placement", r["placement_bytes"])
        r.update(bench(m, True))
        del m
        gc.collect()
        torch.cuda.empty_cache()
        return r

    for frac in [float(x) for x in a.offload_frac.split(",") if x]:
        if late():
            RES[f"offload_{frac:g}"] = {"frac": frac, "skipped": "past --deadline"}
            save(a.out)
            continue
        phase(f"offload_{frac:g}", lambda: off(frac), a.out)
    log("done")


if __name__ == "__main__":
    sys.exit(main())
