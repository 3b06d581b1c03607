/*
 * output.c — how kdelta talks back: error lines on stderr, exit statuses,
 * names and times for people, version records for programs.
 *
 * Every error is exactly one line, "kdelta: <what>: <why>", so scripts can
 * read it; control characters from names or messages never break it up.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "store.h"

/* ------------------------------------------------------------------------
 * Errors and exit statuses
 * ---------------------------------------------------------------------- */

int cli_exit_status(int rc)
{
    switch (rc) {
    case KD_OK:
        return CLI_OK;
    case KD_ENOTFOUND:
    case KD_EDELETED:
    case KD_ENOVERSION:
    case KD_EPRUNED:
        return CLI_NOTFOUND;
    case KD_EINVALID:
    case KD_ETOOBIG:
    case KD_ERESERVED:
        return CLI_INVALID;
    case KD_EBUSY:
        return CLI_BUSY;
    case KD_ECONFLICT:
        return CLI_CONFLICT;
    case KD_ECORRUPT:
        return CLI_CORRUPT;
    default:
        return CLI_ERROR;
    }
}

/* Make `s` safe for one line in place: tabs and line breaks become spaces,
 * other control characters '?'. */
static void one_line(char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '\n' || ch == '\r' || ch == '\t')
            *s = ' ';
        else if (ch < 0x20 || ch == 0x7f)
            *s = '?';
    }
}

int cli_error(int status, const char *what, const char *fmt, ...)
{
    char why[4096], name[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(name, sizeof name, "%s", what ? what : "kdelta");
    one_line(why);
    one_line(name);
    fflush(stdout);
    fprintf(stderr, "kdelta: %s: %s\n", name, why);
    return status;
}

int cli_kd_error(struct cli *c, int rc, const char *what)
{
    const char *detail = c ? st_errmsg(c) : "";
    if (!detail || !*detail)
        return cli_error(cli_exit_status(rc), what, "%s", kd_strerror(rc));
    /* The library's detail is self-explanatory and often starts with the
     * name already ("users/alice: invalid JSON at byte 3: ..."). */
    size_t wl = what ? strlen(what) : 0;
    if (wl && strncmp(detail, what, wl) == 0 && detail[wl] == ':' && detail[wl + 1] == ' ')
        detail += wl + 2;
    return cli_error(cli_exit_status(rc), what, "%s", detail);
}

/* ------------------------------------------------------------------------
 * Names and times
 * ---------------------------------------------------------------------- */

static void put_escaped(char **p, const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        switch (ch) {
        case '\n':
            *(*p)++ = '\\', *(*p)++ = 'n';
            break;
        case '\r':
            *(*p)++ = '\\', *(*p)++ = 'r';
            break;
        case '\t':
            *(*p)++ = '\\', *(*p)++ = 't';
            break;
        case '\\': /* doubled: else a backslash then 'n' would look like an escaped newline */
            *(*p)++ = '\\', *(*p)++ = '\\';
            break;
        default:
            if (ch < 0x20 || ch == 0x7f) {
                *p += sprintf(*p, "\\x%02x", ch);
            } else {
                *(*p)++ = (char)ch;
            }
        }
    }
}

char *cli_display(const char *ns, const char *key, size_t max)
{
    size_t n = strlen(ns) + (key ? strlen(key) + 1 : 0);
    char *out = xmalloc(4 * n + 8), *p = out;
    put_escaped(&p, ns);
    if (key) {
        *p++ = '/';
        put_escaped(&p, key);
    }
    *p = '\0';
    if (max && (size_t)(p - out) > max) {
        size_t cut = max;
        while (cut > 0 && ((unsigned char)out[cut] & 0xC0) == 0x80) /* inside a UTF-8 sequence */
            cut--;
        memcpy(out + cut, "...", 4);
    }
    return out;
}

const char *cli_time_utc(int64_t ts, char *buf)
{
    if (kd_time_format(ts, buf, 40) != KD_OK)
        snprintf(buf, 40, "@%lld", (long long)ts);
    return buf;
}

const char *cli_time(int64_t ts, char *buf)
{
    int64_t sec = ts / 1000000000, ns = ts % 1000000000;
    if (ns < 0) {
        ns += 1000000000;
        sec--;
    }
    time_t t = (time_t)sec;
    struct tm tm;
    /* Offsets that are not whole minutes (local mean time before time
     * zones) have no RFC 3339 form: show those instants in UTC. */
    if ((int64_t)t != sec || !localtime_r(&t, &tm) || tm.tm_gmtoff % 60 != 0 || tm.tm_year < -1900 ||
        tm.tm_year > 9999 - 1900)
        return cli_time_utc(ts, buf);
    long off = tm.tm_gmtoff / 60;
    size_t n = strftime(buf, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    if (off == 0)
        snprintf(buf + n, 40 - n, ".%09lldZ", (long long)ns);
    else
        snprintf(buf + n, 40 - n, ".%09lld%c%02ld:%02ld", (long long)ns, off < 0 ? '-' : '+', labs(off) / 60,
                 labs(off) % 60);
    return buf;
}

const char *cli_sgr(const struct cli *c, const char *sgr)
{
    static int on = -1;
    if (on < 0) {
        const char *term = getenv("TERM");
        on = isatty(STDOUT_FILENO) && !getenv("NO_COLOR") && !(term && strcmp(term, "dumb") == 0);
    }
    return on && !(c && c->json) ? sgr : "";
}

/* ------------------------------------------------------------------------
 * JSON output
 * ---------------------------------------------------------------------- */

int cli_print_record(struct cli *c, const char *ns, const char *key, const char *value, size_t len,
                     const kd_version *v)
{
    char *out = NULL;
    size_t outlen = 0;
    int rc = kd_version_json(ns, key, value, len, v, &out, &outlen);
    if (rc != KD_OK) {
        char *shown = cli_display(ns, key, 200);
        int status = cli_error(cli_exit_status(rc), shown, "cannot format the version record: %s", kd_strerror(rc));
        free(shown);
        return status;
    }
    (void)c;
    fwrite(out, 1, outlen, stdout);
    fputc('\n', stdout);
    kd_free(out);
    return CLI_OK;
}

int cli_print_json_string(const char *s, size_t len)
{
    char *out = NULL;
    size_t outlen = 0;
    int rc = kd_json_quote(s, len, &out, &outlen);
    if (rc != KD_OK)
        return cli_error(cli_exit_status(rc), "output", "cannot quote a name as JSON: %s", kd_strerror(rc));
    fwrite(out, 1, outlen, stdout);
    kd_free(out);
    return CLI_OK;
}

int cli_finish_output(int status)
{
    if (fflush(stdout) != 0 || ferror(stdout))
        return status == CLI_OK ? cli_error(CLI_ERROR, "stdout", "write error") : status;
    return status;
}
