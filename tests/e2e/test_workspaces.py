"""Workspaces end to end (DESIGN.md §2, docs/CLI.md "workspace", docs/HTTP.md
"Workspaces"): `kdelta workspace create|list|drop` and `-w/--workspace` in
both CLI modes (local directory and --url), with the same namespaces and keys
in two workspaces kept apart in get, list, log, status, query, views, indexes,
vectors, export and the shell's watch; dropping hides a workspace; the HTTP
routes /api/v1/workspaces and /api/v1/ws/{ws}/…, their watch stream; and
capabilities scoped by workspace (a grant for A is refused, 403, in B)."""
import json

import pytest

from helpers import ts_to_ns
from server import quote_seg, sse_events
from test_auth import Auth, bearer, keygen, kdu, token_of

API = "/api/v1"


def ok(r):
    assert r.rc == 0, r.err
    return r


def setup_two(kd):
    """Workspaces A and B, and users/alice in default, A and B with different values."""
    ok(kd("workspace", "create", "A"))
    ok(kd("workspace", "create", "B"))
    for ws, age in ((None, 10), ("A", 20), ("B", 30)):
        opts = ["-w", ws] if ws else []
        ok(kd(*opts, "set", "users/alice", json.dumps({"age": age, "ws": ws or "default"})))
    ok(kd("-w", "A", "set", "users/only-a", '{"age": 50}'))
    ok(kd("-w", "A", "set", "users/alice", '{"age": 21, "ws": "A"}'))


# ---- the command line, both modes -------------------------------------------


def test_workspace_commands(kd):
    assert ok(kd("workspace", "list")).out == "default\n"
    r = ok(kd("workspace", "create", "staging"))
    assert r.out == "created workspace staging\n"
    assert ok(kd("--json", "workspace", "list")).json() == ["default", "staging"]
    r = kd("workspace", "create", "staging")
    assert r.rc == 6 and "already exists" in r.err
    assert kd("workspace", "create", "default").rc == 6
    r = kd("workspace", "create", "_kd.x")
    assert r.rc == 4 and "reserved" in r.err
    r = kd("workspace", "drop", "default")
    assert r.rc == 4 and "cannot be dropped" in r.err
    r = kd("workspace", "drop", "nope")
    assert r.rc == 3 and "no workspace named 'nope'" in r.err
    assert kd("workspace", "frob").rc == 2
    assert kd("workspace", "create").rc == 2
    r = kd("-w", "staging", "workspace", "list")
    assert r.rc == 2 and "--workspace" in r.err
    assert kd("-w", "", "get", "a/b").rc == 2
    r = kd("-w", "nope", "get", "users/alice")
    assert r.rc == 3 and "no workspace named 'nope'" in r.err, r.err
    r = ok(kd("--json", "workspace", "drop", "staging"))
    assert r.json() == {"workspace": "staging", "dropped": True}
    assert ok(kd("workspace", "list")).out == "default\n"


def test_same_keys_are_isolated(kd):
    setup_two(kd)
    for ws, age in ((None, 10), ("A", 21), ("B", 30)):
        opts = ["-w", ws] if ws else []
        assert json.loads(ok(kd(*opts, "get", "users/alice")).out)["age"] == age
        # -w default is the same as no -w
    assert json.loads(ok(kd("-w", "default", "get", "users/alice")).out)["age"] == 10
    # listings
    assert ok(kd("list", "users")).out.split() == ["alice"]
    assert ok(kd("-w", "A", "list", "users")).out.split() == ["alice", "only-a"]
    assert ok(kd("-w", "B", "list", "users")).out.split() == ["alice"]
    assert kd("get", "users/only-a").rc == 3
    assert kd("-w", "B", "get", "users/only-a").rc == 3
    # history: two versions in A, one elsewhere; write_ids differ
    log_a = ok(kd("-w", "A", "--json", "log", "users/alice")).json()
    log_d = ok(kd("--json", "log", "users/alice")).json()
    assert len(log_a) == 2 and len(log_d) == 1
    assert log_d[0]["write_id"] not in {x["write_id"] for x in log_a}
    # status counts the workspace's keys
    st_a = ok(kd("-w", "A", "--json", "status")).json()
    st_b = ok(kd("-w", "B", "--json", "status")).json()
    assert st_a["keys"] == 2 and st_b["keys"] == 1
    # queries
    r = ok(kd("-w", "A", "--json", "query", "users", "--filter", "age > 15", "--count"))
    assert "2" in r.out
    r = ok(kd("--json", "query", "users", "--filter", "age > 15", "--count"))
    assert "0" in r.out
    # export: only the workspace's data
    out = ok(kd("-w", "B", "export")).out
    assert '"ws":"B"' in out and '"ws":"A"' not in out and "only-a" not in out


def test_views_and_indexes_are_isolated(kd):
    setup_two(kd)
    for ws in ("A", "B"):
        ok(kd("-w", ws, "view", "create", "adults", "users", "--filter", "age >= 18"))
        ok(kd("-w", ws, "index", "create", "users", "age"))
    assert kd("view", "show", "adults").rc == 3  # none in default
    show_a = ok(kd("-w", "A", "--json", "view", "show", "adults")).out
    show_b = ok(kd("-w", "B", "--json", "view", "show", "adults")).out
    assert "only-a" in show_a and "only-a" not in show_b
    assert '"ws":"A"' in show_a and '"ws":"B"' not in show_a
    ok(kd("-w", "B", "set", "users/new-b", '{"age": 40}'))
    assert "new-b" in ok(kd("-w", "B", "--json", "view", "show", "adults")).out
    assert "new-b" not in ok(kd("-w", "A", "--json", "view", "show", "adults")).out
    lst = ok(kd("-w", "A", "--json", "index", "list")).json()
    assert [(i["namespace"], i["entries"]) for i in lst] == [("users", 2)]
    assert ok(kd("--json", "index", "list")).json() == []
    r = ok(kd("-w", "A", "query", "users", "--filter", "age == 50"))
    assert "only-a" in r.out
    r = ok(kd("-w", "B", "query", "users", "--filter", "age == 50"))
    assert "only-a" not in r.out


def test_vectors_are_isolated(kd):
    ok(kd("workspace", "create", "A"))
    ok(kd("-w", "A", "vector", "put", "docs/d1", "[1, 0]", "--model", "m", "--meta", '{"in": "A"}'))
    ok(kd("vector", "put", "docs/d1", "[0, 1]", "--model", "m", "--meta", '{"in": "default"}'))
    ok(kd("vector", "put", "docs/d2", "[1, 1]", "--model", "m", "--meta", '{"in": "default"}'))
    hits_a = [json.loads(x) for x in ok(kd("-w", "A", "--json", "vector", "search", "[1, 0]", "-k", "10")).out.split("\n")
              if x.strip()]
    flat = json.dumps(hits_a)
    assert '"in":"A"' in flat.replace(" ", "") and "default" not in flat
    hits_d = ok(kd("--json", "vector", "search", "docs", "[1, 0]", "-k", "10")).out
    assert '"A"' not in hits_d.replace(" ", "")
    st = ok(kd("-w", "A", "--json", "vector", "stats")).out
    assert '"vectors":1' in st.replace(" ", "")


def test_watch_in_a_workspace_shell(kd):
    ok(kd("workspace", "create", "A"))
    ok(kd("set", "users/alice", "1"))  # default: before, and never seen by A's watch
    r = ok(kd("-w", "A", "shell", input="watch users\nset users/alice 2\nset users/bob 3\n"))
    evs = [x for x in r.out.splitlines() if x.split(" ", 1)[0] in ("insert", "update", "delete")]
    assert evs == ["insert users/alice 2", "insert users/bob 3"]
    assert json.loads(ok(kd("get", "users/alice")).out) == 1


def test_drop_hides_the_workspace(kd):
    setup_two(kd)
    ok(kd("workspace", "drop", "A"))
    r = kd("-w", "A", "get", "users/alice")
    assert r.rc == 3 and "no workspace named 'A'" in r.err
    assert ok(kd("workspace", "list")).out.split() == ["B", "default"]
    assert json.loads(ok(kd("-w", "B", "get", "users/alice")).out)["age"] == 30
    # its data stays in the log: creating it again shows it again
    ok(kd("workspace", "create", "A"))
    assert json.loads(ok(kd("-w", "A", "get", "users/alice")).out)["age"] == 21
    r = kd.reopen("-w", "A", "get", "users/alice")
    assert r.rc == 0 and json.loads(r.out)["age"] == 21


def test_workspace_made_again_after_compaction_is_empty(kd):
    """Compaction removes a dropped workspace's values; made again, the
    workspace has no keys whose newest value is gone: nothing listed,
    `get` not found (RETENTION.md: get never meets a pruned version)."""
    ok(kd("workspace", "create", "w"))
    ok(kd("-w", "w", "set", "a/b", '{"x": 1}'))
    ok(kd("-w", "w", "set", "a/c", '{"x": 2}'))
    ok(kd("workspace", "drop", "w"))
    ok(kd("compact"))
    ok(kd("workspace", "create", "w"))
    assert ok(kd("-w", "w", "list", "a")).out == ""
    assert ok(kd("-w", "w", "list")).out == ""
    r = kd("-w", "w", "get", "a/b")
    assert r.rc == 3 and "not found" in r.err and "retention" not in r.err, r.err
    # the history is still there, its values marked removed
    log = json.loads(ok(kd("-w", "w", "log", "a/b", "--json")).out)
    assert len(log) == 1 and log[0]["pruned"] is True
    # and the key can be written again
    ok(kd("-w", "w", "set", "a/b", '{"x": 3}'))
    assert json.loads(ok(kd("-w", "w", "get", "a/b")).out) == {"x": 3}
    assert ok(kd("-w", "w", "list", "a")).out == "b\n"


def test_workspace_made_again_before_compaction_is_emptied_by_it(kd):
    """Dropped, made again and written, then compacted: what was written
    before the drop goes, what was written after stays (the compaction
    kept it all, for good, when the workspace existed again by then)."""
    ok(kd("workspace", "create", "w"))
    ok(kd("-w", "w", "set", "u/a", '{"secret": 1}'))
    ok(kd("workspace", "drop", "w"))
    ok(kd("workspace", "create", "w"))
    assert json.loads(ok(kd("-w", "w", "get", "u/a")).out) == {"secret": 1}  # before the compaction
    ok(kd("-w", "w", "set", "u/b", '{"new": 2}'))
    ok(kd("compact"))
    r = kd("-w", "w", "get", "u/a")
    assert r.rc == 3 and "dropped" in r.err, r.err
    assert ok(kd("-w", "w", "list", "u")).out == "b\n"
    assert json.loads(ok(kd("-w", "w", "get", "u/b")).out) == {"new": 2}
    assert json.loads(ok(kd("-w", "w", "log", "u/a", "--json")).out)[0]["pruned"] is True
    ok(kd("verify"))
    ok(kd("compact"))  # nothing more goes
    assert ok(kd("-w", "w", "list", "u")).out == "b\n"


# ---- HTTP ----------------------------------------------------------------------


def test_http_routes(start_server):
    srv = start_server()
    assert srv.json("GET", f"{API}/workspaces") == (200, {"workspaces": ["default"]})
    st, out = srv.json("POST", f"{API}/workspaces", {"name": "a b/c"})
    assert st == 201 and out == {"workspace": "a b/c"}
    assert srv.json("POST", f"{API}/workspaces", {"name": "a b/c"})[0] == 409
    assert srv.json("POST", f"{API}/workspaces", {"nom": 1})[0] == 400
    assert srv.json("POST", f"{API}/workspaces", {"name": "_kd.ws"})[0] == 400
    ws = f"{API}/ws/{quote_seg('a b/c')}"
    assert srv.json("PUT", f"{ws}/namespaces/n/keys/k", {"v": "ws"})[0] == 201
    assert srv.json("PUT", f"{API}/namespaces/n/keys/k", {"v": "default"})[0] == 201
    st, rec = srv.json("GET", f"{ws}/namespaces/n/keys/k")
    assert st == 200 and rec["value"] == {"v": "ws"} and rec["namespace"] == "n"
    assert srv.json("GET", f"{API}/ws/default/namespaces/n/keys/k")[1]["value"] == {"v": "default"}
    assert srv.json("GET", f"{API}/namespaces/n/keys/k")[1]["value"] == {"v": "default"}
    st, err = srv.json("GET", f"{API}/ws/nope/namespaces/n/keys/k")
    assert st == 404 and "no workspace named 'nope'" in err["error"]["message"]
    assert srv.json("GET", f"{ws}/namespaces")[1] == {"namespaces": ["n"]}
    # the library's internal spelling of a workspace's namespace is no way in
    inner = quote_seg("a b/c") + "%FFn"
    assert srv.json("PUT", f"{API}/namespaces/{inner}/keys/k", 1)[0] == 400
    assert srv.json("GET", f"{API}/namespaces/{inner}/keys/k")[0] in (400, 404)
    assert srv.json("GET", f"{ws}/namespaces/n/keys/k")[1]["value"] == {"v": "ws"}
    assert srv.json("POST", f"{ws}/batch", {"writes": [{"namespace": "m", "key": "x", "value": 1}]})[0] in (200, 201)
    assert srv.json("GET", f"{API}/namespaces")[1] == {"namespaces": ["n"]}
    st, q = srv.json("POST", f"{ws}/namespaces/n/query", {"filter": "v == \"ws\""})
    assert st == 200 and q["total"] == 1
    st, q = srv.json("POST", f"{API}/namespaces/n/query", {"filter": "v == \"ws\""})
    assert st == 200 and q["total"] == 0
    # whole-database routes have no workspace form
    assert srv.json("POST", f"{ws}/verify")[0] == 404
    assert srv.json("POST", f"{ws}/backup", {})[0] == 404
    # the watch stream of a workspace shows only its writes
    conn, resp = srv.open_stream(f"{ws}/watch")
    assert resp.status == 200
    srv.json("PUT", f"{API}/namespaces/n/keys/other", 1)
    srv.json("PUT", f"{ws}/namespaces/n/keys/seen", 2)
    got = []
    for ev in sse_events(resp):
        if "data" in ev:
            got.append(json.loads(ev["data"]))
            if got[-1].get("key") == "seen":
                break
    conn.close()
    assert [(e["namespace"], e["key"]) for e in got] == [("n", "seen")]
    # drop: its routes answer 404 at once
    st, out = srv.json("DELETE", f"{API}/workspaces/{quote_seg('a b/c')}")
    assert st == 200 and out == {"workspace": "a b/c", "dropped": True}
    assert srv.json("GET", f"{ws}/namespaces/n/keys/k")[0] == 404
    assert srv.json("DELETE", f"{API}/workspaces/default")[0] == 400
    assert srv.json("DELETE", f"{API}/workspaces/nope")[0] == 404


def test_http_create_at(start_server):
    """POST /api/v1/workspaces {"name","at"}: made at that time when it is
    after the newest write and not in the future; a bad "at" is 400 and
    makes nothing."""
    srv = start_server()
    for at in ("yesterday", 5, None, "@0", "2999-01-01T00:00:00Z"):
        st, err = srv.json("POST", f"{API}/workspaces", {"name": "w", "at": at})
        assert st == 400 and err["error"]["code"] == "invalid", (at, err)
    assert srv.json("GET", f"{API}/workspaces")[1] == {"workspaces": ["default"]}
    st, rec = srv.json("PUT", f"{API}/namespaces/n/keys/k", 1)
    assert st == 201
    st, err = srv.json("POST", f"{API}/workspaces", {"name": "w", "at": rec["timestamp"]})
    assert st == 400 and "newest write" in err["error"]["message"], err
    assert srv.json("GET", f"{API}/workspaces")[1] == {"workspaces": ["default"]}
    st, out = srv.json("POST", f"{API}/workspaces", {"name": "w", "at": "@%d" % (ts_to_ns(rec["timestamp"]) + 1)})
    assert (st, out) == (201, {"workspace": "w"})
    assert srv.json("GET", f"{API}/workspaces")[1] == {"workspaces": ["default", "w"]}


def test_http_not_found_says_the_versions_went_with_the_workspace(start_server, kd_raw):
    """A key (or vector) whose versions went with its dropped workspace is
    404 saying so, as kdelta says; it said "never written"."""
    srv = start_server()
    assert srv.json("POST", f"{API}/workspaces", {"name": "w"})[0] == 201
    assert srv.json("PUT", f"{API}/ws/w/namespaces/u/keys/a", {"x": 1})[0] == 201
    st, vrec = srv.json("PUT", f"{API}/ws/w/namespaces/u/keys/v/vector", {"model": "m", "vector": [1, 2]})
    assert st == 201
    assert srv.json("DELETE", f"{API}/workspaces/w")[0] == 200
    assert srv.json("POST", f"{API}/compact", {})[0] == 200
    assert srv.json("POST", f"{API}/workspaces", {"name": "w"})[0] == 201
    for path, what in ((f"{API}/ws/w/namespaces/u/keys/a", "versions"),
                       (f"{API}/ws/w/namespaces/u/keys/v/vector", "vectors")):
        st, err = srv.json("GET", path)
        assert st == 404 and err["error"]["code"] == "not_found", err
        assert f"its {what} were removed when its workspace was dropped" in err["error"]["message"], err
    st, err = srv.json("GET", f"{API}/ws/w/namespaces/u/keys/never")
    assert st == 404 and err["error"]["message"] == "not found: never written", err
    # that version asked for by time: 410, naming the key as the caller does
    st, err = srv.json("GET", f"{API}/ws/w/namespaces/u/keys/v/vector?at=" + vrec["timestamp"])
    assert st == 410 and err["error"]["code"] == "pruned", err
    assert err["error"]["message"].startswith("the vector at u/v: ") and "_kd" not in err["error"]["message"], err
    # a PUT there makes a live value or vector where none was: 201, as for a new key
    for path, body in ((f"{API}/ws/w/namespaces/u/keys/a", {"x": 2}),
                       (f"{API}/ws/w/namespaces/u/keys/v/vector", {"model": "m", "vector": [3, 4]})):
        st, hdrs, _ = srv.request("PUT", path, body)
        assert st == 201 and hdrs["Location"] == path, (path, st)


def test_http_create_refuses_unknown_members(start_server):
    """A create body holds "name" and "at" only: a mistyped "At" made the
    workspace now, without a word."""
    srv = start_server()
    for body in ({"name": "w", "At": "@5"}, {"name": "w", "bogus": True}):
        st, err = srv.json("POST", f"{API}/workspaces", body)
        assert st == 400 and "unknown member" in err["error"]["message"], err
    assert srv.json("GET", f"{API}/workspaces")[1] == {"workspaces": ["default"]}


def test_http_location_names_the_workspace(start_server):
    """A view or an index made under /api/v1/ws/{ws}/ lives there: its
    Location says so (it named the default workspace's)."""
    srv = start_server()
    assert srv.json("POST", f"{API}/workspaces", {"name": "s t"})[0] == 201
    ws = f"{API}/ws/{quote_seg('s t')}"
    assert srv.json("PUT", f"{ws}/namespaces/users/keys/alice", {"age": 40})[0] == 201
    st, hdrs, _ = srv.request("POST", f"{ws}/views", json.dumps({"name": "v", "source": "users"}),
                              {"Content-Type": "application/json"})
    assert st == 201 and hdrs["Location"] == "/api/v1/ws/s%20t/views/v", hdrs
    assert srv.json("GET", hdrs["Location"])[0] == 200
    assert srv.json("GET", f"{API}/views/v")[0] == 404
    st, hdrs, _ = srv.request("POST", f"{ws}/indexes", json.dumps({"namespace": "users", "field": "age"}),
                              {"Content-Type": "application/json"})
    assert st == 201 and hdrs["Location"] == "/api/v1/ws/s%20t/indexes/users/age", hdrs
    assert srv.json("DELETE", hdrs["Location"])[0] == 200
    assert srv.json("GET", f"{ws}/indexes")[1] == {"indexes": []}


@pytest.fixture
def auth(start_server, tmp_path, env):
    return Auth(start_server, tmp_path, env)


def test_grants_are_scoped_by_workspace(auth):
    a = auth
    for name in ("A", "B"):
        assert a.call(a.otok, "POST", f"{API}/workspaces", {"name": name})[0] == 201
    # the owner grants alice write on everything of workspace A only
    r = kdu(a.srv, a.env, a.owner_kf, "-w", "A", "--json", "auth", "grant", a.alice["public_key"], "*", "write")
    assert r.rc == 0, r.err
    assert a.call(a.atok, "PUT", f"{API}/ws/A/namespaces/n/keys/k", 1)[0] == 201
    assert a.call(a.atok, "GET", f"{API}/ws/A/namespaces/n/keys/k")[0] == 200
    assert a.call(a.otok, "PUT", f"{API}/ws/B/namespaces/n/keys/k", 2)[0] == 201
    for method, path, body in (("GET", f"{API}/namespaces/n/keys/k", None),
                               ("PUT", f"{API}/namespaces/n/keys/k", 3)):
        st, err = a.call(a.atok, method, path, body)
        assert st == 403, (method, path, st, err)
    # B, where alice holds nothing, is to her as a workspace that does not
    # exist (or was dropped): the same 404, listings included
    assert a.call(a.otok, "POST", f"{API}/workspaces", {"name": "old"})[0] == 201
    assert a.call(a.otok, "DELETE", f"{API}/workspaces/old")[0] == 200
    for method, tail, body in (("GET", "namespaces/n/keys/k", None), ("PUT", "namespaces/n/keys/k", 3),
                               ("POST", "namespaces/n/query", {}), ("GET", "namespaces", None),
                               ("POST", "vectors/search", {"vector": [1, 0]}), ("GET", "watch", None)):
        answers = set()
        for ws in ("B", "nosuch", "old"):
            st, err = a.call(a.atok, method, f"{API}/ws/{ws}/{tail}", body)
            answers.add((st, err["error"]["code"], err["error"]["message"].replace(f"'{ws}'", "'W'")))
            assert a.call(None, method, f"{API}/ws/{ws}/{tail}", body)[0] == 401  # no session: not even that
        assert answers == {(404, "not_found", "no workspace named 'W' (create it first)")}, (method, tail, answers)
    assert a.call(a.otok, "GET", f"{API}/ws/B/namespaces")[0] == 200
    assert a.call(a.otok, "GET", f"{API}/ws/nosuch/namespaces")[0] == 404
    assert a.call(a.atok, "GET", f"{API}/ws/_kdx/namespaces")[0] == 400  # a bad name is a bad name
    # listings show nothing of B, nor B itself
    assert a.call(a.atok, "GET", f"{API}/workspaces") == (200, {"workspaces": ["A"]})
    assert a.call(a.otok, "GET", f"{API}/workspaces") == (200, {"workspaces": ["A", "B", "default"]})
    assert a.call(a.atok, "GET", f"{API}/ws/A/namespaces") == (200, {"namespaces": ["n"]})
    # a status shows the whole database (disk, last write, roots: every
    # workspace's activity), so a reader of all of A may not see even A's
    st, err = a.call(a.atok, "GET", f"{API}/ws/A/status")
    assert st == 403 and "default workspace" in err["error"]["message"], err
    st, out = a.call(a.otok, "GET", f"{API}/ws/A/status")
    assert st == 200 and out["keys"] == 1, out
    # the CLI with -w goes to the workspace's routes
    r = kdu(a.srv, a.env, a.alice_kf, "-w", "A", "get", "n/k")
    assert r.rc == 0 and r.out.strip() == "1", r.err
    r = kdu(a.srv, a.env, a.alice_kf, "-w", "B", "get", "n/k")
    assert r.rc == 3 and "holds a grant in" in r.err, r.err  # B is not even listed to alice
    # creating and dropping a workspace need admin of it
    assert a.call(a.atok, "POST", f"{API}/workspaces", {"name": "C"})[0] == 403
    assert a.call(a.atok, "DELETE", f"{API}/workspaces/A")[0] == 403  # write is not admin
    assert a.call(a.atok, "POST", f"{API}/workspaces/A/import", {"versions": []})[0] == 403
    r = kdu(a.srv, a.env, a.owner_kf, "-w", "C", "auth", "grant", a.alice["public_key"], "*", "admin")
    assert r.rc == 0, r.err
    st, err = a.call(a.atok, "POST", f"{API}/workspaces/C/import", {"versions": []})
    assert st == 400 and err["error"]["code"] == "invalid", err  # past the gate: the body is refused
    assert a.call(a.atok, "POST", f"{API}/workspaces", {"name": "C"})[0] == 201
    assert a.call(a.atok, "PUT", f"{API}/ws/C/namespaces/x/keys/y", 1)[0] == 201
    assert a.call(a.atok, "DELETE", f"{API}/workspaces/C")[0] == 200
    assert a.call(a.atok, "DELETE", f"{API}/workspaces/B")[0] == 403
    # an admin of C cannot grant in A
    bob_kf = str(a.dir / "bob.json")
    bob = keygen(a.env, bob_kf, "bob")
    assert kdu(a.srv, a.env, bob_kf, "auth", "register").rc == 0
    r = kdu(a.srv, a.env, a.alice_kf, "-w", "A", "auth", "grant", bob["public_key"], "*", "read")
    assert r.rc == 4, (r.rc, r.err)
    # reading all of default is not reading A: A's status shows A's key counts
    assert a.grant("*", "read", grantee=bob["public_key"]).rc == 0
    btok = token_of(a.srv, a.env, bob_kf)
    assert a.call(btok, "GET", f"{API}/status")[0] == 200
    assert a.call(btok, "GET", f"{API}/ws/A/status")[0] == 404  # bob holds nothing in A
    assert kdu(a.srv, a.env, a.owner_kf, "-w", "A", "auth", "grant", bob["public_key"], "zzz", "read").rc == 0
    assert a.call(btok, "GET", f"{API}/ws/A/status")[0] == 403


def test_forbidden_names_the_workspace(auth):
    """A 403 on /api/v1/ws/{ws}/… says which workspace it is about (other
    than default); on the plain routes it does not mention one."""
    a = auth
    assert a.call(a.otok, "POST", f"{API}/workspaces", {"name": "app.one"})[0] == 201
    # alice holds something in app.one, not what these requests need
    r = kdu(a.srv, a.env, a.owner_kf, "-w", "app.one", "auth", "grant", a.alice["public_key"], "zzz", "read")
    assert r.rc == 0, r.err
    for path, where in ((f"{API}/ws/app.one/namespaces/n/keys/k", "workspace 'app.one'"),
                        (f"{API}/ws/app.one/namespaces/n/query", "workspace 'app.one'")):
        st, err = a.call(a.atok, "PUT" if path.endswith("/k") else "POST", path, 1 if path.endswith("/k") else {})
        assert st == 403 and where in err["error"]["message"], (path, err)
    st, err = a.call(a.atok, "POST", f"{API}/ws/app.one/batch", {"writes": [{"namespace": "n", "key": "k", "value": 1}]})
    assert st == 403 and "workspace 'app.one'" in err["error"]["message"], err
    for path in (f"{API}/namespaces/n/keys/k", f"{API}/ws/default/namespaces/n/keys/k"):
        st, err = a.call(a.atok, "PUT", path, 1)
        assert st == 403 and "workspace" not in err["error"]["message"], (path, err)


def test_http_workspace_import(start_server, tmp_path):
    """POST /api/v1/workspaces/{name}/import: a workspace's history goes into
    a workspace of that name, made 1 ns before the first version when it is
    missing, and only when the versions import: a refused request makes
    nothing (`kdelta --url … -w W import --history` made W first, and a W
    newer than any history could never take one)."""
    src = start_server(db_dir=str(tmp_path / "src"))
    assert src.json("POST", f"{API}/workspaces", {"name": "w"})[0] == 201
    for v in (1, 2, 3):
        assert src.json("PUT", f"{API}/ws/w/namespaces/n/keys/k", {"v": v})[0] in (200, 201)
    st, page = src.json("GET", f"{API}/ws/w/changes")
    assert st == 200
    hist = page["changes"]
    assert [h["value"] for h in hist] == [{"v": 1}, {"v": 2}, {"v": 3}]

    dst = start_server(db_dir=str(tmp_path / "dst"))
    # a history written in "w" does not hash as one of "x": refused, nothing made
    st, err = dst.json("POST", f"{API}/workspaces/x/import", {"versions": hist})
    assert st == 400 and "does not match" in err["error"]["message"], err
    assert dst.json("GET", f"{API}/workspaces")[1] == {"workspaces": ["default"]}
    # a bad body or name: 400, nothing made
    assert dst.json("POST", f"{API}/workspaces/w/import", {"versions": 1})[0] == 400
    assert dst.json("POST", f"{API}/workspaces/_kd.w/import", {"versions": hist})[0] == 400
    assert dst.json("GET", f"{API}/workspaces")[1] == {"workspaces": ["default"]}

    st, out = dst.json("POST", f"{API}/workspaces/w/import", {"versions": hist[:2]})
    assert (st, out) == (201, {"imported": 2, "workspace": "w", "created": True}), out
    st, out = dst.json("POST", f"{API}/workspaces/w/import", {"versions": hist[2:]})
    assert (st, out) == (200, {"imported": 1, "workspace": "w", "created": False}), out
    st, rec = dst.json("GET", f"{API}/ws/w/namespaces/n/keys/k")
    assert st == 200 and rec["write_id"] == hist[2]["write_id"] and rec["value"] == {"v": 3}
    st, v = dst.json("POST", f"{API}/verify", {})
    assert st == 200 and v["ok"] is True, v


def stream_ids(a, tok, path, count, last_event_id=None):
    """The ids of the first `count` id lines of a watch stream (its
    opening line first)."""
    headers = bearer(tok)
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    conn, resp = a.srv.open_stream(path, headers=headers, timeout=10)
    try:
        assert resp.status == 200, resp.read()
        ids = []
        for ev in sse_events(resp):
            if "id" in ev:
                ids.append(int(ev["id"]))
                if len(ids) == count:
                    return ids
    finally:
        conn.close()


def test_a_tenants_watch_does_not_tell_the_databases_last_write(auth):
    """A stream's first id is where it starts. For a caller who may not
    read the whole database it is the newest write it may read, not the
    database's last write (which tells of other workspaces' writes and of
    logins); a Last-Event-ID past the last write is not refused (which
    would tell that write), but resumed from like any other."""
    a = auth
    assert a.call(a.otok, "POST", f"{API}/workspaces", {"name": "A"})[0] == 201
    r = kdu(a.srv, a.env, a.owner_kf, "-w", "A", "auth", "grant", a.alice["public_key"], "*", "write")
    assert r.rc == 0, r.err
    assert a.call(a.atok, "PUT", f"{API}/ws/A/namespaces/n/keys/k", 1)[0] == 201
    assert a.call(a.otok, "PUT", f"{API}/namespaces/d/keys/k", 2)[0] == 201  # later, elsewhere
    start, mine = stream_ids(a, a.atok, f"{API}/ws/A/watch", 2, last_event_id=0)
    assert start == 0 and mine > 0
    (db_last,) = stream_ids(a, a.otok, f"{API}/watch", 1)
    assert db_last > mine
    assert stream_ids(a, a.atok, f"{API}/ws/A/watch", 1) == [mine]
    assert stream_ids(a, a.atok, f"{API}/ws/A/watch?ns=n", 1) == [mine]
    assert stream_ids(a, a.atok, f"{API}/ws/A/watch?ns=n&key=k", 1) == [mine]
    # any id is taken and given back, before or after the database's last
    # write: whether it is after cannot be told from the answer
    for lei in (mine - 1, db_last - 1, db_last, db_last + 1, db_last + 10**9):
        assert stream_ids(a, a.atok, f"{API}/ws/A/watch", 1, last_event_id=lei) == [lei]
    # the owner is told the database's last write, and refused a later id
    st, _, data = a.srv.request("GET", f"{API}/watch", headers=dict(bearer(a.otok), **{"Last-Event-ID": str(db_last + 10**9)}))
    assert st == 400 and str(db_last) in data.decode(), data
