"""Helpers for moed's end-to-end tests: start the real `moed serve` on
127.0.0.1, speak HTTP to it, compare with `moed run`, and never leave a
process behind.

Python 3 standard library only.  Environment (set by tests/meson.build):
MOED_BIN (the moed binary) and MOED_FIXTURES (tests/fixtures).

Every daemon runs in its own session (process group), so that the serve
process, its worker and its predictor can be killed together: on a failed
start, in Daemon.kill(), at exit, and on SIGTERM/SIGINT (meson's timeout).
No test waits by sleeping a fixed time: waits poll a condition up to a
deadline, and failing one is an assertion that quotes the daemon's log.
"""
import atexit
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
MOED = os.environ.get("MOED_BIN") or shutil.which("moed") or "moed"
FIXTURES = os.environ.get("MOED_FIXTURES") or os.path.join(HERE, "..", "fixtures")

# Deadlines, in seconds.  Generous: they bound a hang, they do not time work.
START_S = 60
REQUEST_S = 60
STOP_S = 40

_lock = threading.RLock()   # re-entered by the signal handler
_daemons = []          # every Daemon started, for cleanup and failure logs
_tmpdirs = []


def _cleanup():
    with _lock:
        ds = list(_daemons)
        dirs = list(_tmpdirs)
    for d in ds:
        d.kill()
    for t in dirs:
        shutil.rmtree(t, ignore_errors=True)


def _on_signal(sig, frame):
    _cleanup()
    os._exit(128 + sig)


atexit.register(_cleanup)
signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


def tmpdir(prefix="moed-e2e-"):
    d = tempfile.mkdtemp(prefix=prefix)
    with _lock:
        _tmpdirs.append(d)
    return d


def poll(cond, timeout, what, interval=0.02):
    """Calls cond() until it returns a true value (returned) or the deadline
    passes (AssertionError naming `what`)."""
    end = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except (OSError, http.client.HTTPException, ValueError) as e:
            last_exc = e
        if time.monotonic() > end:
            raise AssertionError("timed out after %.0f s waiting for %s%s" %
                                 (timeout, what, " (last error: %r)" % last_exc
                                  if last_exc else ""))
        time.sleep(interval)


# ---- models ---------------------------------------------------------------

def run_moed(args, timeout=120, check=True):
    p = subprocess.run([MOED] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("moed %s exited %d: %s" % (" ".join(args), p.returncode,
                                                        p.stderr.decode(errors="replace")))
    return p


def _pack(model):
    # Pack once now, so that no two processes race to write moed.pack later.
    run_moed(["pack", "--model", model, "--quiet"])
    return model


def fixture_model(name="mixtral_f32"):
    """A private copy of a fixture model (moed writes moed.pack beside it)."""
    d = os.path.join(tmpdir(), name)
    shutil.copytree(os.path.join(FIXTURES, name), d)
    return _pack(d)


def make_model(*args, name="model"):
    """moed mkmodel --out TMP ARGS..., packed."""
    d = os.path.join(tmpdir(), name)
    run_moed(["mkmodel", "--out", d] + list(args))
    return _pack(d)


def big_model():
    """A model slow enough (a few ms a token) for requests that must still
    be running while the test acts on the daemon."""
    return make_model("--family", "mixtral", "--layers", "4", "--experts", "16",
                      "--hidden", "256", "--vocab", "1024", "--intermediate", "512",
                      name="big")


def reference(model, tokens, max_tokens, sets=()):
    """`moed run --json` (greedy unless sets say otherwise)."""
    args = ["run", "--model", model, "--tokens", ",".join(str(t) for t in tokens),
            "--max-tokens", str(max_tokens), "--json"]
    for s in sets:
        args += ["--set", s]
    return json.loads(run_moed(args).stdout)


# ---- HTTP -----------------------------------------------------------------

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers          # lower-case name -> value
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return "<%d %s>" % (self.status, self.body[:300])


def request(port, method, path, body=None, headers=None, timeout=REQUEST_S):
    """One request on a fresh connection.  body: bytes, str, or an object
    sent as JSON."""
    h = dict(headers or {})
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
        h.setdefault("Content-Type", "application/json")
    if isinstance(body, str):
        body = body.encode()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        c.close()


def stream(port, body, headers=None, timeout=REQUEST_S, on_event=None,
           path="/v1/completions"):
    """POST /v1/completions with stream: true.  Returns (status, events):
    events are the parsed JSON of each `data:` line, and the string
    "[DONE]" for the end marker.  on_event(event) is called as each one
    arrives."""
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("POST", path, body=json.dumps(dict(body, stream=True)),
                  headers=h)
        r = c.getresponse()
        if r.status != 200:
            return r.status, [r.read()]
        ctype = r.getheader("Content-Type", "")
        if not ctype.startswith("text/event-stream"):
            raise AssertionError("stream Content-Type is %r" % ctype)
        events, pending = [], []
        for raw in r:
            line = raw.decode().rstrip("\r\n")
            if line == "":
                if pending:
                    data = "\n".join(pending)
                    events.append(data if data == "[DONE]" else json.loads(data))
                    pending = []
                    if on_event:
                        on_event(events[-1])
                continue
            if not line.startswith("data: "):
                raise AssertionError("not an SSE data line: %r" % line)
            pending.append(line[6:])
        if pending:
            raise AssertionError("stream ended inside an event: %r" % pending)
        return r.status, events
    finally:
        c.close()


def raw_exchange(port, data, timeout=REQUEST_S, shut_write=False):
    """Sends raw bytes and reads until the server closes; returns (status,
    headers, body) parsed from what came back, or (None, {}, b"") if the
    server closed without a word."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            s.sendall(data)
            if shut_write:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return parse_response(read_until_close(s, timeout))
    finally:
        s.close()


def read_until_close(s, timeout):
    s.settimeout(timeout)
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    return out


def parse_response(data):
    if not data:
        return None, {}, b""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3}) ", lines[0] + " ")
    if not m:
        raise AssertionError("not an HTTP response: %r" % data[:200])
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        body = body[:int(headers["content-length"])]
    return int(m.group(1)), headers, body


def parse_metrics(text):
    """Prometheus text -> {(name, frozenset(labels.items())): value}; checks
    every line's syntax on the way."""
    out = {}
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})? (\S+)$')
    label = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for ln in text.splitlines():
        if not ln or ln.startswith("# HELP ") or ln.startswith("# TYPE "):
            continue
        m = sample.match(ln)
        if not m:
            raise AssertionError("bad metrics line: %r" % ln)
        labels = {}
        if m.group(3):
            labels = dict(label.findall(m.group(3)))
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(4))
    return out


def metric(metrics, name, **labels):
    return metrics.get((name, frozenset(labels.items())), 0.0)


# ---- the daemon -----------------------------------------------------------

class Daemon:
    """`moed serve` on 127.0.0.1 with a private runtime dir.  sets: extra
    --set KEY=VALUE strings.  The port is 0 (the kernel picks a free one,
    so there is no race with other tests) and read back from the log."""

    def __init__(self, model, sets=(), name="moed"):
        self.model = model
        self.dir = tmpdir("moed-serve-")
        self.rtd = os.path.join(self.dir, "run")
        self.log_path = os.path.join(self.dir, "serve.log")
        self.name = name
        self.port = None
        self.proc = None
        self.args = [MOED, "serve", "--model", model,
                     "--set", "http.listen=127.0.0.1:0",
                     "--set", "runtime.dir=" + self.rtd]
        for s in sets:
            self.args += ["--set", s]

    # lifecycle
    def start(self, wait=True):
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        with _lock:
            _daemons.append(self)
        try:
            m = poll(lambda: self._exited_early() or
                     re.search(r"listening on [^ ]*:(\d+)\n", self.log()),
                     START_S, "the daemon to listen")
            self.port = int(m.group(1))
            if wait:
                self.wait_healthy()
        except BaseException:
            self.kill()
            raise
        return self

    def _exited_early(self):
        if self.proc.poll() is not None:
            raise AssertionError("moed serve exited %d during start:\n%s" %
                                 (self.proc.returncode, self.log()))
        return None

    def wait_healthy(self, cond=None, timeout=START_S):
        """Polls /health until 200 (and cond(json) if given); returns the JSON."""
        def ok():
            self._exited_early()
            r = self.get("/health", timeout=5)
            if r.status != 200:
                return None
            j = r.json()
            return j if cond is None or cond(j) else None
        return poll(ok, timeout, "/health 200 from %s; log:\n%s" % (self.name, self.tail()))

    def health(self):
        return self.get("/health", timeout=10).json()

    def signal(self, sig):
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout=STOP_S):
        """The exit status of serve; also fails on a sanitizer report in the
        log (ASan/UBSan builds), whichever process wrote it."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("moed serve did not exit within %d s; log:\n%s" %
                                 (timeout, self.tail()))
        log = self.log()
        m = re.search(r"(runtime error:|ERROR: AddressSanitizer|ERROR: LeakSanitizer)", log)
        if m:
            raise AssertionError("sanitizer report in the log of %s:\n%s" %
                                 (self.name, log[max(0, m.start() - 500):m.start() + 4000]))
        return rc

    def stop(self, timeout=STOP_S):
        """SIGTERM; returns the exit status once serve and its children are gone."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        rc = self.wait_exit(timeout)
        poll(lambda: not self.group_alive(), timeout,
             "the worker and predictor to exit after serve")
        return rc

    def group_alive(self):
        try:
            os.killpg(self.proc.pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True

    def kill(self):
        """SIGKILL to serve and every process of its group (idempotent)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        with _lock:
            if self in _daemons:
                _daemons.remove(self)

    # logs
    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def tail(self, n=6000):
        t = self.log()
        return t[-n:]

    # requests
    def get(self, path, **kw):
        return request(self.port, "GET", path, **kw)

    def post(self, path, body, **kw):
        return request(self.port, "POST", path, body, **kw)

    def complete(self, prompt, max_tokens=8, **fields):
        """POST /v1/completions, greedy unless temperature is given; asserts 200."""
        body = dict(prompt=prompt, max_tokens=max_tokens)
        body.setdefault("temperature", 0)
        body.update(fields)
        r = self.post("/v1/completions", body)
        if r.status != 200:
            raise AssertionError("completion %r -> %r; log:\n%s" % (body, r, self.tail()))
        return r.json()

    def metrics(self):
        r = self.get("/metrics")
        if r.status != 200:
            raise AssertionError("/metrics -> %r" % r)
        return parse_metrics(r.body.decode())


def assert_error(tc, r, status, *words):
    """r is a JSON error answer with `status` whose message contains words."""
    tc.assertEqual(r.status, status, r)
    tc.assertTrue(r.headers.get("content-type", "").startswith("application/json"), r.headers)
    e = r.json()["error"]
    tc.assertEqual(e["code"], status, e)
    tc.assertIsInstance(e["type"], str)
    for w in words:
        tc.assertIn(w, e["message"], e)
    return e


def in_threads(fns):
    """Runs each fn in its own thread; returns their results (an exception is
    re-raised in the caller)."""
    res = [None] * len(fns)
    errs = []

    def run(i, fn):
        try:
            res[i] = fn()
        except BaseException as e:  # noqa: B902 -- re-raised below
            errs.append(e)
    ts = [threading.Thread(target=run, args=(i, f), daemon=True) for i, f in enumerate(fns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(REQUEST_S * 2)
        if t.is_alive():
            raise AssertionError("a request thread did not finish")
    if errs:
        raise errs[0]
    return res


# ---- the runner -----------------------------------------------------------

class _Result(unittest.TextTestResult):
    """Prints, for a failed test, what each daemon logged during it."""

    def startTest(self, test):
        with _lock:
            self._marks = {id(d): len(d.log()) for d in _daemons}
        super().startTest(test)

    def _dump(self):
        with _lock:
            ds = list(_daemons)
        for d in ds:
            t = d.log()[self._marks.get(id(d), 0):]
            if t:
                sys.stderr.write("---- %s log (port %s) during the test ----\n%s\n" %
                                 (d.name, d.port, t[-8000:]))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._dump()

    def addError(self, test, err):
        super().addError(test, err)
        self._dump()


def main():
    """Runs the calling module's tests; prints Check's summary line (the
    totals that tools/test_totals.sh reads) and exits 0, 1 on a failure, or
    77 (meson: skipped) when every test was skipped."""
    prog = unittest.main(module="__main__", exit=False, verbosity=2,
                         testRunner=unittest.TextTestRunner(resultclass=_Result,
                                                            stream=sys.stderr,
                                                            verbosity=2))
    r = prog.result
    skipped = len(r.skipped)
    xfail = len(r.expectedFailures)
    n = r.testsRun - skipped - xfail
    f = len(r.failures) + len(r.unexpectedSuccesses)
    e = len(r.errors)
    for t, why in r.skipped:
        print("skipped: %s (%s)" % (why, t.id()))
    for t, _ in r.expectedFailures:
        print("expected failure (not counted): %s" % t.id())
    pct = 100 if n == 0 else (n - f - e) * 100 // n
    sys.stderr.flush()
    print("%d%%: Checks: %d, Failures: %d, Errors: %d" % (pct, n, f, e), flush=True)
    _cleanup()
    if f or e:
        sys.exit(1)
    sys.exit(77 if n == 0 and skipped else 0)
