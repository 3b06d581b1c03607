"""`kdelta vector put|get|log|delete|search|stats` (issue 6): round trips of
vectors, their float32 values and history, searches checked against a brute
force computed here in plain Python (every metric, k, filters, models,
minimum scores, every namespace, the past), stats, and every error with its
exit status.

The module is in CLI_SUITE (conftest.py): each test runs on a directory and
again through `kdelta serve` with --url, expecting the same output.
"""
import json
import math
import os
import random
import re
import struct

import pytest

from helpers import HEX64, REPO, TIMESTAMP, one_error_line, ts_to_ns


def f32(x):
    """x rounded to the nearest float32 (as a Python float)."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def vec_text(v):
    return json.dumps(v)


def put(kd, name, v, model="m", meta=None, *extra):
    args = ["vector", "put", name, vec_text(v), "--model", model]
    if meta is not None:
        args += ["--meta", json.dumps(meta)]
    r = kd(*args, *extra, "--json")
    assert r.rc == 0, r.err
    return json.loads(r.out)


def shell(kd, lines):
    """Run commands in one `kdelta shell` (one process); stdout lines."""
    r = kd("shell", input="".join(line + "\n" for line in lines))
    assert r.rc == 0, r.err
    return r.out.splitlines()


def check_vector_record(rec, ns, key, deleted=False):
    assert list(rec) == ["namespace", "key", "model", "dim", "vector", "meta", "version_id", "write_id",
                         "previous_write_id", "timestamp", "deleted"], rec
    assert rec["namespace"] == ns and rec["key"] == key
    assert HEX64.match(rec["write_id"])
    assert rec["previous_write_id"] is None or HEX64.match(rec["previous_write_id"])
    assert TIMESTAMP.match(rec["timestamp"])
    assert rec["deleted"] is deleted
    if deleted:
        assert rec["model"] is None and rec["dim"] is None and rec["vector"] is None and rec["meta"] is None
        assert rec["version_id"] is None
    else:
        assert HEX64.match(rec["version_id"])
        assert rec["dim"] == len(rec["vector"])


# ---------------------------------------------------------------------------
# put, get, log, delete
# ---------------------------------------------------------------------------


def test_put_get_roundtrip(kd):
    r = kd("vector", "put", "docs/intro", "[0.12, -0.5, 0.33]", "--model", "text-emb-3", "--meta",
           '{"lang": "en", "n": 1}')
    assert r.rc == 0 and r.err == "", r.err
    m = re.fullmatch(r"docs/intro  model text-emb-3  dim 3  version ([0-9a-f]{12})  write ([0-9a-f]{12})  at (\S+)\n",
                     r.out)
    assert m, r.out

    rec = kd("vector", "get", "docs/intro", "--json").json()
    check_vector_record(rec, "docs", "intro")
    assert rec["model"] == "text-emb-3" and rec["dim"] == 3
    assert rec["vector"] == [0.12, -0.5, 0.33]
    assert rec["meta"] == {"lang": "en", "n": 1}
    assert rec["previous_write_id"] is None
    assert rec["version_id"].startswith(m.group(1)) and rec["write_id"].startswith(m.group(2))

    # for people: the block `kdelta log` shows, with model, dim, meta, vector
    r = kd("vector", "get", "docs/intro")
    assert r.rc == 0
    assert r.out == (f"write    {rec['write_id']}\ntime     {rec['timestamp']}\nversion  {rec['version_id']}\n"
                     "parent   none\nmodel    text-emb-3\ndim      3\nmeta     {\"lang\":\"en\",\"n\":1}\n"
                     "vector   [0.12,-0.5,0.33]\n")

    # put --json prints the same record get does
    again = put(kd, "docs/intro", [1, 2, 3], "text-emb-3", {"lang": "en"})
    check_vector_record(again, "docs", "intro")
    assert again["previous_write_id"] == rec["write_id"]
    assert kd("vector", "get", "docs/intro", "--json").json() == again
    # no metadata: null
    assert put(kd, "docs/bare", [1, 0, 0], "text-emb-3")["meta"] is None


def test_float32_values_exact(kd):
    values = [0.1, -0.0, 1e-45, 1e30, 16777217, -2.5, 1 / 3, 123456.789, 5e-324, -7e-39]
    rec = put(kd, "f/a", values, "m")
    want = [f32(x) for x in values]
    got = rec["vector"]
    assert [f32(x) for x in got] == want  # every component is the float32 nearest to the input
    assert [math.copysign(1, x) for x in got] == [math.copysign(1, x) for x in want]  # -0.0 kept
    assert got[4] == 16777216 and got[8] == 0  # 2**24 + 1 and a double denormal round
    # the text is the shortest that reads back: e.g. 0.1 stays "0.1", not 0.100000001
    r = kd("vector", "get", "f/a")
    line = [x for x in r.out.splitlines() if x.startswith("vector   ")][0]
    assert line.startswith("vector   [0.1,-0.0,1e-45,")
    # what is printed, put back, is the same vector: the same version_id
    again = put(kd, "f/b", json.loads(line.split(None, 1)[1]), "m")
    assert again["version_id"] == rec["version_id"]
    # -0.0 and 0 are different vectors (every bit is kept)
    other = put(kd, "f/c", [0.1, 0.0] + values[2:], "m")
    assert other["version_id"] != rec["version_id"]


def test_vector_from_stdin_and_file(kd, tmp_path):
    r = kd("vector", "put", "io/a", "-", "--model", "m", "--json", input="[1, 2, 3]\n")
    assert r.rc == 0, r.err
    assert json.loads(r.out)["vector"] == [1, 2, 3]
    p = tmp_path / "q.json"
    p.write_text("\ufeff[3, 2, 1]")  # a byte order mark is ignored, as for set
    r = kd("vector", "put", "io/b", "@" + str(p), "--model", "m", "--json")
    assert r.rc == 0, r.err
    assert json.loads(r.out)["vector"] == [3, 2, 1]
    r = kd("vector", "search", "io", "@" + str(p), "-k", "1", "--json")
    assert [h["key"] for h in r.json()["hits"]] == ["b"]
    one_error_line(kd("vector", "put", "io/c", "@" + str(tmp_path / "missing.json"), "--model", "m"), 1)


def test_endless_vector_input_is_refused_at_the_limit(kd):
    """A VECTOR read from @FILE or stdin stops at the limit of a value
    (16 MiB), as set's VALUE does, instead of reading 1 GiB first (the
    timeout only guards against a hang)."""
    for args in (["put", "io/z", "@/dev/zero", "--model", "m"], ["search", "io", "@/dev/zero"]):
        line = one_error_line(kd("vector", *args, timeout=60), 4)
        assert line == "kdelta: vector: value from @/dev/zero is more than 16777216 bytes; the limit is 16777216", line
    line = one_error_line(kd("vector", "put", "io/z", "-", "--model", "m", input="[" + "1" * (16 << 20) + "]"), 4)
    assert "value from stdin is more than 16777216 bytes" in line, line
    assert kd("vector", "get", "io/z").rc == 3


def test_history_get_at_and_log(kd):
    v1 = put(kd, "h/k", [1, 0], "m", {"v": 1})
    v2 = put(kd, "h/k", [0, 1], "m", {"v": 2})
    r = kd("vector", "delete", "h/k")
    assert r.rc == 0
    assert re.fullmatch(r"h/k  vector deleted  write [0-9a-f]{12}  at \S+\n", r.out), r.out
    log = kd("vector", "log", "h/k", "--json").json()
    assert [x["deleted"] for x in log] == [True, False, False]
    tomb = log[0]
    check_vector_record(tomb, "h", "k", deleted=True)
    assert log[1] == v2 and log[2] == v1
    assert tomb["previous_write_id"] == v2["write_id"] and v2["previous_write_id"] == v1["write_id"]

    # now: deleted; at each version's time: that version
    r = kd("vector", "get", "h/k")
    line = one_error_line(r, 3)
    assert line == f"kdelta: h/k: not found: vector deleted at {tomb['timestamp']} (write {tomb['write_id']})"
    assert kd("vector", "get", "h/k", "--at", "@%d" % ts_to_ns(v1["timestamp"]), "--json").json() == v1
    assert kd("vector", "get", "h/k", "--at", "@%d" % (ts_to_ns(v2["timestamp"]) + 1), "--json").json() == v2
    assert kd("vector", "get", "h/k", "--at", v2["timestamp"], "--json").json() == v2
    line = one_error_line(kd("vector", "get", "h/k", "--at", "@%d" % (ts_to_ns(v1["timestamp"]) - 1)), 3)
    assert "no vector at or before" in line and f"(the first is at {v1['timestamp']})" in line
    one_error_line(kd("vector", "get", "h/k", "--at", "@%d" % ts_to_ns(tomb["timestamp"])), 3)

    # human log: blocks newest first; --reverse; --limit keeps the newest
    r = kd("vector", "log", "h/k")
    blocks = r.out.split("\n\n")
    assert len(blocks) == 3
    assert blocks[0].splitlines() == [f"write    {tomb['write_id']}", f"time     {tomb['timestamp']}",
                                      "version  deleted", f"parent   {v2['write_id']}"]
    assert blocks[2].splitlines()[4:] == ["model    m", "dim      2", 'meta     {"v":1}', "vector   [1,0]"]
    rev = kd("vector", "log", "h/k", "--reverse").out.split("\n\n")
    assert [b.splitlines()[0] for b in rev] == [b.splitlines()[0] for b in reversed(blocks)]
    assert kd("vector", "log", "h/k", "--limit", "2", "--reverse", "--json").json() == [v2, tomb]

    # written again after the delete: a new version, chained on the tombstone
    v3 = put(kd, "h/k", [1, 1], "m")
    assert v3["previous_write_id"] == tomb["write_id"]
    assert len(kd("vector", "log", "h/k", "--json").json()) == 4


def requests_by_route(server):
    """{route: requests answered} from the server's /metrics."""
    _, _, body = server.request("GET", "/metrics")
    out = {}
    for line in body.decode().splitlines():
        m = re.match(r'kd_http_requests_total\{route="([^"]+)",method="[A-Z]+",status="\d+"\} (\d+)$', line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0) + int(m.group(2))
    return out


def test_log_of_many_versions(kd):
    """`vector log` of a key with many versions: the same output in both
    modes, and through a server one request for the whole log (not one per
    version)."""
    vs = [put(kd, "many/k", [i, 1], "m", {"i": i}) for i in range(12)]
    kd("vector", "delete", "many/k")
    vs.append(put(kd, "many/k", [5, 5], "m2"))
    before = requests_by_route(kd.server) if kd.mode == "remote" else None
    log = kd("vector", "log", "many/k", "--json").json()
    assert len(log) == 14 and log[0] == vs[-1] and log[2:] == vs[-2::-1]
    assert log[1]["deleted"] and log[1]["previous_write_id"] == vs[11]["write_id"]
    text = kd("vector", "log", "many/k", "--limit", "5", "--reverse")
    assert text.rc == 0 and len(text.out.split("\n\n")) == 5
    assert text.out.split("\n\n")[-1].splitlines()[-1] == "vector   [5,5]"
    if kd.mode == "remote":
        after = requests_by_route(kd.server)
        grew = {r: after[r] - before.get(r, 0) for r in after if after[r] != before.get(r, 0) and r != "metrics"}
        assert grew == {"vector_history": 2}, grew


def test_not_found_and_delete_errors(kd):
    assert one_error_line(kd("vector", "get", "nf/x"), 3) == "kdelta: nf/x: not found: no vector (never written)"
    assert one_error_line(kd("vector", "log", "nf/x"), 3) == "kdelta: nf/x: not found: no vector (never written)"
    assert one_error_line(kd("vector", "delete", "nf/x"), 3) == "kdelta: nf/x: not found: no vector (never written)"
    put(kd, "nf/x", [1, 2], "m")
    assert kd("vector", "delete", "nf/x").rc == 0
    assert one_error_line(kd("vector", "delete", "nf/x"), 3) == "kdelta: nf/x: not found: vector already deleted"
    rec = kd("vector", "delete", "nf/y", "--json")
    assert rec.rc == 3 and rec.out == ""


def test_vectors_and_values_are_separate(kd):
    assert kd("set", "both/a", '{"title": "A"}').rc == 0
    put(kd, "both/a", [1, 2], "m", {"title": "A"})
    assert kd("get", "both/a").out == '{"title":"A"}\n'
    assert kd("vector", "delete", "both/a").rc == 0
    assert kd("get", "both/a").out == '{"title":"A"}\n'
    assert kd("delete", "both/a").rc == 0
    one_error_line(kd("vector", "get", "both/b"), 3)
    assert kd("vector", "get", "both/a", "--at", "-1h").rc == 3
    # the list of namespaces shows user data; the vector namespace is reserved
    assert "_kd" not in kd("list").out


@pytest.mark.parametrize("key", ["search", "history", "vector", "stats", "a/b", "q?x=1", "100%", "sp ace",
                                 "#frag", "é", ".."])
def test_any_key(kd, key):
    name = "keys/" + key
    rec = put(kd, name, [1, 2, 3], "m", {"k": key})
    assert rec["key"] == key
    got = kd("vector", "get", name, "--json").json()
    assert got == rec
    assert kd("vector", "log", name, "--json").json() == [rec]
    hits = kd("vector", "search", "keys", "[1, 2, 3]", "--json").json()["hits"]
    assert [h["key"] for h in hits] == [key]
    assert kd("vector", "delete", name).rc == 0
    assert kd("vector", "get", name).rc == 3


# ---------------------------------------------------------------------------
# search against brute force
# ---------------------------------------------------------------------------


def score(metric, q, v):
    dot = sum(a * b for a, b in zip(q, v))
    if metric == "dot":
        return dot
    if metric == "l2":
        return math.sqrt(sum((a - b) ** 2 for a, b in zip(q, v)))
    return dot / (math.sqrt(sum(a * a for a in q)) * math.sqrt(sum(b * b for b in v)))


def better(metric, a, b):
    return a < b if metric == "l2" else a > b


def matches(flt, meta):
    """The few filters used here, evaluated in Python."""
    if flt is None:
        return True
    if meta is None:
        return False
    return flt(meta)


def brute_force(state, q, k, metric="cosine", model=None, flt=None, min_score=None):
    """Top k of state {(ns, key): (model, vector, meta)} as [(ns, key, score)],
    and the scores of every eligible vector."""
    eligible = {}
    for (ns, key), (m, v, meta) in state.items():
        if len(v) != len(q) or (model and m != model) or not matches(flt, meta):
            continue
        s = score(metric, q, v)
        if min_score is not None and better(metric, min_score, f32(s)):
            continue
        eligible[(ns, key)] = s
    order = sorted(eligible, key=lambda nk: (eligible[nk] if metric == "l2" else -eligible[nk], nk))
    return order[:k], eligible


def check_hits(hits, state, q, k, metric="cosine", model=None, flt=None, min_score=None, ns=None):
    scope = {nk: x for nk, x in state.items() if ns is None or nk[0] == ns}
    want, eligible = brute_force(scope, q, k, metric, model, flt, min_score)
    got = [(h["namespace"], h["key"]) for h in hits]
    assert len(got) == len(want) == min(k, len(eligible)), (len(got), len(want), len(eligible))
    tol = 1e-5
    for h in hits:
        nk = (h["namespace"], h["key"])
        assert nk in eligible, f"{nk} should not be found"
        exp = eligible[nk]
        assert abs(h["score"] - exp) <= tol * max(1.0, abs(exp)), (nk, h["score"], exp)
        assert h["model"] == state[nk][0]
        assert h["meta"] == state[nk][2]
    # best first; only near-ties may be ordered otherwise than in doubles
    for a, b in zip(hits, hits[1:]):
        assert not better(metric, b["score"], a["score"]) or abs(a["score"] - b["score"]) < tol, (a, b)
    # nothing left out that is clearly better than the last hit
    if hits:
        last = hits[-1]["score"]
        for nk, s in eligible.items():
            if nk not in got:
                assert not better(metric, s, last) or abs(s - last) <= tol * max(1.0, abs(last)), (nk, s, last)


def random_state(rng, n, dim, ns="s", model="m1"):
    state = {}
    for i in range(n):
        v = [round(rng.uniform(-1, 1), 4) for _ in range(dim)]
        meta = None if i % 10 == 0 else {"cat": i % 4, "even": i % 2 == 0, "name": f"n{i:03d}"}
        m = "m2" if i % 7 == 0 else model
        state[(ns, f"k{i:03d}")] = (m, v, meta)
    return state


def put_lines(state, json_out=False):
    lines = []
    for (ns, key), (m, v, meta) in state.items():
        line = f"vector put {ns}/{key} '{vec_text(v)}' --model {m}"
        if meta is not None:
            line += f" --meta '{json.dumps(meta)}'"
        lines.append(line + (" --json" if json_out else ""))
    return lines


def f32_state(state):
    return {nk: (m, [f32(x) for x in v], meta) for nk, (m, v, meta) in state.items()}


FILTERS = [
    ("cat == 2", lambda m: m.get("cat") == 2),
    ("cat >= 1 and even == true", lambda m: m.get("cat", -1) >= 1 and m.get("even") is True),
    ('name in ["n005", "n013", "n077", "n999"]', lambda m: m.get("name") in ("n005", "n013", "n077")),
]


def test_search_against_brute_force(kd):
    rng = random.Random(6)
    state = random_state(rng, 120, 6)
    # a third model of another dimension in the same namespace: never in the way
    odd = {("s", f"z{i}"): ("m3", [rng.uniform(-1, 1) for _ in range(3)], {"cat": 2}) for i in range(5)}
    shell(kd, put_lines(state) + put_lines(odd))
    exact = f32_state(state)
    queries = [[round(rng.uniform(-1, 1), 3) for _ in range(6)] for _ in range(3)]
    cases = []
    for qi, q in enumerate(queries):
        for metric in ("cosine", "dot", "l2"):
            cases.append((q, 5, metric, None, None, None))
            cases.append((q, 200, metric, None, None, None))  # more than there are: all of them
        cases.append((q, 7, "cosine", "m2", None, None))
        for text, fn in FILTERS:
            cases.append((q, 4, ("cosine", "l2", "dot")[qi], None, (text, fn), None))
        cases.append((q, 50, "cosine", None, None, 0.25))
        cases.append((q, 50, "l2", None, None, 1.5))
        cases.append((q, 50, "dot", "m1", FILTERS[0], -0.2))
    lines = []
    for q, k, metric, model, flt, min_score in cases:
        line = f"vector search s '{vec_text(q)}' -k {k} --metric {metric} --json"
        if model:
            line += f" --model {model}"
        if flt:
            line += f" --filter '{flt[0]}'"
        if min_score is not None:
            line += f" --min-score {min_score}"
        lines.append(line)
    outs = shell(kd, lines)
    assert len(outs) == len(cases)
    for (q, k, metric, model, flt, min_score), out in zip(cases, outs):
        hits = json.loads(out)["hits"]
        check_hits(hits, exact, [f32(x) for x in q], k, metric, model, flt[1] if flt else None,
                   f32(min_score) if min_score is not None else None)
    # a filter that at least k vectors match gives exactly k
    hits = kd("vector", "search", "s", vec_text(queries[0]), "-k", "10", "--filter", "cat == 3", "--json").json()
    assert len(hits["hits"]) == 10
    # the default k is 10
    assert len(kd("vector", "search", "s", vec_text(queries[0]), "--json").json()["hits"]) == 10


def test_search_table_and_ties(kd):
    shell(kd, ["vector put t/b '[1, 0]' --model m --meta '{\"x\": 1}'",
               "vector put t/a '[2, 0]' --model m",
               "vector put t/c '[0, 1]' --model m",
               "vector put u/a '[1, 0]' --model m"])
    # equal scores: by namespace, then key
    r = kd("vector", "search", "t", "[1, 0]")
    assert r.rc == 0
    assert r.out == ("score  key  model  meta\n"
                     "1      a    m      null\n"
                     "1      b    m      {\"x\":1}\n"
                     "0      c    m      null\n"
                     "3 hits\n")
    r = kd("vector", "search", "[1, 0]", "-k", "3")
    assert r.out == ("score  namespace  key  model  meta\n"
                     "1      t          a    m      null\n"
                     "1      t          b    m      {\"x\":1}\n"
                     "1      u          a    m      null\n"
                     "3 hits\n")
    assert kd("vector", "search", "[1, 0]", "-k", "1").out.endswith("\n1 hit\n")
    # no hits: the count alone; an empty namespace has none (not an error)
    assert kd("vector", "search", "t", "[1, 0]", "--filter", "x == 2").out == "0 hits\n"
    assert kd("vector", "search", "nothing", "[1, 0]", "--json").json() == {"hits": []}
    # dot and l2 scores exactly as float32 arithmetic gives them here
    hits = kd("vector", "search", "t", "[3, 4]", "--metric", "l2", "--json").json()["hits"]
    assert [(h["key"], f32(h["score"])) for h in hits] == [("a", f32(math.sqrt(17))), ("c", f32(math.sqrt(18))),
                                                      ("b", f32(math.sqrt(20)))]
    hits = kd("vector", "search", "t", "[3, 4]", "--metric", "dot", "--json").json()["hits"]
    assert [(h["key"], h["score"]) for h in hits] == [("a", 6), ("c", 4), ("b", 3)]


def test_search_every_namespace(kd):
    rng = random.Random(61)
    state = random_state(rng, 40, 4, "p")
    state.update(random_state(rng, 40, 4, "q"))
    shell(kd, put_lines(state))
    exact = f32_state(state)
    q = [0.3, -0.2, 0.9, 0.1]
    for metric in ("cosine", "l2"):
        hits = kd("vector", "search", vec_text(q), "-k", "25", "--metric", metric, "--json").json()["hits"]
        assert {h["namespace"] for h in hits} == {"p", "q"}
        check_hits(hits, exact, [f32(x) for x in q], 25, metric)
        hits = kd("vector", "search", "q", vec_text(q), "-k", "25", "--metric", metric, "--json").json()["hits"]
        check_hits(hits, exact, [f32(x) for x in q], 25, metric, ns="q")


def test_search_of_the_past(kd):
    rng = random.Random(66)
    state = random_state(rng, 60, 5)
    outs = shell(kd, put_lines(state, json_out=True))
    t1 = max(ts_to_ns(json.loads(o)["timestamp"]) for o in outs)
    past = f32_state(state)
    # then: updates (new vector and metadata), deletes, new keys
    lines, now = [], dict(state)
    keys = sorted(state)
    for i, nk in enumerate(keys):
        if i % 5 == 1:
            m, v, meta = state[nk]
            nv = [round(rng.uniform(-1, 1), 4) for _ in v]
            now[nk] = (m, nv, {"cat": 9})
            lines.append(f"vector put {nk[0]}/{nk[1]} '{vec_text(nv)}' --model {m} --meta '{{\"cat\": 9}}'")
        elif i % 5 == 2:
            del now[nk]
            lines.append(f"vector delete {nk[0]}/{nk[1]}")
    fresh = random_state(rng, 10, 5, "s", "m1")
    fresh = {("s", "new" + k[1]): x for k, x in fresh.items()}
    now.update(fresh)
    shell(kd, lines + put_lines(fresh))
    current = f32_state(now)
    q = [0.5, -0.5, 0.25, 0.1, -0.9]
    qf = [f32(x) for x in q]
    for metric in ("cosine", "dot", "l2"):
        at = kd("vector", "search", "s", vec_text(q), "-k", "15", "--metric", metric, "--at", f"@{t1}",
                "--json").json()["hits"]
        check_hits(at, past, qf, 15, metric)
        cur = kd("vector", "search", "s", vec_text(q), "-k", "15", "--metric", metric, "--json").json()["hits"]
        check_hits(cur, current, qf, 15, metric)
    # updated vectors are found with their old value and metadata, deleted ones are found, new ones are not
    at = kd("vector", "search", "s", vec_text(q), "-k", "1000", "--at", f"@{t1}", "--json").json()["hits"]
    assert {(h["namespace"], h["key"]) for h in at} == set(past)
    assert all(h["meta"] != {"cat": 9} for h in at)
    assert all(ts_to_ns(h["timestamp"]) <= t1 for h in at)
    # filters apply to the metadata as it was
    at = kd("vector", "search", "s", vec_text(q), "-k", "1000", "--at", f"@{t1}", "--filter", "cat == 9",
            "--json").json()
    assert at == {"hits": []}
    cur = kd("vector", "search", "s", vec_text(q), "-k", "1000", "--filter", "cat == 9", "--json").json()["hits"]
    assert len(cur) == sum(1 for _, _, meta in now.values() if meta == {"cat": 9})
    # before any vector: nothing (@0 too, which the library would read as "now")
    for t in ("@1", "@0", "1970-01-01T00:00:00Z"):
        assert kd("vector", "search", "s", vec_text(q), "--at", t, "--json").json() == {"hits": []}


def test_exact_duplicates_score_exactly(kd):
    # A vector found by itself is at l2 distance 0 and cosine 1, through the
    # indexes and through the log (--at now) alike, so --min-score 0 under l2
    # keeps it; cosines stay in [-1, 1], even for a query whose length is
    # beyond float32; both paths give the same scores.
    vs = {"a": [0.3, 0.7, 1.1], "b": [1, 1, 0], "c": [-0.5, 2, 0.25], "d": [1e20, 2e19, 3], "e": [1e-40, 0, 0]}
    shell(kd, [f"vector put d/{k} '{vec_text(v)}' --model m" for k, v in vs.items()])
    for at in ([], ["--at", "now"]):
        hits = kd("vector", "search", "d", "[0.3, 0.7, 1.1]", "--metric", "l2", "--min-score", "0", *at,
                  "--json").json()["hits"]
        assert [(h["key"], h["score"]) for h in hits] == [("a", 0)], at
        hits = kd("vector", "search", "d", "[3e38, 3e38, 0]", *at, "--json").json()["hits"]
        assert (hits[0]["key"], hits[0]["score"]) == ("b", 1), (at, hits)
        assert all(-1 <= h["score"] <= 1 for h in hits), hits
    for metric in ("cosine", "dot", "l2"):
        for key, v in vs.items():
            now = kd("vector", "search", "d", vec_text(v), "--metric", metric, "--json").json()["hits"]
            log = kd("vector", "search", "d", vec_text(v), "--metric", metric, "--at", "now", "--json").json()["hits"]
            assert [(h["key"], h["score"]) for h in now] == [(h["key"], h["score"]) for h in log], (metric, key)
            mine = [h["score"] for h in now if h["key"] == key]
            assert mine == ([0] if metric == "l2" else [1] if metric == "cosine" else mine), (metric, key, now)


# ---------------------------------------------------------------------------
# stats
# ---------------------------------------------------------------------------


def test_stats(kd):
    assert kd("vector", "stats").out == ""
    assert kd("vector", "stats", "--json").json() == {"stats": []}
    shell(kd, ["vector put b/x '[1, 2, 3]' --model m1",
               "vector put b/y '[1, 2, 4]' --model m1",
               "vector put b/z '[1, 2]' --model m2",
               "vector put a/x '[1]' --model m1",
               "vector delete b/y"])
    st = kd("vector", "stats", "--json").json()["stats"]
    assert [(s["namespace"], s["model"], s["dim"], s["vectors"]) for s in st] == [
        ("a", "m1", 1, 1), ("b", "m1", 3, 1), ("b", "m2", 2, 1)]
    assert all(list(s) == ["namespace", "model", "dim", "vectors", "unindexed", "index_bytes"] for s in st)
    assert all(s["index_bytes"] > 0 and s["unindexed"] == 0 for s in st)
    st_b = kd("vector", "stats", "b", "--json").json()["stats"]
    assert [(s["namespace"], s["model"], s["dim"], s["vectors"]) for s in st_b] == [("b", "m1", 3, 1), ("b", "m2", 2, 1)]
    r = kd("vector", "stats", "b")
    lines = r.out.splitlines()
    assert re.split(r"  +", lines[0]) == ["namespace", "model", "dim", "vectors", "unindexed", "index_bytes"]
    assert [re.split(r"  +", x)[:5] for x in lines[1:]] == [["b", "m1", "3", "1", "0"], ["b", "m2", "2", "1", "0"]]
    # once every vector of a (namespace, model) is deleted, it is gone and may take a new dimension
    assert kd("vector", "delete", "a/x").rc == 0
    assert [s["namespace"] for s in kd("vector", "stats", "--json").json()["stats"]] == ["b", "b"]
    assert put(kd, "a/x", [1, 2, 3, 4], "m1")["dim"] == 4


# ---------------------------------------------------------------------------
# errors
# ---------------------------------------------------------------------------


def test_input_errors_before_the_database(kd):
    """Mistakes on the command line: refused before any database or server
    is involved (nothing is created, no request is sent)."""
    cases = [
        # bad VECTOR (exit 4)
        (4, ["vector", "put", "e/a", "[1, 2", "--model", "m"], "kdelta: vector: invalid JSON"),
        (4, ["vector", "put", "e/a", "[1, NaN]", "--model", "m"], "kdelta: vector: invalid JSON"),
        (4, ["vector", "put", "e/a", "[1, Infinity]", "--model", "m"], "kdelta: vector: invalid JSON"),
        (4, ["vector", "put", "e/a", "[1, 1e39]", "--model", "m"], "element 1 (1e+39) is beyond the range of float32"),
        (4, ["vector", "put", "e/a", "[1, -1e39]", "--model", "m"], "beyond the range of float32"),
        (4, ["vector", "put", "e/a", "[]", "--model", "m"], "1 to 4096 numbers"),
        (4, ["vector", "put", "e/a", "[" + ",".join(["1"] * 4097) + "]", "--model", "m"], "1 to 4096 numbers"),
        (4, ["vector", "put", "e/a", '[1, "2"]', "--model", "m"], "element 1 is not a number"),
        (4, ["vector", "put", "e/a", '{"v": [1]}', "--model", "m"], "a JSON array of numbers"),
        (4, ["vector", "search", "e", "[1, null]"], "element 1 is not a number"),
        (4, ["vector", "put", "e/a", "[1]", "--model", "m", "--meta", "{bad"], "kdelta: --meta: invalid JSON"),
        (4, ["vector", "put", "noslash", "[1]", "--model", "m"], "expected NS/KEY"),
        (4, ["vector", "search", "e", "[1]", "--metric", "cos"],
         "kdelta: --metric: unknown metric 'cos': use cosine, dot or l2"),
        (4, ["vector", "search", "e", "[1]", "--filter", "cat =="], "kdelta: --filter: column"),
        (4, ["vector", "search", "e", "[1]", "--at", "yesterday"], "kdelta: --at: "),
        (4, ["vector", "get", "e/a", "--at", "soon"], "kdelta: --at: "),
        (4, ["vector", "search", "", "[1]"], "expected a namespace"),
        # usage (exit 2)
        (2, ["vector", "put", "e/a", "[1, 2]"], "kdelta: vector put: --model is required"),
        (2, ["vector", "search", "e", "[1]", "-k", "0"], "kdelta: -k/--top: expected a whole number from 1 to 10000"),
        (2, ["vector", "search", "e", "[1]", "--top", "10001"], "kdelta: -k/--top: "),
        (2, ["vector", "search", "e", "[1]", "-k", "ten"], "kdelta: -k/--top: "),
        (2, ["vector", "search", "e", "[1]", "--min-score", "high"], "kdelta: --min-score: expected a number"),
        (2, ["vector", "search", "e", "[1]", "--min-score", "1e39"], "kdelta: --min-score: "),
        (2, ["vector", "search", "e", "[1]", "--ef", "-1"], "kdelta: --ef: "),
        (2, ["vector", "get", "e/a", "--model", "m"], "kdelta: --model: is not an option of 'vector get'"),
        (2, ["vector", "put", "e/a", "[1]", "--model", "m", "-k", "3"], "kdelta: -k/--top: is not an option of"),
        (2, ["vector", "search", "e", "[1]", "--meta", "{}"], "kdelta: --meta: is not an option of 'vector search'"),
        (2, ["vector", "log", "e/a", "--at", "-1m"], "kdelta: --at: is not an option of 'vector log'"),
        (2, ["vector", "delete", "e/a", "--reverse"], "kdelta: --reverse: is not an option of 'vector delete'"),
        (2, ["vector", "stats", "--filter", "a == 1"], "kdelta: --filter: is not an option of 'vector stats'"),
        (2, ["vector", "frob"], "kdelta: vector: unknown subcommand 'frob'"),
        (2, ["vector"], "kdelta: vector: missing arguments"),
        (2, ["vector", "put", "e/a"], "kdelta: vector put: missing arguments"),
        (2, ["vector", "search", "a", "b", "c"], "kdelta: vector search: too many arguments"),
        (2, ["get", "e/a", "--model", "m"], "kdelta: --model: is an option of 'vector', not of 'get'"),
        (2, ["query", "e", "-k", "3"], "kdelta: --top: is an option of 'vector', not of 'query'"),
    ]
    for status, args, want in cases:
        r = kd(*args)
        line = one_error_line(r, status)
        assert line.startswith(want) or want in line, (args, line)
        assert r.out == ""
        kd.untouched()


def test_model_errors(kd):
    one_error_line(kd("vector", "put", "e/a", "[1]", "--model", b"m\xff"), 4)
    kd.untouched()
    line = one_error_line(kd("vector", "put", "e/a", "[1]", "--model", ""), 4)
    assert line == "kdelta: e/a: model name is 0 bytes; it must be 1 to 255"
    line = one_error_line(kd("vector", "put", "e/a", "[1]", "--model", "x" * 256), 4)
    assert line == "kdelta: e/a: model name is 256 bytes; it must be 1 to 255"
    assert kd("vector", "put", "e/a", "[1]", "--model", "x" * 255).rc == 0


def test_library_errors(kd):
    put(kd, "d/a", [1, 2, 3], "m")
    # dimension mismatch: on put (per namespace and model) and on search
    line = one_error_line(kd("vector", "put", "d/b", "[1, 2]", "--model", "m"), 4)
    assert line == "kdelta: d/b: vector has 2 dimensions but the vectors of model 'm' in namespace 'd' have 3"
    assert put(kd, "d/b", [1, 2], "other")["dim"] == 2  # another model may have another dimension
    assert put(kd, "d2/b", [1, 2], "m")["dim"] == 2  # and another namespace
    line = one_error_line(kd("vector", "search", "d", "[1, 2, 3, 4]"), 4)
    assert line.startswith("kdelta: d: the query has 4 dimensions but the vectors of model ")
    line = one_error_line(kd("vector", "search", "d", "[1, 2]", "--model", "m"), 4)
    assert "the query has 2 dimensions" in line and "'m'" in line
    # zero vectors: refused when stored; a zero query has no cosine (dot and l2 take it)
    line = one_error_line(kd("vector", "put", "d/z", "[0, 0, -0.0]", "--model", "m"), 4)
    assert line == "kdelta: d/z: all 3 components are zero (a zero vector has no direction)"
    line = one_error_line(kd("vector", "search", "d", "[0, 0, 0]"), 4)
    assert "zero vector" in line
    assert kd("vector", "search", "d", "[0, 0, 0]", "--metric", "dot").rc == 0
    assert kd("vector", "search", "d", "[0, 0, 0]", "--metric", "l2").rc == 0
    # a length beyond float32 is refused
    line = one_error_line(kd("vector", "put", "d/big", "[3e38, 3e38, 3e38]", "--model", "m"), 4)
    assert "overflows" in line
    # reserved and overlong namespaces
    line = one_error_line(kd("vector", "put", "_kd.vec.d/a", "[1, 2, 3]", "--model", "m"), 4)
    assert line.startswith("kdelta: _kd.vec.d/a: namespace '_kd.vec.d' is reserved")
    one_error_line(kd("vector", "get", "_kd/a"), 4)
    one_error_line(kd("vector", "search", "_kd", "[1]"), 4)
    line = one_error_line(kd("vector", "stats", "_kdx", "--json"), 4)  # as search: none can be there
    assert "namespace '_kdx' is reserved" in line
    line = one_error_line(kd("vector", "put", "n" * 248 + "/a", "[1]", "--model", "m"), 4)
    assert "at most 247 bytes" in line
    # a huge dot product is inf: shown, not an error
    put(kd, "inf/a", [3e38, 1], "m")
    hits = kd("vector", "search", "inf", "[3e38, 1]", "--metric", "dot", "--json").json()["hits"]
    assert hits[0]["score"] == "inf"
    assert kd("vector", "search", "inf", "[3e38, 1]", "--metric", "dot").out.splitlines()[1].startswith("inf  ")
    assert kd("vector", "search", "inf", "[-3e38, 1]", "--metric", "dot", "--json").json()["hits"][0]["score"] == "-inf"


def test_shell_and_json_lines(kd):
    out = shell(kd, ["vector put sh/a '[1, 2]' --model m --json",
                     "vector get sh/a --json",
                     "vector search sh '[1, 2]' --json",
                     "vector stats sh --json"])
    rec, got, hits, st = (json.loads(x) for x in out)
    assert rec == got
    assert [h["write_id"] for h in hits["hits"]] == [rec["write_id"]]
    assert hits["hits"][0]["version_id"] == rec["version_id"]
    assert st["stats"][0]["vectors"] == 1
    # options of one line do not leak into the next
    out = shell(kd, ["vector search sh '[1, 2]' --model nope --json", "vector search sh '[1, 2]' --json"])
    assert json.loads(out[0]) == {"hits": []} and len(json.loads(out[1])["hits"]) == 1


def test_reopen_keeps_vectors(kd):
    rng = random.Random(7)
    state = random_state(rng, 30, 4)
    shell(kd, put_lines(state))
    q = "[0.1, 0.2, 0.3, 0.4]"
    before = kd("vector", "search", "s", q, "-k", "30", "--json").json()
    after = kd.reopen("vector", "search", "s", q, "-k", "30", "--json").json()
    assert after == before
    check_hits(after["hits"], f32_state(state), [f32(x) for x in json.loads(q)], 30)


# ---------------------------------------------------------------------------
# Vectors travel with `export --history` / `import --history`
# ---------------------------------------------------------------------------


def test_history_export_carries_vectors(kd, kd_raw, tmp_path):
    put(kd, "docs/a", [1, 2, 3], "m", '{"t":1}')
    put(kd, "docs/b", [1, 0, 3])
    put(kd, "docs/a", [3, 2, 1])
    assert kd("vector", "delete", "docs/b").rc == 0
    assert kd("set", "docs/x", '{"y":1}').rc == 0
    dump = kd("export", "--history")
    assert dump.rc == 0, dump.err
    lines = [json.loads(line) for line in dump.out.splitlines()]
    assert [(r["namespace"], r["key"], r["deleted"]) for r in lines] == [
        ("_kd.vec.docs", "a", False), ("_kd.vec.docs", "b", False), ("_kd.vec.docs", "a", False),
        ("_kd.vec.docs", "b", True), ("docs", "x", False)]
    other = str(tmp_path / "copy")
    r = kd_raw("--db", other, "import", "--history", "-", input=dump.out)
    assert r.rc == 0, r.err
    # the copy is the same database: roots, vectors, and their history
    mine, theirs = kd("--json", "status").json(), kd_raw("--db", other, "--json", "status").json()
    assert mine["roots"] == theirs["roots"] and "vectors" in mine["roots"]
    for args in (["vector", "search", "docs", "[3,2,1]", "--json"], ["vector", "log", "docs/a", "--json"],
                 ["vector", "get", "docs/b"]):
        a, b = kd(*args), kd_raw("--db", other, *args)
        assert (a.rc, a.out) == (b.rc, b.out), args


def vectors_doc():
    with open(os.path.join(REPO, "docs", "VECTORS.md"), encoding="utf-8") as f:
        return f.read()


def test_doc_says_history_export_carries_vectors():
    # docs/VECTORS.md says what the test above checks, wherever it names
    # `export --history`: no passage there has vectors left out
    passages = [p for p in re.split(r"\n\s*\n|\n- ", vectors_doc()) if "export --history" in p]
    assert len(passages) >= 2
    for p in passages:
        assert not re.search(r"leaves out|left out|vectors included|without (the )?vectors", p), p


def doc_section(doc, title):
    start = doc.index("\n## " + title + "\n")
    end = doc.find("\n## ", start + 1)
    return doc[start:end if end >= 0 else len(doc)]


def test_doc_lists_the_length_refusal(kd):
    # a finite, non-zero vector whose length is beyond float32 is refused;
    # docs/VECTORS.md says so where it says what a vector is, and its Errors
    # table has the message
    r = kd("vector", "put", "d/a", "[3e38, 3e38]", "--model", "m")
    assert r.rc != 0 and "the vector's length overflows float32" in r.err, r.err
    doc = vectors_doc()
    assert "the vector's length overflows float32" in doc_section(doc, "Errors")
    assert "overflows float32" in doc_section(doc, "Model")


def test_history_import_refuses_what_is_not_a_vector(kd, kd_raw, tmp_path):
    put(kd, "docs/a", [1, 2, 3])
    rec = json.loads(kd("export", "--history").out.splitlines()[0])
    other = str(tmp_path / "copy")
    # a reserved namespace other than a vector one stays refused
    bad = dict(rec, namespace="_kd.views")
    line = one_error_line(kd_raw("--db", other, "import", "--history", "-", input=json.dumps(bad) + "\n"), 4)
    assert "_kd.views" in line, line
    # a vector namespace whose value is not a vector record: refused, nothing written
    # (its write_id no longer matches either, but the record is judged first)
    bad = dict(rec, value={"dim": 3, "meta": None, "model": "m", "vector": "not base64!"})
    line = one_error_line(kd_raw("--db", other, "import", "--history", "-", input=json.dumps(bad) + "\n"), 4)
    assert "not a vector record" in line, line
    st = kd_raw("--db", other, "--json", "status").json()
    assert st["versions"] == 0


def test_log_lists_pruned_versions(kd):
    """A vector's history lists versions whose vectors a compaction removed
    (here with their dropped workspace), as `log` lists a value's: it
    failed outright ("the value was removed …", exit 3; HTTP 410)."""
    assert kd("workspace", "create", "w").rc == 0
    for v in ([1, 2], [3, 4]):
        assert kd("-w", "w", "vector", "put", "u/a", json.dumps(v), "--model", "m").rc == 0
    assert kd("workspace", "drop", "w").rc == 0
    assert kd("compact").rc == 0
    assert kd("workspace", "create", "w").rc == 0
    line = one_error_line(kd("-w", "w", "vector", "get", "u/a"), 3)  # it said "never written"
    assert "its vectors were removed when its workspace was dropped" in line, line
    r = kd("-w", "w", "vector", "log", "u/a")
    assert r.rc == 0, r.err
    assert r.out.count("vector   (removed with its dropped workspace)") == 2, r.out
    assert kd("-w", "w", "vector", "put", "u/a", "[5, 6]", "--model", "m").rc == 0
    recs = json.loads(kd("-w", "w", "vector", "log", "u/a", "--json").out)
    assert [x["vector"] for x in recs] == [[5, 6], None, None]
    assert [x.get("pruned_by") for x in recs] == [None, "workspace_drop", "workspace_drop"]
    assert "pruned" not in recs[0] and recs[1]["pruned"] is True and recs[1]["model"] is None


def test_ties_at_the_kth_place_are_kept_by_key(kd):
    """Equal scores are ordered by namespace, then key (docs/VECTORS.md),
    also where the top k cuts them: a search of now kept the tied vectors
    written first, a search of the past (and the docs) the first keys."""
    for k in "ecadb":
        put(kd, f"ns/{k}", [1, 2, 3])
    at = put(kd, "ns/z", [1, 2, 4])["timestamp"]
    want = {"l2": ["a", "b", "c", "d"], "dot": ["z", "a", "b", "c"], "cosine": ["a", "b", "c", "d"]}
    for metric, keys in want.items():
        for k in (1, 2, 4):
            for when in ([], ["--at", at]):
                r = kd("--json", "vector", "search", "ns", "[1,2,3]", "--metric", metric, "-k", str(k), *when)
                assert r.rc == 0, r.err
                assert [h["key"] for h in r.json()["hits"]] == keys[:k], (metric, k, when, r.out)
