"""predictor.mode=exact stays exact: with a 3-slot expert cache (so experts
are evicted and reloaded all the time) and each predictor, the daemon's
greedy output, logits and routes equal `moed run` with every expert
resident."""
import json
import os
import threading
import unittest

import moedtest as mt

SLOTS = 3
N_TOK = 12
_models = {}
_refs = {}


def model(name):
    if name not in _models:
        if name == "skewed":
            _models[name] = mt.make_model("--family", "qwen3_moe", "--layers", "3",
                                          "--experts", "16", "--hidden", "64",
                                          "--vocab", "256", "--skewed", name="skewed")
        else:
            _models[name] = mt.fixture_model(name)
    return _models[name]


def ref(name, prompt):
    key = (name, tuple(prompt))
    if key not in _refs:
        _refs[key] = mt.reference(model(name), prompt, N_TOK)
    return _refs[key]


class ExactBase:
    MODEL = "mixtral_f32"
    KIND = "freq"
    POLICY = "lru"

    @classmethod
    def setUpClass(cls):
        m = model(cls.MODEL)
        with open(os.path.join(m, "config.json")) as f:
            vocab = json.load(f)["vocab_size"]
        cls.prompts = [[(i * 53 + j * 7 + 1) % vocab for j in range(1 + i % 6)]
                       for i in range(6)]
        # A table normally comes in well under a millisecond; 200 ms keeps
        # a loaded test machine from turning "used" into "late".
        cls.d = mt.Daemon(m, name="%s-%s" % (cls.MODEL, cls.KIND),
                          sets=["cache.slots=%d" % SLOTS, "predictor.kind=" + cls.KIND,
                                "cache.policy=" + cls.POLICY,
                                "predictor.wait_ms=200"]).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.d.stop()
        if rc != 0:
            raise AssertionError("moed serve exited %d:\n%s" % (rc, cls.d.tail()))

    def want(self, p):
        return ref(self.MODEL, p)["tokens"]

    def test_greedy_equals_all_resident(self):
        e = self.d.get("/v1/experts").json()
        self.assertEqual(e["slots"], SLOTS)
        self.assertEqual(e["policy"], self.POLICY)
        # One at a time.
        for p in self.prompts:
            self.assertEqual(self.d.complete(p, max_tokens=N_TOK)["choices"][0]["tokens"],
                             self.want(p), p)
        # Together, batched by the front in any grouping.
        par = mt.in_threads([lambda p=p: self.d.complete(p, max_tokens=N_TOK)
                             for p in self.prompts])
        for p, j in zip(self.prompts, par):
            self.assertEqual(j["choices"][0]["tokens"], self.want(p), p)
        # One request, several prompts.
        j = self.d.complete(self.prompts, max_tokens=N_TOK)
        for p, c in zip(self.prompts, j["choices"]):
            self.assertEqual(c["tokens"], self.want(p), p)
        # Streamed.
        status, ev = mt.stream(self.d.port, {"prompt": self.prompts[2], "max_tokens": N_TOK,
                                             "temperature": 0})
        self.assertEqual(status, 200)
        self.assertEqual([t for x in ev[:-2] for t in x["choices"][0]["tokens"]],
                         self.want(self.prompts[2]))

    def test_forward_equals_all_resident(self):
        r = self.d.post("/v1/forward", {"sequences": self.prompts, "return_routes": True})
        self.assertEqual(r.status, 200, r)
        for p, x in zip(self.prompts, r.json()["results"]):
            rf = ref(self.MODEL, p)
            worst = max(abs(a - b) for a, b in zip(x["logits"], rf["last_logits"]))
            self.assertLess(worst, 1e-5, p)
            self.assertEqual(x["routes"], rf["routes"], p)

    def test_zz_cache_was_constrained(self):
        # Runs last (name order): after the traffic above.
        e = self.d.get("/v1/experts").json()
        resident = sum(len(x["resident"]) for x in e["layers"])
        self.assertLessEqual(resident, SLOTS)
        self.assertGreater(sum(x["evictions"] for x in e["layers"]), 0)
        self.assertGreater(sum(x["misses"] for x in e["layers"]), 0)
        m = self.d.metrics()
        used = mt.metric(m, "moed_predictor_tables_total", state="used")
        if self.KIND == "none":
            self.assertEqual(used, 0)
            self.assertGreater(mt.metric(m, "moed_predictor_tables_total", state="none"), 0)
            self.assertEqual(self.d.health()["predictor"], "off")
        else:
            self.assertGreater(used, 0, "the predictor never delivered a table in time")


class MixtralFreq(ExactBase, unittest.TestCase):
    KIND = "freq"


class MixtralCepr(ExactBase, unittest.TestCase):
    KIND = "cepr"
    POLICY = "fifo"


class MixtralNone(ExactBase, unittest.TestCase):
    KIND = "none"
    POLICY = "lfu"


class Qwen3ShardedFreq(ExactBase, unittest.TestCase):
    MODEL = "qwen3moe_f32_sharded"
    KIND = "freq"


class OlmoeBf16Cepr(ExactBase, unittest.TestCase):
    MODEL = "olmoe_bf16"
    KIND = "cepr"
    POLICY = "lfuda"


class SkewedCepr(ExactBase, unittest.TestCase):
    MODEL = "skewed"
    KIND = "cepr"


class TablesNotLost(unittest.TestCase):
    """Every batch gets its table when batches come back to back (one
    request a batch, 16 at once): none may be late with a generous wait."""

    def test_back_to_back_batches(self):
        m = model("mixtral_f32")
        d = mt.Daemon(m, name="tables", sets=["predictor.kind=freq", "predictor.wait_ms=500",
                                               "batch.max_wait_us=0"]).start()
        try:
            m0 = d.metrics()
            mt.in_threads([lambda i=i: d.complete([1, 2, 3 + i], max_tokens=2)
                           for i in range(16)])
            m1 = d.metrics()
            n = {s: mt.metric(m1, "moed_predictor_tables_total", state=s) -
                 mt.metric(m0, "moed_predictor_tables_total", state=s)
                 for s in ("used", "late", "none")}
            self.assertEqual(n["used"] + n["late"] + n["none"], 16, n)
            self.assertEqual(n["late"], 0, "tables lost between predictor and worker: %r" % n)
        finally:
            rc = d.stop()
        self.assertEqual(rc, 0)


class ScanResistant(unittest.TestCase):
    """cache.scan_resistant through the daemon: with half the experts' slots
    and no predictor, a long prompt after another finds some of the first's
    experts still resident (its per-request moe counters say so); with the
    key off LRU keeps none of them. Same tokens either way."""

    def second_prompt(self, on):
        m = model("mixtral_f32")
        with open(os.path.join(m, "config.json")) as f:
            c = json.load(f)
        slots = c["num_hidden_layers"] * c["num_local_experts"] // 2
        d = mt.Daemon(m, name="scan-%d" % on,
                      sets=["cache.slots=%d" % slots, "predictor.kind=none",
                            "cache.scan_resistant=%s" % ("true" if on else "false")]).start()
        try:
            self.assertIs(d.get("/v1/experts").json()["scan_resistant"], on)
            prompts = [[(i * 31 + j * 7 + 1) % c["vocab_size"] for j in range(40)]
                       for i in range(2)]
            out = [d.complete(p, max_tokens=2) for p in prompts]
        finally:
            rc = d.stop()
        self.assertEqual(rc, 0)
        for p, j in zip(prompts, out):
            self.assertEqual(j["choices"][0]["tokens"], ref("mixtral_f32", p)["tokens"][:2])
        # A load counts once a call in bytes_loaded, however many of the
        # prompt's rows use it: at most every expert, in each of the two
        # calls (the prefill, one decode step), against a miss a row.
        eb = 3 * c["hidden_size"] * c["intermediate_size"] * 4
        n = c["num_hidden_layers"] * c["num_local_experts"]
        moe = out[1]["moe"]
        self.assertEqual(moe["bytes_loaded"] % eb, 0, moe)
        self.assertLessEqual(moe["bytes_loaded"], 2 * n * eb, moe)
        self.assertLess(moe["bytes_loaded"], moe["misses"] * eb, moe)
        return moe

    def test_second_prompt_hits(self):
        on, off = self.second_prompt(True), self.second_prompt(False)
        self.assertGreater(on["hits"], off["hits"], (on, off))
        self.assertLess(on["bytes_loaded"], off["bytes_loaded"], (on, off))


class PrefillChunks(unittest.TestCase):
    """batch.prefill_chunks: a 1200-token prompt admitted while another
    sequence decodes runs in 512-token calls with decode steps between
    (moed_prefill_yields_total counts them); with 0, in one call. Both ways
    both give the all-resident tokens."""

    def run_pair(self, chunks):
        m = model("skewed")
        long_p = [(j * 13 + 5) % 256 for j in range(1200)]
        short_p = [3, 1, 4]
        d = mt.Daemon(m, name="chunks-%d" % chunks,
                      sets=["batch.prefill_chunks=%d" % chunks]).start()
        got, started = {}, threading.Event()
        try:
            def long_req():
                started.wait(60)
                got["long"] = d.complete(long_p, max_tokens=2)
            t = threading.Thread(target=long_req, daemon=True)
            t.start()
            status, ev = mt.stream(d.port, {"prompt": short_p, "max_tokens": 2000,
                                            "temperature": 0},
                                   on_event=lambda e: started.set())
            t.join(120)
            yields = mt.metric(d.metrics(), "moed_prefill_yields_total")
        finally:
            rc = d.stop()
        self.assertEqual(rc, 0)
        self.assertEqual(status, 200)
        self.assertEqual([x for e in ev[:-2] for x in e["choices"][0]["tokens"]],
                         mt.reference(m, short_p, 2000)["tokens"])
        self.assertEqual(got["long"]["choices"][0]["tokens"],
                         mt.reference(m, long_p, 2)["tokens"])
        return yields

    def test_yields_between_chunks(self):
        self.assertGreaterEqual(self.run_pair(1), 1)
        self.assertEqual(self.run_pair(0), 0)

    def test_lone_prompt_one_call(self):
        """With nothing running there is no one to yield to: a lone
        1200-token prompt runs in one engine call (on CUDA its chunks then
        share each layer's expert loads), a 3-token one and that prompt in
        one request in three (the short one's, then a chunk a call with the
        short one decoding); the reference's tokens."""
        m = model("skewed")
        short_p, long_p = [3, 1, 4], [(j * 13 + 5) % 256 for j in range(1200)]
        d = mt.Daemon(m, name="lone", sets=["batch.prefill_chunks=1"]).start()
        try:
            got = d.complete(long_p, max_tokens=2)
            calls = mt.metric(d.metrics(), "moed_prefill_calls_total")
            status, _ = mt.stream(d.port, {"prompt": [short_p, long_p], "max_tokens": 4,
                                           "temperature": 0})
            calls2 = mt.metric(d.metrics(), "moed_prefill_calls_total") - calls
        finally:
            rc = d.stop()
        self.assertEqual(rc, 0)
        self.assertEqual(status, 200)
        self.assertEqual(got["choices"][0]["tokens"], mt.reference(m, long_p, 2)["tokens"])
        self.assertEqual((calls, calls2), (1, 3))

    def test_short_prompt_runs_during_long_one(self):
        """A short and a 1200-token prompt in one request (one batch): the
        short one's first token comes after its own prefill call and it
        decodes in the steps between the long one's calls, so it has tokens
        before the long one's first; with 0, only its first token."""
        m = model("skewed")
        short_p, long_p = [3, 1, 4], [(j * 13 + 5) % 256 for j in range(1200)]
        for chunks, least in ((1, 2), (0, 1)):
            d = mt.Daemon(m, name="group-%d" % chunks,
                          sets=["batch.prefill_chunks=%d" % chunks]).start()
            try:
                status, ev = mt.stream(d.port, {"prompt": [short_p, long_p], "max_tokens": 40,
                                                "temperature": 0})
            finally:
                rc = d.stop()
            self.assertEqual(rc, 0)
            self.assertEqual(status, 200)
            got, before = {0: [], 1: []}, None
            for e in ev:
                if not isinstance(e, dict):
                    continue
                for c in e["choices"]:
                    if c["index"] == 1 and before is None and c["tokens"]:
                        before = len(got[0])
                    got[c["index"]] += c["tokens"]
            self.assertEqual(got[0], mt.reference(m, short_p, 40)["tokens"])
            self.assertEqual(got[1], mt.reference(m, long_p, 40)["tokens"])
            if chunks:
                self.assertGreaterEqual(before, least, (chunks, before))
            else:
                self.assertEqual(before, least, (chunks, before))


if __name__ == "__main__":
    mt.main()
