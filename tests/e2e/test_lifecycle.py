"""The daemon's life: SIGTERM drains requests in flight; a killed worker
costs only its requests (a prompt 503) and is restarted; a killed predictor
costs nothing but prediction."""
import errno
import http.client
import json
import os
import signal
import socket
import threading
import time
import unittest

import moedtest as mt


def refused(port):
    s = socket.socket()
    s.settimeout(5)
    try:
        s.connect(("127.0.0.1", port))
        return False
    except ConnectionRefusedError:
        return True
    except OSError as e:
        return e.errno == errno.ECONNREFUSED
    finally:
        s.close()


def inflight(d):
    return mt.metric(d.metrics(), "moed_inflight_sequences")


class Drain(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = mt.big_model()

    def test_sigterm_drains_requests_in_flight(self):
        d = mt.Daemon(self.model, name="drain").start()
        n_tok = 150
        prompts = [[1, 2, 3], [10, 20], [500], [7, 8, 9, 10]]
        out = {}

        def plain(i):
            out[i] = d.post("/v1/completions", {"prompt": prompts[i], "max_tokens": n_tok,
                                                "temperature": 0})

        def streamed(i):
            out[i] = mt.stream(d.port, {"prompt": prompts[i], "max_tokens": n_tok,
                                        "temperature": 0})
        ts = [threading.Thread(target=plain if i else streamed, args=(i,), daemon=True)
              for i in range(len(prompts))]
        for t in ts:
            t.start()
        mt.poll(lambda: inflight(d) >= len(prompts) or out, mt.REQUEST_S,
                "the requests to reach the worker")
        self.assertEqual(out, {}, "a request finished before SIGTERM: make them longer")
        d.signal(signal.SIGTERM)
        mt.poll(lambda: refused(d.port), 10, "new connections to be refused")
        for t in ts:
            t.join(mt.REQUEST_S)
            self.assertFalse(t.is_alive(), "a request did not finish during the drain")
        status, ev = out[0]
        self.assertEqual(status, 200, ev)
        self.assertEqual(ev[-1], "[DONE]")
        self.assertEqual(ev[-2]["usage"]["completion_tokens"], n_tok)
        streamed_tokens = [t for e in ev[:-2] for t in e["choices"][0]["tokens"]]
        self.assertEqual(len(streamed_tokens), n_tok)
        for i in range(1, len(prompts)):
            r = out[i]
            self.assertEqual(r.status, 200, r)
            j = r.json()
            self.assertEqual(len(j["choices"][0]["tokens"]), n_tok)
            self.assertEqual(j["usage"]["completion_tokens"], n_tok)
            self.assertEqual(j["choices"][0]["finish_reason"], "length")
        rc = d.wait_exit()
        self.assertEqual(rc, 0, d.tail())
        mt.poll(lambda: not d.group_alive(), mt.STOP_S, "the children to exit")
        log = d.log()
        self.assertIn("draining", log)
        self.assertIn("stopping: 0 requests still open", log)
        # The drain did not change the answers.
        self.assertEqual(streamed_tokens, mt.reference(self.model, prompts[0], n_tok)["tokens"])
        self.assertEqual(out[1].json()["choices"][0]["tokens"],
                         mt.reference(self.model, prompts[1], n_tok)["tokens"])

    def test_sigterm_idle_exits_at_once(self):
        d = mt.Daemon(self.model, name="idle").start()
        d.complete([1, 2], max_tokens=2)
        self.assertEqual(d.stop(timeout=10), 0, d.tail())


class Crashes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = mt.big_model()
        cls.d = mt.Daemon(cls.model, name="crash").start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.d.stop()
        if rc != 0:
            raise AssertionError("moed serve exited %d:\n%s" % (rc, cls.d.tail()))

    def long_request(self, out, started, stream=False):
        body = {"prompt": [1, 2, 3], "max_tokens": 3000, "temperature": 0}
        if stream:
            def run():
                out.update(r=mt.stream(self.d.port, body, on_event=lambda e: started.set()))
        else:
            def run():
                out.update(r=self.d.post("/v1/completions", body))
        return threading.Thread(target=run, daemon=True)

    def kill_worker_during(self, stream):
        d = self.d
        h = d.wait_healthy()
        old = h["worker_pid"]
        exits = mt.metric(d.metrics(), "moed_child_exits_total", child="worker")
        out = {}
        started = threading.Event()
        t = self.long_request(out, started, stream)
        t.start()
        mt.poll(lambda: inflight(d) >= 1, mt.REQUEST_S, "the request to reach the worker")
        if stream:
            self.assertTrue(started.wait(mt.REQUEST_S), "no streamed token")
        self.assertNotIn("r", out)
        os.kill(old, signal.SIGKILL)
        # Prompt: the generation would take far longer than this deadline.
        t.join(15)
        self.assertFalse(t.is_alive(), "the request hung after the worker died")
        new = d.wait_healthy(lambda j: j["worker_pid"] not in (0, old))
        self.assertEqual(new["status"], "ok")
        self.assertEqual(mt.metric(d.metrics(), "moed_child_exits_total", child="worker"),
                         exits + 1)
        # The next request is served by the new worker, correctly.
        j = d.complete([5, 6, 7], max_tokens=8)
        self.assertEqual(j["choices"][0]["tokens"],
                         mt.reference(self.model, [5, 6, 7], 8)["tokens"])
        return out["r"]

    def test_worker_killed_mid_request(self):
        r = self.kill_worker_during(stream=False)
        e = mt.assert_error(self, r, 503, "worker")
        self.assertEqual(e["type"], "server_error")

    def test_worker_killed_mid_stream(self):
        status, ev = self.kill_worker_during(stream=True)
        self.assertEqual(status, 200)   # the head went out before the crash
        self.assertEqual(ev[-1], "[DONE]")
        self.assertIn("error", ev[-2], ev[-2])
        self.assertEqual(ev[-2]["error"]["code"], 503)
        self.assertGreaterEqual(len(ev), 3)   # some tokens came before it

    def check(self, r, tokens):
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["choices"][0]["tokens"], tokens)

    def test_predictor_killed_while_serving(self):
        d = self.d
        h = d.wait_healthy(lambda j: j["predictor"] == "up")
        old = h["predictor_pid"]
        prompts = [[1, 2, 3], [40, 41], [900, 5, 6, 7]]
        refs = [mt.reference(self.model, p, 12)["tokens"] for p in prompts]
        m0 = d.metrics()
        stop = threading.Event()
        done = [0]
        bad = []
        lock = threading.Lock()

        def loop(i):
            while not stop.is_set():
                r = d.post("/v1/completions", {"prompt": prompts[i], "max_tokens": 12,
                                               "temperature": 0})
                with lock:
                    done[0] += 1
                    if r.status != 200 or r.json()["choices"][0]["tokens"] != refs[i]:
                        bad.append(r)
        ts = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(3)]
        for t in ts:
            t.start()
        try:
            mt.poll(lambda: done[0] >= 3, mt.REQUEST_S, "requests to flow")
            os.kill(old, signal.SIGKILL)
            # A SIGKILLed process runs no more code, so the table of this
            # request's batch can only come from the next predictor, which
            # starts 100 ms later at the earliest, while the worker admits
            # the batch within a decode step: it runs without (state "late").
            c = http.client.HTTPConnection("127.0.0.1", d.port, timeout=mt.REQUEST_S)
            c.request("POST", "/v1/completions", json.dumps(
                {"prompt": prompts[0], "max_tokens": 12, "temperature": 0}),
                {"Content-Type": "application/json"})
            # Once the front has seen the predictor go, requests are still
            # served: /health says "degraded", not 503.
            h = mt.poll(lambda: (lambda j: j if j["predictor"] == "down" or
                                 j["predictor_pid"] not in (0, old) else None)(d.health()),
                        10, "/health to see the predictor exit", interval=0.002)
            if h["predictor"] == "down":
                self.assertEqual(h["status"], "degraded", h)
                self.check(d.post("/v1/completions", {"prompt": prompts[1], "max_tokens": 12,
                                                      "temperature": 0}), refs[1])
            else:
                print("note: the predictor was back before /health saw it down")
            r = c.getresponse()
            self.check(mt.Response(r.status, {}, r.read()), refs[0])
            c.close()
            new = d.wait_healthy(lambda j: j["predictor_pid"] not in (0, old) and
                                 j["predictor"] == "up" and j["status"] == "ok")
            mark = done[0]
            mt.poll(lambda: done[0] >= mark + 6, mt.REQUEST_S,
                    "requests after the predictor restarted")
        finally:
            stop.set()
            for t in ts:
                t.join(mt.REQUEST_S)
        self.assertEqual(bad, [])
        self.assertNotEqual(new["predictor_pid"], old)
        m1 = d.metrics()
        self.assertEqual(mt.metric(m1, "moed_child_exits_total", child="predictor"),
                         mt.metric(m0, "moed_child_exits_total", child="predictor") + 1)
        late = [mt.metric(m, "moed_predictor_tables_total", state="late") for m in (m0, m1)]
        self.assertGreater(late[1], late[0], "no batch ran without its table")
        # The new predictor serves tables again.
        used = mt.metric(m1, "moed_predictor_tables_total", state="used")

        def used_again():
            d.complete([3, 2, 1], max_tokens=1)
            return mt.metric(d.metrics(), "moed_predictor_tables_total", state="used") > used
        mt.poll(used_again, mt.REQUEST_S, "a table from the restarted predictor")


class Cancel(unittest.TestCase):
    """A client that goes away mid-stream, and a stop string, stop the
    worker's compute for that sequence (CANCEL), not only the answer."""

    @classmethod
    def setUpClass(cls):
        cls.d = mt.Daemon(mt.big_model(), name="cancel").start()

    @classmethod
    def tearDownClass(cls):
        assert cls.d.stop() == 0, cls.d.tail()

    def steps(self):
        return mt.metric(self.d.metrics(), "moed_decode_steps_total")

    def wait_idle(self):
        mt.poll(lambda: inflight(self.d) == 0, mt.REQUEST_S, "no sequence in flight")
        # the worker's step counter stops moving once it has nothing to run
        last = [self.steps()]

        def settled():
            time.sleep(0.2)
            now = self.steps()
            same, last[0] = now == last[0], now
            return same
        mt.poll(settled, mt.REQUEST_S, "the worker's steps to stop")

    def test_disconnect_mid_stream(self):
        self.wait_idle()
        before = self.steps()
        seen = []

        def stop_after_two(ev):
            seen.append(ev)
            if len(seen) == 2:
                raise ConnectionAbortedError("client leaves")
        try:
            mt.stream(self.d.port, {"prompt": [1, 2, 3], "max_tokens": 4000,
                                    "temperature": 0}, on_event=stop_after_two)
        except ConnectionAbortedError:
            pass
        self.wait_idle()
        # 4000 tokens would take ~4000 steps; the cancel stops it long before
        self.assertLess(self.steps() - before, 2000, self.d.tail())
        self.assertIn(" 499 ", self.d.log())

    def test_stop_sequence_stops_the_worker(self):
        full = self.d.complete([5, 6, 7], max_tokens=12)["choices"][0]["tokens"]
        self.wait_idle()
        before = self.steps()
        r = self.d.complete([5, 6, 7], max_tokens=3000, stop=[full[4:6]])["choices"][0]
        self.assertEqual(r["finish_reason"], "stop")
        self.assertEqual(r["tokens"], full[:4])
        self.wait_idle()
        self.assertLess(self.steps() - before, 1000, self.d.tail())


class QueuedCancel(unittest.TestCase):
    """A client that goes away while its sequence still waits in the front's
    queue: the sequence is dropped there (499), never batched."""

    def test_disconnect_while_queued(self):
        d = mt.Daemon(mt.fixture_model(), sets=["batch.max_wait_us=3000000"],
                      name="queued").start()
        try:
            body = json.dumps({"prompt": [1, 2, 3], "max_tokens": 8, "temperature": 0})
            s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
            s.sendall(("POST /v1/completions HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n"
                       "\r\n%s" % (len(body), body)).encode())
            time.sleep(0.3)
            s.close()
            mt.poll(lambda: " 499 " in d.log(), 2.5, "the 499 of the client that left")
            time.sleep(3.5)  # past batch.max_wait_us: a queued sequence would be sent by now
            m = d.metrics()
            self.assertEqual(mt.metric(m, "moed_batch_sequences_count"), 0, d.tail())
            self.assertEqual(mt.metric(m, "moed_queue_depth"), 0, d.tail())
            self.assertEqual(len(d.complete([1, 2, 3], max_tokens=4)["choices"][0]["tokens"]), 4)
        finally:
            assert d.stop() == 0, d.tail()


class BrokenModel(unittest.TestCase):
    """A model file the worker cannot load: serve says why and exits 1."""

    def test_truncated_weights(self):
        model = mt.fixture_model()
        os.unlink(os.path.join(model, "moed.pack"))
        with open(os.path.join(model, "model.safetensors"), "r+b") as f:
            f.truncate(1000)
        d = mt.Daemon(model, name="broken")
        d.start(wait=False)
        self.assertEqual(d.wait_exit(), 1, d.tail())
        self.assertIn("model.safetensors", d.log())
        self.assertIn("the worker could not start", d.log())


class GiveUp(unittest.TestCase):
    """supervisor.max_restarts=0: the first crash of a child is not restarted;
    the request it held fails, and /health says unhealthy from then on, with
    moed serve still up (conf/README.md)."""

    def test_worker_crash_with_no_restarts_left(self):
        d = mt.Daemon(mt.big_model(), name="giveup",
                      sets=["supervisor.max_restarts=0"]).start()
        old = d.health()["worker_pid"]
        out = {}
        t = threading.Thread(target=lambda: out.update(r=d.post(
            "/v1/completions", {"prompt": [1, 2], "max_tokens": 3000})), daemon=True)
        t.start()
        mt.poll(lambda: inflight(d) >= 1, mt.REQUEST_S, "the request to reach the worker")
        os.kill(old, signal.SIGKILL)
        t.join(15)
        self.assertFalse(t.is_alive(), "the request hung after the worker died")
        mt.assert_error(self, out["r"], 503)
        h = d.get("/health")
        self.assertEqual(h.status, 503, h)
        self.assertEqual(h.json()["status"], "unhealthy")
        mt.assert_error(self, d.post("/v1/completions", {"prompt": [1], "max_tokens": 1}), 503)
        self.assertIn("giving up", d.log())
        self.assertEqual(d.stop(), 0, d.tail())

    def test_predictor_crash_with_no_restarts_left(self):
        d = mt.Daemon(mt.fixture_model(), name="giveup-pred",
                      sets=["supervisor.max_restarts=0"]).start()
        os.kill(d.health()["predictor_pid"], signal.SIGKILL)
        mt.poll(lambda: d.get("/health").status == 503, mt.STOP_S, "/health to say unhealthy")
        self.assertEqual(d.get("/health").json()["status"], "unhealthy")
        # requests still work: the worker never needs the predictor
        self.assertEqual(len(d.complete([1, 2, 3], max_tokens=4)["choices"][0]["tokens"]), 4)
        self.assertIn("the predictor keeps crashing", d.log())
        self.assertEqual(d.stop(), 0, d.tail())


if __name__ == "__main__":
    mt.main()
