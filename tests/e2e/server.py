"""Starting `kdelta serve` for the end-to-end tests, and a tiny HTTP client.

    srv = Server(db_dir, env)          # starts `kdelta --db DIR serve --port 0`
    status, headers, body = srv.request("GET", "/api/v1/namespaces/" + quote_seg(ns) + "/keys")
    status, doc = srv.json("PUT", "/api/v1/namespaces/a/keys/b", {"x": 1})
    rc = srv.stop()                    # SIGTERM; returns the exit status

The client percent-encodes nothing itself: build paths with quote_seg(s)
(every reserved character encoded, '/' included). Bodies: bytes and str are
sent as they are, anything else as JSON; a body gets
"Content-Type: application/json" unless the headers name one (a header whose
value is None is not sent at all). Each request uses a new connection
(safe from many threads); srv.connection() gives a keep-alive one.

The pytest fixtures `server` (one running server on the test's database,
stopped with SIGTERM at the end, which must exit 0) and `start_server`
(a factory, for restarts and extra options) are in conftest.py.
"""
import http.client
import json
import os
import signal
import subprocess
import threading
import time
import urllib.parse

from helpers import KDELTA


def quote_seg(s):
    """Percent-encode one path segment (a namespace or key) completely."""
    return urllib.parse.quote(s, safe="")


def quote_query(params):
    """?a=1&b=x%20y from a dict or a list of pairs (values percent-encoded)."""
    return "?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote, safe="")


class Server:
    def __init__(self, db, env=None, args=(), global_args=(), start_timeout=30):
        self.db = db
        self.env = env
        self.args = [str(a) for a in args]
        self.global_args = [str(a) for a in global_args]
        self.errpath = os.path.join(os.path.dirname(os.path.abspath(db)), f"server-{id(self):x}.stderr")
        self.proc = None
        self.url = None
        self.start(start_timeout)

    # ---- process -------------------------------------------------------

    def start(self, timeout=30):
        self._err = open(self.errpath, "ab")
        cmd = [KDELTA, "--db", self.db] + self.global_args + ["serve", "--port", "0"] + self.args
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._err,
                                     env=self.env)
        line = [None]

        def read():
            line[0] = self.proc.stdout.readline()

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(timeout)
        text = (line[0] or b"").decode("utf-8", "replace").strip()
        if not text.startswith("KoruDelta serving ") or " at http://" not in text:
            self.proc.kill()
            self.proc.wait()
            self._err.close()
            raise RuntimeError(f"kdelta serve did not start (exit {self.proc.returncode}, stdout {text!r}): "
                               f"{self.stderr()}")
        self.start_line = text
        self.url = text.rsplit(" at ", 1)[1]
        u = urllib.parse.urlsplit(self.url)
        self.host, self.port = u.hostname, u.port
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Send `sig` and wait; returns the exit status (negative: killed by a signal)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"kdelta serve did not stop within {timeout} s after signal {sig}: {self.stderr()}")
        self.proc.stdout.close()
        self._err.close()
        return rc

    def kill(self):
        """kill -9 and wait."""
        return self.stop(signal.SIGKILL)

    def stderr(self):
        try:
            with open(self.errpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # ---- client --------------------------------------------------------

    def connection(self, timeout=30):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    @staticmethod
    def _prepare(body, headers):
        hdrs = dict(headers or {})
        if body is not None and not isinstance(body, (bytes, bytearray, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode("utf-8")
        if body is not None and not any(k.lower() == "content-type" for k in hdrs):
            hdrs["Content-Type"] = "application/json"
        skip = [k for k, v in hdrs.items() if v is None]
        for k in skip:
            del hdrs[k]
        return body, hdrs, {k.lower() for k in skip}

    def request(self, method, path, body=None, headers=None, timeout=30, conn=None):
        """One request -> (status, headers as a case-insensitive message, body bytes)."""
        body, hdrs, skip = self._prepare(body, headers)
        c = conn or self.connection(timeout)
        try:
            c.putrequest(method, path, skip_accept_encoding=True)
            for k, v in hdrs.items():
                c.putheader(k, v)
            if body is not None and "content-length" not in {k.lower() for k in hdrs}:
                c.putheader("Content-Length", str(len(body)))
            c.endheaders(body)
            r = c.getresponse()
            data = r.read()
            return r.status, r.headers, data
        finally:
            if conn is None:
                c.close()

    def json(self, method, path, body=None, headers=None, timeout=30):
        """One request -> (status, parsed JSON body or None when empty)."""
        status, _, data = self.request(method, path, body, headers, timeout)
        return status, (json.loads(data) if data else None)

    def open_stream(self, path, headers=None, timeout=30):
        """GET a streaming route; returns (connection, response) once the
        headers are in. Read events with sse_events(response); close the
        connection to disconnect."""
        c = self.connection(timeout)
        c.putrequest("GET", path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        c.endheaders()
        return c, c.getresponse()


def sse_events(resp):
    """Yield the events of a text/event-stream response as dicts
    {"id":..., "event":..., "data":...} ("comment" for ': ping' lines)."""
    ev = {}
    while True:
        line = resp.readline()
        if not line:
            return
        line = line.decode("utf-8").rstrip("\r\n")
        if line == "":
            if ev:
                yield ev
            ev = {}
            continue
        if line.startswith(":"):
            yield {"comment": line[1:].strip()}
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data" and "data" in ev:
            ev["data"] += "\n" + value
        else:
            ev[field] = value


def wait_for(pred, timeout=10, step=0.02):
    """Poll pred() until it is true; returns its last value."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > end:
            return v
        time.sleep(step)
