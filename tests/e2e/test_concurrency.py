"""Several kdelta processes on one database: they queue on the lock (busy
timeout) instead of failing, and every write lands in one unbroken chain.
The lock tests hold the database open from Python through the shared
library (ctypes), exactly as another program would."""
import os
import subprocess
import threading
import time

import pytest

from helpers import CTYPES_OPEN, KDELTA, library_path, one_error_line, ts_to_ns

PROCS = 8
WRITES = 20


def test_parallel_writers_one_key(kd, db, env):
    assert kd("status").rc == 0  # create the database first
    script = (
        'i=0; while [ $i -lt {n} ]; do '
        '"$KD" --db "$DB" set c/key "{{\\"p\\": $P, \\"i\\": $i}}" >/dev/null || exit 9; '
        'i=$((i+1)); done'
    ).format(n=WRITES)
    procs = []
    for p in range(PROCS):
        e = dict(env, KD=KDELTA, DB=db, P=str(p))
        procs.append(subprocess.Popen(["sh", "-c", script], env=e, stderr=subprocess.PIPE))
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode(errors="replace")
    log = kd("log", "c/key", "--json", "--reverse").json()
    assert len(log) == PROCS * WRITES
    prev = None
    for rec in log:
        assert rec["previous_write_id"] == prev
        prev = rec["write_id"]
    ts = [ts_to_ns(r["timestamp"]) for r in log]
    assert all(a < b for a, b in zip(ts, ts[1:]))
    # Every (process, i) pair is there exactly once, each process in order.
    seen = [(r["value"]["p"], r["value"]["i"]) for r in log]
    assert sorted(seen) == [(p, i) for p in range(PROCS) for i in range(WRITES)]
    for p in range(PROCS):
        mine = [i for (q, i) in seen if q == p]
        assert mine == list(range(WRITES))
    assert kd("status", "--json").json()["versions"] == PROCS * WRITES
    assert kd("verify").rc == 0


def test_parallel_writers_many_keys(kd, db, env):
    assert kd("status").rc == 0
    procs = []
    for p in range(PROCS):
        script = " && ".join(
            f'"$KD" --db "$DB" --sync none set "ns{p}/k{i}" {i} >/dev/null' for i in range(10)
        )
        procs.append(subprocess.Popen(["sh", "-c", script], env=dict(env, KD=KDELTA, DB=db)))
    for p in procs:
        assert p.wait(timeout=300) == 0
    st = kd("status", "--json").json()
    assert st["keys"] == PROCS * 10 and st["versions"] == PROCS * 10 and st["namespaces"] == PROCS
    assert kd("list", "--json").json() == [f"ns{p}" for p in range(PROCS)]


HOLDER = CTYPES_OPEN + r"""
print("locked", flush=True)
sys.stdin.read()              # hold the database until the test closes our stdin
sys.exit(lib.kd_close(db))
"""


def sanitizer_runtime(err):
    """For a library built with clang sanitizers, the runtime to preload
    into python so it can load it (None if not applicable)."""
    for prefix, name in (("__asan", "asan"), ("__ubsan", "asan"), ("__tsan", "tsan")):
        if prefix in err:
            try:
                path = subprocess.run(["clang", f"-print-file-name=libclang_rt.{name}-x86_64.so"],
                                      capture_output=True, text=True, timeout=30).stdout.strip()
            except OSError:
                return None
            return path if os.path.isabs(path) and os.path.exists(path) else None
    return None


class LockHolder:
    """Another process holding the database open through the shared library
    (a separate process, so a library built with sanitizers cannot upset
    pytest itself; their runtime is preloaded when needed)."""

    def __init__(self, db):
        lib = library_path()
        if lib is None:
            pytest.skip("shared library libkorudelta.so not found in the build directory (KD_BUILD_DIR)")
        err = self._start(lib, db, None)
        if err is not None:
            runtime = sanitizer_runtime(err)
            if runtime is None:
                raise AssertionError(f"could not hold the database open: {err}")
            err = self._start(lib, db, {"LD_PRELOAD": runtime, "ASAN_OPTIONS": "detect_leaks=0"})
            if err is not None:
                raise AssertionError(f"could not hold the database open (with {runtime}): {err}")

    def _start(self, lib, db, extra):
        env = dict(os.environ, **extra) if extra else None
        self.proc = subprocess.Popen(["/usr/bin/python3", "-c", HOLDER, lib, db], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        line = self.proc.stdout.readline()
        if line.strip() == b"locked":
            return None
        return self.proc.communicate(timeout=30)[1].decode(errors="replace")

    def release(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
        assert self.proc.wait(timeout=30) == 0, self.proc.stderr.read().decode(errors="replace")


def test_busy_after_timeout(kd, db):
    assert kd("set", "n/k", "1").rc == 0
    holder = LockHolder(db)
    try:
        t0 = time.monotonic()
        r = kd("--busy-timeout", "300", "set", "n/k", "2")
        waited = time.monotonic() - t0
        line = one_error_line(r, 5)
        assert db in line or "lock" in line.lower() or "busy" in line.lower(), line
        assert waited >= 0.25, "kdelta should wait for the busy timeout before giving up"
        one_error_line(kd("--busy-timeout=0", "get", "n/k"), 5)
    finally:
        holder.release()
    assert kd("get", "n/k").out == "1\n"
    assert kd("status", "--json").json()["versions"] == 1


def test_waits_for_lock_then_succeeds(kd, db):
    assert kd("set", "n/k", "1").rc == 0
    holder = LockHolder(db)
    t = threading.Timer(1.0, holder.release)
    t.start()
    try:
        t0 = time.monotonic()
        r = kd("set", "n/k", "2")  # default busy timeout: 10 s
        waited = time.monotonic() - t0
        assert r.rc == 0, r.err
        assert waited >= 0.9, "kdelta cannot have written while the lock was held"
    finally:
        t.join()
    assert kd("get", "n/k").out == "2\n"
