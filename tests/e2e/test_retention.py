"""Retention policies and compaction, end to end (docs/RETENTION.md).

`kdelta retention set|show|clear` round trips and their errors (each bad
input changes nothing), `kdelta compact --dry-run` changing nothing, and
`kdelta compact`: the dropped versions stay in `log` with their ids but
without their value, reading one exits 3, the newest version of every key
and tombstones are kept, a value a kept version shares stays, `verify`
counts the pruned writes, and all of it survives a reopen. These run in
both CLI modes (a directory, and a server with --url).

Then the HTTP routes themselves (status codes, the 410 body, the
dry_run body), and a log altered to mark a write pruned that no compaction
removed: `kdelta verify` reports it as tampering, not retention.
"""
import json
import os
import struct
import time

import pytest

from helpers import one_error_line
from server import quote_seg

API = "/api/v1"


def fill(kd, key, values):
    """Write each value as a new version of key; the version records."""
    recs = []
    for v in values:
        r = kd("set", key, json.dumps(v), "--json")
        assert r.rc == 0, r.err
        recs.append(r.json())
    return recs


def policy(kd, ns):
    r = kd("retention", "show", ns, "--json")
    return r.json()["policy"] if r.rc == 0 else None


def log_of(kd, key):
    r = kd("log", key, "--json", "--reverse")
    assert r.rc == 0, r.err
    return r.json()


# ---------------------------------------------------------------------------
# retention set / show / clear
# ---------------------------------------------------------------------------

def test_set_show_clear_round_trip(kd):
    r = kd("retention", "show")
    assert r.rc == 0 and "no retention policies" in r.out
    assert kd("retention", "show", "--json").json() == {"policies": {}}

    r = kd("retention", "set", "metrics", "--keep-newer-than", "720h", "--thin", "7d:60m", "--thin", "2w:1d")
    assert r.rc == 0, r.err
    # stored canonical: durations in the largest exact unit, thin rules sorted by `after`
    want = {"keep_newer_than": "30d", "thin": [{"after": "1w", "every": "1h"}, {"after": "2w", "every": "1d"}]}
    assert r.out.splitlines()[0] == "metrics: " + json.dumps(want, separators=(",", ":"))
    assert "kdelta compact" in r.out
    r = kd("retention", "set", "users", "--keep-last", "2", "--json")
    assert r.rc == 0 and r.json() == {"namespace": "users", "policy": {"keep_last": 2}}
    assert policy(kd, "metrics") == want

    allp = kd("retention", "show", "--json").json()
    assert allp == {"policies": {"metrics": want, "users": {"keep_last": 2}}}
    human = kd("retention", "show")
    assert human.rc == 0
    assert human.out.splitlines() == ['metrics: ' + json.dumps(want, separators=(",", ":")),
                                      'users: {"keep_last":2}']

    # set replaces the whole policy
    assert kd("retention", "set", "users", "--keep-newer-than", "90s").rc == 0
    assert policy(kd, "users") == {"keep_newer_than": "90s"}

    r = kd("retention", "clear", "users")
    assert r.rc == 0 and "users: retention policy removed" in r.out
    assert policy(kd, "users") is None
    r = kd("retention", "clear", "metrics", "--json")
    assert r.rc == 0 and r.json() == {"namespace": "metrics", "cleared": True}
    assert kd("retention", "show", "--json").json() == {"policies": {}}
    # policies live in a reserved namespace, never listed
    assert "_kd" not in kd("list").out



def test_policies_of_a_workspace(kd):
    """-w NAME retention …: the workspace's own policies, locally and over
    --url (its routes were missing: "no such route", exit 3); -w NAME
    compact compacts the whole database, as locally."""
    assert kd("workspace", "create", "w").rc == 0
    r = kd("-w", "w", "retention", "set", "u", "--keep-last", "1", "--json")
    assert r.rc == 0 and r.json() == {"namespace": "u", "policy": {"keep_last": 1}}, r.err
    assert kd("-w", "w", "retention", "show", "--json").json() == {"policies": {"u": {"keep_last": 1}}}
    assert kd("retention", "show", "--json").json() == {"policies": {}}
    for v in ("1", "2"):  # values of their own: a value another key keeps stays
        assert kd("-w", "w", "set", "u/k", '{"w":%s}' % v).rc == 0
        assert kd("set", "u/k", '{"d":%s}' % v).rc == 0
    r = kd("-w", "w", "compact")
    assert r.rc == 0 and "pruned 1 version" in r.out, (r.out, r.err)
    assert [x.get("pruned", False) for x in json.loads(kd("-w", "w", "log", "u/k", "--json").out)] == [False, True]
    assert [x.get("pruned", False) for x in json.loads(kd("log", "u/k", "--json").out)] == [False, False]
    assert kd("-w", "w", "retention", "clear", "u").rc == 0
    assert kd("-w", "w", "retention", "show", "--json").json() == {"policies": {}}

@pytest.mark.parametrize("args,where", [
    (["--keep-newer-than", "5x"], "--keep-newer-than"),
    (["--keep-newer-than", "0d"], "--keep-newer-than"),
    (["--keep-newer-than", "-3d"], "--keep-newer-than"),
    (["--keep-newer-than", "1.5h"], "--keep-newer-than"),
    (["--keep-newer-than", "40000d"], "--keep-newer-than"),
    (["--thin", "7d"], "--thin"),
    (["--thin", ":1h"], "--thin"),
    (["--thin", "7d:"], "--thin"),
    (["--thin", "7d:1y"], "--thin"),
    (["--keep-last", "0"], "--keep-last"),
    (["--keep-last", "-1"], "--keep-last"),
    (["--keep-last", "many"], "--keep-last"),
    ([], "retention set"),
])
def test_set_refuses_bad_rules_before_touching_anything(kd, args, where):
    line = one_error_line(kd("retention", "set", "users", *args), 2)
    assert where in line
    kd.untouched()


def test_bad_input_changes_nothing(kd):
    assert kd("retention", "set", "users", "--keep-last", "3").rc == 0
    for args in (["--keep-newer-than", "5x"], ["--thin", "7d"], ["--keep-last", "0"], []):
        assert kd("retention", "set", "users", *args).rc == 2
    # two rules with the same `after` are refused by the library
    line = one_error_line(kd("retention", "set", "users", "--thin", "7d:1h", "--thin", "1w:1d"), 4)
    assert "same" in line and "after" in line
    line = one_error_line(kd("retention", "set", "_kd.retention", "--keep-last", "1"), 4)
    assert "reserved" in line
    assert policy(kd, "users") == {"keep_last": 3}
    assert kd("retention", "show", "--json").json() == {"policies": {"users": {"keep_last": 3}}}


def test_unknown_namespace_and_usage(kd):
    line = one_error_line(kd("retention", "clear", "nobody"), 3)
    assert "nobody has no retention policy" in line
    line = one_error_line(kd("retention", "show", "nobody"), 3)
    assert "no retention policy" in line and "whole history" in line
    assert "reserved" in one_error_line(kd("retention", "show", "_kd.compactions"), 4)
    # a namespace that is not UTF-8 is bad input, not one without a policy
    assert "not valid UTF-8" in one_error_line(kd("retention", "show", "sec\udcffpriv"), 4)
    assert "not valid UTF-8" in one_error_line(kd("retention", "clear", "sec\udcffpriv"), 4)
    for args in (["retention"], ["retention", "frob"], ["retention", "set"], ["retention", "clear"],
                 ["retention", "show", "users", "--keep-last", "2"], ["compact", "extra"]):
        r = kd(*args)
        assert r.rc == 2, (args, r)


# ---------------------------------------------------------------------------
# compact
# ---------------------------------------------------------------------------

def history_fixture(kd):
    """users/a: five versions; users/b: {"n":1} twice, a tombstone, {"n":9};
    other/c (no policy): three versions. users keeps the last 2."""
    a = fill(kd, "users/a", [{"n": i} for i in range(1, 6)])
    b = fill(kd, "users/b", [{"n": 1}, {"n": 1}])
    r = kd("delete", "users/b", "--json")
    assert r.rc == 0
    b.append(r.json())
    b += fill(kd, "users/b", [{"n": 9}])
    c = fill(kd, "other/c", [{"x": i} for i in range(3)])
    assert kd("retention", "set", "users", "--keep-last", "2").rc == 0
    return a, b, c


def test_dry_run_changes_nothing(kd):
    a, b, c = history_fixture(kd)
    before = {k: log_of(kd, k) for k in ("users/a", "users/b", "other/c")}
    status = kd("status", "--json").json()
    r = kd("compact", "--dry-run", "--json")
    assert r.rc == 0, r.err
    rep = r.json()
    # users/a: 3 dropped; users/b: its two {"n":1} versions ({"n":1} is also a's first value)
    assert rep == {"dry_run": True, "number": 0, "versions_pruned": 5, "values_freed": 3,
                   "bytes_freed": rep["bytes_freed"], "segments_rewritten": 1, "versions_held": 0}
    assert rep["bytes_freed"] > 0
    human = kd("compact", "--dry-run")
    assert human.rc == 0 and human.out.startswith("would prune 5 versions: 3 values, ")
    after = {k: log_of(kd, k) for k in before}
    assert after == before
    st = kd("status", "--json").json()
    for m in ("versions", "values", "segments", "disk_bytes"):
        assert st[m] == status[m], m
    v = kd("verify", "--json").json()
    assert v["ok"] and v["pruned"] == 0
    # and a dry run again says the same
    assert kd("compact", "--dry-run", "--json").json() == rep


def test_compact_prunes_and_keeps_ids(kd):
    a, b, c = history_fixture(kd)
    r = kd("compact", "--json")
    assert r.rc == 0, r.err
    rep = r.json()
    assert rep["dry_run"] is False and rep["number"] == 1
    assert rep["versions_pruned"] == 5 and rep["values_freed"] == 3 and rep["segments_rewritten"] >= 1

    la = log_of(kd, "users/a")
    assert [x["write_id"] for x in la] == [x["write_id"] for x in a]
    assert [x["version_id"] for x in la] == [x["version_id"] for x in a]
    assert [x["timestamp"] for x in la] == [x["timestamp"] for x in a]
    assert [x["previous_write_id"] for x in la] == [x["previous_write_id"] for x in a]
    assert [x.get("pruned", False) for x in la] == [True, True, True, False, False]
    for x in la[:3]:
        assert x["value"] is None and x["deleted"] is False
        assert list(x)[-2:] == ["pruned_by", "pruned"] and x["pruned_by"] == "retention"  # the last members
    assert [x["value"] for x in la[3:]] == [{"n": 4}, {"n": 5}]

    lb = log_of(kd, "users/b")
    assert [x.get("pruned", False) for x in lb] == [True, True, False, False]
    assert lb[2]["deleted"] is True  # the tombstone is kept
    assert lb[3]["value"] == {"n": 9}

    # the namespace without a policy keeps everything
    assert log_of(kd, "other/c") == c

    human = kd("log", "users/a")
    assert human.rc == 0 and human.out.count("(removed by retention)") == 3

    # reading a pruned version: exit 3 with a clear message; the newest is always there
    line = one_error_line(kd("get", "users/a", "--at", a[0]["timestamp"]), 3)
    assert "removed by a retention policy" in line
    one_error_line(kd("get", "users/a", "--at", a[2]["timestamp"], "--json"), 3)
    assert json.loads(kd("get", "users/a", "--at", a[3]["timestamp"]).out) == {"n": 4}
    assert json.loads(kd("get", "users/a").out) == {"n": 5}
    assert json.loads(kd("get", "users/b").out) == {"n": 9}

    # an as-of listing skips a key whose version then was pruned
    r = kd("export", "users", "--at", a[2]["timestamp"])
    assert r.rc == 0 and r.out == ""
    r = kd("export", "users", "--at", a[3]["timestamp"])
    assert r.rc == 0 and [json.loads(x)["key"] for x in r.out.splitlines()] == ["a"]

    v = kd("verify", "--json")
    assert v.rc == 0, v.err
    vj = v.json()
    assert vj["ok"] is True and vj["pruned"] == 5 and vj["problem"] is None
    hv = kd("verify")
    assert hv.rc == 0 and "5 versions pruned by compactions" in hv.out and hv.out.rstrip().endswith("ok")

    # a second compaction finds nothing more
    r2 = kd("compact", "--json").json()
    assert r2["versions_pruned"] == 0 and r2["number"] == 0
    assert "nothing to compact" in kd("compact").out

    # all of it survives reopening the database
    assert kd.reopen("log", "users/a", "--json", "--reverse").json() == la
    assert log_of(kd, "users/b") == lb
    one_error_line(kd("get", "users/a", "--at", a[1]["timestamp"]), 3)
    vj2 = kd("verify", "--json").json()
    assert vj2["ok"] is True and vj2["pruned"] == 5
    assert policy(kd, "users") == {"keep_last": 2}


def test_value_shared_with_a_kept_version_stays(kd):
    # users/a's first value {"s":1} is also the current value of users/z
    a = fill(kd, "users/a", [{"s": 1}, {"s": 2}, {"s": 3}])
    fill(kd, "users/z", [{"s": 1}])
    assert kd("retention", "set", "users", "--keep-last", "1").rc == 0
    rep = kd("compact", "--json").json()
    assert rep["versions_pruned"] == 1 and rep["values_freed"] == 1
    la = log_of(kd, "users/a")
    assert [x.get("pruned", False) for x in la] == [False, True, False]
    assert json.loads(kd("get", "users/a", "--at", a[0]["timestamp"]).out) == {"s": 1}
    one_error_line(kd("get", "users/a", "--at", a[1]["timestamp"]), 3)


def test_pruned_value_written_again_is_stored_again(kd):
    fill(kd, "users/a", [{"v": "old"}, {"v": "new"}])
    assert kd("retention", "set", "users", "--keep-last", "1").rc == 0
    assert kd("compact", "--json").json()["values_freed"] == 1
    rec = fill(kd, "users/a", [{"v": "old"}])[0]
    assert rec["value"] == {"v": "old"}
    assert json.loads(kd("get", "users/a").out) == {"v": "old"}
    assert "pruned" not in kd("get", "users/a", "--json").json()
    assert json.loads(kd.reopen("get", "users/a").out) == {"v": "old"}
    v = kd("verify", "--json").json()
    assert v["ok"] is True and v["pruned"] == 1


def test_keep_newer_than_keeps_recent_versions(kd):
    fill(kd, "users/a", [{"n": i} for i in range(4)])
    assert kd("retention", "set", "users", "--keep-newer-than", "1h").rc == 0
    rep = kd("compact", "--json").json()
    assert rep["versions_pruned"] == 0
    assert all(not x.get("pruned") for x in log_of(kd, "users/a"))
    # with keep_last as well, a version is kept when any rule keeps it
    assert kd("retention", "set", "users", "--keep-newer-than", "1h", "--keep-last", "1").rc == 0
    assert kd("compact", "--json").json()["versions_pruned"] == 0


def test_thinning_keeps_the_newest_version_of_each_window(kd):
    # every version older than 1s: only the newest in its week-long window
    # (windows counted from the epoch: all these lie in one of them)
    fill(kd, "m/k", [{"n": i} for i in range(5)])
    fill(kd, "m/j", [{"j": i} for i in range(2)])
    assert kd("retention", "set", "m", "--thin", "1s:1w").rc == 0
    time.sleep(1.2)
    rep = kd("compact", "--json").json()
    assert rep["versions_pruned"] == 5, rep  # four of m/k, one of m/j
    assert [x.get("pruned", False) for x in log_of(kd, "m/k")] == [True] * 4 + [False]
    assert [x.get("pruned", False) for x in log_of(kd, "m/j")] == [True, False]


def test_cleared_policy_prunes_nothing_more(kd):
    a = fill(kd, "users/a", [{"n": i} for i in range(3)])
    assert kd("retention", "set", "users", "--keep-last", "1").rc == 0
    assert kd("compact", "--json").json()["versions_pruned"] == 2
    assert kd("retention", "clear", "users").rc == 0
    fill(kd, "users/a", [{"n": 10}, {"n": 11}])
    assert kd("compact", "--json").json()["versions_pruned"] == 0
    la = log_of(kd, "users/a")
    # what was removed stays removed; the rest is kept in full
    assert [x.get("pruned", False) for x in la] == [True, True, False, False, False]
    assert la[0]["write_id"] == a[0]["write_id"]


# ---------------------------------------------------------------------------
# HTTP routes
# ---------------------------------------------------------------------------

def error_code(status, doc, want_status, want_code):
    assert status == want_status, (status, doc)
    assert set(doc) == {"error"} and set(doc["error"]) == {"code", "message"}, doc
    assert doc["error"]["message"]
    assert doc["error"]["code"] == want_code, doc
    return doc["error"]["message"]


def http_put_key(server, ns, key, value):
    st, rec = server.json("PUT", f"{API}/namespaces/{quote_seg(ns)}/keys/{quote_seg(key)}",
                          json.dumps(value).encode())
    assert st in (200, 201), rec
    return rec


def test_http_retention_routes(server):
    st, doc = server.json("GET", f"{API}/retention")
    assert st == 200 and doc == {"policies": {}}
    error_code(*server.json("GET", f"{API}/retention/users"), 404, "not_found")
    error_code(*server.json("DELETE", f"{API}/retention/users"), 404, "not_found")

    body = {"keep_last": 3, "thin": [{"after": "2w", "every": "24h"}, {"after": "7d", "every": "60m"}]}
    st, doc = server.json("PUT", f"{API}/retention/users", json.dumps(body).encode())
    want = {"keep_last": 3, "thin": [{"after": "1w", "every": "1h"}, {"after": "2w", "every": "1d"}]}
    assert st == 200 and doc == {"namespace": "users", "policy": want}
    st, doc = server.json("GET", f"{API}/retention/users")
    assert st == 200 and doc == {"namespace": "users", "policy": want}
    st, doc = server.json("GET", f"{API}/retention")
    assert st == 200 and doc == {"policies": {"users": want}}

    for bad in (b"", b"nope", b"[]", b"{}", b'{"keep_last":0}', b'{"keep_last":"3"}', b'{"keep_last":1.5}',
                b'{"keep_newer_than":"5x"}', b'{"keep_newer_than":30}', b'{"thin":[]}',
                b'{"thin":[{"after":"7d"}]}', b'{"thin":[{"after":"7d","every":"1h","x":1}]}',
                b'{"thin":[{"after":"7d","every":"1h"},{"after":"1w","every":"1d"}]}',
                b'{"keep_last":1,"keep_first":2}'):
        error_code(*server.json("PUT", f"{API}/retention/users", bad), 400, "invalid")
    error_code(*server.json("PUT", f"{API}/retention/_kd.x", b'{"keep_last":1}'), 400, "reserved")
    error_code(*server.json("GET", f"{API}/retention/_kd.retention"), 400, "reserved")
    # nothing changed
    assert server.json("GET", f"{API}/retention") == (200, {"policies": {"users": want}})

    st, doc = server.json("DELETE", f"{API}/retention/users")
    assert st == 200 and doc == {"namespace": "users", "cleared": True}
    assert server.json("GET", f"{API}/retention") == (200, {"policies": {}})

    error_code(*server.json("POST", f"{API}/retention"), 405, "method_not_allowed")
    error_code(*server.json("POST", f"{API}/retention/users"), 405, "method_not_allowed")
    error_code(*server.json("GET", f"{API}/compact"), 405, "method_not_allowed")


def test_http_compact_and_410(server):
    recs = [http_put_key(server, "users", "a", {"n": i}) for i in range(4)]
    st, _ = server.json("PUT", f"{API}/retention/users", b'{"keep_last":2}')
    assert st == 200

    # the body: nothing, {} or {"dry_run": true|false}; anything else is 400 and changes nothing
    for bad in (b'{"dry_run":1}', b'{"dry_run":"yes"}', b"[", b"[]", b'"x"', b'{"other":true}',
                b'{"dry_run":true,"x":1}', b"null"):
        error_code(*server.json("POST", f"{API}/compact", bad), 400, "invalid")
    st, doc = server.json("POST", f"{API}/compact", b'{"dry_run": true}')
    assert st == 200 and doc["dry_run"] is True and doc["versions_pruned"] == 2 and doc["number"] == 0
    st, hist = server.json("GET", f"{API}/namespaces/users/keys/a/history")
    assert st == 200 and not any(v.get("pruned") for v in hist["versions"])

    st, doc = server.json("POST", f"{API}/compact", b"{}")
    assert st == 200 and doc["dry_run"] is False and doc["versions_pruned"] == 2 and doc["number"] == 1
    st, hist = server.json("GET", f"{API}/namespaces/users/keys/a/history")
    assert st == 200
    vs = hist["versions"]
    assert [v.get("pruned", False) for v in vs] == [True, True, False, False]
    assert [v["write_id"] for v in vs] == [r["write_id"] for r in recs]
    assert vs[0]["value"] is None and list(vs[0])[-1] == "pruned" and vs[0]["pruned_by"] == "retention"
    assert "pruned" not in vs[3]

    msg = error_code(*server.json("GET", f"{API}/namespaces/users/keys/a?at={recs[0]['timestamp']}"), 410, "pruned")
    assert "retention" in msg
    error_code(*server.json("GET", f"{API}/namespaces/users/keys/a/diff?from=0&to=1"), 410, "pruned")
    st, doc = server.json("GET", f"{API}/namespaces/users/keys/a")
    assert st == 200 and doc["value"] == {"n": 3}
    st, doc = server.json("GET", f"{API}/namespaces/users/keys/a?at={recs[2]['timestamp']}")
    assert st == 200 and doc["value"] == {"n": 2}

    st, doc = server.json("POST", f"{API}/verify")
    assert st == 200 and doc["ok"] is True and doc["pruned"] == 2
    # an empty body is a real compaction: nothing left to do
    st, doc = server.json("POST", f"{API}/compact")
    assert st == 200 and doc["versions_pruned"] == 0 and doc["number"] == 0


def test_http_history_query_over_pruned_versions(server):
    """A history query is not 410 on a key retention touched: a pruned
    version has no value, like a tombstone (docs/QUERY.md "History queries")."""
    recs = [http_put_key(server, "t", "k000", {"v": i}) for i in range(3)]
    st, _ = server.json("DELETE", f"{API}/namespaces/t/keys/k000")
    assert st == 200
    recs.append(http_put_key(server, "t", "k000", {"v": 9}))
    st, _ = server.json("PUT", f"{API}/retention/t", b'{"keep_last":1}')
    assert st == 200
    st, doc = server.json("POST", f"{API}/compact", b"{}")
    assert st == 200 and doc["versions_pruned"] == 3
    path = f"{API}/namespaces/t/keys/k000/history/query"

    st, res = server.json("POST", path, b"{}")
    assert st == 200, res
    assert res["total"] == 5
    _, hist = server.json("GET", f"{API}/namespaces/t/keys/k000/history")
    assert res["rows"] == hist["versions"]  # the same records as the key's history
    assert [r["value"] for r in res["rows"]] == [None, None, None, None, {"v": 9}]
    assert [r.get("pruned", False) for r in res["rows"]] == [True, True, True, False, False]
    assert [r["deleted"] for r in res["rows"]] == [False, False, False, True, False]
    assert [r["write_id"] for r in res["rows"] if not r["deleted"]] == [x["write_id"] for x in recs]

    for flt in ("true", "not v exists", "v >= 0"):
        st, res = server.json("POST", path, json.dumps({"filter": flt}).encode())
        assert st == 200, (flt, res)
        want = [{"v": 9}] if flt != "not v exists" else []
        assert [r["value"] for r in res["rows"]] == want and res["total"] == len(want), flt
    st, res = server.json("POST", path, b'{"aggregate":["count","sum:v","max:v"]}')
    assert st == 200 and res == {"total": 5, "aggregates": {"count": 5, "max:v": 9, "sum:v": 9}}
    st, res = server.json("POST", path, b'{"filter":"true","aggregate":["count"]}')
    assert st == 200 and res == {"total": 1, "aggregates": {"count": 1}}
    st, res = server.json("POST", path, b'{"latest":1}')
    assert st == 200 and [r["value"] for r in res["rows"]] == [{"v": 9}]
    # reading a pruned value itself is still 410
    error_code(*server.json("GET", f"{API}/namespaces/t/keys/k000?at={recs[0]['timestamp']}"), 410, "pruned")


# ---------------------------------------------------------------------------
# tampering: a write marked pruned that no compaction removed
# ---------------------------------------------------------------------------

def crc32c(data, crc=0):
    """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78)."""
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_crc32c_known_value():
    assert crc32c(b"123456789") == 0xE3069283


SEG_HEADER, REC_HEADER, TXN_HEADER, VALUE_HEADER, WRITE_HEADER = 32, 16, 40, 36, 96
PRUNED = 2


def forge_prune(path, ns, number):
    """Mark the first write of namespace ns in the segment file `path`
    pruned by compaction `number`, fixing both CRC-32C checksums of its
    record, as someone hiding a change would. True when done."""
    data = bytearray(open(path, "rb").read())
    off = SEG_HEADER
    while off + REC_HEADER <= len(data):
        length = struct.unpack_from("<I", data, off)[0]
        payload = off + REC_HEADER
        n_values, n_writes = struct.unpack_from("<II", data, payload)
        p = payload + TXN_HEADER
        for _ in range(n_values):
            p += VALUE_HEADER + struct.unpack_from("<I", data, p + 32)[0]
        for _ in range(n_writes):
            flags, n_parents, ws_len, ns_len = data[p + 8], data[p + 9], data[p + 10], data[p + 11]
            key_len = struct.unpack_from("<H", data, p + 12)[0]
            name_at = p + WRITE_HEADER + 32 * n_parents + ws_len
            wns = bytes(data[name_at:name_at + ns_len]).decode()
            if wns == ns and flags == 0:
                data[p + 8] = flags | PRUNED
                struct.pack_into("<H", data, p + 14, number)
                struct.pack_into("<I", data, off + 8, crc32c(data[payload:payload + length]))
                struct.pack_into("<I", data, off + 12, crc32c(data[off:off + 12]))
                with open(path, "r+b") as f:
                    f.write(data)
                return True
            p = name_at + ns_len + key_len
        off = payload + length
    return False


@pytest.mark.local_only("alters the log files in the database directory")
def test_verify_tells_tampering_from_pruning(kd, db):
    fill(kd, "n/k", [{"n": i} for i in range(5)])
    fill(kd, "other/k", [{"o": i} for i in range(3)])
    assert kd("retention", "set", "n", "--keep-last", "1").rc == 0
    assert kd("compact", "--json").json()["number"] == 1
    v = kd("verify", "--json").json()
    assert v["ok"] is True and v["pruned"] == 4
    seg1 = os.path.join(db, "log-00000001.kdl")
    original = open(seg1, "rb").read()

    # a write of the namespace without a policy, marked pruned "by compaction 1"
    assert forge_prune(seg1, "other", 1)
    r = kd("verify")
    line = one_error_line(r, 7)
    assert "compaction 1 recorded 4 pruned writes, the log marks 5" in line and "altered" in line
    assert r.out.rstrip().endswith("CORRUPT")
    j = kd("verify", "--json")
    doc = json.loads(j.out)
    assert j.rc == 7 and doc["ok"] is False and "not retention" in doc["problem"] and doc["pruned"] == 5

    # and "by" a compaction that never happened
    open(seg1, "wb").write(original)
    assert kd("verify").rc == 0
    assert forge_prune(seg1, "other", 7)
    line = one_error_line(kd("verify"), 7)
    assert "compaction 7" in line and "no compaction record" in line and "altered" in line


@pytest.mark.local_only("backup and restore work on the database directory")
def test_backup_of_a_compacted_database_restores_it(kd, kd_raw, tmp_path):
    a = fill(kd, "users/a", [{"n": i} for i in range(4)])
    assert kd("retention", "set", "users", "--keep-last", "1").rc == 0
    assert kd("compact", "--json").json()["versions_pruned"] == 3
    bk, copy = str(tmp_path / "full.kdb"), str(tmp_path / "copy")
    assert kd("backup", bk).rc == 0
    r = kd_raw("restore", bk, "--db", copy)
    assert r.rc == 0, r.err
    assert kd_raw("--db", copy, "log", "users/a", "--json").out == kd("log", "users/a", "--json").out
    v = kd_raw("--db", copy, "verify", "--json")
    assert v.rc == 0 and v.json()["pruned"] == 3
    one_error_line(kd_raw("--db", copy, "get", "users/a", "--at", a[0]["timestamp"]), 3)
    st = kd_raw("--db", copy, "status", "--json").json()
    assert st["roots"] == kd("status", "--json").json()["roots"]


def record_of(path, ns):
    """Offset and length of the first record whose first write is in namespace ns."""
    data = open(path, "rb").read()
    off = SEG_HEADER
    while off + REC_HEADER <= len(data):
        length = struct.unpack_from("<I", data, off)[0]
        payload = off + REC_HEADER
        n_values = struct.unpack_from("<I", data, payload)[0]
        p = payload + TXN_HEADER
        for _ in range(n_values):
            p += VALUE_HEADER + struct.unpack_from("<I", data, p + 32)[0]
        n_parents, ws_len, ns_len = data[p + 9], data[p + 10], data[p + 11]
        name_at = p + WRITE_HEADER + 32 * n_parents + ws_len
        if bytes(data[name_at:name_at + ns_len]).decode() == ns:
            return off, length
        off = payload + length
    return None


@pytest.mark.local_only("damages the log files in the database directory")
def test_repair_keeps_pruned_versions(kd, db):
    a = fill(kd, "users/a", [{"n": i} for i in range(4)])
    fill(kd, "other/x", [1])
    assert kd("retention", "set", "users", "--keep-last", "1").rc == 0
    assert kd("compact", "--json").json()["versions_pruned"] == 3
    fill(kd, "other/y", [2])
    seg1 = os.path.join(db, "log-00000001.kdl")
    off, length = record_of(seg1, "other")
    with open(seg1, "r+b") as f:  # a byte of other/x's record: its payload checksum fails
        f.seek(off + REC_HEADER + length - 1)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0xFF]))
    assert kd("verify").rc == 7
    r = kd("repair")
    assert r.rc == 0, r.err
    assert f"offset {off}: record lost" in r.out and "version lost" not in r.out
    la = log_of(kd, "users/a")
    assert [x["write_id"] for x in la] == [x["write_id"] for x in a]
    assert [x.get("pruned", False) for x in la] == [True, True, True, False]
    assert json.loads(kd("get", "users/a").out) == {"n": 3}
    v = kd("verify", "--json")
    assert v.rc == 0 and v.json()["pruned"] == 3


# --------------------------------------------------------------------------
# kdelta serve --retention-every

@pytest.mark.local_only("starts servers of its own")
def test_serve_retention_every(start_server, kd_raw, tmp_path):
    for bad in ("7x", "0", "50d", ""):
        r = kd_raw("--db", str(tmp_path / "bad"), "serve", "--port", "0", "--retention-every", bad)
        assert r.rc == 2 and "--retention-every" in r.err, (bad, r.rc, r.err)
    cfg = tmp_path / "kd.conf"
    cfg.write_text("retention_every = 13x\n")
    r = kd_raw("--db", str(tmp_path / "bad"), "serve", "--port", "0", "--config", str(cfg))
    assert r.rc == 2 and "retention_every" in r.err, r.err
    # The server applies a policy on its own: once the newest segment holds
    # 4 MiB, the next upkeep run seals it and compacts (upkeep looks every 5 s).
    s = start_server(args=("--retention-every", "1s"))
    assert s.json("PUT", "/api/v1/retention/big", {"keep_last": 1})[0] == 200
    pad = "x" * 200000
    for i in range(30):
        assert s.json("PUT", "/api/v1/namespaces/big/keys/k", {"i": i, "pad": pad})[0] in (200, 201)
    task = None
    for _ in range(100):  # up to 20 s: waiting for the upkeep thread, not timing it
        st, doc = s.json("GET", "/api/v1/status")
        assert st == 200
        task = next(t for t in doc["upkeep"] if t["task"] == "retention")
        if task["runs"]:
            break
        time.sleep(0.2)
    assert task["runs"] >= 1 and task["last_status"] == "ok", task
    assert "compaction 1: pruned 29 versions" in task["message"], task
    st, hist = s.json("GET", "/api/v1/namespaces/big/keys/k/history")
    assert st == 200 and [v.get("pruned", False) for v in hist["versions"]] == [True] * 29 + [False]
    assert s.json("POST", "/api/v1/verify")[1]["pruned"] == 29
    assert s.stop() == 0
    # off: no run, however long
    s = start_server(args=("--retention-every", "off"))
    st, doc = s.json("GET", "/api/v1/status")
    assert next(t for t in doc["upkeep"] if t["task"] == "retention")["runs"] == 0
    assert s.stop() == 0
