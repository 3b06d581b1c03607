"""docs/FORMAT.md, checked from outside: a reader written in Python from the
document alone parses the log segments kdelta wrote, checks every checksum,
recomputes version_id, write_id and the causal roots, and must agree with
what kdelta reports. If the code and the document drift apart, this fails."""
import hashlib
import os
import struct

from helpers import ts_to_ns

# CRC-32C (Castagnoli), reflected, init/xorout 0xFFFFFFFF.
_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ (0x82F63B78 if _c & 1 else 0)
    _TABLE.append(_c)


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def sha(b):
    return hashlib.sha256(b).digest()


def parse_segment(path, number):
    """Yield (values, writes, root_after) for every TXN record."""
    data = open(path, "rb").read()
    assert data[:8] == b"KDLOG\x00\r\n"
    version, flags, segno, reserved, hcrc = struct.unpack_from("<IIQII", data, 8)
    assert version == 1 and flags == 0 and reserved == 0 and segno == number
    assert hcrc == crc32c(data[:28])
    off = 32
    while off < len(data):
        length, rtype, r0, r1, r2, pcrc, hcrc = struct.unpack_from("<IBBBBII", data, off)
        assert hcrc == crc32c(data[off:off + 12]), f"record header checksum at {off}"
        assert (rtype, r0, r1, r2) == (1, 0, 0, 0)
        payload = data[off + 16:off + 16 + length]
        assert len(payload) == length and pcrc == crc32c(payload)
        yield parse_txn(payload)
        off += 16 + length


def parse_txn(p):
    n_values, n_writes = struct.unpack_from("<II", p, 0)
    root_after = p[8:40]
    pos = 40
    values = []
    for _ in range(n_values):
        vid = p[pos:pos + 32]
        (vlen,) = struct.unpack_from("<I", p, pos + 32)
        values.append((vid, p[pos + 36:pos + 36 + vlen]))
        pos += 36 + vlen
    writes = []
    for _ in range(n_writes):
        ts, flags, nparents, ws_len, ns_len, key_len, reserved = struct.unpack_from("<qBBBBHH", p, pos)
        assert reserved == 0
        node = p[pos + 16:pos + 32]
        vid = p[pos + 32:pos + 64]
        wid = p[pos + 64:pos + 96]
        pos += 96
        parents = [p[pos + 32 * i:pos + 32 * (i + 1)] for i in range(nparents)]
        pos += 32 * nparents
        ws = p[pos:pos + ws_len]
        ns = p[pos + ws_len:pos + ws_len + ns_len]
        key = p[pos + ws_len + ns_len:pos + ws_len + ns_len + key_len]
        pos += ws_len + ns_len + key_len
        writes.append(dict(ts=ts, deleted=flags & 1, node=node, vid=vid, wid=wid, parents=parents,
                           ws=ws, ns=ns, key=key))
    assert pos == len(p)
    return values, writes, root_after


def write_id(w):
    pre = b"korudelta.write.v1\x00"
    pre += bytes([len(w["ws"])]) + w["ws"] + bytes([len(w["ns"])]) + w["ns"]
    pre += struct.pack("<H", len(w["key"])) + w["key"]
    pre += bytes([w["deleted"]]) + w["vid"] + struct.pack("<q", w["ts"]) + w["node"]
    pre += bytes([len(w["parents"])]) + b"".join(w["parents"])
    return sha(pre)


def test_log_matches_format_document(kd, db):
    for args in (("set", "docs/a", '{"y": [1, 2.50, "é"], "x": 1}'),
                 ("set", "docs/b:c", "505874924095815681"),
                 ("set", "docs/a", "null"),
                 ("delete", "docs/b:c"),
                 ("set", "docs/a", '{"x": 1, "y": [1, 2.5, "é"]}')):
        r = kd(*args)
        assert r.rc == 0, r.err
    node = bytes.fromhex(open(os.path.join(db, "NODE")).read().strip())
    assert len(node) == 16

    stored = {}
    writes = []
    root = bytes(32)
    for values, ws, root_after in parse_segment(os.path.join(db, "log-00000001.kdl"), 1):
        for vid, body in values:
            assert sha(body) == vid  # version_id = SHA-256 of canonical bytes
            stored[vid] = body
        for w in ws:
            assert w["node"] == node and w["ws"] == b"default"
            assert w["wid"] == write_id(w)
            root = sha(b"korudelta.root.storage.v1\x00" + root + w["wid"])
            writes.append(w)
        assert root == root_after
    assert len(writes) == 5

    # Chains: each write's parent is the key's previous write.
    last = {}
    for w in writes:
        k = (w["ns"], w["key"])
        assert w["parents"] == ([last[k]] if k in last else [])
        last[k] = w["wid"]
        if not w["deleted"]:
            assert w["vid"] in stored
    # Equal content stored once: the first and last values of docs/a are equal.
    assert writes[0]["vid"] == writes[4]["vid"]
    assert len(stored) == 3

    # What kdelta reports agrees with the bytes.
    log = kd("log", "docs/a", "--json", "--reverse").json()
    mine = [w for w in writes if w["key"] == b"a"]
    assert [r["write_id"] for r in log] == [w["wid"].hex() for w in mine]
    assert [ts_to_ns(r["timestamp"]) for r in log] == [w["ts"] for w in mine]
    assert stored[mine[0]["vid"]] == '{"x":1,"y":[1,2.5,"é"]}'.encode()
    st = kd("status", "--json").json()
    assert st["roots"]["storage"] == root.hex()
    field = sha(b"korudelta.root.field.v1\x00" + b"storage\x00" + root)
    assert st["roots"]["field"] == field.hex()
