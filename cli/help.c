/*
 * help.c — the help texts of `kdelta`: the overview (`kdelta --help`) and
 * one page per command (`kdelta help set`, `kdelta set --help`).
 * docs/CLI.md is the long form of the same text; keep them in step.
 */
#include <string.h>

#include "cli.h"

static const char overview[] =
    "kdelta - command line for KoruDelta, a versioned JSON database\n"
    "\n"
    "Usage: kdelta [OPTIONS] COMMAND [ARGS]\n"
    "\n"
    "Commands:\n"
    "  set NS/KEY VALUE         store VALUE (JSON text, '-' = stdin, @FILE = a file)\n"
    "  get NS/KEY [--at TIME]   print the value (as it was at TIME)\n"
    "  delete NS/KEY            delete the key (history is kept)\n"
    "  log NS/KEY [--limit N] [--reverse]\n"
    "                           versions of the key, newest first\n"
    "  diff NS/KEY [--from REF] [--to REF]\n"
    "                           what changed between two versions (JSON Patch)\n"
    "  list [NS]                namespaces, or the live keys of NS\n"
    "  status                   counts, disk use and causal roots\n"
    "  verify                   re-check every checksum and hash chain\n"
    "  repair                   salvage a damaged database, reporting what was lost\n"
    "  import NS FILE [--key FIELD] [--format ndjson|json|header-ndjson]\n"
    "                           load documents in atomic batches\n"
    "  export [NS] [--at TIME] [--history] [--format ndjson|json]\n"
    "                           the current state, the state at TIME, or every version\n"
    "  query NS [--filter EXPR] [--sort FIELD[:desc]] [--select FIELDS] [--limit N]\n"
    "                           the keys whose values match, as a table; or\n"
    "                           --count --sum F --avg F ... [--group-by F]\n"
    "  watch [NS[/KEY]]         (in the shell) a line for each write made there\n"
    "  unwatch [ID]             (in the shell) end a watch, or every watch\n"
    "  shell                    interactive prompt (or commands from a pipe)\n"
    "  help [COMMAND]           this text, or one command's\n"
    "\n"
    "NS/KEY splits at the first '/': users/alice/profile is namespace 'users',\n"
    "key 'alice/profile'.\n"
    "\n"
    "Options (anywhere on the line):\n"
    "  --db DIR                 database directory (default $KORU_DB, else\n"
    "                           ~/.korudelta/db); created when missing\n"
    "  --json                   machine-readable output (version records)\n"
    "  --sync always|interval|none\n"
    "                           durability of writes (default always)\n"
    "  --busy-timeout MS        wait at most MS for another process's lock\n"
    "                           (default 10000)\n"
    "  -h, --help               help\n"
    "  --version                print the version\n"
    "  --                       end of options\n"
    "\n"
    "TIME: RFC 3339 (2026-01-02T03:04:05Z, 2026-01-02T05:04:05.5+02:00),\n"
    "      @NANOSECONDS since 1970 (@1767323045000000000), 'now', or a time\n"
    "      before now: -90s, -5m, -2h, -3d, -1w, -1500ms.\n"
    "\n"
    "Exit status:\n"
    "  0  success\n"
    "  1  other error (I/O, disk full, out of memory, unsupported format)\n"
    "  2  usage error (unknown command or option, missing argument)\n"
    "  3  not found (never written, deleted, or no version at that TIME)\n"
    "  4  invalid input (bad JSON, name, reserved namespace, too big, TIME, NS/KEY)\n"
    "  5  database busy (locked by another process past the busy timeout)\n"
    "  6  conflict (conditional write)\n"
    "  7  database corrupt\n"
    "\n"
    "Environment: KORU_DB (database directory), KORU_LOG=error|warn|info|debug\n"
    "(library log lines on stderr), KORU_HISTORY (shell history file),\n"
    "NO_COLOR (no colours; they are only used on a terminal anyway).\n"
    "Times for people are local (with the offset); --json gives UTC.\n"
    "See docs/CLI.md for details and examples.\n";

static const struct {
    const char *name;
    const char *text;
} pages[] = {
    {"set",
     "Usage: kdelta set NS/KEY VALUE\n"
     "\n"
     "Store VALUE as a new version of NS/KEY. VALUE is JSON text (quote it for\n"
     "the shell), '-' to read it from stdin, or @FILE to read it from a file\n"
     "(up to 1 GiB; a leading UTF-8 byte order mark is ignored). The value is\n"
     "stored in canonical form; its version_id is the SHA-256 of that form.\n"
     "\n"
     "Prints: NS/KEY  version <id>  write <id>  at <time>\n"
     "With --json: the version record as one line of JSON.\n"
     "\n"
     "  kdelta set users/alice '{\"name\": \"Alice\", \"age\": 30}'\n"
     "  echo '[1, 2, 3]' | kdelta set lists/primes -\n"
     "  kdelta set config/app @app.json\n"},
    {"get",
     "Usage: kdelta get NS/KEY [--at TIME]\n"
     "\n"
     "Print the current value of NS/KEY as canonical JSON, or with --at the\n"
     "value as it was at TIME (the latest version at or before TIME).\n"
     "With --json: the whole version record.\n"
     "Exit status 3 when the key was never written, is deleted, or had no\n"
     "version yet at TIME; the message says which.\n"
     "\n"
     "TIME: RFC 3339, @NANOSECONDS, now, or -90s -5m -2h -3d -1w -1500ms.\n"
     "\n"
     "  kdelta get users/alice\n"
     "  kdelta get users/alice --at 2026-01-02T03:04:05Z\n"
     "  kdelta get users/alice --at -1h --json\n"},
    {"delete",
     "Usage: kdelta delete NS/KEY\n"
     "\n"
     "Delete NS/KEY by writing a tombstone version. The history stays: log\n"
     "shows the tombstone and get --at a time before it returns the old value.\n"
     "Exit status 3 if the key was never written or is already deleted.\n"},
    {"log",
     "Usage: kdelta log NS/KEY [--limit N] [--reverse]\n"
     "\n"
     "Show the versions of NS/KEY, newest first (like git log): write_id,\n"
     "time, version_id (or 'deleted'), parent write_id and value.\n"
     "--limit N   only the newest N versions (0 = all)\n"
     "--reverse   oldest first (with --limit: the newest N, oldest first)\n"
     "With --json: a JSON array of version records, values included.\n"},
    {"diff",
     "Usage: kdelta diff NS/KEY [--from REF] [--to REF]\n"
     "\n"
     "Show what changed in NS/KEY between two versions: one line per changed\n"
     "path, '+ PATH: NEW', '- PATH: OLD' or '~ PATH: OLD -> NEW' (PATH is a\n"
     "JSON Pointer), after a 'from' and a 'to' line naming the versions.\n"
     "With --json: the RFC 6902 JSON Patch that turns the first value into\n"
     "the second, as one line of canonical JSON.\n"
     "--from REF  the older state (default: the version just before --to's)\n"
     "--to REF    the newer state (default: the current version)\n"
     "\n"
     "REF is one of:\n"
     "  ~N        N versions before the current one (~0 = current, ~1 = previous;\n"
     "            quote it for the shell, which may expand ~1 to a directory)\n"
     "  N         the N-th version from the oldest, 0-based (0 = first)\n"
     "  WRITE_ID  a write_id, or a unique prefix of 8 or more hex digits\n"
     "            (8+ digits only: a write_id prefix if one matches, else N)\n"
     "  TIME      the version current at TIME (RFC 3339, @NANOSECONDS, -5m...)\n"
     "A deleted state (a tombstone), and the state before the first version,\n"
     "count as absent: the whole value is added (path \"\") or removed.\n"
     "Exit status 3 when the key or the REF's version does not exist, 4 for a\n"
     "malformed or ambiguous REF; the message names the REF.\n"
     "\n"
     "  kdelta diff users/alice\n"
     "  kdelta diff users/alice --from '~3' --json\n"
     "  kdelta diff users/alice --from 0 --to 2026-01-02T03:04:05Z\n"
     "  kdelta diff users/alice --from 1a2b3c4d\n"},
    {"list",
     "Usage: kdelta list [NS]\n"
     "\n"
     "Without NS: the namespaces that hold at least one live key. With NS:\n"
     "the live keys of NS. Sorted byte-wise, one per line (control characters\n"
     "shown escaped); with --json a JSON array of the exact names.\n"},
    {"status",
     "Usage: kdelta status\n"
     "\n"
     "Show the database directory, keys (and live keys), versions, distinct\n"
     "values, namespaces, bytes on disk, segments, time of the last write and\n"
     "the causal roots. With --json: one JSON object with the same members.\n"},
    {"verify",
     "Usage: kdelta verify\n"
     "\n"
     "Re-read every log segment and check every checksum, value hash\n"
     "(version_id), write_id, parent link and causal root. Prints what was\n"
     "checked and 'ok', or names the first problem (file and offset) and\n"
     "exits with status 7.\n"},
    {"repair",
     "Usage: kdelta repair\n"
     "\n"
     "Salvage a damaged database: every intact record is copied into a new\n"
     "log, hash chains re-checked; a version whose record, value or parent\n"
     "was lost is lost too. Each loss is printed (file, offset, keys), then a\n"
     "summary. The new log replaces the old one only when it is complete, in\n"
     "one atomic step; the damaged files are kept in DIR.damaged-<time>. A\n"
     "healthy database is left alone. Not available inside `kdelta shell`.\n"},
    {"import",
     "Usage: kdelta import NS FILE [--key FIELD] [--format ndjson|json|header-ndjson] [--skip-bad] [--batch N]\n"
     "\n"
     "Load the documents of FILE ('-' = stdin) into namespace NS, streaming,\n"
     "in atomic batches (--batch N rows, default 1000; each one fsync).\n"
     "--format ndjson         one JSON value per line (default; blank lines skipped)\n"
     "--format json           one array whose elements are the rows (or one value)\n"
     "--format header-ndjson  a first line of field names [\"id\",\"name\"], then one\n"
     "                        array of values per line, each stored as an object\n"
     "--key FIELD             the key is that field (dotted path: user.id); strings\n"
     "                        as they are, numbers as written. Without --key keys are\n"
     "                        12-digit sequence numbers (000000000001, ...), going\n"
     "                        on after the greatest such live key of NS\n"
     "A bad row (invalid JSON, no key field, wrong number of values) stops the\n"
     "import before its batch is written; the error names the line and how\n"
     "many rows were committed before (exit 4). --skip-bad reports each bad\n"
     "row on stderr and goes on. On a terminal a progress bar shows rows, rate\n"
     "and ETA. At the end: rows, versions, bytes, seconds on stderr (with\n"
     "--json a summary object on stdout).\n"
     "--history: FILE is an 'export --history' file; every version is replayed\n"
     "with its ids and timestamp (usage: kdelta import --history [NS] FILE;\n"
     "with NS only that namespace). The database must not have later writes.\n"
     "\n"
     "  kdelta import users users.ndjson --key id\n"
     "  kdelta import phones phones.ndjson --format header-ndjson --key asin\n"
     "  kdelta export --history | kdelta --db copy import --history -\n"},
    {"export",
     "Usage: kdelta export [NS] [--at TIME] [--history] [--format ndjson|json]\n"
     "\n"
     "Write the live keys of NS (or of every namespace) to stdout, one JSON\n"
     "object per line: {\"namespace\":NS,\"key\":KEY,\"value\":VALUE}, sorted\n"
     "by namespace and key.\n"
     "--at TIME      the state as it was at TIME (keys deleted since included,\n"
     "               keys absent or deleted at TIME left out)\n"
     "--history      every version in log order: the version record (as in\n"
     "               get --json) plus \"node_id\"; import --history reads it back\n"
     "               with identical ids, timestamps and roots\n"
     "--format json  one JSON array instead of lines\n"
     "\n"
     "  kdelta export users > users.ndjson\n"
     "  kdelta export --at 2026-01-02T00:00:00Z --format json\n"},
    {"query",
     "Usage: kdelta query NS [--filter EXPR] [--sort FIELD[:desc]]... [--select FIELDS] [--limit N] [--offset N] "
     "[--at TIME] [AGGREGATE]... [--group-by FIELD]...\n"
     "\n"
     "Find the live keys of namespace NS whose values match a filter, and show\n"
     "them as a table: the key, then each selected field (or the whole value),\n"
     "as JSON; then how many matched ('3 of 17 matches' when --limit or --offset\n"
     "left some out). An unknown namespace has no matches.\n"
     "--filter EXPR        only values matching EXPR, e.g.\n"
     "                     'age >= 30 and address.city == \"Paris\"'\n"
     "--sort FIELD[:desc]  order by FIELD, ascending or :desc; repeat for ties\n"
     "                     (default: by key)\n"
     "--select FIELDS      show these fields, comma-separated (a.b: member b of a)\n"
     "--limit N            at most N rows\n"
     "--offset N           skip the first N rows\n"
     "--at TIME            the namespace as it was at TIME\n"
     "AGGREGATE, instead of rows (several may be given; one column each):\n"
     "  --count  --sum FIELD  --avg FIELD  --min FIELD  --max FIELD  --distinct FIELD\n"
     "--group-by FIELD     one row of aggregates per value of FIELD (repeatable)\n"
     "With --json: {\"total\":N,\"rows\":[version records...]}, or\n"
     "{\"total\":N,\"aggregates\":...} when aggregating.\n"
     "EXPR: comparisons (== != < <= > >=) of a field with a JSON value,\n"
     "'FIELD exists', 'FIELD contains VALUE', 'FIELD matches \"REGEX\"',\n"
     "'FIELD in [V, ...]', joined with and, or, not and parentheses; strings\n"
     "in double quotes. See docs/QUERY.md. A bad EXPR exits with status 4 and\n"
     "the column of the mistake.\n"
     "\n"
     "  kdelta query users --filter 'age > 30' --sort age:desc --select name,age\n"
     "  kdelta query users --filter 'name matches \"^A\"' --limit 10 --json\n"
     "  kdelta query orders --group-by country --count --sum total\n"},
    {"watch",
     "Usage: kdelta watch [NS[/KEY]] [--types insert,update,delete] [--filter EXPR] [--stop]\n"
     "\n"
     "Inside `kdelta shell`: after each command, print a line for each write\n"
     "it made to NS (or to NS/KEY; without NS to any namespace):\n"
     "  insert users/alice {\"name\":\"Alice\"}\n"
     "  update users/alice {\"name\":\"Alicia\"}\n"
     "  delete users/alice\n"
     "and 'missed N events' when more came at once than a watch holds (10000).\n"
     "--types T,...   only these kinds of event: insert, update, delete\n"
     "--filter EXPR   only events whose new value (for a delete: the value it\n"
     "                deleted) matches EXPR (as in query)\n"
     "--stop          end every watch (the same as unwatch)\n"
     "`watch` prints the watch's number; several watches may run at once.\n"
     "With --json: one JSON object per event, {\"type\",\"namespace\",\"key\",\n"
     "\"value\",\"previous_value\",\"version\"} (see docs/CLI.md).\n"
     "\n"
     "A one-shot `kdelta watch` exits with status 2: it would hold the database\n"
     "lock, so no other process could write while it ran. Watch inside\n"
     "`kdelta shell`, or, for other processes' writes, watch a server with\n"
     "--url (coming with `kdelta serve`).\n"
     "\n"
     "  kdelta> watch users --types update,delete\n"
     "  kdelta> set users/alice '{\"name\": \"Alicia\"}'\n"},
    {"unwatch",
     "Usage: kdelta unwatch [ID]\n"
     "\n"
     "Inside `kdelta shell`: end watch ID (the number `watch` printed), or\n"
     "every watch. Exit status 3 for an unknown ID; 2 outside the shell.\n"},
    {"shell",
     "Usage: kdelta shell\n"
     "\n"
     "Run kdelta commands at a prompt, without the 'kdelta' prefix, on one\n"
     "database opened for the whole session (so other processes wait for it):\n"
     "\n"
     "  kdelta> set users/alice '{\"name\": \"Alice\"}'\n"
     "  kdelta> get users/alice --at -1m\n"
     "\n"
     "Words are split as in a POSIX shell: 'single quotes' keep everything,\n"
     "\"double quotes\" allow \\\" and \\\\, a backslash outside quotes keeps the next\n"
     "character; an open quote or a trailing backslash continues on the next\n"
     "line. Lines starting with # are comments. Options (--json, --at, ...)\n"
     "work per command; --db, --sync and --busy-timeout only when starting\n"
     "the shell. 'help' lists the commands; 'exit', 'quit' or Ctrl-D leaves.\n"
     "\n"
     "On a terminal: line editing (libedit, ~/.editrc), Tab completes command\n"
     "names, options, namespaces and NS/KEY names; Ctrl-C clears the line.\n"
     "History is kept in $KORU_HISTORY, else ~/.korudelta/shell_history (0600).\n"
     "\n"
     "From a pipe or file: no prompt, no history; each command prints exactly\n"
     "what 'kdelta COMMAND' prints, errors included, and the shell goes on.\n"
     "Exit status: that of the last command that failed, 0 if none did.\n"
     "\n"
     "  printf 'set a/b 1\\nget a/b\\n' | kdelta shell\n"},
    {"help",
     "Usage: kdelta help [COMMAND]\n"
     "\n"
     "Show the overview, or the help of COMMAND.\n"},
};

int cli_help(FILE *out, const char *command)
{
    if (!command) {
        fputs(overview, out);
        return 0;
    }
    for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++) {
        if (strcmp(pages[i].name, command) == 0) {
            fputs(pages[i].text, out);
            return 0;
        }
    }
    return -1;
}
