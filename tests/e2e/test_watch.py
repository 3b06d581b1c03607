"""`kdelta watch`: refused as a one-shot command (it could never see a
write), and inside `kdelta shell` an event line after each command that
writes: types, key and filter selection, --json lines, unwatch, missed
events."""
import json
import os
import subprocess

from helpers import KDELTA, one_error_line


def shell(db, env, script, *opts):
    p = subprocess.run([KDELTA, "--db", db, *opts, "shell"], input=script.encode(), capture_output=True, env=env,
                       timeout=120)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


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


def test_one_shot_watch_is_refused(kd, db):
    for args in (["watch"], ["watch", "users"], ["watch", "users/alice", "--types", "insert"], ["unwatch"]):
        r = kd(*args)
        line = one_error_line(r, 2)
        assert "kdelta shell" in line and "--url" in line and "lock" in line, line
        assert r.out == ""
    assert not os.path.exists(db), "a refused watch must not create the database"


def test_events_in_the_shell(db, env):
    rc, out, err = shell(db, env, SCRIPT)
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


def test_insert_after_delete_is_an_insert(db, env):
    rc, out, _ = shell(db, env, "set users/a 1\nwatch users\ndelete users/a\nset users/a 2\nset users/a 3\n")
    assert rc == 0
    assert events(out) == ["delete users/a", "insert users/a 2", "update users/a 3"]


def test_types(db, env):
    rc, out, err = shell(db, env, SCRIPT.replace("watch users", "watch users --types update,delete"))
    assert rc == 0, err
    assert out.splitlines()[0].startswith("watch 1: users (update, delete)")
    assert events(out) == ['update users/alice {"name":"B"}', "delete users/alice"]


def test_key_and_every_namespace(db, env):
    rc, out, _ = shell(db, env, SCRIPT.replace("watch users", "watch users/bob"))
    assert events(out) == ["insert users/bob [1,2]"]
    rc, out, _ = shell(db + "2", env, SCRIPT.replace("watch users", "watch"))
    assert out.splitlines()[0].startswith("watch 1: every namespace")
    assert "insert other/x 1" in events(out) and len(events(out)) == 5


def test_filter(db, env):
    rc, out, err = shell(db, env, SCRIPT.replace("watch users", """watch users --filter 'name == "B"'"""))
    assert rc == 0, err
    # the update to B, and the delete of B (a delete is matched on the value it deleted)
    assert events(out) == ['update users/alice {"name":"B"}', "delete users/alice"]


def test_json_lines(db, env):
    rc, out, err = shell(db, env, SCRIPT.replace("watch users", "watch users --json"))
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
    hist = subprocess.run([KDELTA, "--db", db, "log", "users/alice", "--json", "--reverse"], capture_output=True,
                          env=env).stdout
    recs = json.loads(hist)
    for e, rec in zip([ins, upd, dele], recs):
        for k in e["version"]:
            assert e["version"][k] == rec[k], k


def test_json_default_of_the_shell(db, env):
    rc, out, _ = shell(db, env, "watch u\nset u/k 1\n", "--json")
    lines = out.splitlines()
    assert json.loads(lines[0]) == {"watch": 1}
    assert json.loads(lines[-1])["type"] == "insert"


def test_names_with_spaces_and_control_characters(db, env):
    rc, out, _ = shell(db, env, "watch 'my ns'\nset 'my ns/a b' '\"x\"'\nset 'my ns/line\nbreak' 2\n")
    assert rc == 0
    assert events(out) == ['insert my ns/a b "x"', "insert my ns/line\\nbreak 2"]


def test_unwatch_and_stop(db, env):
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
    rc, out, err = shell(db, env, script)
    assert events(out) == ["insert users/a 1", "delete users/a"]
    assert "stopped watch 1 (users)" in out
    assert "stopped watch 2 (users)" in out
    assert rc == 3 and "kdelta: unwatch: no watch 7" in err


def test_several_watches(db, env):
    rc, out, _ = shell(db, env, "watch a\nwatch b\nset a/x 1\nset b/y 2\nset c/z 3\n")
    assert events(out) == ["insert a/x 1", "insert b/y 2"]


def test_watch_errors_in_the_shell(db, env):
    rc, out, err = shell(db, env, "watch users --types insert,rename\n")
    assert rc == 2 and "--types" in err and "rename" in err
    rc, out, err = shell(db, env, "watch users --filter 'name =='\n")
    assert rc == 4 and "--filter" in err and "column" in err
    rc, out, err = shell(db, env, "watch /x\n")
    assert rc == 4
    rc, out, err = shell(db, env, "watch a b\n")
    assert rc == 2
    rc, out, err = shell(db, env, "watch users --stop\n")
    assert rc == 2 and "--stop" in err
    rc, out, err = shell(db, env, "unwatch x\n")
    assert rc == 2


def test_import_events_and_missed(db, env, tmp_path):
    """A watch holds 10000 events between two commands; an import of more
    shows the first 10000 and then how many were missed."""
    n = 10050
    path = tmp_path / "rows.ndjson"
    path.write_text("".join('{"i": %d}\n' % i for i in range(n)))
    rc, out, err = shell(db, env, f"watch big\nimport big {path}\nset big/after 1\n")
    assert rc == 0, err
    evs = events(out)
    inserts = [e for e in evs if e.startswith("insert big/0")]
    assert len(inserts) == 10000
    assert inserts[0] == 'insert big/000000000001 {"i":0}'
    missed = [e for e in evs if e.startswith("missed")]
    assert missed == ["missed 50 events (more came than the watch holds)"]
    assert evs[-1] == "insert big/after 1"


def test_on_a_terminal_events_come_before_the_prompt(db, env, tmp_path):
    """On a terminal too the events of a command are printed after its own
    output and before the next prompt; colours are off with NO_COLOR."""
    from test_shell import Pty

    e = dict(env, TERM="xterm", KORU_HISTORY=str(tmp_path / "history"), NO_COLOR="1")
    sh = Pty(["--db", db, "shell"], e)
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
