"""kdelta repair: a damaged database is salvaged with an exact report of what
was lost, the result verifies, and the damaged files are kept aside."""
import glob
import json
import os
import re


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
