#!/usr/bin/env python3
"""A small load generator for `moed serve` (standard library only).

  serve_load.py URL CLIENTS REQUESTS MAX_TOKENS [--seed N]

CLIENTS threads each send REQUESTS greedy POST /v1/completions (8 prompt
token ids, max_tokens MAX_TOKENS) one after another.  Prints one JSON line:
requests by status, generated tokens (usage.completion_tokens of the 200s),
wall seconds, generated tokens/s, and latency p50/p99 in seconds.  Exits 1
if any request failed to get an answer at all (connection error)."""
import json
import sys
import threading
import time
import urllib.error
import urllib.request


def one(url, i, max_tokens):
    body = json.dumps({"prompt": [(i * 37 + j * 11) % 500 + 3 for j in range(8)],
                       "max_tokens": max_tokens, "temperature": 0}).encode()
    req = urllib.request.Request(url + "/v1/completions", body,
                                 {"Content-Type": "application/json"})
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            code, data = r.status, json.load(r)
    except urllib.error.HTTPError as e:
        code, data = e.code, {}
    except Exception as e:  # no answer at all
        return None, 0, time.perf_counter() - t0, repr(e)
    toks = data.get("usage", {}).get("completion_tokens", 0) if code == 200 else 0
    return code, toks, time.perf_counter() - t0, None


def main():
    url, clients, reqs, mt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    res, lock = [], threading.Lock()

    def client(c):
        for k in range(reqs):
            r = one(url, c * 1000 + k, mt)
            with lock:
                res.append(r)

    t0 = time.perf_counter()
    th = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in th:
        t.start()
    for t in th:
        t.join()
    wall = time.perf_counter() - t0
    codes = {}
    for code, _, _, _ in res:
        codes[str(code)] = codes.get(str(code), 0) + 1
    lat = sorted(r[2] for r in res)
    toks = sum(r[1] for r in res)
    out = {"clients": clients, "requests": len(res), "status": codes, "generated_tokens": toks,
           "seconds": round(wall, 3), "generated_tok_s": round(toks / wall, 2),
           "latency_p50_s": round(lat[len(lat) // 2], 4),
           "latency_p99_s": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 4),
           "errors": [r[3] for r in res if r[3]][:3]}
    print(json.dumps(out))
    return 1 if any(r[0] is None for r in res) else 0


if __name__ == "__main__":
    sys.exit(main())
