"""Predictors on a model made with skewed routing (moed mkmodel --skewed):
the routing `moed run --trace` records, replayed through `moed eval-predictor`,
is predicted better by freq and cepr than by popularity alone."""
import json
import os
import random
import unittest

import moedtest as mt


class SkewedModel(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = mt.make_model("--skewed", name="skewed")
        cls.trace = os.path.join(mt.tmpdir(), "routing.trc")
        rnd = random.Random(3)
        prompt = ",".join(str(rnd.randrange(512)) for _ in range(64))
        mt.run_moed(["run", "--model", cls.model, "--tokens", prompt, "--max-tokens", "300",
                     "--temperature", "1", "--seed", "1", "--trace", cls.trace])

    def evaluate(self, predictor, slots=16, policy="lru"):
        out = mt.run_moed(["eval-predictor", "--trace", self.trace, "--predictor", predictor,
                           "--policy", policy, "--slots", str(slots), "--json"]).stdout
        return json.loads(out)

    def test_freq_and_cepr_beat_popularity(self):
        for slots in (8, 16, 32):  # 12.5%, 25%, 50% of the 64 experts
            pop = self.evaluate("pop", slots)
            for p in ("freq", "cepr"):
                r = self.evaluate(p, slots)
                with self.subTest(predictor=p, slots=slots):
                    self.assertGreater(r["recall"], pop["recall"], (r, pop))
                    self.assertEqual(r["scored_tokens"], pop["scored_tokens"])

    def test_oracle_is_exact(self):
        r = self.evaluate("oracle")
        self.assertEqual(r["recall"], 1.0)
        self.assertEqual(r["hit_rate"], 1.0)

    def test_bytes_with_model(self):
        out = mt.run_moed(["eval-predictor", "--trace", self.trace, "--predictor", "cepr",
                           "--policy", "lfu", "--budget-mib", "4", "--model", self.model,
                           "--json"]).stdout
        r = json.loads(out)
        with open(os.path.join(self.model, "config.json")) as f:
            cfg = json.load(f)
        expert_bytes = 3 * cfg["hidden_size"] * cfg["intermediate_size"] * 4
        self.assertAlmostEqual(r["bytes_per_token"], r["loads_per_token"] * expert_bytes,
                               delta=expert_bytes * 1e-3)


class TrustMode(unittest.TestCase):
    """predictor.mode trust (SiDA): predictions replace the router; the answer
    reports its agreement with the router, and the daemon keeps serving."""

    def test_trust_reports_fidelity(self):
        model = mt.make_model("--skewed", name="trust")
        d = mt.Daemon(model, name="trust", sets=["predictor.mode=trust",
                                                 "predictor.kind=cepr"]).start()
        try:
            recalls = []
            for i in range(6):  # the worker's tables learn online
                r = d.complete([1 + i, 2, 3, 4, 5, 6, 7, 8], max_tokens=24)
                self.assertEqual(len(r["choices"][0]["tokens"]), 24)
                rec = r["moe"]["predicted_recall"]
                self.assertIsNotNone(rec)
                self.assertGreaterEqual(rec, 0.0)
                self.assertLessEqual(rec, 1.0)
                recalls.append(rec)
            self.assertGreater(max(recalls), 0.0, recalls)
            m = d.metrics()
            self.assertGreater(mt.metric(m, "moed_predictor_recall"), 0.0)
            self.assertIn("mode trust", d.log())
        finally:
            self.assertEqual(d.stop(), 0)

    def test_trust_needs_a_predictor(self):
        model = mt.make_model(name="trust-none")
        d = mt.Daemon(model, name="trust-none", sets=["predictor.mode=trust",
                                                      "predictor.kind=none"])
        d.start(wait=False)
        self.assertEqual(d.wait_exit(), 1, d.tail())
        self.assertIn("trust needs a predictor", d.log())


if __name__ == "__main__":
    mt.main()
