#!/usr/bin/env python3
"""Where the copy engine idles in decode steps through the expert cache, from
bench/cupti_trace.c's CSV: the copy stream's busy share, what the compute
stream runs while no expert copy is on it, and per MoE layer (with and
without an expert copy) the spans between router, copies and experts.

  bench/cupti_idle.py TRACE.csv FIRST COUNT

FIRST, COUNT: which one-row router launches (MoE layers, in time order) to
take; a negative FIRST counts from the last.  cuda_bench --fracs 0.5 --steps1 4,24 --steps16 1,1 --prefill 1x4 on a
16-layer model runs 480 before the budget run's (the resident run's 30
steps) and 30 steps there: FIRST 576 COUNT 352 are its steps 6 to 27.
Expert copies: every host-to-GPU copy of at least 64 KiB (prefetches go
to the copy stream in pieces, 1 MiB by default); the tables' uploads
(under 2 KiB) are not."""
import collections
import statistics as st
import sys


def load(path):
    recs = []
    for line in open(path):
        p = line.rstrip("\n").split(",", 5)
        recs.append((p[0], int(p[1]), int(p[2]), p[3], int(p[4]), p[5]))
    recs.sort(key=lambda r: r[1])
    return recs


def kind(name):
    if "moe_gu" in name or "moe_down" in name or "moe_experts" in name:
        return "experts"
    if "router" in name:
        return "router"
    if "combine" in name:
        return "combine"
    if "gemv" in name or "attend" in name or "rmsnorm" in name or "qk_prep" in name:
        return "attention, head"
    return "other"


def main():
    recs = load(sys.argv[1])
    first, count = int(sys.argv[2]), int(sys.argv[3])
    big = lambda r: r[5].startswith("kind1 ") and int(r[5].split()[1]) >= 65536
    rt = [r for r in recs if r[0] == "K" and "k_router_route" in r[5] and "ILi1E" in r[5]]
    rt = rt[first:first + count + 1 or None]
    t0, t1 = rt[0][1], rt[-1][1]
    n = (t1 - t0) // 100 + 1                  # 0.1 us cells
    comp, copy = [None] * n, [0] * n
    for r in recs:
        if r[2] < t0 or r[1] > t1:
            continue
        a, b = max(0, (r[1] - t0) // 100), min(n, (r[2] - t0) // 100)
        if r[0] == "K":
            k = kind(r[5])
            for i in range(a, b):
                comp[i] = comp[i] or k     # overlapping (PDL) launches: the first
        elif r[0] == "M" and big(r):
            for i in range(a, b):
                copy[i] = 1
    steps = count / 16
    idle = collections.Counter(comp[i] or "nothing (GPU idle)" for i in range(n) if not copy[i])
    print("%d MoE layers, %.1f us a token (16 layers), expert copies on the copy stream "
          "%.1f%% of it" % (count, n / 10 / steps, 100 * sum(copy) / n))
    print("copy stream idle, per token (us), while the compute stream runs:")
    for k, v in idle.most_common():
        print("  %-20s %7.1f" % (k, v / 10 / steps))
    kern = [r for r in recs if r[0] == "K" and t0 <= r[1] <= t1]
    copies = [r for r in recs if r[0] == "M" and big(r) and t0 <= r[1] <= t1]
    print("host-to-GPU bytes a token in these layers: %.1f MiB (%d copies)" % (
        sum(int(c[5].split()[1]) for c in copies) / steps / 2**20, len(copies)))
    gus = [r for r in kern if "moe_gu" in r[5]]
    comb = [r for r in kern if "combine" in r[5]]
    d = collections.defaultdict(list)
    for i in range(len(rt) - 1):
        a, b = rt[i][2], rt[i + 1][1]
        cs = [c for c in copies if a <= c[1] < b]
        g = [k for k in gus if a <= k[1] < b]
        cb = [k for k in comb if a <= k[1] < b]
        if not g or not cb:
            continue
        if cs:
            last = max(c[2] for c in cs)
            after = [k for k in g if k[1] >= last]
            d["with copies: router end to first copy start"].append(cs[0][1] - a)
            if after:
                d["with copies: last copy end to its expert's start"].append(after[0][1] - last)
            d["with copies: last copy end to next router end"].append(rt[i + 1][2] - last)
        else:
            d["without: router end to experts' start"].append(g[0][1] - a)
            d["without: router end to next router end"].append(rt[i + 1][2] - a)
        d["combine start to next router end"].append(rt[i + 1][2] - cb[-1][1])
    print("per MoE layer (us):")
    for k, v in sorted(d.items()):
        print("  %-50s n %4d  mean %6.1f  median %6.1f" % (k, len(v), st.mean(v) / 1e3,
                                                            st.median(v) / 1e3))


main()
