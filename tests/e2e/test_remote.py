"""`kdelta --url`: what is particular to talking to a server. (The whole
command-line suite also runs through a server: see conftest.py.)"""
import json
import socket

import pytest

from helpers import one_error_line


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_server_is_a_clear_error(kd_raw):
    url = f"http://127.0.0.1:{free_port()}"
    line = one_error_line(kd_raw("--url", url, "get", "a/b"), 1)
    assert f"cannot reach the server at {url}" in line, line


@pytest.mark.parametrize("url", ["127.0.0.1:7878", "ftp://host/", "http://", "http:///x", "http://h:1/?q"])
def test_bad_url_is_a_usage_error(kd_raw, url):
    line = one_error_line(kd_raw("--url", url, "status"), 2)
    assert "--url" in line and "http://HOST:PORT" in line, line


@pytest.mark.parametrize("opt", [["--db", "x"], ["--sync", "none"], ["--busy-timeout", "5"]])
def test_url_excludes_local_options(kd_raw, opt):
    line = one_error_line(kd_raw("--url", "http://127.0.0.1:1", *opt, "status"), 2)
    assert opt[0] in line and "applies to a local database" in line, line


@pytest.mark.parametrize("cmd", [["repair"], ["serve"]])
def test_directory_commands_refuse_url(server, kd_raw, cmd):
    line = one_error_line(kd_raw("--url", server.url, *cmd), 2)
    assert "database directory itself" in line, line


def test_bad_koru_log_refused_as_locally(server, kd_raw):
    line = one_error_line(kd_raw("--url", server.url, "status", extra_env={"KORU_LOG": "loud"}), 2)
    assert "KORU_LOG" in line


def test_server_errors_keep_their_exit_status(server, kd_raw):
    u = ["--url", server.url]
    assert kd_raw(*u, "set", "a/b", '{"x":1}').rc == 0
    one_error_line(kd_raw(*u, "get", "a/nope"), 3)
    line = one_error_line(kd_raw(*u, "set", "a/b", "{bad"), 4)
    assert "invalid JSON" in line, line
    line = one_error_line(kd_raw(*u, "set", "_kd.x/b", "1"), 4)
    assert "reserved" in line, line


def test_body_over_the_servers_cap(start_server, kd_raw):
    srv = start_server(args=["--max-body", "1K"])
    line = one_error_line(kd_raw("--url", srv.url, "set", "a/b", '"' + "x" * 5000 + '"'), 4)
    assert "a/b" in line, line
    assert kd_raw("--url", srv.url, "get", "a/b").rc == 3  # nothing written


def test_set_sends_the_canonical_value(start_server, kd_raw, tmp_path):
    """A pretty-printed value whose whitespace alone passes the server's
    body cap is stored: what set sends is the value's canonical form."""
    srv = start_server(args=["--max-body", "1K"])
    f = tmp_path / "v.json"
    f.write_text("{\n" + " " * 3000 + '"a" :  [ 1 , 2 ]\n}\n')
    r = kd_raw("--url", srv.url, "--json", "set", "a/pretty", "@" + str(f))
    assert r.rc == 0, r.err
    assert json.loads(r.out)["value"] == {"a": [1, 2]}
    assert kd_raw("--url", srv.url, "get", "a/pretty").out.strip() == '{"a":[1,2]}'


def test_server_gone_between_commands(start_server, kd_raw):
    srv = start_server()
    assert kd_raw("--url", srv.url, "set", "a/b", "1").rc == 0
    assert srv.stop() == 0
    line = one_error_line(kd_raw("--url", srv.url, "get", "a/b"), 1)
    assert "cannot reach the server" in line, line


def test_keys_and_names_survive_the_trip(server, kd_raw):
    """Names with every character that URLs treat specially."""
    u = ["--url", server.url]
    names = ["a/b", "q?x=1", "h#t", "p%20c", "sp ace", "ünï", "history", "keys", "+plus", ".", "..", "../x", "./."]
    for i, k in enumerate(names):
        assert kd_raw(*u, "set", f"ns/{k}", str(i)).rc == 0, k
    for i, k in enumerate(names):
        r = kd_raw(*u, "get", f"ns/{k}")
        assert r.rc == 0 and r.out == f"{i}\n", (k, r)
    r = kd_raw(*u, "--json", "list", "ns")
    assert sorted(r.json()) == sorted(names)
    for ns in [".", ".."]:  # dot segments as namespaces too
        assert kd_raw(*u, "set", f"{ns}/k", "7").rc == 0, ns
        assert kd_raw(*u, "get", f"{ns}/k").out == "7\n", ns


def test_listing_an_empty_namespace(server, kd_raw):
    """An empty page from the server (a NULL list on the client's side)."""
    u = ["--url", server.url]
    assert kd_raw(*u, "set", "a/b", "1").rc == 0
    assert kd_raw(*u, "delete", "a/b").rc == 0
    r = kd_raw(*u, "list", "a")
    assert r.rc == 0 and r.out == ""
    r = kd_raw(*u, "list", "nothing-here")
    assert r.rc == 0 and r.out == ""
