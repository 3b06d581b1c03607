#!/usr/bin/python3
"""HTTP benchmark of `kdelta serve` against Redis and nginx (part of `make bench`).

    bench/http/run.py [--kdelta PATH] [--out FILE] [--seconds S] [--quick]

Starts, in a fresh temporary directory, every server it measures, each on a free
loopback port: `kdelta serve` (sync=interval, then sync=always), redis-server
(AOF, appendfsync everysec, then always) and nginx serving a 100-byte file.
Loads them with wrk (HTTP, keep-alive) and redis-benchmark (keep-alive), prints a
table and writes the figures as JSON (same shape as bench/out/core.json).
Everything it started is stopped on exit, also on error or Ctrl-C.

Exit status: 0 when every run was clean (targets missed are reported, not
failures); 1 with an ERROR line when a tool is missing, a server failed, wrk
saw a socket error or a non-2xx answer, or an acknowledged write is missing.
See docs/BENCH.md, section "HTTP".
"""

import argparse
import csv
import io
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

VALUE_BYTES = 100  # PUT bodies (put.lua), redis -d, the nginx file
PREFILL_KEYS = 10000  # keys around the hot key


class BenchError(Exception):
    pass


def log(msg):
    print(msg, flush=True)


# --------------------------------------------------------------------------
# Processes we started (stopped in reverse order at exit, whatever happens)

STARTED = []


def spawn(argv, **kw):
    p = subprocess.Popen(argv, **kw)
    STARTED.append(p)
    return p


def stop(p, sig=signal.SIGTERM, timeout=30.0):
    """Stop one process we started; return its exit status."""
    if p.poll() is None:
        try:
            p.send_signal(sig)
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in STARTED:
        STARTED.remove(p)
    return p.returncode


def stop_all():
    for p in reversed(list(STARTED)):
        stop(p, timeout=10.0)


def on_signal(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


# --------------------------------------------------------------------------
# Helpers

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, what, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise BenchError("%s exited with status %d at start" % (what, proc.returncode))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise BenchError("%s is not listening on port %d after %.0f s" % (what, port, timeout))


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def tool_version(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except OSError:
        return None
    out = (r.stdout + r.stderr).strip().splitlines()
    return out[0].strip() if out else None


def http(method, url, body=None, token=None):
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def value_json(n):
    """A JSON object of exactly VALUE_BYTES bytes."""
    head = '{"n":%d,"pad":"' % n
    return head + "x" * (VALUE_BYTES - len(head) - 2) + '"}'


# --------------------------------------------------------------------------
# The servers

class Kdelta:
    def __init__(self, binary, tmp, name, sync, log_level="warn", serve_args=()):
        self.db = os.path.join(tmp, name)
        self.errpath = os.path.join(tmp, name + ".stderr")
        self.name = name
        self.token = None  # set by login() on a server started with --auth
        env = dict(os.environ, KORU_LOG=log_level)
        self.err = open(self.errpath, "wb")
        self.proc = spawn([binary, "--db", self.db, "--sync", sync, "serve", "--port", "0"] + list(serve_args),
                          stdout=subprocess.PIPE, stderr=self.err, stdin=subprocess.DEVNULL, env=env)
        line = b""
        end = time.monotonic() + 15
        while not line.endswith(b"\n"):
            left = end - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                break
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                c = os.read(self.proc.stdout.fileno(), 1)
                if not c:
                    break
                line += c
        m = re.search(rb"at (http://127\.0\.0\.1:\d+/)\s*$", line)
        if not m:
            raise BenchError("kdelta serve (%s) did not say where it listens (status %s, stdout %r, stderr: %s)"
                             % (name, self.proc.poll(), line, self.stderr_tail()))
        self.url = m.group(1).decode()

    def stderr_tail(self):
        try:
            with open(self.errpath, "rb") as f:
                return f.read()[-500:].decode(errors="replace").strip()
        except OSError:
            return ""

    def key_url(self, ns, key):
        return "%sapi/v1/namespaces/%s/keys/%s" % (self.url, ns, key)

    def login(self, binary, keyfile):
        """Register the owner's identity and log in with the CLI, which keeps
        the session token in KEYFILE.sessions (docs/AUTH.md)."""
        for cmd in (["auth", "register"], ["auth", "whoami"]):
            r = subprocess.run([binary, "--url", self.url, "--identity", keyfile] + cmd, capture_output=True,
                               text=True, timeout=60)
            if r.returncode != 0 and not (cmd[1] == "register" and "already" in r.stderr):
                raise BenchError("kdelta %s: %s" % (" ".join(cmd), r.stderr.strip()[-300:]))
        with open(keyfile + ".sessions") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0].rstrip("/") == self.url.rstrip("/"):
                    self.token = parts[1]
        if not self.token:
            raise BenchError("no session token for %s in %s.sessions" % (self.url, keyfile))

    def status(self):
        st, body = http("GET", self.url + "api/v1/status", token=self.token)
        if st != 200:
            raise BenchError("GET /api/v1/status answered %d: %s" % (st, body[:200]))
        return json.loads(body)

    def fsyncs(self):
        st, body = http("GET", self.url + "metrics", token=self.token)
        m = re.search(rb"^kd_fsyncs_total (\d+)", body, re.M)
        return int(m.group(1)) if st == 200 and m else None

    def stop(self):
        rc = stop(self.proc)
        self.err.close()
        if rc != 0:
            raise BenchError("kdelta serve (%s) exited with status %s after SIGTERM: %s"
                             % (self.name, rc, self.stderr_tail()))


class Redis:
    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "redis")
        os.mkdir(self.dir)
        self.port = free_port()
        self.proc = spawn(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                           "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
                           "--dir", self.dir, "--daemonize", "no",
                           "--logfile", os.path.join(self.dir, "redis.log")],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        wait_listening(self.port, self.proc, "redis-server")
        # it may accept before it has loaded (an empty) AOF: wait for PONG
        for _ in range(100):
            if self.cli("PING") == "PONG":
                return
            time.sleep(0.05)
        raise BenchError("redis-server does not answer PING")

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.port)] + list(args),
                           capture_output=True, text=True, timeout=30)
        return r.stdout.strip()

    def set_fsync(self, mode):
        if self.cli("CONFIG", "SET", "appendfsync", mode) != "OK":
            raise BenchError("redis: CONFIG SET appendfsync %s failed" % mode)

    def bench(self, test, n, conns, threads, rand=False):
        argv = ["redis-benchmark", "-h", "127.0.0.1", "-p", str(self.port), "-t", test,
                "-n", str(n), "-c", str(conns), "-d", str(VALUE_BYTES), "-k", "1", "--csv"]
        if threads > 1:
            argv += ["--threads", str(threads)]
        if rand:
            argv += ["-r", "100000000"]
        t0 = time.monotonic()
        r = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        wall = time.monotonic() - t0
        rows = [row for row in csv.reader(io.StringIO(r.stdout)) if row and row[0] != "test"]
        if r.returncode != 0 or not rows or "rror" in r.stderr:
            raise BenchError("redis-benchmark -t %s failed (status %d): %s %s"
                             % (test, r.returncode, r.stdout.strip()[-300:], r.stderr.strip()[-300:]))
        row = rows[0]
        return {"rps": float(row[1]), "requests": n, "seconds": round(wall, 3),
                "p50_us": round(float(row[4]) * 1000), "p99_us": round(float(row[6]) * 1000)}

    def bench_for(self, test, seconds, conns, threads, rand=False, probe=20000):
        """redis-benchmark counts requests, not time: a short probe run (also a
        warm-up) sizes the real one to about `seconds`."""
        p = self.bench(test, probe, conns, threads, rand)
        n = max(probe, int(p["rps"] * seconds))
        return self.bench(test, n, conns, threads, rand)


class Nginx:
    def __init__(self, tmp):
        d = os.path.join(tmp, "nginx")
        www = os.path.join(d, "www")
        os.makedirs(www)
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(d, "temp", sub))
        with open(os.path.join(www, "small.json"), "w") as f:
            f.write(value_json(0))
        # workers run as nobody when we are root: they must reach the file
        for p in (tmp, d, www):
            os.chmod(p, 0o755)
        os.chmod(os.path.join(www, "small.json"), 0o644)
        self.port = free_port()
        workers = os.cpu_count() or 1
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w") as f:
            f.write("""daemon off;
master_process on;
worker_processes %(workers)d;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    client_body_temp_path %(d)s/temp/body;
    proxy_temp_path %(d)s/temp/proxy;
    fastcgi_temp_path %(d)s/temp/fastcgi;
    uwsgi_temp_path %(d)s/temp/uwsgi;
    scgi_temp_path %(d)s/temp/scgi;
    types { application/json json; }
    server {
        listen 127.0.0.1:%(port)d;
        root %(www)s;
    }
}
""" % {"d": d, "www": www, "port": self.port, "workers": workers})
        self.proc = spawn(["nginx", "-p", d, "-c", conf, "-e", os.path.join(d, "error.log")],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=open(os.path.join(d, "stderr"), "wb"))
        self.workers = workers
        wait_listening(self.port, self.proc, "nginx")
        self.url = "http://127.0.0.1:%d/small.json" % self.port
        st, body = http("GET", self.url)
        if st != 200 or len(body) != VALUE_BYTES:
            raise BenchError("nginx answered %d with %d bytes for %s" % (st, len(body), self.url))


# --------------------------------------------------------------------------
# wrk

WARMUP_SECONDS = 1
ALWAYS_ROUNDS = 3  # rounds of put_always 1c / C connections (see main)
AUX_ROUNDS = 3  # rounds of the auth and log-level shares (see main)


def wrk(url, script, seconds, conns, threads, args=(), warmup=True, token=None):
    """One wrk run, after an untimed warm-up run of WARMUP_SECONDS on the same
    connections count (a fresh server's first second is slower: threads,
    stacks and caches are cold)."""
    if warmup:
        wrk(url, script, min(WARMUP_SECONDS, seconds), conns, threads, args, warmup=False, token=token)
    argv = ["wrk", "-t", str(min(threads, conns)), "-c", str(conns), "-d", "%ds" % max(1, round(seconds)),
            "--timeout", "10s", "-s", os.path.join(HERE, script), url]
    if token:
        argv[1:1] = ["-H", "Authorization: Bearer " + token]
    if args:
        argv += ["--"] + list(args)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
    m = re.search(r"^WRKJSON (\{.*\})$", r.stdout, re.M)
    if r.returncode != 0 or not m:
        raise BenchError("wrk failed (status %d): %s %s" % (r.returncode, r.stdout[-500:], r.stderr[-500:]))
    res = json.loads(m.group(1))
    e = res["errors"]
    if res["requests"] == 0 or any(e.values()):
        raise BenchError("wrk on %s: %d requests, errors %s (status = non-2xx/3xx answers; "
                         "the others are socket errors)" % (url, res["requests"], json.dumps(e)))
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    res["threads"] = min(threads, conns)
    res["connections"] = conns
    return res


def kd_fields(res, prefix="korudelta"):
    return {
        prefix + "_requests": res["requests"],
        prefix + "_seconds": round(res["duration_us"] / 1e6, 3),
        prefix + "_p50_us": res["latency_us"]["p50"],
        prefix + "_p99_us": res["latency_us"]["p99"],
    }


def ref_fields(name, res):
    return {name + "_requests": res["requests"], name + "_seconds": res["seconds"],
            name + "_p50_us": res["p50_us"], name + "_p99_us": res["p99_us"]}


def ratio(a, b):
    return round(a / b, 3) if a and b else None


def median_round(pairs):
    """The (base, measured) pair of runs whose measured/base ratio is the
    median of the rounds' (base: one connection, or the plain server)."""
    by_ratio = sorted(pairs, key=lambda p: p[1]["rps"] / p[0]["rps"] if p[0]["rps"] else 0)
    return by_ratio[(len(by_ratio) - 1) // 2]


def put_run(kd, seconds, conns, threads, prefix):
    """PUTs of new keys (after a warm-up writing keys of their own prefix);
    every 2xx of the timed run must have made a key."""
    tok = (kd.token,) if kd.token else ()
    wrk(kd.url, "put.lua", min(WARMUP_SECONDS, seconds), conns, threads, ("bench", "w" + prefix) + tok, warmup=False)
    before = kd.status()["keys"]
    f0 = kd.fsyncs()
    res = wrk(kd.url, "put.lua", seconds, conns, threads, ("bench", prefix) + tok, warmup=False)
    after = kd.status()["keys"]
    f1 = kd.fsyncs()
    ok = res["requests"] - res["errors"]["status"]
    if after - before < ok:
        raise BenchError("%s: wrk counted %d acknowledged PUTs but only %d keys were added"
                         % (kd.name, ok, after - before))
    res["keys_added"] = after - before
    if f0 is not None and f1 is not None and f1 > f0:
        res["puts_per_fsync"] = round((after - before) / (f1 - f0), 2)
    return res


# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kdelta", default=os.path.join(ROOT, "build", "kdelta"))
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "out", "http.json"))
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("KD_HTTP_SECONDS", "5")),
                    help="length of one wrk run and target length of one redis-benchmark run, "
                         "whole seconds (default 5)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads / redis-benchmark threads (default 2)")
    ap.add_argument("--connections", type=int, default=64, help="connections of the concurrent runs (default 64)")
    ap.add_argument("--quick", action="store_true", help="1-second runs: checks that it works; figures mean nothing")
    a = ap.parse_args()
    if a.quick:
        a.seconds = 1
    secs, T, C = a.seconds, a.threads, a.connections

    missing = [t for t in ("wrk", "redis-server", "redis-cli", "redis-benchmark", "nginx") if not shutil.which(t)]
    if missing:
        raise BenchError("missing %s (scripts/deps.sh installs wrk, redis-server, nginx)" % ", ".join(missing))
    if not os.access(a.kdelta, os.X_OK):
        raise BenchError("no kdelta binary at %s (build first: make)" % a.kdelta)

    tmp = tempfile.mkdtemp(prefix="kd_hbench.", dir=os.environ.get("KD_BENCH_DIR") or None)
    t_start = time.monotonic()
    load0 = loadavg()
    results = {}
    try:
        machine = {
            "nproc": os.cpu_count(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "bench_dir": tmp,
            "korudelta_version": tool_version([a.kdelta, "--version"]),
            "wrk": tool_version(["wrk", "-v"]),
            "redis": tool_version(["redis-server", "--version"]),
            "nginx": tool_version(["nginx", "-v"]),
            "quick": a.quick,
            "seconds_per_run": secs,
            "threads": T,
            "connections": C,
            "value_bytes": VALUE_BYTES,
            "loadavg_start": load0,
        }
        log("HTTP benchmark: wrk -t%d -c%d -d%ds (keep-alive, loopback), redis-benchmark --threads %d -c %d; "
            "load average %.2f" % (T, C, secs, T, C, load0))

        redis = Redis(tmp)
        nginx = Nginx(tmp)

        # ---- GET of a hot key ------------------------------------------------
        kd = Kdelta(a.kdelta, tmp, "kd_interval", "interval")
        writes = [{"namespace": "bench", "key": "k%05d" % i, "value": json.loads(value_json(i))}
                  for i in range(PREFILL_KEYS)]
        st, body = http("POST", kd.url + "api/v1/batch", json.dumps({"writes": writes}))
        if st // 100 != 2:
            raise BenchError("prefill batch answered %d: %s" % (st, body[:300]))
        hot = kd.key_url("bench", "hot")
        st, _ = http("PUT", hot, value_json(42))
        st2, body = http("GET", hot)
        if st // 100 != 2 or st2 != 200 or json.loads(body)["value"] != json.loads(value_json(42)):
            raise BenchError("PUT/GET of the hot key answered %d/%d: %s" % (st, st2, body[:300]))

        log("get_hot: korudelta ...")
        g_kd = wrk(hot, "report.lua", secs, C, T)
        log("get_hot: redis GET ...")
        if redis.cli("SET", "key:__rand_int__", value_json(42)) != "OK":  # redis-benchmark's key without -r
            raise BenchError("redis SET of the hot key failed")
        g_redis = redis.bench_for("get", secs, C, T)
        log("get_hot: nginx ...")
        g_nginx = wrk(nginx.url, "report.lua", secs, C, T)
        results["get_hot"] = dict({
            "korudelta": round(g_kd["rps"], 1), "redis": round(g_redis["rps"], 1),
            "ratio": ratio(g_kd["rps"], g_redis["rps"]),
            "nginx": round(g_nginx["rps"], 1), "ratio_nginx": ratio(g_kd["rps"], g_nginx["rps"]),
            "unit": "req/s", "connections": C, "threads": T,
        }, **kd_fields(g_kd), **ref_fields("redis", g_redis),
            nginx_p50_us=g_nginx["latency_us"]["p50"], nginx_p99_us=g_nginx["latency_us"]["p99"],
            target=">= 50k req/s", met=g_kd["rps"] >= 50000,
            note="GET of one key among %d (KoruDelta: the version record, ~300 B of JSON); redis GET of one "
                 "%d-byte string; nginx: a %d-byte static file (%d workers, access_log off)"
                 % (PREFILL_KEYS + 1, VALUE_BYTES, VALUE_BYTES, nginx.workers))

        # ---- PUT with sync=interval -------------------------------------------
        log("put_interval: korudelta ...")
        p_kd = put_run(kd, secs, C, T, "i")
        log("put_interval: redis SET (appendfsync everysec) ...")
        p_redis = redis.bench_for("set", secs, C, T, rand=True)
        results["put_interval"] = dict({
            "korudelta": round(p_kd["rps"], 1), "redis": round(p_redis["rps"], 1),
            "ratio": ratio(p_kd["rps"], p_redis["rps"]), "unit": "req/s", "connections": C, "threads": T,
        }, **kd_fields(p_kd), **ref_fields("redis", p_redis), keys_added=p_kd["keys_added"],
            target=">= 20k req/s", met=p_kd["rps"] >= 20000,
            note="PUT of a new key, %d-byte JSON value, sync=interval; redis SET of random keys, "
                 "appendonly yes, appendfsync everysec" % VALUE_BYTES)
        kd.stop()

        # ---- PUT with sync=always: 1 and C connections ---------------------------
        kd = Kdelta(a.kdelta, tmp, "kd_always", "always")
        redis.set_fsync("always")
        # The target is a ratio of two runs bound to the disk, whose fsync
        # rate drifts a lot from one minute to the next (one connection
        # measured 1,192 and 2,951 PUT/s in runs minutes apart): 1 and C
        # connections take turns for ALWAYS_ROUNDS rounds, and the round
        # with the median C/1 ratio is reported (each side on its own).
        rounds = 1 if a.quick else ALWAYS_ROUNDS
        kd_rounds, redis_rounds = [], []
        for rd in range(1, rounds + 1):
            tag = " [%d/%d]" % (rd, rounds) if rounds > 1 else ""
            log("put_always_1c: korudelta%s ..." % tag)
            a1 = put_run(kd, secs, 1, 1, "a1-%d-" % rd)
            log("put_always_%dc: korudelta%s ..." % (C, tag))
            aC = put_run(kd, secs, C, T, "a%d-%d-" % (C, rd))
            kd_rounds.append((a1, aC))
            log("put_always_1c: redis SET (appendfsync always)%s ..." % tag)
            r1 = redis.bench_for("set", secs, 1, 1, rand=True, probe=500)
            log("put_always_%dc: redis SET (appendfsync always)%s ..." % (C, tag))
            rC = redis.bench_for("set", secs, C, T, rand=True, probe=5000)
            redis_rounds.append((r1, rC))
        kd.stop()
        a1, aC = median_round(kd_rounds)
        r1, rC = median_round(redis_rounds)
        rounds_fields = {
            "rounds": [{"1c": round(x["rps"], 1), "%dc" % C: round(y["rps"], 1), "over_1c": ratio(y["rps"], x["rps"])}
                       for x, y in kd_rounds],
            "redis_rounds": [{"1c": round(x["rps"], 1), "%dc" % C: round(y["rps"], 1),
                              "over_1c": ratio(y["rps"], x["rps"])} for x, y in redis_rounds],
        }
        results["put_always_1c"] = dict({
            "korudelta": round(a1["rps"], 1), "redis": round(r1["rps"], 1),
            "ratio": ratio(a1["rps"], r1["rps"]), "unit": "req/s", "connections": 1, "threads": 1,
        }, **kd_fields(a1), **ref_fields("redis", r1), keys_added=a1["keys_added"],
            puts_per_fsync=a1.get("puts_per_fsync"), target=None, met=None,
            note="PUT of a new key, sync=always, one connection; redis SET, appendfsync always")
        over = ratio(aC["rps"], a1["rps"])
        results["put_always_%dc" % C] = dict({
            "korudelta": round(aC["rps"], 1), "redis": round(rC["rps"], 1),
            "ratio": ratio(aC["rps"], rC["rps"]), "unit": "req/s", "connections": C, "threads": T,
            "over_1c": over, "redis_over_1c": ratio(rC["rps"], r1["rps"]), **rounds_fields,
        }, **kd_fields(aC), **ref_fields("redis", rC), keys_added=aC["keys_added"],
            puts_per_fsync=aC.get("puts_per_fsync"),
            target=">= 10x put_always_1c (group commit)", met=over is not None and over >= 10,
            note="PUT of a new key, sync=always, %d connections; ratio = korudelta / redis SET with "
                 "appendfsync always (informational); the target is over_1c" % C)

        # ---- GET and PUT with --auth, GET with a log line: shares of the plain runs ----
        # Each is judged as a share of the same workload on a plain server.
        # Figures taken minutes apart drift by more than these costs (the
        # machine is shared), so the plain server and the one under test take
        # turns for AUX_ROUNDS rounds, and the round with the median share is
        # reported.
        keyfile = os.path.join(tmp, "owner.key")
        r = subprocess.run([a.kdelta, "auth", "keygen", "--difficulty", "8", "--out", keyfile], capture_output=True,
                           text=True, timeout=120)
        if r.returncode != 0:
            raise BenchError("kdelta auth keygen: %s" % r.stderr.strip()[-300:])
        plain = Kdelta(a.kdelta, tmp, "kd_interval", "interval")  # get_hot's database, hot key included
        authd = Kdelta(a.kdelta, tmp, "kd_auth", "interval",
                       serve_args=("--auth", "--auth-difficulty", "8", "--owner", keyfile))
        authd.login(a.kdelta, keyfile)
        logd = Kdelta(a.kdelta, tmp, "kd_log", "interval", log_level="info")
        for srv in (authd, logd):
            st, body = http("PUT", srv.key_url("bench", "hot"), value_json(42), token=srv.token)
            if st // 100 != 2:
                raise BenchError("PUT of the hot key on %s answered %d: %s" % (srv.name, st, body[:300]))
        rounds = 1 if a.quick else AUX_ROUNDS
        get_pairs, put_pairs, log_pairs = [], [], []
        for rd in range(1, rounds + 1):
            tag = " [%d/%d]" % (rd, rounds) if rounds > 1 else ""
            log("get_hot: korudelta, then --auth, then KORU_LOG=info%s ..." % tag)
            g0 = wrk(plain.key_url("bench", "hot"), "report.lua", secs, C, T)
            get_pairs.append((g0, wrk(authd.key_url("bench", "hot"), "report.lua", secs, C, T, token=authd.token)))
            log_pairs.append((g0, wrk(logd.key_url("bench", "hot"), "report.lua", secs, C, T)))
            log("put_interval: korudelta, then --auth%s ..." % tag)
            put_pairs.append((put_run(plain, secs, C, T, "p%d-" % rd), put_run(authd, secs, C, T, "x%d-" % rd)))
        for srv in (plain, authd, logd):
            srv.stop()

        def share_row(pairs, share_name, extra, **fields):
            base, res = median_round(pairs)
            return dict({
                "korudelta": round(res["rps"], 1), "redis": None, "ratio": None, "unit": "req/s",
                "connections": C, "threads": T, "korudelta_base": round(base["rps"], 1),
                share_name: ratio(res["rps"], base["rps"]),
                "rounds": [{"base": round(x["rps"], 1), "korudelta": round(y["rps"], 1),
                            share_name: ratio(y["rps"], x["rps"])} for x, y in pairs],
            }, **kd_fields(res), **extra(res), **fields)

        ga = share_row(get_pairs, "over_no_auth", lambda res: {}, target=">= 0.8x get_hot (auth off)",
                       note="get_hot on a server started with --auth (the owner's session token on every "
                            "request); over_no_auth = / get_hot on the plain server in the same round")
        ga["met"] = ga["over_no_auth"] is not None and ga["over_no_auth"] >= 0.8
        results["get_hot_auth"] = ga
        pa = share_row(put_pairs, "over_no_auth", lambda res: {"keys_added": res["keys_added"]},
                       target=">= 0.8x put_interval (auth off)",
                       note="put_interval on a server started with --auth (session token on every request); "
                            "over_no_auth = / put_interval on the plain server in the same round")
        pa["met"] = pa["over_no_auth"] is not None and pa["over_no_auth"] >= 0.8
        results["put_interval_auth"] = pa
        results["get_hot_log_info"] = share_row(
            log_pairs, "share_of_get_hot", lambda res: {}, target=None, met=None,
            note="get_hot with KORU_LOG=info (one log line per request, stderr to a file), / get_hot on the "
                 "plain server (KORU_LOG=warn) in the same round")
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    machine["loadavg_end"] = loadavg()
    machine["wall_seconds"] = round(time.monotonic() - t_start, 1)
    out = dict({"machine": machine}, **results)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)
        f.write("\n")
    print_table(results)
    log("load average %.2f -> %.2f, %.0f s; wrote %s" % (load0, machine["loadavg_end"], machine["wall_seconds"], a.out))


def fmt(x):
    return "-" if x is None else ("%.0f" % x if x >= 100 else "%.2f" % x)


def print_table(results):
    log("")
    log("%-18s %12s %12s %8s %12s %10s  %-38s %s" % ("workload", "korudelta", "redis", "ratio", "nginx",
                                                    "kd p50us", "target", "met"))
    for name, r in results.items():
        extra = ""
        if "over_1c" in r:
            each = "/".join("%.1f" % (x["over_1c"] or 0) for x in r.get("rounds", []))
            extra = " (%.1fx 1c%s; redis %sx)" % (r["over_1c"] or 0, ", median of " + each if len(
                r.get("rounds", [])) > 1 else "", fmt(r.get("redis_over_1c")))
        for share, what in (("over_no_auth", "x auth off"), ("share_of_get_hot", "x get_hot")):
            if share in r:
                each = "/".join("%.2f" % (x[share] or 0) for x in r.get("rounds", []))
                extra = " (%.2f%s%s)" % (r[share] or 0, what, ", median of " + each if len(
                    r.get("rounds", [])) > 1 else "")
        met = {True: "yes", False: "NO", None: ""}[r["met"]]
        log("%-18s %12s %12s %8s %12s %10s  %-38s %s%s" % (name, fmt(r["korudelta"]), fmt(r.get("redis")),
                                                          fmt(r.get("ratio")), fmt(r.get("nginx")),
                                                          r.get("korudelta_p50_us"), r["target"] or "-",
                                                          met, extra))


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        main()
    except BenchError as e:
        print("ERROR: %s" % e, file=sys.stderr, flush=True)
        sys.exit(1)
    except KeyboardInterrupt:
        stop_all()
        print("ERROR: interrupted", file=sys.stderr, flush=True)
        sys.exit(1)
