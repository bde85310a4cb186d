"""Bad input on the command line: `moed run` and `moed serve` answer with one
clear line and a non-zero exit, never a crash."""
import os
import unittest

import moedtest as mt


class Run(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = mt.fixture_model("mixtral_f32")   # vocab 160, no tokenizer

    def fails(self, args, code, *words):
        p = mt.run_moed(args, check=False)
        err = p.stderr.decode(errors="replace")
        self.assertEqual(p.returncode, code, err)
        lines = [l for l in err.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, err)
        for w in words:
            self.assertIn(w, err)

    def test_bad_tokens(self):
        run = ["run", "--model", self.model]
        self.fails(run + ["--tokens", "1,x"], 2, "--tokens")
        self.fails(run + ["--tokens", ""], 2, "--tokens")
        self.fails(run + ["--tokens", "5,160"], 2, "160", "vocabulary")
        self.fails(run, 2, "--tokens")
        self.fails(run + ["--tokens", "1", "--temperature", "hot"], 2, "--temperature")
        self.fails(run + ["--tokens", "1", "--top-p", "2"], 2, "--top-p")
        self.fails(run + ["--tokens", "1", "--frobnicate"], 2, "--frobnicate")

    def test_prompt_needs_a_tokenizer(self):
        self.fails(["run", "--model", self.model, "--prompt", "hi"], 1, "tokenizer.json")
        self.fails(["run", "--model", self.model, "--prompt", "hi", "--tokens", "1"], 2,
                   "not both")

    def test_trace_unwritable(self):
        self.fails(["run", "--model", self.model, "--tokens", "1,2", "--trace",
                    "/nonexistent-dir/t.trc"], 1, "--trace")

    def test_missing_model(self):
        self.fails(["run", "--model", "/nonexistent-model", "--tokens", "1"], 1,
                   "/nonexistent-model")


class Serve(unittest.TestCase):
    def test_oracle_refused(self):
        p = mt.run_moed(["serve", "--model", mt.fixture_model("mixtral_f32"),
                         "--predictor", "oracle", "--listen", "127.0.0.1:0",
                         "--set", "runtime.dir=" + mt.tmpdir()], check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("oracle", p.stderr.decode())

    def test_help(self):
        p = mt.run_moed(["serve", "--help"])
        self.assertIn("usage: moed serve", p.stdout.decode())


if __name__ == "__main__":
    mt.main()
