"""Consolidation (docs/RETENTION.md "Consolidation"), end to end.

`kdelta consolidate` compresses the values of the sealed log segments and
changes nothing a reader sees: every value, id and time reads back the same,
`verify` passes, a second run finds nothing to do, `--older-than` leaves
young segments alone and a bad duration is a usage error. These run in both
CLI modes (a directory, and a server with --url). Then the HTTP route: its
body rules, its answer, and the upkeep task in the status.
"""
import glob
import json
import os
import re
import time

import pytest

from helpers import TIMESTAMP, one_error_line

API = "/api/v1"


def record(i):
    """A value shaped like an application's: alike records compress well."""
    return {"id": f"c{i:04d}", "name": f"Customer number {i}", "email": f"customer{i}@example.com",
            "address": {"street": f"{i} Long Street Name", "city": f"City {i % 13}", "zip": f"{i * 7:05d}"},
            "tags": ["customer", "newsletter", f"tier-{i % 4}"], "status": "active" if i % 2 else "inactive"}


def load(kd, tmp_path, n=400):
    f = tmp_path / "customers.ndjson"
    f.write_text("".join(json.dumps(record(i)) + "\n" for i in range(n)))
    r = kd("import", "customers", str(f), "--key", "id")
    assert r.rc == 0, r.err
    for i in (1, 2, 3):  # a key with history
        r = kd("set", "customers/c0001", json.dumps(dict(record(1), status=f"v{i}")))
        assert r.rc == 0, r.err


def snapshot(kd):
    r = kd("export", "customers", "--history")
    assert r.rc == 0, r.err
    return r.out


def test_consolidate_changes_nothing_a_reader_sees(kd, tmp_path):
    load(kd, tmp_path)
    before = snapshot(kd)
    roots = kd("status", "--json").json()["roots"]
    r = kd("consolidate", "--json")
    assert r.rc == 0, r.err
    rep = r.json()
    assert set(rep) == {"segments", "values_compressed", "value_bytes_before", "value_bytes_after", "bytes_saved",
                        "dictionary", "dictionary_trained"}
    assert rep["segments"] >= 1 and rep["values_compressed"] >= 400
    assert 0 < rep["value_bytes_after"] < rep["value_bytes_before"]
    assert snapshot(kd) == before
    assert kd("status", "--json").json()["roots"] == roots
    assert json.loads(kd("get", "customers/c0007").out) == record(7)
    assert json.loads(kd("get", "customers/c0001").out) == dict(record(1), status="v3")
    log = kd("log", "customers/c0001", "--json", "--reverse").json()
    assert [x["value"]["status"] for x in log] == ["active", "v1", "v2", "v3"]
    q = kd("query", "customers", "--filter", 'address.city = "City 3"', "--json")
    assert q.rc == 0, q.err
    assert len(q.json()["rows"]) == len([i for i in range(400) if i % 13 == 3])
    v = kd("verify")
    assert v.rc == 0, v.err
    again = kd("consolidate")
    assert again.rc == 0 and "nothing to consolidate" in again.out


def test_consolidate_older_than(kd, tmp_path):
    load(kd, tmp_path, n=50)
    r = kd("consolidate", "--older-than", "1d", "--json")
    assert r.rc == 0, r.err
    assert r.json()["segments"] == 0  # every write is younger than a day
    line = one_error_line(kd("consolidate", "--older-than", "soon"), 2)
    assert "--older-than" in line
    human = kd("consolidate")
    assert human.rc == 0 and "consolidated 1 segment" in human.out, human.out


def test_http_consolidate(server):
    for i in range(200):
        st, _ = server.json("PUT", f"{API}/namespaces/c/keys/k{i}", json.dumps(record(i)).encode())
        assert st in (200, 201)
    for bad in (b'{"older_than_ns":-1}', b'{"older_than_ns":"1h"}', b'{"older_than_ns":1.5}', b"[", b"[]",
                b'{"other":1}', b'{"older_than_ns":1,"x":1}', b"null"):
        st, doc = server.json("POST", f"{API}/consolidate", bad)
        assert st == 400 and doc["error"]["code"] == "invalid", (bad, st, doc)
    st, doc = server.json("GET", f"{API}/consolidate")
    assert st == 405 and doc["error"]["code"] == "method_not_allowed"
    st, doc = server.json("POST", f"{API}/consolidate", b'{"older_than_ns":86400000000000}')
    assert st == 200 and doc["segments"] == 0
    st, doc = server.json("POST", f"{API}/consolidate")
    assert st == 200 and doc["segments"] == 1 and doc["values_compressed"] == 200
    st, got = server.json("GET", f"{API}/namespaces/c/keys/k5")
    assert st == 200 and got["value"] == record(5)
    st, doc = server.json("POST", f"{API}/verify")
    assert st == 200 and doc["ok"] is True
    st, doc = server.json("GET", f"{API}/status")
    assert st == 200 and "consolidation" in [t["task"] for t in doc["upkeep"]]
    # an on-demand run is reported like the upkeep thread's (as compact's are)
    task = [t for t in doc["upkeep"] if t["task"] == "consolidation"][0]
    assert task["runs"] == 2 and task["last_status"] == "ok", task
    assert task["message"].startswith("1 segments: 200 values compressed"), task


@pytest.mark.local_only("starts servers of its own")
def test_serve_consolidate_options(start_server, kd_raw, tmp_path):
    for opt in ("--consolidate-every", "--consolidate-after"):
        for bad in ("7x", "0", "50d", ""):
            r = kd_raw("--db", str(tmp_path / "bad"), "serve", "--port", "0", opt, bad)
            assert r.rc == 2 and opt in r.err, (opt, bad, r.rc, r.err)
    r = kd_raw("--db", str(tmp_path / "bad"), "serve", "--port", "0", "--consolidate-after", "off")
    assert r.rc == 2 and "--consolidate-after" in r.err, r.err
    cfg = tmp_path / "kd.conf"
    cfg.write_text("consolidate_every = 13x\n")
    r = kd_raw("--db", str(tmp_path / "bad"), "serve", "--port", "0", "--config", str(cfg))
    assert r.rc == 2 and "consolidate_every" in r.err, r.err
    # The server consolidates on its own: once the newest segment holds
    # 4 MiB and its writes are a second old, an upkeep run seals it and
    # compresses it (upkeep looks every 5 s).
    s = start_server(args=("--consolidate-every", "1s", "--consolidate-after", "1s"))
    pad = "compressible text " * 12000
    for i in range(25):
        assert s.json("PUT", f"/api/v1/namespaces/big/keys/k{i}", {"i": i, "pad": pad})[0] in (200, 201)
    task = None
    for _ in range(150):  # up to 30 s: waiting for the upkeep thread, not timing it
        st, doc = s.json("GET", "/api/v1/status")
        assert st == 200
        task = next(t for t in doc["upkeep"] if t["task"] == "consolidation")
        if task["runs"]:
            break
        time.sleep(0.2)
    assert task["runs"] >= 1 and task["last_status"] == "ok", task
    assert "values compressed" in task["message"], task
    st, doc = s.json("GET", "/api/v1/namespaces/big/keys/k7")
    assert st == 200 and doc["value"] == {"i": 7, "pad": pad}
    assert s.json("POST", "/api/v1/verify")[1]["ok"] is True
    assert s.stop() == 0
    # off: no run, however long
    s = start_server(args=("--consolidate-every", "off"))
    st, doc = s.json("GET", "/api/v1/status")
    assert next(t for t in doc["upkeep"] if t["task"] == "consolidation")["runs"] == 0
    assert s.stop() == 0


@pytest.mark.local_only("removes a file from the database directory")
def test_missing_dictionary_with_an_index_and_a_view(kd, db, tmp_path):
    """A database whose dictionary is gone still opens when it has indexes and
    views over the compressed values: reading such a value fails naming the
    file, and verify reports it (RETENTION.md, Damage)."""
    import glob
    import os
    load(kd, tmp_path)
    assert kd("index", "create", "customers", "address.city").rc == 0
    assert kd("view", "create", "active", "customers", "--filter", 'status = "active"').rc == 0
    assert kd("consolidate").rc == 0
    dicts = glob.glob(os.path.join(db, "zdict-*"))
    assert len(dicts) == 1
    os.unlink(dicts[0])
    name = os.path.basename(dicts[0])
    r = kd("get", "customers/c0007")
    line = one_error_line(r, 7)
    assert name in line and "is missing" in line, line
    r = kd("verify")
    assert r.rc == 7 and name in r.out + r.err, (r.out, r.err)
    r = kd("query", "customers", "--filter", 'address.city = "City 3"')
    line = one_error_line(r, 7)
    assert name in line, line
    r = kd("view", "show", "active")
    line = one_error_line(r, 7)
    assert name in line, line
    assert kd("status").rc == 0
    # a view created over the damaged values fails naming the damage (it said
    # "0 rows", exit 0), and stays defined, as an index does
    r = kd("view", "create", "lost", "customers", "--filter", 'status = "active"')
    line = one_error_line(r, 7)
    assert name in line and "defined but could not be built" in line, line
    assert "lost" in kd("view", "list").out
    # the index not built at open is still defined: creating it says so
    r = kd("index", "create", "customers", "address.city")
    line = one_error_line(r, 6)
    assert line.endswith("an index on that field already exists"), line  # not the definition's internal key
    # The unbuilt view still counts among what follows writes: deleting it
    # leaves the other views following (one process: the shell).
    assert kd("set", "other/k1", '{"x": 1}').rc == 0
    assert kd("view", "create", "others", "other").rc == 0
    r = kd("shell", input="view delete active\nset other/k2 '{\"x\": 2}'\nview show others --json\n")
    assert r.rc == 0, r.err
    shown = json.loads(r.out.strip().splitlines()[-1])
    assert [row["key"] for row in shown["rows"]] == ["k1", "k2"], r.out


def lose_dictionary(kd, db):
    """Delete the database's one zstd dictionary (with --url, while the
    server is stopped: it starts again on the damaged directory); return
    the file's name."""
    if kd.mode == "remote":
        assert kd.server.stop() == 0
    dicts = glob.glob(os.path.join(db, "zdict-*"))
    assert len(dicts) == 1
    os.unlink(dicts[0])
    if kd.mode == "remote":
        kd.server.start()
    return os.path.basename(dicts[0])


def test_index_not_built_at_open_is_listed_as_such(kd, db, tmp_path):
    """An index whose values cannot be read at open (a lost dictionary) is
    still defined: `index list` shows it, not built and why (the HTTP
    listing too), until it is dropped; creating it again tries again and
    says why it failed."""
    load(kd, tmp_path)
    assert kd("index", "create", "customers", "address.city").rc == 0
    assert kd("consolidate").rc == 0
    assert kd("set", "other/a", '{"x": 1}').rc == 0  # not consolidated: readable
    assert kd("index", "create", "other", "x").rc == 0
    name = lose_dictionary(kd, db)

    r = kd("index", "list", "--json")
    assert r.rc == 0 and r.err == "", r.err
    listed = json.loads(r.out)
    assert [(i["namespace"], i["field"], i["built"]) for i in listed] == [
        ("customers", "address.city", False), ("other", "x", True)]
    bad, good = listed
    assert list(bad) == ["namespace", "field", "entries", "created", "built", "error"]
    assert bad["entries"] == 0 and TIMESTAMP.match(bad["created"])
    assert name in bad["error"] and "is missing" in bad["error"], bad
    assert good["entries"] == 1 and good["error"] is None
    assert kd("index", "list", "customers", "--json").json() == [bad]
    if kd.mode == "remote":
        assert kd.server.json("GET", "/api/v1/indexes") == (200, {"indexes": listed})

    r = kd("index", "list")
    assert r.rc == 0 and r.err == "", r.err
    lines = r.out.splitlines()
    assert [re.split(r"  +", l.rstrip()) for l in lines[:3]] == [
        ["namespace", "field", "entries"], ["customers", "address.city", "not built"], ["other", "x", "1"]]
    assert lines[3:] == [f"customers address.city: not built: {bad['error']}"]

    # still defined: creating it says so; dropping it takes it off the list
    line = one_error_line(kd("index", "create", "customers", "address.city"), 6)
    assert line.endswith("already exists"), line
    r = kd("index", "drop", "customers", "address.city")
    assert r.rc == 0 and r.out == "dropped index on customers address.city\n", r.err
    assert [i["namespace"] for i in kd("index", "list", "--json").json()] == ["other"]
    # created again, it is defined but cannot be built: the error says why,
    # and the list shows it as not built with that reason
    line = one_error_line(kd("index", "create", "customers", "address.city"), 7)
    assert name in line and "could not be built" in line, line
    again = kd("index", "list", "customers", "--json").json()
    assert [(i["field"], i["built"]) for i in again] == [("address.city", False)]
    assert name in again[0]["error"]
    # and so it stays after a reopen
    r = kd.reopen("index", "list", "customers", "--json")
    assert [(i["field"], i["built"]) for i in r.json()] == [("address.city", False)]
