"""History through kdelta: the hash-linked chain of versions (log), reading
the past (get --at) exactly on, just before and just after every version,
and delete semantics (tombstones)."""
import json

import pytest

from helpers import check_record, one_error_line, sha256_hex, ts_to_ns

A = '{"state": "A"}'
B = '{"state": "B"}'


def write_abab(kd, key="h/k"):
    recs = []
    for v in (A, B, A, B, A):
        r = kd("set", key, v, "--json")
        recs.append(r.json())
    return recs


def test_abab_chain(kd):
    recs = write_abab(kd)
    log = kd("log", "h/k", "--json").json()
    assert len(log) == 5
    # Newest first by default; --reverse gives oldest first.
    assert [r["write_id"] for r in log] == [r["write_id"] for r in reversed(recs)]
    old_first = kd("log", "h/k", "--json", "--reverse").json()
    assert old_first == list(reversed(log))
    prev = None
    for r in old_first:
        check_record(r, "h", "k")
        assert r["previous_write_id"] == prev
        prev = r["write_id"]
    assert len({r["write_id"] for r in old_first}) == 5
    assert len({r["version_id"] for r in old_first}) == 2
    assert old_first[0]["version_id"] == sha256_hex('{"state":"A"}')
    assert old_first[1]["version_id"] == sha256_hex('{"state":"B"}')
    assert [r["value"]["state"] for r in old_first] == ["A", "B", "A", "B", "A"]
    # Timestamps strictly increase.
    ts = [ts_to_ns(r["timestamp"]) for r in old_first]
    assert ts == sorted(ts) and len(set(ts)) == 5
    # The log records equal what set --json printed.
    assert old_first == recs
    # Stored values: two distinct.
    st = kd("status", "--json").json()
    assert st["versions"] == 5 and st["values"] == 2 and st["keys"] == 1


def test_log_limit_and_reverse(kd):
    recs = write_abab(kd)
    newest2 = kd("log", "h/k", "--limit", "2", "--json").json()
    assert [r["write_id"] for r in newest2] == [recs[4]["write_id"], recs[3]["write_id"]]
    rev2 = kd("log", "h/k", "--limit=2", "--reverse", "--json").json()
    assert [r["write_id"] for r in rev2] == [recs[3]["write_id"], recs[4]["write_id"]]
    assert len(kd("log", "h/k", "--limit", "0", "--json").json()) == 5
    assert len(kd("log", "h/k", "-n", "1", "--json").json()) == 1


def test_log_human(kd):
    recs = write_abab(kd)
    r = kd("log", "h/k")
    assert r.rc == 0, r.err
    blocks = r.out.strip("\n").split("\n\n")
    assert len(blocks) == 5
    # Newest first; each block names write, time, version, parent, value.
    for block, rec in zip(blocks, reversed(recs)):
        assert rec["write_id"] in block
        assert rec["timestamp"] in block
        assert rec["version_id"] in block
        assert (rec["previous_write_id"] or "none") in block
        assert json.dumps(rec["value"], separators=(",", ":")) in block


def test_log_not_found(kd):
    line = one_error_line(kd("log", "h/never"), 3)
    assert "h/never" in line and "never written" in line


def expected_at(recs, t):
    """What get --at t should give: the latest record with timestamp <= t."""
    best = None
    for r in recs:
        if ts_to_ns(r["timestamp"]) <= t:
            best = r
    return best


def test_get_at_boundaries(kd):
    recs = write_abab(kd)
    for i, rec in enumerate(recs):
        t = ts_to_ns(rec["timestamp"])
        for probe in (t - 1, t, t + 1):
            want = expected_at(recs, probe)
            r = kd("get", "h/k", "--at", f"@{probe}", "--json")
            if want is None:
                line = one_error_line(r, 3)
                assert "no version" in line, line
            else:
                assert r.rc == 0, (probe, r.err)
                got = json.loads(r.out)
                assert got == want, (i, probe - t)
        # Exactly on the boundary it is this version, in RFC 3339 form too.
        r = kd("get", "h/k", "--at", rec["timestamp"])
        assert r.rc == 0 and json.loads(r.out) == rec["value"]
        assert kd("get", "h/k", "--at", rec["timestamp"], "--json").json()["write_id"] == rec["write_id"]
    # 1 ns before each later version still gives the previous one.
    for prev, cur in zip(recs, recs[1:]):
        t = ts_to_ns(cur["timestamp"])
        got = kd("get", "h/k", "--at", f"@{t - 1}", "--json").json()
        assert got["write_id"] == prev["write_id"]


def test_get_at_before_first_write(kd):
    recs = write_abab(kd)
    first = ts_to_ns(recs[0]["timestamp"])
    line = one_error_line(kd("get", "h/k", "--at", f"@{first - 1}"), 3)
    assert "no version" in line and "h/k" in line
    line = one_error_line(kd("get", "h/k", "--at", "1970-01-01T00:00:00Z"), 3)
    assert "no version" in line
    line = one_error_line(kd("get", "h/k", "--at", "@-5"), 3)
    assert "no version" in line


def test_get_at_far_future_and_now(kd):
    recs = write_abab(kd)
    for t in ("2262-01-01T00:00:00Z", "@9223372036854775807", "now", "2200-01-01t00:00:00.1+05:00"):
        r = kd("get", "h/k", "--at", t, "--json")
        assert r.rc == 0, (t, r.err)
        assert json.loads(r.out)["write_id"] == recs[-1]["write_id"]


def test_get_at_relative(kd):
    recs = write_abab(kd)
    # Everything was just written: an hour ago there was nothing.
    line = one_error_line(kd("get", "h/k", "--at", "-1h"), 3)
    assert "no version" in line
    line = one_error_line(kd("get", "h/k", "--at", "-3d"), 3)
    assert "no version" in line
    # "-0s" is now: the latest.
    assert kd("get", "h/k", "--at", "-0s", "--json").json()["write_id"] == recs[-1]["write_id"]


def test_get_at_key_never_written(kd):
    write_abab(kd)
    line = one_error_line(kd("get", "h/other", "--at", "now"), 3)
    assert "never written" in line


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z",
                                 "2026-01-01T24:00:00Z", "2026-01-01", "@12x", "-5x", "", "@",
                                 "@99999999999999999999"])
def test_get_at_malformed_time(kd, bad):
    assert kd("set", "h/k", "1").rc == 0
    line = one_error_line(kd("get", "h/k", "--at", bad), 4)
    assert "invalid time" in line


def test_delete_semantics(kd):
    before = kd("set", "d/k", '{"v": 1}', "--json").json()
    kd("set", "d/other", "2")
    r = kd("delete", "d/k")
    assert r.rc == 0, r.err
    assert "d/k" in r.out and "deleted" in r.out
    # get: not found, saying it was deleted.
    line = one_error_line(kd("get", "d/k"), 3)
    assert "deleted" in line and "d/k" in line
    # list omits the key; the namespace stays while another key lives.
    assert kd("list", "d", "--json").json() == ["other"]
    # log shows the tombstone on top.
    log = kd("log", "d/k", "--json").json()
    assert len(log) == 2
    check_record(log[0], "d", "k", deleted=True)
    assert log[0]["previous_write_id"] == before["write_id"]
    assert "deleted" in kd("log", "d/k").out
    # get --at before the delete gives the old value; at the delete, deleted.
    t_del = ts_to_ns(log[0]["timestamp"])
    r = kd("get", "d/k", "--at", f"@{t_del - 1}")
    assert r.rc == 0 and r.out == '{"v":1}\n'
    line = one_error_line(kd("get", "d/k", "--at", f"@{t_del}"), 3)
    assert "deleted" in line
    # Deleting again, or a key never written: not found.
    line = one_error_line(kd("delete", "d/k"), 3)
    assert "deleted" in line
    line = one_error_line(kd("delete", "d/never"), 3)
    assert "never written" in line
    # Counts.
    st = kd("status", "--json").json()
    assert st["keys"] == 2 and st["live_keys"] == 1 and st["versions"] == 3


def test_delete_json_record_and_rewrite(kd):
    first = kd("set", "d/k", "[1]", "--json").json()
    tomb = kd("delete", "d/k", "--json").json()
    check_record(tomb, "d", "k", deleted=True)
    assert tomb["previous_write_id"] == first["write_id"]
    again = kd("set", "d/k", "[1]", "--json").json()
    assert again["previous_write_id"] == tomb["write_id"]
    assert again["version_id"] == first["version_id"]
    assert kd("get", "d/k").out == "[1]\n"
    assert kd("list", "d", "--json").json() == ["k"]


def test_delete_last_key_removes_namespace_from_list(kd):
    kd("set", "gone/k", "1")
    kd("set", "kept/k", "1")
    assert kd("list", "--json").json() == ["gone", "kept"]
    assert kd("delete", "gone/k").rc == 0
    assert kd("list", "--json").json() == ["kept"]
