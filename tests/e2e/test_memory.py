"""The memory budget (--max-memory): the option on the command line, in
`kdelta serve` and its config file; its bad values; what status, GET
/api/v1/status and /metrics report per tier (docs/CLI.md, Memory budget).
The load of many times the budget with resident memory checked is the C
test tests/unit/test_memory.c."""
import json

from test_http_core import metrics_when

MIB = 1024 * 1024


def test_budget_in_status(kd_raw, db):
    r = kd_raw("--db", db, "--max-memory", "64M", "set", "m/a", '{"x":1}')
    assert r.rc == 0, r.err
    r = kd_raw("--db", db, "--max-memory", "64M", "status", "--json")
    assert r.rc == 0, r.err
    st = json.loads(r.out)
    assert st["memory_budget"] == 64 * MIB
    assert st["log_window_bytes"] == 2 * MIB
    # cache = clamp(budget - index - vectors - 2W, budget/16, budget/2)
    want = min(32 * MIB, max(4 * MIB, 64 * MIB - st["index_bytes"] - st["vector_index_bytes"] - 4 * MIB))
    assert st["cache_capacity"] == want
    assert st["memory_used"] == st["cache_bytes"] + st["index_bytes"] + st["vector_index_bytes"]
    assert 0 <= st["cache_hit_rate"] <= 1
    r = kd_raw("--db", db, "--max-memory=1G", "status")
    assert r.rc == 0, r.err
    assert "used of a 1.0 GiB budget" in r.out
    assert "  hot cache  " in r.out and "  index      " in r.out and "  vectors    " in r.out
    # sizes: suffixes, MiB/MB spellings, plain bytes
    for size, want in [("8M", 8 * MIB), ("8MiB", 8 * MIB), ("512MB", 512 * MIB), ("2g", 2048 * MIB),
                       (str(16 * MIB), 16 * MIB), ("1T", 1024 * 1024 * MIB)]:
        r = kd_raw("--db", db, "--max-memory", size, "status", "--json")
        assert r.rc == 0, (size, r.err)
        assert json.loads(r.out)["memory_budget"] == want, size


def test_bad_budgets_change_nothing(kd_raw, db, tmp_path):
    fresh = str(tmp_path / "never")
    for size in ["4M", "0", "", "12X", "-64M", "64M5", "2000T", "M"]:
        r = kd_raw("--db", fresh, "--max-memory", size, "set", "m/a", "1")
        assert r.rc == 2, (size, r.out, r.err)
        assert "--max-memory" in r.err and "8M" in r.err
    import os
    assert not os.path.exists(fresh)
    r = kd_raw("--url", "http://127.0.0.1:9", "--max-memory", "64M", "status")
    assert r.rc == 2 and "--max-memory applies to a local database" in r.err


def test_shell_refuses_budget_inside(kd_raw, db):
    r = kd_raw("--db", db, "shell", input="--max-memory 64M status\n")
    assert r.rc == 2
    assert "--max-memory: cannot change inside the shell" in r.err


def test_server_budget_status_and_metrics(start_server, kd_raw, tmp_path):
    s = start_server(global_args=("--max-memory", "96M"))
    st, doc = s.json("GET", "/api/v1/status")
    assert st == 200
    assert doc["memory_budget"] == 96 * MIB and doc["cache_capacity"] <= 48 * MIB
    for i in range(20):
        st, _ = s.json("PUT", f"/api/v1/namespaces/m/keys/k{i}", {"i": i})
        assert st in (200, 201)
    for i in range(20):
        st, _ = s.json("GET", f"/api/v1/namespaces/m/keys/k{i}")
        assert st == 200
    types, m = metrics_when(s, lambda m: m.get(("kd_memory_budget_bytes", ()), 0) > 0)
    for name in ("kd_memory_budget_bytes", "kd_memory_used_bytes", "kd_memory_bytes", "kd_cache_capacity_bytes"):
        assert types.get(name) == "gauge", name
    assert m[("kd_memory_budget_bytes", ())] == 96 * MIB
    tiers = {dict(k[1])["tier"]: v for k, v in m.items() if k[0] == "kd_memory_bytes"}
    assert set(tiers) == {"cache", "index", "index_mapped", "vectors"}
    assert tiers["index"] > 0 and tiers["cache"] > 0  # the values read are hot now
    assert m[("kd_memory_used_bytes", ())] == tiers["cache"] + tiers["index"] + tiers["vectors"]
    assert tiers["cache"] <= m[("kd_cache_capacity_bytes", ())] <= 48 * MIB
    # the remote status shows the server's budget
    r = kd_raw("--url", s.url, "status", "--json")
    assert r.rc == 0, r.err
    assert json.loads(r.out)["memory_budget"] == 96 * MIB
    r = kd_raw("--url", s.url, "status")
    assert "used of a 96.0 MiB budget" in r.out
    assert s.stop() == 0

    # the config file's max_memory; a bad one is a usage error
    cfg = tmp_path / "kd.conf"
    cfg.write_text("max_memory = 80M\n")
    s = start_server(args=("--config", str(cfg)))
    st, doc = s.json("GET", "/api/v1/status")
    assert doc["memory_budget"] == 80 * MIB
    assert s.stop() == 0
    cfg.write_text("max_memory = 1M\n")
    r = kd_raw("--db", str(tmp_path / "other"), "serve", "--port", "0", "--config", str(cfg))
    assert r.rc == 2 and "max_memory" in r.err and "8M" in r.err
