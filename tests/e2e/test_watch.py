"""`kdelta watch`: locally refused as a one-shot command (it could never
see a write), and inside `kdelta shell` an event line after each command
that writes: types, key and filter selection, --json lines, unwatch, missed
events — in both modes (with --url the shell watches the server's stream and
prints the same). With --url a one-shot `kdelta watch` streams every
client's writes until Ctrl-C, resumes a broken stream from where it was,
and reports a lost server."""
import json
import os
import signal
import socket
import subprocess
import threading

import pytest

from helpers import KDELTA, one_error_line, run_kdelta
from server import wait_for


@pytest.fixture
def shell(kd):
    """shell(script, *global_opts) -> (rc, out, err) of `kdelta … shell` in the test's mode."""

    def run(script, *opts):
        r = kd(*opts, "shell", input=script)
        return r.rc, r.out, r.err

    return run


def events(out):
    """The event lines of a shell's output (not the commands' own lines)."""
    return [line for line in out.splitlines() if line.split(" ", 1)[0] in ("insert", "update", "delete", "missed")]


SCRIPT = """\
watch users
set users/alice '{"name": "A"}'
set users/alice '{"name": "B"}'
set other/x 1
delete users/alice
set users/bob '[1, 2]'
"""


@pytest.mark.local_only("with --url a one-shot watch streams the server's writes (tests below)")
def test_one_shot_watch_is_refused(kd, db):
    for args in (["watch"], ["watch", "users"], ["watch", "users/alice", "--types", "insert"]):
        r = kd(*args)
        line = one_error_line(r, 2)
        assert "kdelta shell" in line and "--url" in line and "lock" in line, line
        assert r.out == ""
    assert not os.path.exists(db), "a refused watch must not create the database"


def test_one_shot_unwatch_and_stop_are_refused(kd):
    for args in (["unwatch"], ["unwatch", "1"], ["watch", "--stop"]):
        r = kd(*args)
        line = one_error_line(r, 2)
        assert "kdelta shell" in line, line
        assert r.out == ""
        if args[0] == "unwatch":  # about ending watches, not watch's reasons
            assert "ends the watches" in line and "lock" not in line, line


def test_events_in_the_shell(shell):
    rc, out, err = shell(SCRIPT)
    assert rc == 0 and err == "", err
    lines = out.splitlines()
    assert lines[0].startswith("watch 1: users")
    assert events(out) == [
        'insert users/alice {"name":"A"}',
        'update users/alice {"name":"B"}',
        "delete users/alice",
        "insert users/bob [1,2]",
    ]
    # each event follows the output of the command that caused it
    i = lines.index('insert users/alice {"name":"A"}')
    assert lines[i - 1].startswith("users/alice  version ")
    i = lines.index("delete users/alice")
    assert lines[i - 1].startswith("users/alice  deleted ")


def test_insert_after_delete_is_an_insert(shell):
    rc, out, _ = shell("set users/a 1\nwatch users\ndelete users/a\nset users/a 2\nset users/a 3\n")
    assert rc == 0
    assert events(out) == ["delete users/a", "insert users/a 2", "update users/a 3"]


def test_types(shell):
    rc, out, err = shell(SCRIPT.replace("watch users", "watch users --types update,delete"))
    assert rc == 0, err
    assert out.splitlines()[0].startswith("watch 1: users (update, delete)")
    assert events(out) == ['update users/alice {"name":"B"}', "delete users/alice"]


def test_key_and_every_namespace(shell):
    rc, out, _ = shell(SCRIPT.replace("watch users", "watch users/bob"))
    assert events(out) == ["insert users/bob [1,2]"]
    rc, out, _ = shell(SCRIPT.replace("watch users", "watch").replace("users/", "people/").replace("other/", "more/"))
    assert out.splitlines()[0].startswith("watch 1: every namespace")
    assert "insert more/x 1" in events(out) and len(events(out)) == 5


def test_filter(shell):
    rc, out, err = shell(SCRIPT.replace("watch users", """watch users --filter 'name == "B"'"""))
    assert rc == 0, err
    # the update to B, and the delete of B (a delete is matched on the value it deleted)
    assert events(out) == ['update users/alice {"name":"B"}', "delete users/alice"]


def test_filter_on_a_delete_tests_the_deleted_value(shell):
    """Not the tombstone: a filter true of a document without `name` does not
    report every delete (docs/QUERY.md "Documents without a value")."""
    script = """\
watch users --filter '%s'
set users/a '{"name": "A"}'
set users/n '{"x": 1}'
delete users/a
delete users/n
"""
    for flt, want in (("not name exists", ['insert users/n {"x":1}', "delete users/n"]),
                      ('name != "A"', ['insert users/n {"x":1}', "delete users/n"]),
                      ("true", ['insert users/a {"name":"A"}', 'insert users/n {"x":1}', "delete users/a",
                                "delete users/n"])):
        rc, out, err = shell(script % flt)
        assert rc == 0, err
        assert events(out) == want, flt


def test_json_lines(kd, shell):
    rc, out, err = shell(SCRIPT.replace("watch users", "watch users --json"))
    assert rc == 0, err
    lines = out.splitlines()
    assert json.loads(lines[0]) == {"watch": 1}
    evs = [json.loads(line) for line in lines if line.startswith('{"type"')]
    assert [e["type"] for e in evs] == ["insert", "update", "delete", "insert"]
    for e in evs:
        assert list(e) == ["type", "namespace", "key", "value", "previous_value", "version"]
        assert e["namespace"] == "users"
        v = e["version"]
        assert list(v) == ["version_id", "write_id", "previous_write_id", "timestamp", "deleted"]
        assert v["deleted"] is (e["type"] == "delete")
    ins, upd, dele, bob = evs
    assert ins["key"] == "alice" and ins["value"] == {"name": "A"} and ins["previous_value"] is None
    assert ins["version"]["previous_write_id"] is None
    assert upd["value"] == {"name": "B"} and upd["previous_value"] == {"name": "A"}
    assert upd["version"]["previous_write_id"] == ins["version"]["write_id"]
    assert dele["value"] is None and dele["previous_value"] == {"name": "B"}
    assert dele["version"]["version_id"] is None
    assert bob["key"] == "bob" and bob["value"] == [1, 2]
    # the version matches the key's history exactly
    recs = kd("log", "users/alice", "--json", "--reverse").json()
    for e, rec in zip([ins, upd, dele], recs):
        for k in e["version"]:
            assert e["version"][k] == rec[k], k


def test_json_default_of_the_shell(shell):
    rc, out, _ = shell("watch u\nset u/k 1\n", "--json")
    lines = out.splitlines()
    assert json.loads(lines[0]) == {"watch": 1}
    assert json.loads(lines[-1])["type"] == "insert"


def test_names_with_spaces_and_control_characters(shell):
    rc, out, _ = shell("watch 'my ns'\nset 'my ns/a b' '\"x\"'\nset 'my ns/line\nbreak' 2\n")
    assert rc == 0
    assert events(out) == ['insert my ns/a b "x"', "insert my ns/line\\nbreak 2"]


def test_unwatch_and_stop(shell):
    script = """\
watch users
watch users --types delete
set users/a 1
unwatch 1
set users/a 2
delete users/a
unwatch 7
watch --stop
set users/b 1
"""
    rc, out, err = shell(script)
    assert events(out) == ["insert users/a 1", "delete users/a"]
    assert "stopped watch 1 (users)" in out
    assert "stopped watch 2 (users)" in out
    assert rc == 3 and "kdelta: unwatch: no watch 7" in err


def test_several_watches(shell):
    rc, out, _ = shell("watch a\nwatch b\nset a/x 1\nset b/y 2\nset c/z 3\n")
    assert events(out) == ["insert a/x 1", "insert b/y 2"]


def test_watch_errors_in_the_shell(shell):
    rc, out, err = shell("watch users --types insert,rename\n")
    assert rc == 2 and "--types" in err and "rename" in err
    rc, out, err = shell("watch users --filter 'name =='\n")
    assert rc == 4 and "--filter" in err and "column" in err
    rc, out, err = shell("watch /x\n")
    assert rc == 4
    rc, out, err = shell("watch a b\n")
    assert rc == 2
    rc, out, err = shell("watch users --stop\n")
    assert rc == 2 and "--stop" in err
    rc, out, err = shell("unwatch x\n")
    assert rc == 2


@pytest.mark.parametrize("arg", ["99999999999999999999", "18446744073709551617", "4294967297", "0", "-1", "+1",
                                 "' 1'", "'\t1'", "1x", "0x1", "1.0", "''"])
def test_unwatch_refuses_a_number_out_of_range_or_malformed(shell, arg):
    """An ID that is no watch number (watches are numbered 1 to 4294967295)
    is a usage error, as a bad --limit is: not 'no watch N' for a number
    cut to fit, nor a watch ended by a wrapped one. The watch stays."""
    rc, out, err = shell(f"watch users\nunwatch {arg}\nset users/a 1\n")
    assert rc == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kdelta: unwatch: expected a watch number from 1 to 4294967295"), err
    assert "stopped" not in out
    assert events(out) == ["insert users/a 1"]


def test_unwatch_takes_the_largest_number(shell):
    """4294967295 is a number unwatch reads; no watch has it yet."""
    rc, out, err = shell("watch users\nunwatch 4294967295\nunwatch 0001\n")
    assert rc == 3 and "kdelta: unwatch: no watch 4294967295 (1 active)" in err, err
    assert "stopped watch 1 (users)" in out


def test_definitions_make_no_events(shell):
    """Views and indexes are written to the database's own namespaces:
    no events, and the events of the writes around them in their place."""
    script = """\
watch
set users/a 1
view create big users --filter 'a > 0'
set users/b 2
index create users a
delete users/a
view refresh big
index drop users a
view delete big
set users/c 3
"""
    rc, out, err = shell(script)
    assert rc == 0, err
    lines = out.splitlines()
    assert events(out) == ["insert users/a 1", "insert users/b 2", "delete users/a", "insert users/c 3"]
    for ev, before in (("insert users/a 1", "users/a  version "), ("insert users/b 2", "users/b  version "),
                       ("delete users/a", "users/a  deleted "), ("insert users/c 3", "users/c  version ")):
        assert lines[lines.index(ev) - 1].startswith(before), (ev, lines)


def test_import_events_and_missed(shell, tmp_path):
    """A watch holds 10000 events between two commands; an import of more
    shows the first 10000 and then how many were missed."""
    n = 10050
    path = tmp_path / "rows.ndjson"
    path.write_text("".join('{"i": %d}\n' % i for i in range(n)))
    rc, out, err = shell(f"watch big\nimport big {path}\nset big/after 1\n")
    assert rc == 0, err
    evs = events(out)
    inserts = [e for e in evs if e.startswith("insert big/0")]
    assert len(inserts) == 10000
    assert inserts[0] == 'insert big/000000000001 {"i":0}'
    missed = [e for e in evs if e.startswith("missed")]
    assert missed == ["missed 50 events (more came than the watch holds)"]
    assert evs[-1] == "insert big/after 1"


def test_on_a_terminal_events_come_before_the_prompt(kd, db, env, tmp_path):
    """On a terminal too the events of a command are printed after its own
    output and before the next prompt; colours are off with NO_COLOR."""
    from test_shell import Pty, where

    e = dict(env, TERM="xterm", KORU_HISTORY=str(tmp_path / "history"), NO_COLOR="1")
    sh = Pty(where(kd, db, env) + ["shell"], e)
    try:
        sh.expect(r"kdelta> $")
        sh.send("watch users --types insert,delete\n")
        sh.expect(r"watch 1: users \(insert, delete\)[^\n]*\n[\s\S]*kdelta> $")
        sh.send("set users/al '{\"a\": 1}'\n")
        sh.expect(r"users/al  version [^\n]*\ninsert users/al \{\"a\":1\}\n[\s\S]*kdelta> $")
        sh.send("set users/al 2\n")
        text = sh.expect(r"kdelta> $")
        assert "update" not in text and "insert" not in text
        sh.send("delete users/al\n")
        sh.expect(r"users/al  deleted [^\n]*\ndelete users/al\n[\s\S]*kdelta> $")
        sh.send("exit\n")
        assert sh.wait() == 0
    finally:
        if sh in Pty.live:
            Pty.live.remove(sh)
            sh.kill()


# ---------------------------------------------------------------------------
# With --url: a server, other clients, one-shot watches
# ---------------------------------------------------------------------------


def test_remote_shell_shows_other_clients_writes(server, env):
    """In a shell on a server, a write by another client prints after the
    shell's next command (locally no other process can write)."""
    p = subprocess.Popen([KDELTA, "--url", server.url, "shell"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    try:
        p.stdin.write(b"watch users\n")
        p.stdin.flush()
        assert p.stdout.readline().startswith(b"watch 1: users")
        assert run_kdelta(["--url", server.url, "set", "users/z", "1"], env=env).rc == 0
        p.stdin.write(b"get users/z\n")
        p.stdin.flush()
        assert p.stdout.readline() == b"1\n"
        assert p.stdout.readline() == b"insert users/z 1\n"
    finally:
        p.stdin.close()
        assert p.wait(timeout=60) == 0
    assert p.stderr.read() == b""


def open_subscriptions(server):
    _, _, body = server.request("GET", "/metrics")
    for line in body.decode().splitlines():
        if line.startswith("kd_open_subscriptions "):
            return int(line.split()[1])
    raise AssertionError("no kd_open_subscriptions in /metrics")


class Follow:
    """A one-shot `kdelta --url URL watch …`, its lines read by a thread."""

    def __init__(self, url, args, env, server=None, subscriptions=1):
        self.p = subprocess.Popen([KDELTA, "--url", url, "watch", *args], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env)
        self.lines = []
        self.cv = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        if server is not None:  # subscribed once the server counts the stream
            assert wait_for(lambda: open_subscriptions(server) >= subscriptions or self.p.poll() is not None, 60)
            assert self.p.poll() is None, self.p.stderr.read()

    def _read(self):
        for line in self.p.stdout:
            with self.cv:
                self.lines.append(line.decode("utf-8").rstrip("\n"))
                self.cv.notify_all()
        with self.cv:
            self.lines.append(None)
            self.cv.notify_all()

    def wait_lines(self, n, timeout=60):
        """The first n lines (fewer if the watch ended)."""
        with self.cv:
            self.cv.wait_for(lambda: len(self.lines) >= n or None in self.lines, timeout)
            return [l for l in self.lines[:n] if l is not None]

    def stop(self, sig=signal.SIGINT):
        if self.p.poll() is None:
            self.p.send_signal(sig)
        rc = self.p.wait(timeout=60)
        self.thread.join(60)
        return rc, [l for l in self.lines if l is not None], self.p.stderr.read().decode()

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


@pytest.fixture
def follows():
    started = []
    yield started
    for f in started:
        f.kill()


def kd_url(server, env, *args):
    r = run_kdelta(["--url", server.url, *args], env=env)
    assert r.rc == 0, r.err
    return r


def test_one_shot_watch_streams_as_the_shell_prints(server, env, follows, kd_raw, tmp_path):
    """Event lines of `kdelta --url URL watch` for the writes of other
    clients are those a local shell prints for the same writes."""
    f = Follow(server.url, ["users"], env, server)
    fj = Follow(server.url, ["users", "--json"], env, server, subscriptions=2)
    follows += [f, fj]
    writes = [("set", "users/alice", '{"name": "A"}'), ("set", "users/alice", '{"name": "B"}'),
              ("set", "other/x", "1"), ("delete", "users/alice"), ("set", "users/bob", "[1, 2]"),
              ("set", "users/a b\nc", '"x"')]
    for w in writes:
        kd_url(server, env, *w)
    want = ['insert users/alice {"name":"A"}', 'update users/alice {"name":"B"}', "delete users/alice",
            "insert users/bob [1,2]", 'insert users/a b\\nc "x"']
    assert f.wait_lines(5) == want
    assert len(fj.wait_lines(5)) == 5
    rc, lines, err = f.stop()
    assert rc == 0 and lines == want and err == ""
    rc, lines, err = fj.stop(signal.SIGTERM)
    assert rc == 0 and err == ""
    evs = [json.loads(l) for l in lines]
    # the same lines as a local shell's watch gives for the same writes
    local = str(tmp_path / "local")
    script = "watch users\n" + "".join(
        " ".join("'" + a.replace("'", "'\\''") + "'" for a in w) + "\n" for w in writes)
    r = kd_raw("--db", local, "shell", input=script)
    assert [l for l in r.out.splitlines() if l.split(" ", 1)[0] in ("insert", "update", "delete")] == want
    # and the --json events carry the server's versions exactly
    recs = kd_url(server, env, "log", "users/alice", "--json", "--reverse").json()
    assert [e["type"] for e in evs] == ["insert", "update", "delete", "insert", "insert"]
    for e, rec in zip(evs[:3], recs):
        assert e["version"] == {k: rec[k] for k in e["version"]}
    assert evs[1]["previous_value"] == {"name": "A"} and evs[2]["value"] is None


def test_one_shot_watch_selects_on_the_server(server, env, follows):
    f = Follow(server.url, ["users/alice", "--types", "update,delete", "--filter", 'name == "B"'], env, server)
    follows.append(f)
    for w in [("set", "users/alice", '{"name": "A"}'), ("set", "users/alice", '{"name": "B"}'),
              ("set", "users/bob", '{"name": "B"}'), ("set", "users/alice", '{"name": "C"}'),
              ("set", "users/alice", '{"name": "B"}'), ("delete", "users/alice")]:
        kd_url(server, env, *w)
    want = ['update users/alice {"name":"B"}', 'update users/alice {"name":"B"}', "delete users/alice"]
    assert f.wait_lines(3) == want
    rc, lines, err = f.stop()
    assert rc == 0 and lines == want


def test_one_shot_watch_errors(server, env, kd_raw):
    # mistakes are found before anything is sent
    r = kd_raw("--url", server.url, "watch", "users", "--types", "rename")
    assert "--types" in one_error_line(r, 2)
    r = kd_raw("--url", server.url, "watch", "users", "--filter", "name ==")
    assert "--filter" in one_error_line(r, 4)
    r = kd_raw("--url", server.url, "watch", "/x")
    one_error_line(r, 4)
    # no server there
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    r = kd_raw("--url", f"http://127.0.0.1:{port}", "watch")
    line = one_error_line(r, 1)
    assert f"127.0.0.1:{port}" in line and "reach" in line, line
    assert r.out == ""


def test_one_shot_watch_reports_a_stopped_server(start_server, env, follows):
    server = start_server()
    f = Follow(server.url, ["users"], env, server)
    follows.append(f)
    kd_url(server, env, "set", "users/a", "1")
    assert f.wait_lines(1) == ["insert users/a 1"]
    assert server.stop() == 0
    rc = f.p.wait(timeout=60)  # it tries to reconnect for a moment, then gives up
    _, lines, err = f.stop()
    assert rc == 1 and lines == ["insert users/a 1"]
    assert len(err.splitlines()) == 1 and err.startswith("kdelta: watch: "), err
    assert "lost the watch stream" in err and server.url.rstrip("/") in err and "reconnecting failed" in err, err


class Proxy:
    """A TCP proxy to the server that can cut every connection (drop) and
    hold new ones back until released."""

    def __init__(self, port):
        self.upstream = port
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.url = f"http://127.0.0.1:{self.lsock.getsockname()[1]}"
        self.lock = threading.Lock()
        self.socks = []
        self.go = threading.Event()
        self.go.set()
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.socks.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        self.go.wait()
        try:
            u = socket.create_connection(("127.0.0.1", self.upstream))
        except OSError:
            c.close()
            return
        with self.lock:
            self.socks.append(u)
        threading.Thread(target=self._pipe, args=(u, c), daemon=True).start()
        self._pipe(c, u)

    @staticmethod
    def _pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def drop(self):
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.go.set()
        self.lsock.close()
        self.drop()


def test_one_shot_watch_resumes_a_broken_stream(server, env, follows):
    """A broken connection is reopened with Last-Event-ID: the writes made
    while it was down come from the server's log, none lost, none twice."""
    proxy = Proxy(server.port)
    try:
        f = Follow(proxy.url, ["users"], env, server)
        follows.append(f)
        kd_url(server, env, "set", "users/a", "1")
        assert f.wait_lines(1) == ["insert users/a 1"]
        proxy.go.clear()  # the reconnection waits in the proxy …
        proxy.drop()
        kd_url(server, env, "set", "users/b", "2")  # … while these are written
        kd_url(server, env, "set", "other/c", "3")
        kd_url(server, env, "delete", "users/a")
        assert wait_for(lambda: proxy.accepted >= 2, 60)
        proxy.go.set()
        assert f.wait_lines(3) == ["insert users/a 1", "insert users/b 2", "delete users/a"]
        kd_url(server, env, "set", "users/d", "4")  # and then live again
        assert f.wait_lines(4)[3:] == ["insert users/d 4"]
        rc, lines, err = f.stop()
        assert rc == 0 and err == ""
        assert lines == ["insert users/a 1", "insert users/b 2", "delete users/a", "insert users/d 4"]
    finally:
        proxy.close()


def test_one_shot_watch_resumed_across_a_compaction(server, env, follows):
    """Writes made while the stream was down whose values a compaction then
    removed come back marked, not left out without a word."""
    proxy = Proxy(server.port)
    try:
        f = Follow(proxy.url, ["users"], env, server)
        fj = Follow(proxy.url, ["users", "--json"], env, server, subscriptions=2)
        follows += [f, fj]
        kd_url(server, env, "set", "users/a", "1")
        assert f.wait_lines(1) == ["insert users/a 1"]
        assert len(fj.wait_lines(1)) == 1
        proxy.go.clear()
        proxy.drop()
        kd_url(server, env, "set", "users/b", '{"b":1}')
        kd_url(server, env, "set", "users/b", '{"b":2}')
        kd_url(server, env, "retention", "set", "users", "--keep-last", "1")
        kd_url(server, env, "compact")
        assert wait_for(lambda: proxy.accepted >= 4, 60)
        proxy.go.set()
        assert f.wait_lines(3) == ["insert users/a 1", "insert users/b (value removed by retention)",
                                   'update users/b {"b":2}']
        recs = [json.loads(l) for l in fj.wait_lines(3)]
        assert recs[1]["value"] is None and recs[1]["version"]["pruned"] is True
        assert recs[1]["version"]["pruned_by"] == "retention"
        assert recs[2]["value"] == {"b": 2} and "pruned" not in recs[2]["version"]
        for w in (f, fj):
            rc, _, err = w.stop()
            assert rc == 0 and err == ""
    finally:
        proxy.close()
