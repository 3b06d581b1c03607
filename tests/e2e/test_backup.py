"""kdelta backup / backup info / restore, end to end (local only: both work on
the database directory; with --url they refuse).

A restored copy has the same history (export --history, byte for byte),
the same roots, views, indexes and vectors; a chain of incrementals restores
to the source; a gap, a wrong order, a foreign or damaged file is refused
with the file named and nothing created; a backup killed midway leaves no
file, and the next backup removes its temporary file."""
import glob
import json
import os
import re
import signal
import subprocess
import time

from helpers import KDELTA


def status_roots(kd, db_dir):
    r = kd("--db", db_dir, "status", "--json") if db_dir else kd("status", "--json")
    assert r.rc == 0, r.err
    return r.json()["roots"]


def fill(kd, n, start=0):
    for i in range(start, start + n):
        assert kd("set", f"users/u{i % 7}", json.dumps({"n": i, "age": 20 + i % 40})).rc == 0
        if i % 5 == 4:
            assert kd("delete", f"users/u{i % 7}").rc == 0


def test_full_backup_and_restore(kd, kd_raw, db, tmp_path):
    fill(kd, 12)
    assert kd("index", "create", "users", "age").rc == 0
    assert kd("view", "create", "older", "users", "--filter", "age > 30").rc == 0
    assert kd("vector", "put", "docs/a", "[1, 0.5, -2]", "--model", "m1").rc == 0
    bk = str(tmp_path / "full.kdb")
    r = kd("backup", bk)
    assert r.rc == 0, r.err
    assert r.out.startswith(f"full backup {bk}: ")
    assert "field root" in r.out
    info = kd_raw("backup", "info", bk, "--json")
    assert info.rc == 0, info.err
    i = info.json()
    assert i["kind"] == "full" and i["file"] == bk
    assert i["base"]["timestamp"] is None and i["base"]["txns"] == 0
    src_roots = status_roots(kd, None)
    assert i["end"]["roots"]["field"] == src_roots["field"]
    assert i["end"]["roots"]["views"] == src_roots["views"]
    assert i["end"]["roots"]["vectors"] == src_roots["vectors"]
    assert i["file_bytes"] == os.path.getsize(bk)
    human = kd_raw("backup", "info", bk)
    assert human.rc == 0 and "kind       full" in human.out and "up to" in human.out

    copy = str(tmp_path / "copy")
    r = kd_raw("restore", bk, "--db", copy)
    assert r.rc == 0, r.err
    assert f"restored {copy} from 1 file" in r.out and "new node id" in r.out
    assert status_roots(kd_raw, copy) == src_roots
    a = kd("export", "--history")
    b = kd_raw("--db", copy, "export", "--history")
    assert a.rc == 0 and b.rc == 0 and a.out == b.out and a.out
    for args in (["view", "list", "--json"], ["index", "list", "--json"], ["vector", "get", "docs/a", "--json"]):
        x, y = kd(*args), kd_raw("--db", copy, *args)
        assert x.rc == 0 and y.out == x.out, args
    assert kd_raw("--db", copy, "verify").rc == 0
    assert open(os.path.join(copy, "NODE")).read() != open(os.path.join(db, "NODE")).read()
    # never overwrites: neither the file nor a database
    r = kd("backup", bk)
    assert r.rc == 1 and "already exists" in r.err
    r = kd_raw("restore", bk, "--db", copy)
    assert r.rc == 1 and "not empty" in r.err


def test_incremental_chain_and_refusals(kd, kd_raw, db, tmp_path):
    fill(kd, 6)
    full, inc1, inc2 = (str(tmp_path / n) for n in ("full.kdb", "inc1.kdb", "inc2.kdb"))
    assert kd("backup", full).rc == 0
    fill(kd, 4, 100)
    r = kd("backup", inc1, "--incremental", "--since", full, "--json")
    assert r.rc == 0, r.err
    j = r.json()
    assert j["kind"] == "incremental" and j["txns"] == 4
    fill(kd, 3, 200)
    assert kd("backup", inc2, "--incremental", "--since", inc1).rc == 0
    roots = status_roots(kd, None)

    copy = str(tmp_path / "copy")
    r = kd_raw("restore", full, inc1, inc2, "--db", copy, "--json")
    assert r.rc == 0, r.err
    assert r.json()["files"] == 3 and r.json()["end"]["roots"]["field"] == roots["field"]
    assert status_roots(kd_raw, copy) == roots
    assert kd("export", "--history").out == kd_raw("--db", copy, "export", "--history").out

    bad = str(tmp_path / "bad")
    for files, words in (([full, inc2], ["gap", inc2]), ([full, inc2, inc1], [inc2]), ([inc1], ["full backup"])):
        r = kd_raw("restore", *files, "--db", bad)
        assert r.rc == 4, (files, r.err)
        assert all(w in r.err for w in words), r.err
        assert not os.path.exists(bad) and not glob.glob(bad + ".restore-*")
    # another database's backup is neither a base nor a link
    other = str(tmp_path / "other")
    ofull = str(tmp_path / "ofull.kdb")
    assert kd_raw("--db", other, "set", "x/y", "1").rc == 0
    assert kd_raw("--db", other, "backup", ofull).rc == 0
    r = kd("backup", str(tmp_path / "x.kdb"), "--incremental", "--since", ofull)
    assert r.rc == 4 and "not a backup of this database" in r.err
    # times in RFC 3339, as everywhere kdelta prints one (CLI.md)
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", r.err) and not re.search(r"\d{16}", r.err), r.err
    assert kd_raw("restore", ofull, inc1, "--db", bad).rc == 4
    # usage
    assert kd("backup", str(tmp_path / "y.kdb"), "--since", full).rc == 2
    assert kd("backup", str(tmp_path / "y.kdb"), "--incremental").rc == 2
    assert kd_raw("--url", "http://127.0.0.1:9", "backup", "a/f").rc == 2
    assert kd_raw("--url", "http://127.0.0.1:9", "restore", "f").rc == 2


def test_at(kd, kd_raw, tmp_path):
    times = []
    for i in range(5):
        r = kd("set", f"t/k{i}", str(i), "--json")
        assert r.rc == 0
        times.append(r.json()["timestamp"])
    bk = str(tmp_path / "at.kdb")
    r = kd("backup", bk, "--at", times[2], "--json")
    assert r.rc == 0, r.err
    assert r.json()["writes"] == 3 and r.json()["end"]["timestamp"] == times[2]
    copy = str(tmp_path / "copy")
    assert kd_raw("restore", bk, "--db", copy).rc == 0
    assert kd_raw("--db", copy, "get", "t/k2").out == "2\n"
    assert kd_raw("--db", copy, "get", "t/k3").rc == 3
    assert kd("backup", str(tmp_path / "z.kdb"), "--at", "yesterday").rc == 4
    # before the first write: an empty backup, said as such (the database is not empty)
    r = kd("backup", str(tmp_path / "early.kdb"), "--at", "-1h")
    assert r.rc == 0, r.err
    assert "no transaction has all its writes at or before -1h" in r.out and "database is empty" not in r.out, r.out


def test_at_before_a_later_compaction(kd, kd_raw, tmp_path):
    """A compaction after T removed values of versions before T: a backup
    --at T holds those versions without values, and the restored copy
    verifies (it failed with "no compaction record accounts for")."""
    times = []
    for i in range(4):
        r = kd("set", "t/k", str(i), "--json")
        assert r.rc == 0
        times.append(r.json()["timestamp"])
    assert kd("retention", "set", "t", "--keep-last", "1").rc == 0
    assert kd("compact").rc == 0
    bk = str(tmp_path / "at.kdb")
    assert kd("backup", bk, "--at", times[3]).rc == 0
    copy = str(tmp_path / "copy")
    r = kd_raw("restore", bk, "--db", copy)
    assert r.rc == 0, r.err
    r = kd_raw("--db", copy, "verify")
    assert r.rc == 0, r.err + r.out
    assert kd_raw("--db", copy, "get", "t/k").out == "3\n"
    log = kd_raw("--db", copy, "log", "t/k", "--json").json()
    assert [v.get("pruned", False) for v in log] == [False, True, True, True]
    # t/k's version at times[1] (its newest then) was pruned later: in that
    # copy the key has no value (not listed), and get says why
    bk1 = str(tmp_path / "at1.kdb")
    assert kd("backup", bk1, "--at", times[1]).rc == 0
    copy1 = str(tmp_path / "copy1")
    assert kd_raw("restore", bk1, "--db", copy1).rc == 0
    assert kd_raw("--db", copy1, "verify").rc == 0
    r = kd_raw("--db", copy1, "get", "t/k")
    assert (r.rc, r.out, "newest version" in r.err, "removed by a compaction" in r.err) == (3, "", True, True), r
    assert kd_raw("--db", copy1, "list", "t").out == ""


def test_corrupted_backup_refused(kd, kd_raw, tmp_path):
    fill(kd, 10)
    bk = str(tmp_path / "b.kdb")
    assert kd("backup", bk).rc == 0
    data = open(bk, "rb").read()
    copy = str(tmp_path / "copy")
    for off in (3, 100, 330, len(data) // 2, len(data) - 40, len(data) - 1):
        damaged = bytearray(data)
        damaged[off] ^= 0x10
        open(bk + ".bad", "wb").write(damaged)
        r = kd_raw("restore", bk + ".bad", "--db", copy)
        assert r.rc in (7, 1), (off, r.err)
        assert bk + ".bad" in r.err
        assert not os.path.exists(copy) and not glob.glob(copy + ".restore-*")
    open(bk + ".bad", "wb").write(data[: len(data) - 10])
    r = kd_raw("restore", bk + ".bad", "--db", copy)
    assert r.rc == 7 and ("truncated" in r.err or "trailer" in r.err), r.err
    r = kd_raw("backup", "info", bk + ".bad")
    assert r.rc == 7 and r.err.count(bk + ".bad") == 1, r.err  # the file named once
    assert kd_raw("restore", bk, "--db", copy).rc == 0


def test_backup_in_shell(kd, kd_raw, tmp_path):
    bk = str(tmp_path / "s.kdb")
    r = kd("shell", input=f"set a/b 1\nbackup {bk}\nset a/b 2\n")
    assert r.rc == 0, r.err
    i = kd_raw("backup", "info", bk, "--json").json()
    assert i["writes"] == 1


def test_kill_during_backup(kd_raw, env, tmp_path):
    src = str(tmp_path / "big")
    big = json.dumps("x" * 60000)
    lines = "".join(json.dumps({"v": i, "pad": "y" * 20000 + str(i)}) + "\n" for i in range(1500))
    r = kd_raw("--db", src, "--sync", "none", "import", "big", "-", input=lines)
    assert r.rc == 0, r.err
    assert kd_raw("--db", src, "set", "b/one", big).rc == 0
    bk = str(tmp_path / "k.kdb")
    left_tmp = 0
    for delay in (0.02, 0.05, 0.1):
        p = subprocess.Popen([KDELTA, "--db", src, "backup", bk], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        time.sleep(delay)
        p.send_signal(signal.SIGKILL)
        p.wait()
        if os.path.exists(bk):  # it finished first: then it is complete
            assert kd_raw("backup", "info", bk).rc == 0
            os.unlink(bk)
        left_tmp += len(glob.glob(bk + ".tmp-*"))
    r = kd_raw("--db", src, "backup", bk)
    assert r.rc == 0, r.err
    assert glob.glob(bk + ".tmp-*") == []
    assert kd_raw("restore", bk, "--db", str(tmp_path / "copy")).rc == 0


def test_scheduled_backups(start_server, kd_raw, db, tmp_path):
    from server import wait_for
    bdir = str(tmp_path / "backups")
    # what a scheduled backup killed mid-way leaves: removed by the next
    # run (the library cleans up only on a backup to the same name)
    os.makedirs(bdir)
    stale = os.path.join(bdir, "backup-20260101T000000Z.kdb.tmp-0123456789abcdef")
    with open(stale, "w") as f:
        f.write("partial")
    s = start_server(args=("--backup-every", "1s", "--backup-dir", bdir, "--keep", "2"))
    s.json("PUT", "/api/v1/namespaces/n/keys/a", body=b'{"v":1}')

    def names():
        return sorted(n for n in os.listdir(bdir) if n.startswith("backup-") and n.endswith(".kdb"))

    assert wait_for(lambda: len(names()) >= 1, timeout=15)
    s.json("PUT", "/api/v1/namespaces/n/keys/a", body=b'{"v":2}')
    first = names()[0]
    assert wait_for(lambda: first not in names() and len(names()) == 2, timeout=15), names()
    assert s.stop() == 0
    log = s.stderr()
    assert "backup: wrote " + os.path.join(bdir, "backup-") in log
    assert "backup: removed " + os.path.join(bdir, first) in log
    assert not os.path.exists(stale) and "left by a backup that did not finish" in log
    assert len(names()) == 2 and not glob.glob(os.path.join(bdir, "*.tmp-*"))
    newest = os.path.join(bdir, names()[-1])
    i = kd_raw("backup", "info", newest, "--json").json()
    assert i["kind"] == "full" and i["writes"] == 2
    assert kd_raw("restore", newest, "--db", str(tmp_path / "copy")).rc == 0
    assert kd_raw("--db", str(tmp_path / "copy"), "get", "n/a").out == '{"v":2}\n'


def test_schedule_usage(kd_raw, db, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    for args, word in ((["--backup-every", "1s"], "--backup-dir"),
                       (["--backup-every", "soon", "--backup-dir", str(tmp_path)], "duration"),
                       (["--keep", "3"], "--keep"),
                       # a file, not a directory: every backup failed
                       (["--backup-every", "1s", "--backup-dir", str(afile)], "is not a directory"),
                       (["--backup-dir", str(afile)], "is not a directory")):
        r = kd_raw("--db", db, "serve", "--port", "0", *args)
        assert r.rc == 2 and word in r.err, (args, r.err)


def test_backup_through_the_server(start_server, kd_raw, db, tmp_path):
    bdir = str(tmp_path / "bk")
    s = start_server(args=("--backup-dir", bdir))
    url = s.url.rstrip("/")
    assert kd_raw("--url", url, "set", "a/b", "1").rc == 0
    r = kd_raw("--url", url, "backup", "one.kdb")
    assert r.rc == 0, r.err
    assert r.out.startswith("full backup " + os.path.join(os.path.realpath(bdir), "one.kdb") + ": 1 transaction")
    assert kd_raw("--url", url, "set", "a/b", "2").rc == 0
    r = kd_raw("--url", url, "backup", "two.kdb", "--incremental", "--since", "one.kdb", "--json")
    assert r.rc == 0, r.err
    j = r.json()
    local = kd_raw("backup", "info", j["file"], "--json").json()
    assert j == local and j["kind"] == "incremental" and j["writes"] == 1
    # refusals, as HTTP statuses and as exit statuses
    assert kd_raw("--url", url, "backup", "one.kdb").rc == 1  # exists: 409
    assert kd_raw("--url", url, "backup", "x.kdb", "--incremental", "--since", "nope.kdb").rc == 3
    st, body = s.json("POST", "/api/v1/backup", body=b'{"file":"../escape.kdb"}',
                      headers={"Content-Type": "application/json"})
    assert st == 400 and body["error"]["code"] == "invalid"
    st, body = s.json("POST", "/api/v1/backup", body=b'{"file":"x.kdb","bogus":1}',
                      headers={"Content-Type": "application/json"})
    assert st == 400
    st, body = s.json("POST", "/api/v1/backup", body=b'{"file":"one.kdb"}', headers={"Content-Type": "application/json"})
    assert st == 409 and body["error"]["code"] == "exists"
    assert not os.path.exists(str(tmp_path / "escape.kdb"))
    assert s.stop() == 0
    copy = str(tmp_path / "copy")
    assert kd_raw("restore", os.path.join(bdir, "one.kdb"), os.path.join(bdir, "two.kdb"), "--db", copy).rc == 0
    assert kd_raw("--db", copy, "get", "a/b").out == "2\n"


def test_backup_route_needs_backup_dir(server, kd_raw):
    st, body = server.json("POST", "/api/v1/backup", body=b'{"file":"x.kdb"}',
                           headers={"Content-Type": "application/json"})
    assert st == 403 and body["error"]["code"] == "forbidden"
    r = kd_raw("--url", server.url.rstrip("/"), "backup", "x.kdb")
    assert r.rc == 4 and "--backup-dir" in r.err


def test_current_only(kd, kd_raw, db, tmp_path):
    """A current-only backup: every version stays in the history (ids, times,
    chains, roots), only the current ones keep their values; the restored
    copy verifies, answers the same current state, and takes incrementals."""
    fill(kd, 40)
    for i in range(30):  # a long history of one key with large values
        assert kd("set", "docs/big", json.dumps({"i": i, "text": "x" * 2000 + str(i)})).rc == 0
    full, cur, inc = (str(tmp_path / n) for n in ("full.kdb", "cur.kdb", "inc.kdb"))
    assert kd("backup", full).rc == 0
    r = kd("backup", cur, "--current-only")
    assert r.rc == 0, r.err
    assert r.out.startswith(f"current-only backup {cur}: ")
    fi = kd_raw("backup", "info", full, "--json").json()
    ci = kd_raw("backup", "info", cur, "--json").json()
    assert ci["kind"] == "current-only" and ci["writes"] == fi["writes"]
    assert ci["log_bytes"] < fi["log_bytes"] / 3  # the old 2 KB values are left out
    assert ci["end"]["roots"] == fi["end"]["roots"]
    assert "kind       current-only" in kd_raw("backup", "info", cur).out

    r = kd("backup", str(tmp_path / "x.kdb"), "--current-only", "--incremental", "--since", full)
    assert r.rc == 2 and "--current-only" in r.err
    assert not os.path.exists(str(tmp_path / "x.kdb"))

    copy = str(tmp_path / "copy")
    r = kd_raw("restore", cur, "--db", copy)
    assert r.rc == 0, r.err
    v = kd_raw("--db", copy, "verify")
    assert v.rc == 0, v.err
    assert kd_raw("--db", copy, "export").out == kd("export").out  # the current state
    src_log = kd("log", "docs/big", "--json", "--reverse").json()
    log = kd_raw("--db", copy, "log", "docs/big", "--json", "--reverse").json()
    assert [x["write_id"] for x in log] == [x["write_id"] for x in src_log]
    assert [x.get("pruned", False) for x in log] == [True] * 29 + [False]
    assert log[-1]["value"] == src_log[-1]["value"]
    r = kd_raw("--db", copy, "get", "docs/big", "--at", log[0]["timestamp"])
    assert r.rc == 3 and "retention" in r.err

    # an incremental on top of it, whose writes reuse old values
    assert kd("set", "docs/big", json.dumps({"i": 0, "text": "x" * 2000 + "0"})).rc == 0
    assert kd("backup", inc, "--incremental", "--since", cur).rc == 0
    copy2 = str(tmp_path / "copy2")
    r = kd_raw("restore", cur, inc, "--db", copy2)
    assert r.rc == 0, r.err
    assert kd_raw("--db", copy2, "verify").rc == 0
    assert json.loads(kd_raw("--db", copy2, "get", "docs/big").out)["i"] == 0


def test_current_only_through_the_server(start_server, kd_raw, tmp_path):
    bdir = str(tmp_path / "bk")
    s = start_server(args=("--backup-dir", bdir))
    url = s.url.rstrip("/")
    for i in range(3):
        assert kd_raw("--url", url, "set", "a/b", str(i)).rc == 0
    r = kd_raw("--url", url, "backup", "cur.kdb", "--current-only", "--json")
    assert r.rc == 0, r.err
    assert r.json()["kind"] == "current-only" and r.json()["writes"] == 3
    hdr = {"Content-Type": "application/json"}
    st, body = s.json("POST", "/api/v1/backup", body=b'{"file":"x.kdb","current_only":"yes"}', headers=hdr)
    assert st == 400 and body["error"]["code"] == "invalid"
    st, body = s.json("POST", "/api/v1/backup", body=b'{"file":"y.kdb","current_only":true,"since":"cur.kdb"}',
                      headers=hdr)
    assert st == 400 and "current-only" in body["error"]["message"]
    assert not os.path.exists(os.path.join(bdir, "x.kdb")) and not os.path.exists(os.path.join(bdir, "y.kdb"))
    assert s.stop() == 0
    copy = str(tmp_path / "copy")
    assert kd_raw("restore", os.path.join(bdir, "cur.kdb"), "--db", copy).rc == 0
    assert kd_raw("--db", copy, "get", "a/b").out == "2\n"
    assert kd_raw("--db", copy, "verify").rc == 0


def test_backup_file_is_private(kd_raw, tmp_path, start_server):
    """A backup holds every record, auth's included: readable by its owner
    only (0600), whatever the umask, from the CLI and from the server."""
    old = os.umask(0o022)
    try:
        src = str(tmp_path / "src")
        assert kd_raw("--db", src, "set", "a/b", "1").rc == 0
        bk = str(tmp_path / "mine.kdb")
        assert kd_raw("--db", src, "backup", bk).rc == 0
        assert os.stat(bk).st_mode & 0o777 == 0o600
        bdir = str(tmp_path / "srv")
        s = start_server(args=("--backup-dir", bdir), db_dir=str(tmp_path / "sdb"))
        assert kd_raw("--url", s.url.rstrip("/"), "backup", "one.kdb").rc == 0
        assert os.stat(os.path.join(bdir, "one.kdb")).st_mode & 0o777 == 0o600
        assert s.stop() == 0
    finally:
        os.umask(old)


def test_backup_info_needs_a_file(env, tmp_path):
    """`backup info` alone is a usage error, not a backup into ./info."""
    db = str(tmp_path / "db")
    assert subprocess.run([KDELTA, "--db", db, "set", "a/b", "1"], env=env, capture_output=True).returncode == 0
    r = subprocess.run([KDELTA, "--db", db, "backup", "info"], cwd=str(tmp_path), capture_output=True, text=True,
                       env=env)
    assert r.returncode == 2, r.stderr
    assert "backup info FILE" in r.stderr
    assert not os.path.exists(str(tmp_path / "info"))


def test_missing_backup_file_is_not_found(kd_raw, tmp_path):
    """A backup FILE that does not exist is exit 3 wherever it is named."""
    src = str(tmp_path / "src")
    assert kd_raw("--db", src, "set", "a/b", "1").rc == 0
    missing = str(tmp_path / "missing.kdb")
    for args in (["backup", "info", missing], ["--db", src, "backup", str(tmp_path / "x.kdb"), "--incremental",
                                                "--since", missing], ["restore", missing, "--db", str(tmp_path / "r")]):
        r = kd_raw(*args)
        assert r.rc == 3 and "No such file" in r.err, (args, r.rc, r.err)
    assert not os.path.exists(str(tmp_path / "r"))
