"""Values through kdelta: set/get round trips, canonical form and version_id,
unicode, big numbers, the ways a value can be given (argument, stdin, @file,
byte order mark) and the ways it can be refused (nothing written then)."""
import json
import os
import re
import subprocess

import pytest

from helpers import KDELTA, Result, canonical, check_record, one_error_line, sha256_hex


def versions(kd):
    return kd("status", "--json").json()["versions"]


def test_set_get_round_trip(kd):
    r = kd("set", "users/alice", '{"name": "Alice", "age": 30}')
    assert r.rc == 0, r.err
    # Human line: name, short version and write ids, time.
    assert r.out.startswith("users/alice  version ")
    assert " write " in r.out and " at " in r.out and r.out.endswith("Z\n")
    r = kd("get", "users/alice")
    assert r.rc == 0, r.err
    assert r.out == '{"age":30,"name":"Alice"}\n'
    assert r.err == ""


def test_set_json_record_and_version_id(kd):
    rec = kd("set", "users/alice", '{"name": "Alice"}', "--json").json()
    check_record(rec, "users", "alice")
    assert rec["value"] == {"name": "Alice"}
    assert rec["version_id"] == sha256_hex('{"name":"Alice"}')
    assert rec["previous_write_id"] is None
    # set --json prints one line.
    r = kd("--json", "set", "users/alice", '{"name": "Alicia"}')
    assert r.rc == 0 and r.out.count("\n") == 1
    rec2 = json.loads(r.out)
    assert rec2["previous_write_id"] == rec["write_id"]
    assert rec2["write_id"] != rec["write_id"]
    # get --json gives the same record as set --json did.
    assert kd("get", "users/alice", "--json").json() == rec2


def test_get_prints_canonical_json(kd):
    assert kd("set", "n/k", ' { "b" : [1, 2, {"z": null, "y": true}] ,\n "a":"x" } ').rc == 0
    assert kd("get", "n/k").out == '{"a":"x","b":[1,2,{"y":true,"z":null}]}\n'


def test_member_order_gives_one_version_id(kd):
    a = kd("set", "n/one", '{"a":1,"b":2}', "--json").json()
    b = kd("set", "n/two", '{"b":2,"a":1}', "--json").json()
    c = kd("set", "n/three", '{ "b" : 2 , "a" : 1 }', "--json").json()
    assert a["version_id"] == b["version_id"] == c["version_id"]
    assert a["version_id"] == sha256_hex(canonical({"a": 1, "b": 2}))
    assert a["version_id"] == sha256_hex(b'{"a":1,"b":2}')
    assert kd("get", "n/two").out == '{"a":1,"b":2}\n'
    # Stored once: three keys, one distinct value.
    st = kd("status", "--json").json()
    assert st["values"] == 1 and st["versions"] == 3


def test_version_id_independent_check_nested(kd):
    value = {"zeta": [1, 2, {"b": "x", "a": None}], "alpha": {"é": True, "e": False}, "mid": "ünï"}
    rec = kd("set", "n/k", json.dumps(value), "--json").json()
    assert rec["version_id"] == sha256_hex(canonical(value))
    assert kd("get", "n/k").out == canonical(value) + "\n"


def test_one_and_one_point_zero_are_distinct(kd):
    a = kd("set", "n/int", "1", "--json").json()
    b = kd("set", "n/float", "1.0", "--json").json()
    assert a["version_id"] != b["version_id"]
    assert a["version_id"] == sha256_hex("1")
    assert kd("get", "n/int").out == "1\n"
    assert kd("get", "n/float").out == "1.0\n"


def test_big_integers_exact(kd):
    assert kd("set", "n/big", "505874924095815681").rc == 0
    assert kd("get", "n/big").out == "505874924095815681\n"
    huge = "-123456789012345678901234567890123456789"
    assert kd("set", "n/huge", "[" + huge + "]").rc == 0
    assert kd("get", "n/huge").out == "[" + huge + "]\n"
    rec = kd("get", "n/big", "--json").json()
    assert rec["version_id"] == sha256_hex("505874924095815681")
    # The record carries the number exactly too.
    r = kd("get", "n/big", "--json")
    assert '"value":505874924095815681' in r.out


def test_null_is_a_value(kd):
    assert kd("set", "n/k", "null").rc == 0
    r = kd("get", "n/k")
    assert r.rc == 0 and r.out == "null\n"
    rec = kd("get", "n/k", "--json").json()
    assert rec["value"] is None and rec["deleted"] is False
    assert rec["version_id"] == sha256_hex("null")


def test_negative_number_as_value(kd):
    # "-5" is a value, not an option.
    assert kd("set", "n/k", "-5").rc == 0
    assert kd("get", "n/k").out == "-5\n"
    assert kd("set", "n/k2", "--", "-2.5").rc == 0
    assert kd("get", "n/k2").out == "-2.5\n"


# ---------------------------------------------------------------------------
# Unicode
# ---------------------------------------------------------------------------


def test_nul_inside_string(kd):
    assert kd("set", "u/nul", '"a\\u0000b"').rc == 0
    r = kd("get", "u/nul")
    assert r.rc == 0
    assert json.loads(r.out) == "a\x00b"
    assert "\x00" not in r.out  # escaped in the output, never a raw NUL
    assert kd("get", "u/nul", "--json").json()["value"] == "a\x00b"


def test_zwj_sequence_round_trip(kd):
    family = "\U0001F468\u200D\U0001F469\u200D\U0001F467\u200D\U0001F466"  # man-woman-girl-boy
    flag = "\U0001F3F3\uFE0F\u200D\U0001F308"
    value = json.dumps({"family": family, "flag": flag}, ensure_ascii=False)
    rec = kd("set", "u/zwj", value, "--json").json()
    r = kd("get", "u/zwj")
    assert r.out.encode("utf-8") == canonical({"family": family, "flag": flag}).encode("utf-8") + b"\n"
    assert rec["version_id"] == sha256_hex(canonical({"family": family, "flag": flag}))
    # Escaped input gives the same canonical (raw UTF-8) form and version_id.
    escaped = json.dumps({"family": family, "flag": flag}, ensure_ascii=True)
    rec2 = kd("set", "u/zwj2", escaped, "--json").json()
    assert rec2["version_id"] == rec["version_id"]


def test_combining_and_precomposed_are_different(kd):
    pre = kd("set", "u/pre", '"\u00e9"', "--json").json()  # é
    comb = kd("set", "u/comb", '"e\u0301"', "--json").json()  # e + COMBINING ACUTE
    assert pre["version_id"] != comb["version_id"]
    assert pre["version_id"] == sha256_hex('"\u00e9"')
    assert comb["version_id"] == sha256_hex('"e\u0301"')
    assert kd("get", "u/pre").out == '"\u00e9"\n'
    assert kd("get", "u/comb").out == '"e\u0301"\n'


def test_invalid_utf8_value_refused(kd, db):
    before_rc = kd("status", "--json").json()["versions"]
    r = kd("set", "u/bad", b'"\xff\xfe"')
    one_error_line(r, 4)
    assert versions(kd) == before_rc


def test_lone_surrogate_refused(kd):
    r = kd("set", "u/bad", '"\\ud800"')
    one_error_line(r, 4)
    assert kd("get", "u/bad").rc == 3


# ---------------------------------------------------------------------------
# Where the value comes from
# ---------------------------------------------------------------------------


def test_value_from_stdin(kd):
    r = kd("set", "io/stdin", "-", input='{"from": "stdin", "n": [1,2,3]}\n')
    assert r.rc == 0, r.err
    assert kd("get", "io/stdin").out == '{"from":"stdin","n":[1,2,3]}\n'


def test_value_from_file(kd, tmp_path):
    f = tmp_path / "value.json"
    f.write_text('{"from": "file"}', encoding="utf-8")
    r = kd("set", "io/file", "@" + str(f))
    assert r.rc == 0, r.err
    assert kd("get", "io/file").out == '{"from":"file"}\n'


def test_value_file_missing(kd, tmp_path):
    r = kd("set", "io/file", "@" + str(tmp_path / "nope.json"))
    line = one_error_line(r, 1)
    assert "nope.json" in line
    assert kd("get", "io/file").rc == 3


def test_bom_accepted(kd, tmp_path):
    r = kd("set", "io/bom", "-", input=b'\xef\xbb\xbf{"bom": true}')
    assert r.rc == 0, r.err
    assert kd("get", "io/bom").out == '{"bom":true}\n'
    f = tmp_path / "bom.json"
    f.write_bytes(b'\xef\xbb\xbf[1]')
    assert kd("set", "io/bomfile", "@" + str(f)).rc == 0
    assert kd("get", "io/bomfile").out == "[1]\n"
    # Same content with and without BOM: same version_id.
    a = kd("get", "io/bomfile", "--json").json()["version_id"]
    assert a == sha256_hex("[1]")
    # One BOM is skipped, not two; error offsets count it (JSON.md).
    line = one_error_line(kd("set", "io/bom2", "-", input=b'\xef\xbb\xbf\xef\xbb\xbf{}'), 4)
    assert "at byte 3" in line, line
    line = one_error_line(kd("set", "io/bom3", "-", input=b'\xef\xbb\xbf[1,]'), 4)
    assert "at byte 6" in line, line


def test_large_value_from_stdin(kd):
    value = json.dumps({"data": "x" * 3_000_000, "list": list(range(10000))})
    r = kd("set", "io/large", "-", input=value)
    assert r.rc == 0, r.err
    out = kd("get", "io/large").out
    assert json.loads(out) == json.loads(value)
    assert kd("get", "io/large", "--json").json()["version_id"] == sha256_hex(canonical(json.loads(value)))


# ---------------------------------------------------------------------------
# Refused values: exit 4, the message says where, nothing is written
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    '{"a": 1,}',
    '{"a" 1}',
    "[1, 2",
    "tru",
    "NaN",
    "Infinity",
    "01",
    "'single'",
    "",
    "   ",
    '{"a":1} {"b":2}',
])
def test_invalid_json_refused(kd, text):
    assert kd("set", "j/ok", "1").rc == 0
    before = versions(kd)
    r = kd("set", "j/k", "-", input=text)
    line = one_error_line(r, 4)
    assert "j/k" in line
    assert "byte" in line, f"message should give the byte offset: {line}"
    assert versions(kd) == before
    assert kd("get", "j/k").rc == 3


def test_invalid_json_message_names_offset(kd):
    r = kd("set", "j/k", '{"a": 1, "b": }')
    line = one_error_line(r, 4)
    # The '}' where a value was expected is byte 14 (counting from 0; 15 from 1).
    assert re.search(r"byte (14|15)\b", line), line


def test_deep_nesting_refused_without_crash(kd):
    r = kd("set", "j/deep", "-", input="[" * 100000 + "]" * 100000)
    one_error_line(r, 4)
    ok = "[" * 500 + "]" * 500
    r = kd("set", "j/ok", "-", input=ok)
    assert r.rc == 0, r.err
    assert kd("get", "j/ok").out == ok + "\n"


def test_value_too_big_refused(kd):
    before = versions(kd)
    big = '"' + "y" * (17 * 1024 * 1024) + '"'
    r = kd("set", "j/big", "-", input=big)
    one_error_line(r, 4)
    assert versions(kd) == before


MAX_VALUE = 16 << 20  # the database's maximum value size (the default; kdelta does not change it)


def oversize_line(r, name, source):
    """The one error line of a value cut short at the maximum value size."""
    line = one_error_line(r, 4)
    assert line == (f"kdelta: {name}: value from {source} is more than {MAX_VALUE} bytes; "
                    f"the limit is {MAX_VALUE}"), line
    return line


def test_endless_value_file_is_refused_at_the_limit(kd):
    """@/dev/zero never ends: kdelta stops once the value is over the limit
    instead of reading 1 GiB first (the timeout only guards against a hang)."""
    before = versions(kd)
    oversize_line(kd("set", "j/zero", "@/dev/zero", timeout=60), "j/zero", "@/dev/zero")
    assert versions(kd) == before
    assert kd("get", "j/zero").rc == 3


def test_value_file_of_the_limit_plus_one_byte(kd, tmp_path):
    f = tmp_path / "big.json"
    f.write_bytes(b'"' + b"y" * (MAX_VALUE - 1) + b'"')  # MAX_VALUE + 1 bytes
    before = versions(kd)
    oversize_line(kd("set", "j/big", "@" + str(f)), "j/big", "@" + str(f))
    assert versions(kd) == before
    f.write_bytes(b'"' + b"y" * (MAX_VALUE - 2) + b'"')  # exactly the limit: stored
    r = kd("set", "j/big", "@" + str(f))
    assert r.rc == 0, r.err
    assert kd("get", "j/big", "--json").json()["version_id"] == sha256_hex(f.read_text())
    f.write_bytes(b"\xef\xbb\xbf" + b'"' + b"x" * (MAX_VALUE - 2) + b'"\n')  # a BOM and a newline do not count
    r = kd("set", "j/big", "@" + str(f))
    assert r.rc == 0, r.err


def test_stdin_is_read_no_further_than_the_limit(kd, env, tmp_path):
    """From stdin as well: the process stops reading soon after the limit.
    stdin is a regular file whose file offset the test shares with kdelta,
    so the offset tells how much kdelta read."""
    f = tmp_path / "huge.json"
    size = 3 * MAX_VALUE
    f.write_bytes(b'"' + b"z" * (size - 2) + b'"')
    before = versions(kd)
    with open(f, "rb") as stdin:
        p = subprocess.run([KDELTA] + kd.target() + ["set", "j/huge", "-"], stdin=stdin, capture_output=True,
                           env=env, timeout=60)
        read = os.lseek(stdin.fileno(), 0, os.SEEK_CUR)
    r = Result(p.returncode, p.stdout.decode(), p.stderr.decode())
    oversize_line(r, "j/huge", "stdin")
    assert MAX_VALUE < read < 2 * MAX_VALUE, read
    assert versions(kd) == before


def test_whitespace_between_tokens_does_not_count(kd):
    """The stored value is canonical, without the whitespace between
    tokens, so a pretty-printed value is judged by what is stored: more
    than the limit as typed, less once stored."""
    items = ["x" * 1000] * 15000  # about 15 MB stored
    text = json.dumps(items, indent=400)  # about 21 MB typed
    assert len(text) > MAX_VALUE > len(canonical(items))
    r = kd("set", "j/pretty", "-", input=text)
    assert r.rc == 0, r.err
    assert kd("get", "j/pretty", "--json").json()["version_id"] == sha256_hex(canonical(items))
    # but whitespace inside strings is part of the value
    oversize_line(kd("set", "j/spaces", "-", input='"' + " " * MAX_VALUE + '"'), "j/spaces", "stdin")


def test_value_cut_short_in_the_shell_leaves_no_commands_behind(kd):
    """In the shell, a value from stdin that is too long is refused and the
    rest of it is dropped up to the end of the input, so no part of it, or
    of what follows, is run as a command."""
    # 3 MiB past the limit: more than the reader takes in one step, so the
    # commands after it are still unread when the value is refused
    tail = '"\nset j/after 1\n'
    for source in ("-", "@/dev/stdin"):
        script = f"set j/big {source}\n" + '"' + "y" * (MAX_VALUE + (3 << 20)) + tail
        r = kd("shell", input=script)
        oversize_line(r, "j/big", "stdin" if source == "-" else source)
        assert kd("get", "j/after").rc == 3, source
        assert kd("get", "j/big").rc == 3


def test_every_power_of_two_is_written_shortest(kd):
    """A double is written with the fewest digits that read back as it, the
    closest of those (ECMAScript's rule, JSON.md): checked against Python's
    repr, which follows the same rule, for every finite power of two (where
    the gap below the value is half the gap above, and printf's rounding
    at 16 digits does not read back: 2^-24 is 5.960464477539063e-8)."""
    from decimal import Decimal
    values = [2.0 ** e for e in range(-1074, 1024)]
    text = "[" + ",".join(repr(v) for v in values) + "]"
    assert kd("set", "p/two", "-", input=text).rc == 0
    out = kd("get", "p/two").out.strip()
    got = out[1:-1].split(",")
    assert len(got) == len(values)
    wrong = [(repr(v), g) for v, g in zip(values, got) if Decimal(g) != Decimal(repr(v))]
    assert wrong == [], wrong[:5]
