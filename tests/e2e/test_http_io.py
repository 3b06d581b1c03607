"""HTTP routes for whole-database work (server/routes_io.c): verify, scans of
a namespace, the change log, and imports of versions with their original
ids — what `kdelta verify`, `export` and `import` use with --url.

Pages are checked for exact cursors (every record once, in order, also while
other clients write), bounded size, and agreement with the command line on
the same database; imports for atomicity and for refusing what does not
continue the history. Each test runs its own server on a fresh database.
"""
import json
import os
import subprocess
import threading

import pytest

from helpers import HEX64, TIMESTAMP, check_record, run_kdelta, ts_to_ns
from server import Server, quote_query, quote_seg

API = "/api/v1"


def error_code(doc):
    assert set(doc) == {"error"}, doc
    assert set(doc["error"]) == {"code", "message"} and doc["error"]["message"], doc
    return doc["error"]["code"]


def put(server, ns, key, value):
    body = json.dumps(value).encode("utf-8")  # any JSON value, strings and null too
    st, rec = server.json("PUT", f"{API}/namespaces/{quote_seg(ns)}/keys/{quote_seg(key)}", body)
    assert st in (200, 201), rec
    return rec


def delete(server, ns, key):
    st, rec = server.json("DELETE", f"{API}/namespaces/{quote_seg(ns)}/keys/{quote_seg(key)}")
    assert st == 200, rec
    return rec


def scan_path(ns, **params):
    return f"{API}/namespaces/{quote_seg(ns)}/scan" + (quote_query(params) if params else "")


def changes_path(**params):
    return f"{API}/changes" + (quote_query(params) if params else "")


def all_pages(server, path_of, cursor_param, member, first=None, **params):
    """Follow `next` to the end; returns (records, pages)."""
    recs, pages, cursor = [], [], first
    while True:
        p = dict(params)
        if cursor is not None:
            p[cursor_param] = cursor
        st, doc = server.json("GET", path_of(**p))
        assert st == 200, doc
        assert set(doc) == {member, "next"}, doc
        pages.append(doc[member])
        recs += doc[member]
        cursor = doc["next"]
        if cursor is None:
            return recs, pages


# ---------------------------------------------------------------------------
# verify
# ---------------------------------------------------------------------------


def seg(db):
    return os.path.join(db, "log-00000001.kdl")


def test_verify_matches_the_command_line(db, env, start_server, kd_raw):
    for key, value in (("n/a", '"one"'), ("n/b", '{"x": [1, 2]}'), ("n/a", "null")):
        assert kd_raw("--db", db, "set", key, value).rc == 0
    assert kd_raw("--db", db, "delete", "n/b").rc == 0
    local = kd_raw("--db", db, "verify", "--json")
    assert local.rc == 0, local.err
    srv = start_server()
    st, doc = srv.json("POST", f"{API}/verify")
    assert st == 200
    assert doc == json.loads(local.out)
    assert doc["ok"] is True and doc["problem"] is None and doc["versions"] == 4 and doc["segments"] == 1
    remote = kd_raw("--url", srv.url, "verify", "--json")
    assert remote.rc == 0 and remote.out == local.out
    # Only POST.
    st, _, _ = srv.request("GET", f"{API}/verify")
    assert st == 405


def test_verify_reports_corruption(db, start_server, kd_raw):
    """A byte of a stored value flipped on disk under the running server
    (a database damaged like that does not open any more)."""
    offsets = []
    for key, value in (("n/a", '"one"'), ("n/b", '"bee"'), ("n/a", '"two"')):
        offsets.append(os.path.getsize(seg(db)) if os.path.exists(seg(db)) else 32)
        assert kd_raw("--db", db, "set", key, value).rc == 0
    srv = start_server()
    st, doc = srv.json("POST", f"{API}/verify")
    assert st == 200 and doc["ok"] is True
    # A byte inside the stored value of the second record (as test_repair.py).
    with open(seg(db), "r+b") as f:
        f.seek(offsets[1] + 16 + 40 + 36 + 1)
        b = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([b[0] ^ 0x20]))
    st, doc = srv.json("POST", f"{API}/verify")
    assert st == 200
    assert set(doc) == {"ok", "segments", "records", "versions", "values", "bytes", "pruned", "problem"}
    assert doc["ok"] is False and f"offset {offsets[1]}" in doc["problem"], doc
    remote = kd_raw("--url", srv.url, "verify", "--json")
    assert remote.rc == 7 and json.loads(remote.out) == doc
    assert remote.err.startswith("kdelta: ") and "corrupt: " in remote.err and f"offset {offsets[1]}" in remote.err
    r = kd_raw("--url", srv.url, "verify")
    assert r.rc == 7 and r.out.splitlines()[-1] == "CORRUPT"


# ---------------------------------------------------------------------------
# scan
# ---------------------------------------------------------------------------


def test_scan_pages_every_key_once_in_order(server):
    keys = ["k%03d" % i for i in range(40)] + ["a/b?c d", "\u00e9t\u00e9", "key\nnewline"]
    for i, k in enumerate(keys):
        put(server, "s", k, {"i": i})
    delete(server, "s", "k005")
    put(server, "other", "x", 1)
    live = sorted((k for k in keys if k != "k005"), key=lambda k: k.encode("utf-8"))
    recs, pages = all_pages(server, lambda **p: scan_path("s", **p), "after", "versions", limit=7)
    assert [r["key"] for r in recs] == live
    assert all(len(p) == 7 for p in pages[:-1]) and 1 <= len(pages[-1]) <= 7
    for r in recs:
        check_record(r, "s", r["key"])
        st, got = server.json("GET", f"{API}/namespaces/s/keys/{quote_seg(r['key'])}")
        assert got == r
    # One page of everything; a prefix; a start after a key.
    st, doc = server.json("GET", scan_path("s"))
    assert st == 200 and doc["versions"] == recs and doc["next"] is None
    st, doc = server.json("GET", scan_path("s", prefix="k01"))
    assert [r["key"] for r in doc["versions"]] == ["k%03d" % i for i in range(10, 20)]
    st, doc = server.json("GET", scan_path("s", prefix="k01", after="k015", limit=2))
    assert [r["key"] for r in doc["versions"]] == ["k016", "k017"] and doc["next"] == "k017"
    # A namespace that does not exist is empty.
    st, doc = server.json("GET", scan_path("nothing"))
    assert st == 200 and doc == {"versions": [], "next": None}


def test_scan_at_a_time(server):
    a1 = put(server, "t", "a", 1)
    put(server, "t", "b", 2)
    t = a1["timestamp"]
    put(server, "t", "a", 10)
    delete(server, "t", "b")
    put(server, "t", "c", 3)
    st, doc = server.json("GET", scan_path("t", at=t))
    assert st == 200 and doc["versions"] == [a1]
    st, doc = server.json("GET", scan_path("t", at="@%d" % (ts_to_ns(t) - 1)))
    assert doc["versions"] == []
    st, mid = server.json("GET", f"{API}/namespaces/t/keys/b/history")
    t2 = mid["versions"][0]["timestamp"]
    st, doc = server.json("GET", scan_path("t", at=t2))  # b is deleted now, but not then
    assert [(r["key"], r["value"]) for r in doc["versions"]] == [("a", 1), ("b", 2)]
    st, doc = server.json("GET", scan_path("t", at="@1"))
    assert doc == {"versions": [], "next": None}


def test_scan_pages_are_bounded_in_bytes(server):
    big = "x" * (1 << 20)
    for i in range(10):
        put(server, "big", "k%d" % i, {"pad": big, "i": i})
    huge = {"y": "y" * (5 << 20)}
    put(server, "big", "z", huge)  # one record larger than a page
    recs, pages = all_pages(server, lambda **p: scan_path("big", **p), "after", "versions")
    assert [r["key"] for r in recs] == ["k%d" % i for i in range(10)] + ["z"]
    assert len(pages) >= 3
    for p in pages:
        assert len(p) >= 1
        assert len(json.dumps(p)) < (4 << 20) + (6 << 20)
    assert all(len(p) <= 5 for p in pages)  # stopped by size, not by the limit of 1000
    assert recs[-1]["value"] == huge


def test_scan_exact_under_concurrent_writes(server):
    base = ["b%04d" % i for i in range(0, 600, 2)]
    for k in base:
        put(server, "c", k, 0)
    stop = threading.Event()
    errors = []

    def writer():
        n = 0
        try:
            while not stop.is_set():
                put(server, "c", "b%04d" % (2 * (n % 300) + 1), n)  # new keys between the old ones
                put(server, "c", base[(n * 7) % len(base)], n)        # updates of old ones
                n += 1
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        recs, pages = all_pages(server, lambda **p: scan_path("c", **p), "after", "versions", limit=13)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    keys = [r["key"] for r in recs]
    assert keys == sorted(set(keys)), "a key came twice or out of order"
    assert set(base) <= set(keys), "a key that existed the whole time was skipped"
    assert len(pages) > 20


def test_scan_errors(server):
    for params, code, where in (({"limit": "0"}, "invalid", "limit"), ({"limit": "10001"}, "invalid", "limit"),
                                ({"limit": "x"}, "invalid", "limit"), ({"at": "yesterday-ish"}, "invalid", "at")):
        st, doc = server.json("GET", scan_path("s", **params))
        assert st == 400 and error_code(doc) == code and doc["error"]["message"].startswith(where), doc
    st, doc = server.json("GET", scan_path("_kd.views"))
    assert st == 400 and error_code(doc) == "reserved"
    st, _, _ = server.request("POST", scan_path("s"), {})
    assert st == 405


# ---------------------------------------------------------------------------
# changes
# ---------------------------------------------------------------------------


def history_lines(db, env):
    """`kdelta export --history` of a database no server holds."""
    r = run_kdelta(["--db", db, "export", "--history"], env=env)
    assert r.rc == 0, r.err
    return [json.loads(l) for l in r.out.split("\n")[:-1]]


def test_changes_are_the_export_history(db, env, start_server):
    srv = start_server()
    for i in range(30):
        ns = "a" if i % 3 else "b"
        put(srv, ns, "k%d" % (i % 7), {"i": i})
        if i % 5 == 4:
            delete(srv, ns, "k%d" % (i % 7))
    recs, pages = all_pages(srv, changes_path, "since", "changes", limit=4)
    assert all(len(p) == 4 for p in pages[:-1])
    ts = [ts_to_ns(r["timestamp"]) for r in recs]
    assert ts == sorted(set(ts))
    for r in recs:
        assert list(r) == ["namespace", "key", "value", "version_id", "write_id", "previous_write_id",
                           "timestamp", "deleted", "node_id"]
        assert HEX64.match(r["write_id"]) and TIMESTAMP.match(r["timestamp"]) and len(r["node_id"]) == 32
        assert (r["value"] is None) == r["deleted"]
    # The cursor is the last timestamp as a TIME.
    st, doc = srv.json("GET", changes_path(limit=4))
    assert doc["next"] == "@%d" % ts[3]
    # One namespace; since a time.
    only_b, _ = all_pages(srv, changes_path, "since", "changes", ns="b", limit=3)
    assert only_b == [r for r in recs if r["namespace"] == "b"]
    st, doc = srv.json("GET", changes_path(since=recs[9]["timestamp"]))
    assert doc["changes"] == recs[10:] and doc["next"] is None
    # The same as the command line on the directory.
    assert srv.stop() == 0
    assert history_lines(db, env) == recs


def test_changes_exact_under_concurrent_writes(server):
    for i in range(200):
        put(server, "w", "k%d" % (i % 50), i)
    stop = threading.Event()
    acked, errors = [], []

    def writer(w):
        n = 0
        try:
            while not stop.is_set():
                acked.append(put(server, "w", "x%d-%d" % (w, n % 20), n)["write_id"])
                n += 1
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    for t in threads:
        t.start()
    try:
        recs, pages = all_pages(server, changes_path, "since", "changes", limit=9)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors
    assert len(pages) > 22
    # Resume from the last timestamp seen: the rest of the log, nothing twice.
    rest, _ = all_pages(server, changes_path, "since", "changes", first=recs[-1]["timestamp"], limit=9)
    whole = recs + rest
    ts = [ts_to_ns(r["timestamp"]) for r in whole]
    assert ts == sorted(set(ts)), "a write came twice or out of order"
    full, _ = all_pages(server, changes_path, "since", "changes", limit=10000)
    assert whole == full, "paging skipped a write"
    assert set(acked) <= {r["write_id"] for r in whole}


def test_changes_pages_are_bounded_in_bytes(server):
    big = "x" * (1 << 20)
    for i in range(9):
        put(server, "big", "k", {"pad": big, "i": i})
    recs, pages = all_pages(server, changes_path, "since", "changes")
    assert [r["value"]["i"] for r in recs] == list(range(9))
    assert len(pages) >= 2 and all(1 <= len(p) <= 5 for p in pages)


def test_changes_errors(server):
    for params, where in (({"limit": "0"}, "limit"), ({"since": "soon"}, "since"), ({"ns": ""}, "ns")):
        st, doc = server.json("GET", changes_path(**params))
        assert st == 400 and error_code(doc) == "invalid" and doc["error"]["message"].startswith(where), doc
    st, doc = server.json("GET", changes_path(ns="_kdx"))
    assert st == 400 and error_code(doc) == "reserved"
    # but a namespace's vectors, which the log of every namespace holds too
    st, _, _ = server.request("PUT", f"{API}/namespaces/vv/keys/a/vector", {"model": "m", "vector": [1, 2]})
    assert st == 201
    st, doc = server.json("GET", changes_path(ns="_kd.vec.vv"))
    assert st == 200 and [(c["namespace"], c["key"]) for c in doc["changes"]] == [("_kd.vec.vv", "a")], doc
    st, _, _ = server.request("DELETE", changes_path())
    assert st == 405


# ---------------------------------------------------------------------------
# import
# ---------------------------------------------------------------------------


@pytest.fixture
def two(tmp_path, env, start_server):
    """A source server with some history and an empty target server."""
    src = start_server(db_dir=str(tmp_path / "src"))
    dst = start_server(db_dir=str(tmp_path / "dst"))
    put(src, "u", "alice", {"age": 31})
    put(src, "u", "bob", [1, "two", None])
    put(src, "u", "alice", {"age": 32})
    delete(src, "u", "bob")
    put(src, "v", "\u00e9/?#", None)  # a live null
    put(src, "u", "bob", "back")
    return src, dst


def imp(server, versions):
    return server.json("POST", f"{API}/import", {"versions": versions})


def test_import_round_trip(two):
    src, dst = two
    log, _ = all_pages(src, changes_path, "since", "changes")
    st, doc = imp(dst, log[:2])
    assert st == 200 and doc == {"imported": 2}
    st, doc = imp(dst, log[2:])
    assert st == 200 and doc == {"imported": len(log) - 2}
    log2, _ = all_pages(dst, changes_path, "since", "changes")
    assert log2 == log
    s1 = src.json("GET", f"{API}/status")[1]
    s2 = dst.json("GET", f"{API}/status")[1]
    assert s2["roots"] == s1["roots"]
    for f in ("keys", "live_keys", "versions", "values", "last_write"):
        assert s2[f] == s1[f], f
    assert dst.json("POST", f"{API}/verify")[1]["ok"] is True
    # The same versions again do not continue the history.
    st, doc = imp(dst, log[:1])
    assert st == 400 and error_code(doc) == "invalid"
    assert doc["error"]["message"].startswith("import 0 (u/alice): its time "), doc


def test_import_refuses_forgeries_whole(two):
    src, dst = two
    log, _ = all_pages(src, changes_path, "since", "changes")
    forged = [dict(r) for r in log]
    forged[2]["value"] = {"age": 99}
    st, doc = imp(dst, forged)
    assert st == 400 and error_code(doc) == "invalid"
    assert doc["error"]["message"].startswith("import 2 (u/alice): write_id ") and "does not match" in doc["error"]["message"]
    assert all_pages(dst, changes_path, "since", "changes")[0] == []  # atomic: nothing of it
    swapped = [log[1], log[0]] + log[2:]
    st, doc = imp(dst, swapped)
    assert st == 400 and "import 1 (u/alice): its time" in doc["error"]["message"], doc
    orphan = [dict(log[2])]  # alice's second version without her first
    st, doc = imp(dst, orphan)
    assert st == 412 and error_code(doc) == "conflict" and "previous_write_id" in doc["error"]["message"], doc
    assert all_pages(dst, changes_path, "since", "changes")[0] == []


@pytest.mark.parametrize("body,where", [
    (b"[1", "body: "),
    ([], "body: expected an object"),
    ({"versions": [], "x": 1}, "body: unknown member"),
    ({"versions": {}}, "body: \"versions\" must be an array"),
    ({"versions": [1]}, "versions[0]: expected a version record"),
    ({"versions": [{"namespace": "a", "key": "b", "value": 1}]}, "versions[0]: \"namespace\", \"key\" and \"timestamp\""),
    ({"versions": [{"namespace": "a", "key": "b", "value": 1, "timestamp": "later"}]}, "versions[0]: \"timestamp\": "),
    ({"versions": [{"namespace": 1, "key": "b", "value": 1, "timestamp": "@5"}]}, "versions[0]: \"namespace\" must"),
    ({"versions": [{"namespace": "a", "key": "b", "timestamp": "@5"}]}, "versions[0]: \"value\" is missing"),
    ({"versions": [{"namespace": "a", "key": "b", "value": 1, "deleted": True, "timestamp": "@5"}]},
     "versions[0]: a tombstone"),
    ({"versions": [{"namespace": "a", "key": "b", "value": 1, "deleted": "no", "timestamp": "@5"}]},
     "versions[0]: \"deleted\" must"),
    ({"versions": [{"namespace": "a", "key": "b", "value": 1, "timestamp": "@5", "colour": 1}]},
     "versions[0]: unknown member"),
    ({"versions": [{"namespace": "a", "key": "b", "value": 1, "timestamp": "@5", "node_id": 7}]},
     "versions[0]: \"node_id\" must"),
    ({"versions": []}, "nothing to import"),
    ({"versions": [{"namespace": "a", "key": "b", "value": 1, "timestamp": "@5"}]}, "import 0 (a/b): node_id"),
    ({"versions": [{"namespace": "_kdx", "key": "b", "value": 1, "timestamp": "@5"}]}, "namespace '_kdx' is reserved"),
])
def test_import_bad_bodies(server, body, where):
    st, doc = server.json("POST", f"{API}/import", body)
    assert st == 400, doc
    assert error_code(doc) in ("invalid", "reserved") and doc["error"]["message"].startswith(where), doc
    assert server.json("GET", f"{API}/status")[1]["versions"] == 0


def test_import_value_over_the_size_limit_is_413_a_long_name_400(server):
    """As for PUT and batches: a value over the database's limit is 413
    too_big, a name over its limit 400 too_big; nothing is imported."""
    rec = {"namespace": "n", "key": "k", "timestamp": "@5", "node_id": "0" * 32, "write_id": "0" * 64}
    body = json.dumps({"versions": [dict(rec, value=0)]}).replace('"value": 0', '"value": "' + "x" * (16 << 20) + '"')
    st, _, data = server.request("POST", f"{API}/import", body)
    doc = json.loads(data)
    assert st == 413 and error_code(doc) == "too_big", doc
    assert "value is 16777218 bytes" in doc["error"]["message"], doc
    st, doc = server.json("POST", f"{API}/import", {"versions": [dict(rec, key="k" * 1025, value=1)]})
    assert st == 400 and error_code(doc) == "too_big", doc
    assert doc["error"]["message"].startswith("import 0: key is 1025 bytes"), doc
    assert server.json("GET", f"{API}/status")[1]["versions"] == 0


def test_import_body_too_large_and_media_type(start_server):
    srv = start_server(["--max-body", "4K"])
    st, doc = srv.json("POST", f"{API}/import", {"versions": [{"pad": "x" * 5000}]})
    assert st == 413
    st, _, _ = srv.request("POST", f"{API}/import", b"{}", {"Content-Type": "text/plain"})
    assert st == 415


def test_command_line_batch_over_the_servers_body_limit(start_server, tmp_path, env):
    """A batch of `kdelta --url … import` is one request: over the server's
    --max-body it is refused as a whole, --skip-bad or not (no row is bad),
    and smaller batches go through."""
    srv = start_server(["--max-body", "4K"])
    f = tmp_path / "r.ndjson"
    f.write_text("".join(json.dumps({"i": i, "pad": "x" * 100}) + "\n" for i in range(100)), encoding="utf-8")
    for extra in ([], ["--skip-bad"]):
        r = run_kdelta(["--url", srv.url, "import", "m", str(f)] + extra, env=env)
        assert r.rc == 4, r.err
        assert r.err.count("\n") == 1 and "lines 1-100: request body larger than 4096 bytes" in r.err, r.err
        assert "use a smaller --batch" in r.err and "0 rows committed" in r.err, r.err
    r = run_kdelta(["--url", srv.url, "import", "m", str(f), "--batch", "10"], env=env)
    assert r.rc == 0, r.err
    assert srv.json("GET", f"{API}/status")[1]["versions"] == 100


def test_import_through_the_command_line_and_curl_example(two, tmp_path, env):
    """The documented pipe (docs/HTTP.md): the log of one server posted to
    another with curl, and `kdelta --url … import --history` of an export."""
    src, dst = two
    log, _ = all_pages(src, changes_path, "since", "changes")
    body = json.dumps({"versions": log})
    r = subprocess.run(["curl", "-s", "-X", "POST", "-H", "Content-Type: application/json", "--data-binary", "@-",
                        dst.url.rstrip("/") + f"{API}/import"], input=body.encode(), capture_output=True, timeout=60)
    if r.returncode == 127:
        pytest.skip("curl not installed")
    assert json.loads(r.stdout) == {"imported": len(log)}
    r = run_kdelta(["--url", src.url, "export", "--history"], env=env)
    assert r.rc == 0, r.err
    assert [json.loads(l) for l in r.out.split("\n")[:-1]] == log
    third = Server(str(tmp_path / "third"), env)
    try:
        f = tmp_path / "h.ndjson"
        f.write_text(r.out, encoding="utf-8")
        r2 = run_kdelta(["--url", third.url, "import", "--history", str(f)], env=env)
        assert r2.rc == 0, r2.err
        assert all_pages(third, changes_path, "since", "changes")[0] == log
    finally:
        assert third.stop() == 0


# ---------------------------------------------------------------------------
# The answers match docs/openapi.yaml
# ---------------------------------------------------------------------------


def test_answers_match_the_spec(two, tmp_path):
    from test_openapi import _VALIDATE, _load_spec, _python_with, _template_of  # noqa: PLC0415

    src, dst = two
    spec = _load_spec()
    log, _ = all_pages(src, changes_path, "since", "changes")
    calls = [
        (src, "POST", f"{API}/verify", None),
        (src, "GET", scan_path("u", limit="1"), None),
        (src, "GET", scan_path("u", at="@1"), None),
        (src, "GET", scan_path("_kdx"), None),
        (src, "GET", changes_path(limit="2"), None),
        (src, "GET", changes_path(ns="v"), None),
        (src, "GET", changes_path(since="x"), None),
        (dst, "POST", f"{API}/import", {"versions": log[:3]}),
        (dst, "POST", f"{API}/import", {"versions": log[:3]}),
        (dst, "POST", f"{API}/import", {"versions": [1]}),
    ]
    samples = []
    for srv, method, url, body in calls:
        st, hdrs, data = srv.request(method, url, body)
        tpl = _template_of(url, spec)
        op = spec["paths"][tpl][method.lower()]
        assert str(st) in op["responses"], (method, url, st)
        assert hdrs["Content-Type"].split(";")[0] == "application/json"
        samples.append({"method": method, "url": url, "path": tpl, "status": str(st), "ctype": "application/json",
                        "body": json.loads(data)})
    py = _python_with("jsonschema")
    if not py:
        pytest.skip("jsonschema is not installed in any Python interpreter found: bodies not validated")
    sfile = tmp_path / "samples.json"
    sfile.write_text(json.dumps(samples), encoding="utf-8")
    from test_openapi import SPEC  # noqa: PLC0415

    r = subprocess.run([py, "-c", _VALIDATE, SPEC, str(sfile)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []
