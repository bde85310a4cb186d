#!/usr/bin/env python3
"""Tables (markdown, stdout) and a plot (PNG, when matplotlib is there) from
bench/cuda_bench's JSON lines and bench/hf_bench.py's JSON, with issue 6's
targets:
  batch-1 decode, all resident  >= 0.5 x HBM roofline, the roofline being
      4.8 TB/s / bytes of weights one decode step must read;
  each budget >= 0.9 x min(all-resident tok/s, 55 GB/s / H2D bytes per token).
Weight bytes are counted as moed holds them on the GPU (dense bf16, router
f32, experts f32 as pack v1 stores them) and as the checkpoint's bf16.

  cuda_report.py CONFIG_JSON MOED_JSONL HF_JSON [PNG]
"""
import json
import math
import sys

HBM = 4.8e12
PCIE = 55e9


def weights(cfg, expert_bytes):
    """(dense bytes per step as moed holds them, same in bf16, expert bytes
    moed, expert bytes bf16)."""
    H, V, L = cfg["hidden_size"], cfg["vocab_size"], cfg["num_hidden_layers"]
    nh, kv = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    hd = cfg.get("head_dim") or H // nh
    E, I = cfg["num_experts"], cfg["intermediate_size"]
    attn = (nh * hd * H + 2 * kv * hd * H + H * nh * hd)
    norms = 2 * H + nh * hd + kv * hd
    moed = L * (attn * 2 + E * H * 4 + norms * 4) + V * H * 2 + H * 4 + H * 2
    bf16 = L * (attn * 2 + E * H * 2 + norms * 2) + V * H * 2 + H * 2 + H * 2
    return moed, bf16, expert_bytes, 3 * H * I * 2


def load(cfg_path, moed_path, hf_path):
    cfg = json.load(open(cfg_path))
    rows = [json.loads(x) for x in open(moed_path) if x.strip()]
    try:
        hf = json.load(open(hf_path))
    except (OSError, ValueError):
        hf = {}
    return cfg, rows, hf


def analyse(cfg, rows):
    res = next((r for r in rows if r["frac"] >= 1), None)
    if not res:
        return None
    dm, db, em, eb = weights(cfg, res["expert_bytes"])
    L, K = res["layers"], res["top_k"]
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
    out = []
    for r in rows:
        e = {"r": r}
        for ph, base in (("decode_b1", res["decode_b1"]["tok_s"]),
                         ("decode_b16", res["decode_b16"]["tok_s"]),
                         ("prefill", res["prefill"]["tok_s"])):
            bpt = r[ph]["bytes_per_token"]
            bound = PCIE / bpt if bpt > 0 else float("inf")
            if r["frac"] < 1:
                tgt = 0.9 * min(base, bound)
            elif ph == "decode_b1":      # resident: half the HBM roofline
                tgt = 0.5 * roof["b1_roof_moed"]
            else:
                tgt = float("nan")       # the issue sets none
            e[ph] = {"tok_s": r[ph]["tok_s"], "pcie_bound": bound, "target": tgt,
                     "ratio": r[ph]["tok_s"] / tgt}
        out.append(e)
    return roof, out


def fmt(x, d=1):
    """Truncated, never rounded up."""
    if x != x:
        return "-"
    if x == float("inf"):
        return "inf"
    return f"{math.floor(x * 10**d) / 10**d:.{d}f}"


def tables(cfg, rows, hf):
    a = analyse(cfg, rows)
    if not a:
        print("no resident run")
        return None
    roof, out = a
    print("### Roofline (HBM 4.8 TB/s)\n")
    print("| | bytes/step moed (experts f32) | bytes/step bf16 | roofline tok/s moed | "
          "roofline tok/s bf16 |\n|---|---|---|---|---|")
    for b in ("b1", "b16"):
        print(f"| decode {b} | {fmt(roof[b + '_bytes_moed'] / 1e9, 3)} GB | "
              f"{fmt(roof[b + '_bytes_bf16'] / 1e9, 3)} GB | {fmt(roof[b + '_roof_moed'])} | "
              f"{fmt(roof[b + '_roof_bf16'])} |")
    print(f"\n(b16: {fmt(roof['b16_experts_per_step'], 2)} distinct experts per step, "
          "measured in the resident run.)\n")
    print("### moed CUDA path\n")
    print("| prefetch | budget (slots) | prefill tok/s | / target | decode b1 tok/s | "
          "b1 target | / target | decode b16 tok/s | b16 target | / target | "
          "H2D MiB/tok b1 | H2D MiB/tok b16 | H2D MiB/tok prefill | hit rate b1 | "
          "hit rate b16 | tokens = resident |")
    print("|" + "---|" * 16)
    for e in out:
        r = e["r"]
        d1, d16 = r["decode_b1"], r["decode_b16"]
        hr = d1["hits"] / max(1, d1["hits"] + d1["misses"])
        hr16 = d16["hits"] / max(1, d16["hits"] + d16["misses"])
        same = {None: "(reference)", True: "yes", False: "NO"}[r["tokens_identical"]]
        mode = r["prefetch"] if r["frac"] < 1 else "-"
        print(f"| {mode} | {100 * r['frac']:g}% ({r['slots']}) | "
              f"{fmt(r['prefill']['tok_s'])} | {fmt(e['prefill']['ratio'], 3)} | "
              f"{fmt(d1['tok_s'], 2)} | {fmt(e['decode_b1']['target'], 2)} | "
              f"{fmt(e['decode_b1']['ratio'], 3)} | {fmt(d16['tok_s'], 2)} | "
              f"{fmt(e['decode_b16']['target'], 2)} | {fmt(e['decode_b16']['ratio'], 3)} | "
              f"{fmt(d1['bytes_per_token'] / 2**20)} | {fmt(d16['bytes_per_token'] / 2**20)} | "
              f"{fmt(r['prefill']['bytes_per_token'] / 2**20)} | {fmt(hr, 3)} | "
              f"{fmt(hr16, 3)} | {same} |")
    res = out[0]["r"] if out[0]["r"]["frac"] >= 1 else None
    if res:
        b1 = res["decode_b1"]["tok_s"]
        print(f"\nResident batch-1 decode: {fmt(b1, 2)} tok/s = "
              f"{fmt(b1 / roof['b1_roof_moed'], 4)} x roofline (moed bytes), "
              f"{fmt(b1 / roof['b1_roof_bf16'], 4)} x roofline (bf16 bytes); target 0.5.")
    if hf:
        print("\n### transformers\n")
        for k in ("resident", "offload"):
            h = hf.get(k, {})
            if "decode_b1" in h:
                print(f"- {k}: decode b1 {fmt(h['decode_b1']['tok_s'], 3)} tok/s, b16 "
                      f"{fmt(h['decode_b16']['tok_s'], 2)} tok/s, prefill "
                      f"{fmt(h['prefill']['tok_s'])} tok/s")
            else:
                print(f"- {k}: {h}")
    return roof, out


def plot(cfg, rows, hf, png):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = analyse(cfg, rows)
    if not a:
        return
    roof, out = a
    fig, ax = plt.subplots(1, 3, figsize=(17, 5))
    modes = ["none", "cepr", "oracle"]
    colors = {"none": "tab:blue", "cepr": "tab:orange", "oracle": "tab:green"}
    fracs = sorted({e["r"]["frac"] for e in out}, reverse=True)
    xs = {f: i for i, f in enumerate(fracs)}
    w = 0.2
    for p, ph in enumerate(("decode_b1", "decode_b16")):
        for j, m in enumerate(modes):
            pts = [e for e in out if e["r"]["prefetch"] == m]
            if not pts:
                continue
            x = [xs[e["r"]["frac"]] + (j - 1) * w for e in pts]
            ax[p].bar(x, [e[ph]["tok_s"] for e in pts], w, color=colors[m],
                      label=f"moed, prefetch {m}")
            ax[p].scatter(x, [e[ph]["target"] for e in pts], marker="_", s=300, color="k",
                          zorder=3, label="target" if j == 0 else None)
        key = "b1" if ph == "decode_b1" else "b16"
        lim = roof[key + "_roof_moed"] * (0.5 if key == "b1" else 1)
        ax[p].axhline(lim, ls="--", color="gray",
                      label=("0.5 x " if key == "b1" else "") + "HBM roofline (moed bytes)")
        for k, c, f in (("resident", "tab:red", 1.0), ("offload", "tab:purple", 0.25)):
            h = hf.get(k, {})
            if ph in h and f in xs:
                ax[p].bar(xs[f] + 2 * w, h[ph]["tok_s"], w, color=c,
                          label=f"transformers {k}")
        ax[p].set_xticks(range(len(fracs)), [f"{100 * f:g}%" for f in fracs])
        ax[p].set_xlabel("experts resident on GPU (budget)")
        ax[p].set_ylabel("tokens/s")
        ax[p].set_yscale("log")
        ax[p].set_title(f"decode, batch {1 if key == 'b1' else 16}")
        ax[p].legend(fontsize=7)
    for j, m in enumerate(modes):
        pts = [e for e in out if e["r"]["prefetch"] == m and e["r"]["frac"] < 1]
        if pts:
            x = [xs[e["r"]["frac"]] + (j - 1) * w for e in pts]
            ax[2].bar(x, [e["r"]["decode_b1"]["bytes_per_token"] / 2**20 for e in pts], w,
                      color=colors[m], label=f"b1, prefetch {m}")
            ax[2].scatter(x, [e["r"]["decode_b16"]["bytes_per_token"] / 2**20 for e in pts],
                          color=colors[m], edgecolor="k", zorder=3,
                          label=f"b16, prefetch {m}")
    ax[2].set_xticks(range(len(fracs)), [f"{100 * f:g}%" for f in fracs])
    ax[2].set_ylabel("host-to-GPU MiB per token")
    ax[2].set_title("PCIe traffic per decoded token")
    ax[2].legend(fontsize=7)
    L = out[0]["r"]["layers"]
    fig.suptitle(f"moed CUDA path vs transformers, OLMoE-shaped synthetic bf16 model "
                 f"({L} layers, 64 experts, top-8), one H200")
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main():
    cfg, rows, hf = load(sys.argv[1], sys.argv[2], sys.argv[3])
    tables(cfg, rows, hf)
    if len(sys.argv) > 4:
        try:
            plot(cfg, rows, hf, sys.argv[4])
        except ImportError as e:
            print(f"no plot: {e}", file=sys.stderr)


if __name__ == "__main__":
    main()
