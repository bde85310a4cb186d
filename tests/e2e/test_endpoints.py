"""Every endpoint of `moed serve` against the mixtral fixture, compared with
the one-shot `moed run` on the same model."""
import json
import os
import unittest

import moedtest as mt

PROMPTS = [[5, 6, 7], [1], [100, 20, 3, 44, 159], [0, 0, 0, 0], [7] * 12, [158, 2]]


class Endpoints(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = mt.fixture_model("mixtral_f32")
        with open(os.path.join(cls.model, "config.json")) as f:
            cls.cfg = json.load(f)
        cls.vocab = cls.cfg["vocab_size"]
        cls.refs = {}
        cls.d = mt.Daemon(cls.model, name="endpoints").start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.d.stop()
        if rc != 0:
            raise AssertionError("moed serve exited %d on SIGTERM:\n%s" % (rc, cls.d.tail()))

    def ref(self, prompt, max_tokens):
        key = (tuple(prompt), max_tokens)
        if key not in self.refs:
            self.refs[key] = mt.reference(self.model, prompt, max_tokens)
        return self.refs[key]

    # ---- GET ----------------------------------------------------------

    def test_health(self):
        r = self.d.get("/health")
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.headers["content-type"].startswith("application/json"))
        j = r.json()
        self.assertEqual(j["status"], "ok")
        self.assertIs(j["worker"], True)
        self.assertEqual(j["predictor"], "up")
        for k in ("worker_pid", "predictor_pid"):
            self.assertIsInstance(j[k], int)
            self.assertGreater(j[k], 0)
            os.kill(j[k], 0)  # a live process
        self.assertNotEqual(j["worker_pid"], j["predictor_pid"])

    def test_models(self):
        r = self.d.get("/v1/models")
        self.assertEqual(r.status, 200, r)
        j = r.json()
        self.assertEqual(j["object"], "list")
        self.assertEqual(len(j["data"]), 1)
        m = j["data"][0]
        self.assertEqual(m["id"], os.path.basename(self.model))
        self.assertEqual(m["object"], "model")
        moe = m["moe"]
        self.assertEqual(moe["family"], "mixtral")
        self.assertEqual(moe["layers"], self.cfg["num_hidden_layers"])
        self.assertEqual(moe["moe_layers"], self.cfg["num_hidden_layers"])
        self.assertEqual(moe["experts"], self.cfg["num_local_experts"])
        self.assertEqual(moe["top_k"], self.cfg["num_experts_per_tok"])
        self.assertEqual(moe["vocab_size"], self.vocab)

    def test_experts(self):
        before = self.d.get("/v1/experts")
        self.assertEqual(before.status, 200, before)
        self.d.complete([9, 8, 7], max_tokens=4)
        r = self.d.get("/v1/experts")
        self.assertEqual(r.status, 200, r)
        j = r.json()
        n_exp = self.cfg["num_local_experts"]
        self.assertEqual(j["model"], os.path.basename(self.model))
        self.assertEqual(j["experts_per_layer"], n_exp)
        self.assertEqual(j["policy"], "lru")
        self.assertIs(j["scan_resistant"], True)
        self.assertGreater(j["slots"], 0)
        self.assertGreater(j["expert_bytes"], 0)
        self.assertGreater(j["batches"], before.json()["batches"])
        self.assertEqual([x["layer"] for x in j["layers"]],
                         list(range(self.cfg["num_hidden_layers"])))
        uses = 0
        for layer in j["layers"]:
            for k in ("hits", "misses", "prefetched_used", "prefetched_unused",
                      "prefetched_late", "prefetch_dropped", "evictions", "loads",
                      "bytes_loaded", "host_runs"):
                self.assertIsInstance(layer[k], int, k)
                self.assertGreaterEqual(layer[k], 0, k)
            self.assertGreaterEqual(layer["stall_seconds"], 0)
            res = layer["resident"]
            self.assertEqual(res, sorted(set(res)))
            self.assertTrue(all(0 <= x < n_exp for x in res), res)
            self.assertLessEqual(len(res), j["slots"])
            self.assertGreater(len(res), 0)   # the request just used some
            self.assertEqual(layer["bytes_loaded"], layer["loads"] * j["expert_bytes"])
            uses += layer["hits"] + layer["misses"]
        # 3 prompt tokens + 3 decode steps, top-2, every layer.
        self.assertGreaterEqual(uses, 6 * 2 * len(j["layers"]))

    def test_metrics(self):
        m0 = self.d.metrics()
        r = self.d.get("/metrics")
        self.assertTrue(r.headers["content-type"].startswith("text/plain"), r.headers)
        self.d.complete([5, 6, 7], max_tokens=5)
        self.d.complete([8, 9], max_tokens=3)
        self.d.post("/v1/completions", {"prompt": [1], "max_tokens": "x"})
        m1 = self.d.metrics()
        req = "moed_http_requests_total"
        ep = "/v1/completions"
        self.assertEqual(mt.metric(m1, req, endpoint=ep, code="200") -
                         mt.metric(m0, req, endpoint=ep, code="200"), 2)
        self.assertEqual(mt.metric(m1, req, endpoint=ep, code="400") -
                         mt.metric(m0, req, endpoint=ep, code="400"), 1)
        self.assertGreaterEqual(mt.metric(m1, req, endpoint="/metrics", code="200"),
                                mt.metric(m0, req, endpoint="/metrics", code="200") + 1)
        self.assertEqual(mt.metric(m1, "moed_generated_tokens_total") -
                         mt.metric(m0, "moed_generated_tokens_total"), 8)
        self.assertEqual(mt.metric(m1, "moed_prompt_tokens_total") -
                         mt.metric(m0, "moed_prompt_tokens_total"), 5)
        self.assertGreaterEqual(
            mt.metric(m1, "moed_http_request_duration_seconds_count", endpoint=ep) -
            mt.metric(m0, "moed_http_request_duration_seconds_count", endpoint=ep), 2)
        self.assertEqual(mt.metric(m1, "moed_up"), 1)
        # every message decoded: the malformed counters exist and stay at 0
        for name in ("moed_front_malformed_messages_total",
                     "moed_worker_malformed_messages_total"):
            self.assertIn((name, frozenset()), m1, name)
            self.assertEqual(mt.metric(m1, name), 0)
        self.assertGreater(mt.metric(m1, "moed_cache_slots"), 0)
        for layer in range(self.cfg["num_hidden_layers"]):
            for name in ("moed_cache_hits_total", "moed_cache_misses_total",
                         "moed_cache_evictions_total", "moed_cache_loads_total",
                         "moed_cache_loaded_bytes_total", "moed_cache_stall_seconds_total",
                         "moed_cache_prefetched_used_total",
                         "moed_cache_prefetched_unused_total",
                         "moed_cache_prefetched_late_total",
                         "moed_cache_prefetch_dropped_total",
                         "moed_cache_host_runs_total"):
                self.assertIn((name, frozenset({"layer": str(layer)}.items())), m1,
                              "%s{layer=%d}" % (name, layer))
            hm = [mt.metric(m, "moed_cache_hits_total", layer=str(layer)) +
                  mt.metric(m, "moed_cache_misses_total", layer=str(layer)) for m in (m0, m1)]
            self.assertGreater(hm[1], hm[0])
        for state in ("used", "late", "none"):
            self.assertIn(("moed_predictor_tables_total", frozenset({"state": state}.items())),
                          m1)

    # ---- completions --------------------------------------------------

    def check_completion(self, j, n_choices, prompt_tokens, completion_tokens):
        self.assertTrue(j["id"].startswith("cmpl-"), j["id"])
        self.assertEqual(j["object"], "text_completion")
        self.assertIsInstance(j["created"], int)
        self.assertEqual(j["model"], os.path.basename(self.model))
        self.assertEqual([c["index"] for c in j["choices"]], list(range(n_choices)))
        self.assertEqual(j["usage"], {"prompt_tokens": prompt_tokens,
                                      "completion_tokens": completion_tokens,
                                      "total_tokens": prompt_tokens + completion_tokens})
        for k in ("hits", "misses", "bytes_loaded", "predicted_recall"):
            self.assertIn(k, j["moe"])

    def test_completion_greedy_equals_run(self):
        for p in PROMPTS:
            for n in (1, 10):
                with self.subTest(prompt=p, max_tokens=n):
                    j = self.d.complete(p, max_tokens=n)
                    self.check_completion(j, 1, len(p), n)
                    c = j["choices"][0]
                    self.assertEqual(c["tokens"], self.ref(p, n)["tokens"])
                    self.assertEqual(c["finish_reason"], "length")

    def test_completion_zero_tokens(self):
        j = self.d.complete([5, 6, 7], max_tokens=0)
        self.check_completion(j, 1, 3, 0)
        self.assertEqual(j["choices"][0]["tokens"], [])

    def test_completion_batch(self):
        j = self.d.complete(PROMPTS[:4], max_tokens=7)
        self.check_completion(j, 4, sum(len(p) for p in PROMPTS[:4]), 4 * 7)
        for i, p in enumerate(PROMPTS[:4]):
            self.assertEqual(j["choices"][i]["tokens"], self.ref(p, 7)["tokens"], p)

    def test_completion_stop_token(self):
        ref = self.ref([5, 6, 7], 10)["tokens"]
        stop = ref[3]
        cut = ref.index(stop)
        j = self.d.complete([5, 6, 7], max_tokens=10, stop=[stop])
        c = j["choices"][0]
        self.assertEqual(c["tokens"], ref[:cut])
        self.assertEqual(c["finish_reason"], "stop")
        self.assertEqual(j["usage"]["completion_tokens"], cut)

    def test_seed_reproducible(self):
        body = dict(max_tokens=16, temperature=1.5, top_p=0.9)
        a = self.d.complete([5, 6, 7], seed=42, **body)["choices"][0]["tokens"]
        b = self.d.complete([5, 6, 7], seed=42, **body)["choices"][0]["tokens"]
        self.assertEqual(a, b)
        self.assertEqual(len(a), 16)
        # Batched with other work, the same seed still gives the same tokens.
        j = mt.in_threads([lambda s=s: self.d.complete([5, 6, 7], seed=s, **body)
                           for s in (42, 1, 2, 3, 4)])
        outs = [x["choices"][0]["tokens"] for x in j]
        self.assertEqual(outs[0], a)
        # Sampling does sample: five seeds do not all agree.
        self.assertGreater(len({tuple(o) for o in outs}), 1, outs)
        # And it is the same sampler as `moed run` with that seed.
        run = mt.run_moed(["run", "--model", self.model, "--tokens", "5,6,7",
                           "--max-tokens", "16", "--temperature", "1.5", "--top-p", "0.9",
                           "--seed", "42"]).stdout.decode().split()
        self.assertEqual([int(t) for t in run], a)

    # ---- forward ------------------------------------------------------

    def test_forward_logits_equal_run(self):
        seqs = PROMPTS[:3]
        r = self.d.post("/v1/forward", {"sequences": seqs})
        self.assertEqual(r.status, 200, r)
        res = r.json()["results"]
        self.assertEqual(len(res), len(seqs))
        for s, x in zip(seqs, res):
            ref = self.ref(s, 1)["last_logits"]
            self.assertEqual(len(x["logits"]), self.vocab)
            worst = max(abs(a - b) for a, b in zip(x["logits"], ref))
            self.assertLess(worst, 1e-5, s)
            self.assertNotIn("routes", x)

    def test_forward_prompt_form(self):
        r = self.d.post("/v1/forward", {"prompt": [5, 6, 7], "top_n": 2})
        self.assertEqual(r.status, 200, r)
        top = r.json()["results"][0]["top"]
        self.assertEqual([t["id"] for t in top], self.ref([5, 6, 7], 1)["tokens"][:1] +
                         [top[1]["id"]])

    def test_forward_top_n_and_routes(self):
        seqs = [[5, 6, 7], [1], [100, 20, 3, 44, 159]]
        r = self.d.post("/v1/forward", {"sequences": seqs, "top_n": 3, "return_routes": True})
        self.assertEqual(r.status, 200, r)
        res = r.json()["results"]
        for s, x in zip(seqs, res):
            ref = self.ref(s, 1)
            logits = ref["last_logits"]
            order = sorted(range(self.vocab), key=lambda i: (-logits[i], i))[:3]
            self.assertEqual([t["id"] for t in x["top"]], order, s)
            for t in x["top"]:
                self.assertAlmostEqual(t["logit"], logits[t["id"]], delta=1e-5)
            self.assertNotIn("logits", x)
            self.assertEqual(x["routes"], ref["routes"], s)
            self.assertEqual(len(x["routes"]), self.cfg["num_hidden_layers"])
            self.assertEqual(len(x["routes"][0]), len(s))
            # The greedy next token is the top-1.
            self.assertEqual(x["top"][0]["id"], ref["tokens"][0])

    # ---- streaming ----------------------------------------------------

    def check_stream(self, prompts, max_tokens):
        body = {"prompt": prompts, "max_tokens": max_tokens, "temperature": 0}
        status, ev = mt.stream(self.d.port, body)
        self.assertEqual(status, 200, ev)
        self.assertEqual(ev[-1], "[DONE]")
        self.assertEqual(ev.count("[DONE]"), 1)
        usage = ev[-2]
        chunks = ev[:-2]
        multi = isinstance(prompts[0], list)
        plist = prompts if multi else [prompts]
        self.assertEqual(usage["choices"], [])
        self.assertEqual(usage["usage"]["completion_tokens"], len(plist) * max_tokens)
        self.assertEqual(usage["usage"]["prompt_tokens"], sum(len(p) for p in plist))
        self.assertIn("moe", usage)
        got = {i: [] for i in range(len(plist))}
        finish = {}
        for c in chunks:
            self.assertEqual(c["object"], "text_completion")
            self.assertNotIn("usage", c)
            self.assertEqual(len(c["choices"]), 1, c)
            ch = c["choices"][0]
            i = ch["index"]
            self.assertNotIn(i, finish, "a chunk after the choice finished")
            # One event per token.
            self.assertLessEqual(len(ch["tokens"]), 1, c)
            if not ch["tokens"]:
                self.assertIsNotNone(ch["finish_reason"], c)
            got[i] += ch["tokens"]
            if ch["finish_reason"] is not None:
                finish[i] = ch["finish_reason"]
        self.assertEqual(len(chunks), len(plist) * max_tokens)
        whole = self.d.complete(prompts, max_tokens=max_tokens)
        for i in range(len(plist)):
            self.assertEqual(got[i], whole["choices"][i]["tokens"], i)
            self.assertEqual(got[i], self.ref(plist[i], max_tokens)["tokens"])
            self.assertEqual(finish.get(i), "length")
        ids = {c["id"] for c in chunks} | {usage["id"]}
        self.assertEqual(len(ids), 1, ids)

    def test_stream_one(self):
        self.check_stream([5, 6, 7], 9)

    def test_stream_batch(self):
        self.check_stream([[5, 6, 7], [1], [44, 45]], 6)

    # ---- concurrency --------------------------------------------------

    def test_concurrent_equals_sequential(self):
        prompts = [[(i * 37 + j * 11) % self.vocab for j in range(1 + i % 5)]
                   for i in range(16)]
        seq = [self.d.complete(p, max_tokens=12)["choices"][0]["tokens"] for p in prompts]
        par = mt.in_threads([lambda p=p: self.d.complete(p, max_tokens=12)
                             for p in prompts])
        for p, a, b in zip(prompts, seq, par):
            self.assertEqual(b["choices"][0]["tokens"], a, p)
        # And both agree with the one-shot reference.
        for p in prompts[:4]:
            self.assertEqual(seq[prompts.index(p)], self.ref(p, 12)["tokens"])


class LongPrompts(unittest.TestCase):
    """The engine runs rows in chunks (256 rows); a sequence's logits must
    not depend on where the chunk boundaries fall, i.e. on what else is in
    its batch or on its length past a chunk."""

    @classmethod
    def setUpClass(cls):
        cls.model = mt.fixture_model("mixtral_f32")
        cls.d = mt.Daemon(cls.model, name="long").start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.d.stop()
        if rc != 0:
            raise AssertionError("moed serve exited %d:\n%s" % (rc, cls.d.tail()))

    def forward(self, seqs):
        r = self.d.post("/v1/forward", {"sequences": seqs})
        self.assertEqual(r.status, 200, r)
        return [x["logits"] for x in r.json()["results"]]

    def assert_close(self, a, b, what):
        worst = max(abs(x - y) for x, y in zip(a, b))
        self.assertLess(worst, 1e-4, what)

    def test_batch_does_not_change_logits(self):
        p = [(i * 31 + 7) % 160 for i in range(200)]
        alone = self.forward([p])[0]
        # p's rows now straddle the first chunk boundary.
        with_others = self.forward([[3] * 100, p])[1]
        self.assert_close(alone, with_others, "200-token prompt after a 100-token one")

    def test_prompt_longer_than_a_chunk(self):
        p = [(i * 17 + 3) % 160 for i in range(300)]
        a = self.forward([p])[0]
        b = self.forward([[9] * 50, p])[1]
        self.assert_close(a, b, "300-token prompt alone and after a 50-token one")
        # Greedy: the first generated token is the forward's argmax.
        j = self.d.complete(p, max_tokens=1)
        self.assertEqual(j["choices"][0]["tokens"], [max(range(160), key=lambda i: a[i])])


if __name__ == "__main__":
    mt.main()
