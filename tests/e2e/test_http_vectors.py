"""HTTP vector routes of `kdelta serve` (server/routes_vector.c): put, get
(now and at a time), delete and history of a key's vector, search of one
namespace and of all, stats; every error status (400, 404, 405, 413, 415)
with its code; keys that look like routes or need escaping; scores that are
not finite; the answers against docs/openapi.yaml; and `kdelta --url vector
… --json` printing exactly what the routes answer.

Every test runs its own server on a fresh database (the `server` fixture,
tests/e2e/server.py) and talks to it over loopback.
"""
import json
import math
import struct
import subprocess

import pytest

from helpers import HEX64, TIMESTAMP, ts_to_ns
from server import quote_query, quote_seg

API = "/api/v1"


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def vpath(ns, key, suffix=""):
    return f"{API}/namespaces/{quote_seg(ns)}/keys/{quote_seg(key)}/vector{suffix}"


def search_path(ns=None):
    return f"{API}/namespaces/{quote_seg(ns)}/vectors/search" if ns is not None else f"{API}/vectors/search"


def stats_path(ns=None):
    return f"{API}/namespaces/{quote_seg(ns)}/vectors/stats" if ns is not None else f"{API}/vectors/stats"


def call(server, method, path, body=None, headers=None):
    st, hdrs, data = server.request(method, path, body, headers)
    return st, hdrs, json.loads(data) if data else None


def vput(server, ns, key, vector, model="m", meta=None, **extra):
    body = {"model": model, "vector": vector}
    if meta is not None:
        body["meta"] = meta
    body.update(extra)
    return call(server, "PUT", vpath(ns, key), body)


def error_code(doc):
    assert set(doc) == {"error"}, doc
    assert set(doc["error"]) == {"code", "message"}, doc
    assert doc["error"]["message"], doc
    return doc["error"]["code"]


def check_vector_record(rec, ns, key, deleted=False):
    assert list(rec) == ["namespace", "key", "model", "dim", "vector", "meta", "version_id", "write_id",
                         "previous_write_id", "timestamp", "deleted"], rec
    assert rec["namespace"] == ns and rec["key"] == key
    assert HEX64.match(rec["write_id"]) and TIMESTAMP.match(rec["timestamp"])
    assert rec["deleted"] is deleted
    if deleted:
        assert [rec[m] for m in ("model", "dim", "vector", "meta", "version_id")] == [None] * 5
    else:
        assert HEX64.match(rec["version_id"]) and rec["dim"] == len(rec["vector"])


# ---------------------------------------------------------------------------
# one key's vector
# ---------------------------------------------------------------------------


def test_put_get_delete_history(server):
    st, hdrs, rec = vput(server, "docs", "intro", [0.12, -0.5, 0.33], "text-emb-3", {"lang": "en"})
    assert st == 201
    check_vector_record(rec, "docs", "intro")
    assert rec["vector"] == [0.12, -0.5, 0.33] and rec["model"] == "text-emb-3" and rec["meta"] == {"lang": "en"}
    assert hdrs["ETag"] == f'"{rec["write_id"]}"'
    assert hdrs["Location"] == vpath("docs", "intro")

    st, hdrs, got = call(server, "GET", vpath("docs", "intro"))
    assert st == 200 and got == rec and hdrs["ETag"] == f'"{rec["write_id"]}"'
    st, hdrs, _ = server.request("HEAD", vpath("docs", "intro"))
    assert st == 200

    st, hdrs, rec2 = vput(server, "docs", "intro", [1, 2, 3], "text-emb-3")
    assert st == 200 and "Location" not in hdrs
    assert rec2["previous_write_id"] == rec["write_id"] and rec2["meta"] is None

    st, hdrs, tomb = call(server, "DELETE", vpath("docs", "intro"))
    assert st == 200
    check_vector_record(tomb, "docs", "intro", deleted=True)
    assert tomb["previous_write_id"] == rec2["write_id"] and hdrs["ETag"] == f'"{tomb["write_id"]}"'

    # written again after a delete: 201 again
    st, _, rec3 = vput(server, "docs", "intro", [3, 2, 1], "text-emb-3")
    assert st == 201 and rec3["previous_write_id"] == tomb["write_id"]

    st, _, h = call(server, "GET", vpath("docs", "intro", "/history"))
    assert st == 200 and h == {"versions": [rec, rec2, tomb, rec3]}
    st, _, h = call(server, "GET", vpath("docs", "intro", "/history") + quote_query({"order": "desc", "limit": 2}))
    assert h == {"versions": [rec3, tomb]}
    t2 = ts_to_ns(rec2["timestamp"])
    st, _, h = call(server, "GET", vpath("docs", "intro", "/history") + quote_query({"from": f"@{t2}"}))
    assert h == {"versions": [rec2, tomb, rec3]}
    st, _, h = call(server, "GET", vpath("docs", "intro", "/history") + quote_query({"to": f"@{t2}", "limit": 0}))
    assert h == {"versions": [rec, rec2]}
    st, _, h = call(server, "GET", vpath("docs", "intro", "/history") + quote_query({"from": f"@{t2}", "to": f"@{t2 - 1}"}))
    assert st == 400 and h["error"]["message"] == "from: is later than to", h

    # reads at a time
    for r in (rec, rec2, rec3):
        st, _, got = call(server, "GET", vpath("docs", "intro") + quote_query({"at": r["timestamp"]}))
        assert st == 200 and got == r
    st, _, doc = call(server, "GET", vpath("docs", "intro") + quote_query({"at": tomb["timestamp"]}))
    assert st == 404 and error_code(doc) == "deleted"
    assert doc["error"]["message"] == f"not found: vector deleted at {tomb['timestamp']} (write {tomb['write_id']})"
    before = ts_to_ns(rec["timestamp"]) - 1
    st, _, doc = call(server, "GET", vpath("docs", "intro") + quote_query({"at": f"@{before}"}))
    assert st == 404 and error_code(doc) == "no_version"
    assert doc["error"]["message"].endswith(f"(the first is at {rec['timestamp']})")


def test_vector_and_value_of_a_key_are_separate(server):
    st, _, _ = server.request("PUT", f"{API}/namespaces/d/keys/a", {"x": 1})
    assert st == 201
    st, _, rec = vput(server, "d", "a", [1, 2])
    assert st == 201  # the key had a value, but no vector
    st, _, doc = call(server, "GET", f"{API}/namespaces/d/keys/a")
    assert doc["value"] == {"x": 1}
    assert call(server, "DELETE", vpath("d", "a"))[0] == 200
    assert call(server, "GET", f"{API}/namespaces/d/keys/a")[0] == 200


@pytest.mark.parametrize("key", ["search", "history", "vector", "stats", "vectors", "a/b", "a?b=c", "100%",
                                 "sp ace", "#x", "é", "..", ".", "a/vector"])
def test_keys_that_look_like_routes_or_need_escaping(server, key):
    st, _, rec = vput(server, "k", key, [1, 2, 3], meta={"k": key})
    assert st == 201, rec
    assert rec["key"] == key
    st, _, got = call(server, "GET", vpath("k", key))
    assert st == 200 and got == rec
    st, _, h = call(server, "GET", vpath("k", key, "/history"))
    assert h == {"versions": [rec]}
    st, _, hits = call(server, "POST", search_path("k"), {"vector": [1, 2, 3]})
    assert [x["key"] for x in hits["hits"]] == [key]
    assert call(server, "DELETE", vpath("k", key))[0] == 200
    # a namespace with the same characters
    st, _, rec = vput(server, key, "x", [1, 2, 3])
    assert st == 201 and rec["namespace"] == key
    st, _, s = call(server, "GET", stats_path(key))
    assert st == 200 and [(x["namespace"], x["vectors"]) for x in s["stats"]] == [(key, 1)]


def test_dot_segments_escaped(server):
    """%2E%2E is the key "..", as ".." is (the router never resolves dot segments)."""
    st, _, rec = vput(server, "k", "..", [1, 2])
    assert st == 201
    st, _, got = call(server, "GET", f"{API}/namespaces/k/keys/%2E%2E/vector")
    assert st == 200 and got == rec


# ---------------------------------------------------------------------------
# search and stats
# ---------------------------------------------------------------------------


@pytest.fixture
def corpus(server):
    vs = {
        ("a", "x"): ([1, 0, 0], "m", {"cat": 1}),
        ("a", "y"): ([0.9, 0.1, 0], "m", {"cat": 2}),
        ("a", "z"): ([0, 1, 0], "m", None),
        ("a", "w"): ([0, 0, 1], "n", {"cat": 1}),
        ("b", "x"): ([1, 0.05, 0], "m", {"cat": 1}),
        ("b", "q"): ([1, 2], "m2", {"cat": 1}),  # another model, of another dimension
    }
    for (ns, key), (v, model, meta) in vs.items():
        st, _, _ = vput(server, ns, key, v, model, meta)
        assert st == 201
    return server


def hits_of(server, ns, body):
    st, _, doc = call(server, "POST", search_path(ns), body)
    assert st == 200, doc
    assert list(doc) == ["hits"]
    return doc["hits"]


def test_search(corpus):
    s = corpus
    hits = hits_of(s, "a", {"vector": [1, 0, 0]})
    assert [h["key"] for h in hits] == ["x", "y", "w", "z"]  # w and z tie at 0: by key
    assert list(hits[0]) == ["namespace", "key", "model", "score", "meta", "version_id", "write_id",
                             "previous_write_id", "timestamp"]
    assert hits[0]["score"] == 1 and hits[0]["meta"] == {"cat": 1}
    assert abs(hits[1]["score"] - 0.9 / math.sqrt(0.82)) < 1e-6
    st, _, rec = call(s, "GET", vpath("a", "x"))
    assert {k: hits[0][k] for k in ("version_id", "write_id", "previous_write_id", "timestamp")} == {
        k: rec[k] for k in ("version_id", "write_id", "previous_write_id", "timestamp")}
    # every namespace; ties by namespace then key
    hits = hits_of(s, None, {"vector": [1, 0, 0], "k": 3})
    assert [(h["namespace"], h["key"]) for h in hits] == [("a", "x"), ("b", "x"), ("a", "y")]
    # options, and null for each meaning the default
    assert [h["key"] for h in hits_of(s, "a", {"vector": [1, 0, 0], "model": "n"})] == ["w"]
    assert [h["key"] for h in hits_of(s, "a", {"vector": [1, 0, 0], "filter": "cat == 1"})] == ["x", "w"]
    assert [h["key"] for h in hits_of(s, "a", {"vector": [1, 0, 0], "filter": {"op": "eq", "field": "cat",
                                                                               "value": 1}})] == ["x", "w"]
    assert [h["key"] for h in hits_of(s, "a", {"vector": [1, 0, 0], "min_score": 0.5})] == ["x", "y"]
    l2 = hits_of(s, "a", {"vector": [1, 0, 0], "metric": "l2", "min_score": 0.2})
    assert [h["key"] for h in l2] == ["x", "y"] and l2[0]["score"] == 0
    assert abs(l2[1]["score"] - math.sqrt(0.02)) < 1e-6
    dot = hits_of(s, "a", {"vector": [2, 0, 0], "metric": "dot", "k": 2, "ef": 500})
    assert [h["key"] for h in dot] == ["x", "y"] and dot[0]["score"] == 2 and abs(dot[1]["score"] - 1.8) < 1e-6
    nulls = {"vector": [1, 0, 0], "k": None, "metric": None, "model": None, "min_score": None, "filter": None,
             "ef": None, "at": None}
    assert hits_of(s, "a", nulls) == hits_of(s, "a", {"vector": [1, 0, 0]})
    # the past
    st, _, rec = call(s, "GET", vpath("a", "y"))
    t = rec["timestamp"]
    vput(s, "a", "y", [0, 0, -1], "m", {"cat": 3})
    assert call(s, "DELETE", vpath("a", "x"))[0] == 200
    now = hits_of(s, "a", {"vector": [1, 0, 0], "model": "m"})
    assert [h["key"] for h in now] == ["y", "z"]  # both at 0: by key
    past = hits_of(s, "a", {"vector": [1, 0, 0], "model": "m", "at": t})
    # x (deleted since) is found, y (updated since) with its old value, z (written after y) is not
    assert [(h["key"], h["meta"]) for h in past] == [("x", {"cat": 1}), ("y", {"cat": 2})]
    assert past[1]["write_id"] == rec["write_id"]
    assert hits_of(s, "a", {"vector": [1, 0, 0], "at": "@1"}) == []
    assert hits_of(s, "a", {"vector": [1, 0, 0], "at": "@0"}) == []
    # nothing there: no hits, not an error
    assert hits_of(s, "nothing", {"vector": [1, 0, 0]}) == []


def test_search_scores_read_back_exactly(server):
    # scores are the float32 the library computed, written shortest
    vput(server, "p", "a", [0.1, 0.2, 0.3])
    vput(server, "p", "b", [0.3, 0.2, 0.1])
    st, _, raw = server.request("POST", search_path("p"), {"vector": [0.7, 0.1, 0.05], "metric": "dot"})
    doc = json.loads(raw)
    a = f32(0.7) * f32(0.1) + f32(0.1) * f32(0.2) + f32(0.05) * f32(0.3)
    b = f32(0.7) * f32(0.3) + f32(0.1) * f32(0.2) + f32(0.05) * f32(0.1)
    assert [h["key"] for h in doc["hits"]] == ["b", "a"]
    assert abs(doc["hits"][0]["score"] - b) < 1e-6 and abs(doc["hits"][1]["score"] - a) < 1e-6
    # the shortest text: at most 9 significant digits, and it is the float32 itself
    for piece in raw.decode().split('"score":')[1:]:
        num = piece.split(",", 1)[0]
        assert len(num.lstrip("-").replace(".", "").lstrip("0")) <= 9, num
        assert struct.pack("<f", float(num)) == struct.pack("<f", f32(float(num)))


def test_scores_that_are_not_finite(server):
    vput(server, "inf", "a", [3e38, 1])
    vput(server, "inf", "b", [-3e38, 1])
    hits = hits_of(server, "inf", {"vector": [3e38, 1], "metric": "dot"})
    assert [(h["key"], h["score"]) for h in hits] == [("a", "inf"), ("b", "-inf")]


def test_exact_duplicates_score_exactly(server):
    # l2 distance 0 and cosine 1 for a vector and itself, now and with "at":
    # "now" (the search of the past), so min_score 0 under l2 keeps it;
    # cosines stay in [-1, 1]; both paths give the same scores
    vs = {"a": [0.3, 0.7, 1.1], "b": [1, 1, 0], "c": [-0.5, 2, 0.25], "d": [1e20, 2e19, 3]}
    for k, v in vs.items():
        assert vput(server, "dup", k, v)[0] == 201
    for at in (None, "now"):
        hits = hits_of(server, "dup", {"vector": [0.3, 0.7, 1.1], "metric": "l2", "min_score": 0, "at": at})
        assert [(h["key"], h["score"]) for h in hits] == [("a", 0)], at
        hits = hits_of(server, "dup", {"vector": [3e38, 3e38, 0], "at": at})
        assert (hits[0]["key"], hits[0]["score"]) == ("b", 1), (at, hits)
        assert all(-1 <= h["score"] <= 1 for h in hits), hits
    for metric in ("cosine", "dot", "l2"):
        for k, v in vs.items():
            now = hits_of(server, "dup", {"vector": v, "metric": metric})
            past = hits_of(server, "dup", {"vector": v, "metric": metric, "at": "now"})
            assert [(h["key"], h["score"]) for h in now] == [(h["key"], h["score"]) for h in past], (metric, k)


def test_stats(corpus):
    st, _, doc = call(corpus, "GET", stats_path())
    assert st == 200
    assert [(x["namespace"], x["model"], x["dim"], x["vectors"]) for x in doc["stats"]] == [
        ("a", "m", 3, 3), ("a", "n", 3, 1), ("b", "m", 3, 1), ("b", "m2", 2, 1)]
    assert all(x["index_bytes"] > 0 and x["unindexed"] == 0 and
               list(x) == ["namespace", "model", "dim", "vectors", "unindexed", "index_bytes"] for x in doc["stats"])
    st, _, a = call(corpus, "GET", stats_path("a"))
    assert a == {"stats": [x for x in doc["stats"] if x["namespace"] == "a"]}
    st, _, none = call(corpus, "GET", stats_path("none"))
    assert st == 200 and none == {"stats": []}


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------

BAD_PUTS = [
    (b"{", "invalid", "body: "),
    (b"[1, 2]", "invalid", "body: expected an object"),
    ({"model": "m"}, "invalid", 'body: "vector" is missing'),
    ({"model": "m", "vector": [1], "x": 1}, "invalid", "body: unknown member \"x\""),
    ({"model": 1, "vector": [1]}, "invalid", 'body: "model" must be a string'),
    ({"vector": [1]}, "invalid", "model is missing"),
    ({"model": "", "vector": [1]}, "invalid", "model name is 0 bytes"),
    ({"model": "m", "vector": []}, "invalid", "vector: a vector has 1 to 4096 numbers"),
    ({"model": "m", "vector": [1] * 4097}, "invalid", "vector: a vector has 1 to 4096 numbers"),
    ({"model": "m", "vector": "[1]"}, "invalid", "vector: a vector is a JSON array of numbers"),
    ({"model": "m", "vector": [1, "2"]}, "invalid", "vector: element 1 is not a number"),
    ({"model": "m", "vector": [1, None]}, "invalid", "vector: element 1 is not a number"),
    (b'{"model":"m","vector":[1,1e39]}', "invalid", "beyond the range of float32"),
    (b'{"model":"m","vector":[1,NaN]}', "invalid", "body: "),
    ({"model": "m", "vector": [0, 0]}, "invalid", "all 2 components are zero"),
    ({"model": "m", "vector": [3e38, 3e38]}, "invalid", "overflows float32"),
]


@pytest.mark.parametrize("body,code,msg", BAD_PUTS)
def test_put_errors(server, body, code, msg):
    st, _, doc = call(server, "PUT", vpath("e", "a"), body)
    assert st == 400, doc
    assert error_code(doc) == code
    assert msg in doc["error"]["message"], doc
    assert call(server, "GET", vpath("e", "a"))[0] == 404  # nothing was written


def test_put_errors_of_the_store(server):
    vput(server, "e", "a", [1, 2, 3])
    st, _, doc = vput(server, "e", "b", [1, 2])
    assert st == 400 and error_code(doc) == "invalid"
    assert doc["error"]["message"] == "vector has 2 dimensions but the vectors of model 'm' in namespace 'e' have 3"
    st, _, doc = vput(server, "_kd.vec.e", "b", [1, 2])
    assert st == 400 and error_code(doc) == "reserved"
    st, _, doc = vput(server, "n" * 248, "b", [1, 2])
    assert st == 400 and error_code(doc) == "invalid" and "247" in doc["error"]["message"]
    st, _, doc = vput(server, "e", "k" * 1025, [1, 2, 3])
    assert st == 400 and error_code(doc) in ("too_big", "invalid")
    for hdr in ({"If-Match": "*"}, {"If-None-Match": "*"}):
        st, _, doc = call(server, "PUT", vpath("e", "a"), {"model": "m", "vector": [1, 2, 3]}, hdr)
        assert st == 400 and error_code(doc) == "invalid" and "no preconditions" in doc["error"]["message"]
        st, _, doc = call(server, "DELETE", vpath("e", "a"), None, hdr)
        assert st == 400 and error_code(doc) == "invalid"
    assert call(server, "GET", vpath("e", "a"))[0] == 200


def test_not_found(server):
    for method, path in (("GET", vpath("nf", "x")), ("DELETE", vpath("nf", "x")),
                         ("GET", vpath("nf", "x", "/history"))):
        st, _, doc = call(server, method, path)
        assert st == 404 and error_code(doc) == "not_found", (method, path, doc)
        assert doc["error"]["message"] == "not found: no vector (never written)"
    vput(server, "nf", "x", [1])
    assert call(server, "DELETE", vpath("nf", "x"))[0] == 200
    st, _, doc = call(server, "DELETE", vpath("nf", "x"))
    assert st == 404 and error_code(doc) == "deleted" and doc["error"]["message"] == "not found: vector already deleted"
    st, _, doc = call(server, "GET", vpath("nf", "x"))
    assert st == 404 and error_code(doc) == "deleted"
    # unknown paths under the vector routes
    for path in (f"{API}/vectors", f"{API}/vectors/other", f"{API}/namespaces/nf/vectors",
                 f"{API}/namespaces/nf/vectors/x/y", vpath("nf", "x", "/other")):
        st, _, doc = call(server, "GET", path)
        assert st == 404 and error_code(doc) == "not_found", path


def test_parameter_errors(server):
    vput(server, "p", "x", [1])
    for path in (vpath("p", "x") + "?at=soon", vpath("p", "x", "/history") + "?from=x",
                 vpath("p", "x", "/history") + "?to=x", vpath("p", "x", "/history") + "?limit=-1",
                 vpath("p", "x", "/history") + "?limit=x", vpath("p", "x", "/history") + "?order=up"):
        st, _, doc = call(server, "GET", path)
        assert st == 400 and error_code(doc) == "invalid", path
    st, _, doc = call(server, "GET", vpath("p", "x") + "?at=soon")
    assert doc["error"]["message"].startswith("at: ")
    st, _, doc = call(server, "GET", vpath("_kd", "x"))
    assert st == 400 and error_code(doc) == "reserved"
    st, _, doc = call(server, "GET", vpath("_kd", "x", "/history"))
    assert st == 400 and error_code(doc) == "reserved"
    st, _, doc = call(server, "DELETE", vpath("_kd", "x"))
    assert st == 400 and error_code(doc) == "reserved"
    for ns in ("_kd", "_kd.vec.p"):  # stats too (it answered 200 with no stats)
        st, _, doc = call(server, "GET", stats_path(ns))
        assert st == 400 and error_code(doc) == "reserved", (ns, doc)
    st, _, doc = call(server, "GET", f"{API}/namespaces/p/keys/%zz/vector")
    assert st == 400


BAD_SEARCHES = [
    (b"{", "body: "),
    (b"[]", "body: expected an object"),
    ({}, 'body: "vector" is missing'),
    ({"vector": [1], "x": 1}, 'body: unknown member "x"'),
    ({"vector": [1, "a"]}, "vector: element 1 is not a number"),
    ({"vector": []}, "vector: a vector has 1 to 4096 numbers"),
    ({"vector": [1], "k": 0}, "k is 0; it must be 1 to 10000"),
    ({"vector": [1], "k": 10001}, "k is 10001; it must be 1 to 10000"),
    ({"vector": [1], "k": -1}, "k: expected a whole number"),
    ({"vector": [1], "k": 1.5}, "k: expected a whole number"),
    ({"vector": [1], "k": "3"}, "k: expected a whole number"),
    ({"vector": [1], "metric": "cos"}, "unknown metric 'cos': use cosine, dot or l2"),
    ({"vector": [1], "metric": 1}, "metric: expected a string"),
    ({"vector": [1], "model": 1}, "model: expected a string"),
    ({"vector": [1], "model": ""}, "model name is 0 bytes"),
    ({"vector": [1], "min_score": "high"}, "min_score: expected a number"),
    (b'{"vector":[1],"min_score":1e39}', "min_score: 1e+39 is beyond the range of float32"),
    ({"vector": [1], "filter": "cat =="}, "filter: column"),
    ({"vector": [1], "filter": {"op": "nope"}}, "filter: "),
    ({"vector": [1], "filter": 3}, "filter: "),
    ({"vector": [1], "ef": -1}, "ef: expected a whole number"),
    ({"vector": [1], "ef": "big"}, "ef: expected a whole number"),
    ({"vector": [1], "at": "soon"}, "at: "),
    ({"vector": [1], "at": 5}, "at: expected a TIME string"),
    ({"vector": [0, 0]}, "the query is a zero vector"),
    ({"vector": [1, 2]}, "the query has 2 dimensions but the vectors of model 'm' in namespace 's' have 1"),
    ({"vector": [1, 2], "model": "m"}, "the query has 2 dimensions"),
]


@pytest.mark.parametrize("body,msg", BAD_SEARCHES)
def test_search_errors(server, body, msg):
    vput(server, "s", "x", [1])
    for ns in ("s", None):
        st, _, doc = call(server, "POST", search_path(ns), body)
        assert st == 400, (ns, doc)
        assert error_code(doc) == "invalid"
        assert msg in doc["error"]["message"], doc


def test_search_json_filter_error_named_once(server):
    vput(server, "s", "x", [1])
    body = {"vector": [1], "filter": {"op": "or", "args": [{"op": "true"}, {"op": "eq", "field": "a", "vale": 1}]}}
    st, _, doc = call(server, "POST", search_path("s"), body)
    assert st == 400 and error_code(doc) == "invalid"
    assert doc["error"]["message"] == 'filter at args.1: unknown member "vale" in the "eq" node', doc
    st, _, doc = call(server, "POST", search_path("s"), {"vector": [1], "filter": "cat =="})
    assert st == 400 and doc["error"]["message"].startswith("filter: column 7: "), doc


def test_search_reserved_namespace(server):
    st, _, doc = call(server, "POST", search_path("_kd.vec.s"), {"vector": [1]})
    assert st == 400 and error_code(doc) == "reserved"


def test_wrong_methods_are_405(server):
    cases = [
        ("POST", vpath("m", "x"), {"GET", "HEAD", "PUT", "DELETE"}),
        ("PUT", vpath("m", "x", "/history"), {"GET", "HEAD"}),
        ("GET", search_path("m"), {"POST"}),
        ("PUT", search_path(), {"POST"}),
        ("POST", stats_path("m"), {"GET", "HEAD"}),
        ("DELETE", stats_path(), {"GET", "HEAD"}),
    ]
    for method, path, allow in cases:
        st, hdrs, doc = call(server, method, path, {} if method in ("POST", "PUT") else None)
        assert st == 405 and error_code(doc) == "method_not_allowed", (method, path)
        assert {m.strip() for m in hdrs["Allow"].split(",")} == allow, (path, hdrs["Allow"])


def test_media_type_is_415(server):
    for method, path in (("PUT", vpath("m", "x")), ("POST", search_path("m")), ("POST", search_path())):
        st, _, doc = call(server, method, path, b'{"model":"m","vector":[1]}', {"Content-Type": "text/plain"})
        assert st == 415 and error_code(doc) == "unsupported_media_type"


def test_bodies_over_the_cap_are_413(start_server):
    s = start_server(args=["--max-body", "1K"])
    big = {"model": "m", "vector": [0.123456789] * 300}
    for method, path in (("PUT", vpath("m", "x")), ("POST", search_path("m")), ("POST", search_path())):
        st, _, doc = call(s, method, path, big)
        assert st == 413, (path, doc)
    assert call(s, "GET", vpath("m", "x"))[0] == 404


# ---------------------------------------------------------------------------
# the command line with --url prints what the routes answer
# ---------------------------------------------------------------------------


def test_command_line_prints_the_answers(corpus, kd_raw):
    url = ["--url", corpus.url]
    r = kd_raw(*url, "vector", "get", "a/x", "--json")
    assert r.rc == 0 and json.loads(r.out) == call(corpus, "GET", vpath("a", "x"))[2]
    body = {"vector": [1, 0.5, 0], "k": 3, "filter": "cat >= 1", "metric": "l2"}
    r = kd_raw(*url, "vector", "search", "[1, 0.5, 0]", "-k", "3", "--filter", "cat >= 1", "--metric", "l2", "--json")
    assert r.rc == 0 and json.loads(r.out) == call(corpus, "POST", search_path(), body)[2]
    r = kd_raw(*url, "vector", "stats", "--json")
    assert r.rc == 0 and json.loads(r.out) == call(corpus, "GET", stats_path())[2]
    r = kd_raw(*url, "vector", "log", "a/x", "--json", "--reverse")
    assert r.rc == 0 and json.loads(r.out) == call(corpus, "GET", vpath("a", "x", "/history"))[2]["versions"]
    r = kd_raw(*url, "vector", "put", "a/new", "[0.1, 0.2, 0.3]", "--model", "m", "--meta", '{"c": 1}', "--json")
    assert r.rc == 0
    assert json.loads(r.out) == call(corpus, "GET", vpath("a", "new"))[2]
    r = kd_raw(*url, "vector", "delete", "a/new", "--json")
    assert r.rc == 0
    assert json.loads(r.out) == call(corpus, "GET", vpath("a", "new", "/history"))[2]["versions"][-1]


# ---------------------------------------------------------------------------
# the answers match docs/openapi.yaml
# ---------------------------------------------------------------------------


def test_answers_match_the_spec(corpus, tmp_path, start_server):
    from test_openapi import _VALIDATE, SPEC, _load_spec, _python_with, _template_of  # noqa: PLC0415

    spec = _load_spec()
    vput(corpus, "inf", "a", [3e38, 1])
    small = start_server(args=["--max-body", "1K"], db_dir=str(tmp_path / "small"))
    calls = [
        (corpus, "PUT", vpath("a", "new"), {"model": "m", "vector": [1, 2, 3], "meta": {"c": 1}}, None),
        (corpus, "PUT", vpath("a", "new"), {"model": "m", "vector": [1, 2, 4]}, None),
        (corpus, "PUT", vpath("a", "new"), {"model": "m", "vector": [1, 2]}, None),
        (corpus, "PUT", vpath("a", "new"), b"{", None),
        (corpus, "PUT", vpath("a", "new"), b"{}", {"Content-Type": "text/plain"}),
        (corpus, "PUT", vpath("_kd", "new"), {"model": "m", "vector": [1]}, None),
        (corpus, "GET", vpath("a", "x"), None, None),
        (corpus, "GET", vpath("a", "x") + "?at=@1", None, None),
        (corpus, "GET", vpath("a", "x") + "?at=x", None, None),
        (corpus, "GET", vpath("a", "nope"), None, None),
        (corpus, "POST", vpath("a", "x"), b"{}", None),
        (corpus, "GET", vpath("a", "x", "/history") + "?order=desc", None, None),
        (corpus, "GET", vpath("a", "nope", "/history"), None, None),
        (corpus, "DELETE", vpath("a", "new"), None, None),
        (corpus, "GET", vpath("a", "new", "/history"), None, None),
        (corpus, "DELETE", vpath("a", "new"), None, None),
        (corpus, "POST", search_path("a"), {"vector": [1, 0, 0], "k": 2, "filter": {"op": "exists", "field": "cat"}},
         None),
        (corpus, "POST", search_path(), {"vector": [1, 0, 0], "metric": "l2", "at": "now"}, None),
        (corpus, "POST", search_path("inf"), {"vector": [3e38, 1], "metric": "dot"}, None),
        (corpus, "POST", search_path("a"), {"vector": [1, 0]}, None),
        (corpus, "POST", search_path(), {"vector": "x"}, None),
        (corpus, "GET", search_path(), None, None),
        (corpus, "GET", stats_path("a"), None, None),
        (corpus, "GET", stats_path("a") + "x", None, None),
        (corpus, "GET", stats_path(), None, None),
        (corpus, "POST", stats_path(), b"{}", None),
        (small, "PUT", vpath("m", "x"), {"model": "m", "vector": [0.5] * 400}, None),
        (small, "POST", search_path("m"), {"vector": [0.5] * 400}, None),
    ]
    samples = []
    for srv, method, url, body, headers in calls:
        st, hdrs, data = srv.request(method, url, body, headers)
        tpl = _template_of(url, spec)
        if st == 404 and tpl is None:
            continue
        assert tpl, url
        op = spec["paths"][tpl].get(method.lower())
        if op is None:
            assert st == 405, (method, url, st)
            continue
        assert str(st) in op["responses"], (method, url, st, data)
        assert hdrs["Content-Type"].split(";")[0] == "application/json"
        samples.append({"method": method, "url": url, "path": tpl, "status": str(st), "ctype": "application/json",
                        "body": json.loads(data)})
    assert {s["status"] for s in samples} >= {"200", "201", "400", "404", "413", "415"}
    py = _python_with("jsonschema")
    if not py:
        pytest.skip("jsonschema is not installed in any Python interpreter found: bodies not validated")
    sfile = tmp_path / "samples.json"
    sfile.write_text(json.dumps(samples), encoding="utf-8")
    r = subprocess.run([py, "-c", _VALIDATE, SPEC, str(sfile)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []
