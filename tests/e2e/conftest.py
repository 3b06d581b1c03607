"""Fixtures for the kdelta end-to-end tests.

Every test gets a fresh database directory and a `kd(*args, input=None)`
runner that calls the real binary with `--db <that directory>` and returns
(returncode, stdout, stderr) (also as .rc/.out/.err, and .json()).

The command-line suite (the modules in CLI_SUITE) runs twice: once with
`--db` ("local"), once as a client of a server (`kdelta serve` on the same
directory, started at the first command, and `kdelta --url URL …`:
"remote"), expecting the same output. A test that can only hold locally
(it opens the directory itself, or uses --sync) is marked
`@pytest.mark.local_only("why")`. The binary
is $KDELTA_BIN, else build/kdelta in the repository; the build directory
($KD_BUILD_DIR, else build/) is where the tests that hold the database lock
from another process find the shared library. Helpers are in helpers.py.
"""
import os

import pytest

from helpers import KDELTA, run_kdelta
from server import Server


# Modules whose tests run in both modes (see above).
CLI_SUITE = {
    "test_cli", "test_values", "test_names", "test_history", "test_diff", "test_query", "test_views",
    "test_indexes", "test_import_export", "test_watch", "test_shell", "test_vector_cli", "test_workspaces",
    "test_retention", "test_consolidate", "test_workspace_recreate",
}


def pytest_configure(config):
    config.addinivalue_line("markers", "local_only(why): the test holds only for a local database (no --url run)")
    if not os.access(KDELTA, os.X_OK):
        raise pytest.UsageError(f"kdelta binary not found at {KDELTA}: run `make` or set KDELTA_BIN")


@pytest.fixture
def env(tmp_path):
    """Environment for kdelta: HOME in the temp dir, TZ=UTC, no KORU_DB, no KORU_LOG."""
    e = dict(os.environ)
    e.pop("KORU_DB", None)
    e.pop("KORU_LOG", None)
    e["HOME"] = str(tmp_path / "home")
    e["TZ"] = "UTC"  # human output shows local time; tests that want another zone set TZ themselves
    os.makedirs(e["HOME"], exist_ok=True)
    return e


@pytest.fixture
def db(tmp_path):
    """A fresh database directory (created by kdelta on first use)."""
    return str(tmp_path / "db")


def pytest_generate_tests(metafunc):
    if "kd_mode" in metafunc.fixturenames:
        module = metafunc.module.__name__.rsplit(".", 1)[-1]
        metafunc.parametrize("kd_mode", ["local", "remote"] if module in CLI_SUITE else ["local"])


@pytest.fixture
def kd(db, env, kd_mode, request):
    """kd(*args, input=None) -> Result(rc, out, err), on the test's database:
    `kdelta --db DB …`, or in remote mode `kdelta --url URL …` against a
    server on DB (kd.server, started by the first command)."""
    marker = request.node.get_closest_marker("local_only")
    if kd_mode == "remote" and marker:
        pytest.skip("local mode only: " + (marker.args[0] if marker.args else ""))

    def target():
        """The options that name the database: ["--db", DB] or ["--url", URL]."""
        if kd_mode == "local":
            return ["--db", db]
        if run.server is None:
            run.server = Server(db, env)
        return ["--url", run.server.url]

    def run(*args, input=None, extra_env=None, timeout=120):
        e = env
        if extra_env:
            e = dict(env)
            e.update(extra_env)
        return run_kdelta(target() + list(args), input=input, env=e, timeout=timeout)

    def untouched():
        """Assert that the last command failed before it reached the
        database: locally none was created; remotely the server answered no
        request (its /metrics count every request but their own)."""
        if kd_mode == "local":
            assert not os.path.exists(db), "the command must fail before it opens the database"
            return
        if run.server is None:
            return
        status, _, body = run.server.request("GET", "/metrics")
        assert status == 200
        served = [line for line in body.decode().splitlines()
                  if line.startswith("kd_http_requests_total{") and 'route="metrics"' not in line]
        assert served == [], "the command must fail before it sends a request"

    def reopen(*args, **kw):
        """Run a command on the database opened anew: locally a process of
        its own on the directory, remotely after the server was restarted."""
        if kd_mode == "remote" and run.server is not None:
            assert run.server.stop() == 0
            run.server.start()
        return run(*args, **kw)

    run.mode = kd_mode
    run.server = None
    run.target = target
    run.untouched = untouched
    run.reopen = reopen
    yield run
    if run.server is not None and run.server.running():
        rc = run.server.stop()
        assert rc == 0, f"kdelta serve exited {rc} on SIGTERM: {run.server.stderr()}"


@pytest.fixture
def kd_raw(env):
    """Like kd, but without --db: the caller chooses everything."""

    def run(*args, input=None, extra_env=None, timeout=120):
        e = env
        if extra_env:
            e = dict(env)
            e.update(extra_env)
        return run_kdelta(list(args), input=input, env=e, timeout=timeout)

    return run


@pytest.fixture
def start_server(db, env):
    """start_server(args=(), db_dir=None, global_args=(), env_extra=None) -> a running Server
    (tests/e2e/server.py) on the test's database (or `db`); every server
    still running at the end is stopped with SIGTERM and must exit 0."""
    started = []

    def start(args=(), db_dir=None, global_args=(), env_extra=None):
        e = env
        if env_extra:
            e = dict(env)
            e.update(env_extra)
        s = Server(db_dir or db, e, args=args, global_args=global_args)
        started.append(s)
        return s

    yield start
    for s in started:
        if s.running():
            rc = s.stop()
            assert rc == 0, f"kdelta serve exited {rc} on SIGTERM: {s.stderr()}"


@pytest.fixture
def server(start_server):
    """A running `kdelta serve --port 0` on the test's database."""
    return start_server()
