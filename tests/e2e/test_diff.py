"""kdelta diff: every REF form (~N, N, write_id and prefixes, TIME in all
its forms), the defaults, tombstones and the state before the first version,
the errors (each names the REF), human output (colours only on a terminal,
never with NO_COLOR) and --json output, which is checked by applying it with
the small RFC 6902 applier below: it must turn the from-value into the
to-value."""
import copy
import datetime
import json
import os
import pty
import random
import subprocess

import pytest

from helpers import KDELTA, one_error_line, ts_to_ns

# ---------------------------------------------------------------------------
# A tiny, independent RFC 6902 applier
# ---------------------------------------------------------------------------

ABSENT = object()


def _tokens(pointer):
    if pointer == "":
        return []
    assert pointer.startswith("/"), pointer
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _index(container, tok, append_ok):
    if append_ok and tok == "-":
        return len(container)
    assert tok.isdigit() and (tok == "0" or not tok.startswith("0")), tok
    i = int(tok)
    assert i < len(container) + (1 if append_ok else 0), (tok, len(container))
    return i


def _parent(doc, toks):
    for t in toks[:-1]:
        doc = doc[_index(doc, t, False)] if isinstance(doc, list) else doc[t]
    return doc


def _get(doc, pointer):
    for t in _tokens(pointer):
        doc = doc[_index(doc, t, False)] if isinstance(doc, list) else doc[t]
    return doc


def apply_patch(doc, patch):
    """Apply an RFC 6902 patch; ABSENT stands for "no value" (a tombstone)."""
    doc = doc if doc is ABSENT else copy.deepcopy(doc)
    for op in patch:
        toks = _tokens(op["path"])
        kind = op["op"]
        if kind in ("move", "copy"):
            value = copy.deepcopy(_get(doc, op["from"]))
            if kind == "move":
                ftoks = _tokens(op["from"])
                p = _parent(doc, ftoks)
                del p[_index(p, ftoks[-1], False) if isinstance(p, list) else ftoks[-1]]
            kind, op = "add", dict(op, value=value)
        if kind == "test":
            assert _get(doc, op["path"]) == op["value"]
            continue
        if not toks:
            if kind == "remove":
                assert doc is not ABSENT
                doc = ABSENT
            else:
                assert kind == "add" or doc is not ABSENT, "replace needs a value"
                doc = copy.deepcopy(op["value"])
            continue
        p = _parent(doc, toks)
        last = toks[-1]
        if isinstance(p, list):
            i = _index(p, last, kind == "add")
            if kind == "add":
                p.insert(i, copy.deepcopy(op["value"]))
            elif kind == "remove":
                del p[i]
            else:
                p[i] = copy.deepcopy(op["value"])
        else:
            if kind == "remove" or kind == "replace":
                assert last in p, (last, p)
            if kind == "remove":
                del p[last]
            else:
                p[last] = copy.deepcopy(op["value"])
    return doc


def test_applier_itself():
    doc = {"a": [1, 2, 3], "b/c": {"~": 1}}
    out = apply_patch(doc, [
        {"op": "add", "path": "/a/-", "value": 4},
        {"op": "remove", "path": "/a/0"},
        {"op": "replace", "path": "/b~1c/~0", "value": 2},
        {"op": "move", "from": "/a/0", "path": "/m"},
        {"op": "copy", "from": "/m", "path": "/n"},
        {"op": "test", "path": "/n", "value": 2},
    ])
    assert out == {"a": [3, 4], "b/c": {"~": 2}, "m": 2, "n": 2}
    assert apply_patch(ABSENT, [{"op": "add", "path": "", "value": 1}]) == 1
    assert apply_patch(1, [{"op": "remove", "path": ""}]) is ABSENT


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------

VALUES = [
    {"name": "Alice", "tags": ["a", "b"], "age": 30},
    {"name": "Alice", "tags": ["a", "b", "c"], "age": 31, "a/b": {"m~n": True}},
    {"name": "Alicia", "tags": ["c", "a"], "a/b": {"m~n": False}, "nested": [[1, 2], {"x": None}]},
    [1, "two", {"three": 3}, 18446744073709551617],
]


def write_all(kd, key="u/alice", values=VALUES):
    recs = []
    for v in values:
        recs.append(kd("set", key, json.dumps(v), "--json").json())
    return recs


def patch_of(kd, *args):
    r = kd("diff", *args, "--json")
    assert r.rc == 0, r.err
    assert r.out.endswith("\n") and r.out.count("\n") == 1
    return json.loads(r.out)


def check(kd, key, frm, to, *args):
    """diff --json with args turns frm into to."""
    patch = patch_of(kd, key, *args)
    assert apply_patch(frm, patch) == to, (patch, frm, to)
    return patch


# ---------------------------------------------------------------------------
# Defaults and REF forms
# ---------------------------------------------------------------------------


def test_default_is_previous_against_current(kd):
    write_all(kd)
    patch = check(kd, "u/alice", VALUES[2], VALUES[3])
    assert patch == [{"op": "replace", "path": "", "value": VALUES[3]}]
    # --to alone: from is the version before it
    check(kd, "u/alice", VALUES[0], VALUES[1], "--to", "1")
    check(kd, "u/alice", VALUES[1], VALUES[2], "--to", "~1")
    # --from alone: to is the current version
    check(kd, "u/alice", VALUES[0], VALUES[3], "--from", "0")


def test_exact_patch_for_a_small_change(kd):
    write_all(kd, values=VALUES[:2])
    patch = patch_of(kd, "u/alice")
    assert patch == [
        {"op": "add", "path": "/a~1b", "value": {"m~n": True}},
        {"op": "replace", "path": "/age", "value": 31},
        {"op": "add", "path": "/tags/2", "value": "c"},
    ]


def test_every_pair_by_index(kd):
    write_all(kd)
    n = len(VALUES)
    for i in range(n):
        for j in range(n):
            check(kd, "u/alice", VALUES[i], VALUES[j], "--from", str(i), "--to", str(j))
            check(kd, "u/alice", VALUES[i], VALUES[j], "--from", f"~{n - 1 - i}", "--to", f"~{n - 1 - j}")
    assert patch_of(kd, "u/alice", "--from", "1", "--to", "1") == []
    assert patch_of(kd, "u/alice", "--from", "~0", "--to", "3") == []


def test_write_id_and_prefixes(kd):
    recs = write_all(kd)
    for i, rec in enumerate(recs):
        wid = rec["write_id"]
        check(kd, "u/alice", VALUES[i], VALUES[3], "--from", wid)
        check(kd, "u/alice", VALUES[i], VALUES[3], "--from", wid[:8])
        check(kd, "u/alice", VALUES[i], VALUES[3], "--from", wid[:20].upper())
        check(kd, "u/alice", VALUES[0], VALUES[i], "--from", "0", "--to", wid[:12])


def test_long_digit_string_is_index_when_no_write_id_matches(kd):
    recs = write_all(kd)
    ref = "00000002"
    if any(r["write_id"].startswith(ref) for r in recs):
        pytest.skip("a write_id happens to start with 00000002")
    check(kd, "u/alice", VALUES[2], VALUES[3], "--from", ref)


def test_time_forms(kd):
    recs = write_all(kd)
    ts = [ts_to_ns(r["timestamp"]) for r in recs]
    # exactly on a version, and between two versions
    check(kd, "u/alice", VALUES[1], VALUES[3], "--from", recs[1]["timestamp"])
    check(kd, "u/alice", VALUES[1], VALUES[3], "--from", f"@{ts[1]}")
    check(kd, "u/alice", VALUES[1], VALUES[3], "--from", f"@{ts[2] - 1}")
    check(kd, "u/alice", VALUES[0], VALUES[2], "--from", f"@{ts[0]}", "--to", f"@{ts[2]}")
    # now, and a relative time after every write
    check(kd, "u/alice", VALUES[0], VALUES[3], "--from", "0", "--to", "now")
    check(kd, "u/alice", VALUES[0], VALUES[3], "--from", "0", "--to", "-0s")
    # RFC 3339 with an offset: the same instant as version 1, written at +01:00
    sec, frac = divmod(ts[1], 1_000_000_000)
    local = datetime.datetime.fromtimestamp(sec, datetime.timezone(datetime.timedelta(hours=1)))
    text = local.strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:09d}+01:00"
    check(kd, "u/alice", VALUES[1], VALUES[3], "--from", text)


def test_time_before_first_version(kd):
    recs = write_all(kd)
    t0 = ts_to_ns(recs[0]["timestamp"])
    line = one_error_line(kd("diff", "u/alice", "--from", f"@{t0 - 1}"), 3)
    assert f"--from '@{t0 - 1}'" in line and "no version at or before" in line
    line = one_error_line(kd("diff", "u/alice", "--to", "-1h"), 3)
    assert "--to '-1h'" in line


# ---------------------------------------------------------------------------
# Tombstones and the first version
# ---------------------------------------------------------------------------


def test_single_version_diffs_from_nothing(kd):
    kd("set", "k/one", '{"x": 1}')
    patch = check(kd, "k/one", ABSENT, {"x": 1})
    assert patch == [{"op": "add", "path": "", "value": {"x": 1}}]
    r = kd("diff", "k/one")
    assert r.rc == 0
    assert "nothing (before the first version)" in r.out
    assert '+ (whole value): {"x":1}' in r.out


def test_tombstones_are_absent(kd):
    kd("set", "k/t", '{"v": 1}')
    kd("delete", "k/t")
    assert check(kd, "k/t", {"v": 1}, ABSENT) == [{"op": "remove", "path": ""}]
    r = kd("diff", "k/t")
    assert r.rc == 0 and "(deleted)" in r.out and '- (whole value): {"v":1}' in r.out
    kd("set", "k/t", "[1]")
    assert check(kd, "k/t", ABSENT, [1]) == [{"op": "add", "path": "", "value": [1]}]
    # deleted against deleted (the same tombstone), and across the tombstone
    assert patch_of(kd, "k/t", "--from", "1", "--to", "1") == []
    check(kd, "k/t", {"v": 1}, [1], "--from", "0")
    kd("delete", "k/t")
    assert patch_of(kd, "k/t", "--from", "1", "--to", "3") == []
    assert "no changes" in kd("diff", "k/t", "--from", "1", "--to", "3").out


# ---------------------------------------------------------------------------
# Human output
# ---------------------------------------------------------------------------


def test_human_output_lines(kd):
    write_all(kd, values=[{"a": 1, "b": [1, 2], "c": "x"}, {"a": 2, "b": [1], "d": "new\nline"}])
    r = kd("diff", "u/alice")
    assert r.rc == 0 and r.err == ""
    lines = r.out.splitlines()
    assert lines[0].startswith("from  #0 of 2  write ")
    assert lines[1].startswith("to    #1 of 2  write ")
    assert lines[2:] == [
        "~ /a: 1 -> 2",
        "- /b/1: 2",
        "- /c: \"x\"",
        "+ /d: \"new\\nline\"",
    ]
    assert "\x1b[" not in r.out


def test_human_old_values_follow_array_shifts(kd):
    write_all(kd, values=[["a", "b", "c", "d", "e"], ["b", "X", "d", "e", "f"]])
    r = kd("diff", "u/alice")
    assert r.out.splitlines()[2:] == ['- /0: "a"', '~ /1: "c" -> "X"', '+ /4: "f"']


def test_colours_only_on_a_terminal(kd, db, env):
    write_all(kd, values=[{"a": 1}, {"a": 2, "b": 3}])

    def run_pty(extra_env):
        e = dict(env)
        e.pop("NO_COLOR", None)
        e["TERM"] = "xterm"
        e.update(extra_env)
        master, slave = pty.openpty()
        p = subprocess.Popen([KDELTA] + kd.target() + ["diff", "u/alice"], stdout=slave, stderr=subprocess.PIPE,
                             env=e)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        p.wait(timeout=30)
        os.close(master)
        assert p.returncode == 0
        return out.decode()

    out = run_pty({})
    assert "\x1b[33m~ /a: 1 -> 2\x1b[0m" in out
    assert "\x1b[32m+ /b: 3\x1b[0m" in out
    assert "\x1b[" not in run_pty({"NO_COLOR": "1"})
    # --json on a terminal: the patch, uncoloured
    assert "\x1b[" not in kd("diff", "u/alice", "--json").out


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def test_errors(kd):
    recs = write_all(kd)
    line = one_error_line(kd("diff", "u/nobody"), 3)
    assert "u/nobody" in line and "never written" in line
    for ref, status, words in [
        ("~9", 3, "has 4 versions"),
        ("4", 3, "has 4 versions"),
        ("99999999999999999999999", 3, "has 4 versions"),
        ("~", 4, "expected ~N"),
        ("~x", 4, "expected ~N"),
        ("~-1", 4, "expected ~N"),
        ("abc", 4, "not a version"),
        ("1a2b3c", 4, "not a version"),
        ("yesterday", 4, "not a version"),
        ("2026-13-01T00:00:00Z", 4, "not a version"),
        ("ffffffffffffffffffffffff", 3, "no version of the key has a write_id starting with"),
        ("g" * 8, 4, "not a version"),
    ]:
        if ref.startswith("ffff") and any(r["write_id"].startswith(ref) for r in recs):
            continue
        for opt in ("--from", "--to"):
            line = one_error_line(kd("diff", "u/alice", opt, ref), status)
            assert f"{opt} '{ref}'" in line, line
            assert words in line, line
            assert line.startswith("kdelta: u/alice: ")
    # usage errors: exit 2, nothing opened
    one_error_line(kd("diff"), 2)
    one_error_line(kd("diff", "u/alice", "extra"), 2)
    one_error_line(kd("diff", "u/alice", "--from"), 2)
    line = one_error_line(kd("get", "u/alice", "--from", "0"), 2)
    assert "diff" in line
    # bad names: exit 4
    one_error_line(kd("diff", "noslash"), 4)
    # a malformed REF is bad input (4) whatever the key: it is checked first
    for ref in ("~x", "yesterday"):
        line = one_error_line(kd("diff", "u/nobody", "--from", ref), 4)
        assert f"--from '{ref}'" in line, line


def test_help(kd_raw):
    r = kd_raw("help", "diff")
    assert r.rc == 0 and r.out.startswith("Usage: kdelta diff NS/KEY [--from REF] [--to REF]\n")
    assert kd_raw("diff", "--help").out == r.out


# ---------------------------------------------------------------------------
# Random histories: every pair of versions round-trips through --json
# ---------------------------------------------------------------------------

NAMES = ["a", "b", "", "~", "/", "a/b", "m~n", "~1", "é", "😀", " "]
STRINGS = ["", "x", "é", "😀", "\n", "\"", "\\", "~/", "\u0001", "𝄞"]


def rand_value(rng, depth=0):
    k = rng.randrange(8 if depth < 3 else 4)
    if k == 0:
        return rng.choice([None, True, False])
    if k == 1:
        return rng.choice([0, -1, 7, 2 ** 64 + 1, -(2 ** 70), 10 ** 30])
    if k in (2, 3):
        return rng.choice(STRINGS) + rng.choice(STRINGS)
    if k in (4, 5):
        return [rand_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    return {rng.choice(NAMES): rand_value(rng, depth + 1) for _ in range(rng.randrange(5))}


def mutate(rng, v, depth=0):
    if isinstance(v, dict) and v and rng.random() < 0.8:
        v = dict(v)
        for _ in range(rng.randrange(1, 3)):
            r = rng.random()
            name = rng.choice(NAMES)
            if r < 0.3 and v:
                v.pop(rng.choice(list(v)))
            elif r < 0.6 and name in v:
                v[name] = mutate(rng, v[name], depth + 1)
            else:
                v[name] = rand_value(rng, depth + 1)
        return v
    if isinstance(v, list) and rng.random() < 0.8:
        v = list(v)
        for _ in range(rng.randrange(1, 3)):
            r = rng.random()
            if r < 0.3 and v:
                v.pop(rng.randrange(len(v)))
            elif r < 0.6 and v:
                i = rng.randrange(len(v))
                v[i] = mutate(rng, v[i], depth + 1)
            else:
                v.insert(rng.randrange(len(v) + 1), rand_value(rng, depth + 1))
        return v
    return rand_value(rng, depth)


def test_random_histories(kd):
    rng = random.Random(6902)
    for key in range(3):
        name = f"r/k{key}"
        values = [rand_value(rng)]
        for _ in range(5):
            values.append(mutate(rng, values[-1]))
        write_all(kd, name, values)
        for i in range(len(values)):
            for j in range(len(values)):
                if i != j and (i + j + key) % 2 == 0:
                    check(kd, name, values[i], values[j], "--from", str(i), "--to", str(j))
        # human output has one change line per operation
        patch = patch_of(kd, name)
        r = kd("diff", name)
        assert len(r.out.splitlines()) == 2 + (len(patch) or 1)
