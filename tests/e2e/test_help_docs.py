"""Help texts, docs/CLI.md and the man page cannot drift apart.

The list of commands and options is read from the command table itself
(cli/main.c), so a command added there without help, without a section in
docs/CLI.md or without an entry in docs/kdelta.1 fails here. For each
command: `kdelta help CMD` and `kdelta CMD --help` print the same page, its
usage line is exactly "kdelta CMD <synopsis from the table>", and that line
appears verbatim in docs/CLI.md; the overview lists the command. Every
option is in the overview or a command's page, in docs/CLI.md and in the man
page, which must also render without groff warnings.
"""
import os
import re
import shutil
import subprocess

import pytest

from helpers import REPO

MAIN_C = os.path.join(REPO, "cli", "main.c")
CLI_MD = os.path.join(REPO, "docs", "CLI.md")
MAN = os.path.join(REPO, "docs", "kdelta.1")


def _table(name):
    """The rows of one static table in cli/main.c, as lists of C string literals."""
    src = open(MAIN_C, encoding="utf-8").read()
    m = re.search(r"\b" + name + r"\[\]\s*=\s*\{(.*?)\n\};", src, re.S)
    assert m, f"table {name}[] not found in cli/main.c"
    rows = []
    for row in re.findall(r"^\s*\{(.*)\},?\s*$", m.group(1), re.M):
        rows.append([bytes(s, "utf-8").decode("unicode_escape") for s in re.findall(r'"((?:[^"\\]|\\.)*)"', row)])
    return rows


def commands():
    """(name, synopsis) of every command in the command table."""
    rows = _table("commands")
    assert len(rows) >= 8
    return [(r[0], r[1] if len(r) > 1 else "") for r in rows]


def options():
    """Long names of every option in the option table ("--db", ...)."""
    rows = _table("options")
    assert rows
    return [r[0] for r in rows]


def usage_line(name, synopsis):
    return f"kdelta {name} {synopsis}".rstrip()


COMMANDS = commands()
NAMES = [n for n, _ in COMMANDS]


def test_table_is_parsed():
    for name in ("set", "get", "delete", "log", "list", "status", "verify", "shell", "help"):
        assert name in NAMES
    assert "--db" in options() and "--json" in options()


@pytest.mark.parametrize("name,synopsis", COMMANDS)
def test_command_help_page(kd_raw, name, synopsis):
    r1 = kd_raw("help", name)
    assert r1.rc == 0 and r1.err == "", f"kdelta help {name}: exit {r1.rc}, {r1.err!r}"
    assert r1.out.strip(), f"kdelta help {name} prints nothing: add a page to cli/help.c"
    first = r1.out.splitlines()[0]
    assert first == "Usage: " + usage_line(name, synopsis), (
        f"the usage line of 'kdelta help {name}' differs from the command table in cli/main.c:\n"
        f"  help:  {first!r}\n  table: {'Usage: ' + usage_line(name, synopsis)!r}")
    r2 = kd_raw(name, "--help")
    assert r2.rc == 0 and r2.out == r1.out
    r3 = kd_raw(name, "-h")
    assert r3.rc == 0 and r3.out == r1.out


@pytest.mark.parametrize("name,synopsis", COMMANDS)
def test_command_in_overview(kd_raw, name, synopsis):
    out = kd_raw("--help").out
    assert re.search(rf"^  {re.escape(name)}\b", out, re.M), f"'{name}' is not in the command list of kdelta --help"
    assert kd_raw("help").out == out


@pytest.mark.parametrize("name,synopsis", COMMANDS)
def test_command_in_cli_md(name, synopsis):
    doc = open(CLI_MD, encoding="utf-8").read()
    line = usage_line(name, synopsis)
    assert line in doc.splitlines(), f"docs/CLI.md lacks the usage line (as a line of its own): {line}"
    assert re.search(rf"^### {re.escape(name)}$", doc, re.M), f"docs/CLI.md has no '### {name}' section"
    # and the command table at the top links to it
    assert re.search(rf"^\| \[`{re.escape(name)}\b[^`]*`\]\(#{re.escape(name)}\) \|", doc, re.M), (
        f"the command table of docs/CLI.md has no row for {name}")


@pytest.mark.parametrize("name,synopsis", COMMANDS)
def test_command_in_man_page(name, synopsis):
    man = open(MAN, encoding="utf-8").read()
    # each command is a .TP entry of the COMMANDS section, its name first in bold
    section = man.split(".SH COMMANDS", 1)[1].split("\n.SH ", 1)[0]
    heads = re.findall(r"^\.TP\n\.(?:B|BI|BR) \"?([a-z-]+)", section, re.M)
    assert name in heads, f"docs/kdelta.1 has no entry for '{name}' in COMMANDS (found {heads})"


@pytest.mark.parametrize("opt", options())
def test_option_documented(kd_raw, opt):
    helps = kd_raw("--help").out + "".join(kd_raw("help", n).out for n in NAMES)
    assert opt in helps, f"option {opt} appears in no help text"
    assert f"`{opt}" in open(CLI_MD, encoding="utf-8").read(), f"docs/CLI.md does not document {opt}"
    man = open(MAN, encoding="utf-8").read().replace("\\-", "-")
    assert re.search(rf"^\.(?:B|BI|BR) {re.escape(opt)}\b", man, re.M) or re.search(
        rf"^\.BR -\w, {re.escape(opt)}\b|, \" {re.escape(opt)}\b", man, re.M), f"docs/kdelta.1 does not list {opt}"


def test_overview_sections_in_docs(kd_raw):
    out = kd_raw("--help").out
    doc = open(CLI_MD, encoding="utf-8").read()
    man = open(MAN, encoding="utf-8").read()
    for var in ("KORU_DB", "KORU_LOG", "KORU_HISTORY", "NO_COLOR"):
        assert var in out and var in doc and var in man, var
    # every exit status of the overview is in the docs' table and the man page
    for code in re.findall(r"^  (\d)  ", out, re.M):
        assert re.search(rf"^\| {code} \|", doc, re.M), f"exit status {code} missing in docs/CLI.md"
        assert f".B {code}\n" in man, f"exit status {code} missing in docs/kdelta.1"


def test_version(kd_raw):
    r = kd_raw("--version")
    assert r.rc == 0 and r.err == ""
    m = re.fullmatch(r"kdelta (\d+\.\d+\.\d+) \(libkorudelta (\d+\.\d+\.\d+)\)\n", r.out)
    assert m, r.out
    man = open(MAN, encoding="utf-8").read()
    assert f'"KoruDelta {m.group(1)}"' in man, "the man page's .TH names another version"


def test_help_unknown_command(kd_raw):
    r = kd_raw("help", "frobnicate")
    assert r.rc == 2 and "frobnicate" in r.err and r.out == ""


def test_man_page_renders_without_warnings():
    groff = shutil.which("groff")
    if not groff:
        pytest.skip("groff not installed (scripts/deps.sh installs groff-base)")
    p = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z", MAN], capture_output=True, text=True,
                       env=dict(os.environ, LC_ALL="C.UTF-8"))
    assert p.returncode == 0 and p.stderr == "", p.stderr
    text = subprocess.run([groff, "-man", "-Tutf8", MAN], capture_output=True, text=True,
                          env=dict(os.environ, LC_ALL="C.UTF-8")).stdout
    text = re.sub(r".\x08", "", text)  # overstrike bold and underline
    assert "NAME" in text and "EXIT STATUS" in text


def test_readme_library_example_builds_and_runs(tmp_path):
    """The README's C example, built with the README's command line against
    the static library, runs and prints what its comment says."""
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    code = re.search(r"## Using the library\n\n```c\n(.*?)```", readme, re.S).group(1)
    line = re.search(r"`(cc demo\.c [^`]*)`", readme.replace("\n", " ")).group(1)
    build = os.environ.get("KD_BUILD_DIR") or os.path.join(REPO, "build")
    with open(os.path.join(build, "CMakeCache.txt"), encoding="utf-8") as f:
        sanitize = re.search(r"^KD_SANITIZE:\w+=(\S+)", f.read(), re.M)
    if sanitize:  # the README's line is for a plain build; `make test` runs this
        pytest.skip("a sanitizer build of the library needs its runtime linked too")
    demo = tmp_path / "demo.c"
    demo.write_text(code.replace("/tmp/demo-db", str(tmp_path / "db")), encoding="utf-8")
    args = line.replace("build/libkorudelta.a", os.path.join(build, "libkorudelta.a")) \
               .replace("-Iinclude", "-I" + os.path.join(REPO, "include")).split()
    r = subprocess.run(args + ["-o", str(tmp_path / "demo")], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(tmp_path / "demo")], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout == '{"name":"Alice"}\n', (r.stdout, r.stderr)
