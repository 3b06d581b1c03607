"""Shared helpers of the kdelta end-to-end tests: running the binary, and
independent checks computed in Python (canonical JSON and its SHA-256,
RFC 3339 -> nanoseconds, the shape of a version record)."""
import calendar
import hashlib
import json
import os
import re
import subprocess

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KDELTA = os.environ.get("KDELTA_BIN") or os.path.join(REPO, "build", "kdelta")
BUILD_DIR = os.environ.get("KD_BUILD_DIR") or os.path.join(REPO, "build")

HEX64 = re.compile(r"^[0-9a-f]{64}$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{9}Z$")


class Result(tuple):
    """(rc, out, err) that also has .rc/.out/.err and .json()."""

    def __new__(cls, rc, out, err):
        return super().__new__(cls, (rc, out, err))

    rc = property(lambda self: self[0])
    out = property(lambda self: self[1])
    err = property(lambda self: self[2])

    def json(self):
        assert self.rc == 0, f"exit {self.rc}: {self.err}"
        return json.loads(self.out)


def _arg(a):
    return a if isinstance(a, bytes) else str(a)


def run_kdelta(args, input=None, env=None, timeout=120):
    if isinstance(input, str):
        input = input.encode("utf-8")
    p = subprocess.run(
        [KDELTA] + [_arg(a) for a in args],
        input=input if input is not None else b"",
        capture_output=True,
        env=env,
        timeout=timeout,
    )
    return Result(
        p.returncode,
        p.stdout.decode("utf-8", errors="surrogateescape"),
        p.stderr.decode("utf-8", errors="surrogateescape"),
    )


# ---------------------------------------------------------------------------
# Independent checks
# ---------------------------------------------------------------------------


def canonical(value):
    """Canonical JSON as DESIGN.md §2 defines it, for values whose strings
    have no control characters and whose numbers are integers (where
    Python's writer and the canonical rules agree). Member names are sorted
    by their UTF-8 bytes."""
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: kv[0].encode("utf-8"))
        return "{" + ",".join(canonical(k) + ":" + canonical(v) for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, float):
        raise ValueError("floats are not checked this way")
    return json.dumps(value, ensure_ascii=False)


def sha256_hex(text):
    if isinstance(text, str):
        text = text.encode("utf-8")
    return hashlib.sha256(text).hexdigest()


def ts_to_ns(text):
    """'2026-11-26T15:48:58.123456789Z' -> int nanoseconds since the epoch."""
    m = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{9})Z", text)
    assert m, f"not an RFC 3339 timestamp with 9 digits: {text!r}"
    y, mo, d, h, mi, s, frac = m.groups()
    secs = calendar.timegm((int(y), int(mo), int(d), int(h), int(mi), int(s), 0, 0, 0))
    return secs * 1_000_000_000 + int(frac)


def check_record(rec, ns, key, deleted=False):
    """Shape of a version record (issue 2, item 5)."""
    assert list(rec.keys()) == [
        "namespace", "key", "value", "version_id", "write_id", "previous_write_id", "timestamp", "deleted",
    ], rec
    assert rec["namespace"] == ns
    assert rec["key"] == key
    assert HEX64.match(rec["write_id"])
    assert rec["previous_write_id"] is None or HEX64.match(rec["previous_write_id"])
    assert TIMESTAMP.match(rec["timestamp"]), rec["timestamp"]
    assert rec["deleted"] is deleted
    if deleted:
        assert rec["value"] is None
        assert rec["version_id"] is None
    else:
        assert HEX64.match(rec["version_id"])


def one_error_line(res, status):
    """The command failed with `status` and wrote exactly one 'kdelta: ' line."""
    assert res.rc == status, f"wanted exit {status}, got {res.rc}; stderr: {res.err!r}; stdout: {res.out!r}"
    lines = res.err.splitlines()
    assert len(lines) == 1 and res.err.endswith("\n"), f"stderr is not one line: {res.err!r}"
    assert lines[0].startswith("kdelta: "), lines[0]
    return lines[0]


# The start of a Python script that opens the database argv[2] through the
# shared library argv[1] (ctypes) as `db`, or exits with kd_open's error:
# for tests that act on a database from another process.
CTYPES_OPEN = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
lib.kd_open.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p, ctypes.c_size_t]
lib.kd_checkpoint.argtypes = [ctypes.c_void_p]
lib.kd_close.argtypes = [ctypes.c_void_p]
db = ctypes.c_void_p()
err = ctypes.create_string_buffer(512)
rc = lib.kd_open(sys.argv[2].encode(), None, ctypes.byref(db), err, len(err))
if rc != 0:
    sys.exit("kd_open failed: %d %s" % (rc, err.value))
"""


def library_path():
    """The shared library (for tests that hold the lock from another
    process), or None if it was not built."""
    for name in ("libkorudelta.so", "libkorudelta.so.0"):
        path = os.path.join(BUILD_DIR, name)
        if os.path.exists(path):
            return path
    return None
