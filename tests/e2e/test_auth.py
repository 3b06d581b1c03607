"""Self-sovereign auth end to end (docs/AUTH.md): `kdelta auth keygen`,
`kdelta serve --auth`, registration with a server-checked proof of work,
challenge-response login, session tokens, capabilities, and the gate in
front of every data route.

Servers here run with a low minimum difficulty (--auth-difficulty 4) so
mining takes no time. Tokens are obtained the way users obtain them:
`kdelta --url URL --identity KEYFILE …` logs in and caches the token in
KEYFILE.sessions, which the tests read. Tests that sign a challenge
themselves need Debian's python3-cryptography and skip without it.
"""
import http.client
import json
import os
import re
import stat
import time
from urllib.parse import quote

import pytest

from helpers import run_kdelta
from server import quote_query, sse_events

API = "/api/v1"
DIFF = "4"


# ---- helpers ---------------------------------------------------------------


def keygen(env, path, name=None, difficulty=DIFF):
    args = ["auth", "keygen", "--out", path, "--difficulty", difficulty]
    if name:
        args += ["--name", name]
    r = run_kdelta(args, env=env)
    assert r.rc == 0, r.err
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def kdu(srv, env, keyfile, *args):
    return run_kdelta(["--url", srv.url, "--identity", keyfile, *args], env=env)


def token_of(srv, env, keyfile):
    """Log in with the CLI and read the cached token."""
    r = kdu(srv, env, keyfile, "auth", "whoami")
    assert r.rc == 0, r.err
    with open(keyfile + ".sessions", encoding="utf-8") as f:
        for line in f:
            url, tok, _ = line.split()
            if url == srv.url.rstrip("/"):
                return tok
    raise AssertionError("no cached session for " + srv.url)


def bearer(tok):
    return {"Authorization": "Bearer " + tok}


class Auth:
    """A server with --auth, its owner and one more identity (alice)."""

    def __init__(self, start_server, tmp_path, env, extra=()):
        self.env = env
        self.dir = tmp_path
        self.srv = start_server(args=["--auth", "--auth-difficulty", DIFF, *extra])
        self.owner_kf = str(tmp_path / "owner.json")
        self.alice_kf = str(tmp_path / "alice.json")
        self.owner = keygen(env, self.owner_kf, "owner")
        self.alice = keygen(env, self.alice_kf, "alice")
        r = kdu(self.srv, env, self.owner_kf, "auth", "register")
        assert r.rc == 0 and "owner" in r.out, r.err
        r = kdu(self.srv, env, self.alice_kf, "auth", "register")
        assert r.rc == 0 and "owner" not in r.out, r.err
        r = kdu(self.srv, env, self.alice_kf, "auth", "register")
        assert r.rc == 6 and "already registered" in r.err
        self.otok = token_of(self.srv, env, self.owner_kf)
        self.atok = token_of(self.srv, env, self.alice_kf)

    def call(self, tok, method, path, body=None):
        return self.srv.json(method, path, body, headers=bearer(tok) if tok else None)

    def grant(self, ns, perm, prefix=None, expires=None, grantee=None, as_kf=None):
        args = ["--json", "auth", "grant", grantee or self.alice["public_key"], ns, perm]
        if prefix:
            args += ["--prefix", prefix]
        if expires:
            args += ["--expires", expires]
        r = kdu(self.srv, self.env, as_kf or self.owner_kf, *args)
        return r


@pytest.fixture
def auth(start_server, tmp_path, env):
    return Auth(start_server, tmp_path, env)


def seed(a):
    """Some data of every kind, written by the owner."""
    assert a.call(a.otok, "PUT", f"{API}/namespaces/app.x/keys/pub%2F1", {"v": 1})[0] == 201
    assert a.call(a.otok, "PUT", f"{API}/namespaces/app.x/keys/secret", {"v": 2})[0] == 201
    assert a.call(a.otok, "PUT", f"{API}/namespaces/other/keys/k", {"v": 3})[0] == 201
    st, _ = a.call(a.otok, "PUT", f"{API}/namespaces/app.x/keys/pub%2F1/vector",
                   {"model": "m", "vector": [1, 0, 0]})
    assert st == 201
    st, _ = a.call(a.otok, "PUT", f"{API}/namespaces/other/keys/k/vector", {"model": "m", "vector": [1, 0, 0]})
    assert st == 201
    st, _ = a.call(a.otok, "POST", f"{API}/views", {"name": "vx", "source": "app.x", "query": {}})
    assert st == 201
    st, _ = a.call(a.otok, "POST", f"{API}/views", {"name": "vo", "source": "other", "query": {}})
    assert st == 201
    st, _ = a.call(a.otok, "POST", f"{API}/indexes", {"namespace": "other", "field": "v"})
    assert st == 201


# Every route family: (method, path, body). Namespace app.x, key "secret".
ROUTES = [
    ("GET", f"{API}/status", None),
    ("GET", f"{API}/namespaces/app.x/keys", None),
    ("GET", f"{API}/namespaces/app.x/keys/secret", None),
    ("PUT", f"{API}/namespaces/app.x/keys/secret", {"v": 9}),
    ("DELETE", f"{API}/namespaces/app.x/keys/secret", None),
    ("GET", f"{API}/namespaces/app.x/keys/secret/history", None),
    ("GET", f"{API}/namespaces/app.x/keys/secret/diff", None),
    ("POST", f"{API}/namespaces/app.x/keys/secret/history/query", {}),
    ("POST", f"{API}/batch", {"writes": [{"namespace": "app.x", "key": "secret", "value": 1}]}),
    ("POST", f"{API}/namespaces/app.x/query", {"filter": "v > 0"}),
    ("GET", f"{API}/namespaces/app.x/query?filter=v%20%3E%200", None),
    ("GET", f"{API}/namespaces/app.x/scan", None),
    ("POST", f"{API}/views", {"name": "new", "source": "app.x", "query": {}}),
    ("GET", f"{API}/views/vx", None),
    ("GET", f"{API}/views/vx/rows", None),
    ("POST", f"{API}/views/vx/refresh", None),
    ("DELETE", f"{API}/views/vx", None),
    ("POST", f"{API}/indexes", {"namespace": "app.x", "field": "v"}),
    ("DELETE", f"{API}/indexes/other/v", None),
    ("PUT", f"{API}/namespaces/app.x/keys/secret/vector", {"model": "m", "vector": [0, 1, 0]}),
    ("GET", f"{API}/namespaces/app.x/keys/pub%2F1/vector", None),
    ("GET", f"{API}/namespaces/app.x/keys/pub%2F1/vector/history", None),
    ("DELETE", f"{API}/namespaces/app.x/keys/pub%2F1/vector", None),
    ("POST", f"{API}/namespaces/app.x/vectors/search", {"vector": [1, 0, 0]}),
    ("GET", f"{API}/namespaces/app.x/vectors/stats", None),
    ("GET", f"{API}/changes", None),
    ("GET", f"{API}/changes?ns=app.x", None),
    ("POST", f"{API}/import", {"versions": []}),
    ("POST", f"{API}/verify", None),
    ("GET", f"{API}/watch?ns=app.x", None),
    ("GET", "/metrics", None),
    ("PUT", f"{API}/retention/app.x", {"keep_last": 5}),
    ("GET", f"{API}/retention/app.x", None),
    ("DELETE", f"{API}/retention/app.x", None),
    ("GET", f"{API}/retention", None),
    ("POST", f"{API}/compact", {"dry_run": True}),
    ("POST", f"{API}/workspaces", {"name": "wsx"}),
    ("DELETE", f"{API}/workspaces/wsx", None),
    ("GET", f"{API}/ws/default/status", None),
    ("GET", f"{API}/ws/default/namespaces/app.x/keys/secret/history", None),
]

# Routes that answer any session, showing only what it may read.
LISTINGS = [
    ("GET", f"{API}/namespaces", None),
    ("GET", f"{API}/views", None),
    ("GET", f"{API}/indexes", None),
    ("POST", f"{API}/vectors/search", {"vector": [1, 0, 0]}),
    ("GET", f"{API}/vectors/stats", None),
    ("GET", f"{API}/workspaces", None),
]


def request(a, method, path, body, headers):
    if path.startswith(f"{API}/watch"):
        conn, resp = a.srv.open_stream(path, headers)
        status, hdrs = resp.status, resp.headers
        data = resp.read() if status != 200 else b""
        conn.close()
        return status, hdrs, data
    return a.srv.request(method, path, body, headers=headers)


# ---- keys and key files ------------------------------------------------------


def test_keygen_writes_0600_and_never_prints_the_secret(tmp_path, env):
    kf = str(tmp_path / "k.json")
    r = run_kdelta(["auth", "keygen", "--out", kf, "--difficulty", "8", "--name", "me"], env=env)
    assert r.rc == 0, r.err
    assert stat.S_IMODE(os.stat(kf).st_mode) == 0o600
    doc = json.load(open(kf, encoding="utf-8"))
    assert doc["format"] == "korudelta-identity-v1"
    assert doc["user_data"] == {"name": "me"}
    assert doc["public_key"] in r.out
    assert doc["secret_key"] not in r.out + r.err
    # Never over an existing file.
    r2 = run_kdelta(["auth", "keygen", "--out", kf, "--difficulty", "0"], env=env)
    assert r2.rc == 2 and "already exists" in r2.err
    assert json.load(open(kf, encoding="utf-8")) == doc
    # Only when asked.
    kf2 = str(tmp_path / "k2.json")
    r3 = run_kdelta(["auth", "keygen", "--out", kf2, "--difficulty", "0", "--show-secret"], env=env)
    assert r3.rc == 0 and json.load(open(kf2, encoding="utf-8"))["secret_key"] in r3.out
    # Bad options.
    assert run_kdelta(["auth", "keygen", "--out", str(tmp_path / "x"), "--difficulty", "99"], env=env).rc == 2
    assert run_kdelta(["auth", "frobnicate"], env=env).rc == 2


def test_proof_of_work_below_the_server_minimum_is_refused(start_server, tmp_path, env):
    srv = start_server(args=["--auth", "--auth-difficulty", "14"])
    # A key mined at 0 bits has fewer than 14 (but for a 1 in 16384 chance: mine again then).
    for i in range(5):
        kf = str(tmp_path / f"weak{i}.json")
        doc = keygen(env, kf, difficulty="0")
        if doc["difficulty"] < 14:
            break
    r = kdu(srv, env, kf, "auth", "register")
    assert r.rc == 4 and "proof of work too weak" in r.err and "14" in r.err
    # A document that claims a difficulty is refused: the server computes it.
    body = {k: doc[k] for k in ("created_at", "nonce", "public_key", "user_data")}
    st, out = srv.json("POST", f"{API}/auth/register", dict(body, difficulty=64))
    assert st == 400 and out["error"]["code"] == "invalid"
    st, out = srv.json("POST", f"{API}/auth/register", body)
    assert st == 400 and "proof of work" in out["error"]["message"]
    # Changing any field of a mined document breaks its work.
    strong = keygen(env, str(tmp_path / "strong.json"), difficulty="14")
    body = {k: strong[k] for k in ("created_at", "nonce", "public_key", "user_data")}
    st, _ = srv.json("POST", f"{API}/auth/register", dict(body, user_data={"name": "mallory"}))
    assert st == 400
    st, out = srv.json("POST", f"{API}/auth/register", body)
    assert st == 201 and out["owner"] is True and out["difficulty"] >= 14
    st, out = srv.json("POST", f"{API}/auth/register", body)
    assert st == 409


# ---- 401 and 403 -------------------------------------------------------------


def test_every_data_route_needs_a_valid_token(auth):
    a = auth
    seed(a)
    bogus = "0" * 64
    for method, path, body in ROUTES + LISTINGS:
        for headers, why in [(None, "no token"), ({"Authorization": "Bearer"}, "malformed"),
                             ({"Authorization": "Basic " + a.otok}, "wrong scheme"),
                             ({"Authorization": "Bearer " + a.otok[:-1]}, "short"),
                             ({"Authorization": "Bearer " + bogus}, "unknown token")]:
            st, hdrs, data = request(a, method, path, body, headers)
            assert st == 401, (method, path, why, st, data)
            assert hdrs["WWW-Authenticate"].startswith("Bearer realm=\"korudelta\""), (method, path)
            assert json.loads(data)["error"]["code"] == "unauthorized"
    # The open routes.
    assert a.srv.request("GET", "/healthz")[0] == 200
    st, _ = a.srv.json("POST", f"{API}/auth/challenge")
    assert st == 200
    # Nothing was changed by any refused request.
    st, v = a.call(a.otok, "GET", f"{API}/namespaces/app.x/keys/secret")
    assert st == 200 and v["value"] == {"v": 2}


def test_no_capability_is_403_and_listings_are_empty(auth):
    a = auth
    seed(a)
    for method, path, body in ROUTES:
        st, hdrs, data = request(a, method, path, body, bearer(a.atok))
        assert st == 403, (method, path, st, data)
        assert json.loads(data)["error"]["code"] == "forbidden"
    assert a.call(a.atok, "GET", f"{API}/namespaces") == (200, {"namespaces": []})
    assert a.call(a.atok, "GET", f"{API}/views") == (200, {"views": []})
    assert a.call(a.atok, "GET", f"{API}/indexes") == (200, {"indexes": []})
    assert a.call(a.atok, "GET", f"{API}/vectors/stats") == (200, {"stats": []})
    assert a.call(a.atok, "POST", f"{API}/vectors/search", {"vector": [1, 0, 0]}) == (200, {"hits": []})
    # The owner passes the gate of every one of them (an empty import is
    # then refused by the route itself).
    for method, path, body in ROUTES:
        st, _, data = request(a, method, path, body, bearer(a.otok))
        assert st < 300 or (path.endswith("/import") and st == 400), (method, path, st, data)


def test_grants_scope_reads_writes_and_listings(auth):
    a = auth
    seed(a)
    r = a.grant("app.*", "read", prefix="pub/")
    assert r.rc == 0, r.err
    gid = json.loads(r.out)["id"]
    assert a.call(a.atok, "GET", f"{API}/namespaces/app.x/keys/pub%2F1")[0] == 200
    assert a.call(a.atok, "GET", f"{API}/namespaces/app.x/keys/secret")[0] == 403
    assert a.call(a.atok, "GET", f"{API}/namespaces/other/keys/k")[0] == 403
    assert a.call(a.atok, "PUT", f"{API}/namespaces/app.x/keys/pub%2F2", 1)[0] == 403
    # Listings show only what may be read; the cursor never names a hidden key.
    assert a.call(a.atok, "GET", f"{API}/namespaces")[1] == {"namespaces": ["app.x"]}
    assert a.call(a.atok, "GET", f"{API}/namespaces/app.x/keys")[1] == {"keys": ["pub/1"], "next": None}
    assert a.call(a.atok, "GET", f"{API}/namespaces/app.x/keys?limit=1")[1] == {"keys": ["pub/1"], "next": None}
    # A prefix grant does not cover whole-namespace reads (queries, views, search).
    assert a.call(a.atok, "POST", f"{API}/namespaces/app.x/query", {})[0] == 403
    assert a.call(a.atok, "GET", f"{API}/views/vx/rows")[0] == 403
    assert a.call(a.atok, "GET", f"{API}/views")[1] == {"views": []}
    # …nor cross-namespace vector search: vectors it may not read would still
    # take places among the best k (with a filter, an oracle on their metadata).
    st, out = a.call(a.atok, "POST", f"{API}/vectors/search", {"vector": [1, 0, 0], "k": 10})
    assert st == 200 and out["hits"] == [], out
    st, out = a.call(a.atok, "POST", f"{API}/vectors/search", {"vector": [1, 0, 0], "k": 1, "filter": "v == 2"})
    assert st == 200 and out["hits"] == [], out
    # Write on the whole namespace: write and read everything in it, nothing else.
    r = a.grant("app.x", "write")
    assert r.rc == 0, r.err
    assert a.call(a.atok, "PUT", f"{API}/namespaces/app.x/keys/new", {"n": 1})[0] == 201
    assert a.call(a.atok, "GET", f"{API}/namespaces/app.x/keys/secret")[0] == 200
    assert a.call(a.atok, "POST", f"{API}/namespaces/app.x/query", {})[1]["total"] == 3
    assert [v["name"] for v in a.call(a.atok, "GET", f"{API}/views")[1]["views"]] == ["vx"]
    assert a.call(a.atok, "GET", f"{API}/views/vx/rows")[0] == 200
    assert a.call(a.atok, "GET", f"{API}/views/vo/rows")[0] == 403
    # A view it may not read answers as one that does not exist: the 403
    # names neither the view's source nor whether it exists.
    for suffix, method in (("", "GET"), ("/rows", "GET"), ("/refresh", "POST"), ("", "DELETE")):
        there = request(a, method, f"{API}/views/vo{suffix}", None, bearer(a.atok))
        absent = request(a, method, f"{API}/views/nope{suffix}", None, bearer(a.atok))
        assert there[0] == absent[0] == 403 and there[2] == absent[2], (suffix, there[2], absent[2])
        assert b"other" not in there[2]
    st, out = a.call(a.atok, "POST", f"{API}/vectors/search", {"vector": [1, 0, 0], "k": 10})
    assert st == 200 and [(h["namespace"], h["key"]) for h in out["hits"]] == [("app.x", "pub/1")], out
    st, _ = a.call(a.atok, "POST", f"{API}/batch", {"writes": [
        {"namespace": "app.x", "key": "b1", "value": 1}, {"namespace": "other", "key": "b2", "value": 2}]})
    assert st == 403
    assert a.call(a.otok, "GET", f"{API}/namespaces/app.x/keys/b1")[0] == 404  # nothing of the batch applied
    assert a.call(a.atok, "DELETE", f"{API}/views/vx")[0] == 403  # needs admin
    assert a.call(a.atok, "GET", f"{API}/status")[0] == 403
    # Listing grants: alice sees hers; the owner sees all.
    ids = {g["id"] for g in a.call(a.atok, "GET", f"{API}/auth/grants")[1]["grants"]}
    assert gid in ids and len(ids) == 2
    st, who = a.call(a.atok, "GET", f"{API}/auth/whoami")
    assert st == 200 and who["owner"] is False and who["public_key"] == a.alice["public_key"]
    assert len(who["grants"]) == 2


def test_prefix_grants_list_only_the_namespaces_and_keys_they_reach(auth):
    """A grant on a key prefix of every namespace lists the namespaces that
    hold such a key, not all of them; key pages follow the prefixes."""
    a = auth
    for ns, key in [("app.a", "pub/1"), ("app.a", "x"), ("app.b", "y"), ("app.c", "pub/2"), ("app.c", "pub/3"),
                    ("app.c", "q1"), ("app.c", "r"), ("app.d", "pub/sub/1")]:
        assert a.call(a.otok, "PUT", f"{API}/namespaces/{ns}/keys/{quote(key, safe='')}", 1)[0] == 201
    for prefix in ("pub/", "pub/sub/", "q"):  # pub/sub/ extends pub/: listed once
        r = a.grant("*", "read", prefix=prefix)
        assert r.rc == 0, r.err
    assert a.call(a.atok, "GET", f"{API}/namespaces")[1] == {"namespaces": ["app.a", "app.c", "app.d"]}
    assert a.call(a.atok, "GET", f"{API}/namespaces/app.b/keys")[1] == {"keys": [], "next": None}
    assert a.call(a.atok, "GET", f"{API}/namespaces/app.c/keys")[1] == {"keys": ["pub/2", "pub/3", "q1"],
                                                                            "next": None}
    page = a.call(a.atok, "GET", f"{API}/namespaces/app.c/keys?limit=2")[1]
    assert page == {"keys": ["pub/2", "pub/3"], "next": "pub/3"}
    page = a.call(a.atok, "GET", f"{API}/namespaces/app.c/keys?limit=2&after=pub%2F3")[1]
    assert page == {"keys": ["q1"], "next": None}
    for prefix, keys in [("p", ["pub/2", "pub/3"]), ("pub%2F3", ["pub/3"]), ("pub%2F2x", []), ("r", []),
                         ("q", ["q1"])]:
        assert a.call(a.atok, "GET", f"{API}/namespaces/app.c/keys?prefix={prefix}")[1]["keys"] == keys, prefix
    # A namespace whose readable keys are all deleted is no longer listed.
    assert a.call(a.otok, "DELETE", f"{API}/namespaces/app.a/keys/pub%2F1")[0] == 200
    assert a.call(a.atok, "GET", f"{API}/namespaces")[1] == {"namespaces": ["app.c", "app.d"]}
    # The owner sees everything.
    assert a.call(a.otok, "GET", f"{API}/namespaces")[1]["namespaces"] == ["app.a", "app.b", "app.c", "app.d"]


def test_prefix_grant_pages_match_a_brute_force_listing(auth):
    """Key pages of a caller with overlapping prefix grants, for many
    ?prefix= values and page sizes, followed by their cursors, list exactly
    the live keys under both the asked prefix and one of the grants."""
    import random
    a = auth
    rnd = random.Random(7)
    keys = sorted({"".join(rnd.choice("abc/") for _ in range(rnd.randint(1, 4))) for _ in range(120)})
    for k in keys:
        assert a.call(a.otok, "PUT", f"{API}/namespaces/app/keys/{quote(k, safe='')}", 1)[0] == 201
    deleted = set(keys[::7])
    for k in deleted:
        assert a.call(a.otok, "DELETE", f"{API}/namespaces/app/keys/{quote(k, safe='')}")[0] == 200
    grants = ["ab", "a", "b/", "c/a", "c/ab"]
    for g in grants:
        assert a.grant("app", "read", prefix=g).rc == 0
    for asked in ["", "a", "ab", "abc", "b", "b/", "b/a", "c", "c/", "c/a", "c/ab/", "/"]:
        want = [k for k in keys if k not in deleted and k.startswith(asked) and any(k.startswith(g) for g in grants)]
        for limit in (1, 2, 3, 50):
            got, after = [], None
            for _ in range(len(keys) + 2):
                url = f"{API}/namespaces/app/keys?limit={limit}&prefix={quote(asked, safe='')}"
                if after is not None:
                    url += f"&after={quote(after, safe='')}"
                st, page = a.call(a.atok, "GET", url)
                assert st == 200, page
                assert len(page["keys"]) <= limit
                got += page["keys"]
                if page["next"] is None:
                    break
                assert page["next"] == page["keys"][-1]
                after = page["next"]
            assert got == want, (asked, limit)


def test_listings_follow_a_grant_its_granter_now_administers_in_part(auth, tmp_path, env):
    """A grant outlives a change to its granter's rights: when the granter
    now administers only part of its range, the holder still reads keys
    there, and its key pages and namespace list show those keys."""
    a = auth
    for ns, key in [("app", "a1"), ("app", "ab1"), ("app", "ab2"), ("app", "x1"), ("whole", "ab3"),
                    ("whole", "z")]:
        assert a.call(a.otok, "PUT", f"{API}/namespaces/{ns}/keys/{key}", 1)[0] == 201
    bob_kf = str(tmp_path / "bob.json")
    bob = keygen(env, bob_kf, "bob")
    assert kdu(a.srv, env, bob_kf, "auth", "register").rc == 0
    btok = token_of(a.srv, env, bob_kf)
    admin_ids = []
    for ns, prefix in [("app", "a"), ("app", "x"), ("whole", None)]:  # alice administers them
        r = a.grant(ns, "admin", prefix=prefix)
        assert r.rc == 0, r.err
        admin_ids.append(json.loads(r.out)["id"])
    for ns, prefix in [("app", "a"), ("app", "x"), ("whole", None)]:  # and gives bob reads
        r = a.grant(ns, "read", prefix=prefix, grantee=bob["public_key"], as_kf=a.alice_kf)
        assert r.rc == 0, r.err
    # The owner narrows alice to "ab" in both: bob's grants now reach ab* there.
    for gid in (admin_ids[0], admin_ids[2]):
        assert kdu(a.srv, a.env, a.owner_kf, "auth", "revoke", gid).rc == 0
    for ns in ("app", "whole"):
        assert a.grant(ns, "admin", prefix="ab").rc == 0
    assert a.call(btok, "GET", f"{API}/namespaces/app/keys/ab1")[0] == 200
    assert a.call(btok, "GET", f"{API}/namespaces/app/keys/a1")[0] == 403
    assert a.call(btok, "GET", f"{API}/namespaces/whole/keys/ab3")[0] == 200
    assert a.call(btok, "GET", f"{API}/namespaces/whole/keys/z")[0] == 403
    assert a.call(btok, "GET", f"{API}/namespaces/app/keys")[1] == {"keys": ["ab1", "ab2", "x1"], "next": None}
    assert a.call(btok, "GET", f"{API}/namespaces/whole/keys")[1] == {"keys": ["ab3"], "next": None}
    assert a.call(btok, "GET", f"{API}/namespaces")[1] == {"namespaces": ["app", "whole"]}


def test_only_admins_grant_and_revocation_takes_effect(auth, tmp_path, env):
    a = auth
    seed(a)
    bob_kf = str(tmp_path / "bob.json")
    bob = keygen(env, bob_kf, "bob")
    assert kdu(a.srv, env, bob_kf, "auth", "register").rc == 0
    btok = token_of(a.srv, env, bob_kf)
    # alice (no admin) cannot grant.
    r = a.grant("app.x", "read", grantee=bob["public_key"], as_kf=a.alice_kf)
    assert r.rc != 0 and "only an admin" in r.err
    # admin of app.* may grant inside it, not outside.
    assert a.grant("app.*", "admin").rc == 0
    r = a.grant("other", "read", grantee=bob["public_key"], as_kf=a.alice_kf)
    assert r.rc != 0 and "only an admin" in r.err
    r = a.grant("app.x", "read", grantee=bob["public_key"], as_kf=a.alice_kf)
    assert r.rc == 0, r.err
    bob_gid = json.loads(r.out)["id"]
    assert a.call(btok, "GET", f"{API}/namespaces/app.x/keys/secret")[0] == 200
    # Revoking alice's admin takes back what she granted.
    admin_gid = [g["id"] for g in a.call(a.atok, "GET", f"{API}/auth/whoami")[1]["grants"]
                 if g["grant"]["permission"] == "admin"][0]
    r = kdu(a.srv, env, a.owner_kf, "auth", "revoke", admin_gid)
    assert r.rc == 0, r.err
    assert a.call(btok, "GET", f"{API}/namespaces/app.x/keys/secret")[0] == 403
    assert a.call(a.atok, "GET", f"{API}/namespaces/app.x/keys/secret")[0] == 403
    # bob cannot revoke what he did not grant; the granter can.
    assert a.call(btok, "DELETE", f"{API}/auth/grants/{bob_gid}")[0] == 403
    assert a.call(a.atok, "DELETE", f"{API}/auth/grants/{bob_gid}")[0] == 200
    assert a.call(a.otok, "DELETE", f"{API}/auth/grants/{'0' * 64}")[0] == 404
    # A revoked grant is no longer listed.
    g = [x for x in a.call(a.otok, "GET", f"{API}/auth/grants")[1]["grants"] if x["id"] == bob_gid]
    assert g == []


def listed_valid(a, tok, gid):
    """"valid" of grant gid in the caller's whoami and in GET /auth/grants
    (as the owner sees it): both must agree."""
    mine = [g["valid"] for g in a.call(tok, "GET", f"{API}/auth/whoami")[1]["grants"] if g["id"] == gid]
    every = [g["valid"] for g in a.call(a.otok, "GET", f"{API}/auth/grants")[1]["grants"] if g["id"] == gid]
    assert len(mine) == 1 and mine == every, (mine, every)
    return mine[0]


def test_valid_says_whether_a_grant_can_authorize(auth, tmp_path, env):
    """A grant is listed "valid" only if using it would work: delegation is
    followed four granters deep (a deeper grant is refused when submitted),
    and a grant whose granter lost its admin grant is not valid."""
    a = auth
    seed(a)
    users, toks = [a.alice], [a.atok]
    kfs = [a.alice_kf]
    for i in range(2, 7):
        kf = str(tmp_path / f"u{i}.json")
        users.append(keygen(env, kf, f"u{i}"))
        assert kdu(a.srv, env, kf, "auth", "register").rc == 0
        toks.append(token_of(a.srv, env, kf))
        kfs.append(kf)
    key = [u["public_key"] for u in users]
    secret = f"{API}/namespaces/app.x/keys/secret"
    # owner -> u1 -> u2 -> u3 -> u4, admin of everything
    r = a.grant("*", "admin", grantee=key[0])
    assert r.rc == 0, r.err
    gids = [json.loads(r.out)["id"]]
    for i in range(1, 4):
        r = a.grant("*", "admin", grantee=key[i], as_kf=kfs[i - 1])
        assert r.rc == 0, (i, r.err)
        gids.append(json.loads(r.out)["id"])
    # u5: admin straight from the owner, and u6 reads by u5's grant
    r = a.grant("*", "admin", grantee=key[4])
    assert r.rc == 0, r.err
    direct = json.loads(r.out)["id"]
    r = a.grant("app.x", "read", grantee=key[5], as_kf=kfs[4])
    assert r.rc == 0, r.err
    g6 = json.loads(r.out)["id"]
    assert a.call(toks[5], "GET", secret)[0] == 200
    assert listed_valid(a, toks[5], g6) is True
    # u4 -> u5 as well: four granters between u5 and the owner, the deepest
    # that counts; then the direct one is revoked
    r = a.grant("*", "admin", grantee=key[4], as_kf=kfs[3])
    assert r.rc == 0, r.err
    gids.append(json.loads(r.out)["id"])
    assert kdu(a.srv, env, a.owner_kf, "auth", "revoke", direct).rc == 0
    for i in range(5):
        assert a.call(toks[i], "GET", secret)[0] == 200, i
        assert listed_valid(a, toks[i], gids[i]) is True, i
    # u6's grant from u5 is now five granters deep: refused on use, and
    # listed not valid
    assert a.call(toks[5], "GET", secret)[0] == 403
    assert listed_valid(a, toks[5], g6) is False
    # a new grant by u5 could never be used either: refused, nothing stored
    r = a.grant("other", "read", grantee=key[5], as_kf=kfs[4])
    assert r.rc != 0 and "four granters" in r.err, r.err
    assert [g["id"] for g in a.call(toks[5], "GET", f"{API}/auth/whoami")[1]["grants"]] == [g6]
    assert a.call(toks[5], "GET", f"{API}/namespaces/other/keys/k")[0] == 403


def test_a_revoked_granters_grants_are_listed_not_valid(auth, tmp_path, env):
    a = auth
    seed(a)
    bob_kf = str(tmp_path / "bob.json")
    bob = keygen(env, bob_kf, "bob")
    assert kdu(a.srv, env, bob_kf, "auth", "register").rc == 0
    btok = token_of(a.srv, env, bob_kf)
    r = a.grant("app.*", "admin")
    assert r.rc == 0, r.err
    admin_gid = json.loads(r.out)["id"]
    r = a.grant("app.x", "read", grantee=bob["public_key"], as_kf=a.alice_kf)
    assert r.rc == 0, r.err
    bob_gid = json.loads(r.out)["id"]
    assert listed_valid(a, btok, bob_gid) is True
    assert kdu(a.srv, env, a.owner_kf, "auth", "revoke", admin_gid).rc == 0
    assert a.call(btok, "GET", f"{API}/namespaces/app.x/keys/secret")[0] == 403
    assert listed_valid(a, btok, bob_gid) is False
    # alice sees it among the grants she gave, not valid either
    gave = [g for g in a.call(a.atok, "GET", f"{API}/auth/whoami")[1]["grants"] if g["id"] == bob_gid]
    assert len(gave) == 0 or gave[0]["valid"] is False
    st, out = a.call(a.atok, "GET", f"{API}/auth/grants")
    assert st == 200 and [g["valid"] for g in out["grants"] if g["id"] == bob_gid] == [False]


def test_a_duplicate_grant_is_409_and_a_revoked_one_can_be_resubmitted(auth):
    a = auth
    seed(a)
    r = a.grant("app.x", "read")
    assert r.rc == 0, r.err
    doc = json.loads(r.out)
    st, out = a.call(a.otok, "POST", f"{API}/auth/grants", doc["grant"])
    assert st == 409 and out["error"]["code"] == "exists", out
    assert doc["id"] in out["error"]["message"] and "revoked" not in out["error"]["message"], out
    assert a.call(a.otok, "DELETE", f"{API}/auth/grants/{doc['id']}")[0] == 200
    assert a.call(a.atok, "GET", f"{API}/namespaces/app.x/keys/secret")[0] == 403
    st, out = a.call(a.otok, "POST", f"{API}/auth/grants", doc["grant"])  # granting it anew
    assert st == 201 and out["id"] == doc["id"], out
    assert a.call(a.atok, "GET", f"{API}/namespaces/app.x/keys/secret")[0] == 200


def test_a_grant_to_oneself_is_refused(auth):
    """It could never authorize anything (rights come from the owner or
    another admin), so it is refused with a reason; before, such grants
    were stored, and a pile of them made every request of the identity's
    grantees check each one's signature."""
    a = auth
    seed(a)
    assert a.grant("app.*", "admin").rc == 0  # alice administers app.*
    r = a.grant("app.x", "read", grantee=a.alice["public_key"], as_kf=a.alice_kf)
    assert r.rc != 0 and "oneself" in r.err, (r.rc, r.err)
    r = a.grant("other", "read", grantee=a.owner["public_key"])  # the owner too
    assert r.rc != 0 and "oneself" in r.err, (r.rc, r.err)
    st, out = a.call(a.otok, "GET", f"{API}/auth/grants")
    assert st == 200 and len(out["grants"]) == 1, out


def owner_signer(a, template):
    """Grants like `template` (one the CLI made) for other namespaces,
    signed here with the owner's key: as the library signs them, over
    "korudelta-grant-v1\\0" and the canonical JSON without "signature"."""
    ed = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
    key = ed.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(a.owner["secret_key"]))

    def signed(ns):
        g = {k: v for k, v in template.items() if k != "signature"}
        g["namespace"] = ns
        canon = json.dumps(g, sort_keys=True, separators=(",", ":")).encode()
        g["signature"] = key.sign(b"korudelta-grant-v1\0" + canon).hex()
        return g
    return signed


def test_grants_held_by_one_identity_are_capped(auth):
    """Every request of an identity, and of those it granted to, looks
    through the grants it holds: at most 1000 valid ones from one granter
    (AUTH.md)."""
    a = auth
    seed(a)
    r = a.grant("app.t0", "read")
    assert r.rc == 0, r.err
    signed = owner_signer(a, json.loads(r.out)["grant"])
    conn = a.srv.connection()
    for i in range(1, 1000):
        st, _, data = a.srv.request("POST", f"{API}/auth/grants", signed(f"app.t{i}"), bearer(a.otok), conn=conn)
        assert st == 201, data
    st, _, data = a.srv.request("POST", f"{API}/auth/grants", signed("app.x"), bearer(a.otok), conn=conn)
    conn.close()
    err = json.loads(data)["error"]
    assert st == 409 and err["code"] == "too_many_grants", (st, err)
    assert "1000" in err["message"] and a.alice["public_key"] in err["message"], err
    # the 1000 work, the refused one gives nothing
    assert a.call(a.atok, "GET", f"{API}/namespaces/app.t999/keys")[0] == 200
    assert a.call(a.atok, "GET", f"{API}/namespaces/app.x/keys/secret")[0] == 403
    # a revocation makes room at once
    st, out = a.call(a.otok, "GET", f"{API}/auth/grants")
    gid = next(g["id"] for g in out["grants"] if g["grant"]["namespace"] == "app.t7")
    assert a.call(a.otok, "DELETE", f"{API}/auth/grants/{gid}")[0] == 200
    assert a.call(a.atok, "GET", f"{API}/namespaces/app.t7/keys")[0] == 403
    assert a.call(a.otok, "POST", f"{API}/auth/grants", signed("app.x"))[0] == 201
    assert a.call(a.atok, "GET", f"{API}/namespaces/app.x/keys/secret")[0] == 200
    # the 1000 are the owner's: another granter may still give alice grants
    bob_kf = str(a.dir / "bob.json")
    keygen(a.env, bob_kf, "bob")
    assert kdu(a.srv, a.env, bob_kf, "auth", "register").rc == 0
    bob = json.load(open(bob_kf, encoding="utf-8"))["public_key"]
    assert a.grant("other", "admin", grantee=bob).rc == 0
    r = a.grant("other", "read", as_kf=bob_kf)
    assert r.rc == 0, r.err
    assert a.call(a.atok, "GET", f"{API}/namespaces/other/keys/k")[0] == 200


def test_forged_and_expired_grants_are_refused(auth):
    a = auth
    seed(a)
    r = a.grant("app.x", "read")
    assert r.rc == 0
    g = json.loads(r.out)["grant"]
    # Tampered copies are refused when submitted.
    for field, value in [("permission", "admin"), ("namespace", "*"), ("prefix", "p"),
                         ("grantee", a.owner["public_key"]), ("expires", "2099-01-01T00:00:00.000000000Z")]:
        st, out = a.call(a.otok, "POST", f"{API}/auth/grants", dict(g, **{field: value}))
        assert st == 400 and "signature" in out["error"]["message"], (field, out)
    # A grant signed by alice naming the owner as granter: bad signature too.
    st, _ = a.call(a.atok, "POST", f"{API}/auth/grants", dict(g, granter=a.alice["public_key"]))
    assert st == 400
    # An expiry given from now ("+3s", as `help auth` shows): the grant
    # works, then stops.
    r = a.grant("other", "read", expires="+3s")
    assert r.rc == 0, r.err
    assert a.call(a.atok, "GET", f"{API}/namespaces/other/keys/k")[0] == 200
    # shown to people in local time, as every time kdelta prints (CLI.md)
    r = run_kdelta(["--url", a.srv.url, "--identity", a.owner_kf, "auth", "list"], env=dict(a.env, TZ="IST-5:30"))
    assert r.rc == 0 and re.search(r" until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}\+05:30", r.out), r.out
    r = run_kdelta(["--url", a.srv.url, "--identity", a.owner_kf, "auth", "whoami"], env=dict(a.env, TZ="IST-5:30"))
    assert r.rc == 0 and re.search(r"^session expires \S+\+05:30$", r.out, re.M), r.out
    time.sleep(4)
    assert a.call(a.atok, "GET", f"{API}/namespaces/other/keys/k")[0] == 403
    # An already-expired grant is not accepted.
    r = a.grant("other", "read", expires="-1m")
    assert r.rc != 0 and "expired" in r.err
    # A malformed TIME is bad input (exit 4), as everywhere (CLI.md, TIME).
    r = a.grant("other", "read", expires="yesterday")
    assert r.rc == 4 and r.err.startswith("kdelta: --expires: "), r.err


# ---- sessions --------------------------------------------------------------


def test_logout_revokes_and_sessions_expire(start_server, tmp_path, env):
    a = Auth(start_server, tmp_path, env, extra=["--session-ttl", "3s"])
    assert a.call(a.otok, "GET", f"{API}/status")[0] == 200
    assert a.call(a.otok, "POST", f"{API}/auth/logout")[0] == 200
    st, out = a.call(a.otok, "GET", f"{API}/status")
    assert st == 401 and "revoked" in out["error"]["message"]
    time.sleep(3.5)
    st, out = a.call(a.atok, "GET", f"{API}/namespaces")
    assert st == 401 and "expired" in out["error"]["message"]
    # The CLI notices and logs in again by itself.
    r = kdu(a.srv, env, a.owner_kf, "set", "n/k", "1")
    assert r.rc == 0, r.err


def sessions_metric(a, tok):
    st, _, body = a.srv.request("GET", "/metrics", headers=bearer(tok))
    assert st == 200, body
    return int(re.search(r"^kd_auth_sessions (\d+)$", body.decode(), re.M).group(1))


def test_expired_sessions_are_swept_at_a_login(start_server, tmp_path, env):
    """A session never presented after it expired would stay in _kd.auth
    for ever (one record per login): a login deletes the expired ones."""
    a = Auth(start_server, tmp_path, env, extra=["--session-ttl", "5s"])
    before = sessions_metric(a, a.otok)
    for _ in range(3):  # alice logs in again (the CLI without its cached session)
        os.remove(a.alice_kf + ".sessions")
        assert kdu(a.srv, env, a.alice_kf, "auth", "whoami").rc == 0
    assert sessions_metric(a, a.otok) == before + 3
    time.sleep(5.5)
    os.remove(a.owner_kf + ".sessions")
    tok = token_of(a.srv, env, a.owner_kf)  # a login: it sweeps
    assert sessions_metric(a, tok) == 1
    # gone, not only uncounted: alice's expired token is now unknown
    st, out = a.call(a.atok, "GET", f"{API}/namespaces")
    assert st == 401 and "unknown" in out["error"]["message"], out


def fsyncs_metric(a, tok):
    st, _, body = a.srv.request("GET", "/metrics", headers=bearer(tok))
    assert st == 200, body
    return int(re.search(r"^kd_fsyncs_total (\d+)$", body.decode(), re.M).group(1))


def py_login(a, keyfile_info):
    """A login signed here (no CLI process): returns the session token."""
    ed = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
    key = ed.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(keyfile_info["secret_key"]))
    st, ch = a.srv.json("POST", f"{API}/auth/challenge")
    assert st == 200, ch
    msg = (b"korudelta-login-v1\0" + ch["server_id"].encode() + b"\0" + b"login\0" + bytes.fromhex(ch["challenge"]))
    body = {"public_key": keyfile_info["public_key"], "challenge": ch["challenge"], "signature": key.sign(msg).hex()}
    st, out = a.srv.json("POST", f"{API}/auth/login", body)
    assert st == 200, out
    return out["token"]


def test_a_sweep_of_expired_sessions_costs_one_fsync(start_server, tmp_path, env):
    """The login that sweeps deletes the expired sessions together: one
    fsync for all of them, not one each (up to 256, in that login's time).
    Sweeps come at most once a session lifetime (8 s here); the first was
    in the first login of Auth(), a second or so before `start`."""
    a = Auth(start_server, tmp_path, env, extra=["--session-ttl", "8s"])
    start = time.monotonic()
    for _ in range(12):
        py_login(a, a.alice)
    time.sleep(3)  # too soon for another sweep
    tok = py_login(a, a.owner)  # valid until start + 11 s
    assert sessions_metric(a, tok) == 12 + 2 + 1  # it did not sweep
    time.sleep(max(0.0, start + 8.5 - time.monotonic()))  # the 14 have expired, tok has not
    before = fsyncs_metric(a, tok)
    py_login(a, a.owner)  # sweeps the 12 and the two of Auth()
    assert fsyncs_metric(a, tok) - before <= 2  # its own session's write and the sweep's
    assert sessions_metric(a, tok) == 2


def test_watch_ends_when_its_session_does(start_server, tmp_path, env):
    """A watch whose session expires ends with a message saying so (it went
    on sending pings and skipping every event, as if nothing was written)."""
    import subprocess
    from helpers import KDELTA
    a = Auth(start_server, tmp_path, env, extra=["--session-ttl", "3s"])
    p = subprocess.Popen([KDELTA, "--url", a.srv.url, "--identity", a.owner_kf, "watch"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        rc = p.wait(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        raise AssertionError("the watch outlived its session")
    err = p.stderr.read().decode()
    assert rc != 0 and "the session of this watch ended" in err, (rc, err)


def test_logout_reaches_every_event_thread(auth):
    """Each thread remembers the sessions it checked (server/auth.c): a token
    used on connections spread over every event thread is refused on all of
    them once it is logged out."""
    a = auth
    conns = [a.srv.connection(10) for _ in range(8)]
    try:
        for c in conns:  # all connected first, so the listener spreads them
            c.connect()
        for _ in range(2):  # the second pass is answered from the threads' memory
            for c in conns:
                st, _, _ = a.srv.request("GET", f"{API}/auth/whoami", headers=bearer(a.atok), conn=c)
                assert st == 200
        assert a.call(a.atok, "POST", f"{API}/auth/logout")[0] == 200
        for c in conns:
            st, _, body = a.srv.request("GET", f"{API}/auth/whoami", headers=bearer(a.atok), conn=c)
            assert st == 401 and "revoked" in json.loads(body)["error"]["message"]
    finally:
        for c in conns:
            c.close()


def test_a_challenge_is_single_use(auth):
    ed = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ed25519")
    a = auth
    key = ed.Ed25519PrivateKey.from_private_bytes(bytes.fromhex(a.alice["secret_key"]))
    st, ch = a.srv.json("POST", f"{API}/auth/challenge")
    assert st == 200
    msg = (b"korudelta-login-v1\0" + ch["server_id"].encode() + b"\0" + b"login\0" + bytes.fromhex(ch["challenge"]))
    body = {"public_key": a.alice["public_key"], "challenge": ch["challenge"], "signature": key.sign(msg).hex()}
    st, out = a.srv.json("POST", f"{API}/auth/login", body)
    assert st == 200 and len(out["token"]) == 64 and out["identity"] == a.alice["public_key"]
    assert a.call(out["token"], "GET", f"{API}/auth/whoami")[0] == 200
    st, again = a.srv.json("POST", f"{API}/auth/login", body)
    assert st == 401 and "challenge" in again["error"]["message"]
    # A signature for another purpose or server does not log in.
    st, ch = a.srv.json("POST", f"{API}/auth/challenge")
    wrong = (b"korudelta-login-v1\0" + ch["server_id"].encode() + b"\0" + b"grant\0" + bytes.fromhex(ch["challenge"]))
    body = {"public_key": a.alice["public_key"], "challenge": ch["challenge"], "signature": key.sign(wrong).hex()}
    assert a.srv.json("POST", f"{API}/auth/login", body)[0] == 401
    # An unregistered key cannot log in even with a good signature.
    other = ed.Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives import serialization
    pub = other.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
    st, ch = a.srv.json("POST", f"{API}/auth/challenge")
    msg = (b"korudelta-login-v1\0" + ch["server_id"].encode() + b"\0" + b"login\0" + bytes.fromhex(ch["challenge"]))
    body = {"public_key": pub, "challenge": ch["challenge"], "signature": other.sign(msg).hex()}
    st, out = a.srv.json("POST", f"{API}/auth/login", body)
    assert st == 401 and "register" in out["error"]["message"]


def test_a_flood_of_challenges_drops_the_oldest(auth):
    a = auth
    conn = a.srv.connection()
    first = None
    for i in range(4097):
        st, _, data = a.srv.request("POST", f"{API}/auth/challenge", conn=conn)
        assert st == 200
        if i == 0:
            first = json.loads(data)["challenge"]
    last = json.loads(data)["challenge"]
    conn.close()
    bad = {"public_key": a.alice["public_key"], "signature": "0" * 128}
    st, out = a.srv.json("POST", f"{API}/auth/login", dict(bad, challenge=first))
    assert st == 401 and "challenge" in out["error"]["message"]
    st, out = a.srv.json("POST", f"{API}/auth/login", dict(bad, challenge=last))
    assert st == 401 and "bad signature" in out["error"]["message"]


def test_a_flood_from_one_client_keeps_other_clients_challenges(auth):
    """When all 4096 challenges are pending, the client holding the most
    loses its oldest (AUTH.md): a flood pushes out its own, not the one
    another client is about to sign."""
    a = auth
    other = http.client.HTTPConnection(a.srv.host, a.srv.port, timeout=30, source_address=("127.0.0.2", 0))
    st, _, data = a.srv.request("POST", f"{API}/auth/challenge", conn=other)
    other.close()
    assert st == 200
    kept = json.loads(data)["challenge"]
    conn = a.srv.connection()
    for i in range(4097):
        st, _, data = a.srv.request("POST", f"{API}/auth/challenge", conn=conn)
        assert st == 200
        if i == 0:
            flood_first = json.loads(data)["challenge"]
    conn.close()
    bad = {"public_key": a.alice["public_key"], "signature": "0" * 128}
    # still there: refused for its signature, not as unknown
    st, out = a.srv.json("POST", f"{API}/auth/login", dict(bad, challenge=kept))
    assert st == 401 and "bad signature" in out["error"]["message"], out
    st, out = a.srv.json("POST", f"{API}/auth/login", dict(bad, challenge=flood_first))
    assert st == 401 and "unknown, used or expired challenge" in out["error"]["message"], out


def test_identities_sessions_and_grants_survive_a_restart(auth, start_server):
    a = auth
    seed(a)
    assert a.grant("app.x", "read").rc == 0
    assert a.srv.stop() == 0
    srv = start_server(args=["--auth", "--auth-difficulty", DIFF])
    a.srv = srv
    assert a.call(a.atok, "GET", f"{API}/namespaces/app.x/keys/secret")[0] == 200
    assert a.call(a.atok, "GET", f"{API}/namespaces/other/keys/k")[0] == 403
    st, who = a.call(a.otok, "GET", f"{API}/auth/whoami")
    assert st == 200 and who["owner"] is True
    # The auth root is part of status, and verify recomputes it.
    st, status = a.call(a.otok, "GET", f"{API}/status")
    assert "auth" in status["roots"] and "field" in status["roots"]
    assert a.call(a.otok, "POST", f"{API}/verify")[0] == 200


def test_auth_records_are_never_readable_through_data_routes(auth):
    a = auth
    seed(a)
    for path in [f"{API}/namespaces/_kd.auth/keys", f"{API}/namespaces/_kd.auth/keys/owner",
                 f"{API}/namespaces/_kd.auth/keys/server/history", f"{API}/namespaces/_kd.auth/scan",
                 f"{API}/namespaces/_kd.auth/query", f"{API}/changes?ns=_kd.auth"]:
        st, out = a.call(a.otok, "GET", path)
        assert st == 400 and out["error"]["code"] == "reserved", (path, st, out)
    st, _ = a.call(a.otok, "PUT", f"{API}/namespaces/_kd.auth/keys/owner", {"public_key": "0" * 64})
    assert st == 400
    assert "_kd.auth" not in a.call(a.otok, "GET", f"{API}/namespaces")[1]["namespaces"]
    st, hdrs, data = a.srv.request("GET", f"{API}/changes", headers=bearer(a.otok))
    assert st == 200 and b"_kd.auth" not in data and a.otok.encode() not in data


def test_watch_shows_only_readable_events(auth):
    a = auth
    assert a.grant("app.x", "read").rc == 0
    conn, resp = a.srv.open_stream(f"{API}/watch", bearer(a.atok))
    assert resp.status == 200
    a.call(a.otok, "PUT", f"{API}/namespaces/other/keys/hidden", 1)
    a.call(a.otok, "PUT", f"{API}/namespaces/app.x/keys/seen", 2)
    got = []
    for ev in sse_events(resp):
        if "data" in ev:
            got.append(json.loads(ev["data"]))
            if got[-1].get("key") == "seen":
                break
    conn.close()
    assert [(e["namespace"], e["key"]) for e in got] == [("app.x", "seen")]
    # Resuming from the start replays only readable writes too.
    conn, resp = a.srv.open_stream(f"{API}/watch" + quote_query({"last_event_id": "0"}), bearer(a.atok))
    got = []
    for ev in sse_events(resp):
        if "data" in ev:
            got.append(json.loads(ev["data"]))
            if got[-1].get("key") == "seen":
                break
    conn.close()
    assert all(e["namespace"] == "app.x" for e in got)


def test_metrics_need_admin_healthz_is_open(auth):
    a = auth
    assert a.srv.request("GET", "/healthz")[0] == 200
    assert a.srv.request("GET", "/metrics", headers=bearer(a.atok))[0] == 403
    assert a.srv.request("GET", "/metrics", headers=bearer(a.otok))[0] == 200


# ---- the CLI -----------------------------------------------------------------


def test_cli_logs_in_and_reuses_its_session(auth):
    a = auth
    r = kdu(a.srv, a.env, a.owner_kf, "set", "users/alice", '{"age": 30}')
    assert r.rc == 0, r.err
    cache = a.owner_kf + ".sessions"
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600
    before = open(cache, encoding="utf-8").read()
    r = kdu(a.srv, a.env, a.owner_kf, "get", "users/alice")
    assert r.rc == 0 and '"age":30' in r.out.replace(" ", "")
    assert open(cache, encoding="utf-8").read() == before  # the same token
    r = kdu(a.srv, a.env, a.alice_kf, "get", "users/alice")
    assert r.rc != 0 and "no capability" in r.err
    r = run_kdelta(["--url", a.srv.url, "get", "users/alice"], env=a.env)
    assert r.rc != 0 and "Authorization" in r.err
    r = kdu(a.srv, a.env, a.owner_kf, "auth", "list")
    assert r.rc == 0 and "no grants" in r.out
    r = kdu(a.srv, a.env, a.owner_kf, "auth", "grant", a.alice_kf, "users", "read")
    assert r.rc == 0 and r.out.startswith("granted "), r.err
    r = kdu(a.srv, a.env, a.alice_kf, "get", "users/alice")
    assert r.rc == 0, r.err
    r = kdu(a.srv, a.env, a.alice_kf, "auth", "whoami")
    assert r.rc == 0 and a.alice["public_key"] in r.out and "read on users" in r.out
    # A key file others may read still works, with a warning.
    os.chmod(a.alice_kf, 0o644)
    r = kdu(a.srv, a.env, a.alice_kf, "get", "users/alice")
    assert r.rc == 0 and "others may read it" in r.err
    # Usage errors.
    assert run_kdelta(["--identity", a.owner_kf, "get", "users/alice"], env=a.env).rc == 2
    assert run_kdelta(["--url", a.srv.url, "auth", "whoami"], env=a.env).rc == 2


def test_cli_watch_logs_in_too(auth):
    """A one-shot `kdelta --url … --identity … watch` sends its session
    with the stream (it was refused with 401 while every other command
    logged in)."""
    import signal
    import subprocess
    from helpers import KDELTA
    a = auth
    p = subprocess.Popen([KDELTA, "--url", a.srv.url, "--identity", a.owner_kf, "watch", "users"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=a.env)
    try:
        # The stream is open once the server counts it.
        deadline = time.monotonic() + 60
        while p.poll() is None and time.monotonic() < deadline:
            st, _, body = a.srv.request("GET", "/metrics", headers=bearer(a.otok))
            assert st == 200
            if "kd_open_subscriptions 1" in body.decode():
                break
            time.sleep(0.05)
        assert p.poll() is None, p.stderr.read().decode()
        r = kdu(a.srv, a.env, a.owner_kf, "set", "users/w", "1")
        assert r.rc == 0, r.err
        assert p.stdout.readline() == b"insert users/w 1\n"
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
        rc = p.wait(timeout=60)
    assert rc == 0, p.stderr.read().decode()


def test_non_loopback_bind_needs_auth_or_insecure(start_server, env, db):
    r = run_kdelta(["--db", db, "serve", "--port", "0", "--bind", "0.0.0.0"], env=env, timeout=30)
    assert r.rc == 2 and "--auth" in r.err and "--insecure" in r.err
    r = run_kdelta(["--db", db, "serve", "--port", "0", "--owner", "x"], env=env, timeout=30)
    assert r.rc == 2 and "--auth" in r.err
    srv = start_server(args=["--bind", "0.0.0.0", "--auth", "--auth-difficulty", DIFF])
    assert srv.request("GET", "/healthz")[0] == 200
    assert srv.request("GET", f"{API}/namespaces")[0] == 401


def test_racing_first_registrations_make_exactly_one_owner(start_server, tmp_path, env):
    import threading
    srv = start_server(args=["--auth", "--auth-difficulty", DIFF])
    docs = []
    for i in range(8):
        d = keygen(env, str(tmp_path / f"r{i}.json"))
        docs.append({k: d[k] for k in ("created_at", "nonce", "public_key", "user_data")})
    results = [None] * len(docs)
    go = threading.Barrier(len(docs))

    def reg(i):
        go.wait()
        results[i] = srv.json("POST", f"{API}/auth/register", docs[i])

    threads = [threading.Thread(target=reg, args=(i,)) for i in range(len(docs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(st == 201 for st, _ in results), results
    assert sum(1 for _, out in results if out["owner"]) == 1


def test_owner_named_at_start(start_server, tmp_path, env):
    kf = str(tmp_path / "boss.json")
    boss = keygen(env, kf, "boss", difficulty="0")
    srv = start_server(args=["--auth", "--auth-difficulty", "20", "--owner", kf])
    # The owner is registered by the server itself (its work is not checked).
    tok = token_of(srv, env, kf)
    st, who = srv.json("GET", f"{API}/auth/whoami", headers=bearer(tok))
    assert st == 200 and who["owner"] is True and who["public_key"] == boss["public_key"]
    # A first registration then does not become owner.
    other = keygen(env, str(tmp_path / "o.json"), difficulty="20")
    body = {k: other[k] for k in ("created_at", "nonce", "public_key", "user_data")}
    st, out = srv.json("POST", f"{API}/auth/register", body)
    assert st == 201 and out["owner"] is False
