"""Fixtures for the kdelta end-to-end tests.

Every test gets a fresh database directory and a `kd(*args, input=None)`
runner that calls the real binary with `--db <that directory>` and returns
(returncode, stdout, stderr) (also as .rc/.out/.err, and .json()). The binary
is $KDELTA_BIN, else build/kdelta in the repository; the build directory
($KD_BUILD_DIR, else build/) is where the tests that hold the database lock
from another process find the shared library. Helpers are in helpers.py.
"""
import os

import pytest

from helpers import KDELTA, run_kdelta
from server import Server


def pytest_configure(config):
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


@pytest.fixture
def kd(db, env):
    """kd(*args, input=None) -> Result(rc, out, err), on the test's database."""

    def run(*args, input=None, extra_env=None, timeout=120):
        e = env
        if extra_env:
            e = dict(env)
            e.update(extra_env)
        return run_kdelta(["--db", db] + list(args), input=input, env=e, timeout=timeout)

    return run


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
