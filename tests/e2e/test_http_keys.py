"""HTTP key routes of `kdelta serve` (server/routes_keys.c): status,
namespaces, key listing with cursors, get / put / delete with ETags and
conditional writes, reads at a time, history, diffs and atomic batches.

Every test runs its own server on a fresh database (the `server` fixture,
tests/e2e/server.py) and talks to it over loopback.
"""
import json
import os

import pytest

from helpers import HEX64, canonical, check_record, run_kdelta, sha256_hex, ts_to_ns
from server import quote_query, quote_seg

API = "/api/v1"


def key_path(ns, key, suffix=""):
    return f"{API}/namespaces/{quote_seg(ns)}/keys/{quote_seg(key)}{suffix}"


def put(server, ns, key, value, headers=None, raw=None):
    body = raw if raw is not None else json.dumps(value)
    st, hdrs, data = server.request("PUT", key_path(ns, key), body, headers)
    return st, hdrs, json.loads(data) if data else None


def get(server, ns, key, query=""):
    st, hdrs, data = server.request("GET", key_path(ns, key) + query)
    return st, hdrs, json.loads(data) if data else None


def delete(server, ns, key, headers=None):
    st, hdrs, data = server.request("DELETE", key_path(ns, key), None, headers)
    return st, hdrs, json.loads(data) if data else None


def error_code(doc):
    assert set(doc) == {"error"}, doc
    assert set(doc["error"]) == {"code", "message"}, doc
    assert doc["error"]["message"], doc
    return doc["error"]["code"]


def at(ts_ns):
    return "?at=" + quote_seg(f"@{ts_ns}")


# ---------------------------------------------------------------------------
# get / put / delete
# ---------------------------------------------------------------------------


def test_location_of_long_names(server):
    """Every 201 names what it made in Location, however long its path: a
    fixed buffer dropped the header from 512 bytes on (names within their
    limits: a key of 1024 bytes, a namespace of 255)."""
    ns, key = "é" * 127, "%" * 1024  # 762 and 3072 bytes percent-encoded
    path = key_path(ns, key)
    st, hdrs, _ = server.request("PUT", path, b"1", {"Content-Type": "application/json"})
    assert st == 201 and hdrs["Location"] == path, (st, hdrs.get("Location", "")[:80])
    vpath = key_path("é" * 120, "v" * 1024, "/vector")  # a vector namespace: at most 247 bytes
    st, hdrs, _ = server.request("PUT", vpath, {"model": "m", "vector": [1, 2]})
    assert st == 201 and hdrs["Location"] == vpath, (st, hdrs.get("Location", "")[:80])
    view = "é" * 127
    st, hdrs, _ = server.request("POST", f"{API}/views", {"name": view, "source": ns})
    assert st == 201 and hdrs["Location"] == f"{API}/views/{quote_seg(view)}", (st, hdrs.get("Location", "")[:80])
    st, hdrs, _ = server.request("POST", f"{API}/indexes", {"namespace": ns, "field": "f" * 300})
    assert st == 201 and hdrs["Location"] == f"{API}/indexes/{quote_seg(ns)}/{quote_seg('f' * 300)}", \
        (st, hdrs.get("Location", "")[:80])
    assert server.request("DELETE", hdrs["Location"])[0] == 200


def test_put_get_delete_roundtrip(server):
    st, hdrs, rec = put(server, "users", "alice", {"name": "Alice", "age": 30})
    assert st == 201
    check_record(rec, "users", "alice")
    assert rec["value"] == {"name": "Alice", "age": 30}
    assert rec["previous_write_id"] is None
    assert rec["version_id"] == sha256_hex(canonical(rec["value"]))
    assert hdrs["ETag"] == f'"{rec["write_id"]}"'
    assert hdrs["Location"] == key_path("users", "alice")

    st, hdrs, got = get(server, "users", "alice")
    assert st == 200 and got == rec
    assert hdrs["ETag"] == f'"{rec["write_id"]}"'

    st, hdrs, rec2 = put(server, "users", "alice", {"name": "Alicia"})
    assert st == 200
    assert rec2["previous_write_id"] == rec["write_id"]
    assert ts_to_ns(rec2["timestamp"]) > ts_to_ns(rec["timestamp"])
    assert "Location" not in hdrs

    st, hdrs, tomb = delete(server, "users", "alice")
    assert st == 200
    check_record(tomb, "users", "alice", deleted=True)
    assert tomb["previous_write_id"] == rec2["write_id"]
    assert hdrs["ETag"] == f'"{tomb["write_id"]}"'

    st, _, doc = get(server, "users", "alice")
    assert st == 404 and error_code(doc) == "deleted"
    assert tomb["write_id"] in doc["error"]["message"]

    # A key with no live value again: the next put is a creation (201).
    st, _, rec3 = put(server, "users", "alice", 1)
    assert st == 201 and rec3["previous_write_id"] == tomb["write_id"]


@pytest.mark.parametrize("raw,value", [
    ("null", None), ("0", 0), ("-1.5e3", -1500.0), ('"text"', "text"), ("[]", []), ("{}", {}),
    ("true", True), ('  {"b": [1, {"c": null}], "a": "\\u00e9"}  ', {"a": "é", "b": [1, {"c": None}]}),
])
def test_any_json_value(server, raw, value):
    st, _, rec = put(server, "v", "k", None, raw=raw)
    assert st == 201, rec
    assert rec["value"] == value and rec["deleted"] is False
    st, _, got = get(server, "v", "k")
    assert st == 200 and got["value"] == value and got == rec


@pytest.mark.parametrize("raw", [
    '{"b": 1.0, "a": 1, "c": [1E2, -0, 0.5e-3]}', '  "caf\\u00e9 \\ud83d\\ude00 \\/ \\u0000"  ',
    '505874924095815681', '{"z": {"y": {}, "x": []}, "\u00e9": true, "e": null}',
])
def test_put_answer_is_the_stored_value(server, raw):
    """The PUT answer holds the value as stored: byte for byte the record a
    GET returns (the server makes it from the body, not from the log)."""
    st, _, put_body = server.request("PUT", key_path("v", "k"), raw.encode())
    assert st == 201, put_body
    st, _, get_body = server.request("GET", key_path("v", "k"))
    assert st == 200
    assert put_body == get_body


@pytest.mark.parametrize("raw", ["", "{", "[1,]", "nul", '{"a":1} x', "'a'", "\xff"])
def test_invalid_json_is_400(server, raw):
    st, _, doc = put(server, "v", "k", None, raw=raw.encode("latin-1"))
    assert st == 400 and error_code(doc) == "invalid", doc
    st, _, doc = get(server, "v", "k")
    assert st == 404 and error_code(doc) == "not_found"


def test_not_found_family(server):
    st, _, doc = get(server, "users", "nobody")
    assert st == 404 and error_code(doc) == "not_found"
    st, _, doc = delete(server, "users", "nobody")
    assert st == 404 and error_code(doc) == "not_found"
    for suffix in ("/history", "/diff"):
        st, _, data = server.request("GET", key_path("users", "nobody", suffix))
        assert st == 404 and error_code(json.loads(data)) == "not_found"

    _, _, rec = put(server, "users", "bob", {"v": 1})
    t = ts_to_ns(rec["timestamp"])
    st, _, doc = get(server, "users", "bob", at(t - 1))
    assert st == 404 and error_code(doc) == "no_version"
    assert rec["timestamp"] in doc["error"]["message"]  # names the first version's time

    delete(server, "users", "bob")
    st, _, doc = delete(server, "users", "bob")
    assert st == 404 and error_code(doc) == "deleted"


def test_get_at_time(server):
    recs = [put(server, "t", "k", {"n": i})[2] for i in range(3)]
    ts = [ts_to_ns(r["timestamp"]) for r in recs]
    _, _, tomb = delete(server, "t", "k")
    td = ts_to_ns(tomb["timestamp"])
    for i, t in enumerate(ts):
        st, hdrs, got = get(server, "t", "k", at(t))  # exactly at
        assert st == 200 and got == recs[i]
        assert hdrs["ETag"] == f'"{recs[i]["write_id"]}"'
        st, _, got = get(server, "t", "k", at(t + 1))  # just after
        assert st == 200 and got == recs[i]
        if i:
            st, _, got = get(server, "t", "k", at(t - 1))  # just before: the previous one
            assert st == 200 and got == recs[i - 1]
    # RFC 3339 text works as well as @ns
    st, _, got = get(server, "t", "k", "?at=" + quote_seg(recs[1]["timestamp"]))
    assert st == 200 and got == recs[1]
    st, _, doc = get(server, "t", "k", at(td))
    assert st == 404 and error_code(doc) == "deleted"
    st, _, doc = get(server, "t", "k", at(ts[0] - 1))
    assert st == 404 and error_code(doc) == "no_version"
    st, _, doc = get(server, "t", "k", "?at=yesterday")
    assert st == 400 and error_code(doc) == "invalid" and doc["error"]["message"].startswith("at: ")


# ---------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------

AWKWARD = [
    "history", "keys", "query", "watch", "diff", "batch", "status",
    "a/b", "a/b/history", "/", "//", "a?b=c", "#frag", "a#b", "%", "100%", "%41", "%2F", "a+b", "+",
    "with space", " lead", "trail ", "tab\there", "new\nline", "semi;colon", "&amp", "a=b&c=d",
    "ünïcödé", "名前", "emoji 🎉", "quote\"s", "back\\slash", "~tilde", "..", ".", "...",
]


def test_awkward_keys_round_trip(server):
    for i, key in enumerate(AWKWARD):
        st, _, rec = put(server, "odd", key, {"i": i, "key": key})
        assert st == 201, (key, rec)
        assert rec["key"] == key
    for i, key in enumerate(AWKWARD):
        st, _, got = get(server, "odd", key)
        assert st == 200, (key, got)
        assert got["key"] == key and got["value"] == {"i": i, "key": key}, key
        st, _, data = server.request("GET", key_path("odd", key, "/history"))
        assert st == 200
        versions = json.loads(data)["versions"]
        assert [v["value"]["i"] for v in versions] == [i], key
    st, _, data = server.request("GET", f"{API}/namespaces/odd/keys")
    assert st == 200
    keys = json.loads(data)["keys"]
    assert keys == sorted(AWKWARD, key=lambda s: s.encode("utf-8"))


def test_awkward_namespaces(server):
    names = ["a/b", "sp ace", "名前", "keys", "100%", "?q"]
    for ns in names:
        st, _, rec = put(server, ns, "k", ns)
        assert st == 201 and rec["namespace"] == ns
    for ns in names:
        st, _, got = get(server, ns, "k")
        assert st == 200 and got["value"] == ns
        st, _, data = server.request("GET", f"{API}/namespaces/{quote_seg(ns)}/keys")
        assert st == 200 and json.loads(data) == {"keys": ["k"], "next": None}
    st, doc = server.json("GET", f"{API}/namespaces")
    assert st == 200 and doc == {"namespaces": sorted(names, key=lambda s: s.encode("utf-8"))}


def test_raw_plus_is_not_a_space(server):
    st, _, data = server.request("PUT", f"{API}/namespaces/n/keys/a+b", "1")
    assert st == 201 and json.loads(data)["key"] == "a+b"


def test_bad_names(server):
    st, _, doc = put(server, "_kd.views", "x", 1)
    assert st == 400 and error_code(doc) == "reserved"
    st, _, doc = get(server, "_kd.views", "x")
    assert st == 400 and error_code(doc) == "reserved"
    st, _, data = server.request("GET", f"{API}/namespaces/_kd.views/keys")
    assert st == 400 and error_code(json.loads(data)) == "reserved"
    st, _, doc = put(server, "n", "k" * 1025, 1)
    assert st == 400 and error_code(doc) in ("too_big", "invalid"), doc
    st, _, doc = put(server, "n" * 256, "k", 1)
    assert st == 400 and error_code(doc) in ("too_big", "invalid"), doc
    # a segment that decodes to invalid UTF-8
    st, _, data = server.request("PUT", f"{API}/namespaces/n/keys/%FF%FE", "1")
    assert st == 400 and error_code(json.loads(data)) == "invalid"


@pytest.mark.parametrize("method, path", [
    ("GET", "/namespaces/n/keys/" + "k" * 1025),
    ("GET", "/namespaces/n/keys/" + "k" * 1025 + "/history"),
    ("GET", "/namespaces/n/keys/" + "k" * 1025 + "/diff"),
    ("GET", "/namespaces/n/keys/" + "k" * 1025 + "/vector"),
    ("GET", "/namespaces/" + "n" * 256 + "/keys"),
    ("GET", "/namespaces/" + "n" * 256 + "/query"),
    ("GET", "/namespaces/" + "n" * 256 + "/scan"),
    ("GET", "/namespaces/n/keys?prefix=" + "p" * 1025),
    ("GET", "/namespaces/n/keys?after=" + "a" * 1025),
    ("GET", "/changes?ns=" + "n" * 256),
    ("GET", "/indexes?ns=" + "n" * 256),
])
def test_names_over_their_limit_on_reads(server, method, path):
    """A read of a name no key can have is 400 too_big, as its write is
    (HTTP.md, Errors), not a 404 or an empty list."""
    st, _, data = server.request(method, API + path)
    doc = json.loads(data)
    assert st == 400 and error_code(doc) == "too_big", (st, doc)
    assert "bytes; the limit is" in doc["error"]["message"]
    # exactly at the limits is fine
    st, _, doc = put(server, "n" * 255, "k" * 1024, 1)
    assert st == 201, doc
    # also when every byte needs a %-escape: the longest request path
    # (~3.9 KB) fits the server's per-connection memory, also with a long
    # query string beside it (a repeated parameter of the route, of which
    # only the first is read: an unknown one would be 400)
    ns, key = "\u00e9" * 127, "\U0001F600" * 256  # 254 and 1024 bytes of UTF-8
    st, _, doc = put(server, ns, key, 2)
    assert st == 201, doc
    st, _, data = server.request("GET", key_path(ns, key) + "?at=%407000000000000000000&at=" + "y" * 8000)
    assert st == 200 and json.loads(data)["value"] == 2


def test_value_over_the_size_limit_is_413(server):
    big = b'"' + b"x" * (16 << 20) + b'"'
    st, _, data = server.request("PUT", key_path("n", "big"), big)
    assert st == 413 and error_code(json.loads(data)) == "too_big"
    st, _, doc = get(server, "n", "big")
    assert st == 404


def test_batch_value_over_the_size_limit_is_413_a_long_name_400(server):
    """too_big comes with 413 for a value, in a batch as for a single PUT;
    a name over its limit stays 400 too_big."""
    big = '"' + "x" * (16 << 20) + '"'
    ok = {"namespace": "n", "key": "small", "value": 1}
    for writes, where in [
        ([{"namespace": "n", "key": "big"}], "n/big: value is"),
        ([ok, {"namespace": "n", "key": "big"}], "batch write 1 (n/big): value is"),
    ]:
        body = json.dumps({"writes": writes})
        body = body[:-3] + ', "value": ' + big + "}]}"  # the big value into the last write
        st, doc = batch(server, body)
        assert st == 413 and error_code(doc) == "too_big", doc
        assert where in doc["error"]["message"], doc
        assert get(server, "n", "big")[0] == 404 and get(server, "n", "small")[0] == 404
    for writes, where in [
        ([{"namespace": "n", "key": "k" * 1025, "value": 1}], "key is 1025 bytes"),
        ([ok, {"namespace": "n" * 256, "key": "k", "value": 1}], "batch write 1: namespace is 256 bytes"),
    ]:
        st, doc = batch(server, {"writes": writes})
        assert st == 400 and error_code(doc) == "too_big", doc
        assert where in doc["error"]["message"], doc
    # a long name after an oversized value: the names of every write are
    # checked first, and the status goes with the message
    st, doc = batch(server, json.dumps({"writes": [{"namespace": "n", "key": "big", "value": 0},
                                                   {"namespace": "n", "key": "k" * 1025, "value": 1}]})
                    .replace('"value": 0', '"value": ' + big, 1))
    assert st == 400 and error_code(doc) == "too_big", doc
    assert doc["error"]["message"].startswith("batch write 1: key is 1025 bytes"), doc


def test_wrong_method_on_a_key(server):
    st, hdrs, data = server.request("POST", key_path("n", "k"), "1")
    assert st == 405 and error_code(json.loads(data))
    allowed = {m.strip() for m in hdrs["Allow"].split(",")}
    assert {"GET", "PUT", "DELETE"} <= allowed


# ---------------------------------------------------------------------------
# conditional writes
# ---------------------------------------------------------------------------


def test_if_none_match_and_if_match(server):
    st, hdrs, rec = put(server, "c", "k", 1, {"If-None-Match": "*"})
    assert st == 201
    etag = hdrs["ETag"]
    st, _, doc = put(server, "c", "k", 2, {"If-None-Match": "*"})
    assert st == 412 and error_code(doc) == "conflict"

    st, hdrs, rec2 = put(server, "c", "k", 2, {"If-Match": etag})
    assert st == 200 and rec2["previous_write_id"] == rec["write_id"]
    st, _, doc = put(server, "c", "k", 3, {"If-Match": etag})  # stale
    assert st == 412 and error_code(doc) == "conflict"
    st, _, got = get(server, "c", "k")
    assert got["value"] == 2

    # upper-case hex names the same write
    st, hdrs, rec3 = put(server, "c", "k", 3, {"If-Match": hdrs["ETag"].upper()})
    assert st == 200, rec3

    # If-Match: * needs a value
    st, _, doc = put(server, "c", "absent", 1, {"If-Match": "*"})
    assert st == 412 and error_code(doc) == "conflict"
    assert doc["error"]["message"] == "c/absent: If-Match: * but the key has no value", doc
    st, hdrs, rec4 = put(server, "c", "k", 4, {"If-Match": "*"})
    assert st == 200 and rec4["previous_write_id"] == rec3["write_id"]

    # conditional delete
    st, _, doc = delete(server, "c", "k", {"If-Match": etag})
    assert st == 412 and error_code(doc) == "conflict"
    st, _, tomb = delete(server, "c", "k", {"If-Match": hdrs["ETag"]})
    assert st == 200 and tomb["deleted"] is True
    st, _, doc = delete(server, "c", "k", {"If-Match": "*"})
    assert st == 412

    # deleted counts as absent for If-None-Match
    st, _, rec5 = put(server, "c", "k", 5, {"If-None-Match": "*"})
    assert st == 201 and rec5["previous_write_id"] == tomb["write_id"]
    # a write_id of a never-written key
    st, _, doc = put(server, "c", "never", 1, {"If-Match": etag})
    assert st == 412 and error_code(doc) == "conflict"


@pytest.mark.parametrize("headers", [
    {"If-Match": "abc"},
    {"If-Match": "0" * 64},                                   # not quoted
    {"If-Match": '"' + "0" * 63 + '"'},                       # too short
    {"If-Match": '"' + "g" * 64 + '"'},                       # not hex
    {"If-Match": 'W/"' + "0" * 64 + '"'},                     # weak tag
    {"If-Match": '"' + "0" * 64 + '", "' + "1" * 64 + '"'},   # a list
    {"If-Match": ""},
    {"If-None-Match": '"' + "0" * 64 + '"'},                  # only * is supported
    {"If-Match": '"' + "0" * 64 + '"', "If-None-Match": "*"},  # both
])
def test_malformed_conditions_are_400(server, headers):
    put(server, "c", "k", 1)
    st, _, doc = put(server, "c", "k", 2, headers)
    assert st == 400 and error_code(doc) == "invalid", doc
    st, _, doc = delete(server, "c", "k", headers)
    assert st == 400 and error_code(doc) == "invalid", doc
    assert get(server, "c", "k")[2]["value"] == 1


# ---------------------------------------------------------------------------
# history
# ---------------------------------------------------------------------------


def history(server, ns, key, **params):
    st, _, data = server.request("GET", key_path(ns, key, "/history") + (quote_query(params) if params else ""))
    return st, json.loads(data)


def test_history_orders_limits_and_bounds(server):
    recs = [put(server, "h", "k", {"n": i})[2] for i in range(5)]
    recs.append(delete(server, "h", "k")[2])
    recs.append(put(server, "h", "k", {"n": 6})[2])
    ts = [ts_to_ns(r["timestamp"]) for r in recs]

    st, doc = history(server, "h", "k")
    assert st == 200 and doc == {"versions": recs}
    assert doc["versions"][5]["value"] is None and doc["versions"][5]["deleted"] is True
    st, doc = history(server, "h", "k", order="asc")
    assert doc["versions"] == recs
    st, doc = history(server, "h", "k", order="desc")
    assert doc["versions"] == recs[::-1]
    st, doc = history(server, "h", "k", limit=2)
    assert doc["versions"] == recs[:2]
    st, doc = history(server, "h", "k", limit=2, order="desc")
    assert doc["versions"] == recs[::-1][:2]
    st, doc = history(server, "h", "k", limit=0)
    assert doc["versions"] == recs
    # bounds are inclusive
    st, doc = history(server, "h", "k", **{"from": f"@{ts[1]}", "to": f"@{ts[3]}"})
    assert doc["versions"] == recs[1:4]
    st, doc = history(server, "h", "k", **{"from": f"@{ts[1] + 1}", "to": f"@{ts[3] - 1}"})
    assert doc["versions"] == recs[2:3]
    st, doc = history(server, "h", "k", **{"from": recs[4]["timestamp"], "limit": 2, "order": "desc"})
    assert doc["versions"] == [recs[6], recs[5]]
    st, doc = history(server, "h", "k", to=f"@{ts[0] - 1}")
    assert st == 200 and doc == {"versions": []}

    for bad in ({"order": "up"}, {"limit": "-1"}, {"limit": "x"}, {"limit": ""}, {"from": "soon"}, {"to": "1.5"}):
        st, doc = history(server, "h", "k", **bad)
        assert st == 400 and error_code(doc) == "invalid", (bad, doc)
    # from later than to: 400, as a history query says (it was 200 with nothing)
    st, doc = history(server, "h", "k", **{"from": f"@{ts[3]}", "to": f"@{ts[1]}"})
    assert st == 400 and doc["error"]["message"] == "from: is later than to", doc


# ---------------------------------------------------------------------------
# diff
# ---------------------------------------------------------------------------


def apply_patch(doc, patch):
    """A small RFC 6902 applier for add / remove / replace (what kd_json_diff emits)."""
    import copy

    doc = copy.deepcopy(doc)
    for op in patch:
        path = op["path"]
        if path == "":
            doc = copy.deepcopy(op["value"]) if op["op"] != "remove" else None
            continue
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        if isinstance(parent, list):
            if op["op"] == "add":
                parent.insert(len(parent) if last == "-" else int(last), op["value"])
            elif op["op"] == "remove":
                del parent[int(last)]
            else:
                parent[int(last)] = op["value"]
        else:
            if op["op"] == "remove":
                del parent[last]
            else:
                parent[last] = op["value"]
    return doc


def diff(server, ns, key, **params):
    st, _, data = server.request("GET", key_path(ns, key, "/diff") + (quote_query(params) if params else ""))
    return st, json.loads(data)


def test_diff_refs(server):
    values = [{"a": 1, "b": [1, 2]}, {"a": 2, "b": [1, 2, 3], "c": "x"}, {"b": [], "c": "y/~z"}]
    recs = [put(server, "d", "k", v)[2] for v in values]
    ws = [r["write_id"] for r in recs]
    ts = [r["timestamp"] for r in recs]

    def check(params, i_from, i_to):
        st, doc = diff(server, "d", "k", **params)
        assert st == 200, (params, doc)
        assert set(doc) == {"from", "to", "patch"}
        assert doc["to"] == ws[i_to]
        assert doc["from"] == (ws[i_from] if i_from >= 0 else None)
        before = values[i_from] if i_from >= 0 else None
        assert apply_patch(before, doc["patch"]) == values[i_to], (params, doc)

    check({}, 1, 2)                                   # default: previous -> latest
    check({"from": ws[0]}, 0, 2)
    check({"from": ws[0], "to": ws[1]}, 0, 1)
    check({"from": ws[2][:8], "to": ws[0][:12]}, 2, 0)  # prefixes, backwards
    check({"from": ws[0].upper()}, 0, 2)
    check({"to": "latest", "from": "0"}, 0, 2)
    check({"to": "~1"}, 0, 1)
    check({"from": "~2", "to": "~0"}, 0, 2)
    check({"to": "0"}, -1, 0)                         # before the first version: add ""
    check({"from": ts[1], "to": ts[2]}, 1, 2)          # times
    check({"from": f"@{ts_to_ns(ts[1]) + 1}", "to": "now"}, 1, 2)
    st, doc = diff(server, "d", "k", to="0")
    assert doc["patch"] == [{"op": "add", "path": "", "value": values[0]}]
    st, doc = diff(server, "d", "k", **{"from": "1", "to": "1"})
    assert doc["patch"] == []

    _, _, tomb = delete(server, "d", "k")
    st, doc = diff(server, "d", "k")
    assert st == 200 and doc["patch"] == [{"op": "remove", "path": ""}]
    assert doc["to"] == tomb["write_id"] and doc["from"] == ws[2]

    for params, status in [({"from": "~9"}, 404), ({"to": "7"}, 404), ({"from": "0" * 64}, 404),
                           ({"from": "deadbeefdeadbeef"}, 404), ({"to": f"@{ts_to_ns(ts[0]) - 1}"}, 404),
                           ({"from": "~x"}, 400), ({"from": "nonsense"}, 400), ({"to": "latest!"}, 400)]:
        st, doc = diff(server, "d", "k", **params)
        assert st == status, (params, doc)
        assert error_code(doc) == ("not_found" if status == 404 else "invalid")


# ---------------------------------------------------------------------------
# batches
# ---------------------------------------------------------------------------


def batch(server, body):
    st, _, data = server.request("POST", f"{API}/batch", body)
    return st, json.loads(data)


def test_batch_applies_everything(server):
    _, _, old = put(server, "b", "old", {"v": 0})
    st, doc = batch(server, {"writes": [
        {"namespace": "b", "key": "x", "value": {"v": 1}},
        {"namespace": "b", "key": "x", "value": {"v": 2}},            # same key twice: in order
        {"namespace": "b", "key": "old", "delete": True},
        {"namespace": "b2", "key": "n", "value": None},
        {"namespace": "b", "key": "y", "value": [1], "if_none_match": "*"},
        {"namespace": "b", "key": "gone", "value": 1, "delete": False, "if_match": None},
    ]})
    assert st == 200, doc
    vs = doc["versions"]
    assert [(v["namespace"], v["key"], v["value"], v["deleted"]) for v in vs] == [
        ("b", "x", {"v": 1}, False), ("b", "x", {"v": 2}, False), ("b", "old", None, True),
        ("b2", "n", None, False), ("b", "y", [1], False), ("b", "gone", 1, False)]
    assert vs[1]["previous_write_id"] == vs[0]["write_id"]
    assert vs[2]["previous_write_id"] == old["write_id"]
    for v in vs:
        check_record(v, v["namespace"], v["key"], deleted=v["deleted"])
        if not v["deleted"]:
            st, _, got = get(server, v["namespace"], v["key"])
            assert got["value"] == vs[[w["key"] for w in vs].index(v["key"]) + (1 if v["key"] == "x" else 0)]["value"]
    st, _, got = get(server, "b", "x")
    assert got == vs[1]
    # atomic: one timestamp order, all visible together
    ts = [ts_to_ns(v["timestamp"]) for v in vs]
    assert ts == sorted(ts) and len(set(ts)) == len(ts)

    st, doc = batch(server, {"writes": []})
    assert st == 200 and doc == {"versions": []}

    # if_match with the current write_id
    st, doc = batch(server, {"writes": [{"namespace": "b", "key": "x", "value": 3, "if_match": vs[1]["write_id"]}]})
    assert st == 200 and doc["versions"][0]["previous_write_id"] == vs[1]["write_id"]


def test_batch_is_atomic(server):
    _, _, a = put(server, "b", "a", 1)
    st0, before = server.json("GET", f"{API}/status")
    st, doc = batch(server, {"writes": [
        {"namespace": "b", "key": "new1", "value": 1},
        {"namespace": "b", "key": "a", "value": 2, "if_match": a["write_id"]},
        {"namespace": "b", "key": "a", "value": 3, "if_match": a["write_id"]},   # stale by then
        {"namespace": "b", "key": "new2", "value": 1},
    ]})
    assert st == 412 and error_code(doc) == "conflict"
    assert "2" in doc["error"]["message"], doc  # names the failing write
    for k in ("new1", "new2"):
        assert get(server, "b", k)[0] == 404
    assert get(server, "b", "a")[2] == a
    _, after = server.json("GET", f"{API}/status")
    assert after["versions"] == before["versions"]

    for writes, status, code in [
        ([{"namespace": "b", "key": "n", "value": 1}, {"namespace": "b", "key": "a", "value": 1, "if_none_match": "*"}],
         412, "conflict"),
        ([{"namespace": "b", "key": "n", "value": 1}, {"namespace": "b", "key": "never", "delete": True}],
         404, "not_found"),
        ([{"namespace": "b", "key": "n", "value": 1}, {"namespace": "_kd.x", "key": "k", "value": 1}],
         400, "reserved"),
        ([{"namespace": "b", "key": "n", "value": 1}, {"namespace": "b", "key": "", "value": 1}],
         400, "invalid"),
    ]:
        st, doc = batch(server, {"writes": writes})
        assert st == status and error_code(doc) == code, (writes, doc)
        assert "1" in doc["error"]["message"], doc
        assert get(server, "b", "n")[0] == 404


def test_large_batch_with_conditions(server):
    # Many conditional writes (the server's arrays grow while it reads them).
    first = batch(server, {"writes": [{"namespace": "lb", "key": f"k{i}", "value": i, "if_none_match": "*"}
                                      for i in range(70)]})[1]["versions"]
    st, doc = batch(server, {"writes": [{"namespace": "lb", "key": f"k{i}", "value": -i, "if_match": v["write_id"]}
                                        for i, v in enumerate(first)]})
    assert st == 200, doc
    assert [v["previous_write_id"] for v in doc["versions"]] == [v["write_id"] for v in first]
    st, doc = batch(server, {"writes": [{"namespace": "lb", "key": f"k{i}", "delete": True, "if_match": v["write_id"]}
                                        for i, v in enumerate(first)]})
    assert st == 412 and "0" in doc["error"]["message"]


@pytest.mark.parametrize("body,where", [
    ("{", "body"),
    ("[]", "body"),
    ('{"writes": {}}', "body"),
    ('{"writes": [], "extra": 1}', "body"),
    ("{}", "body"),
    ('{"writes": [1]}', "writes[0]"),
    ('{"writes": [{"namespace": "b", "key": "k", "value": 1}, {"key": "k", "value": 1}]}', "writes[1]"),
    ('{"writes": [{"namespace": "b", "key": "k"}]}', "writes[0]"),
    ('{"writes": [{"namespace": "b", "key": "k", "value": 1, "delete": true}]}', "writes[0]"),
    ('{"writes": [{"namespace": "b", "key": "k", "value": 1, "delete": 1}]}', "writes[0]"),
    ('{"writes": [{"namespace": "b", "key": 5, "value": 1}]}', "writes[0]"),
    ('{"writes": [{"namespace": "b", "key": "a\\u0000b", "value": 1}]}', "writes[0]"),
    ('{"writes": [{"namespace": "b", "key": "k", "value": 1, "valeu": 2}]}', "writes[0]"),
    ('{"writes": [{"namespace": "b", "key": "k", "value": 1, "if_match": "abc"}]}', "writes[0]"),
    ('{"writes": [{"namespace": "b", "key": "k", "value": 1, "if_none_match": "x"}]}', "writes[0]"),
    ('{"writes": [{"namespace": "b", "key": "k", "value": 1, "if_none_match": "*", "if_match": "' + "0" * 64 + '"}]}',
     "writes[0]"),
])
def test_batch_malformed(server, body, where):
    st, doc = batch(server, body)
    assert st == 400 and error_code(doc) == "invalid", doc
    assert doc["error"]["message"].startswith(where), doc
    assert get(server, "b", "k")[0] == 404


def test_batch_names_are_unescaped(server):
    st, doc = batch(server, {"writes": [{"namespace": "n/s", "key": "é\"\\\n🎉", "value": 1}]})
    assert st == 200, doc
    st, _, got = get(server, "n/s", "é\"\\\n🎉")
    assert st == 200 and got == doc["versions"][0]


# ---------------------------------------------------------------------------
# listing
# ---------------------------------------------------------------------------


def list_keys(server, ns, **params):
    st, _, data = server.request("GET", f"{API}/namespaces/{quote_seg(ns)}/keys" +
                                 (quote_query(params) if params else ""))
    return st, json.loads(data)


def test_listing_pagination(server):
    keys = [f"k{i:05d}" for i in range(2500)] + ["é", "z/1", "z 2"]
    for i in range(0, len(keys), 500):
        st, doc = batch(server, {"writes": [{"namespace": "p", "key": k, "value": i} for k in keys[i:i + 500]]})
        assert st == 200, doc
    batch(server, {"writes": [{"namespace": "p", "key": "k00007", "delete": True}]})
    live = sorted((k for k in keys if k != "k00007"), key=lambda s: s.encode("utf-8"))

    for limit in (None, 333, 1, 10000):
        seen, after, pages = [], None, 0
        while True:
            params = {}
            if limit:
                params["limit"] = limit
            if after is not None:
                params["after"] = after
            st, doc = list_keys(server, "p", **params)
            assert st == 200 and set(doc) == {"keys", "next"}
            pages += 1
            assert len(doc["keys"]) <= (limit or 1000)
            seen += doc["keys"]
            if doc["next"] is None:
                break
            assert doc["next"] == doc["keys"][-1]
            after = doc["next"]
            if limit == 1 and pages > 5:
                break
        if limit == 1:
            assert seen == live[:len(seen)]
            continue
        assert seen == live, limit
        assert len(set(seen)) == len(seen)
        assert pages == -(-len(live) // (limit or 1000))

    st, doc = list_keys(server, "p", prefix="k0001", limit=5)
    assert doc == {"keys": [f"k0001{i}" for i in range(5)], "next": "k00014"}
    st, doc = list_keys(server, "p", prefix="k0001", after="k00014")
    assert doc == {"keys": [f"k0001{i}" for i in range(5, 10)], "next": None}
    st, doc = list_keys(server, "p", prefix="z")
    assert doc == {"keys": ["z 2", "z/1"], "next": None}
    st, doc = list_keys(server, "p", after="z/1")
    assert doc == {"keys": ["é"], "next": None}
    st, doc = list_keys(server, "empty")
    assert st == 200 and doc == {"keys": [], "next": None}
    for bad in ("0", "10001", "-1", "ten", ""):
        st, doc = list_keys(server, "p", limit=bad)
        assert st == 400 and error_code(doc) == "invalid", bad


def test_namespaces(server):
    st, doc = server.json("GET", f"{API}/namespaces")
    assert st == 200 and doc == {"namespaces": []}
    put(server, "b", "k", 1)
    put(server, "a", "k", 1)
    put(server, "c", "k", 1)
    delete(server, "c", "k")
    st, doc = server.json("GET", f"{API}/namespaces")
    assert doc == {"namespaces": ["a", "b"]}


# ---------------------------------------------------------------------------
# status, and agreement with the command line
# ---------------------------------------------------------------------------


def test_status_shape(server, kd):
    st, doc = server.json("GET", f"{API}/status")
    assert st == 200
    assert doc["keys"] == 0 and doc["versions"] == 0 and doc["last_write"] is None
    put(server, "s", "a", 1)
    put(server, "s", "a", 2)
    put(server, "s", "b", 1)
    delete(server, "s", "b")
    st, doc = server.json("GET", f"{API}/status")
    assert list(doc) == ["path", "keys", "live_keys", "versions", "values", "namespaces", "disk_bytes", "segments",
                         "index_bytes", "cache_bytes", "cache_hits", "cache_misses", "replay_bytes", "index_mapped_bytes",
                         "memory_budget", "memory_used", "cache_capacity", "cache_hit_rate", "vector_index_bytes",
                         "log_window_bytes", "log_trims", "last_write",
                         "roots", "upkeep", "version"]
    assert [t["task"] for t in doc["upkeep"]] == ["checkpoint", "vector_index", "index_release", "retention",
                                                  "consolidation"]
    assert doc["replay_bytes"] == doc["disk_bytes"]  # no checkpoint yet: the whole log
    assert doc["path"] == os.path.realpath(server.db)
    assert (doc["keys"], doc["live_keys"], doc["versions"], doc["values"], doc["namespaces"]) == (2, 1, 4, 2, 1)
    assert doc["segments"] >= 1 and doc["disk_bytes"] > 0
    assert "field" in doc["roots"] and all(HEX64.match(h) for h in doc["roots"].values())
    ts_to_ns(doc["last_write"])
    assert server.stop() == 0
    cli = kd("status", "--json").json()
    for volatile in ("cache_bytes", "cache_hits", "cache_misses", "index_bytes", "index_mapped_bytes", "upkeep",
                     "memory_used", "cache_capacity", "cache_hit_rate", "log_trims"):
        cli.pop(volatile)
        doc.pop(volatile)
    doc.pop("version")
    assert doc == cli


def test_records_equal_the_cli(server, kd):
    recs = {}
    for key, value in [("a", {"x": [1, 2.5, "é"]}), ("b", None), ("c/d", "s"), ("名前", 1)]:
        recs[key] = put(server, "cmp", key, value)[2]
    put(server, "cmp", "gone", 1)
    delete(server, "cmp", "gone")
    hist = history(server, "cmp", "gone")[1]["versions"]
    recs = {k: get(server, "cmp", k)[2] for k in recs}
    assert server.stop() == 0
    for key, rec in recs.items():
        assert kd("get", f"cmp/{key}", "--json").json() == rec
        assert kd("get", f"cmp/{key}", "--json", "--at", rec["timestamp"]).json() == rec
    log = kd("log", "cmp/gone", "--json", "--reverse").json()
    assert log == hist
