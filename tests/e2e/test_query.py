"""`kdelta query NS`: filter, sort, select, limit/offset, --at, --json, and
aggregations with group by, on small namespaces whose answers are computed
here independently; error messages and exit statuses."""
import json
import os
import re

import pytest

from helpers import check_record, one_error_line, ts_to_ns

PEOPLE = [
    {"id": "alice", "name": "Alice", "age": 30, "city": "Paris", "score": 10, "address": {"city": "Paris", "zip": "75001"}},
    {"id": "bob", "name": "Bob", "age": 25, "city": "Berlin", "score": 20},
    {"id": "carol", "name": "Carol", "age": 35, "city": "Paris", "score": 30, "tags": ["admin", "dev"]},
    {"id": "dave", "name": "Dave", "age": 40, "city": "Rome"},
    {"id": "eve", "name": "Eve", "age": 28, "city": "Berlin", "score": 15, "address": {"city": "Bonn"}},
]
BY_ID = {p["id"]: p for p in PEOPLE}




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


def query_json(kd, *args):
    r = kd("query", *args, "--json")
    assert r.rc == 0, r.err
    assert r.out.endswith("\n") and r.out.count("\n") == 1, r.out
    return json.loads(r.out)


# ---------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------


def test_all_keys_in_key_order(people):
    r = people("query", "people")
    assert r.rc == 0 and r.err == ""
    header, rows, footer = table(r.out)
    assert header == ["key", "value"]
    assert [row[0] for row in rows] == sorted(BY_ID)
    for key, value in rows:
        assert json.loads(value) == BY_ID[key]
        assert ", " not in value and ": " not in value  # compact canonical JSON
    assert footer == "5 matches"


def test_filter(people):
    r = people("query", "people", "--filter", "age > 28")
    assert r.rc == 0, r.err
    header, rows, footer = table(r.out)
    assert [row[0] for row in rows] == ["alice", "carol", "dave"]
    assert footer == "3 matches"
    r = people("query", "people", "--filter", 'city == "Berlin" and score >= 20')
    _, rows, footer = table(r.out)
    assert [row[0] for row in rows] == ["bob"] and footer == "1 match"


def test_filter_no_match_and_unknown_namespace(people):
    r = people("query", "people", "--filter", "age > 100")
    assert r.rc == 0 and r.out == "0 matches\n"
    r = people("query", "nobody")
    assert r.rc == 0 and r.out == "0 matches\n" and r.err == ""
    assert query_json(people, "nobody") == {"total": 0, "rows": []}


def test_sort_select_limit_offset(people):
    r = people("query", "people", "--sort", "age:desc", "--select", "name,age", "--limit", "2")
    assert r.rc == 0, r.err
    header, rows, footer = table(r.out)
    assert header == ["key", "name", "age"]
    assert rows == [["dave", '"Dave"', "40"], ["carol", '"Carol"', "35"]]
    assert footer.startswith("2 of 5 matches")

    r = people("query", "people", "--sort", "age", "--select", "age", "--offset", "1", "--limit", "2")
    _, rows, footer = table(r.out)
    assert rows == [["eve", "28"], ["alice", "30"]]
    assert footer.startswith("2 of 5 matches")

    # offset alone, past the end
    r = people("query", "people", "--offset", "9")
    assert r.rc == 0 and table(r.out)[1] == [] and table(r.out)[2].startswith("0 of 5 matches")


def test_limit_zero_counts_only(people):
    r = people("query", "people", "--limit", "0", "--filter", 'city == "Paris"')
    assert r.rc == 0 and r.out.startswith("0 of 2 matches")
    assert query_json(people, "people", "--limit", "0", "--filter", 'city == "Paris"') == {"total": 2, "rows": []}


def test_sort_by_two_fields(people):
    doc = query_json(people, "people", "--sort", "city", "--sort", "age:desc")
    assert [row["key"] for row in doc["rows"]] == ["eve", "bob", "carol", "alice", "dave"]


def columns(out):
    """Rows of a table cut at the header's column starts (ASCII tables):
    empty cells stay in place."""
    lines = out.rstrip("\n").split("\n")[:-1]
    starts = [m.start() for m in re.finditer(r"\S+", lines[0])]
    cut = lambda line: [line[a:b].strip() for a, b in zip(starts, starts[1:] + [None])]
    return [cut(line) for line in lines]


def test_select_nested_and_missing_fields(people):
    r = people("query", "people", "--select", "address.city,score")
    assert r.rc == 0, r.err
    rows = columns(r.out)
    assert rows[0] == ["key", "address.city", "score"]
    cells = {row[0]: row[1:] for row in rows[1:]}
    assert cells == {
        "alice": ['"Paris"', "10"],
        "bob": ["", "20"],
        "carol": ["", "30"],
        "dave": ["", ""],  # neither field: empty cells
        "eve": ['"Bonn"', "15"],
    }
    assert all(line == line.rstrip() for line in r.out.splitlines()), "blanks at the end of a line"


def test_json_rows_are_version_records(people):
    doc = query_json(people, "people", "--filter", "age >= 35", "--sort", "age")
    assert list(doc) == ["total", "rows"]
    assert doc["total"] == 2
    assert [row["key"] for row in doc["rows"]] == ["carol", "dave"]
    for row in doc["rows"]:
        check_record(row, "people", row["key"])
        assert row["value"] == BY_ID[row["key"]]
    # the version record is the same one `get --json` prints
    got = people("get", "people/carol", "--json").json()
    assert doc["rows"][0] == got


def test_json_select_projects_values(people):
    doc = query_json(people, "people", "--select", "name,address.city", "--filter", 'id == "alice"')
    assert doc["total"] == 1
    # the projection: the selected paths that the value has, by path
    assert doc["rows"][0]["value"] == {"name": "Alice", "address.city": "Paris"}
    doc = query_json(people, "people", "--select", "name,address.city", "--filter", 'id == "bob"')
    assert doc["rows"][0]["value"] == {"name": "Bob"}


def test_json_limit_total_counts_all(people):
    doc = query_json(people, "people", "--limit", "2", "--sort", "key")
    assert doc["total"] == 5 and len(doc["rows"]) == 2


def test_at_returns_old_state(kd):
    first = kd("set", "inv/apple", '{"qty": 5}', "--json").json()
    kd("set", "inv/pear", '{"qty": 1}')
    kd("set", "inv/apple", '{"qty": 50}')
    kd("delete", "inv/pear")
    kd("set", "inv/plum", '{"qty": 9}')
    t = first["timestamp"]
    # now: apple 50, plum 9
    assert [(r["key"], r["value"]["qty"]) for r in query_json(kd, "inv")["rows"]] == [("apple", 50), ("plum", 9)]
    # at the first write: only apple, with 5
    doc = query_json(kd, "inv", "--at", t)
    assert doc["total"] == 1
    assert doc["rows"][0]["key"] == "apple" and doc["rows"][0]["value"] == {"qty": 5}
    assert doc["rows"][0]["write_id"] == first["write_id"]
    # after pear was written, before it was deleted; with a filter and @ns form
    pear_t = [v for v in kd("log", "inv/pear", "--json").json() if not v["deleted"]][0]["timestamp"]
    doc = query_json(kd, "inv", "--at", "@%d" % ts_to_ns(pear_t), "--filter", "qty < 3")
    assert [(r["key"], r["value"]) for r in doc["rows"]] == [("pear", {"qty": 1})]
    # the table form too
    r = kd("query", "inv", "--at", t)
    assert r.rc == 0 and table(r.out)[1] == [["apple", '{"qty":5}']]
    # before anything existed
    assert query_json(kd, "inv", "--at", "@0") == {"total": 0, "rows": []}
    # a deleted key is no document: filters true of an empty one do not bring it
    # back, now or at a time after its deletion (docs/QUERY.md "Documents without a value")
    plum_t = kd("log", "inv/plum", "--json").json()[0]["timestamp"]
    for flt in ("true", "not qty exists", "qty != 1"):
        for at in ((), ("--at", plum_t)):
            doc = query_json(kd, "inv", "--filter", flt, *at)
            assert "pear" not in [r["key"] for r in doc["rows"]], (flt, at)


def test_names_with_spaces_and_unicode(kd):
    kd("set", "ns/jean paul", '{"n": 1}')
    kd("set", "ns/zoë 🎉", '{"n": 2, "s": "été"}')
    kd("set", "ns/a", '{"n": 3}')
    r = kd("query", "ns", "--sort", "n")
    assert r.rc == 0, r.err
    lines = r.out.splitlines()
    assert lines[1].startswith("jean paul  ")
    assert lines[2].startswith("zoë 🎉")
    assert '"été"' in lines[2]
    # the value column starts at the same display column on every line
    def col(line, value):
        before = line[: line.index(value)]
        return sum(2 if ord(ch) >= 0x1F300 else 1 for ch in before)
    assert col(lines[1], '{"n":1}') == col(lines[2], '{"n":2') == col(lines[3], '{"n":3}') == col(lines[0], "value")
    doc = query_json(kd, "ns", "--sort", "n")
    assert [row["key"] for row in doc["rows"]] == ["jean paul", "zoë 🎉", "a"]


def test_control_characters_in_keys_are_escaped(kd):
    kd("set", "ns/a\nb", "1")
    r = kd("query", "ns")
    assert r.rc == 0
    assert r.out.splitlines()[1] == "a\\nb  1"
    assert query_json(kd, "ns")["rows"][0]["key"] == "a\nb"


# ---------------------------------------------------------------------------
# Aggregations
# ---------------------------------------------------------------------------


def test_count_sum_avg_min_max_table(people):
    r = people("query", "people", "--count", "--sum", "score", "--avg", "age", "--min", "age", "--max", "age")
    assert r.rc == 0, r.err
    header, rows, footer = table(r.out)
    assert header == ["count", "sum:score", "avg:age", "min:age", "max:age"]
    assert rows == [["5", "75", "31.6", "25", "40"]]  # dave has no score
    assert footer == "5 matches"
    # columns follow the command line, whatever order the JSON has
    r = people("query", "people", "--max", "age", "--count")
    assert table(r.out)[0] == ["max:age", "count"]


def test_aggregates_json_exact(kd):
    big = 9007199254740993  # 2**53 + 1: no double holds it
    ndjson = "".join(json.dumps({"id": str(i), "n": big, "k": i % 3, "f": i / 2}) + "\n" for i in range(7))
    assert kd("import", "big", "-", "--key", "id", input=ndjson).rc == 0
    doc = query_json(kd, "big", "--count", "--sum", "n", "--min", "k", "--max", "k", "--avg", "f")
    assert doc == {"total": 7, "aggregates": {"avg:f": 1.5, "count": 7, "max:k": 2, "min:k": 0, "sum:n": 7 * big}}
    r = kd("query", "big", "--sum", "n", "--filter", "k == 1")
    assert table(r.out)[1] == [[str(2 * big)]]


def test_avg_when_the_sum_overflows(kd):
    """The mean is a double whenever the true mean is, although the sum is
    not (docs/QUERY.md "Aggregations"); grouped means the same."""
    big_int = "17" + "0" * 307  # 1.7e308 as an integer: no double holds twice it
    for key, value in [("f1", "1e308"), ("f2", "1e308"), ("i1", big_int), ("i2", big_int), ("i3", big_int)]:
        r = kd("set", "big/" + key, '{"g": "%s", "p": %s}' % (key[0], value))
        assert r.rc == 0, r.err
    doc = query_json(kd, "big", "--avg", "p", "--sum", "p", "--filter", 'g == "f"')
    assert doc == {"total": 2, "aggregates": {"avg:p": 1e308, "sum:p": None}}
    doc = query_json(kd, "big", "--avg", "p", "--sum", "p", "--filter", 'g == "i"')
    assert doc == {"total": 3, "aggregates": {"avg:p": 1.7e308, "sum:p": 3 * int(big_int)}}
    doc = query_json(kd, "big", "--avg", "p", "--group-by", "g")
    assert doc["aggregates"] == {"groups": [{"avg:p": 1e308, "group": {"g": "f"}},
                                            {"avg:p": 1.7e308, "group": {"g": "i"}}]}


def test_distinct(people):
    doc = query_json(people, "people", "--distinct", "city")
    assert doc == {"total": 5, "aggregates": {"distinct:city": ["Berlin", "Paris", "Rome"]}}
    r = people("query", "people", "--distinct", "city", "--filter", "age < 30")
    assert r.rc == 0 and r.out == 'distinct:city\n["Berlin"]\n2 matches\n'


def test_group_by_table_and_json(people):
    r = people("query", "people", "--group-by", "city", "--count", "--sum", "score")
    assert r.rc == 0, r.err
    header, rows, footer = table(r.out)
    assert header == ["city", "count", "sum:score"]
    assert rows == [['"Berlin"', "2", "35"], ['"Paris"', "2", "40"], ['"Rome"', "1", "0"]]
    assert footer == "3 groups, 5 matches"

    doc = query_json(people, "people", "--group-by", "city", "--filter", "age >= 30")
    assert doc == {"total": 3, "aggregates": {"groups": [
        {"count": 2, "group": {"city": "Paris"}},
        {"count": 1, "group": {"city": "Rome"}},
    ]}}


def test_group_by_two_fields_and_missing(people):
    r = people("query", "people", "--filter", "age < 40", "--group-by", "city", "--group-by", "address.city",
               "--count")
    assert r.rc == 0, r.err
    rows = columns(r.out)
    assert rows == [
        ["city", "address.city", "count"],
        ['"Berlin"', "", "1"],  # bob has no address: left out of his group
        ['"Berlin"', '"Bonn"', "1"],
        ['"Paris"', "", "1"],
        ['"Paris"', '"Paris"', "1"],
    ]
    assert r.out.splitlines()[-1] == "4 groups, 4 matches"


def test_aggregates_refuse_rows_options(people):
    line = one_error_line(people("query", "people", "--count", "--limit", "3"), 4)
    assert "limit" in line and "aggregat" in line


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


def test_bad_filter_names_the_column(kd, db):
    r = kd("query", "people", "--filter", "age >")
    line = one_error_line(r, 4)
    assert "--filter" in line and "column" in line
    kd.untouched()  # a bad query is refused before any database or server is involved


def test_bare_word_suggests_quotes(people):
    r = people("query", "people", "--filter", "city == Paris")
    line = one_error_line(r, 4)
    assert "column" in line and "quote" in line.lower(), line


def test_usage_errors(people):
    line = one_error_line(people("query"), 2)
    assert "usage: kdelta query NS" in line
    line = one_error_line(people("query", "people", "--frobnicate"), 2)
    assert "--frobnicate" in line
    line = one_error_line(people("query", "people", "--sum"), 2)
    assert "--sum" in line and "needs a value" in line
    line = one_error_line(people("query", "people", "--sum", ""), 2)
    assert "--sum" in line
    line = one_error_line(people("query", "people", "--limit", "x"), 2)
    assert "--limit" in line
    line = one_error_line(people("query", "people", "--offset", "-1"), 2)
    assert "--offset" in line
    line = one_error_line(people("query", "people", "--reverse"), 2)
    assert "--reverse" in line and "log" in line
    line = one_error_line(people("query", "people", "--types", "insert"), 2)
    assert "--types" in line
    line = one_error_line(people("query", "a", "b"), 2)
    assert "too many" in line


def test_invalid_query_parts(people):
    line = one_error_line(people("query", "people", "--at", "yesterday"), 4)
    assert "--at" in line
    line = one_error_line(people("query", "people", "--sort", "age:sideways"), 4)
    assert "sort" in line
    line = one_error_line(people("query", "people", "--select", "a,,b"), 2)
    assert "--select" in line


def test_reserved_namespace(people):
    line = one_error_line(people("query", "_kdsecret"), 4)
    assert "reserved" in line


def test_paths_as_the_library_writes_them(people):
    """A quoted step that needs no quotes is named without them, in the
    table's header and in the projection alike."""
    r = people("query", "people", "--select", '"name","address"."city"', "--filter", 'id == "alice"')
    assert r.rc == 0, r.err
    assert table(r.out)[:2] == (["key", "name", "address.city"], [["alice", '"Alice"', '"Paris"']])
    r = people("query", "people", "--group-by", '"city"', "--max", '"age"', "--count")
    assert table(r.out)[0] == ["city", "max:age", "count"]


# ---------------------------------------------------------------------------
# Through a server (kdelta --url)
# ---------------------------------------------------------------------------


def test_server_answers_print_as_the_directory_does(people, kd_raw, db):
    """Remote mode: every output, errors included, is byte for byte what
    the same command prints on the directory once the server is gone."""
    if people.mode != "remote":
        pytest.skip("compares a server's answers with the directory's")
    people("set", "people/zed", "null")  # a value that is JSON null is not a tombstone
    commands = [
        ("query", "people"),
        ("query", "people", "--json"),
        ("query", "people", "--filter", "age > 26", "--sort", "age:desc", "--select", "name,address.city",
         "--limit", "2", "--offset", "1"),
        ("query", "people", "--filter", "age > 26", "--select", "name,tags", "--json"),
        ("query", "people", "--limit", "0"),
        ("query", "people", "--at", "2000-01-01T00:00:00Z", "--json"),
        ("query", "people", "--count", "--sum", "score", "--avg", "age", "--distinct", "city"),
        ("query", "people", "--group-by", "city", "--count", "--max", "age", "--json"),
        ("query", "nothing_here"),
        ("query", "_kdsecret"),  # the server's error, reported as the library's
        ("query", "people", "--filter", "age > 1", "--sort", "name", "--json"),
    ]
    remote = [people(*c) for c in commands]
    assert people.server.stop() == 0
    local = [kd_raw("--db", db, *c) for c in commands]
    for c, r, l in zip(commands, remote, local):
        assert r == l, c
    assert remote[9].rc == 4 and "reserved" in remote[9].err


def test_filter_given_twice_is_a_usage_error(kd):
    """--filter twice: the second replaced the first without a word."""
    assert kd("set", "p/a", '{"x": 1, "y": 2}').rc == 0
    line = one_error_line(kd("query", "p", "--filter", "x = 1", "--filter", "y = 2"), 2)
    assert "--filter: given twice" in line, line
