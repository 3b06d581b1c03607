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
