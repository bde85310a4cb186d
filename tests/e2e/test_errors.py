"""Every error answer of `moed serve`: 400 (JSON, fields, vocabulary, header
syntax), 401, 404, 405, 408, 413, 431, 429 -- each a JSON error naming what
was wrong, and the daemon healthy afterwards."""
import json
import os
import signal
import threading
import unittest

import moedtest as mt

VOCAB = 160  # mixtral_f32


def head(method, path, extra=b"", host=b"x"):
    return (method.encode() + b" " + path.encode() + b" HTTP/1.1\r\nHost: " + host +
            b"\r\n" + extra)


class Errors(unittest.TestCase):
    """One daemon with a 1 s request timeout and a 1 KiB body limit."""

    @classmethod
    def setUpClass(cls):
        cls.model = mt.fixture_model("mixtral_f32")
        cls.d = mt.Daemon(cls.model, name="errors",
                          sets=["http.request_timeout_s=1", "http.max_body_bytes=1024"]).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.d.stop()
        if rc != 0:
            raise AssertionError("moed serve exited %d:\n%s" % (rc, cls.d.tail()))

    def tearDown(self):
        # Whatever a test sent, the daemon still answers.
        self.assertEqual(self.d.get("/health").status, 200)

    def raw(self, data, shut=True):
        st, h, body = mt.raw_exchange(self.d.port, data, shut_write=shut)
        self.assertIsNotNone(st, "the server closed without an answer")
        return mt.Response(st, h, body)

    # ---- 400 ---------------------------------------------------------------

    def test_bad_json(self):
        for body in ('{"prompt": [1, 2', "not json", "[1, 2, 3]", "",
                     '{"prompt": [1], "prompt": [2]}'):
            with self.subTest(body=body):
                r = self.d.post("/v1/completions", body,
                                headers={"Content-Type": "application/json"})
                mt.assert_error(self, r, 400)
        r = self.d.post("/v1/forward", "{", headers={"Content-Type": "application/json"})
        mt.assert_error(self, r, 400, "JSON")

    def test_bad_fields(self):
        cases = [
            ({"prompt": [1], "max_tokens": -1}, "max_tokens"),
            ({"prompt": [1], "max_tokens": "8"}, "max_tokens"),
            ({"prompt": [1], "max_tokens": 1.5}, "max_tokens"),
            ({"prompt": [1], "temperature": -0.5}, "temperature"),
            ({"prompt": [1], "temperature": "hot"}, "temperature"),
            ({"prompt": [1], "top_p": 0}, "top_p"),
            ({"prompt": [1], "top_p": 1.5}, "top_p"),
            ({"prompt": [1], "seed": "x"}, "seed"),
            ({"prompt": [1], "stream": "yes"}, "stream"),
            ({"prompt": [1], "n": 2}, "n"),
            ({"prompt": [1], "echo": True}, "echo"),
            ({"prompt": [1], "stop": [[1], "x"]}, "stop"),
            ({"max_tokens": 4}, "prompt"),
            ({"prompt": []}, "prompt"),
            ({"prompt": [[1], []]}, "prompt[1]"),
            ({"prompt": [1, "a"]}, "prompt[1]"),
            ({"prompt": "hello"}, "prompt"),       # text needs a tokenizer
            ({"prompt": [1], "max_tokens": 100000}, "prompt[0]"),   # context length
        ]
        for body, field in cases:
            with self.subTest(body=body):
                e = mt.assert_error(self, self.d.post("/v1/completions", body), 400, field)
                self.assertEqual(e["type"], "invalid_request_error")
        fwd = [
            ({"sequences": [[1]], "top_n": -1}, "top_n"),
            ({"sequences": [[1]], "top_n": VOCAB + 1}, "top_n"),
            ({"sequences": [[1]], "return_routes": 1}, "return_routes"),
            ({"sequences": [[1]], "prompt": [[1]]}, "sequences"),
            ({"top_n": 2}, "sequences"),
        ]
        for body, field in fwd:
            with self.subTest(body=body):
                mt.assert_error(self, self.d.post("/v1/forward", body), 400, field)

    def test_token_outside_vocabulary(self):
        cases = [
            ("/v1/completions", {"prompt": [1, 2, VOCAB]}, "prompt[2]"),
            ("/v1/completions", {"prompt": [-1]}, "prompt[0]"),
            ("/v1/completions", {"prompt": [[1], [2, 3, 99999]]}, "prompt[1][2]"),
            ("/v1/completions", {"prompt": [1], "stop": [VOCAB + 5]}, "stop[0]"),
            ("/v1/forward", {"sequences": [[3], [VOCAB]]}, "sequences[1][0]"),
        ]
        for path, body, where in cases:
            with self.subTest(body=body):
                e = mt.assert_error(self, self.d.post(path, body), 400, where,
                                    "outside the vocabulary")
                self.assertIn(str(VOCAB), e["message"])

    def test_no_host(self):
        r = self.raw(b"GET /health HTTP/1.1\r\n\r\n")
        mt.assert_error(self, r, 400, "Host")

    def test_bare_cr(self):
        r = self.raw(head("GET", "/health", b"X-A: 1\r2\r\n\r\n"))
        mt.assert_error(self, r, 400, "bare CR")
        self.assertEqual(r.headers.get("connection"), "close")

    def test_obs_fold(self):
        r = self.raw(head("GET", "/health", b"X-A: 1\r\n 2\r\n\r\n"))
        mt.assert_error(self, r, 400, "folding")

    def test_malformed_request_line(self):
        r = self.raw(b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n")
        self.assertEqual(r.status, 400, r)
        r = self.raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 64)
        self.assertEqual(r.status, 400, r)

    # ---- 404 / 405 -------------------------------------------------------

    def test_not_found(self):
        for path in ("/", "/nope", "/v1/completions/x", "/v1", "/healthz", "/v2/models"):
            with self.subTest(path=path):
                mt.assert_error(self, self.d.get(path), 404)
        mt.assert_error(self, self.d.post("/v1/embeddings", {"input": [1]}), 404)
        # chat exists, but this model has no tokenizer: 400 that says so
        r = mt.assert_error(self, self.d.post("/v1/chat/completions", {"messages": []}), 400)

    def test_wrong_method(self):
        for method, path, allow in (("GET", "/v1/completions", "POST"),
                                    ("PUT", "/v1/forward", "POST"),
                                    ("POST", "/health", "GET"),
                                    ("DELETE", "/v1/models", "GET"),
                                    ("POST", "/metrics", "GET"),
                                    ("PATCH", "/v1/experts", "GET")):
            with self.subTest(method=method, path=path):
                r = mt.request(self.d.port, method, path, body=b"{}")
                mt.assert_error(self, r, 405)
                self.assertEqual(r.headers.get("allow"), allow)

    # ---- limits ------------------------------------------------------------

    def test_request_timeout_408(self):
        # Half a request, then silence: 408 after http.request_timeout_s=1.
        body = b'{"prompt": [1, 2'
        data = head("POST", "/v1/completions",
                    b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n") + body
        r = self.raw(data, shut=False)
        mt.assert_error(self, r, 408)
        # A header block that never ends times out the same way.
        r = self.raw(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ", shut=False)
        mt.assert_error(self, r, 408)

    def test_body_too_large_413(self):
        big = json.dumps({"prompt": [1] * 600})
        self.assertGreater(len(big), 1024)
        r = self.raw(head("POST", "/v1/completions",
                          b"Content-Length: %d\r\n\r\n" % len(big)) + big.encode())
        mt.assert_error(self, r, 413, "1024")
        # Chunked: no length up front; caught while reading.
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in
                          (big[:700].encode(), big[700:].encode())) + b"0\r\n\r\n"
        r = self.raw(head("POST", "/v1/completions", b"Transfer-Encoding: chunked\r\n\r\n") +
                     chunks)
        mt.assert_error(self, r, 413)
        # Just under the limit is served.
        ok = {"prompt": [1] * 250, "max_tokens": 1, "temperature": 0}
        self.assertLessEqual(len(json.dumps(ok)), 1024)
        self.assertEqual(self.d.post("/v1/completions", ok).status, 200)

    def test_header_too_large(self):
        r = self.raw(head("GET", "/health", b"X-Big: " + b"a" * 20000 + b"\r\n\r\n"))
        self.assertIn(r.status, (400, 431), r)
        mt.assert_error(self, r, r.status)
        many = b"".join(b"X-H%d: v\r\n" % i for i in range(150)) + b"\r\n"
        r = self.raw(head("GET", "/health", many))
        self.assertIn(r.status, (400, 431), r)
        mt.assert_error(self, r, r.status)


class Auth(unittest.TestCase):
    """auth.token_file set: 401 with WWW-Authenticate for a missing or wrong
    token on every endpoint but /health."""

    TOKEN = "s3cret-token-for-e2e"

    @classmethod
    def setUpClass(cls):
        cls.model = mt.fixture_model("mixtral_f32")
        tf = os.path.join(mt.tmpdir(), "token")
        with open(tf, "w") as f:
            f.write(cls.TOKEN + "\n")
        cls.d = mt.Daemon(cls.model, name="auth", sets=["auth.token_file=" + tf]).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.d.stop()
        if rc != 0:
            raise AssertionError("moed serve exited %d:\n%s" % (rc, cls.d.tail()))

    def test_missing_or_wrong_token(self):
        bad = [None, "Bearer wrong", "Bearer " + self.TOKEN + "x", "Bearer " + self.TOKEN[:-1],
               "Basic " + self.TOKEN, self.TOKEN, "Bearer"]
        for method, path, body in (("GET", "/v1/models", None), ("GET", "/v1/experts", None),
                                   ("GET", "/metrics", None),
                                   ("POST", "/v1/completions", {"prompt": [1]}),
                                   ("POST", "/v1/forward", {"sequences": [[1]]})):
            for auth in bad:
                with self.subTest(path=path, auth=auth):
                    h = {"Authorization": auth} if auth else {}
                    r = mt.request(self.d.port, method, path, body, headers=h)
                    e = mt.assert_error(self, r, 401)
                    self.assertEqual(e["type"], "authentication_error")
                    self.assertTrue(r.headers.get("www-authenticate", "").startswith("Bearer"),
                                    r.headers)

    def test_right_token(self):
        h = {"Authorization": "Bearer " + self.TOKEN}
        self.assertEqual(self.d.get("/v1/models", headers=h).status, 200)
        self.assertEqual(self.d.get("/metrics", headers=h).status, 200)
        self.assertEqual(self.d.get("/v1/experts", headers=h).status, 200)
        r = self.d.post("/v1/completions", {"prompt": [5, 6, 7], "max_tokens": 3,
                                            "temperature": 0}, headers=h)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["choices"][0]["tokens"],
                         mt.reference(self.model, [5, 6, 7], 3)["tokens"])
        r = self.d.post("/v1/forward", {"sequences": [[1]], "top_n": 1}, headers=h)
        self.assertEqual(r.status, 200, r)

    def test_health_open(self):
        r = self.d.get("/health")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["status"], "ok")


class AuthReload(unittest.TestCase):
    """SIGHUP re-reads auth.token_file: a new token takes effect; a token
    file that cannot be read makes every protected request 401, never open."""

    def test_reload_token(self):
        tf = os.path.join(mt.tmpdir(), "token")
        with open(tf, "w") as f:
            f.write("first\n")
        d = mt.Daemon(mt.fixture_model("mixtral_f32"), name="auth-reload",
                      sets=["auth.token_file=" + tf]).start()
        try:
            def status(tok):
                return d.get("/v1/models", headers={"Authorization": "Bearer " + tok}).status
            self.assertEqual(status("first"), 200)
            with open(tf, "w") as f:
                f.write("second\n")
            d.signal(signal.SIGHUP)
            mt.poll(lambda: status("second") == 200, mt.REQUEST_S, "the new token")
            self.assertEqual(status("first"), 401)
            os.unlink(tf)
            d.signal(signal.SIGHUP)
            mt.poll(lambda: status("second") == 401, mt.REQUEST_S, "auth to close")
            mt.assert_error(self, d.get("/v1/models"), 401)
            self.assertIn("auth now refuses every request", d.log())
            self.assertEqual(d.get("/health").status, 200)
        finally:
            self.assertEqual(d.stop(), 0, d.tail())


class QueueFull(unittest.TestCase):
    """batch.max_queue=1 on a slow model: a request arriving while another
    is served gets 429 with Retry-After."""

    @classmethod
    def setUpClass(cls):
        cls.model = mt.big_model()
        cls.d = mt.Daemon(cls.model, name="queue", sets=["batch.max_queue=1"]).start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.d.stop()
        if rc != 0:
            raise AssertionError("moed serve exited %d:\n%s" % (rc, cls.d.tail()))

    def check_429(self, r):
        e = mt.assert_error(self, r, 429)
        self.assertEqual(e["type"], "rate_limit_error")
        self.assertGreaterEqual(int(r.headers["retry-after"]), 1)

    def test_429_while_busy(self):
        out = {}

        def long():
            out["r"] = self.d.post("/v1/completions", {"prompt": [1, 2, 3], "max_tokens": 600,
                                                       "temperature": 0})
        t = threading.Thread(target=long, daemon=True)
        t.start()
        mt.poll(lambda: mt.metric(self.d.metrics(), "moed_inflight_sequences") >= 1 or
                "r" in out, mt.REQUEST_S, "the long request to reach the worker")
        got = None
        while t.is_alive() and got is None:
            r = self.d.post("/v1/completions", {"prompt": [4], "max_tokens": 1})
            if r.status == 429:
                got = r
            else:
                self.assertEqual(r.status, 200, r)
        t.join(mt.REQUEST_S)
        self.assertIsNotNone(got, "no 429 while a request held the only queue place")
        self.check_429(got)
        self.assertEqual(out["r"].status, 200, out["r"])
        self.assertEqual(len(out["r"].json()["choices"][0]["tokens"]), 600)

    def test_429_burst(self):
        body = {"prompt": [7, 8], "max_tokens": 200, "temperature": 0}
        rs = mt.in_threads([lambda: self.d.post("/v1/completions", body)] * 8)
        codes = sorted(r.status for r in rs)
        self.assertTrue(set(codes) <= {200, 429}, codes)
        self.assertIn(429, codes)
        self.assertIn(200, codes)
        for r in rs:
            if r.status == 429:
                self.check_429(r)
            else:
                self.assertEqual(len(r.json()["choices"][0]["tokens"]), 200)
        m = self.d.metrics()
        self.assertGreaterEqual(mt.metric(m, "moed_http_requests_total",
                                          endpoint="/v1/completions", code="429"),
                                codes.count(429))

    def test_more_prompts_than_the_queue(self):
        # Two prompts can never fit a queue of one: not a 429 to retry.
        r = self.d.post("/v1/completions", {"prompt": [[1], [2]], "max_tokens": 1})
        mt.assert_error(self, r, 400, "max_queue")


if __name__ == "__main__":
    mt.main()
