"""A workspace dropped, compacted and created again comes back empty
(docs/CLI.md "workspace", docs/HTTP.md "Workspaces", docs/RETENTION.md):
`kdelta workspace drop w`, `kdelta compact`, `kdelta workspace create w`,
and none of w's old keys reads, lists, queries, counts as live, is found
by an index or a vector search, or comes back when the same JSON is
written anywhere later; `log` keeps their versions, marked pruned.

Values are content-addressed (stored once per content), so the cases
that matter are a dropped key whose newest value is byte-for-byte the
value of a key elsewhere ("shared": stored in the default workspace
before the compaction) and one whose value is nowhere else ("alone"),
and the same JSON written elsewhere after the compaction. Checked in both
CLI modes (a directory, and --url against a server, where drop, compact
and create happen in one server process), after reopening (log replay,
and an index checkpoint written by kd_checkpoint), over HTTP (status
codes, the watch stream's event types), and for secondary indexes and
vectors with and without a server restart. Dropping and creating again
*before* a compaction shows the data again: test_workspaces.py
test_drop_hides_the_workspace.
"""
import json
import os
import subprocess

import pytest

from helpers import CTYPES_OPEN, library_path
from server import sse_events
from test_concurrency import sanitizer_runtime

API = "/api/v1"
WS = "w1"
SHARED = {"n": 2}  # users/b's value in w1; also other/x's in the default workspace, written first
ALONE = {"n": 3}   # users/c's value in w1, stored nowhere else before the compaction
GONE = {"n": 4}    # users/d's value in w1 before users/d was deleted there


def ok(r):
    assert r.rc == 0, r.err
    return r


def in_ws(*args):
    return ("-w", WS) + args


def drop_compact_create(kd, shared=True, tombstone=False):
    """other/x = SHARED in the default workspace; workspace w1 with
    users/c = ALONE, and users/b = SHARED (unless not `shared`), and users/d
    written then deleted (with `tombstone`); then w1 dropped, `kdelta
    compact`, w1 created again. Returns {key: the version record of its
    last write in w1 that held a value} (for `get --at`: a time before the
    drop)."""
    ok(kd("set", "other/x", json.dumps(SHARED)))
    ok(kd("workspace", "create", WS))
    recs = {}
    if shared:
        recs["b"] = ok(kd(*in_ws("--json", "set", "users/b", json.dumps(SHARED)))).json()
        assert recs["b"]["version_id"] == json.loads(ok(kd("--json", "get", "other/x")).out)["version_id"]
    recs["c"] = ok(kd(*in_ws("--json", "set", "users/c", json.dumps(ALONE)))).json()
    if tombstone:
        recs["d"] = ok(kd(*in_ws("--json", "set", "users/d", json.dumps(GONE)))).json()
        ok(kd(*in_ws("delete", "users/d")))
    ok(kd("workspace", "drop", WS))
    ok(kd("compact"))
    ok(kd("workspace", "create", WS))
    return recs


def check_key_gone(kd, key, rec):
    """users/KEY of the recreated w1 does not resolve to a value: `get` is
    exit 3 "not found" with nothing printed, `log` lists its old version
    with the value removed, and `get --at` the time of that version fails
    and prints no value. (Everything is observed before comparing, so a
    failure shows each part.)"""
    r = kd(*in_ws("get", f"users/{key}"))
    log = ok(kd(*in_ws("log", f"users/{key}", "--json"))).json()
    at = kd(*in_ws("get", f"users/{key}", "--at", rec["timestamp"]))
    seen = {
        "get (exit, stdout, 'not found' said)": (r.rc, r.out, "not found" in r.err),
        "log (write_id, value, pruned)": [(x["write_id"], x["value"], x.get("pruned")) for x in log],
        "get --at before the drop (failed, stdout)": (at.rc != 0, at.out),
    }
    assert seen == {
        "get (exit, stdout, 'not found' said)": (3, "", True),
        "log (write_id, value, pruned)": [(rec["write_id"], None, True)],
        "get --at before the drop (failed, stdout)": (True, ""),
    }, f"users/{key} after drop+compact+create: {seen}"


def check_ws_empty(kd):
    """w1 as a whole shows nothing: `list users`, `list`, `query users`
    (with and without a filter), and `status --json` live_keys 0."""
    seen = {
        "list users": ok(kd(*in_ws("list", "users"))).out,
        "list": ok(kd(*in_ws("list"))).out,
        "query users": [x["key"] for x in ok(kd(*in_ws("--json", "query", "users"))).json()["rows"]],
        "query users n >= 0": [x["key"] for x in
                               ok(kd(*in_ws("--json", "query", "users", "--filter", "n >= 0"))).json()["rows"]],
        "live_keys": ok(kd(*in_ws("--json", "status"))).json()["live_keys"],
    }
    assert seen == {"list users": "", "list": "", "query users": [], "query users n >= 0": [], "live_keys": 0}, \
        f"the recreated workspace: {seen}"


# ---- the command line, both modes ---------------------------------------------


def test_key_whose_value_was_stored_only_there_is_gone(kd):
    """users/c's value was stored nowhere else: after drop, compact and
    create, `get` is not found, `log` shows the version pruned, `get --at`
    before the drop fails."""
    recs = drop_compact_create(kd)
    check_key_gone(kd, "c", recs["c"])


def test_key_whose_value_is_shared_is_gone(kd):
    """users/b's value is also other/x's (one stored value): after drop,
    compact and create, users/b must not read, nor `get --at` before the
    drop, and `log` shows its version pruned, like users/c."""
    recs = drop_compact_create(kd)
    check_key_gone(kd, "b", recs["b"])


@pytest.mark.parametrize("shared", [True, False], ids=["shared-and-alone", "alone-only"])
def test_recreated_workspace_lists_queries_and_counts_nothing(kd, shared):
    """The recreated workspace lists no key and no namespace, its queries
    find no rows and `status` counts no live key: neither users/b (shared
    value) nor users/c (value stored only there); also when w1 held only
    users/c."""
    drop_compact_create(kd, shared=shared)
    check_ws_empty(kd)


@pytest.mark.parametrize("where", ["default", "other-workspace"])
def test_same_json_written_after_the_compaction_revives_nothing(kd, where):
    """Writing users/c's and users/b's old JSON elsewhere after the
    compaction (in the default workspace, or in another workspace) stores
    those values again; neither key of the recreated w1 reads, lists,
    queries or counts as live because of it, and `log` still shows their
    versions pruned."""
    recs = drop_compact_create(kd)
    opts = ()
    if where == "other-workspace":
        ok(kd("workspace", "create", "w2"))
        opts = ("-w", "w2")
    ok(kd(*opts, "set", "other/y", json.dumps(ALONE)))
    ok(kd(*opts, "set", "other/z", json.dumps(SHARED)))
    assert json.loads(ok(kd(*opts, "get", "other/y")).out) == ALONE
    check_key_gone(kd, "c", recs["c"])
    check_key_gone(kd, "b", recs["b"])
    check_ws_empty(kd)


def test_diff_shows_no_value_of_a_dropped_key(kd):
    """users/b held SHARED then ALONE2, both stored elsewhere too (other/x,
    other/y): after drop, compact and create, `diff users/b` (its last two
    versions) shows neither value; it fails as for any removed value (exit 3,
    and 410 `pruned` over HTTP) instead of printing the change, and so does
    naming both versions (not "no changes": they differed)."""
    ok(kd("set", "other/x", json.dumps(SHARED)))
    ok(kd("set", "other/y", json.dumps({"n": 7})))
    ok(kd("workspace", "create", WS))
    ok(kd(*in_ws("set", "users/b", json.dumps(SHARED))))
    ok(kd(*in_ws("set", "users/b", json.dumps({"n": 7}))))
    ok(kd("workspace", "drop", WS))
    ok(kd("compact"))
    ok(kd("workspace", "create", WS))
    r = kd(*in_ws("diff", "users/b"))
    assert (r.rc, r.out, "dropped workspace" in r.err) == (3, "", True), r
    r = kd(*in_ws("diff", "users/b", "--from", "0", "--to", "1"))
    assert (r.rc, r.out, "dropped workspace" in r.err) == (3, "", True), r


def test_key_written_again_diffs_from_absent_and_logs_why(kd):
    """users/c written again in the recreated w1: `diff users/c` by default
    compares with its dropped version, which is absent (the whole value is
    added, exit 0, not 410 pruned); `log` says why the old value is gone,
    and its JSON says `"pruned_by": "workspace_drop"`."""
    drop_compact_create(kd)
    ok(kd(*in_ws("set", "users/c", json.dumps({"again": 1}))))
    r = kd(*in_ws("--json", "diff", "users/c"))
    assert (r.rc, json.loads(r.out) if r.rc == 0 else r.err) == \
        (0, [{"op": "add", "path": "", "value": {"again": 1}}]), r
    r = ok(kd(*in_ws("log", "users/c")))
    assert "(removed with its dropped workspace)" in r.out and "removed by retention" not in r.out, r.out
    log = ok(kd(*in_ws("--json", "log", "users/c"))).json()
    assert [(x.get("pruned"), x.get("pruned_by")) for x in log] == [(None, None), (True, "workspace_drop")], log


def test_http_diff_shows_no_value_of_a_dropped_key(start_server):
    srv = start_server()
    w = http_drop_compact_create(srv)
    st, body = srv.json("GET", f"{w}/namespaces/users/keys/b/diff?from=0&to=0")
    assert (st, body["error"]["code"]) == (410, "pruned"), body
    st, body = srv.json("GET", f"{w}/namespaces/users/keys/b/history")
    assert st == 200 and [(v["value"], v.get("pruned_by")) for v in body["versions"]] == \
        [(None, "workspace_drop")] * len(body["versions"]), body
    # written again: the default diff compares with the dropped version as absent
    assert srv.json("PUT", f"{w}/namespaces/users/keys/b", {"again": 2})[0] == 201
    st, body = srv.json("GET", f"{w}/namespaces/users/keys/b/diff")
    assert (st, body.get("patch")) == (200, [{"op": "add", "path": "", "value": {"again": 2}}]), body


def test_history_export_leaves_out_what_went_with_the_workspace(kd):
    """`export --history` of the recreated w1 (the changes feed, as watch
    replay uses it) has only what was written since: not the old values,
    shared or not, nor the old tombstone of users/d."""
    drop_compact_create(kd, tombstone=True)
    ok(kd(*in_ws("set", "users/e", json.dumps({"n": 9}))))
    rows = [json.loads(line) for line in ok(kd(*in_ws("export", "--history"))).out.splitlines() if line.strip()]
    assert [(r["key"], r["deleted"]) for r in rows] == [("e", False)], rows


@pytest.mark.local_only("puts back a file in the database directory")
def test_vector_file_saved_before_the_compaction_is_still_used(kd, db):
    """A vectors.idx saved before the compaction (a crash before the next
    save) still names the dropped workspace's vectors: opening loads it and
    lets go of them, rather than refusing the file and rebuilding every
    graph from the log, and a search finds nothing of them."""
    ok(kd("workspace", "create", WS))
    for k, v in (("a", "[1,2,3]"), ("b", "[1,2,4]")):
        ok(kd(*in_ws("vector", "put", f"docs/{k}", v, "--model", "m")))
    saved = open(os.path.join(db, "vectors.idx"), "rb").read()
    ok(kd("workspace", "drop", WS))
    ok(kd("compact"))
    ok(kd("workspace", "create", WS))
    with open(os.path.join(db, "vectors.idx"), "wb") as f:
        f.write(saved)
    r = ok(kd(*in_ws("--json", "vector", "search", "[1,2,3]"), extra_env={"KORU_LOG": "info"}))
    assert ("not used" in r.err, json.loads(r.out)["hits"]) == (False, []), r.err


def test_key_deleted_before_the_drop_is_not_found(kd):
    """users/d was deleted in w1 before the drop: the recreated w1 says it
    is not found (exit 3), not that it was deleted — the tombstone belongs
    to the dropped workspace's history."""
    drop_compact_create(kd, tombstone=True)
    r = kd(*in_ws("get", "users/d"))
    assert (r.rc, r.out, "not found" in r.err, "deleted" in r.err) == (3, "", True, False), \
        f"users/d (deleted before the drop): exit {r.rc}, stdout {r.out!r}, stderr {r.err!r}"


CHECKPOINTER = CTYPES_OPEN + r"""
rc = lib.kd_checkpoint(db)
if rc != 0:
    sys.exit("kd_checkpoint failed: %d" % rc)
sys.exit(lib.kd_close(db))
"""


def write_checkpoint(db):
    """Write the index checkpoint (docs/FORMAT.md "Index checkpoint") of the
    closed database DB with kd_checkpoint through the shared library (the
    CLI has no command for it, and writes one at close only past 64 MiB of
    log), in a process of its own (with the sanitizer runtime preloaded
    for a sanitized build, as test_concurrency.py's LockHolder)."""
    lib = library_path()
    if lib is None:
        pytest.skip("shared library libkorudelta.so not found in the build directory (KD_BUILD_DIR)")

    def run(extra):
        env = dict(os.environ, **extra) if extra else None
        return subprocess.run(["/usr/bin/python3", "-c", CHECKPOINTER, lib, db], capture_output=True,
                              env=env, timeout=120)

    p = run(None)
    if p.returncode != 0:
        runtime = sanitizer_runtime(p.stderr.decode(errors="replace"))
        if runtime is not None:
            p = run({"LD_PRELOAD": runtime, "ASAN_OPTIONS": "detect_leaks=0"})
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    assert os.path.exists(os.path.join(db, "index.ckpt"))


@pytest.mark.parametrize("open_by", ["replay", "checkpoint"])
def test_still_empty_after_reopening(kd, db, open_by):
    """Everything above holds for a database opened anew (locally a process
    of its own, remotely a restarted server): by replaying the log, and
    from an index checkpoint written after the recreation (nothing left to
    replay). The same JSON is written elsewhere after the compaction
    first; `verify` passes."""
    recs = drop_compact_create(kd, tombstone=True)
    ok(kd("set", "other/y", json.dumps(ALONE)))
    if open_by == "checkpoint":
        if kd.server is not None:
            assert kd.server.stop() == 0
        write_checkpoint(db)
        if kd.server is not None:
            kd.server.start()
        st = ok(kd("--json", "status")).json()
        assert st["replay_bytes"] == 0, "the open did not load the checkpoint"
    ok(kd.reopen(*in_ws("status")))
    for key in ("c", "b"):
        check_key_gone(kd, key, recs[key])
    r = kd(*in_ws("get", "users/d"))
    assert (r.rc, r.out, "not found" in r.err, "deleted" in r.err) == (3, "", True, False), \
        f"users/d (deleted before the drop): exit {r.rc}, stdout {r.out!r}, stderr {r.err!r}"
    check_ws_empty(kd)
    v = kd("verify")
    assert v.rc == 0, v.out + v.err


def test_keys_written_again_live_and_survive_another_compaction(kd):
    """Writing the dropped keys again in the recreated w1 works (users/b with
    its old JSON, users/c with new JSON): `get` returns the new values,
    `log` shows the old version pruned and then the new one, `list` shows
    both keys once and `status` counts each once. A second compaction, with
    w1 live, keeps the new values and the old ones gone; `verify` passes,
    also after reopening."""
    recs = drop_compact_create(kd)
    new = {"b": SHARED, "c": {"n": 30}}
    new_recs = {k: ok(kd(*in_ws("--json", "set", f"users/{k}", json.dumps(v)))).json() for k, v in new.items()}

    def check(run):
        for k, v in new.items():
            assert json.loads(ok(run(*in_ws("get", f"users/{k}"))).out) == v
            log = ok(kd(*in_ws("log", f"users/{k}", "--json", "--reverse"))).json()
            assert [x["write_id"] for x in log] == [recs[k]["write_id"], new_recs[k]["write_id"]]
            assert (log[0]["value"], log[0].get("pruned")) == (None, True), f"users/{k}'s old version: {log[0]}"
            assert (log[1]["value"], log[1].get("pruned", False)) == (v, False), f"users/{k}'s new version: {log[1]}"
            assert log[1]["previous_write_id"] == recs[k]["write_id"]
        assert ok(kd(*in_ws("list", "users"))).out == "b\nc\n"
        assert ok(kd(*in_ws("list"))).out == "users\n"
        q = ok(kd(*in_ws("--json", "query", "users"))).json()
        assert [(x["key"], x["value"]) for x in q["rows"]] == [("b", new["b"]), ("c", new["c"])]
        st = ok(kd(*in_ws("--json", "status"))).json()
        assert (st["keys"], st["live_keys"]) == (2, 2)

    check(kd)
    ok(kd("compact"))
    check(kd)
    v = kd("verify")
    assert v.rc == 0, v.out + v.err
    check(kd.reopen)


# ---- HTTP ------------------------------------------------------------------------


def http_drop_compact_create(srv):
    """The setup of drop_compact_create over HTTP, in one server process."""
    w = f"{API}/ws/{WS}"
    assert srv.json("PUT", f"{API}/namespaces/other/keys/x", SHARED)[0] == 201
    assert srv.json("POST", f"{API}/workspaces", {"name": WS})[0] == 201
    assert srv.json("PUT", f"{w}/namespaces/users/keys/b", SHARED)[0] == 201
    assert srv.json("PUT", f"{w}/namespaces/users/keys/c", ALONE)[0] == 201
    assert srv.json("DELETE", f"{API}/workspaces/{WS}")[0] == 200
    st, rep = srv.json("POST", f"{API}/compact", {})
    assert st == 200, rep
    assert srv.json("POST", f"{API}/workspaces", {"name": WS})[0] == 201
    return w


def test_http_put_of_a_dropped_key_creates_and_watch_says_insert(start_server):
    """Over HTTP, after drop, compact and create in one server: GET of the
    old keys is 404; a PUT of each is 201 (the key had no live value), and
    the workspace's watch stream types both writes `insert`, with no
    previous value. (All three are observed before comparing, so a failure
    shows each.)"""
    srv = start_server()
    w = http_drop_compact_create(srv)
    got = {k: srv.json("GET", f"{w}/namespaces/users/keys/{k}")[0] for k in ("b", "c")}
    conn, resp = srv.open_stream(f"{w}/watch?ns=users")
    assert resp.status == 200
    events = sse_events(resp)
    for ev in events:  # up to the opening id-only block: the subscription is in place
        if "id" in ev and "event" not in ev:
            break
    put = {k: srv.json("PUT", f"{w}/namespaces/users/keys/{k}", {"n": 10})[0] for k in ("b", "c")}
    seen = []
    for ev in events:
        if "event" in ev:
            d = json.loads(ev["data"])
            seen.append((ev["event"], d["type"], d["key"], d["value"], d["previous_value"]))
            if len(seen) == 2:
                break
    conn.close()
    assert {"GET before the PUT": got, "PUT": put, "watch": seen} == {
        "GET before the PUT": {"b": 404, "c": 404},
        "PUT": {"b": 201, "c": 201},
        "watch": [("insert", "insert", "b", {"n": 10}, None), ("insert", "insert", "c", {"n": 10}, None)],
    }, f"after drop+compact+create: GET {got}, PUT {put}, watch (event, type, key, value, previous_value) {seen}"


RESTART = pytest.mark.parametrize("restart", [False, True], ids=["same-process", "after-restart"])


def restart_if(srv, restart):
    if restart:
        assert srv.stop() == 0
        srv.start()


@RESTART
def test_index_finds_nothing_of_the_dropped_data(start_server, restart):
    """w1 had a secondary index on users.n when it was dropped: after
    compaction and recreation, queries on the indexed field find neither
    users/b (shared value) nor users/c, and an index that is still listed
    holds no entry — in the server that did it, and after a restart."""
    srv = start_server()
    w = f"{API}/ws/{WS}"
    assert srv.json("PUT", f"{API}/namespaces/other/keys/x", SHARED)[0] == 201
    assert srv.json("POST", f"{API}/workspaces", {"name": WS})[0] == 201
    st, idx = srv.json("POST", f"{w}/indexes", {"namespace": "users", "field": "n"})
    assert st == 201, idx
    assert srv.json("PUT", f"{w}/namespaces/users/keys/b", SHARED)[0] == 201
    assert srv.json("PUT", f"{w}/namespaces/users/keys/c", ALONE)[0] == 201
    st, lst = srv.json("GET", f"{w}/indexes")
    assert st == 200 and [(i["field"], i["built"], i["entries"]) for i in lst["indexes"]] == [("n", True, 2)], lst
    st, q = srv.json("POST", f"{w}/namespaces/users/query", {"filter": "n == 2"})
    assert st == 200 and [r["key"] for r in q["rows"]] == ["b"]
    assert srv.json("DELETE", f"{API}/workspaces/{WS}")[0] == 200
    assert srv.json("POST", f"{API}/compact", {})[0] == 200
    assert srv.json("POST", f"{API}/workspaces", {"name": WS})[0] == 201
    restart_if(srv, restart)
    found = {}
    for flt in ("n == 2", "n == 3", "n in [2, 3]", "n >= 0"):
        st, q = srv.json("POST", f"{w}/namespaces/users/query", {"filter": flt})
        found[flt] = (st, [r["key"] for r in q["rows"]] if st == 200 else q["error"])
    st, lst = srv.json("GET", f"{w}/indexes")
    assert st == 200
    found["indexes with entries"] = [(i["namespace"], i["field"], i["entries"]) for i in lst["indexes"] if i["entries"]]
    want = {flt: (200, []) for flt in found}
    want["indexes with entries"] = []
    assert found == want, f"the recreated workspace's index: {found}"


@RESTART
def test_vector_search_finds_nothing_of_the_dropped_data(start_server, restart):
    """w1 had vectors when it was dropped: docs/s (the same model, vector
    and metadata as the default workspace's docs/s: one stored value) and
    docs/u (stored only there). After compaction and recreation, searches
    in w1 (of the namespace, and of every namespace) find neither, reading
    either vector is 404, and the stats count no vector — in the server
    that did it, and after a restart."""
    srv = start_server()
    w = f"{API}/ws/{WS}"
    vs = {"s": {"model": "m", "vector": [1, 0]}, "u": {"model": "m", "vector": [0, 1], "meta": {"in": WS}}}
    st, shared = srv.json("PUT", f"{API}/namespaces/docs/keys/s/vector", vs["s"])
    assert st == 201, shared
    assert srv.json("POST", f"{API}/workspaces", {"name": WS})[0] == 201
    for k, body in vs.items():
        st, rec = srv.json("PUT", f"{w}/namespaces/docs/keys/{k}/vector", body)
        assert st == 201, rec
        if k == "s":
            assert rec["version_id"] == shared["version_id"]
    st, hits = srv.json("POST", f"{w}/namespaces/docs/vectors/search", {"vector": [1, 0], "k": 10})
    assert st == 200 and sorted(h["key"] for h in hits["hits"]) == ["s", "u"]
    assert srv.json("DELETE", f"{API}/workspaces/{WS}")[0] == 200
    assert srv.json("POST", f"{API}/compact", {})[0] == 200
    assert srv.json("POST", f"{API}/workspaces", {"name": WS})[0] == 201
    restart_if(srv, restart)
    found = {}
    for path in (f"{w}/namespaces/docs/vectors/search", f"{w}/vectors/search"):
        st, hits = srv.json("POST", path, {"vector": [1, 0], "k": 10})
        found[path] = (st, sorted(h["key"] for h in hits["hits"]) if st == 200 else hits)
    want = {p: (200, []) for p in found}
    for k in vs:
        found[f"GET docs/{k}/vector"] = srv.json("GET", f"{w}/namespaces/docs/keys/{k}/vector")[0]
        want[f"GET docs/{k}/vector"] = 404
    st, stats = srv.json("GET", f"{w}/vectors/stats")
    assert st == 200, stats
    found["stats: vectors"] = sum(s["vectors"] for s in stats["stats"])
    want["stats: vectors"] = 0
    assert found == want, f"the recreated workspace's vectors: {found}"
    # the default workspace's vector is untouched
    st, hits = srv.json("POST", f"{API}/namespaces/docs/vectors/search", {"vector": [1, 0], "k": 10})
    assert st == 200 and [h["key"] for h in hits["hits"]] == ["s"]
