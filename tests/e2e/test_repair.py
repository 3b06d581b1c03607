"""kdelta repair: a damaged database is salvaged with an exact report of what
was lost, the result verifies, and the damaged files are kept aside."""
import glob
import json
import os
import re
import struct

import pytest


def seg(db):
    return os.path.join(db, "log-00000001.kdl")


def write_three(kd, db):
    """a=one, b=bee, a=two, one record each; returns each record's offset."""
    offsets = []
    for key, value in (("n/a", '"one"'), ("n/b", '"bee"'), ("n/a", '"two"')):
        offsets.append(os.path.getsize(seg(db)) if os.path.exists(seg(db)) else 32)
        r = kd("set", key, value)
        assert r.rc == 0, r.err
    return offsets


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x20]))


def test_healthy_database_left_alone(kd, db):
    write_three(kd, db)
    before = open(seg(db), "rb").read()
    r = kd("repair")
    assert r.rc == 0, r.err
    assert "nothing to repair" in r.out
    assert open(seg(db), "rb").read() == before
    assert not glob.glob(db + ".damaged-*")


def test_flipped_byte_salvaged_with_exact_report(kd, db):
    off = write_three(kd, db)
    # A byte inside the stored value of the second record (16-byte record
    # header, 40-byte transaction header, 36-byte value header).
    flip(seg(db), off[1] + 16 + 40 + 36 + 1)
    r = kd("get", "n/a")
    assert r.rc == 7 and f"offset {off[1]}" in r.err
    r = kd("repair")
    assert r.rc == 0, r.err
    lost = [l for l in r.out.splitlines() if l.startswith("lost: ")]
    assert lost == [f"lost: log-00000001.kdl offset {off[1]}: record lost: payload checksum mismatch (held n/b)"]
    assert "kept 2 versions" in r.out and "lost 1 record" in r.out
    kept = glob.glob(db + ".damaged-*")
    assert len(kept) == 1 and kept[0] in r.out
    assert os.path.exists(os.path.join(kept[0], "log-00000001.kdl"))
    assert kd("verify").rc == 0
    assert kd("get", "n/a").out.strip() == '"two"'
    r = kd("get", "n/b")
    assert r.rc == 3
    log = kd("log", "n/a", "--json", "--reverse").json()
    assert [e["value"] for e in log] == ["one", "two"]
    assert log[1]["previous_write_id"] == log[0]["write_id"]


def test_lost_parent_loses_later_versions(kd, db):
    off = write_three(kd, db)
    flip(seg(db), off[0] + 16 + 40 + 36 + 1)  # a=one: a=two's parent
    r = kd("repair", "--json")
    assert r.rc == 0, r.err
    lines = [json.loads(l) for l in r.out.splitlines()]
    lost = [l["lost"] for l in lines if "lost" in l]
    assert len(lost) == 2
    assert lost[0].startswith(f"log-00000001.kdl offset {off[0]}: record lost") and "(held n/a)" in lost[0]
    assert f"offset {off[2]}: version lost: n/a" in lost[1] and "earlier version" in lost[1]
    assert re.search(r" at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z: ", lost[1]), lost[1]
    summary = lines[-1]
    assert summary["repaired"] is True
    assert summary["versions_kept"] == 1 and summary["versions_lost"] == 1 and summary["records_lost"] == 1
    assert summary["keys_affected"] == 1
    assert summary["damaged_copy"].startswith(db + ".damaged-")
    assert kd("get", "n/a").rc == 3
    assert kd("get", "n/b").out.strip() == '"bee"'


def test_repair_refused_inside_shell(kd, db):
    write_three(kd, db)
    r = kd("shell", input="repair\n")
    assert r.rc == 2
    assert "cannot run inside the shell" in r.err


# --------------------------------------------------------------------------
# A compacted database whose compaction record was damaged

SEG_HEADER, REC_HEADER, TXN_HEADER, VALUE_HEADER, WRITE_HEADER = 32, 16, 40, 36, 96


def records(path):
    """(offset, payload length, [(ns, key), …]) of each record of a segment."""
    data = open(path, "rb").read()
    out, off = [], SEG_HEADER
    while off + REC_HEADER <= len(data):
        length = struct.unpack_from("<I", data, off)[0]
        payload = off + REC_HEADER
        n_values, n_writes = struct.unpack_from("<II", data, payload)
        p = payload + TXN_HEADER
        for _ in range(n_values):
            p += VALUE_HEADER + struct.unpack_from("<I", data, p + 32)[0]
        names = []
        for _ in range(n_writes):
            n_parents, ws_len, ns_len = data[p + 9], data[p + 10], data[p + 11]
            key_len = struct.unpack_from("<H", data, p + 12)[0]
            at = p + WRITE_HEADER + 32 * n_parents + ws_len
            names.append((data[at:at + ns_len].decode(), data[at + ns_len:at + ns_len + key_len].decode()))
            p = at + ns_len + key_len
        out.append((off, length, names))
        off = payload + length
    return out


def compacted(kd, db):
    """100 keys u/k1…u/k100, then 30 more writes to u/k1…u/k30 with
    keep_last 1: compaction 1 prunes the 30 first versions. Returns the
    current values."""
    rows = "".join(json.dumps({"id": f"k{i}", "n": i}) + "\n" for i in range(1, 101))
    assert kd("import", "u", "-", "--key", "id", input=rows).rc == 0
    assert kd("retention", "set", "u", "--keep-last", "1").rc == 0
    current = {f"k{i}": {"id": f"k{i}", "n": i} for i in range(1, 101)}
    for i in range(1, 31):
        assert kd("set", f"u/k{i}", json.dumps({"m": i})).rc == 0
        current[f"k{i}"] = {"m": i}
    r = kd("compact", "--json")
    assert r.rc == 0 and r.json()["versions_pruned"] == 30, r.out + r.err
    return current


def damage_compaction_record(db, state):
    """Flip a byte of the value of compaction 1's "started" or "done"
    record (both in the segment the compaction started). Returns its offset."""
    path = os.path.join(db, "log-00000002.kdl")
    data = open(path, "rb").read()
    for off, length, names in records(path):
        body = data[off + REC_HEADER:off + REC_HEADER + length]
        if names == [("_kd.compactions", "0000000001")] and f'"state":"{state}"'.encode() in body:
            flip(path, off + REC_HEADER + body.index(b'"state":"') + 9)
            return off
    raise AssertionError(f"no {state} record of compaction 1")


def assert_salvaged(kd, db, current, r, said):
    assert r.rc == 0, r.out + r.err
    assert "compaction 1: " in said and "recorded anew" in said, said
    assert kd("status").rc == 0
    v = kd("verify", "--json")
    assert v.rc == 0, v.out + v.err
    assert v.json()["pruned"] == 30
    for key, value in current.items():
        g = kd("get", f"u/{key}")
        assert g.rc == 0 and json.loads(g.out) == value, (key, g.out, g.err)
    for i in (1, 30):
        log = kd("log", f"u/k{i}", "--json", "--reverse").json()
        assert [e.get("pruned", False) for e in log] == [True, False]
    assert kd("log", "u/k31", "--json").json()[0].get("pruned", False) is False


@pytest.mark.parametrize("state", ["started", "done"])
def test_lost_compaction_record_is_recorded_anew(kd, db, state):
    current = compacted(kd, db)
    assert kd("set", "u/k100", '"later"').rc == 0  # so the damage is not the log's torn tail
    current["k100"] = "later"
    off = damage_compaction_record(db, state)
    assert kd("verify").rc == 7
    r = kd("repair", "--json")
    lines = [json.loads(l) for l in r.out.splitlines()]
    lost = [l["lost"] for l in lines if "lost" in l]
    assert any(f"log-00000002.kdl offset {off}: record lost" in l for l in lost), lost
    summary = lines[-1]
    assert summary["repaired"] is True and summary["compactions_recorded"] == 1
    assert_salvaged(kd, db, current, r, "\n".join(lost))
    # The human output says it too.
    assert kd("repair").out.startswith(db + ": nothing to repair")


def test_done_record_dropped_as_torn_tail_is_recorded_anew(kd, db):
    """The "done" record was the last record of the log: opening takes the
    damage for a torn write and drops it, so the log looks intact but the
    30 pruned writes are accounted for by nothing. That is not "nothing to
    repair"."""
    current = compacted(kd, db)
    damage_compaction_record(db, "done")
    assert kd("status").rc == 0  # drops the damaged tail
    assert kd("verify").rc == 7
    r = kd("repair")
    assert "nothing to repair" not in r.out
    assert "recorded 1 compaction anew" in r.out
    assert_salvaged(kd, db, current, r, r.out)


def test_lost_pruned_write_is_accounted_for_anew(kd, db):
    """A damaged record held a pruned write: the compaction's record counts
    one write more than the salvaged log flags."""
    for i in range(4):
        assert kd("set", "users/a", json.dumps({"n": i})).rc == 0
    assert kd("set", "other/x", "1").rc == 0
    assert kd("retention", "set", "users", "--keep-last", "1").rc == 0
    assert kd("compact", "--json").json()["versions_pruned"] == 3
    assert kd("set", "other/y", "2").rc == 0
    a = [(off, length) for off, length, names in records(seg(db)) if names == [("users", "a")]]
    off, length = a[1]  # the second version: pruned; the two after it go with it
    flip(seg(db), off + REC_HEADER + length - 1)
    r = kd("repair")
    assert r.rc == 0, r.out + r.err
    assert "compaction 1: its record accounts for 3 pruned writes, 1 of them salvaged" in r.out, r.out
    v = kd("verify", "--json")
    assert v.rc == 0 and v.json()["pruned"] == 1, v.out + v.err
    assert [e.get("pruned", False) for e in kd("log", "users/a", "--json").json()] == [True]
    assert kd("get", "other/x").out.strip() == "1" and kd("get", "other/y").out.strip() == "2"


# --------------------------------------------------------------------------
# A damaged NODE file

def node_ids(kd):
    r = kd("export", "n", "--history")
    assert r.rc == 0, r.err
    return [json.loads(l)["node_id"] for l in r.out.splitlines() if l.strip()]


@pytest.mark.parametrize("junk", [b"garbage", b"z" * 40 + b"\n", b""])
def test_damaged_node_file_gets_a_new_node_id(kd, db, junk):
    write_three(kd, db)
    old = open(os.path.join(db, "NODE")).read().strip()
    before = node_ids(kd)
    assert before == [old] * 3
    open(os.path.join(db, "NODE"), "wb").write(junk)
    r = kd("status")
    assert r.rc == 7 and "NODE" in r.err
    r = kd("repair", "--json")
    assert r.rc == 0, r.out + r.err
    lines = [json.loads(l) for l in r.out.splitlines()]
    assert any(l.get("lost", "").startswith("NODE: ") for l in lines), lines
    new = lines[-1]["new_node_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", new) and new != old
    assert open(os.path.join(db, "NODE")).read().strip() == new
    assert kd("status").rc == 0 and kd("verify").rc == 0
    assert node_ids(kd) == before  # the writes keep the id they were made with
    assert kd("set", "n/c", "3").rc == 0
    assert node_ids(kd)[-1] == new
    assert kd("repair").out.startswith(db + ": nothing to repair")


def test_damaged_node_file_named_in_human_output(kd, db):
    write_three(kd, db)
    open(os.path.join(db, "NODE"), "w").write("garbage")
    r = kd("repair")
    assert r.rc == 0, r.err
    assert "nothing to repair" not in r.out
    assert re.search(r"^lost: NODE: .*garbage", r.out, re.M), r.out
    new = open(os.path.join(db, "NODE")).read().strip()
    assert f"the database has a new node id {new}" in r.out


def test_damaged_node_file_with_damaged_log(kd, db):
    """A long junk NODE was copied into the repaired database, which then
    did not open."""
    off = write_three(kd, db)
    flip(seg(db), off[1] + 16 + 40 + 36 + 1)
    open(os.path.join(db, "NODE"), "w").write("x" * 64)
    r = kd("repair")
    assert r.rc == 0, r.err
    assert kd("get", "n/a").out.strip() == '"two"' and kd("verify").rc == 0
