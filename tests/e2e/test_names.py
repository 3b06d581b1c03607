"""Names through kdelta: NS/KEY splitting, odd characters that must never
collide, reserved and oversized names, and sorted listings."""
import pytest

from helpers import one_error_line


def test_split_at_first_slash(kd):
    rec = kd("set", "users/alice/profile", '{"x": 1}', "--json").json()
    assert rec["namespace"] == "users" and rec["key"] == "alice/profile"
    assert kd("list", "--json").json() == ["users"]
    assert kd("list", "users", "--json").json() == ["alice/profile"]
    assert kd("get", "users/alice/profile").out == '{"x":1}\n'
    assert kd("get", "users/alice").rc == 3


def test_colon_and_slash_never_collide(kd):
    assert kd("set", "a:b/c", '"first"').rc == 0
    assert kd("set", "a/b:c", '"second"').rc == 0
    assert kd("get", "a:b/c").out == '"first"\n'
    assert kd("get", "a/b:c").out == '"second"\n'
    assert kd("list", "--json").json() == ["a", "a:b"]
    assert kd("list", "a:b", "--json").json() == ["c"]
    assert kd("list", "a", "--json").json() == ["b:c"]
    # Write ids differ even though the namespace+key bytes concatenate alike.
    w1 = kd("get", "a:b/c", "--json").json()
    w2 = kd("get", "a/b:c", "--json").json()
    assert w1["write_id"] != w2["write_id"]
    st = kd("status", "--json").json()
    assert st["keys"] == 2 and st["namespaces"] == 2


ODD_KEYS = [
    "with space",
    " leading and trailing ",
    "colon:inside",
    "slash/inside/twice",
    "new\nline",
    "tab\there",
    "emoji \U0001F600 \U0001F468\u200D\U0001F469\u200D\U0001F467",
    "caf\u00e9",
    "cafe\u0301",
    "quote\"and\\backslash",
    "'",
    "-",
    "--json",
    "@file",
]


def test_odd_keys_round_trip_and_never_collide(kd):
    for i, key in enumerate(ODD_KEYS):
        r = kd("set", "odd/" + key, str(i))
        assert r.rc == 0, (key, r.err)
    for i, key in enumerate(ODD_KEYS):
        r = kd("get", "odd/" + key)
        assert r.rc == 0 and r.out == f"{i}\n", (key, r.out, r.err)
        rec = kd("get", "odd/" + key, "--json").json()
        assert rec["key"] == key
    listed = kd("list", "odd", "--json").json()
    assert listed == sorted(ODD_KEYS, key=lambda k: k.encode("utf-8"))
    st = kd("status", "--json").json()
    assert st["keys"] == len(ODD_KEYS)


def test_human_list_escapes_control_characters(kd):
    kd("set", "odd/new\nline", "1")
    r = kd("list", "odd")
    assert r.rc == 0
    assert r.out == "new\\nline\n"


def test_odd_namespaces(kd):
    for ns in ("name space", "emoji\U0001F680", "colon:ns", "n\u00e9"):
        assert kd("set", ns + "/k", "true").rc == 0
        assert kd("get", ns + "/k").out == "true\n"
    names = kd("list", "--json").json()
    assert names == sorted(["name space", "emoji\U0001F680", "colon:ns", "n\u00e9"], key=lambda s: s.encode())


@pytest.mark.parametrize("arg,why", [
    ("noslash", "no '/'"),
    ("/key", "namespace"),
    ("ns/", "key"),
    ("/", "namespace"),
])
def test_bad_ns_key(kd, db, arg, why):
    for cmd in (["set", arg, "1"], ["get", arg], ["delete", arg], ["log", arg]):
        line = one_error_line(kd(*cmd), 4)
        assert arg in line and why in line, line
    import os
    if kd.mode == "local":
        assert not os.path.exists(db), "a refused argument must not create the database"


def test_reserved_namespace_refused(kd):
    for ns in ("_kd", "_kdviews", "_kd_auth"):
        line = one_error_line(kd("set", ns + "/k", "1"), 4)
        assert "reserved" in line.lower(), line
    assert kd("status", "--json").json()["versions"] == 0
    # Near misses are ordinary namespaces.
    for ns in ("_k", "kd", "_KD", "x_kd"):
        assert kd("set", ns + "/k", "1").rc == 0, ns
    assert "_kd" not in kd("list", "--json").json()


def test_name_lengths(kd):
    ok_ns = "n" * 255
    ok_key = "k" * 1024
    assert kd("set", ok_ns + "/k", "1").rc == 0
    assert kd("set", "ns/" + ok_key, "1").rc == 0
    assert kd("get", "ns/" + ok_key).out == "1\n"
    one_error_line(kd("set", "n" * 256 + "/k", "1"), 4)
    one_error_line(kd("set", "ns/" + "k" * 1025, "1"), 4)
    # Multi-byte: 1024 bytes is fine, 1026 is not (length counts bytes).
    assert kd("set", "ns/" + "\u00e9" * 512, "1").rc == 0
    one_error_line(kd("set", "ns/" + "\u00e9" * 513, "1"), 4)
    assert kd("status", "--json").json()["versions"] == 3


def test_invalid_utf8_name_refused(kd):
    one_error_line(kd("set", b"ns/\xff\xfe", "1"), 4)
    one_error_line(kd("set", b"\xc3/k", "1"), 4)
    assert kd("status", "--json").json()["versions"] == 0


def test_list_sorted(kd):
    namespaces = ["zeta", "Alpha", "alpha", "beta", "\u00e9t\u00e9", "10", "9", "a b"]
    for ns in namespaces:
        assert kd("set", ns + "/k", "0").rc == 0
    assert kd("list", "--json").json() == sorted(namespaces, key=lambda s: s.encode())
    assert kd("list").out == "".join(n + "\n" for n in sorted(namespaces, key=lambda s: s.encode()))
    keys = ["b", "a", "c/d", "c", "B", "aa", "a a", "\U0001F600", "\u00e9"]
    for k in keys:
        kd("set", "keys/" + k, "0")
    assert kd("list", "keys", "--json").json() == sorted(keys, key=lambda s: s.encode())


def test_list_empty_and_unknown(kd):
    r = kd("list", "--json")
    assert r.rc == 0 and r.json() == []
    r = kd("list")
    assert r.rc == 0 and r.out == ""
    kd("set", "x/k", "1")
    r = kd("list", "nothing-here", "--json")
    assert r.rc == 0 and r.json() == []
    # A trailing slash names the namespace.
    assert kd("list", "x/", "--json").json() == ["k"]


def test_backslash_shown_doubled(kd):
    """A key holding a backslash then 'n' and a key holding a newline are
    shown apart (both showed as a\\nb)."""
    assert kd("set", "b/a\\nb", "1").rc == 0
    assert kd("set", "b/a\nb", "2").rc == 0
    assert kd("list", "b").out.splitlines() == ["a\\nb", "a\\\\nb"]
    assert kd("list", "b", "--json").json() == ["a\nb", "a\\nb"]
