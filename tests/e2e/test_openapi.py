"""docs/openapi.yaml: a valid OpenAPI document that describes exactly the
routes the server serves.

- The document is validated with openapi-spec-validator. Debian has no
  package of it, so it runs in a subprocess under the first interpreter that
  has it (the pyenv `python3` on PATH on our machines); the test is skipped,
  saying so, when none has it.
- The routes served are read from the route tables in server/*.c (the
  `{"METHOD", "pattern", handler, "name"}` entries of ks_route arrays) and
  compared, both ways, with the document's paths and methods: the pattern
  "api/v1/namespaces/{ns}/keys/{key}" is the path
  "/api/v1/namespaces/{ns}/keys/{key}".
"""
import glob
import json
import os
import re
import shutil
import subprocess

import pytest

from helpers import REPO

SPEC = os.path.join(REPO, "docs", "openapi.yaml")
SERVER_DIR = os.path.join(REPO, "server")
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

# Candidates for an interpreter that has openapi-spec-validator.
_CANDIDATES = [
    shutil.which("python3"),
    "/usr/local/bin/python3",
    os.path.expanduser("~/.pyenv/shims/python3"),
    os.path.join(os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv")), "shims", "python3"),
    "/root/.pyenv/shims/python3",
    "/usr/bin/python3",
]
_CANDIDATES += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/*/bin/python3")), reverse=True)
_CANDIDATES += sorted(glob.glob("/root/.pyenv/versions/*/bin/python3"), reverse=True)


def _python_with(module):
    seen = set()
    for p in _CANDIDATES:
        if not p or p in seen or not os.access(p, os.X_OK):
            continue
        seen.add(p)
        try:
            r = subprocess.run([p, "-c", f"import {module}"], capture_output=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0:
            return p
    return None


def _load_spec():
    """The document as a dict: PyYAML in this interpreter (Debian
    python3-yaml), else in any interpreter that has it (printed as JSON)."""
    try:
        import yaml  # noqa: PLC0415

        with open(SPEC, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except ImportError:
        pass
    py = _python_with("yaml")
    if not py:
        pytest.skip("no Python interpreter with PyYAML (install Debian python3-yaml)")
    code = "import json,sys,yaml; json.dump(yaml.safe_load(open(sys.argv[1], encoding='utf-8')), sys.stdout)"
    r = subprocess.run([py, "-c", code, SPEC], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def served_routes():
    """{(METHOD, "/path")} from the route tables in server/*.c."""
    entry = re.compile(r'\{\s*"(GET|HEAD|POST|PUT|DELETE|PATCH|OPTIONS)"\s*,\s*"([^"]*)"\s*,\s*[A-Za-z_]\w*\s*[,}]')
    routes = set()
    for path in sorted(glob.glob(os.path.join(SERVER_DIR, "*.c"))):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)  # comments may show examples
        for m in entry.finditer(text):
            routes.add((m.group(1), "/" + m.group(2)))
    return routes


def documented_routes(spec):
    routes = set()
    for path, item in spec["paths"].items():
        for method in item:
            if method in METHODS:
                routes.add((method.upper(), path))
    return routes


def test_spec_is_valid_openapi():
    py = _python_with("openapi_spec_validator")
    if not py:
        pytest.skip(
            "openapi-spec-validator is not installed in any Python interpreter found "
            f"(tried {', '.join(p for p in dict.fromkeys(_CANDIDATES) if p)}); Debian has no package of it"
        )
    code = (
        "import sys\n"
        "from openapi_spec_validator import validate\n"
        "from openapi_spec_validator.readers import read_from_filename\n"
        "spec, _ = read_from_filename(sys.argv[1])\n"
        "validate(spec)\n"
        "print('valid')\n"
    )
    r = subprocess.run([py, "-c", code, SPEC], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "valid" in r.stdout, f"{py}: {r.stdout}{r.stderr}"


def test_every_route_is_documented_and_every_documented_route_is_served():
    served = served_routes()
    assert served, "no route tables found in server/*.c"
    spec = _load_spec()
    documented = documented_routes(spec)
    missing = sorted(served - documented)
    extra = sorted(documented - served)
    assert not missing, f"served but not in docs/openapi.yaml: {missing}"
    assert not extra, f"in docs/openapi.yaml but not served: {extra}"


def test_spec_shape():
    """Every operation has an operationId (unique), a 2xx response and an
    error response described with the Error schema; path parameters are
    declared; every $ref resolves."""
    spec = _load_spec()
    assert spec["openapi"].startswith(("3.0", "3.1"))
    ids = []
    for path, item in spec["paths"].items():
        shared = item.get("parameters", [])
        for method, op in item.items():
            if method not in METHODS:
                continue
            where = f"{method.upper()} {path}"
            assert op.get("operationId"), where
            ids.append(op["operationId"])
            codes = set(op["responses"])
            assert any(c.startswith("2") for c in codes), where
            assert "405" in codes, f"{where}: wrong method (405) not described"
            names = {p.get("name") for p in shared + op.get("parameters", []) if "name" in p}
            names |= {_resolve(spec, p["$ref"])["name"] for p in shared + op.get("parameters", []) if "$ref" in p}
            for var in re.findall(r"\{([^}]+)\}", path):
                assert var in names, f"{where}: path parameter {var} not declared"
    assert len(ids) == len(set(ids)), "operationId used twice"

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref":
                    assert _resolve(spec, v) is not None, v
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(spec)
    # the statuses the server produces for errors are all described somewhere
    statuses = {c for item in spec["paths"].values() for m, op in item.items() if m in METHODS for c in op["responses"]}
    for code in ("400", "404", "405", "409", "412", "413", "415"):
        assert code in statuses, code
    # the watch stream is text/event-stream
    watch = spec["paths"]["/api/v1/watch"]["get"]["responses"]["200"]["content"]
    assert "text/event-stream" in watch


def _resolve(spec, ref):
    assert ref.startswith("#/"), ref
    node = spec
    for part in ref[2:].split("/"):
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return None
    return node


# ---------------------------------------------------------------------------
# What the server answers is what the document says
# ---------------------------------------------------------------------------

_VALIDATE = r"""
import json, sys, yaml
from jsonschema import Draft202012Validator
spec = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
samples = json.load(open(sys.argv[2], encoding="utf-8"))

def resolve(node):
    while isinstance(node, dict) and "$ref" in node and len(node) == 1 and node["$ref"].startswith("#/components/responses/"):
        cur = spec
        for part in node["$ref"][2:].split("/"):
            cur = cur[part]
        node = cur
    return node

problems = []
for s in samples:
    resp = resolve(spec["paths"][s["path"]][s["method"].lower()]["responses"][s["status"]])
    schema = resp["content"][s["ctype"]]["schema"]
    root = {k: v for k, v in spec.items()}
    root.update(schema)  # refs like #/components/schemas/X resolve against the document
    for e in Draft202012Validator(root).iter_errors(s["body"]):
        problems.append(f'{s["method"]} {s["url"]} -> {s["status"]}: {e.message} at {list(e.absolute_path)}')
print(json.dumps(problems))
"""


def _template_of(path, spec):
    """The document's path template that a concrete path matches."""
    segs = path.split("?")[0].split("/")
    for tpl in spec["paths"]:
        t = tpl.split("/")
        if len(t) == len(segs) and all(a.startswith("{") or a == b for a, b in zip(t, segs)):
            return tpl
    return None


def test_responses_match_the_spec(start_server, tmp_path):
    """Every route answered with its successes and errors: the status is one
    the document lists for that operation, the Content-Type one it lists for
    that status, and JSON bodies validate against its schemas."""
    from server import quote_query, quote_seg  # noqa: PLC0415

    spec = _load_spec()
    srv = start_server(["--max-body", "4K"])
    k = "/api/v1/namespaces/users/keys/"
    big = {"x": "y" * 5000}
    calls = [
        ("GET", "/healthz", None, None),
        ("GET", "/metrics", None, None),
        ("PUT", k + "alice", {"name": "Alice", "age": 31}, None),
        ("PUT", k + "alice", {"name": "Alice", "age": 32}, None),
        ("PUT", k + quote_seg("a/b?c"), [1, "two", None], None),
        ("PUT", k + "bob", b"{nope", None),
        ("PUT", k + "bob", b"{}", {"Content-Type": "text/plain"}),
        ("PUT", k + "bob", {"a": 1}, {"If-Match": '"' + "0" * 64 + '"'}),
        ("PUT", k + "bob", big, None),
        ("PUT", "/api/v1/namespaces/_kd.x/keys/a", 1, None),
        ("GET", "/api/v1/status", None, None),
        ("GET", "/api/v1/namespaces", None, None),
        ("GET", "/api/v1/namespaces/users/keys", None, None),
        ("GET", "/api/v1/namespaces/users/keys?limit=1", None, None),
        ("GET", "/api/v1/namespaces/users/keys?limit=0", None, None),
        ("GET", k + "alice", None, None),
        ("GET", k + "alice?at=%401", None, None),
        ("GET", k + "nobody", None, None),
        ("GET", k + "alice/history", None, None),
        ("GET", k + "nobody/history", None, None),
        ("GET", k + "alice/diff", None, None),
        ("GET", k + "alice/diff?from=zz", None, None),
        ("GET", k + "nobody/diff", None, None),
        ("POST", "/api/v1/batch", {"writes": [{"namespace": "users", "key": "carol", "value": {"age": 40}},
                                              {"namespace": "users", "key": "dan", "value": {"age": 5}}]}, None),
        ("POST", "/api/v1/batch", {"writes": [{"namespace": "users", "key": "x"}]}, None),
        ("POST", "/api/v1/batch", {"writes": [{"namespace": "users", "key": "carol", "value": 1,
                                               "if_none_match": "*"}]}, None),
        ("DELETE", k + "dan", None, None),
        ("DELETE", k + "dan", None, None),
        ("POST", "/api/v1/namespaces/users/query", {"filter": "age > 30", "sort": ["age:desc"]}, None),
        ("POST", "/api/v1/namespaces/users/query", {"group_by": ["age"]}, None),
        ("POST", "/api/v1/namespaces/users/query", {"aggregate": ["count", "avg:age"]}, None),
        ("POST", "/api/v1/namespaces/users/query", {"filter": "age >"}, None),
        ("POST", "/api/v1/namespaces/users/query", big, None),
        ("POST", "/api/v1/namespaces/users/query", b"{}", {"Content-Type": "text/plain"}),
        ("GET", "/api/v1/namespaces/users/query" + quote_query({"filter": "age > 1", "select": "name"}), None, None),
        ("GET", "/api/v1/namespaces/users/query?limit=x", None, None),
        ("POST", k + "alice/history/query", {"filter": "age > 31"}, None),
        ("POST", k + "nobody/history/query", {}, None),
        ("POST", k + "alice/history/query", {"at": "@1"}, None),
        ("POST", "/api/v1/views", {"name": "v", "source": "users", "query": {"filter": "age > 1"}}, None),
        ("POST", "/api/v1/views", {"name": "v", "source": "users"}, None),
        ("POST", "/api/v1/views", {"name": "w"}, None),
        ("GET", "/api/v1/views", None, None),
        ("GET", "/api/v1/views/v", None, None),
        ("GET", "/api/v1/views/nope", None, None),
        ("GET", "/api/v1/views/v/rows?limit=1", None, None),
        ("GET", "/api/v1/views/nope/rows", None, None),
        ("POST", "/api/v1/views/v/refresh", None, None),
        ("POST", "/api/v1/views/nope/refresh", None, None),
        ("DELETE", "/api/v1/views/v", None, None),
        ("DELETE", "/api/v1/views/v", None, None),
        ("POST", "/api/v1/indexes", {"namespace": "users", "field": "age"}, None),
        ("POST", "/api/v1/indexes", {"namespace": "users", "field": "age"}, None),
        ("POST", "/api/v1/indexes", {"namespace": "users"}, None),
        ("GET", "/api/v1/indexes", None, None),
        ("GET", "/api/v1/indexes?ns=users", None, None),
        ("DELETE", "/api/v1/indexes/users/age", None, None),
        ("DELETE", "/api/v1/indexes/users/age", None, None),
        ("GET", "/api/v1/watch?types=nope", None, None),
    ]
    # a wrong method on every path
    for tpl in spec["paths"]:
        concrete = tpl.replace("{ns}", "users").replace("{key}", "alice").replace("{name}", "v").replace(
            "{field}", "age")
        calls.append(("PATCH", concrete, None, None))

    samples, problems = [], []
    for method, url, body, headers in calls:
        st, hdrs, data = srv.request(method, url, body, headers)
        tpl = _template_of(url, spec)
        assert tpl, url
        item = spec["paths"][tpl]
        op = item.get(method.lower())
        if op is None:  # the wrong method: 405 must be described on the path
            assert st == 405, (method, url, st)
            op = next(o for m, o in item.items() if m in METHODS and "405" in o["responses"])
            method = next(m for m, o in item.items() if o is op).upper()
        if str(st) not in op["responses"]:
            problems.append(f"{method} {url} answered {st}, not in the document ({sorted(op['responses'])})")
            continue
        resp = op["responses"][str(st)]
        if "$ref" in resp:
            resp = _resolve(spec, resp["$ref"])
        ctype = (hdrs.get("Content-Type") or "").split(";")[0].strip()
        if "content" in resp and ctype not in resp["content"]:
            problems.append(f"{method} {url} -> {st}: Content-Type {ctype!r} not in {sorted(resp['content'])}")
            continue
        if ctype == "application/json":
            samples.append({"method": method, "url": url, "path": tpl, "status": str(st), "ctype": ctype,
                            "body": json.loads(data)})
    # the watch stream itself
    conn, resp = srv.open_stream("/api/v1/watch?ns=users")
    try:
        assert resp.status == 200
        assert resp.getheader("Content-Type").split(";")[0] in spec["paths"]["/api/v1/watch"]["get"]["responses"][
            "200"]["content"]
    finally:
        conn.close()
    assert not problems, "\n".join(problems)

    py = _python_with("jsonschema")
    if not py:
        pytest.skip("jsonschema is not installed in any Python interpreter found: bodies not validated")
    sfile = tmp_path / "samples.json"
    sfile.write_text(json.dumps(samples), encoding="utf-8")
    r = subprocess.run([py, "-c", _VALIDATE, SPEC, str(sfile)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    bad = json.loads(r.stdout)
    assert not bad, "\n".join(bad)
