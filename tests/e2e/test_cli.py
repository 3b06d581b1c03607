"""The kdelta command line itself: usage errors, help, version, where options
may go, where the database lives, status and verify."""
import json
import os
import re
import shlex
import subprocess

import pytest

from helpers import HEX64, KDELTA, TIMESTAMP, one_error_line, ts_to_ns


# ---------------------------------------------------------------------------
# Usage errors: exit 2, one line, nothing created
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("args,needle", [
    (["frobnicate"], "frobnicate"),
    (["--frob", "status"], "--frob"),
    (["status", "--frob"], "--frob"),
    (["status", "-x"], "-x"),
    (["set", "n/k"], "set"),
    (["set"], "set"),
    (["set", "n/k", "1", "2"], "set"),
    (["get"], "get"),
    (["get", "n/k", "extra"], "get"),
    (["delete"], "delete"),
    (["log"], "log"),
    (["list", "a", "b"], "list"),
    (["status", "extra"], "status"),
    (["verify", "extra"], "verify"),
    (["set", "n/k", "1", "--at", "now"], "--at"),
    (["get", "n/k", "--limit", "3"], "--limit"),
    (["get", "n/k", "--reverse"], "--reverse"),
    (["log", "n/k", "--limit", "abc"], "--limit"),
    (["log", "n/k", "--limit", "-1"], "--limit"),
    (["log", "n/k", "--limit"], "--limit"),
    (["get", "n/k", "--at"], "--at"),
    (["--sync", "sometimes", "status"], "--sync"),
    (["--busy-timeout", "soon", "status"], "--busy-timeout"),
    (["--json=yes", "status"], "--json"),
    (["help", "frobnicate"], "frobnicate"),
    ([], "no command"),
    (["--json"], "no command"),
])
def test_usage_errors(kd, db, args, needle):
    line = one_error_line(kd(*args), 2)
    assert needle in line, line
    if kd.mode == "local":
        assert not os.path.exists(db), "a usage error must not create the database"


def test_db_option_needs_value(kd_raw):
    one_error_line(kd_raw("status", "--db"), 2)
    one_error_line(kd_raw("--db=", "status"), 2)


def test_help_and_version(kd_raw):
    for args in (["--help"], ["-h"], ["help"], ["status", "--help"]):
        r = kd_raw(*args)
        assert r.rc == 0 and r.err == ""
        assert "Usage: kdelta" in r.out
    r = kd_raw("--help")
    for word in ("set", "get", "delete", "log", "list", "status", "verify", "--db", "--json", "--sync",
                 "--at", "TIME", "Exit status", "KORU_DB"):
        assert word in r.out, word
    for code in range(8):
        assert re.search(rf"^\s+{code}\s", r.out, re.M), f"exit status {code} not documented"
    for cmd in ("set", "get", "delete", "log", "list", "status", "verify"):
        r1 = kd_raw("help", cmd)
        r2 = kd_raw(cmd, "--help")
        assert r1.rc == 0 and r1.out == r2.out and f"kdelta {cmd}" in r1.out
    line = one_error_line(kd_raw("help", "get", "extra"), 2)  # an extra argument is a usage error
    assert "takes one COMMAND" in line, line
    r = kd_raw("--version")
    assert r.rc == 0 and re.match(r"^kdelta \d+\.\d+\.\d+", r.out)


def test_options_before_or_after_command(kd_raw, db):
    r = kd_raw("--db", db, "--json", "set", "n/k", "1")
    assert r.rc == 0 and r.json()["key"] == "k"
    r = kd_raw("set", "n/k", "2", "--db", db, "--json")
    assert r.rc == 0 and r.json()["value"] == 2
    r = kd_raw("get", "--db=" + db, "n/k")
    assert r.rc == 0 and r.out == "2\n"
    r = kd_raw("--db", db, "--sync", "none", "set", "n/k", "3")
    assert r.rc == 0
    r = kd_raw("--db", db, "--sync=interval", "set", "n/k", "4")
    assert r.rc == 0
    r = kd_raw("--db", db, "--sync", "always", "get", "n/k")
    assert r.out == "4\n"
    assert len(kd_raw("--db", db, "log", "n/k", "--json").json()) == 4


# ---------------------------------------------------------------------------
# Where the database lives
# ---------------------------------------------------------------------------


def test_default_database_in_home(kd_raw, env):
    home = env["HOME"]
    r = kd_raw("set", "n/k", "1")
    assert r.rc == 0, r.err
    assert os.path.isdir(os.path.join(home, ".korudelta", "db"))
    st = kd_raw("status", "--json").json()
    assert st["path"] == os.path.realpath(os.path.join(home, ".korudelta", "db"))
    assert st["versions"] == 1


def test_koru_db_environment(kd_raw, tmp_path):
    where = str(tmp_path / "from-env")
    r = kd_raw("set", "n/k", "1", extra_env={"KORU_DB": where})
    assert r.rc == 0, r.err
    assert os.path.isdir(where)
    assert kd_raw("get", "n/k", extra_env={"KORU_DB": where}).out == "1\n"
    # --db wins over KORU_DB.
    other = str(tmp_path / "other")
    assert kd_raw("--db", other, "get", "n/k", extra_env={"KORU_DB": where}).rc == 3


def test_database_directory_cannot_be_created(kd_raw, tmp_path):
    f = tmp_path / "a-file"
    f.write_text("not a directory")
    target = str(f / "db")
    for args in (["set", "n/k", "1"], ["status"], ["get", "n/k"]):
        r = kd_raw("--db", target, *args)
        assert r.rc != 0
        line = one_error_line(r, r.rc)
        assert target in line, line
        assert r.rc == 1, line  # docs/CLI.md: a directory that cannot be created
    for args in (["set", "n/k", "1"], ["status"], ["get", "n/k"]):
        r = kd_raw("--db", str(f), *args)
        line = one_error_line(r, 4)  # docs/CLI.md: a --db path that is a file
        assert "exists and is not a directory" in line, line
    assert f.read_text() == "not a directory"


@pytest.mark.parametrize("args, why", [
    (["set", "a/b", "{"], "invalid JSON at byte 1"),
    (["set", "_kd/x", "1"], "namespace '_kd' is reserved: names starting with _kd belong to the database"),
    (["set", "a/" + "k" * 1025, "1"], "key is 1025 bytes; the limit is 1024"),
    (["delete", "_kd/x"], "namespace '_kd' is reserved"),
    (["query", "_kdx"], "namespace '_kdx' is reserved"),
    (["retention", "set", "_kdx", "--keep-last", "1"], "namespace '_kdx' is reserved"),
    (["view", "create", "v", "_kdx"], "namespace '_kdx' is reserved"),
    (["index", "create", "_kdx", "a"], "namespace '_kdx' is reserved"),
    (["vector", "put", "_kdv/a", "[1, 0]", "--model", "m"], "namespace '_kdv' is reserved"),
    (["import", "_kdx", "-"], "namespace '_kdx' is reserved"),
    (["export", "_kdx"], "namespace '_kdx' is reserved"),
    # reads check names as writes do (they said "not found" and made a database)
    (["get", b"a/\xff"], "key is not valid UTF-8"),
    (["get", "a/" + "k" * 1025], "key is 1025 bytes; the limit is 1024"),
    (["log", "n" * 256 + "/k"], "namespace is 256 bytes; the limit is 255"),
    (["diff", "_kd/x"], "namespace '_kd' is reserved"),
    (["vector", "get", b"a/\xff"], "key is not valid UTF-8"),
    (["list", "_kd.views"], "namespace '_kd.views' is reserved"),
    (["vector", "stats", "_kdx"], "namespace '_kdx' is reserved"),
    # vectors the library would refuse (they made a database first)
    (["vector", "put", "v/a", "[0, 0]", "--model", "m"], "all 2 components are zero"),
    (["vector", "put", "v/a", "[3e38, 3e38]", "--model", "m"], "the vector's length overflows float32"),
    (["vector", "search", "v", "[0, 0]"], "the query is a zero vector"),
])
def test_bad_names_and_values_create_no_database(kd_raw, tmp_path, args, why):
    """A bad name or value is refused before the database is opened: a typo
    never creates one (CLI.md, Options)."""
    target = str(tmp_path / "db")
    r = kd_raw("--db", target, *args, input="")
    line = one_error_line(r, 4)
    assert why in line, line
    assert not os.path.exists(target)


def test_reserved_name_same_words_through_a_server(kd_raw, start_server):
    """Local and --url runs refuse a reserved name with the same line."""
    s = start_server()
    local = kd_raw("--db", s.db + "-other", "set", "_kd/x", "1")
    remote = kd_raw("--url", s.url.rstrip("/"), "set", "_kd/x", "1")
    assert remote.rc == local.rc == 4
    assert remote.err == local.err, (remote.err, local.err)


def test_database_parent_missing_is_an_error_or_created(kd_raw, tmp_path):
    # An explicit --db whose parent does not exist: either it is created or
    # the error is one clear line; never a crash.
    target = str(tmp_path / "missing" / "deeper" / "db")
    r = kd_raw("--db", target, "set", "n/k", "1")
    if r.rc != 0:
        line = one_error_line(r, r.rc)
        assert target in line


# ---------------------------------------------------------------------------
# status and verify
# ---------------------------------------------------------------------------


def test_status_empty(kd, db):
    st = kd("status", "--json").json()
    for field in ("keys", "live_keys", "versions", "namespaces", "values"):
        assert st[field] == 0, field
    assert st["path"] == os.path.realpath(db)
    assert isinstance(st["disk_bytes"], int) and isinstance(st["segments"], int)
    assert isinstance(st["roots"], dict) and st["roots"]
    for name, hexroot in st["roots"].items():
        assert HEX64.match(hexroot), (name, hexroot)


def test_status_counts(kd, db):
    kd("set", "a/1", '{"v": 1}')
    kd("set", "a/2", '{"v": 1}')  # same value: deduplicated
    kd("set", "a/1", '{"v": 2}')
    kd("set", "b/1", "[]")
    kd("set", "c/1", "true")
    kd("delete", "c/1")
    st = kd("status", "--json").json()
    assert st["keys"] == 4
    assert st["live_keys"] == 3
    assert st["versions"] == 6
    assert st["values"] == 4  # {"v":1} {"v":2} [] true
    # kd_stats.namespaces counts namespaces with at least one key, live or not
    # (the listing shows only those with a live key).
    assert st["namespaces"] == 3
    assert kd("list", "--json").json() == ["a", "b"]
    assert st["disk_bytes"] > 0 and st["segments"] >= 1
    assert TIMESTAMP.match(st["last_write"])
    assert st["path"] == os.path.realpath(db)
    log = kd("log", "c/1", "--json").json()
    assert ts_to_ns(st["last_write"]) == ts_to_ns(log[0]["timestamp"])
    # The human form shows the same numbers.
    r = kd("status")
    assert r.rc == 0
    text = r.out
    assert os.path.realpath(db) in text
    assert re.search(r"^keys\s+4$", text, re.M)
    assert re.search(r"^live keys\s+3$", text, re.M)
    assert re.search(r"^versions\s+6$", text, re.M)
    assert re.search(r"^values\s+4$", text, re.M)
    for name, hexroot in st["roots"].items():
        assert hexroot in text


def test_roots_advance_with_writes(kd):
    r0 = kd("status", "--json").json()["roots"]
    kd("set", "n/k", "1")
    r1 = kd("status", "--json").json()["roots"]
    assert r1 != r0
    assert kd("status", "--json").json()["roots"] == r1  # stable when nothing is written


def test_verify_ok(kd):
    for i in range(20):
        kd("set", f"n/k{i % 5}", f'{{"i": {i}}}')
    kd("delete", "n/k0")
    r = kd("verify")
    assert r.rc == 0, r.err
    assert r.out.rstrip().endswith("ok")
    rep = kd("verify", "--json").json()
    assert rep["ok"] is True and rep["problem"] is None
    assert rep["versions"] == 21
    assert rep["segments"] >= 1 and rep["records"] >= 21 and rep["bytes"] > 0


def test_verify_empty_database(kd):
    r = kd("verify")
    assert r.rc == 0 and "ok" in r.out


def test_corruption_detected(kd, db):
    for i in range(50):
        assert kd("set", "n/k", f'{{"i": {i}, "pad": "{"p" * 200}"}}').rc == 0
    files = [os.path.join(db, f) for f in os.listdir(db)]
    files = [f for f in files if os.path.isfile(f)]
    seg = max(files, key=os.path.getsize)
    data = open(seg, "rb").read().rstrip(b"\0")  # the records, without the zero-filled reserve
    assert len(data) > 5000
    with open(seg, "r+b") as fh:  # a byte in the middle of the records
        fh.seek(len(data) // 2)
        fh.write(bytes([data[len(data) // 2] ^ 0x40]))
    # Either opening refuses (naming the file) or verify finds it (also a
    # server's, which had the database open all along): exit 7 both ways.
    r = kd("verify")
    line = one_error_line(r, 7)
    assert os.path.basename(seg) in line, line
    r = kd("get", "n/k")
    assert r.rc in (0, 7)
    if r.rc == 7:
        one_error_line(r, 7)


def crc32c(data):
    """CRC-32C (Castagnoli, reflected), as docs/FORMAT.md specifies."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_crc32c_reference():
    # The standard check value of CRC-32C.
    assert crc32c(b"123456789") == 0xE3069283


@pytest.mark.local_only("a server does not start on a newer format (test_http_core covers that)")
def test_newer_format_version_refused(kd, db):
    assert kd("set", "n/k", '{"v": 1}').rc == 0
    seg = os.path.join(db, "log-00000001.kdl")
    assert os.path.exists(seg), sorted(os.listdir(db))
    with open(seg, "rb") as fh:
        data = bytearray(fh.read())
    assert data[:8] == b"KDLOG\x00\r\n"
    assert int.from_bytes(data[8:12], "little") == 1
    data[8:12] = (99).to_bytes(4, "little")
    data[28:32] = crc32c(bytes(data[:28])).to_bytes(4, "little")
    with open(seg, "wb") as fh:
        fh.write(data)
    for args in (["get", "n/k"], ["status"], ["set", "n/k", "2"], ["verify"]):
        line = one_error_line(kd(*args), 1)
        assert "format version" in line and "99" in line, line
    with open(seg, "rb") as fh:
        assert fh.read() == bytes(data), "refusing a newer format must change nothing"


def test_koru_log(kd):
    one_error_line(kd("status", extra_env={"KORU_LOG": "loud"}), 2)
    r = kd("set", "n/k", "1", extra_env={"KORU_LOG": "debug"})
    assert r.rc == 0
    for line in r.err.splitlines():
        assert re.match(r"^\d{4}-\d\d-\d\dT\S+Z kdelta (error|warn|info|debug): ", line), line
    r = kd("get", "n/k", extra_env={"KORU_LOG": "error"})
    assert r.rc == 0 and r.out == "1\n" and r.err == ""


@pytest.mark.parametrize("redirect", ["<&- >&-", "<&- >&- 2>&-", ">&-", "2>&-"])
def test_closed_standard_streams(env, db, redirect):
    """Started with stdin, stdout or stderr closed, kdelta must not open a
    database file as fd 0-2 and then print into it (it did: the log's
    header was overwritten and the database would not open)."""
    kd = [KDELTA, "--db", db]
    assert subprocess.run(kd + ["set", "a/k1", '{"n":1}'], env=env, capture_output=True).returncode == 0
    assert subprocess.run(kd + ["set", "a/k2", '{"n":2}'], env=env, capture_output=True).returncode == 0
    q = " ".join(shlex.quote(a) for a in kd)
    for cmd, rc in (("get a/k1", 0), ("get a/missing", 3), ("export", 0), ("set a/k3 3", 0), ("log a/k1", 0)):
        p = subprocess.run(["sh", "-c", f"{q} {cmd} {redirect}"], env=env, capture_output=True)
        assert p.returncode == rc, (cmd, p.returncode)
    r = subprocess.run(kd + ["verify"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run(kd + ["export"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert [json.loads(line)["key"] for line in r.stdout.splitlines()] == ["k1", "k2", "k3"]
