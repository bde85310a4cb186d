"""A short wrk load (below saturation) against POST /v1/completions on the
demo-size model: every answer 2xx, no socket errors, and the daemon still
exact and healthy afterwards.  Skipped, visibly, when wrk is not installed."""
import os
import re
import shutil
import subprocess
import unittest

import moedtest as mt

WRK = shutil.which("wrk")
BODY = '{"prompt": [1, 2, 3, 4], "max_tokens": 8, "temperature": 0}'
LUA = """wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
""" % BODY


def parse_wrk(out):
    """The numbers of wrk's report that the test asserts on."""
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(\w+), ", out, re.M)
    if not m:
        raise AssertionError("no request count in wrk's output:\n" + out)
    res = {"requests": int(m.group(1))}
    m = re.search(r"^Requests/sec:\s*([\d.]+)", out, re.M)
    res["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    res["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(int(x) for x in m.groups()) if m else 0
    res["socket_line"] = bool(m)
    m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    res["p99"] = m.group(0).strip() if m else None
    return res


@unittest.skipIf(WRK is None, "wrk not installed")
class Wrk(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = mt.make_model("--skewed", name="demo")
        cls.d = mt.Daemon(cls.model, name="wrk").start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.d.stop()
        if rc != 0:
            raise AssertionError("moed serve exited %d:\n%s" % (rc, cls.d.tail()))

    def test_wrk_completions(self):
        d = self.d
        want = mt.reference(self.model, [1, 2, 3, 4], 8)["tokens"]
        self.assertEqual(d.complete([1, 2, 3, 4], max_tokens=8)["choices"][0]["tokens"], want)
        lua = os.path.join(mt.tmpdir(), "post.lua")
        with open(lua, "w") as f:
            f.write(LUA)
        m0 = d.metrics()
        p = subprocess.run([WRK, "-t2", "-c8", "-d3s", "--latency", "--timeout", "10s",
                            "-s", lua, "http://127.0.0.1:%d/v1/completions" % d.port],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        out = p.stdout.decode(errors="replace")
        self.assertEqual(p.returncode, 0, out)
        res = parse_wrk(out)
        print("wrk: %d requests, %.1f req/s, p99 %s" % (res["requests"], res["rps"],
                                                        res["p99"]))
        self.assertGreater(res["requests"], 0, out)
        self.assertEqual(res["non2xx"], 0, out)
        self.assertFalse(res["socket_line"], out)
        self.assertEqual(res["socket_errors"], 0, out)
        self.assertIsNotNone(res["p99"], out)
        # The daemon counted them all as 200 (wrk's count leaves out the
        # requests still open when it stopped).
        m1 = d.metrics()
        ok = (mt.metric(m1, "moed_http_requests_total", endpoint="/v1/completions", code="200") -
              mt.metric(m0, "moed_http_requests_total", endpoint="/v1/completions", code="200"))
        self.assertGreaterEqual(ok, res["requests"])
        for code in ("400", "429", "500", "503"):
            self.assertEqual(mt.metric(m1, "moed_http_requests_total",
                                       endpoint="/v1/completions", code=code), 0, code)
        # And it is still healthy and exact.
        self.assertEqual(d.health()["status"], "ok")
        self.assertEqual(d.complete([1, 2, 3, 4], max_tokens=8)["choices"][0]["tokens"], want)


if __name__ == "__main__":
    mt.main()
