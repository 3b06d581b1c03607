"""`kdelta view create|list|show|refresh|delete`: auto-refresh and manual
views followed across writes made by later processes, their --json shapes,
paging and projection, and the errors (unknown and duplicate names, bad
filters, usage). Each kdelta command is a new process that reopens the
database, so every check after the first command is also a check that the
views came back from the log."""
import json
import os
import re

import pytest

from helpers import TIMESTAMP, one_error_line

PEOPLE = [
    {"id": "alice", "name": "Alice", "age": 30, "city": "Paris"},
    {"id": "bob", "name": "Bob", "age": 25, "city": "Berlin"},
    {"id": "carol", "name": "Carol", "age": 35, "city": "Paris"},
    {"id": "dave", "name": "Dave", "age": 40},
    {"id": "eve", "name": "Eve", "age": 28, "city": "Berlin"},
]






@pytest.fixture
def people(kd):
    ndjson = "".join(json.dumps(p) + "\n" for p in PEOPLE)
    r = kd("import", "people", "-", "--key", "id", input=ndjson)
    assert r.rc == 0, r.err
    return kd


def table(out):
    """(header, rows, footer) of a query table: cells split on runs of 2+ spaces."""
    lines = out.rstrip("\n").split("\n")
    footer = lines[-1]
    if len(lines) == 1:
        return None, [], footer
    header = re.split(r"  +", lines[0].rstrip())
    rows = [re.split(r"  +", line.rstrip()) for line in lines[1:-1]]
    return header, rows, footer


def keys(kd, name):
    """Keys of view `name` in its order, from `view show --json`."""
    r = kd("view", "show", name, "--json")
    assert r.rc == 0, r.err
    return [row["key"] for row in json.loads(r.out)["rows"]]


def views(kd):
    r = kd("view", "list", "--json")
    assert r.rc == 0, r.err
    assert r.out.endswith("\n") and r.out.count("\n") == 1
    return {v["name"]: v for v in json.loads(r.out)}


def check_info(v, name, source, auto):
    """Shape of one view object of --json."""
    assert list(v.keys()) == ["name", "source", "query", "description", "auto_refresh", "created", "refreshed"], v
    assert v["name"] == name and v["source"] == source
    assert isinstance(v["query"], dict)
    assert isinstance(v["description"], str)
    assert v["auto_refresh"] is auto
    assert TIMESTAMP.match(v["created"]), v
    assert v["refreshed"] is None or TIMESTAMP.match(v["refreshed"]), v


# ---------------------------------------------------------------------------
# Auto and manual views across writes
# ---------------------------------------------------------------------------


def test_create_prints_a_line(people):
    r = people("view", "create", "adults", "people", "--filter", "age >= 30")
    assert r.rc == 0 and r.err == ""
    assert r.out == "created view adults on people (auto refresh): 3 rows\n"
    r = people("view", "create", "snap", "people", "--manual")
    assert r.rc == 0 and r.err == ""
    assert r.out == "created view snap on people (manual: changes only on 'view refresh'): 5 rows\n"


def test_auto_view_follows_writes_manual_waits_for_refresh(people):
    assert people("view", "create", "adults", "people", "--filter", "age >= 30").rc == 0
    assert people("view", "create", "adults_m", "people", "--filter", "age >= 30", "--manual").rc == 0
    before = ["alice", "carol", "dave"]
    assert keys(people, "adults") == before
    assert keys(people, "adults_m") == before

    # new matching key, an update out of the filter, an update into it, a delete
    assert people("set", "people/zoe", '{"name": "Zoe", "age": 50}').rc == 0
    assert people("set", "people/alice", '{"name": "Alice", "age": 20}').rc == 0
    assert people("set", "people/bob", '{"name": "Bob", "age": 31}').rc == 0
    assert people("delete", "people/dave").rc == 0
    # writes elsewhere do not matter
    assert people("set", "other/x", '{"age": 99}').rc == 0

    after = ["bob", "carol", "zoe"]
    assert keys(people, "adults") == after
    assert keys(people, "adults_m") == before  # unchanged, values as they were
    r = people("view", "show", "adults_m", "--json")
    rows = {row["key"]: row["value"] for row in json.loads(r.out)["rows"]}
    assert rows["alice"]["age"] == 30 and "dave" in rows

    r = people("view", "refresh", "adults_m")
    assert r.rc == 0 and r.err == ""
    assert r.out == "refreshed view adults_m on people (manual: changes only on 'view refresh'): 3 rows\n"
    assert keys(people, "adults_m") == after
    # and it stays put again until the next refresh
    assert people("set", "people/yann", '{"age": 60}').rc == 0
    assert keys(people, "adults_m") == after
    assert keys(people, "adults") == ["bob", "carol", "yann", "zoe"]


def test_view_equals_the_query(people):
    """`view show --json` is exactly `query --json` with the same options,
    before and after writes."""
    opts = ["--filter", 'city == "Paris" or age > 30', "--sort", "age:desc", "--select", "name,age"]
    assert people("view", "create", "v", "people", *opts).rc == 0

    def same():
        q = people("query", "people", *opts, "--json")
        v = people("view", "show", "v", "--json")
        assert q.rc == 0 and v.rc == 0
        assert v.out == q.out

    same()
    people("set", "people/fred", '{"name": "Fred", "age": 33, "city": "Rome"}')
    people("set", "people/carol", '{"name": "Carol", "age": 36, "city": "Oslo"}')
    people("delete", "people/alice")
    same()


def test_views_come_back_after_reopen(people, kd_raw, db, env):
    assert people("view", "create", "adults", "people", "--filter", "age >= 30", "--description", "30+").rc == 0
    assert people("view", "create", "snap", "people", "--manual").rc == 0
    first = views(people)
    # a new process (or server), a new handle: the same definitions and rows
    r = people.reopen("view", "list", "--json")
    assert r.rc == 0 and {v["name"]: v for v in json.loads(r.out)} == first
    assert keys(people, "adults") == ["alice", "carol", "dave"]
    # a manual view reopened before any refresh still shows its creation-time rows
    people("set", "people/zoe", '{"age": 70}')
    assert keys(people, "snap") == ["alice", "bob", "carol", "dave", "eve"]
    assert keys(people, "adults") == ["alice", "carol", "dave", "zoe"]


def test_view_on_empty_namespace_fills_up(kd):
    r = kd("view", "create", "later", "nothing_yet")
    assert r.rc == 0 and r.out.endswith(": 0 rows\n")
    r = kd("view", "show", "later")
    assert r.rc == 0 and r.out == "0 matches\n"
    kd("set", "nothing_yet/a", "1")
    assert keys(kd, "later") == ["a"]


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def test_show_table_with_select_columns(people):
    assert people("view", "create", "names", "people", "--filter", "age > 26", "--sort", "age",
                  "--select", "name,city").rc == 0
    r = people("view", "show", "names")
    assert r.rc == 0 and r.err == ""
    header, rows, footer = table(r.out)
    assert header == ["key", "city", "name"]  # the view's paths, in path order
    assert rows == [["eve", '"Berlin"', '"Eve"'], ["alice", '"Paris"', '"Alice"'],
                    ["carol", '"Paris"', '"Carol"'], ["dave", '"Dave"']]
    # dave has no city: the cell is empty, so the row is split into two cells
    assert footer == "4 matches"
    line = [l for l in r.out.splitlines() if l.startswith("dave")][0]
    assert re.fullmatch(r'dave +"Dave"', line) and line.index('"Dave"') == r.out.splitlines()[0].index("name")
    # --json: the projected objects
    out = json.loads(people("view", "show", "names", "--json").out)
    assert out["total"] == 4
    assert [row["value"] for row in out["rows"]] == [
        {"city": "Berlin", "name": "Eve"}, {"city": "Paris", "name": "Alice"},
        {"city": "Paris", "name": "Carol"}, {"name": "Dave"}]


def test_show_whole_values(people):
    assert people("view", "create", "all", "people").rc == 0
    header, rows, footer = table(people("view", "show", "all").out)
    assert header == ["key", "value"]
    assert [r[0] for r in rows] == ["alice", "bob", "carol", "dave", "eve"]
    assert json.loads(rows[0][1]) == PEOPLE[0]
    assert footer == "5 matches"


def test_paging(people):
    assert people("view", "create", "byage", "people", "--sort", "age").rc == 0
    order = ["bob", "eve", "alice", "carol", "dave"]
    assert keys(people, "byage") == order
    r = people("view", "show", "byage", "--limit", "2", "--offset", "1")
    assert r.rc == 0
    _, rows, footer = table(r.out)
    assert [row[0] for row in rows] == order[1:3]
    assert footer == "2 of 5 matches (offset 1)"
    _, rows, footer = table(people("view", "show", "byage", "--limit", "2").out)
    assert [row[0] for row in rows] == order[:2] and footer == "2 of 5 matches"
    out = json.loads(people("view", "show", "byage", "--offset", "3", "--json").out)
    assert out["total"] == 5 and [row["key"] for row in out["rows"]] == order[3:]
    out = json.loads(people("view", "show", "byage", "--offset", "9", "--json").out)
    assert out == {"total": 5, "rows": []}
    # --limit 0: just the count, as with query
    r = people("view", "show", "byage", "--limit", "0")
    assert r.rc == 0 and r.out == "0 of 5 matches\n"
    assert json.loads(people("view", "show", "byage", "--limit", "0", "--json").out) == {"total": 5, "rows": []}


def test_view_with_its_own_limit(people):
    """--limit/--offset at create belong to the view's query; show pages
    through what the view holds."""
    assert people("view", "create", "top2", "people", "--sort", "age:desc", "--limit", "2").rc == 0
    assert keys(people, "top2") == ["dave", "carol"]
    people("set", "people/zoe", '{"age": 90}')
    assert keys(people, "top2") == ["zoe", "dave"]
    q = json.loads(people("query", "people", "--sort", "age:desc", "--limit", "2", "--json").out)
    v = json.loads(people("view", "show", "top2", "--json").out)
    assert v["rows"] == q["rows"]
    assert q["total"] == 6 and v["total"] == 2  # the view holds two rows
    r = people("view", "show", "top2", "--offset", "1")
    _, rows, _ = table(r.out)
    assert [row[0] for row in rows] == ["dave"]


def test_list_table_and_json(people):
    assert people("view", "list").out == ""
    assert people("view", "list", "--json").out == "[]\n"
    assert people("view", "create", "adults", "people", "--filter", "age >= 30", "--sort", "age:desc",
                  "--select", "name,age", "--description", "people of 30 and over").rc == 0
    assert people("view", "create", "berlin", "people", "--filter", 'city == "Berlin"', "--manual").rc == 0
    r = people("view", "list")
    assert r.rc == 0 and r.err == ""
    header, *rows = [re.split(r"  +", l.rstrip()) for l in r.out.splitlines()]
    assert header == ["name", "source", "refresh", "description", "query"]
    assert rows[0] == ["adults", "people", "auto", "people of 30 and over",
                       '{"filter":"age >= 30","select":["age","name"],"sort":["age:desc"]}']
    assert rows[1] == ["berlin", "people", "manual", '{"filter":"city = \\"Berlin\\""}']

    vs = views(people)
    assert list(vs) == ["adults", "berlin"]
    check_info(vs["adults"], "adults", "people", True)
    check_info(vs["berlin"], "berlin", "people", False)
    assert vs["adults"]["description"] == "people of 30 and over"
    assert vs["berlin"]["description"] == ""
    # the canonical JSON form of the query (docs/QUERY.md)
    assert vs["adults"]["query"] == {
        "filter": {"field": "age", "op": "gte", "value": 30},
        "select": ["age", "name"],
        "sort": [{"field": "age", "order": "desc"}],
    }
    assert vs["berlin"]["query"] == {"filter": {"field": "city", "op": "eq", "value": "Berlin"}}


def test_create_and_refresh_json(people):
    r = people("view", "create", "v", "people", "--filter", "age < 30", "--manual", "--json")
    assert r.rc == 0 and r.err == "" and r.out.count("\n") == 1
    created = json.loads(r.out)
    check_info(created, "v", "people", False)
    assert views(people)["v"] == created
    people("set", "people/kid", '{"age": 5}')
    r = people("view", "refresh", "v", "--json")
    assert r.rc == 0
    refreshed = json.loads(r.out)
    check_info(refreshed, "v", "people", False)
    assert refreshed["created"] == created["created"]
    assert refreshed["refreshed"] > created["refreshed"]  # same format: compares as text
    assert refreshed["query"] == created["query"]
    r = people("view", "delete", "v", "--json")
    assert r.rc == 0 and json.loads(r.out) == {"name": "v", "deleted": True}


def test_delete(people):
    assert people("view", "create", "a", "people").rc == 0
    assert people("view", "create", "b", "people").rc == 0
    r = people("view", "delete", "a")
    assert r.rc == 0 and r.out == "deleted view a\n" and r.err == ""
    assert list(views(people)) == ["b"]
    line = one_error_line(people("view", "show", "a"), 3)
    assert "view a" in line and "no such view" in line
    # the namespace is untouched
    assert len(json.loads(people("query", "people", "--json").out)["rows"]) == 5
    # the name can be used again
    assert people("view", "create", "a", "people", "--filter", "age > 100").rc == 0
    assert keys(people, "a") == []


def test_status_has_a_views_root_and_verify_passes(people):
    before = json.loads(people("status", "--json").out)["roots"]
    assert "views" not in before
    assert people("view", "create", "v", "people", "--filter", "age > 26", "--manual").rc == 0
    roots = json.loads(people("status", "--json").out)["roots"]
    assert "views" in roots and re.fullmatch(r"[0-9a-f]{64}", roots["views"])
    # a refresh is a write of the definition: the root moves
    assert people("view", "refresh", "v").rc == 0
    again = json.loads(people("status", "--json").out)["roots"]
    assert again["views"] != roots["views"]
    r = people("verify")
    assert r.rc == 0 and r.out.splitlines()[-1] == "ok", r.out + r.err


def test_inside_the_shell(people):
    script = "\n".join([
        "view create paris people --filter 'city == \"Paris\"' --select name",
        "set people/zed '{\"name\": \"Zed\", \"city\": \"Paris\"}'",
        "view show paris",
        "view frob",
        "view list --json",
    ]) + "\n"
    r = people("shell", input=script)
    assert r.rc == 2, r.err  # the failing `view frob`
    assert "created view paris on people (auto refresh): 2 rows" in r.out
    assert re.search(r'^zed +"Zed"$', r.out, re.M)
    assert "3 matches" in r.out
    assert "unknown subcommand 'frob'" in r.err
    # and a later process sees the view the shell made
    assert keys(people, "paris") == ["alice", "carol", "zed"]


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def test_duplicate_name(people):
    assert people("view", "create", "v", "people", "--filter", "age > 30").rc == 0
    line = one_error_line(people("view", "create", "v", "people", "--filter", "age < 30"), 6)
    assert "view v" in line and "already exists" in line
    # the first definition is kept
    assert keys(people, "v") == ["carol", "dave"]


@pytest.mark.parametrize("sub", ["show", "refresh", "delete"])
def test_unknown_name(people, sub):
    line = one_error_line(people("view", sub, "nope"), 3)
    assert line == "kdelta: view nope: no such view ('kdelta view list' shows the views)"


def test_bad_filter_and_namespace(kd, db):
    line = one_error_line(kd("view", "create", "v", "people", "--filter", "age > Paris"), 4)
    assert line.startswith("kdelta: --filter: column ")
    kd.untouched()  # checked before the database is opened
    line = one_error_line(kd("view", "create", "v", "people", "--sort", "age:up"), 4)
    assert line.startswith("kdelta: query: sort[0]")
    line = one_error_line(kd("view", "create", "v", "_kdsecret"), 4)
    assert "reserved" in line
    line = one_error_line(kd("view", "create", "", "people"), 4)
    assert "view name" in line
    assert kd("view", "list", "--json").out == "[]\n"


@pytest.mark.parametrize("args,fragment", [
    (["view"], "missing arguments"),
    (["view", "frob"], "unknown subcommand 'frob'"),
    (["view", "create", "v"], "view create: missing arguments"),
    (["view", "create", "v", "ns", "extra"], "view create: too many arguments"),
    (["view", "show"], "view show: missing arguments"),
    (["view", "list", "x"], "view list: too many arguments"),
    (["view", "refresh"], "view refresh: missing arguments"),
    (["view", "delete", "a", "b"], "view delete: too many arguments"),
    (["view", "show", "v", "--filter", "a > 1"], "--filter: is not an option of 'view show'"),
    (["view", "list", "--limit", "3"], "--limit: is not an option of 'view list'"),
    (["view", "delete", "v", "--manual"], "--manual: is not an option of 'view delete'"),
    (["view", "create", "v", "ns", "--at", "now"], "--at: is an option of"),
    (["view", "create", "v", "ns", "--count"], "--count: is an option of"),
    (["view", "show", "v", "--limit", "-1"], "--limit"),
])
def test_usage_errors(kd, db, args, fragment):
    line = one_error_line(kd(*args), 2)
    assert fragment in line, line
    kd.untouched()


def test_help(kd_raw):
    r = kd_raw("help", "view")
    assert r.rc == 0 and r.out.startswith("Usage: kdelta view create NAME NS")
    for word in ("--manual", "--description", "view refresh", "view delete", "view show", "view list"):
        assert word in r.out
    assert kd_raw("view", "create", "--help").out == r.out


def test_server_answers_print_as_the_directory_does(people, kd_raw, db):
    """Remote mode: every output, errors included, is byte for byte what
    the same command prints on the directory once the server is gone."""
    if people.mode != "remote":
        pytest.skip("compares a server's answers with the directory's")
    assert people("view", "create", "adults", "people", "--filter", "age >= 30", "--sort", "age:desc",
                  "--select", "name,city", "--description", "30 and over").rc == 0
    assert people("view", "create", "snap", "people", "--manual", "--limit", "3").rc == 0
    people("set", "people/zoe", '{"name": "Zoe", "age": 70}')
    commands = [
        ("view", "list"),
        ("view", "list", "--json"),
        ("view", "show", "adults"),
        ("view", "show", "adults", "--json", "--offset", "1", "--limit", "2"),
        ("view", "show", "snap", "--limit", "0"),
        ("view", "show", "snap", "--json"),
        ("view", "show", "nope"),
        ("view", "create", "adults", "people"),
        ("view", "create", "v", "_kdsecret"),
    ]
    remote = [people(*c) for c in commands]
    assert people.server.stop() == 0
    local = [kd_raw("--db", db, *c) for c in commands]
    for c, r, l in zip(commands, remote, local):
        assert r == l, c
    assert [r.rc for r in remote[-3:]] == [3, 6, 4]


def test_manual_view_keeps_its_rows_through_compaction(people, kd_raw, db):
    """Compaction keeps the versions a manual view shows (those current at
    its last refresh), so its rows and values stay until the next refresh."""
    assert people("view", "create", "m", "people", "--filter", "age >= 30", "--manual").rc == 0
    before = people("view", "show", "m", "--json").out
    assert [r["key"] for r in json.loads(before)["rows"]] == ["alice", "carol", "dave"]
    for i in range(3):
        assert people("set", "people/alice", json.dumps({"name": "Alice", "age": 90 + i})).rc == 0
    assert people("delete", "people/dave").rc == 0
    assert people("retention", "set", "people", "--keep-last", "1").rc == 0
    r = people("compact")
    assert r.rc == 0, r.err
    assert people("view", "show", "m", "--json").out == before
    assert people("get", "people/carol").rc == 0
    # what no view shows is pruned as the policy says
    log = people("log", "people/alice", "--json")
    assert sum(1 for v in json.loads(log.out) if v.get("pruned")) == 2, log.out
    assert people("view", "refresh", "m").rc == 0
    assert [r["key"] for r in json.loads(people("view", "show", "m", "--json").out)["rows"]] == ["alice", "carol"]


def test_refreshed_is_the_time_of_the_refresh(people):
    """`refreshed` is when the view was created or refreshed, not the time of
    the newest write it reflects."""
    import time
    time.sleep(0.3)
    r = people("view", "create", "v", "people", "--manual", "--json")
    created = json.loads(r.out)
    assert created["refreshed"] == created["created"], created
    w = json.loads(people("set", "people/kid", '{"age": 5}', "--json").out)
    time.sleep(0.3)
    refreshed = json.loads(people("view", "refresh", "v", "--json").out)
    assert refreshed["refreshed"] > w["timestamp"]  # RFC 3339 UTC, same width: compares as text
