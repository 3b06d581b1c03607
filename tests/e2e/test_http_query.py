"""HTTP query, view and index routes of `kdelta serve` (server/routes_query.c).

- Queries: the POST form (query JSON in the body) and the GET form (URL
  parameters) give the same result as each other and as `kdelta query
  --json` with the same options (the CLI runs after the server stops, on the
  same database), for every feature: filters (text and JSON form), sort,
  select, paging, as-of, aggregations and group by; answers are also checked
  against what is computed here. Errors: a bad filter is 400 naming the
  column, a bad member names the member, 405/415/reserved.
- History queries over the versions of one key.
- Views: create (auto and manual), list, get, rows, refresh, delete; 409 for
  a duplicate name and 404 for unknown names.
- Indexes: create, list, drop; 409/404; query results are identical with and
  without an index.

The database is filled with the CLI before the server starts (so these
tests do not depend on the key routes); the view tests write through PUT.
"""
import json

import pytest

from helpers import check_record, ts_to_ns
from server import quote_query, quote_seg

API = "/api/v1"
ODD = "a/b?c d#é%"  # a key that needs percent-encoding

BEFORE = {
    "alice": {"name": "Alice", "age": 31, "country": "NO", "price": 10, "tags": ["a", "vip"], "address": {"city": "Oslo"}},
    "bob": {"name": "Bob", "age": 25, "country": "SE", "price": 5.5},
    "carol": {"name": "Carol", "age": 42, "country": "NO", "price": 3},
    "dave": {"name": "Dave", "age": "unknown", "a,b": 1},
    "erin": {"name": "Erin", "age": 35, "country": None, "price": 7},
    ODD: {"name": "Odd", "age": 50, "country": "DK", "price": 2},
}
NOW = {k: v for k, v in BEFORE.items() if k != "carol"}
NOW["bob"] = {"name": "Bob", "age": 26, "country": "SE", "price": 6}
NOW["frank"] = {"name": "Frank", "age": 60, "country": "NO", "price": 1}


def set_key(kd, ns, key, value):
    r = kd("set", f"{ns}/{key}", json.dumps(value))
    assert r.rc == 0, r.err


@pytest.fixture
def people(kd, start_server):
    """`people` as BEFORE up to time T1, then as NOW; a key `h/hist` with the
    versions {"n":1}, {"n":2}, a deletion, {"n":3}. Returns (server, kd, T1)."""
    for key, value in BEFORE.items():
        set_key(kd, "people", key, value)
    t1 = kd("get", f"people/{ODD}", "--json").json()["timestamp"]
    set_key(kd, "people", "bob", NOW["bob"])
    assert kd("delete", "people/carol").rc == 0
    set_key(kd, "people", "frank", NOW["frank"])
    set_key(kd, "h", "hist", {"n": 1})
    set_key(kd, "h", "hist", {"n": 2})
    assert kd("delete", "h/hist").rc == 0
    set_key(kd, "h", "hist", {"n": 3})
    return start_server(), kd, t1


def qpath(ns="people"):
    return f"{API}/namespaces/{quote_seg(ns)}/query"


def post_query(srv, body, ns="people"):
    st, doc = srv.json("POST", qpath(ns), body)
    return st, doc


def get_query(srv, params, ns="people"):
    st, doc = srv.json("GET", qpath(ns) + (quote_query(params) if params else ""))
    return st, doc


def ok(pair):
    st, doc = pair
    assert st == 200, doc
    return doc


def error_code(doc):
    assert set(doc) == {"error"}, doc
    assert set(doc["error"]) == {"code", "message"} and doc["error"]["message"], doc
    return doc["error"]["code"]


def keys_of(result):
    return [row["key"] for row in result["rows"]]


# ---------------------------------------------------------------------------
# Queries: both forms, and the CLI, agree
# ---------------------------------------------------------------------------

# (CLI options, GET parameters, POST body); "T1" stands for the time T1.
CASES = [
    ([], {}, {}),
    (["--filter", "age > 30"], {"filter": "age > 30"}, {"filter": "age > 30"}),
    (["--filter", "age >= 25", "--sort", "age:desc", "--select", "name,address.city"],
     {"filter": "age >= 25", "sort": "age:desc", "select": "name,address.city"},
     {"filter": "age >= 25", "sort": ["age:desc"], "select": ["name", "address.city"]}),
    (["--sort", "country", "--sort", "age:desc"], {"sort": "country,age:desc"}, {"sort": ["country", "age:desc"]}),
    (["--sort", "name", "--limit", "2", "--offset", "1"], {"sort": "name", "limit": "2", "offset": "1"},
     {"sort": ["name"], "limit": 2, "offset": 1}),
    (["--limit", "0"], {"limit": "0"}, {"limit": 0}),
    (["--offset", "100"], {"offset": "100"}, {"offset": 100}),
    (["--filter", 'name matches "^[A-D]"'], {"filter": 'name matches "^[A-D]"'}, {"filter": 'name matches "^[A-D]"'}),
    (["--filter", 'country in ["NO", "DK"] or tags contains "vip"'],
     {"filter": 'country in ["NO", "DK"] or tags contains "vip"'},
     {"filter": 'country in ["NO", "DK"] or tags contains "vip"'}),
    (["--filter", "not country exists"], {"filter": "not country exists"}, {"filter": "not country exists"}),
    (["--select", '"a,b",name'], {"select": '"a,b",name'}, {"select": ['"a,b"', "name"]}),
    (["--at", "T1"], {"at": "T1"}, {"at": "T1"}),
    (["--at", "T1", "--filter", "age > 30", "--sort", "age"], {"at": "T1", "filter": "age > 30", "sort": "age"},
     {"at": "T1", "filter": "age > 30", "sort": ["age"]}),
    (["--count", "--sum", "price", "--avg", "price", "--min", "age", "--max", "age", "--distinct", "country"],
     {"aggregate": "count,sum:price,avg:price,min:age,max:age,distinct:country"},
     {"aggregate": ["count", "sum:price", "avg:price", "min:age", "max:age", "distinct:country"]}),
    (["--group-by", "country", "--count", "--sum", "price"], {"group_by": "country", "aggregate": "count,sum:price"},
     {"group_by": ["country"], "aggregate": ["count", "sum:price"]}),
    (["--group-by", "country"], {"group_by": "country"}, {"group_by": ["country"]}),
    (["--filter", "age >= 30", "--group-by", "country", "--group-by", "name", "--max", "age"],
     {"filter": "age >= 30", "group_by": "country,name", "aggregate": "max:age"},
     {"filter": "age >= 30", "group_by": ["country", "name"], "aggregate": ["max:age"]}),
    (["--at", "T1", "--count", "--sum", "price"], {"at": "T1", "aggregate": "count,sum:price"},
     {"at": "T1", "aggregate": ["count", "sum:price"]}),
]


def _fill(x, t1):
    if isinstance(x, list):
        return [t1 if a == "T1" else a for a in x]
    return {k: (t1 if v == "T1" else v) for k, v in x.items()}


def test_get_post_and_cli_agree(people):
    srv, kd, t1 = people
    answers = []
    for cli, params, body in CASES:
        by_post = ok(post_query(srv, _fill(body, t1)))
        by_get = ok(get_query(srv, _fill(params, t1)))
        assert by_post == by_get, (cli, by_post, by_get)
        answers.append(by_post)
    assert srv.stop() == 0
    for (cli, _, _), want in zip(CASES, answers):
        r = kd("query", "people", *_fill(cli, t1), "--json")
        assert r.rc == 0, (cli, r.err)
        assert json.loads(r.out) == want, (cli, r.out, want)


def test_rows_are_version_records_with_expected_content(people):
    srv, kd, t1 = people
    res = ok(post_query(srv, {}))
    assert res["total"] == len(NOW)
    assert keys_of(res) == sorted(NOW, key=lambda k: k.encode())
    for row in res["rows"]:
        check_record(row, "people", row["key"])
        assert row["value"] == NOW[row["key"]]
    assert list(res) == ["total", "rows"]


def test_filter_sort_select_page(people):
    srv, _, _ = people
    res = ok(get_query(srv, {"filter": "age > 30", "sort": "age:desc", "select": "name"}))
    want = sorted((k for k, v in NOW.items() if isinstance(v.get("age"), int) and v["age"] > 30),
                  key=lambda k: -NOW[k]["age"])
    assert keys_of(res) == want and res["total"] == len(want)
    assert [r["value"] for r in res["rows"]] == [{"name": NOW[k]["name"]} for k in want]
    page = ok(get_query(srv, {"filter": "age > 30", "sort": "age:desc", "offset": "1", "limit": "2"}))
    assert keys_of(page) == want[1:3] and page["total"] == len(want)
    none = ok(get_query(srv, {"filter": "age > 30", "limit": "0"}))
    assert none == {"total": len(want), "rows": []}
    # the filter's JSON form in the POST body gives the same answer as its text
    jf = {"op": "and", "args": [{"op": "gt", "field": "age", "value": 30}, {"op": "exists", "field": "name"}]}
    assert ok(post_query(srv, {"filter": jf, "sort": [{"field": "age", "order": "desc"}], "select": ["name"]})) == res
    # a sort field with a ':' or ',' in a quoted step, and a key with odd characters
    res = ok(get_query(srv, {"filter": '"a,b" = 1'}))
    assert keys_of(res) == ["dave"]
    res = ok(get_query(srv, {"filter": 'name = "Odd"'}))
    assert keys_of(res) == [ODD]


def test_as_of(people):
    srv, _, t1 = people
    for at in (t1, f"@{ts_to_ns(t1)}"):
        res = ok(get_query(srv, {"at": at}))
        assert keys_of(res) == sorted(BEFORE, key=lambda k: k.encode())
        assert {r["key"]: r["value"] for r in res["rows"]} == BEFORE
    # integer nanoseconds in the GET form and in the body
    res = ok(get_query(srv, {"at": str(ts_to_ns(t1)), "filter": 'name = "Bob"'}))
    assert [r["value"]["age"] for r in res["rows"]] == [25]
    assert ok(post_query(srv, {"at": ts_to_ns(t1), "filter": 'name = "Bob"'})) == res
    # before anything existed
    assert ok(get_query(srv, {"at": "@1"})) == {"total": 0, "rows": []}


def test_aggregations_and_group_by(people):
    srv, _, _ = people
    res = ok(get_query(srv, {"aggregate": "count,sum:price,min:age,max:age,count_distinct:country"}))
    prices = [v["price"] for v in NOW.values() if "price" in v]
    assert res["total"] == len(NOW)
    agg = res["aggregates"]
    assert agg["count"] == len(NOW)
    assert agg["sum:price"] == pytest.approx(sum(prices))
    assert agg["min:age"] == 26  # numbers before strings: "unknown" is the max
    assert agg["max:age"] == "unknown"
    assert agg["count_distinct:country"] == 4  # NO, SE, null, DK (dave has none)
    assert "rows" not in res
    res = ok(post_query(srv, {"group_by": ["country"], "aggregate": ["count", "sum:price"]}))
    groups = res["aggregates"]["groups"]
    # missing < null < strings
    assert [g["group"] for g in groups] == [{}, {"country": None}, {"country": "DK"}, {"country": "NO"},
                                            {"country": "SE"}]
    assert [g["count"] for g in groups] == [1, 1, 1, 2, 1]
    assert groups[3]["sum:price"] == 11
    # group_by alone counts
    res = ok(get_query(srv, {"group_by": "country", "filter": 'country = "NO"'}))
    assert res == {"total": 2, "aggregates": {"groups": [{"count": 2, "group": {"country": "NO"}}]}}


def test_empty_body_and_unknown_namespace(people):
    srv, _, _ = people
    st, _, data = srv.request("POST", qpath(), b"", headers={"Content-Type": None})
    assert st == 200 and json.loads(data)["total"] == len(NOW)
    assert ok(post_query(srv, {"filter": "age > 1"}, ns="nobody")) == {"total": 0, "rows": []}
    assert ok(get_query(srv, {}, ns="nobody")) == {"total": 0, "rows": []}


def test_query_errors(people):
    srv, _, _ = people
    # bad filter: 400, the message gives the column (both forms)
    for st, doc in (get_query(srv, {"filter": "age >"}), post_query(srv, {"filter": "status = active"})):
        assert st == 400 and error_code(doc) == "invalid"
        assert "column" in doc["error"]["message"] and doc["error"]["message"].startswith("filter"), doc
    st, doc = post_query(srv, {"filter": "status = active"})
    assert "column 10" in doc["error"]["message"] and '"active"' in doc["error"]["message"]
    # the JSON form names the node's place once, and its reason survives any depth
    vale = {"op": "eq", "field": "age", "vale": 1}
    deep = vale
    for _ in range(60):
        deep = {"op": "not", "arg": deep}
    too_deep = {"op": "true"}
    for _ in range(129):
        too_deep = {"op": "not", "arg": too_deep}
    for flt, msg in (({"op": "or", "args": [{"op": "true"}, vale]},
                      'filter at args.1: unknown member "vale" in the "eq" node'),
                     ({"op": "like"}, 'filter: unknown op "like" (expected eq, ne, gt, gte, lt, lte, contains, '
                                      'exists, matches, in, and, or, not or true)'),
                     (deep, 'filter at arg.arg.arg.arg.\u2026(52 levels)\u2026.arg.arg.arg.arg: '
                            'unknown member "vale" in the "eq" node'),
                     (too_deep, "filter at arg.arg.arg.arg.\u2026(120 levels)\u2026.arg.arg.arg.arg: "
                                "nested deeper than 128 levels of and, or, not")):
        st, doc = post_query(srv, {"filter": flt})
        assert st == 400 and error_code(doc) == "invalid"
        assert doc["error"]["message"] == msg, doc
        st, doc = srv.json("POST", hpath("h", "hist"), {"filter": flt})
        assert st == 400 and doc["error"]["message"] == msg, doc
    # members are named
    st, doc = post_query(srv, {"lmit": 3})
    assert st == 400 and '"lmit"' in doc["error"]["message"]
    st, doc = get_query(srv, {"sort": "age:up"})
    assert st == 400 and doc["error"]["message"].startswith("sort[0]"), doc
    st, doc = get_query(srv, {"sort": "name,age:up"})
    assert st == 400 and doc["error"]["message"].startswith("sort[1]"), doc
    st, doc = post_query(srv, {"aggregate": ["count"], "sort": ["age"]})
    assert st == 400 and error_code(doc) == "invalid"
    st, doc = post_query(srv, {"from": "@1"})
    assert st == 400 and error_code(doc) == "invalid"
    # empty strings (the library once read them past the end of a buffer)
    for st, doc in (get_query(srv, {"filter": ""}), post_query(srv, {"filter": ""}),
                    post_query(srv, {"filter": "", "limit": 1})):
        assert st == 400 and doc["error"]["message"].startswith("filter: column 1: empty filter"), doc
    for st, doc in (get_query(srv, {"at": ""}), post_query(srv, {"at": ""})):
        assert st == 400 and doc["error"]["message"].startswith("at: "), doc
    for body in ({"select": [""]}, {"sort": [""]}, {"group_by": [""]}, {"aggregate": [""]}):
        st, doc = post_query(srv, body)
        assert st == 400 and doc["error"]["message"].startswith(next(iter(body))), doc
    # parameters of the GET form
    for params, name in (({"limit": "x"}, "limit"), ({"offset": "-1"}, "offset"), ({"limit": "1e3"}, "limit"),
                         ({"sort": "age,,name"}, "sort"), ({"select": ","}, "select"), ({"at": "bogus"}, "at")):
        st, doc = get_query(srv, params)
        assert st == 400 and error_code(doc) == "invalid", (params, doc)
        assert doc["error"]["message"].startswith(name), (params, doc)
    # bodies
    st, _, data = srv.request("POST", qpath(), b"{not json")
    assert st == 400 and error_code(json.loads(data)) == "invalid"
    st, _, data = srv.request("POST", qpath(), b'["filter"]')
    assert st == 400 and error_code(json.loads(data)) == "invalid"
    st, _, data = srv.request("POST", qpath(), b"{}", headers={"Content-Type": "text/plain"})
    assert st == 415
    # reserved namespace
    for st, doc in (post_query(srv, {}, ns="_kd.views"), get_query(srv, {}, ns="_kd.indexes")):
        assert st == 400 and error_code(doc) == "reserved"
    # wrong method
    st, hdrs, data = srv.request("PUT", qpath(), b"{}")
    assert st == 405
    assert {m.strip() for m in hdrs["Allow"].split(",")} >= {"GET", "POST"}


def test_largest_counts_agree_and_larger_ones_are_named_too_large(people):
    """limit and offset go up to 2^63-1 in the GET form, the POST form and
    the CLI alike; one more is "too large", not "not a number"."""
    srv, kd, _ = people
    big = str(2**63 - 1)
    everyone = keys_of(ok(post_query(srv, {"sort": ["name"]})))
    for params, body in (({"limit": big}, {"limit": 2**63 - 1}), ({"offset": big}, {"offset": 2**63 - 1})):
        got_get = keys_of(ok(get_query(srv, dict(params, sort="name"))))
        got_post = keys_of(ok(post_query(srv, dict(body, sort=["name"]))))
        assert got_get == got_post == (everyone if "limit" in params else []), (params, got_get, got_post)
    too_big = str(2**63)
    for name in ("limit", "offset"):
        for st, doc in (get_query(srv, {name: too_big}), post_query(srv, {name: 2**63})):
            assert st == 400 and error_code(doc) == "invalid", doc
            assert doc["error"]["message"] == f"{name}: {too_big} is too large (at most {big})", doc
        r = kd("query", "people", f"--{name}", too_big)
        assert r.rc == 2 and f"--{name}: {too_big} is too large (at most {big})" in r.err, r.err
    st, doc = post_query(srv, {"at": 2**63})
    assert st == 400 and doc["error"]["message"] == f"at: {too_big} nanoseconds is out of the 64-bit range", doc


# ---------------------------------------------------------------------------
# History queries
# ---------------------------------------------------------------------------


def hpath(ns, key):
    return f"{API}/namespaces/{quote_seg(ns)}/keys/{quote_seg(key)}/history/query"


def test_history_query(people):
    srv, _, _ = people
    st, res = srv.json("POST", hpath("h", "hist"), {})
    assert st == 200 and res["total"] == 4
    assert [r["value"] for r in res["rows"]] == [{"n": 1}, {"n": 2}, None, {"n": 3}]
    assert [r["deleted"] for r in res["rows"]] == [False, False, True, False]
    for r in res["rows"]:
        check_record(r, "h", "hist", deleted=r["deleted"])
    times = [ts_to_ns(r["timestamp"]) for r in res["rows"]]
    assert times == sorted(times)
    # the filter applies to each version; tombstones never match
    st, res = srv.json("POST", hpath("h", "hist"), {"filter": "n >= 2"})
    assert st == 200 and [r["value"] for r in res["rows"]] == [{"n": 2}, {"n": 3}] and res["total"] == 2
    # not even filters true of a document without n (docs/QUERY.md "Documents without a value")
    for flt, want in (("true", [1, 2, 3]), ("not n exists", []), ("n != 1", [2, 3])):
        st, res = srv.json("POST", hpath("h", "hist"), {"filter": flt})
        assert st == 200 and [r["value"]["n"] for r in res["rows"]] == want and res["total"] == len(want), flt
    st, res = srv.json("POST", hpath("h", "hist"), {"filter": "n exists", "latest": 1})
    assert st == 200 and [r["value"] for r in res["rows"]] == [{"n": 3}]
    st, res = srv.json("POST", hpath("h", "hist"), {"sort": ["n:desc"], "select": ["n"], "filter": "n exists"})
    assert [r["value"] for r in res["rows"]] == [{"n": 3}, {"n": 2}, {"n": 1}]
    # from/to bound the time
    st, res = srv.json("POST", hpath("h", "hist"), {"from": f"@{times[1]}", "to": f"@{times[2]}"})
    assert st == 200 and [r["deleted"] for r in res["rows"]] == [False, True]
    st, res = srv.json("POST", hpath("h", "hist"), {"aggregate": ["count", "max:n"]})
    assert res == {"total": 4, "aggregates": {"count": 4, "max:n": 3}}
    # an empty body is {}
    st, _, data = srv.request("POST", hpath("h", "hist"), b"")
    assert st == 200 and json.loads(data)["total"] == 4
    # a key that needs percent-encoding
    st, res = srv.json("POST", hpath("people", ODD), {})
    assert st == 200 and keys_of(res) == [ODD] and res["rows"][0]["value"] == BEFORE[ODD]
    # errors
    st, doc = srv.json("POST", hpath("h", "never"), {})
    assert st == 404 and error_code(doc) == "not_found"
    st, doc = srv.json("POST", hpath("h", "hist"), {"at": "@1"})
    assert st == 400 and error_code(doc) == "invalid"
    for member in ("from", "to"):
        st, doc = srv.json("POST", hpath("h", "hist"), {member: ""})
        assert st == 400 and doc["error"]["message"].startswith(member), doc
    st, doc = srv.json("POST", hpath("h", "hist"), {"filter": "n >"})
    assert st == 400 and "column" in doc["error"]["message"]
    st, doc = srv.json("POST", hpath("_kd.views", "x"), {})
    assert st == 400 and error_code(doc) == "reserved"
    st, hdrs, _ = srv.request("GET", hpath("h", "hist"))
    assert st == 405 and "POST" in hdrs["Allow"]


# ---------------------------------------------------------------------------
# Views
# ---------------------------------------------------------------------------

VIEW_QUERY = {"filter": "age >= 30", "sort": ["age:desc"], "select": ["name", "age"]}


def vpath(name, suffix=""):
    return f"{API}/views/{quote_seg(name)}{suffix}"


def create_view(srv, name, query=VIEW_QUERY, **extra):
    body = {"name": name, "source": "people", "query": query}
    body.update(extra)
    return srv.request("POST", f"{API}/views", json.dumps(body))


def check_view_info(info, name, auto, description=""):
    assert list(info) == ["name", "source", "query", "description", "auto_refresh", "created", "refreshed"], info
    assert info["name"] == name and info["source"] == "people"
    assert info["description"] == description and info["auto_refresh"] is auto
    ts_to_ns(info["created"])
    # the query in canonical form
    assert info["query"]["filter"] == {"field": "age", "op": "gte", "value": 30}
    assert info["query"]["sort"] == [{"field": "age", "order": "desc"}]
    assert info["query"]["select"] == ["age", "name"]


def put_key(srv, key, value):
    st, doc = srv.json("PUT", f"{API}/namespaces/people/keys/{quote_seg(key)}", value)
    assert st in (200, 201), doc


def test_views(people):
    srv, _, _ = people
    st, hdrs, data = create_view(srv, "adults", description="people of 30 and over")
    assert st == 201, data
    assert hdrs["Location"] == "/api/v1/views/adults"
    check_view_info(json.loads(data), "adults", True, "people of 30 and over")
    name2 = "manual adults/ø"
    st, hdrs, data = create_view(srv, name2, auto_refresh=False)
    assert st == 201, data
    assert hdrs["Location"] == "/api/v1/views/" + quote_seg(name2)
    manual = json.loads(data)
    check_view_info(manual, name2, False)
    # duplicate: 409 "exists"
    st, _, data = create_view(srv, "adults")
    assert st == 409 and error_code(json.loads(data)) == "exists"
    # list (sorted by name) and get
    st, doc = srv.json("GET", f"{API}/views")
    assert st == 200 and [v["name"] for v in doc["views"]] == ["adults", name2]
    st, info = srv.json("GET", vpath(name2))
    assert st == 200 and info == manual
    # rows: exactly what the query answers
    want = ok(post_query(srv, VIEW_QUERY))
    for name in ("adults", name2):
        st, rows = srv.json("GET", vpath(name, "/rows"))
        assert st == 200 and rows == want, name
    st, rows = srv.json("GET", vpath("adults", "/rows") + "?offset=1&limit=2")
    assert rows == {"total": want["total"], "rows": want["rows"][1:3]}
    st, rows = srv.json("GET", vpath("adults", "/rows") + "?limit=0")
    assert rows == {"total": want["total"], "rows": []}
    st, doc = srv.json("GET", vpath("adults", "/rows") + "?limit=many")
    assert st == 400 and error_code(doc) == "invalid" and doc["error"]["message"].startswith("limit")
    # a write: the auto view follows it, the manual one waits for a refresh
    put_key(srv, "gina", {"name": "Gina", "age": 70})
    put_key(srv, "alice", {"name": "Alice", "age": 29})
    st, rows = srv.json("GET", vpath("adults", "/rows"))
    assert keys_of(rows)[0] == "gina" and "alice" not in keys_of(rows)
    assert rows == ok(post_query(srv, VIEW_QUERY))
    st, rows = srv.json("GET", vpath(name2, "/rows"))
    assert rows == want
    st, info = srv.json("POST", vpath(name2, "/refresh"))
    assert st == 200 and info["name"] == name2
    assert ts_to_ns(info["refreshed"]) >= ts_to_ns(manual["refreshed"])
    st, rows = srv.json("GET", vpath(name2, "/rows"))
    assert rows == ok(post_query(srv, VIEW_QUERY))
    # delete
    st, doc = srv.json("DELETE", vpath(name2))
    assert st == 200 and doc == {"name": name2, "deleted": True}
    for method, suffix in (("GET", ""), ("GET", "/rows"), ("POST", "/refresh"), ("DELETE", "")):
        st, doc = srv.json(method, vpath(name2, suffix))
        assert st == 404 and error_code(doc) == "not_found", (method, suffix)
    st, doc = srv.json("GET", f"{API}/views")
    assert [v["name"] for v in doc["views"]] == ["adults"]
    # wrong methods
    st, hdrs, _ = srv.request("PUT", f"{API}/views", b"{}")
    assert st == 405 and {m.strip() for m in hdrs["Allow"].split(",")} >= {"GET", "POST"}
    st, hdrs, _ = srv.request("GET", vpath("adults", "/refresh"))
    assert st == 405 and "POST" in hdrs["Allow"]


def test_view_survives_restart(people, start_server):
    srv, _, _ = people
    st, _, data = create_view(srv, "m", auto_refresh=False)
    assert st == 201
    want = srv.json("GET", vpath("m", "/rows"))[1]
    assert srv.stop() == 0
    srv2 = start_server()
    st, info = srv2.json("GET", vpath("m"))
    assert st == 200 and info == json.loads(data)
    assert srv2.json("GET", vpath("m", "/rows"))[1] == want


def test_view_create_errors(people):
    srv, _, _ = people

    def create(body, content_type="application/json"):
        st, _, data = srv.request("POST", f"{API}/views", body if isinstance(body, bytes) else json.dumps(body),
                                  headers={"Content-Type": content_type})
        return st, json.loads(data) if data else None

    cases = [
        ({"source": "people"}, "invalid", '"name"'),
        ({"name": "", "source": "people"}, "invalid", '"name"'),
        ({"name": "v"}, "invalid", '"source"'),
        ({"name": 3, "source": "people"}, "invalid", '"name"'),
        ({"name": "v", "source": "people", "query": "age > 3"}, "invalid", '"query"'),
        ({"name": "v", "source": "people", "auto_refresh": "yes"}, "invalid", '"auto_refresh"'),
        ({"name": "v", "source": "people", "colour": 1}, "invalid", '"colour"'),
        ({"name": "v", "source": "people", "query": {"filter": "age >"}}, "invalid", "query: filter: column"),
        ({"name": "v", "source": "people", "query": {"lmit": 1}}, "invalid", 'query: "lmit"'),
        ({"name": "v", "source": "people", "query": {"filter": ""}}, "invalid", "query: filter: column 1"),
        ({"name": "v", "source": "people", "query": {"aggregate": ["count"]}}, "invalid", ""),
        ({"name": "v", "source": "people", "query": {"at": "@1"}}, "invalid", ""),
        ({"name": "v", "source": "people", "query": {"from": "-1m"}}, "invalid",
         "a view's query is a filter, sort, select, offset and limit over the current values: no aggregate, "
         'group, "at", "from"'),
        ({"name": "v", "source": "_kd.views"}, "reserved", ""),
        (b"", "invalid", "request body"),
        (b"[]", "invalid", "request body"),
        (b'{"name":', "invalid", "request body"),
    ]
    for body, code, start in cases:
        st, doc = create(body)
        assert st == 400 and error_code(doc) == code, (body, doc)
        assert doc["error"]["message"].startswith(start), (body, doc)
    st, _ = create({"name": "v", "source": "people"}, content_type="text/plain")
    assert st == 415
    assert srv.json("GET", f"{API}/views")[1] == {"views": []}
    # a view with no query holds every key
    st, doc = create({"name": "all", "source": "people"})
    assert st == 201 and doc["query"] == {} and doc["auto_refresh"] is True
    assert srv.json("GET", vpath("all", "/rows"))[1] == ok(post_query(srv, {}))


# ---------------------------------------------------------------------------
# Indexes
# ---------------------------------------------------------------------------

INDEXED_QUERIES = [
    {"filter": "age = 26"},
    {"filter": "age > 30", "sort": ["age"]},
    {"filter": "age >= 26 and age < 60"},
    {"filter": 'age >= "a"'},
    {"filter": "age in [26, 35, 50, 99]"},
    {"filter": 'country = "NO"'},
    {"filter": 'country in ["NO", "DK"] and price < 5'},
    {"filter": "country = null"},
    {"filter": "age = 35.0"},
    {"filter": 'country = "NO"', "aggregate": ["count", "sum:price"]},
]


def index_body(ns, field):
    return {"namespace": ns, "field": field}


def test_indexes(people):
    srv, _, _ = people
    before = [ok(post_query(srv, q)) for q in INDEXED_QUERIES]
    st, hdrs, data = srv.request("POST", f"{API}/indexes", json.dumps(index_body("people", "age")))
    assert st == 201, data
    assert hdrs["Location"] == "/api/v1/indexes/people/age"
    info = json.loads(data)
    assert list(info) == ["namespace", "field", "entries", "created", "built", "error"]
    assert info["namespace"] == "people" and info["field"] == "age"
    assert info["built"] is True and info["error"] is None
    assert info["entries"] == sum(1 for v in NOW.values() if "age" in v)
    ts_to_ns(info["created"])
    st, doc = srv.json("POST", f"{API}/indexes", index_body("people", "country"))
    assert st == 201 and doc["entries"] == sum(1 for v in NOW.values() if "country" in v)
    # a field that needs quotes, and one spelled with needless quotes
    st, hdrs, data = srv.request("POST", f"{API}/indexes", json.dumps(index_body("people", '"a,b"')))
    assert st == 201 and json.loads(data)["field"] == '"a,b"'
    assert hdrs["Location"] == "/api/v1/indexes/people/" + quote_seg('"a,b"')
    # duplicates, in any spelling
    for field in ("age", '"age"'):
        st, doc = srv.json("POST", f"{API}/indexes", index_body("people", field))
        assert st == 409 and error_code(doc) == "exists", field
    # list, all or of one namespace
    st, doc = srv.json("GET", f"{API}/indexes")
    assert st == 200 and [(i["namespace"], i["field"]) for i in doc["indexes"]] == [
        ("people", '"a,b"'), ("people", "age"), ("people", "country")]
    assert srv.json("GET", f"{API}/indexes?ns=people")[1] == doc
    assert srv.json("GET", f"{API}/indexes?ns=other")[1] == {"indexes": []}
    # the same answers with the indexes
    after = [ok(post_query(srv, q)) for q in INDEXED_QUERIES]
    assert after == before
    assert ok(post_query(srv, {"filter": '"a,b" = 1'}))["rows"][0]["key"] == "dave"
    # writes keep them up to date
    put_key(srv, "hugo", {"name": "Hugo", "age": 26, "country": "NO", "price": 1})
    with_index = [ok(post_query(srv, q)) for q in INDEXED_QUERIES]
    assert "hugo" in keys_of(with_index[0])
    # drop
    for field in ("age", "country", '"a,b"'):
        st, doc = srv.json("DELETE", f"{API}/indexes/people/{quote_seg(field)}")
        assert st == 200 and doc == {"namespace": "people", "field": field, "dropped": True}, doc
    st, doc = srv.json("DELETE", f"{API}/indexes/people/age")
    assert st == 404 and error_code(doc) == "not_found"
    assert srv.json("GET", f"{API}/indexes")[1] == {"indexes": []}
    assert [ok(post_query(srv, q)) for q in INDEXED_QUERIES] == with_index


def test_index_errors(people):
    srv, _, _ = people
    cases = [
        ({"field": "age"}, 400, "invalid"),
        ({"namespace": "people"}, 400, "invalid"),
        ({"namespace": "people", "field": ""}, 400, "invalid"),
        ({"namespace": "people", "field": "a..b"}, 400, "invalid"),
        ({"namespace": "people", "field": 3}, 400, "invalid"),
        ({"namespace": "people", "field": "age", "unique": True}, 400, "invalid"),
        ({"namespace": "_kd.views", "field": "age"}, 400, "reserved"),
    ]
    for body, status, code in cases:
        st, doc = srv.json("POST", f"{API}/indexes", body)
        assert st == status and error_code(doc) == code, (body, doc)
    st, _, data = srv.request("POST", f"{API}/indexes", b"nope")
    assert st == 400 and error_code(json.loads(data)) == "invalid"
    st, _, _ = srv.request("POST", f"{API}/indexes", b"{}", headers={"Content-Type": "text/plain"})
    assert st == 415
    st, doc = srv.json("DELETE", f"{API}/indexes/people/{quote_seg('a..b')}")
    assert st in (400, 404) and error_code(doc) in ("invalid", "not_found")
    st, hdrs, _ = srv.request("GET", f"{API}/indexes/people/age")
    assert st == 405 and "DELETE" in hdrs["Allow"]
    st, hdrs, _ = srv.request("DELETE", f"{API}/indexes")
    assert st == 405 and {m.strip() for m in hdrs["Allow"].split(",")} >= {"GET", "POST"}
