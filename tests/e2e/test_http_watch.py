"""The live change stream of `kdelta serve`: GET /api/v1/watch as
Server-Sent Events (server/routes_keys.c).

Each event is "id: <timestamp ns>", "event: insert|update|delete|missed"
and one JSON data line; the stream opens with a comment and an id-only
block (its starting point). Filters: ns, key, types, filter. A reconnect
with Last-Event-ID replays from the log, then continues live: nothing lost,
nothing doubled.
"""
import json
import queue
import socket
import threading
import time

from helpers import ts_to_ns
from server import quote_query, quote_seg, sse_events

API = "/api/v1"


class Watch:
    """One open stream, read by a background thread into a queue."""

    def __init__(self, server, params=None, headers=None):
        path = f"{API}/watch" + (quote_query(params) if params else "")
        self.conn, self.resp = server.open_stream(path, headers)
        self.status = self.resp.status
        self.headers = self.resp.headers
        self.q = queue.Queue()
        self.start_id = None   # the id of the opening block
        self.last_id = None    # the id of the last block with one
        if self.status != 200:
            self.error = json.loads(self.resp.read())
            self.conn.close()
            return
        self.sock = self.conn.sock or self.resp.fp.raw._sock
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for ev in sse_events(self.resp):
                self.q.put(ev)
        except (OSError, ValueError, AttributeError):
            pass
        self.q.put(None)

    def _next(self, deadline):
        """Next block (comments included), None at the end of the stream."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        try:
            ev = self.q.get(timeout=left)
        except queue.Empty:
            raise TimeoutError
        if ev is not None and "id" in ev:
            self.last_id = int(ev["id"])
            if self.start_id is None and "event" not in ev:
                self.start_id = self.last_id
        return ev

    def wait_open(self, timeout=10):
        """Read up to the opening id block: the subscription is in place."""
        deadline = time.monotonic() + timeout
        while self.start_id is None:
            ev = self._next(deadline)
            assert ev is not None, "stream ended before it opened"
        return self

    def events(self, n, timeout=10):
        """The next n events (comments and id-only blocks skipped), each
        {"id": int, "event": str, "data": parsed JSON}."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            try:
                ev = self._next(deadline)
            except TimeoutError:
                raise AssertionError(f"only {len(out)} of {n} events came: {out[-3:]}")
            if ev is None:
                raise AssertionError(f"stream ended after {len(out)} of {n} events")
            if "event" in ev:
                out.append({"id": int(ev["id"]), "event": ev["event"], "data": json.loads(ev["data"])})
        return out

    def no_more(self, wait=0.3):
        """No event arrives within `wait` s (a negative check, not a timing one)."""
        deadline = time.monotonic() + wait
        while True:
            try:
                ev = self._next(deadline)
            except TimeoutError:
                return True
            if ev is None:
                return True
            assert "event" not in ev, f"unexpected event {ev}"

    def ended(self, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            ev = self._next(deadline)
            if ev is None:
                return True

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()
        self.resp.close()


def put(server, ns, key, value):
    st, doc = server.json("PUT", f"{API}/namespaces/{quote_seg(ns)}/keys/{quote_seg(key)}", json.dumps(value))
    assert st in (200, 201), doc
    return doc


def delete(server, ns, key):
    st, doc = server.json("DELETE", f"{API}/namespaces/{quote_seg(ns)}/keys/{quote_seg(key)}")
    assert st == 200, doc
    return doc


def batch(server, writes):
    st, doc = server.json("POST", f"{API}/batch", {"writes": writes})
    assert st == 200, doc
    return doc["versions"]


def summary(evs):
    return [(e["event"], e["data"]["namespace"], e["data"]["key"], e["data"]["value"], e["data"]["previous_value"])
            for e in evs]


def check_event(ev, rec, type_, prev=None):
    """An event against the version record the write returned."""
    d = ev["data"]
    assert ev["event"] == type_ and d["type"] == type_
    assert list(d) == ["type", "namespace", "key", "value", "previous_value", "version"]
    assert (d["namespace"], d["key"], d["value"]) == (rec["namespace"], rec["key"], rec["value"])
    assert d["previous_value"] == prev
    v = d["version"]
    assert list(v) == ["version_id", "write_id", "previous_write_id", "timestamp", "deleted"]
    for f in v:
        assert v[f] == rec[f], f
    assert ev["id"] == ts_to_ns(rec["timestamp"])


# ---------------------------------------------------------------------------
# delivery
# ---------------------------------------------------------------------------


def test_head_sends_headers_only(server):
    """HEAD /api/v1/watch: the stream's headers and no body; it sent the end
    of a chunked body, bytes a keep-alive client read as the start of its
    next response."""
    with socket.create_connection((server.host, server.port), timeout=10) as s:
        s.sendall(b"HEAD /api/v1/watch HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head, head
    assert rest.startswith(b"HTTP/1.1 200"), rest[:40]


def test_put_update_delete_events(server):
    w = Watch(server).wait_open()
    assert w.headers["Content-Type"].startswith("text/event-stream")
    r1 = put(server, "users", "alice", {"age": 30})
    r2 = put(server, "users", "alice", {"age": 31})
    r3 = delete(server, "users", "alice")
    r4 = put(server, "users", "alice", None)  # again after the delete: an insert, null is a value
    evs = w.events(4)
    check_event(evs[0], r1, "insert")
    check_event(evs[1], r2, "update", {"age": 30})
    check_event(evs[2], r3, "delete", {"age": 31})
    check_event(evs[3], r4, "insert")
    assert [e["id"] for e in evs] == sorted(e["id"] for e in evs)
    assert w.start_id < evs[0]["id"]
    w.close()


def test_filters(server):
    watches = {
        "ns": Watch(server, {"ns": "a"}),
        "key": Watch(server, {"ns": "a", "key": "k/1 é"}),
        "types": Watch(server, {"types": "delete, insert"}),  # blanks around items dropped
        "filter": Watch(server, {"ns": "a", "filter": "n > 2"}),
        "all": Watch(server),
    }
    for w in watches.values():
        assert w.status == 200
        w.wait_open()
    put(server, "a", "k/1 é", {"n": 1})    # insert
    put(server, "b", "k/1 é", {"n": 5})    # insert, other ns
    put(server, "a", "k/1 é", {"n": 3})    # update
    put(server, "a", "x", {"n": 4})        # insert
    delete(server, "a", "k/1 é")           # delete (of n=3: matches the filter by its previous value)
    put(server, "a", "x", {"n": 0})        # update
    expect = {
        "ns": [("insert", "k/1 é", 1), ("update", "k/1 é", 3), ("insert", "x", 4), ("delete", "k/1 é", None),
               ("update", "x", 0)],
        "key": [("insert", "k/1 é", 1), ("update", "k/1 é", 3), ("delete", "k/1 é", None)],
        "types": [("insert", "k/1 é", 1), ("insert", "k/1 é", 5), ("insert", "x", 4), ("delete", "k/1 é", None)],
        "filter": [("update", "k/1 é", 3), ("insert", "x", 4), ("delete", "k/1 é", None)],
    }
    for name, want in expect.items():
        evs = watches[name].events(len(want))
        got = [(e["event"], e["data"]["key"], e["data"]["value"] and e["data"]["value"]["n"]) for e in evs]
        assert got == want, name
    assert len(watches["all"].events(6)) == 6
    for name, w in watches.items():
        if name != "all":
            assert w.no_more(), name
        w.close()


def test_bad_parameters_are_400(server):
    for params, headers, code, words in [
        ({"filter": "n >"}, None, "invalid", ["filter", "column 4"]),
        ({"filter": "n = nope"}, None, "invalid", ["column"]),
        ({"filter": "name matches \"(\""}, None, "invalid", ["column"]),
        ({"types": "insert,upsert"}, None, "invalid", ["upsert"]),
        ({"types": ""}, None, "invalid", ["types"]),
        ({"types": "insert, "}, None, "invalid", ["types"]),
        ({"key": "k"}, None, "invalid", ["namespace"]),
        ({"ns": "_kd.views"}, None, "reserved", []),
        ({"ns": ""}, None, "invalid", []),
        ({"ns": "n" * 256}, None, "too_big", []),
        ({"queue": "0"}, None, "invalid", ["queue"]),
        ({"last_event_id": "yesterday"}, None, "invalid", ["Last-Event-ID"]),
        (None, {"Last-Event-ID": "12a"}, "invalid", ["Last-Event-ID"]),
    ]:
        w = Watch(server, params, headers)
        assert w.status == 400, (params, headers)
        assert w.error["error"]["code"] == code, (params, w.error)
        for word in words:
            assert word in w.error["error"]["message"], (params, w.error)


def test_burst_of_2000_writes_arrives_in_order(server):
    w = Watch(server, {"ns": "burst", "queue": "5000"}).wait_open()
    recs = []
    for i in range(0, 1900, 100):
        recs += batch(server, [{"namespace": "burst", "key": f"k{j % 37}", "value": j} for j in range(i, i + 100)])
    conn = server.connection()
    for j in range(1900, 2000):  # and single puts over one keep-alive connection
        st, _, data = server.request("PUT", f"{API}/namespaces/burst/keys/k{j % 37}", str(j), conn=conn)
        assert st in (200, 201)
        recs.append(json.loads(data))
    conn.close()
    evs = w.events(2000, timeout=30)
    assert [e["data"]["value"] for e in evs] == list(range(2000))
    assert [e["data"]["version"]["write_id"] for e in evs] == [r["write_id"] for r in recs]
    ids = [e["id"] for e in evs]
    assert all(a < b for a, b in zip(ids, ids[1:]))
    assert [e["event"] for e in evs[:37]] == ["insert"] * 37 and {e["event"] for e in evs[37:]} == {"update"}
    assert w.no_more(0.2)
    w.close()


def test_overflow_gives_missed_and_resume_fills_the_gap(server):
    w = Watch(server, {"ns": "m", "queue": "10"}).wait_open()
    recs = batch(server, [{"namespace": "m", "key": f"k{i}", "value": i} for i in range(100)])
    evs = w.events(11)
    assert [e["data"]["value"] for e in evs[:10]] == list(range(10))
    assert evs[10]["event"] == "missed" and evs[10]["data"] == {"type": "missed", "missed": 90}
    assert evs[10]["id"] == evs[9]["id"]  # resuming from it replays the gap
    w.close()
    w2 = Watch(server, {"ns": "m"}, {"Last-Event-ID": str(evs[10]["id"])}).wait_open()
    rest = w2.events(90)
    assert [e["data"]["value"] for e in rest] == list(range(10, 100))
    assert [e["data"]["version"]["write_id"] for e in rest] == [r["write_id"] for r in recs[10:]]
    assert w2.no_more(0.2)
    w2.close()


# ---------------------------------------------------------------------------
# resuming
# ---------------------------------------------------------------------------


def test_resume_after_disconnect(server):
    live = Watch(server).wait_open()      # stays connected throughout, for comparison
    w = Watch(server).wait_open()
    put(server, "r", "a", 1)
    put(server, "r", "b", {"x": 1})
    first = w.events(2)
    w.close()
    # while disconnected: updates, a delete, a re-creation, a batch
    put(server, "r", "a", 2)
    delete(server, "r", "b")
    put(server, "r", "b", {"x": 2})
    batch(server, [{"namespace": "r", "key": "c", "value": [1]}, {"namespace": "r", "key": "a", "delete": True}])
    w = Watch(server, None, {"Last-Event-ID": str(first[-1]["id"])}).wait_open()
    assert w.start_id == first[-1]["id"]
    replayed = w.events(5)
    put(server, "r", "c", [2])  # live again
    after = w.events(1)
    everything = live.events(8)
    assert first + replayed + after == everything
    assert summary(replayed) == [
        ("update", "r", "a", 2, 1),
        ("delete", "r", "b", None, {"x": 1}),
        ("insert", "r", "b", {"x": 2}, None),
        ("insert", "r", "c", [1], None),
        ("delete", "r", "a", None, 2),
    ]
    assert w.no_more(0.2)
    # ?last_event_id= works like the header; from the opening id of a stream
    # that saw nothing, everything after its start comes back.
    w3 = Watch(server, {"last_event_id": str(live.start_id)}).wait_open()
    assert w3.events(8) == everything
    for x in (w, w3, live):
        x.close()


def test_resume_id_after_the_newest_event_or_negative_is_400(server):
    """A Last-Event-ID this database cannot have sent (later than its newest
    write, or negative) would silently drop every live event until the clock
    passes it: it is refused. An id equal to the newest event resumes."""
    w = Watch(server, {"ns": "fut"}).wait_open()
    put(server, "fut", "a", 1)
    newest = w.events(1)[0]["id"]
    w.close()
    for params, headers, name in [
        (None, {"Last-Event-ID": str(newest + 1)}, "Last-Event-ID"),
        ({"last_event_id": str(newest + 3600 * 10**9)}, None, "last_event_id"),
        (None, {"Last-Event-ID": "-1"}, "Last-Event-ID"),
        ({"last_event_id": "-5"}, None, "last_event_id"),
        ({"last_event_id": "12.5"}, None, "last_event_id"),
    ]:
        bad = Watch(server, dict(params or {}, ns="fut"), headers)
        assert bad.status == 400, (params, headers)
        err = bad.error["error"]
        assert err["code"] == "invalid", err
        assert name in err["message"], err
    # the newest id itself: nothing is replayed, live events come
    w = Watch(server, {"ns": "fut"}, {"Last-Event-ID": str(newest)}).wait_open()
    assert w.start_id == newest
    put(server, "fut", "a", 2)
    ev = w.events(1)[0]
    assert ev["data"]["value"] == 2 and ev["id"] > newest
    w.close()
    # an id before the newest replays what came after it
    w = Watch(server, {"ns": "fut"}, {"Last-Event-ID": str(newest)}).wait_open()
    assert w.events(1)[0]["data"]["value"] == 2
    w.close()


def test_resume_with_filters_equals_live(server):
    params = {"ns": "f", "types": "insert,delete", "filter": "n >= 2"}
    live = Watch(server, params).wait_open()
    put(server, "f", "a", {"n": 1})
    put(server, "f", "a", {"n": 2})          # update: not chosen
    delete(server, "f", "a")                 # delete of n=2: chosen
    put(server, "f", "a", {"n": 3})          # insert again
    put(server, "g", "a", {"n": 9})          # other namespace
    put(server, "f", "b", {"n": 5})
    delete(server, "f", "a")
    put(server, "f", "c", {"n": 0})
    delete(server, "f", "c")                 # delete of n=0: not chosen
    evs = live.events(4)
    assert [(e["event"], e["data"]["key"]) for e in evs] == [("delete", "a"), ("insert", "a"), ("insert", "b"),
                                                             ("delete", "a")]
    assert live.no_more(0.2)
    replay = Watch(server, params, {"Last-Event-ID": str(live.start_id)}).wait_open()
    assert replay.events(4) == evs
    assert replay.no_more(0.2)
    # and from the middle
    mid = Watch(server, params, {"Last-Event-ID": str(evs[1]["id"])}).wait_open()
    assert mid.events(2) == evs[2:]
    for x in (live, replay, mid):
        x.close()


def test_reconnecting_under_writes_loses_and_doubles_nothing(server):
    n_writes = 400
    recs = []
    done = threading.Event()

    def writer():
        conn = server.connection()
        try:
            for i in range(n_writes):
                st, _, data = server.request("PUT", f"{API}/namespaces/cw/keys/k{i % 13}", str(i), conn=conn)
                assert st in (200, 201)
                recs.append(json.loads(data))
        finally:
            conn.close()
            done.set()

    got = []
    w = Watch(server, {"ns": "cw"}).wait_open()
    start = w.start_id
    t = threading.Thread(target=writer)
    t.start()
    reconnects = 0
    while len(got) < n_writes:
        take = min(25 + 10 * reconnects, n_writes - len(got))
        got += w.events(take, timeout=20)
        w.close()
        reconnects += 1
        resume = got[-1]["id"] if got else start
        w = Watch(server, {"ns": "cw"}, {"Last-Event-ID": str(resume)}).wait_open()
        assert w.start_id == resume
    t.join()
    assert done.is_set() and len(recs) == n_writes
    assert [e["data"]["value"] for e in got] == list(range(n_writes))
    assert [e["data"]["version"]["write_id"] for e in got] == [r["write_id"] for r in recs]
    assert w.no_more(0.2)
    w.close()
    assert reconnects >= 5


def test_streams_opened_under_durable_writes_lose_nothing(server):
    """A stream opened without Last-Event-ID while others write (sync=always):
    a write committed before its subscription but durable only after its
    starting point was neither queued nor replayed, so about half such
    streams lost their first few events for good."""
    stop = threading.Event()
    errors = []

    def writer(t):
        conn = server.connection()
        try:
            i = 0
            while not stop.is_set():
                i += 1
                st, _, _ = server.request("PUT", f"{API}/namespaces/ow/keys/t{t}-{i % 5}", str(i), conn=conn)
                if st not in (200, 201):
                    errors.append(st)
        finally:
            conn.close()

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(3)]
    for th in threads:
        th.start()
    watches = []
    try:
        time.sleep(0.2)  # writers under way: not a timing assert, only load
        for _ in range(8):
            watches.append(Watch(server, {"ns": "ow"}).wait_open())
            time.sleep(0.03)
        time.sleep(0.2)
    finally:
        stop.set()
        for th in threads:
            th.join(30)
    assert not errors, errors
    log, since = [], None
    while True:
        st, _, data = server.request("GET", f"{API}/changes" + quote_query({"ns": "ow", **({"since": since} if since else {})}))
        assert st == 200
        page = json.loads(data)
        log += [(ts_to_ns(c["timestamp"]), c["key"]) for c in page["changes"]]
        if page["next"] is None:
            break
        since = page["next"]
    for w in watches:
        want = [x for x in log if x[0] > w.start_id]
        evs = w.events(len(want), timeout=30)
        assert [(e["id"], e["data"]["key"]) for e in evs] == want
        assert w.no_more(0.2)
        w.close()


def test_resume_across_a_compaction_marks_pruned_writes(server):
    """A resume replays from the log; writes whose values a compaction
    removed were left out without a word (the replay after keep_last 1 gave
    only the delete). They come marked pruned, value null, whatever the
    filter (their value can no longer be matched)."""
    start = Watch(server, {"ns": "u"}).wait_open().start_id
    recs = [put(server, "u", "a", {"v": v}) for v in (1, 2, 3)]
    tomb = delete(server, "u", "a")
    st, _, _ = server.request("PUT", f"{API}/retention/u", {"keep_last": 1})
    assert st == 200
    st, _, body = server.request("POST", f"{API}/compact", {})
    assert st == 200, body

    w = Watch(server, {"ns": "u"}, {"Last-Event-ID": str(start)}).wait_open()
    evs = w.events(4)
    assert [e["event"] for e in evs] == ["insert", "update", "update", "delete"]
    for e, rec in zip(evs[:3], recs):
        assert e["data"]["value"] is None and e["data"]["previous_value"] is None
        v = e["data"]["version"]
        assert v["pruned"] is True and v["pruned_by"] == "retention", v
        assert (v["write_id"], v["version_id"]) == (rec["write_id"], rec["version_id"])
    assert evs[3]["data"]["version"]["write_id"] == tomb["write_id"]
    assert "pruned" not in evs[3]["data"]["version"]
    assert w.no_more(0.2)
    w.close()
    # a filter cannot see a value that is gone: the puts come marked; the
    # delete is matched against the value it removed, gone too, as live
    w = Watch(server, {"ns": "u", "filter": "v = 2"}, {"Last-Event-ID": str(start)}).wait_open()
    assert [(e["event"], e["data"]["version"]["pruned"]) for e in w.events(3)] == [
        ("insert", True), ("update", True), ("update", True)]
    assert w.no_more(0.2)
    w.close()
    w = Watch(server, {"ns": "u", "types": "delete"}, {"Last-Event-ID": str(start)}).wait_open()
    assert [e["event"] for e in w.events(1)] == ["delete"]
    assert w.no_more(0.2)
    w.close()


def test_many_streams_and_concurrent_writers(server):
    """More open streams than the server has event threads, each waiting
    for events on a worker, while writers on other connections (durable
    writes: they wait for a shared fsync) are answered: every write is
    acknowledged and every stream gets every event, in order."""
    watches = [Watch(server, {"ns": "m"}).wait_open() for _ in range(12)]
    assert server.request("GET", "/healthz")[0] == 200
    errors = []

    def writer(t):
        try:
            for i in range(10):
                put(server, "m", f"t{t}-{i}", {"t": t, "i": i})
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert not errors, errors
    want = sorted(f"t{t}-{i}" for t in range(4) for i in range(10))
    for w in watches:
        evs = w.events(40, timeout=30)
        assert sorted(e["data"]["key"] for e in evs) == want
        assert [e["id"] for e in evs] == sorted(e["id"] for e in evs)
        assert all(e["event"] == "insert" for e in evs)
        assert w.no_more()
    for w in watches:
        w.close()
    assert server.request("GET", "/healthz")[0] == 200


def test_stream_ends_when_the_server_stops(server):
    w = Watch(server).wait_open()
    put(server, "s", "k", 1)
    assert len(w.events(1)) == 1
    assert server.stop() == 0
    assert w.ended()
