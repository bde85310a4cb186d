import http.client, json, sys, threading, time, subprocess, os, urllib.request
# itl.py (session 24) with the backend, slots, vocabulary and context as arguments and a
# warm-up prompt first:
# python3 itl2.py MOED MODEL CHUNKS PORT BACKEND SLOTS VOCAB MAX_CTX
MOED, MODEL, chunks, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
backend, slots, vocab, max_ctx = sys.argv[5], sys.argv[6], int(sys.argv[7]), sys.argv[8]
rt = "/tmp/itl/rt%s" % chunks
p = subprocess.Popen([MOED, "serve", "--model", MODEL, "--set", "model.pack=%s.pack" % MODEL,
                      "--set", "http.listen=127.0.0.1:%d" % port, "--set", "batch.prefill_chunks=" + chunks,
                      "--set", "runtime.dir=" + rt, "--set", "cache.slots=" + slots,
                      "--set", "device.backend=" + backend, "--set", "model.max_ctx=" + max_ctx],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(600):
    try:
        h = json.load(urllib.request.urlopen("http://127.0.0.1:%d/health" % port))
        if h.get("worker") is True and h.get("predictor") == "up": break
    except Exception: pass
    time.sleep(0.1)
long_p = [(j * 13 + 5) % vocab for j in range(2000)]
# A first prompt of as many tokens, so that the measured ones do not pay each expert's first
# load in the process (checksummed by reading the store).
warm = [(j * 7 + 11) % vocab for j in range(2000)]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
c.request("POST", "/v1/completions", body=json.dumps({"prompt": warm, "max_tokens": 1, "temperature": 0}))
c.getresponse().read()
started = threading.Event(); res = {}
def long_req():
    started.wait(60); time.sleep(0.05)
    t0 = time.time()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.request("POST", "/v1/completions", body=json.dumps({"prompt": long_p, "max_tokens": 1, "temperature": 0}))
    r = c.getresponse(); r.read(); res["long_s"] = time.time() - t0
t = threading.Thread(target=long_req); t.start()
c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
c.request("POST", "/v1/completions", body=json.dumps({"prompt": [3, 1, 4], "max_tokens": 300, "temperature": 0, "stream": True}))
r = c.getresponse(); times = []
while True:
    line = r.readline()
    if not line: break
    if line.startswith(b"data:"):
        times.append(time.time()); started.set()
        if b"[DONE]" in line: break
t.join()
gaps = sorted(b - a for a, b in zip(times, times[1:]))
m = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port).read().decode()
y = [l for l in m.splitlines() if l.startswith("moed_prefill_")]
print("prefill_chunks=%s: events %d, max gap %.1f ms, p50 gap %.2f ms, long prompt request %.1f ms, %s" % (
    chunks, len(times), 1000 * gaps[-1], 1000 * gaps[len(gaps) // 2], 1000 * res["long_s"], " ".join(y)))
p.terminate(); p.wait()
