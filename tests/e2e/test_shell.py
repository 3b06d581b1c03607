"""`kdelta shell` through a pipe and through a pseudo-terminal, and human
output for people: colours only on a terminal, local times with --json in UTC,
busy errors that say what to do. Every test runs in both modes (a shell on
the database, and `kdelta --url URL shell` on a server), unless marked."""
import json
import os
import pty
import re
import select
import signal
import subprocess
import termios
import time

import pytest

from helpers import KDELTA, one_error_line, ts_to_ns
from server import Server

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[=>]|\r")


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def where(kd, db, env):
    """The global options naming the test's database in kd's mode: --db DB,
    or --url of kd's server (started now if it is not yet)."""
    if kd.mode == "local":
        return ["--db", db]
    if kd.server is None:
        kd.server = Server(db, env)
    return ["--url", kd.server.url]


@pytest.fixture
def shell_pipe(kd):
    """shell_pipe(script, *global_opts) -> (rc, out, err) of `kdelta … shell`
    reading `script` from a pipe, in the test's mode."""

    def run(script, *opts):
        r = kd(*opts, "shell", input=script, timeout=60)
        return r.rc, r.out, r.err

    return run


class Pty:
    """kdelta running on a pseudo-terminal; read() returns what it printed,
    with terminal control sequences removed."""

    def __init__(self, args, env):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child
            try:
                os.execve(KDELTA, [KDELTA] + args, env)
            finally:
                os._exit(127)
        self.raw = b""
        Pty.live.append(self)

    live = []

    def kill(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            os.close(self.fd)
        except OSError:
            pass

    def send(self, data):
        os.write(self.fd, data.encode() if isinstance(data, str) else data)

    def expect(self, pattern, timeout=10):
        """Read until `pattern` (a regex on the cleaned text) matches what
        was printed since the last expect; return that text."""
        start = len(self.raw)
        end = time.monotonic() + timeout
        while True:
            text = ANSI.sub("", self.raw[start:].decode("utf-8", "replace"))
            if re.search(pattern, text):
                if pattern.endswith("> $"):
                    self.wait_for_line_editor()
                return text
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {pattern!r}; got {text!r}")
            r, _, _ = select.select([self.fd], [], [], min(left, 0.2))
            if r:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    chunk = b""
                if not chunk:
                    text = ANSI.sub("", self.raw[start:].decode("utf-8", "replace"))
                    if re.search(pattern, text):
                        return text
                    raise AssertionError(f"kdelta ended while waiting for {pattern!r}; got {text!r}")
                self.raw += chunk

    def wait_for_line_editor(self, timeout=5):
        """libedit prints the prompt before it switches the terminal to raw
        mode; keys sent in between would be taken by the kernel's line
        discipline (a person cannot type that fast, a test can)."""
        end = time.monotonic() + timeout
        while termios.tcgetattr(self.fd)[3] & termios.ICANON:
            assert time.monotonic() < end, "the terminal never left canonical mode"
            time.sleep(0.01)

    def read_all(self, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r, _, _ = select.select([self.fd], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                self.raw += chunk
        return self.raw.decode("utf-8", "replace")

    def wait(self, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                os.close(self.fd)
                Pty.live.remove(self)
                return os.waitstatus_to_exitcode(status)
            self.read_all(0.1)
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        os.close(self.fd)
        raise AssertionError("kdelta did not exit")


@pytest.fixture(autouse=True)
def no_stray_processes():
    yield
    while Pty.live:
        Pty.live.pop().kill()


@pytest.fixture
def tty_env(env, tmp_path):
    e = dict(env)
    e["TERM"] = "xterm"
    e["KORU_HISTORY"] = str(tmp_path / "history")
    e.pop("NO_COLOR", None)
    return e


@pytest.fixture
def start_shell(kd, db, env):
    """start_shell(env) -> `kdelta shell` on a terminal, at its first prompt."""

    def start(tty_env):
        sh = Pty(where(kd, db, env) + ["shell"], tty_env)
        sh.expect(r"kdelta> $")
        return sh

    return start


# ---------------------------------------------------------------------------
# Through a pipe: same output as the one-shot commands
# ---------------------------------------------------------------------------


def test_pipe_example(shell_pipe):
    rc, out, err = shell_pipe("set a/b 1\nget a/b\n")
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"a/b  version [0-9a-f]{12}  write [0-9a-f]{12}  at \S+", lines[0])
    assert lines[1] == "1"


def test_pipe_output_equals_one_shot(kd, shell_pipe):
    script = [
        "set users/alice '{\"name\": \"Alice\", \"tags\": [\"a b\", \"c\"]}'",
        "set users/bob 2",
        "set users/bob 3",
        "delete users/bob",
        "set 'odd ns/key with spaces' '\"x\"'",
    ]
    rc, out, err = shell_pipe("\n".join(script) + "\n")
    assert rc == 0, err
    assert len(out.splitlines()) == 5
    reads = [
        ["get", "users/alice"], ["get", "users/alice", "--json"], ["get", "users/bob"], ["get", "users/nobody"],
        ["log", "users/bob"], ["log", "users/bob", "--json", "--reverse"], ["list"], ["list", "--json"],
        ["list", "users"], ["get", "odd ns/key with spaces"], ["verify"], ["help", "get"], ["get", "nokey"],
        ["frobnicate"], ["log", "users/alice", "--limit", "x"],
    ]
    quote = lambda a: "'" + a.replace("'", "'\\''") + "'"
    script = "".join(" ".join(quote(a) for a in args) + "\n" for args in reads)
    rc, out, err = shell_pipe(script)
    want_out = want_err = ""
    last_failure = 0
    for args in reads:
        r = kd(*args)
        want_out += r.out
        want_err += r.err
        if r.rc:
            last_failure = r.rc
    assert out == want_out
    assert err == want_err
    assert rc == last_failure == 2


def test_pipe_exit_status_is_last_failure(shell_pipe):
    assert shell_pipe("set a/b 1\nget a/b\n")[0] == 0
    rc, out, err = shell_pipe("get a/missing\nset a/c '{bad'\nget a/b\n")
    assert rc == 4 and out == "1\n"  # the invalid JSON came last among the failures
    assert len(err.splitlines()) == 2 and all(l.startswith("kdelta: ") for l in err.splitlines())
    rc, _, _ = shell_pipe("set a/c '{bad'\nget a/missing\nget a/b\n")
    assert rc == 3
    rc, out, _ = shell_pipe("get a/missing\nexit\nget a/b\n")
    assert rc == 3 and out == ""  # exit stops reading


def test_pipe_quoting_comments_continuation(kd, shell_pipe):
    script = r"""# a comment, then a blank line

set q/single '{"a": "x y", "b": [1, 2]}'
set q/double "{\"a\": \"back\\\\slash \\\" quote\"}"
set q/escaped \"unquoted\ words\"
set q/multi '{"a":
  1,
  "b": 2}'
set q/cont \
  '[3]'
set q/empty ''
"""
    rc, out, err = shell_pipe(script)
    assert err.startswith("kdelta: q/empty: invalid JSON") and rc == 4  # '' is an empty value
    assert json.loads(kd("get", "q/single").out) == {"a": "x y", "b": [1, 2]}
    assert json.loads(kd("get", "q/double").out) == {"a": 'back\\slash " quote'}
    assert kd("get", "q/escaped").out == '"unquoted words"\n'
    assert kd("get", "q/multi").out == '{"a":1,"b":2}\n'
    assert kd("get", "q/cont").out == "[3]\n"


def test_pipe_unfinished_quote(shell_pipe):
    rc, out, err = shell_pipe("set a/b 1\nset a/c '{\n")
    assert rc == 2 and "line 2" in err and "unfinished" in err


def test_pipe_session_options_refused(shell_pipe, tmp_path):
    other = str(tmp_path / "other")
    rc, out, err = shell_pipe(f"--db {other} set a/b 1\nset a/b 2 --sync none\nget a/b --busy-timeout 5\n"
                                       "shell\nset a/b 3\nget a/b\n")
    lines = err.splitlines()
    assert len(lines) == 4 and rc == 2
    assert "--db" in lines[0] and "--sync" in lines[1] and "--busy-timeout" in lines[2] and "shell" in lines[3]
    assert out.splitlines()[-1] == "3"
    assert not os.path.exists(other)


def test_pipe_other_workspace_refused(kd, shell_pipe):
    """-w naming another workspace than the shell's is refused: the line
    wrote into the shell's workspace before, whatever it said."""
    assert kd("workspace", "create", "w").rc == 0
    rc, out, err = shell_pipe("-w w set a/k 1\nset a/j 2\n-w default list a\n")
    assert rc == 2 and len(err.splitlines()) == 1 and "-w NAME shell" in err, err
    assert out.splitlines()[-1] == "j"
    rc, out, err = shell_pipe("-w w set a/k 1\nlist a\n", "-w", "w")
    assert (rc, out.splitlines()[-1], err) == (0, "k", ""), (rc, out, err)
    assert kd("list", "a").out == "j\n" and kd("-w", "w", "list", "a").out == "k\n"


def test_pipe_nul_byte_refused(kd, shell_pipe):
    """A NUL in a line refuses that command: C strings cut it there and the
    rest ran (`delete users/alice\\0-backup` deleted users/alice)."""
    assert kd("set", "users/alice", "1").rc == 0
    rc, out, err = shell_pipe("delete users/alice\0-backup\nget users/alice\nset a/b 1\0\n")
    assert rc == 4, (rc, err)
    assert err.splitlines() == ["kdelta: line 1: a NUL byte in a command: nothing was run",
                                "kdelta: line 3: a NUL byte in a command: nothing was run"], err
    assert out == "1\n"
    assert kd("get", "users/alice").out == "1\n" and kd("get", "a/b").rc == 3


def test_pipe_json_default_and_help(shell_pipe, kd_raw):
    rc, out, err = shell_pipe("set a/b 1\nget a/b\n", "--json")
    assert rc == 0
    recs = [json.loads(l) for l in out.splitlines()]
    assert recs[1]["value"] == 1 and recs[1]["write_id"] == recs[0]["write_id"]
    rc, out, err = shell_pipe("help\n")
    assert rc == 0 and out.startswith(kd_raw("--help").out) and "exit" in out


@pytest.mark.local_only("the shell's hold on the database lock is local; a server holds it for every client")
def test_pipe_reuses_one_open_database(kd, db, env):
    """The shell holds the database for the session: another process waits
    and, with no busy timeout, fails saying what to do."""
    p = subprocess.Popen([KDELTA, "--db", db, "shell"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env)
    try:
        p.stdin.write(b"set a/b 1\n")
        p.stdin.flush()
        assert p.stdout.readline().startswith(b"a/b  version ")
        line = one_error_line(kd("--busy-timeout", "0", "get", "a/b"), 5)
        assert "--busy-timeout" in line, line
        assert str(p.pid) in line or "another process" in line, line
        p.stdin.write(b"get a/b\n")
        p.stdin.flush()
        assert p.stdout.readline() == b"1\n"
    finally:
        p.stdin.close()
        assert p.wait(timeout=30) == 0
    assert kd("get", "a/b").out == "1\n"


# ---------------------------------------------------------------------------
# On a terminal
# ---------------------------------------------------------------------------


def test_tty_completion_and_commands(kd, start_shell, tty_env):
    kd("set", "users/alice", '{"n": 1}')
    kd("set", "users/albert", "2")
    kd("set", "users/bob", "3")
    kd("set", "my ns/a b", "4")
    sh = start_shell(tty_env)
    # a command name
    sh.send("sta\t")
    sh.expect(r"status $")
    sh.send("\n")
    sh.expect(r"live keys\s+4[\s\S]*kdelta> $")
    # a namespace, then a key with a unique completion
    sh.send("get us\t")
    sh.expect(r"get users/$")
    sh.send("b\t")
    sh.expect(r"ob $")
    sh.send("\n")
    sh.expect(r"\n3\n[\s\S]*kdelta> $")
    # an ambiguous prefix completes as far as it can, then lists the choices
    sh.send("get users/a\t")
    sh.expect(r"l$")
    sh.send("\t")
    sh.expect(r"users/albert\s+users/alice[\s\S]*kdelta> get users/al$")
    sh.send("i\t\n")
    sh.expect(r'\{"n":1\}\n[\s\S]*kdelta> $')
    # names with spaces are completed with escapes that the shell reads back
    sh.send("get my\t")
    sh.expect(r"get my\\ ns/$")
    sh.send("\t\n")
    sh.expect(r"a\\ b \n4\n[\s\S]*kdelta> $")
    # subcommands of view, index and vector
    # (run without their arguments: a usage error, then the prompt again)
    sh.send("view ref\t")
    sh.expect(r"view refresh $")
    sh.send("\n")
    sh.expect(r"view refresh[\s\S]*kdelta> $")
    sh.send("index d\t")
    sh.expect(r"index drop $")
    sh.send("\n")
    sh.expect(r"index drop[\s\S]*kdelta> $")
    sh.send("vector sea\t")
    sh.expect(r"vector search $")
    sh.send("\n")
    sh.expect(r"vector search[\s\S]*kdelta> $")
    # options
    sh.send("log users/bob --rev\t")
    sh.expect(r"--reverse $")
    sh.send("\n")
    sh.expect(r"write\s+[0-9a-f]{64}[\s\S]*kdelta> $")
    # an error prints its line and the shell goes on
    sh.send("get users/nobody\n")
    sh.expect(r"kdelta: users/nobody: not found: never written\n[\s\S]*kdelta> $")
    # Ctrl-C clears the line
    sh.send("get users/'unfinished\x03")
    sh.expect(r"kdelta> $")
    sh.send("get users/bob\n")
    sh.expect(r"\n3\n[\s\S]*kdelta> $")
    sh.send("exit\n")
    assert sh.wait() == 3  # the last failing command was the not-found get


def test_tty_history_persists(start_shell, tty_env, tmp_path):
    hist = tmp_path / "history"
    sh = start_shell(tty_env)
    sh.send("set h/k '\"remembered\"'\n")
    sh.expect(r"h/k  version[\s\S]*kdelta> $")
    sh.send("get h/k\n")
    sh.expect(r'"remembered"\n[\s\S]*kdelta> $')
    sh.send("\x04")  # Ctrl-D
    assert sh.wait() == 0
    assert hist.exists() and (hist.stat().st_mode & 0o777) == 0o600
    # a new session recalls the previous one's commands with the up arrow
    sh = start_shell(tty_env)
    sh.send("\x1b[A")
    sh.expect(r"get h/k$")
    sh.send("\x1b[A")
    sh.expect(r"set h/k '\"remembered\"'$")
    sh.send("\x1b[B\n")
    sh.expect(r'"remembered"\n[\s\S]*kdelta> $')
    sh.send("quit\n")
    assert sh.wait() == 0


def test_tty_default_history_file(start_shell, tty_env, env):
    tty_env.pop("KORU_HISTORY")
    sh = start_shell(tty_env)
    sh.send("list\n")
    sh.expect(r"kdelta> $")
    sh.send("exit\n")
    assert sh.wait() == 0
    path = os.path.join(env["HOME"], ".korudelta", "shell_history")
    assert os.path.exists(path) and (os.stat(path).st_mode & 0o777) == 0o600
    assert "list" in open(path).read()


def test_tty_multiline_value(kd, start_shell, tty_env):
    sh = start_shell(tty_env)
    sh.send("set m/k '{\"a\":\n")
    sh.expect(r"\.\.\.> $")
    sh.send("1}'\n")
    sh.expect(r"m/k  version[\s\S]*kdelta> $")
    sh.send("exit\n")
    assert sh.wait() == 0
    assert kd("get", "m/k").out == '{"a":1}\n'


# ---------------------------------------------------------------------------
# Human output: colours, local time
# ---------------------------------------------------------------------------


def run_on_tty(args, env):
    p = Pty(args, env)
    out = p.read_all()
    p.wait()
    return out


def test_colours_only_on_a_terminal(kd, db, env, tty_env):
    kd("set", "c/k", "1")
    kd("delete", "c/k")
    target = where(kd, db, env)
    for cmd in (["log", "c/k"], ["verify"], ["status"]):
        assert "\x1b[" in run_on_tty(target + cmd, tty_env), cmd
        no_color = dict(tty_env, NO_COLOR="1")
        assert "\x1b[" not in run_on_tty(target + cmd, no_color), cmd
        assert "\x1b[" not in run_on_tty(target + cmd, dict(tty_env, NO_COLOR="")), cmd
        assert "\x1b[" not in run_on_tty(target + cmd, dict(tty_env, TERM="dumb")), cmd
        assert "\x1b[" not in run_on_tty(target + ["--json"] + cmd, tty_env), cmd
        r = kd(*cmd, extra_env={"TERM": "xterm"})  # a pipe
        assert r.rc == 0 and "\x1b" not in r.out and "\x1b" not in r.err, cmd


def test_local_time_for_people_utc_in_json(kd):
    rec = kd("set", "t/k", "1", "--json").json()
    utc = rec["timestamp"]
    ns = ts_to_ns(utc)
    india = {"TZ": "IST-5:30"}  # POSIX TZ: UTC+05:30, no tz database needed
    out = kd("log", "t/k", extra_env=india).out
    m = re.search(r"^time\s+(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.(\d{9}))\+05:30$", out, re.M)
    assert m, out
    assert int(m.group(2)) == ns % 1_000_000_000
    # the local form is RFC 3339: --at takes it back and finds the same version
    r = kd("get", "t/k", "--at", m.group(1) + "+05:30", "--json")
    assert r.json()["write_id"] == rec["write_id"]
    # --json keeps UTC whatever TZ says
    assert kd("log", "t/k", "--json", extra_env=india).json()[0]["timestamp"] == utc
    assert kd("status", "--json", extra_env=india).json()["last_write"] == utc
    # set's line and status also show local time; UTC shows Z
    assert re.search(r" at \S+\+05:30$", kd("set", "t/k", "2", extra_env=india).out.strip())
    assert re.search(r"^last write\s+\S+\+05:30\b", kd("status", extra_env=india).out, re.M)
    west = kd("log", "t/k", "--limit", "1", extra_env={"TZ": "XST+3"}).out
    assert re.search(r"^time\s+\S+-03:00$", west, re.M)
    assert re.search(r"^time\s+\S+Z$", kd("log", "t/k", extra_env={"TZ": "UTC0"}).out, re.M)
    # the error messages for people use local time too
    err = kd("get", "t/k", "--at", "@0", extra_env=india).err
    assert "+05:30" in err and "1970-01-01T05:30:00.000000000+05:30" in err


@pytest.mark.local_only("through a server both are refused as local-only commands")
def test_serve_and_restore_refused_inside_shell(kd, db, tmp_path):
    """The shell holds the database open: serve and restore say so at once
    (serve used to wait out the busy timeout on the shell's own lock)."""
    bk = str(tmp_path / "b.kdb")
    r = kd("shell", input=f"set a/b 1\nserve\nbackup {bk}\nrestore {bk}\n")
    err = r.err.splitlines()
    assert any(l.startswith("kdelta: serve: cannot run inside the shell") for l in err), r.err
    assert any(l.startswith("kdelta: restore: cannot run inside the shell") and "--db NEW_DIR" in l for l in err), r.err
