#!/usr/bin/env python3
"""Tables (markdown, stdout) and a plot (PNG, when matplotlib is there) from
bench/cuda_bench's JSON lines and bench/hf_bench.py's JSON, with issue 6's
targets:
  batch-1 decode, all resident  >= 0.5 x HBM roofline, the roofline being
      4.8 TB/s / bytes of weights one decode step must read;
  each budget >= 0.9 x min(all-resident tok/s, 55 GB/s / bytes missed per token),
      per phase, against the resident row of the same routing.  Bytes missed:
      the misses and the prefetched experts still loading when used (misses
      the prefetch did not hide: cuda_bench's missed_bytes_per_token), and
      the experts the CPU computed instead (host_runs, device.host_threads:
      missed by the GPU, never copied); not the unused prefetches, nor those
      that landed in time.  Beside it, the
      same against every byte copied (H2D bytes per token, prefetches
      included): how close a row runs to the copy engine's own bound.  The
      issue sets no budget target for prefill: its column is the copy bound.
Weight bytes are counted as moed holds them on the GPU (dense bf16, router
and norms f32, experts at the pack's expert_bytes: the GPU slots hold the
pack's dtype) and as the checkpoint's bf16.  One table per routing mode
(synthetic router, or a replayed trace); rows carry the cache policy and the
prefetch mode (none, all, freq, cepr, oracle).

  cuda_report.py CONFIG_JSON MOED_JSONL[,MOED_JSONL...] HF_JSON [PNG]
"""
import json
import math
import sys

HBM = 4.8e12
PCIE = 55e9
MODES = ["none", "all", "freq", "cepr", "oracle"]
POLICIES = ["lru", "fifo", "lfu", "lfuda"]


def weights(cfg, expert_bytes):
    """(dense bytes per step as moed holds them, same in bf16, expert bytes
    as the GPU slots hold them, expert bytes bf16)."""
    H, V, L = cfg["hidden_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    nh, kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    hd = cfg.get("head_dim") or H // nh
    E, I = cfg["num_experts"], cfg["intermediate_size"]
    attn = (nh * hd * H + 2 * kv * hd * H + H * nh * hd)
    norms = 2 * H + nh * hd + kv * hd
    moed = L * (attn * 2 + E * H * 4 + norms * 4) + V * H * 2 + H * 4 + H * 2
    bf16 = L * (attn * 2 + E * H * 2 + norms * 2) + V * H * 2 + H * 2 + H * 2
    return moed, bf16, expert_bytes, 3 * H * I * 2


def load(cfg_path, moed_paths, hf_path):
    cfg = json.load(open(cfg_path))
    rows = []
    for p in moed_paths.split(","):
        try:
            rows += [json.loads(x) for x in open(p) if x.strip()]
        except OSError as e:
            print(f"{p}: {e}", file=sys.stderr)
    for r in rows:
        r.setdefault("routing", "synthetic")
        r.setdefault("policy", "lru")
    try:
        hf = json.load(open(hf_path))
    except (OSError, ValueError):
        hf = {}
    return cfg, rows, hf


def roofline(cfg, res, a16=None):
    dm, db, em, eb = weights(cfg, res["expert_bytes"])
    L, K = res["layers"], res["top_k"]
    if a16 is None:
        a16 = res["decode_b16"]["acquires_per_token"] * 16
    roof = {
        "b1_bytes_moed": dm + L * K * em, "b1_bytes_bf16": db + L * K * eb,
        "b16_bytes_moed": dm + a16 * em, "b16_bytes_bf16": db + a16 * eb,
        "b16_experts_per_step": a16,
    }
    roof["b1_roof_moed"] = HBM / roof["b1_bytes_moed"]
    roof["b1_roof_bf16"] = HBM / roof["b1_bytes_bf16"]
    roof["b16_roof_moed"] = 16 * HBM / roof["b16_bytes_moed"]
    roof["b16_roof_bf16"] = 16 * HBM / roof["b16_bytes_bf16"]
    return roof


def analyse(cfg, rows):
    """{routing: (roofline of its first resident row, [entry])}; a budget row
    is measured against the last resident row of its routing before it."""
    out = {}
    res = {}
    # A resident row on the CUDA fast path counted top_k hits per token and
    # layer (engines before this fix), not one per distinct expert: take the
    # distinct experts of a b16 step from a no-prefetch budget row of the same
    # routing instead (same tokens, so the same experts; acquires count them).
    a16 = {}
    for r in rows:
        if r["frac"] < 1 and r.get("prefetch") == "none" and r["routing"] not in a16:
            a16[r["routing"]] = r["decode_b16"]["acquires_per_token"] * 16
    def roof_of(r):
        fast = r.get("fast_calls", 0) > 0
        return roofline(cfg, r, a16.get(r["routing"]) if fast else None)
    for r in rows:
        rt = r["routing"]
        if r["frac"] >= 1:
            res[rt] = r
            if rt not in out:
                out[rt] = (roof_of(r), [])
        if rt not in res:
            continue
        base = res[rt]
        roof = roof_of(base)
        e = {"r": r}
        for ph in ("decode_b1", "decode_b16", "prefill"):
            bpt = r[ph]["bytes_per_token"]
            mpt = missed(r, ph)
            bound = PCIE / bpt if bpt > 0 else float("inf")
            copy = float("nan")
            if r["frac"] < 1:
                copy = r[ph]["tok_s"] / (0.9 * min(base[ph]["tok_s"], bound))
                # The issue sets budget targets for decode only; prefill's
                # column is its copy bound.
                mb = mpt if ph != "prefill" else bpt
                tgt = 0.9 * min(base[ph]["tok_s"], PCIE / mb if mb > 0 else float("inf"))
                tgt = tgt if mb == mb else float("nan")     # not recorded
            elif ph == "decode_b1":      # resident: half the HBM roofline
                tgt = 0.5 * roof["b1_roof_moed"]
            else:
                tgt = float("nan")       # the issue sets none
            e[ph] = {"tok_s": r[ph]["tok_s"], "pcie_bound": bound, "target": tgt,
                     "ratio": r[ph]["tok_s"] / tgt, "missed": mpt, "copy_ratio": copy}
        out[rt][1].append(e)
    return out


def missed(r, ph):
    """Bytes missed per token (the issue's); rows from before cuda_bench
    wrote it have it only without prefetch (every load a miss), else NaN."""
    m = r[ph].get("missed_bytes_per_token")
    if m is None:
        m = r[ph]["bytes_per_token"] if r.get("prefetch") == "none" else float("nan")
    return m


def fmt(x, d=1):
    """Truncated, never rounded up."""
    if x != x:
        return "-"
    if x == float("inf"):
        return "inf"
    return f"{math.floor(x * 10**d) / 10**d:.{d}f}"


def roof_table(roof, r):
    eb = r["expert_bytes"] / 1e6
    print(f"### Roofline (HBM 4.8 TB/s; experts at the pack's {fmt(eb, 2)} MB, as the GPU "
          "slots hold them)\n")
    print("| | bytes/step moed | bytes/step bf16 checkpoint | roofline tok/s moed | "
          "roofline tok/s bf16 |\n|---|---|---|---|---|")
    for b in ("b1", "b16"):
        print(f"| decode {b} | {fmt(roof[b + '_bytes_moed'] / 1e9, 3)} GB | "
              f"{fmt(roof[b + '_bytes_bf16'] / 1e9, 3)} GB | {fmt(roof[b + '_roof_moed'])} | "
              f"{fmt(roof[b + '_roof_bf16'])} |")
    print(f"\n(b16: {fmt(roof['b16_experts_per_step'], 2)} distinct experts per step, "
          "measured in the resident run; when that run took the CUDA fast path, in the "
          "first no-prefetch budget run of the same routing, which gives the same tokens.)\n")


def row_table(rt, entries):
    note = ""
    if entries and entries[0]["r"].get("override_route"):
        note = (" (replayed routing: override_route is set, so every row, the resident one "
                "included, runs the engine's host-synchronised path, not the CUDA fast path; "
                "the trace has no token ids, so freq is per-layer popularity)")
    print(f"### moed CUDA path, routing {rt}{note}\n")
    print("| routing | policy | prefetch | budget (slots) | prefill tok/s | / copy bound | "
          "decode b1 tok/s | b1 target | / target | / copy bound | decode b16 tok/s | "
          "b16 target | / target | / copy bound | missed MiB/tok b1 | H2D MiB/tok b1 | "
          "missed MiB/tok b16 | H2D MiB/tok b16 | H2D MiB/tok prefill | hit rate b1 | "
          "hit rate b16 | tokens = resident |")
    print("|" + "---|" * 22)
    for e in entries:
        r = e["r"]
        d1, d16 = r["decode_b1"], r["decode_b16"]
        hr = d1["hits"] / max(1, d1["hits"] + d1["misses"])
        hr16 = d16["hits"] / max(1, d16["hits"] + d16["misses"])
        same = {None: "(reference)", True: "yes", False: "NO"}[r["tokens_identical"]]
        mode = r["prefetch"] if r["frac"] < 1 else "-"
        pol = r["policy"] if r["frac"] < 1 else "-"
        print(f"| {rt} | {pol} | {mode} | {100 * r['frac']:g}% ({r['slots']}) | "
              f"{fmt(r['prefill']['tok_s'])} | {fmt(e['prefill']['ratio'], 3)} | "
              f"{fmt(d1['tok_s'], 2)} | {fmt(e['decode_b1']['target'], 2)} | "
              f"{fmt(e['decode_b1']['ratio'], 3)} | {fmt(e['decode_b1']['copy_ratio'], 3)} | "
              f"{fmt(d16['tok_s'], 2)} | {fmt(e['decode_b16']['target'], 2)} | "
              f"{fmt(e['decode_b16']['ratio'], 3)} | {fmt(e['decode_b16']['copy_ratio'], 3)} | "
              f"{fmt(e['decode_b1']['missed'] / 2**20)} | {fmt(d1['bytes_per_token'] / 2**20)} | "
              f"{fmt(e['decode_b16']['missed'] / 2**20)} | {fmt(d16['bytes_per_token'] / 2**20)} | "
              f"{fmt(r['prefill']['bytes_per_token'] / 2**20)} | {fmt(hr, 3)} | "
              f"{fmt(hr16, 3)} | {same} |")


def tables(cfg, rows, hf):
    a = analyse(cfg, rows)
    if not a:
        print("no resident run")
        return None
    for rt, (roof, entries) in a.items():
        res = next((e["r"] for e in entries if e["r"]["frac"] >= 1), None)
        roof_table(roof, res)
        row_table(rt, entries)
        b1 = res["decode_b1"]["tok_s"]
        print(f"\nResident batch-1 decode ({rt}): {fmt(b1, 2)} tok/s = "
              f"{fmt(b1 / roof['b1_roof_moed'], 4)} x roofline (moed bytes), "
              f"{fmt(b1 / roof['b1_roof_bf16'], 4)} x roofline (bf16 bytes); target 0.5. "
              f"Engine calls on the CUDA fast path in the resident run: "
              f"{res.get('fast_calls', 'not recorded')}."
              + (" Routes overridden on the host each layer (replay), so not the fast path: "
                 "the target is taken on the synthetic routing, whose step reads as many "
                 "bytes." if res.get("override_route") else "") + "\n")
        s = res.get("steps")
        if s:
            print(f"Steps: b1 prompt {s['b1'][0]}, {s['b1'][1]} warm-up + {s['b1'][2]} timed; "
                  f"b16 prompt {s['b16'][0]}, {s['b16'][1]} + {s['b16'][2]}; prefill "
                  f"{s['prefill'][0]}x{s['prefill'][1]}; predictors trained on "
                  f"{s['train'][0]} prompts x {s['train'][2]} decode steps.\n")
    if hf:
        print("### transformers\n")
        for k in ["resident"] + offload_keys(hf):
            h = hf.get(k, {})
            if "decode_b1" in h:
                print(f"- {k}: decode b1 {fmt(h['decode_b1']['tok_s'], 3)} tok/s, b16 "
                      f"{fmt(h['decode_b16']['tok_s'], 2)} tok/s, prefill "
                      f"{fmt(h['prefill']['tok_s'])} tok/s")
            else:
                print(f"- {k}: {h}")
    return a


def offload_keys(hf):
    """transformers' offload phases, largest budget first ("offload": one
    phase at 25%, from before hf_bench.py took several)."""
    ks = [k for k in hf if k.startswith("offload") and isinstance(hf[k], dict)]
    return sorted(ks, key=lambda k: -offload_frac(hf, k))


def offload_frac(hf, k):
    return hf[k].get("frac", 0.25)


def series(entries):
    """[(label, mode, [entries])]: none, all, oracle once; freq and cepr per policy."""
    out = []
    for m in MODES:
        pols = POLICIES if m in ("freq", "cepr") else ["lru"]
        for p in pols:
            pts = [e for e in entries if e["r"]["frac"] < 1 and e["r"]["prefetch"] == m
                   and e["r"]["policy"] == p]
            if pts:
                out.append((m if m not in ("freq", "cepr") else f"{m} {p}", m, pts))
    return out


def plot(cfg, rows, hf, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = analyse(cfg, rows)
    if not a:
        return
    colors = {"none": "tab:blue", "all": "tab:gray", "freq": "tab:orange", "cepr": "tab:red",
              "oracle": "tab:green"}
    hatch = {"lru": "", "fifo": "//", "lfu": "..", "lfuda": "xx"}
    fig, axs = plt.subplots(len(a), 3, figsize=(19, 5 * len(a)), squeeze=False)
    for row, (rt, (roof, entries)) in enumerate(a.items()):
        ax = axs[row]
        ser = series(entries)
        fracs = sorted({e["r"]["frac"] for e in entries}, reverse=True)
        xs = {f: i for i, f in enumerate(fracs)}
        nb = len(ser) + (2 if rt == "synthetic" and hf else 0)
        hfbars = [("resident", "tab:purple", 1.0)] + \
            [(k, "tab:brown", offload_frac(hf, k)) for k in offload_keys(hf)]
        w = 0.8 / max(1, nb)
        res = next(e for e in entries if e["r"]["frac"] >= 1)
        for p, ph in enumerate(("decode_b1", "decode_b16")):
            ax[p].bar(xs[1.0] if 1.0 in xs else 0, res[ph]["tok_s"], w, color="k",
                      label="moed, all resident")
            for j, (lab, m, pts) in enumerate(ser):
                x = [xs[e["r"]["frac"]] + (j - nb / 2 + 0.5) * w for e in pts]
                ax[p].bar(x, [e[ph]["tok_s"] for e in pts], w, color=colors[m],
                          hatch=hatch[pts[0]["r"]["policy"]], edgecolor="white",
                          label=f"moed, {lab}")
                ax[p].scatter(x, [e[ph]["target"] for e in pts], marker="_", s=120,
                              color="k", zorder=3, label="target" if j == 0 else None)
            key = "b1" if ph == "decode_b1" else "b16"
            lim = roof[key + "_roof_moed"] * (0.5 if key == "b1" else 1)
            ax[p].axhline(lim, ls="--", color="gray",
                          label=("0.5 x " if key == "b1" else "") + "HBM roofline (moed bytes)")
            for i, (k, c, f) in enumerate(hfbars):
                h = hf.get(k, {}) if rt == "synthetic" else {}
                j = nb - 2 if k == "resident" else nb - 1
                if ph in h and f in xs:
                    ax[p].bar(xs[f] + (j - nb / 2 + 0.5) * w, h[ph]["tok_s"], w, color=c,
                              label=(f"transformers {k}" if i < 2 else None))
            ax[p].set_xticks(range(len(fracs)), [f"{100 * f:g}%" for f in fracs])
            ax[p].set_xlabel("experts resident on GPU (budget)")
            ax[p].set_ylabel("tokens/s")
            ax[p].set_yscale("log")
            ax[p].set_title(f"{rt}: decode, batch {1 if key == 'b1' else 16}")
            ax[p].legend(fontsize=6, ncol=2)
        for j, (lab, m, pts) in enumerate(ser):
            x = [xs[e["r"]["frac"]] + (j - nb / 2 + 0.5) * w for e in pts]
            ax[2].bar(x, [e["r"]["decode_b1"]["bytes_per_token"] / 2**20 for e in pts], w,
                      color=colors[m], hatch=hatch[pts[0]["r"]["policy"]], edgecolor="white",
                      label=f"b1, {lab}")
            ax[2].scatter(x, [e["r"]["decode_b16"]["bytes_per_token"] / 2**20 for e in pts],
                          color=colors[m], edgecolor="k", zorder=3, s=14,
                          label="b16 (dots)" if j == 0 else None)
        ax[2].set_xticks(range(len(fracs)), [f"{100 * f:g}%" for f in fracs])
        ax[2].set_ylabel("host-to-GPU MiB per token")
        ax[2].set_title(f"{rt}: PCIe traffic per decoded token")
        ax[2].legend(fontsize=6, ncol=2)
    r0 = rows[0]
    fig.suptitle(f"moed CUDA path, OLMoE-shaped synthetic bf16 model ({r0['layers']} layers, "
                 f"{r0['experts']} experts, top-{r0['top_k']}), backend {r0['backend']}")
    fig.tight_layout()
    fig.savefig(png, dpi=100)


def main():
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    cfg, rows, hf = load(sys.argv[1], sys.argv[2], sys.argv[3])
    tables(cfg, rows, hf)
    if len(sys.argv) > 4:
        try:
            plot(cfg, rows, hf, sys.argv[4])
        except ImportError as e:
            print(f"no plot: {e}", file=sys.stderr)


if __name__ == "__main__":
    main()
