"""`kdelta index create|list|drop`: the index life cycle, its errors, and the
point of it all: `kdelta query` prints byte-identical --json results with
and without an index, for eq, in and range filters over a namespace whose
values mix every JSON type (3 and 3.0, "3", null, booleans, arrays,
objects, a missing field), before and after further writes."""
import json
import os
import re

import pytest

from helpers import TIMESTAMP, one_error_line

# key -> value; the field `v` takes every kind of value, `n.w` is nested
MIXED = {
    "i1": {"v": 1},
    "i3": {"v": 3},
    "f3": {"v": 3.0},
    "f25": {"v": 2.5},
    "neg": {"v": -7},
    "big": {"v": 12345678901234567890},
    "exp": {"v": 3e2},
    "s3": {"v": "3"},
    "sa": {"v": "abc"},
    "sb": {"v": "b"},
    "empty": {"v": ""},
    "nul": {"v": None},
    "t": {"v": True},
    "f": {"v": False},
    "arr": {"v": [3]},
    "obj": {"v": {"x": 3}},
    "missing": {"w": 3},
    "scalar": 3,
    "nested1": {"n": {"w": 3}},
    "nested2": {"n": {"w": "3"}},
    "nested3": {"n": {"w": 3.0}, "v": 10},
    "nested4": {"n": None},
}

FILTERS = [
    "v == 3", "v == 3.0", "v = 300", 'v == "3"', "v == null", "v == true", "v == false", 'v == ""',
    "v == 12345678901234567890", "v == [3]", 'v == {"x": 3}', "v == 4",
    'v in [3, "3", null]', "v in [2.5, -7, 1e0]", "v in []", 'v in ["abc", "b", false]',
    "v > 2", "v >= 3", "v < 3", "v <= 3.0", "v > -100 and v < 100", "v >= 2.5 and v <= 3",
    'v > "a"', 'v >= "" and v < "b"', "v > 3 or v < 1", "v != 3", "not v == 3",
    "v > true", "v < null", "v >= null",
    "n.w == 3", "n.w >= 3", 'n.w in ["3", 3]', "n.w < 10 and v == 10",
]






@pytest.fixture
def mixed(kd):
    """Namespace m holding MIXED, written through one shell process."""
    script = "".join(f"set m/{k} '{json.dumps(v)}'\n" for k, v in MIXED.items())
    r = kd("shell", input=script)
    assert r.rc == 0, r.err
    return kd


def run_all(kd, extra=()):
    """--json output of every filter (with a sort, and without)."""
    out = {}
    for f in FILTERS:
        for sort in ([], ["--sort", "v:desc"]):
            r = kd("query", "m", "--filter", f, *sort, *extra, "--json")
            assert r.rc == 0, (f, r.err)
            out[(f, tuple(sort))] = r.out
    return out


def index_list(kd, *args):
    r = kd("index", "list", *args, "--json")
    assert r.rc == 0, r.err
    assert r.out.endswith("\n") and r.out.count("\n") == 1
    return json.loads(r.out)


# ---------------------------------------------------------------------------
# Same results with and without an index
# ---------------------------------------------------------------------------


def test_results_identical_with_and_without_index(mixed):
    plain = run_all(mixed)
    # sanity: the filters do select something, and not everything
    counts = {f: json.loads(out)["total"] for (f, s), out in plain.items() if not s}
    assert counts["v == 3"] == 2  # i3 and f3: numbers compare by value
    assert counts["v == 3.0"] == 2
    assert counts['v == "3"'] == 1 and counts["v == null"] == 1
    assert counts['v in [3, "3", null]'] == 4
    assert 0 < counts["v > 2"] < len(MIXED)

    assert mixed("index", "create", "m", "v").rc == 0
    assert mixed("index", "create", "m", "n.w").rc == 0
    indexed = run_all(mixed)
    for k in plain:
        assert indexed[k] == plain[k], f"query {k} differs with an index"

    # writes after the index was built: updates across types, deletes, new keys
    script = "\n".join([
        "set m/i3 '{\"v\": \"3\"}'",
        "set m/s3 '{\"v\": 3}'",
        "delete m/f3",
        "set m/new '{\"v\": 3.00, \"n\": {\"w\": 3}}'",
        "set m/missing '{\"v\": null}'",
        "set m/nul '{\"x\": 1}'",
        "delete m/nested1",
        "set m/nested1 '{\"n\": {\"w\": 2.5}}'",
    ]) + "\n"
    assert mixed("shell", input=script).rc == 0
    after_indexed = run_all(mixed)
    assert mixed("index", "drop", "m", "v").rc == 0
    assert mixed("index", "drop", "m", "n.w").rc == 0
    assert index_list(mixed) == []
    after_plain = run_all(mixed)
    for k in after_plain:
        assert after_indexed[k] == after_plain[k], f"query {k} differs with an index after writes"
    assert json.loads(after_plain[("v == 3", ())])["total"] == 2  # s3 and new


def test_results_identical_with_paging_and_select(mixed):
    args = ["--filter", "v >= 1", "--sort", "v", "--select", "v", "--limit", "3", "--offset", "1", "--json"]
    plain = mixed("query", "m", *args)
    assert mixed("index", "create", "m", "v").rc == 0
    assert mixed("query", "m", *args).out == plain.out
    # and the same through a view over the indexed namespace
    assert mixed("view", "create", "vv", "m", "--filter", "v >= 1", "--sort", "v", "--select", "v").rc == 0
    full = json.loads(mixed("query", "m", "--filter", "v >= 1", "--sort", "v", "--select", "v", "--json").out)
    assert json.loads(mixed("view", "show", "vv", "--json").out) == full


# ---------------------------------------------------------------------------
# Life cycle
# ---------------------------------------------------------------------------


def test_create_list_drop(mixed):
    r = mixed("index", "create", "m", "v")
    has_v = sum(1 for v in MIXED.values() if isinstance(v, dict) and "v" in v)
    assert r.rc == 0 and r.err == ""
    assert r.out == f"created index on m v: {has_v} entries\n"
    r = mixed("index", "create", "m/", "n.w", "--json")  # "m/" is namespace m
    assert r.rc == 0
    ix = json.loads(r.out)
    assert list(ix) == ["namespace", "field", "entries", "created", "built", "error"]
    assert ix["namespace"] == "m" and ix["field"] == "n.w" and ix["entries"] == 3
    assert ix["built"] is True and ix["error"] is None
    assert TIMESTAMP.match(ix["created"])
    assert mixed("index", "create", "other", "a").rc == 0

    r = mixed("index", "list")
    assert r.rc == 0 and r.err == ""
    rows = [re.split(r"  +", l.rstrip()) for l in r.out.splitlines()]
    assert rows == [["namespace", "field", "entries"], ["m", "n.w", "3"], ["m", "v", str(has_v)],
                    ["other", "a", "0"]]
    listed = index_list(mixed)
    assert [(i["namespace"], i["field"]) for i in listed] == [("m", "n.w"), ("m", "v"), ("other", "a")]
    assert listed[0] == ix
    assert [i["field"] for i in index_list(mixed, "m")] == ["n.w", "v"]
    assert index_list(mixed, "nothing") == []

    r = mixed("index", "drop", "m", '"v"')  # shown as written back, as create shows it
    assert r.rc == 0 and r.out == "dropped index on m v\n" and r.err == ""
    r = mixed("index", "drop", "other", "a", "--json")
    assert r.rc == 0 and json.loads(r.out) == {"namespace": "other", "field": "a", "dropped": True}
    assert [(i["namespace"], i["field"]) for i in index_list(mixed)] == [("m", "n.w")]


def test_entries_follow_writes_and_survive_reopen(kd, kd_raw, db):
    assert kd("set", "u/a", '{"age": 1}').rc == 0
    assert kd("index", "create", "u", "age").rc == 0
    assert index_list(kd)[0]["entries"] == 1
    kd("set", "u/b", '{"age": 2}')
    kd("set", "u/c", '{"name": "no age"}')
    kd("delete", "u/a")
    # every command is a new process (a restarted server): the index was rebuilt at open
    r = kd.reopen("index", "list", "--json")
    assert r.rc == 0
    (ix,) = json.loads(r.out)
    assert (ix["namespace"], ix["field"], ix["entries"]) == ("u", "age", 1)
    assert kd("query", "u", "--filter", "age == 2", "--json").json()["total"] == 1
    # and it is gone for good after a drop
    kd("index", "drop", "u", "age")
    assert index_list(kd) == []
    assert kd("verify").rc == 0


def test_path_spellings_name_one_index(kd):
    assert kd("index", "create", "u", "age").rc == 0
    line = one_error_line(kd("index", "create", "u", '"age"'), 6)
    assert "already exists" in line
    r = kd("index", "drop", "u", '"age"', "--json")
    assert r.rc == 0 and json.loads(r.out)["field"] == "age"
    r = kd("index", "create", "u", '"first name"', "--json")
    assert r.rc == 0 and json.loads(r.out)["field"] == '"first name"'


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def test_duplicate(kd):
    assert kd("index", "create", "u", "age").rc == 0
    line = one_error_line(kd("index", "create", "u", "age"), 6)
    assert line == "kdelta: index u age: an index on that field already exists"
    assert len(index_list(kd)) == 1


def test_drop_unknown(kd):
    line = one_error_line(kd("index", "drop", "u", "age"), 3)
    assert line == "kdelta: index u age: no such index ('kdelta index list' shows the indexes)"
    assert kd("index", "create", "u", "age").rc == 0
    one_error_line(kd("index", "drop", "u", "name"), 3)
    one_error_line(kd("index", "drop", "v", "age"), 3)


@pytest.mark.parametrize("field", ["a..b", "a b", ".a", "a.", '"unterminated', "a[0"])
def test_bad_path(kd, field):
    line = one_error_line(kd("index", "create", "u", field), 4)
    assert "bad field path" in line, line
    assert index_list(kd) == []


def test_empty_arguments(kd, db):
    one_error_line(kd("index", "create", "u", ""), 4)
    one_error_line(kd("index", "create", "", "a"), 4)
    kd.untouched()


@pytest.mark.parametrize("ns", ["_kd", "_kdx", "_kd.indexes", "_kd.views"])
def test_reserved_namespace(kd, ns):
    line = one_error_line(kd("index", "create", ns, "a"), 4)
    assert "reserved" in line
    assert index_list(kd) == []


@pytest.mark.parametrize("args,fragment", [
    (["index"], "missing arguments"),
    (["index", "rebuild"], "unknown subcommand 'rebuild'"),
    (["index", "create", "u"], "index create: missing arguments"),
    (["index", "create", "u", "a", "b"], "index create: too many arguments"),
    (["index", "list", "a", "b"], "index list: too many arguments"),
    (["index", "drop"], "index drop: missing arguments"),
    (["index", "create", "u", "a", "--filter", "x > 1"], "--filter: is an option of"),
    (["index", "list", "--limit", "2"], "--limit: is an option of"),
])
def test_usage_errors(kd, db, args, fragment):
    line = one_error_line(kd(*args), 2)
    assert fragment in line, line
    kd.untouched()


def test_inside_the_shell(kd):
    r = kd("shell", input="index create s x\nset s/a '{\"x\": 5}'\nindex list\nindex drop s y\n")
    assert r.rc == 3
    assert "created index on s x: 0 entries" in r.out
    assert re.search(r"^s +x +1$", r.out, re.M)
    assert "no such index" in r.err


def test_server_answers_print_as_the_directory_does(mixed, kd_raw, db):
    """Remote mode: every output, errors included, is byte for byte what
    the same command prints on the directory once the server is gone."""
    if mixed.mode != "remote":
        pytest.skip("compares a server's answers with the directory's")
    assert mixed("index", "create", "m", "v").rc == 0
    assert mixed("index", "create", "m", '"n"."w"').rc == 0
    commands = [
        ("index", "list"),
        ("index", "list", "m", "--json"),
        ("index", "list", "none"),
        ("query", "m", "--filter", "v >= 2", "--json"),
        ("index", "create", "m", "n.w"),
        ("index", "create", "m", "a..b"),
        ("index", "create", "_kd.views", "a"),
    ]
    remote = [mixed(*c) for c in commands]
    assert mixed.server.stop() == 0
    local = [kd_raw("--db", db, *c) for c in commands]
    for c, r, l in zip(commands, remote, local):
        assert r == l, c
    assert [r.rc for r in remote[-3:]] == [6, 4, 4]
