"""kdelta import and export: every input format, keys from fields and
generated keys, atomic batches and what a bad row does, the progress bar
(only on a terminal), export of the current state, of a past time and of the
whole history, and the history round trip (identical ids, timestamps and
causal roots in a fresh database).

Like the rest of the CLI suite, every test runs on a local database and
through a server (`kdelta --url`); a second database (`other`) is in the
same mode: a directory, or a second server on it."""
import json
import os
import pty
import random
import re
import select
import subprocess

import pytest

from helpers import KDELTA, TIMESTAMP, canonical, one_error_line, run_kdelta, sha256_hex, ts_to_ns
from server import Server

SHARED = os.environ.get("KORU_SHARED_DATA") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data")
AMAZON = os.path.join(SHARED, "json-corpus", "amazon_cellphones.ndjson")


def ndjson(rows):
    return "".join(json.dumps(r) + "\n" for r in rows)


def export(kd, *args):
    r = kd("export", *args)
    assert r.rc == 0, r.err
    return [json.loads(line) for line in lines(r.out)]


def lines(text):
    """JSON lines; not str.splitlines(), which also splits at U+2028 inside strings."""
    return text.split("\n")[:-1] if text else []


def state(kd, *args):
    """{(ns, key): value} of an export of the current state (or --at)."""
    out = {}
    for rec in export(kd, *args):
        assert list(rec) == ["namespace", "key", "value"], rec
        out[(rec["namespace"], rec["key"])] = rec["value"]
    return out


@pytest.fixture
def other(kd, env, tmp_path):
    """other(*args) runs kdelta on a second, fresh database in kd's mode:
    `--db DIR`, or `--url` of a second server started on DIR."""
    path = str(tmp_path / "other")
    servers = []

    def run(*args, input=None):
        if kd.mode == "local":
            return run_kdelta(["--db", path] + list(args), input=input, env=env)
        if not servers:
            servers.append(Server(path, env))
        return run_kdelta(["--url", servers[0].url] + list(args), input=input, env=env)

    yield run
    for s in servers:
        assert s.stop() == 0, s.stderr()


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return str(p)


# ---------------------------------------------------------------------------
# Formats and keys
# ---------------------------------------------------------------------------


def test_ndjson_with_key(kd, tmp_path):
    rows = [{"id": "u%d" % i, "n": i, "tags": ["a", {"b": i}]} for i in range(50)]
    text = ndjson(rows[:25]) + "\n  \n" + ndjson(rows[25:]).replace("\n", "\r\n")  # blank lines, CRLF
    f = write(tmp_path, "rows.ndjson", text)
    r = kd("import", "users", f, "--key", "id")
    assert r.rc == 0, r.err
    assert r.out == ""
    assert r.err.startswith("imported 50 rows: 50 versions, %d bytes in " % len(text.encode())), r.err
    assert "\r" not in r.err and "\x1b" not in r.err  # no progress bar off a terminal
    got = state(kd)
    assert got == {("users", row["id"]): row for row in rows}
    # Values are stored canonically: version_id is the hash of the canonical text.
    rec = kd("get", "users/u7", "--json").json()
    assert rec["version_id"] == sha256_hex(canonical(rows[7]))


def test_summary_json(kd, tmp_path):
    f = write(tmp_path, "r.ndjson", ndjson([{"k": i} for i in range(3)]))
    r = kd("import", "ns", f, "--json")
    assert r.rc == 0, r.err
    s = json.loads(r.out)
    assert s["ok"] is True and s["rows"] == 3 and s["versions"] == 3 and s["skipped"] == 0
    assert s["bytes"] == os.path.getsize(f) and s["seconds"] >= 0
    assert r.err == ""


def test_key_dotted_paths_and_types(kd, tmp_path):
    rows = [
        {"user": {"id": "alice"}, "v": 1},
        {"user": {"id": 42}, "v": 2},                       # numbers: their JSON text
        {"user": {"id": "x", "id2": 0}, "v": 4},
        {"user": {"id": "s\u00e9p/\"q\""}, "v": 5},        # escapes decoded
    ]
    text = ndjson(rows) + '{"user": {"id": -1.5e3}, "v": 3}\n'  # as written, not re-formatted
    # Duplicate member names: the last one wins, as in the stored canonical value.
    text += '{"user": {"id": "first", "id": "last"}, "v": 6}\n'
    f = write(tmp_path, "r.ndjson", text)
    r = kd("import", "p", f, "--key", "user.id")
    assert r.rc == 0, r.err
    got = state(kd, "p")
    assert set(k for _, k in got) == {"alice", "42", "-1.5e3", "x", "s\u00e9p/\"q\"", "last"}
    assert got[("p", "last")]["user"] == {"id": "last"}


@pytest.mark.parametrize("row,problem", [
    ('{"user": {"name": "bob"}}', "no field 'user.id'"),
    ('{"user": "bob"}', "is not a JSON object"),
    ('{"user": {"id": {"a": 1}}}', "is an object, not a string or number"),
    ('{"user": {"id": [1]}}', "is an array"),
    ('{"user": {"id": null}}', "is null"),
    ('{"user": {"id": true}}', "is a boolean"),
    ('{"user": {"id": ""}}', "empty string"),
    ('[1, 2]', "is not a JSON object"),
    ('{"user": {"id": "a"}', "invalid JSON"),
])
def test_key_field_problems(kd, tmp_path, row, problem):
    f = write(tmp_path, "r.ndjson", '{"user": {"id": "ok"}}\n' + row + "\n")
    line = one_error_line(kd("import", "p", f, "--key", "user.id"), 4)
    assert "line 2: " in line and problem in line, line
    assert "0 rows committed" in line
    assert state(kd) == {}


def test_generated_keys_continue(kd, tmp_path):
    f = write(tmp_path, "r.ndjson", ndjson([{"i": i} for i in range(12)]))
    assert kd("import", "g", f, "--batch", "5").rc == 0
    keys = kd("list", "g", "--json").json()
    assert keys == ["%012d" % i for i in range(1, 13)]
    # Other keys in the namespace do not disturb the sequence.
    assert kd("set", "g/zzz", "1").rc == 0
    assert kd("set", "g/000000000099x", "1").rc == 0
    assert kd("import", "g", f).rc == 0
    keys = kd("list", "g", "--json").json()
    gen = [k for k in keys if k.isdigit()]
    assert gen == ["%012d" % i for i in range(1, 25)]
    assert kd("get", "g/000000000013").json() == {"i": 0}
    assert kd("get", "g/000000000024").json() == {"i": 11}


def test_json_array_streaming(kd, tmp_path):
    tricky = [
        {"s": "commas, ] brackets } and \"quotes\" \\", "a": [[1, 2], {"x": "]"}]},
        "a plain string, with a comma",
        [1, [2, [3]]],
        12345678901234567890123,
        None,
        {"nested": {"deep": [{"k": "v\n"}]}},
    ]
    text = "[\n" + ",\n".join("  " + json.dumps(v) for v in tricky) + "\n]\n"
    f = write(tmp_path, "a.json", text)
    r = kd("import", "j", f, "--format", "json")
    assert r.rc == 0, r.err
    assert "imported 6 rows" in r.err
    got = export(kd, "j")
    assert [g["key"] for g in got] == ["%012d" % i for i in range(1, 7)]
    assert got[0]["value"] == tricky[0]
    assert got[3]["value"] == 12345678901234567890123


def test_json_big_array_and_single_value(kd, tmp_path):
    # Elements larger than the read buffer (1 MiB) are cut out correctly.
    big = [{"id": i, "pad": "x" * 300000 + ",]}\"" * (i % 2)} for i in range(8)]
    f = write(tmp_path, "big.json", json.dumps(big))
    r = kd("import", "b", f, "--format", "json", "--key", "id")
    assert r.rc == 0, r.err
    assert state(kd, "b") == {("b", str(r["id"])): r for r in big}
    f = write(tmp_path, "one.json", '  {"only": "one"}  \n')
    assert kd("import", "one", f, "--format", "json").rc == 0
    assert state(kd, "one") == {("one", "000000000001"): {"only": "one"}}
    f = write(tmp_path, "empty.json", " [ ] ")
    r = kd("import", "e", f, "--format", "json")
    assert r.rc == 0 and "imported 0 rows" in r.err


@pytest.mark.parametrize("text,where,problem", [
    ('[{"a": 1},\n{"a": 2},\n{"a": 3', "line 3", "ends inside the array"),
    ('[{"a": 1},\n\n{"a": 2}}]', "line 3", "invalid JSON"),
    ('[{"a": 1},,{"a": 2}]', "line 1", "empty array element"),
    ('[{"a": 1}]\n[{"a": 2}]', "line 2", "after the array"),
])
def test_json_array_errors(kd, tmp_path, text, where, problem):
    f = write(tmp_path, "a.json", text)
    line = one_error_line(kd("import", "j", f, "--format", "json"), 4)
    assert where + ": " in line and problem in line, line
    assert state(kd) == {}


def test_header_ndjson(kd, tmp_path):
    text = '["id", "name", "tags", "n\\u00e9"]\n["a", "Ann", [1, 2], {"x": null}]\n\n["b", "Bob", [], 3]\n'
    f = write(tmp_path, "h.ndjson", text)
    r = kd("import", "people", f, "--format", "header-ndjson", "--key", "id")
    assert r.rc == 0, r.err
    assert state(kd) == {
        ("people", "a"): {"id": "a", "name": "Ann", "tags": [1, 2], "n\u00e9": {"x": None}},
        ("people", "b"): {"id": "b", "name": "Bob", "tags": [], "n\u00e9": 3},
    }


@pytest.mark.parametrize("text,where,problem", [
    ('["id", "name"]\n["a", "Ann"]\n["b"]\n', "line 3", "has 1 value, the header names 2 fields"),
    ('["id", "name"]\n["a", "Ann", 3]\n', "line 2", "has 3 values"),
    ('["id", "name"]\n{"id": "a"}\n', "line 2", "not a JSON array"),
    ('["id", "name"]\n["a", tru]\n', "line 2", "invalid JSON"),
])
def test_header_ndjson_bad_rows(kd, tmp_path, text, where, problem):
    f = write(tmp_path, "h.ndjson", text)
    line = one_error_line(kd("import", "p", f, "--format", "header-ndjson"), 4)
    assert where + ": " in line and problem in line, line
    assert state(kd) == {}


@pytest.mark.parametrize("header", ['{"id": 1}', '["id", 2]', '[]', 'nope'])
def test_header_ndjson_bad_header(kd, tmp_path, header):
    f = write(tmp_path, "h.ndjson", header + '\n["a"]\n')
    line = one_error_line(kd("import", "p", f, "--format", "header-ndjson"), 4)
    assert "line 1: " in line and "header" in line, line


def test_amazon_cellphones(kd):
    if not os.path.exists(AMAZON):
        pytest.skip("shared data absent: %s (set KORU_SHARED_DATA)" % AMAZON)
    r = kd("import", "phones", AMAZON, "--format", "header-ndjson", "--key", "asin", "--json")
    assert r.rc == 0, r.err
    with open(AMAZON, encoding="utf-8") as f:
        lines = [json.loads(l) for l in f if l.strip()]
    header, rows = lines[0], lines[1:]
    summary = json.loads(r.out)
    assert summary["rows"] == len(rows) == 792
    expected = {}
    for row in rows:
        expected[("phones", row[header.index("asin")])] = dict(zip(header, row))
    got = state(kd, "phones")
    assert got == expected
    # Generated keys: one key per row, in file order.
    assert kd("import", "phones2", AMAZON, "--format", "header-ndjson").rc == 0
    got2 = export(kd, "phones2")
    assert len(got2) == 792
    assert [g["value"] for g in got2] == [dict(zip(header, row)) for row in rows]


# ---------------------------------------------------------------------------
# Bad rows, batches, --skip-bad, stdin
# ---------------------------------------------------------------------------


def test_bad_line_stops_before_its_batch(kd, tmp_path):
    lines = [json.dumps({"id": "k%02d" % i}) for i in range(1, 40)]
    lines[26] = '{"id": "k27", oops}'  # line 27, in the third batch of 10 (lines 21-30)
    f = write(tmp_path, "r.ndjson", "\n".join(lines) + "\n")
    line = one_error_line(kd("import", "s", f, "--key", "id", "--batch", "10"), 4)
    assert "line 27: invalid JSON at byte" in line, line
    assert "20 rows committed before it" in line, line
    got = state(kd, "s")
    assert sorted(k for _, k in got) == ["k%02d" % i for i in range(1, 21)]  # nothing of lines 21-30
    # The same, detected by kdelta itself (missing key field) rather than the library.
    lines[26] = '{"name": "no id"}'
    f = write(tmp_path, "r2.ndjson", "\n".join(lines) + "\n")
    line = one_error_line(kd("import", "s2", f, "--key", "id", "--batch", "10"), 4)
    assert "line 27: no field 'id'" in line and "20 rows committed" in line, line
    assert len(state(kd, "s2")) == 20
    # --json: the summary on stdout says the same.
    r = kd("import", "s3", f, "--key", "id", "--batch", "10", "--json")
    assert r.rc == 4
    s = json.loads(r.out)
    assert s["ok"] is False and s["rows"] == 20 and s["line"] == 27 and "no field" in s["error"]


def test_bad_line_generated_keys_and_blank_lines(kd, tmp_path):
    text = '{"a": 1}\n\n\n{"a": 2}\n[1, 2\n{"a": 3}\n'
    f = write(tmp_path, "r.ndjson", text)
    line = one_error_line(kd("import", "g", f), 4)
    assert "line 5: invalid JSON" in line and "0 rows committed" in line, line
    assert state(kd) == {}


@pytest.mark.parametrize("fmt, text", [
    ("ndjson", '{"v":1}\n{bad\n{"v":3}\n'),
    ("header-ndjson", '["v"]\n[1]\n[2,2]\n[3]\n'),
    ("json", '[{"v":1},,{"v":3}]'),
])
def test_skipped_rows_keep_their_generated_keys(kd, tmp_path, fmt, text):
    """A bad row's generated key is not reused, whichever format finds it
    bad (header-ndjson and json rows bad in the reader reused it)."""
    f = write(tmp_path, "r", text)
    assert kd("import", "g", f, "--format", fmt, "--skip-bad").rc == 0
    assert kd("list", "g").out.split() == ["000000000001", "000000000003"]


def test_skip_bad(kd, tmp_path):
    lines = [json.dumps({"id": "k%02d" % i}) for i in range(1, 31)]
    lines[3] = "not json"              # line 4
    lines[14] = '{"noid": 1}'          # line 15
    lines[15] = '{"id": "k16"'         # line 16
    lines[29] = '{"id": ["x"]}'        # line 30, the last line
    f = write(tmp_path, "r.ndjson", "\n".join(lines) + "\n")
    r = kd("import", "s", f, "--key", "id", "--batch", "7", "--skip-bad")
    assert r.rc == 0, r.err
    err = r.err.splitlines()
    assert len(err) == 5, r.err
    for n, what in zip((4, 15, 16, 30), ("invalid JSON", "no field 'id'", "invalid JSON", "is an array")):
        assert any(l.startswith("kdelta: ") and ("line %d: " % n) in l and what in l and "(skipped)" in l
                   for l in err[:4]), (n, r.err)
    assert err[4].startswith("imported 26 rows: 26 versions") and "4 bad rows skipped" in err[4]
    got = state(kd, "s")
    assert sorted(k for _, k in got) == ["k%02d" % i for i in range(1, 30) if i not in (4, 15, 16)]


@pytest.mark.parametrize("batch", ["1", "10"])
def test_rows_the_library_refuses(kd, tmp_path, batch):
    """Rows only the library can judge (names not UTF-8, too long, values
    that are not JSON) are named by line, with the library's words, the same
    on a database and through a server (where such a row cannot even be sent)."""
    one = batch == "1"
    cases = [
        # generated keys, a value that is not UTF-8
        ("g1", [], b'1\n"\xff"\n3\n', 2, ("g1/000000000002: " if one else "") + "invalid JSON at byte 1: invalid UTF-8 in a string"),
        # generated keys, a value that is not JSON
        ("g2", [], b'1\n2\n[3,\n', 3, ("g2/000000000003: " if one else "") + "invalid JSON at byte"),
        # a key that is not UTF-8: names are checked before values
        ("k1", ["--key", "id"], b'{"id": "a"}\n{"id": "b\xfe"}\n', 2, "key is not valid UTF-8"),
        # a key over the limit
        ("k2", ["--key", "id"], b'{"id": "a"}\n{"id": "' + b"x" * 1100 + b'"}\n', 2,
         "key is 1100 bytes; the limit is 1024"),
    ]
    for ns, args, text, line_no, why in cases:
        f = write(tmp_path, "r.ndjson", text)
        line = one_error_line(kd("import", ns, f, "--batch", batch, *args), 4)
        committed = (line_no - 1) if one else 0
        assert ("line %d: %s" % (line_no, why)) in line, line
        assert "%d row%s committed before it" % (committed, "" if committed == 1 else "s") in line, line
        assert len(state(kd, ns)) == committed
    # --skip-bad: each is reported and left out, the rest is written.
    text = b'{"id": "a"}\n{"id": "b\xfe"}\n{"id": "c", "v": "\xff"}\n{"id": "' + b"x" * 1100 + b'"}\n{"id": "e"}\n'
    f = write(tmp_path, "s.ndjson", text)
    r = kd("import", "s", f, "--key", "id", "--batch", batch, "--skip-bad")
    assert r.rc == 0, r.err
    err = r.err.splitlines()
    assert len(err) == 4, r.err
    assert "line 2: key is not valid UTF-8 (skipped)" in err[0]
    assert "line 3: " in err[1] and "invalid UTF-8 in a string (skipped)" in err[1]
    assert "line 4: key is 1100 bytes; the limit is 1024 (skipped)" in err[2]
    assert sorted(k for _, k in state(kd, "s")) == ["a", "e"]


def test_history_rows_the_library_refuses(kd, other, tmp_path):
    """import --history: a record the library refuses before its checks of
    ids stops the batch at that record, and an earlier record's bad name
    comes first, in both modes."""
    kd("set", "h/a", "1")
    kd("set", "h/b", "2")
    kd("set", "h/c", "3")
    recs = lines(kd("export", "--history").out)
    bad_value = recs[1].replace('"value":2', '"value":tru')
    assert bad_value != recs[1]
    f = write(tmp_path, "v.ndjson", "\n".join([recs[0], bad_value, recs[2]]) + "\n")
    line = one_error_line(other("import", "--history", f), 4)
    assert "line 2: invalid JSON at byte" in line and "0 rows committed" in line, line
    long_ns = json.loads(recs[0])
    long_ns["namespace"] = "n" * 300
    f = write(tmp_path, "n.ndjson", "\n".join([json.dumps(long_ns), bad_value, recs[2]]) + "\n")
    line = one_error_line(other("import", "--history", f), 4)
    assert "line 1: namespace is 300 bytes; the limit is 255" in line, line
    assert other("export", "--history").out == ""  # nothing was written, not even by a probe
    f = write(tmp_path, "ok.ndjson", "\n".join(recs) + "\n")
    assert other("import", "--history", f).rc == 0
    assert other("export", "--history").out == kd("export", "--history").out


def test_export_refuses_reserved_namespaces(kd):
    kd("set", "a/b", "1")
    for args in (("_kd.views",), ("_kd.views", "--history"), ("_kdx", "--at", "now")):
        line = one_error_line(kd("export", *args), 4)
        assert "reserved" in line, line
    assert kd("export").out == '{"namespace":"a","key":"b","value":1}\n'


def test_stdin(kd):
    r = kd("import", "in", "-", "--key", "k", input=ndjson([{"k": "a"}, {"k": "b"}]))
    assert r.rc == 0, r.err
    assert state(kd) == {("in", "a"): {"k": "a"}, ("in", "b"): {"k": "b"}}
    r = kd("import", "in2", "-", "--format", "json", input='[{"k": 1}, {"k": 2}]')
    assert r.rc == 0, r.err
    assert len(state(kd, "in2")) == 2


def test_line_too_long(kd):
    text = b'{"a": "' + b"x" * (65 << 20) + b'"}\n'
    line = one_error_line(kd("import", "big", "-", input=text), 4)
    assert "longer than 64 MiB" in line, line


def test_usage_errors(kd, tmp_path):
    f = write(tmp_path, "r.ndjson", '{"a": 1}\n')
    one_error_line(kd("import", "ns", f, "--format", "csv"), 2)
    one_error_line(kd("import", "ns"), 2)
    one_error_line(kd("import", "ns", f, "--batch", "0"), 2)
    one_error_line(kd("import", "ns", f, "--history", "--key", "id"), 2)
    one_error_line(kd("export", "--key", "id"), 2)
    one_error_line(kd("export", "--format", "csv"), 2)
    line = one_error_line(kd("import", "_kdx", f), 4)
    assert "reserved" in line
    line = one_error_line(kd("import", "ns", str(tmp_path / "missing.ndjson")), 1)
    assert "cannot open" in line
    line = one_error_line(kd("export", "--at", "yesterday-ish"), 4)
    assert "--at" in line


# ---------------------------------------------------------------------------
# Progress bar: only on a terminal
# ---------------------------------------------------------------------------


def run_with_tty_stderr(args, env):
    """Run kdelta with stderr on a pseudo-terminal; returns (rc, stdout, tty bytes)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([KDELTA] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not data:
            break
        chunks.append(data)
    out = p.stdout.read()
    p.wait(timeout=60)
    os.close(master)
    return p.returncode, out, b"".join(chunks)


def test_progress_bar_only_on_a_terminal(kd, env, tmp_path):
    f = write(tmp_path, "r.ndjson", ndjson([{"i": i, "pad": "y" * 50} for i in range(20000)]))
    rc, out, tty = run_with_tty_stderr(kd.target() + ["import", "t", f], env)
    assert rc == 0, tty
    text = tty.decode("utf-8", "replace")
    assert "rows/s" in text and "\r" in text and "\x1b[K" in text, text
    assert "%" in text and "[" in text  # a bar and a percentage: the size is known
    assert "imported 20000 rows" in text
    # Piped: no bar at all, just the summary line.
    r = kd("import", "t2", f)
    assert r.rc == 0
    assert "\r" not in r.err and "\x1b" not in r.err
    assert r.err.count("\n") == 1 and r.err.startswith("imported 20000 rows")
    # stdin of unknown size on a terminal: rows and rate, no percentage.
    rc, out, tty = run_with_tty_stderr(kd.target() + ["import", "t3", "/dev/stdin"], env)
    assert rc == 0


# ---------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------


def test_export_current_and_formats(kd):
    for k, v in (("a/2", '{"x": 2}'), ("a/1", "[1]"), ("b/k", '"s"'), ("a/3", "null"), ("a/1", "[1, 1]")):
        assert kd("set", k, v).rc == 0
    assert kd("delete", "a/3").rc == 0
    r = kd("export")
    assert r.rc == 0, r.err
    assert r.out == ('{"namespace":"a","key":"1","value":[1,1]}\n'
                     '{"namespace":"a","key":"2","value":{"x":2}}\n'
                     '{"namespace":"b","key":"k","value":"s"}\n')
    assert [x["key"] for x in export(kd, "a")] == ["1", "2"]
    assert export(kd, "a/") == export(kd, "a")
    assert kd("export", "nothing-here").out == ""
    r = kd("export", "--format", "json")
    assert r.rc == 0
    assert json.loads(r.out) == [json.loads(l) for l in lines(kd("export").out)]
    assert kd("export", "none", "--format", "json").out == "[]\n"


def test_export_at(kd):
    t = []
    for v in range(3):
        kd("set", "n/a", str(v))
        kd("set", "n/b%d" % v, str(v))
        t.append(kd("get", "n/a", "--json").json()["timestamp"])
    kd("delete", "n/a")
    assert ("n", "a") not in state(kd)
    at0 = state(kd, "--at", t[0])
    assert at0 == {("n", "a"): 0}  # b0 was written after a's first version
    at1 = state(kd, "--at", t[1])
    assert at1 == {("n", "a"): 1, ("n", "b0"): 0}
    # A key deleted now still appears as it was at TIME; namespace filter works.
    assert state(kd, "n", "--at", t[2]) == {("n", "a"): 2, ("n", "b0"): 0, ("n", "b1"): 1}
    assert state(kd, "--at", "@1") == {}
    assert state(kd, "--at", "now") == state(kd)


def test_export_at_leaves_out_vectors(kd):
    """A key's vectors live in the reserved namespace _kd.vec.NS, which the
    log holds too: export --at wrote them as lines locally, and through a
    server was refused whole ("namespace '_kd.vec.docs' is reserved")."""
    assert kd("set", "users/x", '{"a":1}').rc == 0
    assert kd("vector", "put", "docs/v", "[1,2]", "--model", "m").rc == 0
    for opts in ([], ["-w", "w"]):
        if opts:
            assert kd("workspace", "create", "w").rc == 0
            assert kd(*opts, "set", "users/y", "2").rc == 0
            assert kd(*opts, "vector", "put", "docs/v", "[1,2]", "--model", "m").rc == 0
        r = kd(*opts, "export", "--at", "now")
        assert r.rc == 0, r.err
        assert r.out == kd(*opts, "export").out and "_kd" not in r.out, r.out


def test_export_history_shape(kd):
    kd("set", "h/k", '{"v": 1}')
    kd("set", "h/k", '{"v": 2}')
    kd("delete", "h/k")
    kd("set", "other/x", "true")
    recs = export(kd, "--history")
    assert [(r["namespace"], r["key"], r["deleted"]) for r in recs] == [
        ("h", "k", False), ("h", "k", False), ("h", "k", True), ("other", "x", False)]
    log = list(reversed(kd("log", "h/k", "--json").json()))
    for rec, l in zip(recs, log):
        assert list(rec) == ["namespace", "key", "value", "version_id", "write_id", "previous_write_id",
                             "timestamp", "deleted", "node_id"]
        assert {k: v for k, v in rec.items() if k != "node_id"} == l
        assert len(rec["node_id"]) == 32 and int(rec["node_id"], 16) >= 0
        assert TIMESTAMP.match(rec["timestamp"])
    assert len({r["node_id"] for r in recs}) == 1
    ts = [ts_to_ns(r["timestamp"]) for r in recs]
    assert ts == sorted(ts)
    assert [r["namespace"] for r in export(kd, "other", "--history")] == ["other"]
    assert len(export(kd, "--history", "--at", recs[1]["timestamp"])) == 2
    assert json.loads(kd("export", "--history", "--format", "json").out) == recs


def test_import_history_refuses_forgeries(kd, other, tmp_path):
    kd("set", "h/k", '{"v": 1}')
    kd("set", "h/k", '{"v": 2}')
    recs = export(kd, "--history")
    forged = [dict(r) for r in recs]
    forged[1]["value"] = {"v": 3}
    f = write(tmp_path, "f.ndjson", ndjson(forged))
    r = other("import", "--history", f)
    line = one_error_line(r, 4)
    assert "line 2: " in line, line
    # Atomic: the batch held both lines, so nothing was written.
    assert other("export", "--history").out == ""
    # Importing the honest file twice: the second time the chain does not fit.
    f = write(tmp_path, "h.ndjson", ndjson(recs))
    assert other("import", "--history", f).rc == 0
    line = one_error_line(other("import", "--history", f), 4)
    assert "line 1: " in line


# ---------------------------------------------------------------------------
# Round trip
# ---------------------------------------------------------------------------


def build_database(kd, tmp_path):
    """>= 10,000 versions over several namespaces: creates, updates (also to
    earlier values), deletes and re-creations, generated keys, odd names."""
    rnd = random.Random(7)
    fast = ("--sync", "none") if kd.mode == "local" else ()  # a server has its own --sync
    total = 0
    for rnd_no in range(4):
        for ns in ("alpha", "beta", "sp ace/ns", "\u00fcml"):
            rows = []
            for i in range(700):
                k = rnd.randrange(900)
                v = {"id": "k%03d" % k, "round": rnd_no if rnd.random() < 0.7 else 0,
                     "big": 2 ** 70 + k, "f": k / 7, "s": "\u00e9\u4e2d\"\\" * (k % 3)}
                rows.append(v)
            f = write(tmp_path, "r%d.ndjson" % rnd_no, ndjson(rows))
            r = kd("import", ns, f, "--key", "id", "--batch", str(rnd.choice((1, 50, 1000))), *fast)
            assert r.rc == 0, r.err
            total += len(rows)
    f = write(tmp_path, "gen.ndjson", ndjson([{"n": i} for i in range(300)]))
    assert kd("import", "gen", f, *fast).rc == 0
    total += 300
    deleted = []
    for ns, k in (("alpha", "k001"), ("alpha", "k002"), ("beta", "k010"), ("sp ace/ns", "k100"),
                  ("\u00fcml", "k200"), ("gen", "000000000005")):
        for key in (k,):
            if kd("delete", "%s/%s" % (ns, key), *fast).rc == 0:
                deleted.append((ns, key))
                total += 1
    kd("set", "alpha/k001", '{"back": true}', *fast)  # re-created after its delete
    kd("set", "gen/odd\nkey\u2028", "[]", *fast)
    total += 2
    assert total >= 10000
    return deleted


def status_roots(kd, *args):
    return kd(*args, "status", "--json").json()["roots"]


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_history_round_trip(kd, other, tmp_path, fmt):
    deleted = build_database(kd, tmp_path)
    st = kd("status", "--json").json()
    assert st["versions"] >= 10000
    r = kd("export", "--history", "--format", fmt)
    assert r.rc == 0 and r.err == "", r.err  # no versions left out, none reported (~3,900 keys)
    hist = tmp_path / ("history." + fmt)
    hist.write_text(r.out, encoding="utf-8")
    recs = json.loads(r.out) if fmt == "json" else [json.loads(l) for l in lines(r.out)]
    assert len(recs) == st["versions"]

    r = other("import", "--history", str(hist), "--format", fmt, "--json")
    assert r.rc == 0, r.err
    assert json.loads(r.out)["versions"] == st["versions"]

    st2 = other("status", "--json").json()
    assert st2["roots"] == st["roots"]
    for field in ("keys", "live_keys", "versions", "values", "namespaces", "last_write"):
        assert st2[field] == st[field], field
    assert other("verify").rc == 0
    # Histories of a sample of keys, deleted ones included.
    sample = deleted + [("alpha", "k%03d" % i) for i in range(0, 900, 37)] + [("gen", "odd\nkey\u2028")]
    for ns, key in sample:
        a = kd("log", "%s/%s" % (ns, key), "--json")
        b = other("log", "%s/%s" % (ns, key), "--json")
        assert a.rc == b.rc and a.out == b.out, (ns, key)
    # Every export is identical.
    mid = recs[len(recs) // 2]["timestamp"]
    for args in ((), ("--history",), ("--at", mid), ("beta",), ("--history", "\u00fcml")):
        a = kd("export", *args)
        b = other("export", *args)
        assert a.rc == 0 and a.out == b.out, args


def test_history_of_a_workspace_into_a_new_database(kd, other, tmp_path):
    """`export --history` of workspace w imports with `-w w` into a new
    database: w does not exist there yet, and making it first would be a
    write newer than the history, so import makes it just before the first
    version. The copy has the same histories and exports; a database with
    a newer write refuses, says why, and makes no workspace."""
    assert kd("workspace", "create", "w").rc == 0
    for i in range(3):
        assert kd("-w", "w", "set", "u/a", str(i)).rc == 0
    assert kd("-w", "w", "set", "u/b", '{"x":1}').rc == 0
    assert kd("-w", "w", "delete", "u/b").rc == 0
    r = kd("-w", "w", "export", "--history")
    assert r.rc == 0, r.err
    hist = write(tmp_path, "w.ndjson", r.out)
    first = json.loads(r.out.splitlines()[0])["timestamp"]

    r = other("-w", "w", "import", "--history", hist)
    assert r.rc == 0, r.err
    assert "created workspace w at" in r.err and "just before the first version" in r.err, r.err
    assert other("workspace", "list").out.split() == ["default", "w"]
    for key in ("u/a", "u/b"):
        a, b = kd("-w", "w", "log", key, "--json"), other("-w", "w", "log", key, "--json")
        assert (a.rc, a.out) == (b.rc, b.out), key
    assert other("-w", "w", "export", "--history").out == kd("-w", "w", "export", "--history").out
    assert other("verify").rc == 0
    assert other("-w", "w", "get", "u/a", "--at", first).out == "0\n"

    # a second time: the history is older than what the database holds now
    r = other("-w", "w2", "import", "--history", hist)
    assert r.rc == 4, r.err
    assert ("would not come after the database's newest write" in r.err  # through a server: w2 is made first
            or ("is not after" in r.err and "the database's newest write" in r.err)), r.err
    assert "w2" not in other("workspace", "list").out.split()
    # the default workspace of a database with newer writes: named times
    r = other("import", "--history", hist)
    assert r.rc == 4 and "is not after" in r.err and "the database's newest write" in r.err, r.err
    assert not re.search(r"\d{19}", r.err), r.err  # RFC 3339, not raw nanoseconds


def test_history_refused_makes_no_workspace(kd, other, tmp_path):
    """A workspace's history imported with -w under another name is refused
    (write_ids hash the workspace) and makes nothing: the workspace it made
    first stayed, and, newer than any history, barred the right import."""
    assert kd("workspace", "create", "staging").rc == 0
    assert kd("-w", "staging", "set", "users/alice", '{"name":"Alice"}').rc == 0
    hist = write(tmp_path, "s.ndjson", kd("-w", "staging", "export", "--history").out)
    r = other("-w", "stagin", "import", "--history", hist)
    assert r.rc == 4 and "does not match" in r.err and "created workspace" not in r.err, r.err
    assert other("workspace", "list").out.split() == ["default"]
    r = other("-w", "staging", "import", "--history", hist)
    assert r.rc == 0 and "created workspace staging" in r.err, r.err
    assert other("-w", "staging", "get", "users/alice").out == '{"name":"Alice"}\n'
    assert other("verify").rc == 0


def test_history_of_a_compacted_namespace(kd, other, tmp_path):
    """Versions whose values retention removed cannot be exported: the export
    says how many of the versions it holds follow such a gap, and import
    --history says why it stops at the first of them."""
    for i in range(5):
        assert kd("set", "c/a", '{"v":%d}' % i).rc == 0
        assert kd("set", "c/b", '{"w":%d}' % i).rc == 0
    assert kd("set", "c/whole", "1").rc == 0
    assert kd("set", "d/x", "1").rc == 0
    assert kd("set", "d/x", "2").rc == 0
    for rnd in range(2):  # enough keys for the export's table of keys to grow
        f = write(tmp_path, "m%d.ndjson" % rnd, ndjson([{"id": "m%04d" % i, "r": rnd} for i in range(4000)]))
        assert kd("import", "many", f, "--key", "id").rc == 0
    assert kd("retention", "set", "many", "--keep-last", "1").rc == 0
    assert kd("retention", "set", "c", "--keep-last", "2").rc == 0
    r = kd("compact")
    assert r.rc == 0, r.err
    r = kd("export", "--history", "d")  # nothing removed there: whole, and silent
    assert r.rc == 0 and r.err == "", r.err
    r = kd("export", "--history")
    assert r.rc == 0, r.err
    assert "4002 versions of 4002 keys follow versions whose values retention removed" in r.err
    recs = [json.loads(l) for l in lines(r.out)]
    assert sum(x["namespace"] == "many" for x in recs) == 4000
    assert [(x["key"], x["value"]) for x in recs if x["namespace"] == "c"] == [
        ("a", {"v": 3}), ("b", {"w": 3}), ("a", {"v": 4}), ("b", {"w": 4}), ("whole", 1)]
    r = other("import", "--history", write(tmp_path, "h.ndjson", r.out))
    assert r.rc == 6
    assert "the versions before it are missing" in r.err and "retention" in r.err, r.err
    assert other("export").out == ""  # the first row was the bad one: nothing imported


def test_history_import_one_namespace(kd, other, tmp_path):
    kd("set", "a/x", "1")
    kd("set", "b/y", "2")
    kd("set", "a/x", "3")
    f = write(tmp_path, "h.ndjson", kd("export", "--history").out)
    r = other("import", "--history", "a", f)
    assert r.rc == 0, r.err
    assert "1 record of other namespaces left out" in r.err
    assert other("export").out == kd("export", "a").out


@pytest.mark.parametrize("row", ["not json", "[1]", "42"])
def test_history_row_that_is_not_an_object(kd, tmp_path, row):
    """import --history: a row that is not a JSON object is named with its
    line and the reason, on stderr, in --json and with --skip-bad."""
    f = write(tmp_path, "h.ndjson", row + "\n")
    why = "invalid JSON" if row == "not json" else "not a version record (a JSON object)"
    line = one_error_line(kd("import", "--history", f), 4)
    assert "line 1: " in line and why in line, line
    r = kd("import", "--history", f, "--json")
    assert r.rc == 4
    j = json.loads(r.out)
    assert j["ok"] is False and j["line"] == 1 and why in j["error"], r.out
    r = kd("import", "--history", f, "--skip-bad")
    assert r.rc == 0, r.err
    assert "line 1: " in r.err and why in r.err and "(skipped)" in r.err, r.err


def test_oversized_value_in_a_batch(kd, tmp_path):
    """A value over the 16 MiB limit is one bad row, named by its line: not
    a batch that is too large. --skip-bad leaves it out and writes the rest."""
    big = json.dumps({"id": "b", "v": "x" * (16 << 20)})
    f = write(tmp_path, "big.ndjson", '{"id": "a"}\n' + big + '\n{"id": "c"}\n')
    line = one_error_line(kd("import", "big", f, "--key", "id"), 4)
    assert "line 2: " in line and "the limit is 16777216" in line, line
    assert "smaller --batch" not in line
    r = kd("import", "big", f, "--key", "id", "--skip-bad")
    assert r.rc == 0, r.err
    assert "line 2: " in r.err and "the limit is 16777216 (skipped)" in r.err, r.err
    assert sorted(k for _, k in state(kd, "big")) == ["a", "c"]


def test_import_namespace_with_a_trailing_slash(kd, other, tmp_path):
    """`import users/ FILE` is namespace users, as `list users/` and `export
    users/` read it (docs/CLI.md "Names": one trailing '/' is dropped); it
    wrote a namespace "users/" that spelling could not reach again, and
    with --history imported nothing."""
    f = write(tmp_path, "r.ndjson", '{"id":"k1","v":1}\n')
    r = kd("import", "users/", f, "--key", "id")
    assert r.rc == 0, r.err
    assert kd("list").out == "users\n"
    assert kd("get", "users/k1").out == '{"id":"k1","v":1}\n'
    hist = write(tmp_path, "h.ndjson", kd("export", "--history").out)
    r = other("import", "--history", "users/", hist)
    assert r.rc == 0 and "imported 1 row" in r.err, r.err
    assert other("get", "users/k1").out == '{"id":"k1","v":1}\n'


def test_history_as_json_refuses_lines(kd, other, tmp_path):
    """--format json reads one array; given an export of lines, it took the
    first record and dropped the rest without a word. Anything after a
    record's closing brace is now an error, and nothing is imported."""
    for v in (1, 2, 3):
        assert kd("set", "a/k", str(v)).rc == 0
    text = kd("export", "--history").out
    for body in (text, text.split("\n")[0] + "\ngarbage garbage\n", text.split("\n")[0][:-1]):
        r = other("import", "--history", write(tmp_path, "h.json", body), "--format", "json")
        assert r.rc == 4 and "0 rows committed" in r.err, r.err
        assert other("list").out == ""
    r = other("import", "--history", write(tmp_path, "h.ndjson", text))
    assert r.rc == 0 and "imported 3 rows" in r.err, r.err


def test_history_of_vectors_keeps_one_dimension_per_model(kd, other, env, tmp_path):
    """All live vectors of one (namespace, model) have one dimension
    (docs/VECTORS.md). import --history let a history put 3-dimensional
    vectors of model m beside the database's 2-dimensional ones: the
    indexes were then disabled at every open, and puts of either refused."""
    assert other("vector", "put", "docs/old", "[1,2]", "--model", "m").rc == 0
    before = other("--json", "status").json()["roots"]
    assert kd("vector", "put", "docs/new", "[1,2,3]", "--model", "m").rc == 0
    hist = write(tmp_path, "h.ndjson", kd("export", "--history").out)
    r = other("import", "--history", hist)
    assert r.rc == 4, r.err
    assert "vector has 3 dimensions but the vectors of model 'm' in namespace 'docs' have 2" in r.err, r.err
    assert other("--json", "status").json()["roots"] == before
    assert other("vector", "search", "docs", "[1,2]").rc == 0
    assert other("verify").rc == 0

    # A history that changes the dimension once no vector of the old one is
    # live kept the rule at every step: it imports, into a new database.
    assert kd("vector", "delete", "docs/new").rc == 0
    assert kd("vector", "put", "docs/newer", "[1,2,3,4]", "--model", "m").rc == 0
    hist = write(tmp_path, "h2.ndjson", kd("export", "--history").out)
    fresh = ["--db", str(tmp_path / "fresh")]
    r = run_kdelta(fresh + ["import", "--history", hist], env=env)
    assert r.rc == 0, r.err
    r = run_kdelta(fresh + ["--json", "vector", "search", "docs", "[1,2,3,4]"], env=env)
    assert r.rc == 0 and [h["key"] for h in json.loads(r.out)["hits"]] == ["newer"], (r.err, r.out)


def test_history_vector_records_are_checked_as_puts(kd_raw, tmp_path):
    """Vector records that arrive in a history are checked as a put checks
    its vector: a zero vector, a length past float32 and a key's vector
    changing dimension in place (a put refuses each) were imported, then
    left out of searches or searched differently now and --at. The rows
    are made by hand, with write_ids by docs/FORMAT.md."""
    import base64
    import struct
    from test_format import write_id

    node = "0123456789abcdef0123456789abcdef"
    t0 = 1700000000 * 10**9

    def record(*fs, model="m"):
        return {"dim": len(fs), "meta": None, "model": model,
                "vector": base64.b64encode(struct.pack("<%df" % len(fs), *fs)).decode()}

    def row(key, value, ts, parent=None):
        vid = sha256_hex(canonical(value))
        wid = write_id({"ws": b"default", "ns": b"_kd.vec.x", "key": key.encode(), "deleted": 0,
                        "vid": bytes.fromhex(vid), "ts": ts, "node": bytes.fromhex(node),
                        "parents": [bytes.fromhex(parent)] if parent else []}).hex()
        return {"namespace": "_kd.vec.x", "key": key, "value": value, "version_id": vid, "write_id": wid,
                "previous_write_id": parent, "timestamp": "@%d" % ts, "deleted": False, "node_id": node}

    good = row("g", record(1, 2, 3), t0)
    cases = [("zero", [row("b", record(0, 0, 0), t0 + 10)], "all 3 components are zero"),
             ("overflow", [row("b", record(3e38, 3e38, model="m2"), t0 + 10)], "length overflows float32"),
             ("in place", [row("g", record(1, 2), t0 + 10, good["write_id"])], "vector has 2 dimensions")]
    for name, rows, why in cases:
        db = ["--db", str(tmp_path / name)]
        f = write(tmp_path, name + ".ndjson", ndjson([good] + rows))
        r = kd_raw(*db, "import", "--history", f)
        assert r.rc == 4 and why in r.err, (name, r.err)
        assert kd_raw(*db, "--json", "status").json()["versions"] == 0, name
    # the good row alone imports, and is found
    db = ["--db", str(tmp_path / "good")]
    assert kd_raw(*db, "import", "--history", write(tmp_path, "g.ndjson", ndjson([good]))).rc == 0
    r = kd_raw(*db, "--json", "vector", "search", "x", "[1,2,3]")
    assert r.rc == 0 and [h["key"] for h in r.json()["hits"]] == ["g"], r.out


def test_import_onto_a_full_disk_says_where_it_stopped(kd_raw, tmp_path):
    """A database failure (here a full disk) stops an import: the message
    names the lines of the batch and how many rows were committed, and
    --json has "line" and "error" as for a bad row (it had neither)."""
    mnt = tmp_path / "m"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs (needs root)")
    try:
        rows = "".join(json.dumps({"id": "k%05d" % i, "pad": "x" * 900}) + "\n" for i in range(4000))
        f = write(tmp_path, "rows.ndjson", rows)
        db = ["--db", str(mnt / "db")]
        r = kd_raw(*db, "--json", "import", "n", f, "--key", "id", "--batch", "100")
        assert r.rc == 1, (r.rc, r.err)
        m = re.search(r"lines (\d+)-(\d+): .*No space left on device.*; import stopped, (\d+) rows committed before them",
                      r.err)
        assert m, r.err
        first, committed = int(m.group(1)), int(m.group(3))
        assert committed > 0 and first == committed + 1, r.err
        out = json.loads(r.out)
        assert out["ok"] is False and out["rows"] == committed and out["line"] == first, out
        assert "No space left on device" in out["error"], out
        assert kd_raw(*db, "--json", "status").json()["live_keys"] == committed
    finally:
        subprocess.run(["umount", "-l", str(mnt)])
