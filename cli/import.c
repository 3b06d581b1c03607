/*
 * import.c — `kdelta import NS FILE`: load rows of JSON into a namespace, or
 * with --history replay an `export --history` file version by version.
 *
 * The file is streamed: a bounded buffer is refilled with read(2), rows are
 * cut out of it (one per line for ndjson and header-ndjson, one per element
 * of the top-level array for json), copied into the current batch, and every
 * --batch rows (default 1000) the batch is written atomically with
 * kd_put_batch (kd_import_versions with --history), through store.h: on the
 * database, or on a server with `kdelta --url`. No row may exceed
 * IMPORT_MAX_ROW bytes, so memory stays bounded whatever the file's size.
 *
 * The CLI sees only the public API, so it carries a small JSON scanner of its
 * own (section "JSON scanning"): enough to find element boundaries, member
 * names and values in text it does not trust. It never decides whether a row
 * is valid JSON — the library does that when the batch is written, and its
 * message (with the index of the failing write) is turned into a line number.
 *
 * Bad rows: by default the first bad row stops the import before its batch
 * is written (rows of earlier batches stay committed, and the error says how
 * many); with --skip-bad each bad row is reported on stderr and left out.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "progress.h"
#include "store.h"

#define IMPORT_MAX_ROW ((size_t)64 << 20) /* longest line / array element */
#define IMPORT_READ_CHUNK ((size_t)1 << 20)
#define KEY_DIGITS 12 /* generated keys: 000000000001, 000000000002, ... */

enum fmt { FMT_NDJSON, FMT_JSON, FMT_HEADER_NDJSON };

/* ------------------------------------------------------------------------
 * JSON scanning (untrusted text; validity is the library's business)
 * ---------------------------------------------------------------------- */

static int is_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

static const char *skip_ws(const char *p, const char *end)
{
    while (p < end && is_ws(*p))
        p++;
    return p;
}

/* p at '"': the byte after the closing quote, NULL if unterminated. */
static const char *skip_string(const char *p, const char *end)
{
    for (p++; p < end; p++) {
        if (*p == '\\') {
            if (++p == end)
                return NULL;
        } else if (*p == '"') {
            return p + 1;
        }
    }
    return NULL;
}

/* The byte after the value starting at p (no leading whitespace), NULL when
 * it is cut short. Scalars end at a delimiter. */
static const char *skip_value(const char *p, const char *end)
{
    if (p >= end)
        return NULL;
    if (*p == '"')
        return skip_string(p, end);
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < end) {
            char ch = *p;
            if (ch == '"') {
                if (!(p = skip_string(p, end)))
                    return NULL;
                continue;
            }
            if (ch == '{' || ch == '[')
                depth++;
            else if ((ch == '}' || ch == ']') && --depth == 0)
                return p + 1;
            p++;
        }
        return NULL;
    }
    const char *s = p;
    while (p < end && !is_ws(*p) && *p != ',' && *p != '}' && *p != ']' && *p != ':')
        p++;
    return p > s ? p : NULL;
}

/* Resumable search for the end of an array element: the ',' or the
 * closing ']' at depth 0, outside strings. Counts newlines it passes. */
struct splitter {
    int depth, in_str, esc;
};

static const char *split_scan(struct splitter *st, const char *p, const char *end, uint64_t *lines)
{
    for (; p < end; p++) {
        char ch = *p;
        if (ch == '\n')
            ++*lines;
        if (st->in_str) {
            if (st->esc)
                st->esc = 0;
            else if (ch == '\\')
                st->esc = 1;
            else if (ch == '"')
                st->in_str = 0;
            continue;
        }
        switch (ch) {
        case '"':
            st->in_str = 1;
            break;
        case '[':
        case '{':
            st->depth++;
            break;
        case ']':
            if (st->depth == 0)
                return p;
            st->depth--;
            break;
        case '}':
            if (st->depth > 0) /* a stray '}' stays in the element, for the library to refuse */
                st->depth--;
            break;
        case ',':
            if (st->depth == 0)
                return p;
            break;
        }
    }
    return NULL;
}

/* Append the UTF-8 encoding of code point cp. */
static char *put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xC0 | (cp >> 6));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xE0 | (cp >> 12));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (char)(0xF0 | (cp >> 18));
        *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    }
    return o;
}

static int hex4(const char *p, const char *end, uint32_t *out)
{
    uint32_t v = 0;
    if (end - p < 4)
        return 0;
    for (int i = 0; i < 4; i++) {
        char ch = p[i];
        v <<= 4;
        if (ch >= '0' && ch <= '9')
            v |= (uint32_t)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            v |= (uint32_t)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F')
            v |= (uint32_t)(ch - 'A' + 10);
        else
            return 0;
    }
    *out = v;
    return 1;
}

/* Decode the string literal [s, e) (quotes included) into out, which has
 * room for e - s bytes (decoding never grows the text). Returns the decoded
 * length, or -1 with *why set. NUL (\u0000) is refused: names cannot hold it. */
static long decode_string(const char *s, const char *e, char *out, const char **why)
{
    char *o = out;
    const char *p = s + 1, *end = e - 1;
    while (p < end) {
        unsigned char ch = (unsigned char)*p;
        if (ch < 0x20) {
            *why = "a control character in a string";
            return -1;
        }
        if (ch != '\\') {
            *o++ = *p++;
            continue;
        }
        if (++p >= end) {
            *why = "a bad escape in a string";
            return -1;
        }
        switch (*p++) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            uint32_t cp, lo;
            if (!hex4(p, end, &cp)) {
                *why = "a bad \\u escape in a string";
                return -1;
            }
            p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || !hex4(p + 2, end, &lo) || lo < 0xDC00 ||
                    lo > 0xDFFF) {
                    *why = "a lone surrogate in a string";
                    return -1;
                }
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                *why = "a lone surrogate in a string";
                return -1;
            }
            if (cp == 0) {
                *why = "a NUL character (\\u0000) in a name";
                return -1;
            }
            o = put_utf8(o, cp);
            break;
        }
        default:
            *why = "a bad escape in a string";
            return -1;
        }
    }
    return (long)(o - out);
}

/* Does the string literal [s, e) decode to exactly name[0..nlen)? */
static int string_equals(const char *s, const char *e, const char *name, size_t nlen)
{
    size_t rawlen = (size_t)(e - s) - 2;
    if (!memchr(s + 1, '\\', rawlen))
        return rawlen == nlen && memcmp(s + 1, name, nlen) == 0;
    if (rawlen < nlen)
        return 0;
    char small[256];
    char *buf = rawlen <= sizeof small ? small : xmalloc(rawlen);
    const char *why;
    long n = decode_string(s, e, buf, &why);
    int eq = n >= 0 && (size_t)n == nlen && memcmp(buf, name, nlen) == 0;
    if (buf != small)
        free(buf);
    return eq;
}

/* Walk the members of the object [p, end): each call sets the name literal
 * [ns, ne) and the value [vs, ve) of the next member. Returns 1, 0 at the
 * end, -1 when the text is not a well-formed object. */
struct members {
    const char *p, *end;
    int started;
};

static int next_member(struct members *m, const char **ns, const char **ne, const char **vs, const char **ve)
{
    const char *p = skip_ws(m->p, m->end);
    if (!m->started) {
        if (p >= m->end || *p != '{')
            return -1;
        m->started = 1;
        p = skip_ws(p + 1, m->end);
        if (p < m->end && *p == '}') {
            m->p = m->end;
            return skip_ws(p + 1, m->end) == m->end ? 0 : -1;
        }
    } else {
        if (p >= m->end)
            return -1; /* no closing '}' */
        if (*p == '}') {
            m->p = m->end;
            /* nothing may follow the object ("--format json" given a
             * file of lines: the rest was dropped without a word) */
            return skip_ws(p + 1, m->end) == m->end ? 0 : -1;
        }
        if (*p != ',')
            return -1;
        p = skip_ws(p + 1, m->end);
    }
    if (p >= m->end || *p != '"')
        return -1;
    *ns = p;
    if (!(p = skip_string(p, m->end)))
        return -1;
    *ne = p;
    p = skip_ws(p, m->end);
    if (p >= m->end || *p != ':')
        return -1;
    p = skip_ws(p + 1, m->end);
    *vs = p;
    if (!(p = skip_value(p, m->end)))
        return -1;
    *ve = p;
    m->p = p;
    return 1;
}

/* The value at dotted `path` in the object [s, e); the last member of a
 * name wins, as in canonical JSON. 1 found, 0 missing, -1 malformed or a
 * step into something that is not an object (*why set). */
static int find_path(const char *s, const char *e, const char *path, const char **vs, const char **ve,
                     const char **why)
{
    for (;;) {
        const char *dot = strchr(path, '.');
        size_t seg = dot ? (size_t)(dot - path) : strlen(path);
        const char *p = skip_ws(s, e);
        if (p >= e || *p != '{') {
            *why = "is not a JSON object";
            return -1;
        }
        struct members m = {p, e, 0};
        const char *a, *b, *c, *d, *fs = NULL, *fe = NULL;
        int r;
        while ((r = next_member(&m, &a, &b, &c, &d)) == 1)
            if (string_equals(a, b, path, seg))
                fs = c, fe = d;
        if (r < 0) {
            *why = "is not well-formed JSON";
            return -1;
        }
        if (!fs)
            return 0;
        if (!dot) {
            *vs = fs;
            *ve = fe;
            return 1;
        }
        s = fs;
        e = fe;
        path = dot + 1;
    }
}

/* ------------------------------------------------------------------------
 * Reading rows from the file
 * ---------------------------------------------------------------------- */

struct reader {
    int fd;
    const char *name; /* for messages */
    enum fmt fmt;
    char *buf;
    size_t cap, pos, end; /* unconsumed bytes are buf[pos, end) */
    size_t scanned;       /* bytes after pos already searched */
    int eof;
    uint64_t bytes;       /* read so far */
    uint64_t line;        /* line number at buf[pos + scanned] (1-based) */
    /* json format */
    int jstate;           /* 0 before the value, 1 in the array, 2 after it, 3 single value, 4 done */
    struct splitter sp;
    uint64_t elem_line;
    /* header-ndjson: the header's names as JSON literals, back to back */
    char *hdr;
    size_t *hdr_off;      /* ncols + 1 offsets into hdr */
    size_t ncols;
    int have_header;
    const char **spans;   /* element spans of a values line */
    size_t spans_cap;
    char *row;            /* a row built from a values line */
    size_t row_cap;
    char err[512];        /* message of the last R_BAD / R_FATAL */
};

enum { R_END = 0, R_ROW = 1, R_BAD = 2, R_FATAL = 3 };

/* Make room and read more. 1 read something, 0 end of file, -1 error. */
static int fill(struct reader *r)
{
    if (r->eof)
        return 0;
    if (r->pos > 0 && (r->pos == r->end || r->end + IMPORT_READ_CHUNK / 4 > r->cap)) {
        memmove(r->buf, r->buf + r->pos, r->end - r->pos);
        r->end -= r->pos;
        r->pos = 0;
    }
    if (r->cap - r->end < IMPORT_READ_CHUNK / 4) {
        if (r->end - r->pos > IMPORT_MAX_ROW) {
            snprintf(r->err, sizeof r->err, "line %" PRIu64 ": a row is longer than %zu MiB, the most import reads",
                     r->line, IMPORT_MAX_ROW >> 20);
            return -1;
        }
        r->cap *= 2;
        r->buf = xrealloc(r->buf, r->cap);
    }
    for (;;) {
        ssize_t got = read(r->fd, r->buf + r->end, r->cap - r->end);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            snprintf(r->err, sizeof r->err, "cannot read: %s", strerror(errno));
            return -1;
        }
        if (got == 0) {
            r->eof = 1;
            return 0;
        }
        if (r->bytes == 0 && got >= 3 && memcmp(r->buf + r->end, "\xEF\xBB\xBF", 3) == 0) {
            r->pos += 3; /* a byte order mark at the very start */
            r->bytes += 3;
            got -= 3;
            r->end += 3;
        }
        r->end += (size_t)got;
        r->bytes += (uint64_t)got;
        return 1;
    }
}

/* Next line without its "\n" (and "\r"); *lineno its number. Pointer valid
 * until the next call. */
static int next_line(struct reader *r, const char **s, size_t *len, uint64_t *lineno)
{
    for (;;) {
        char *nl = memchr(r->buf + r->pos + r->scanned, '\n', r->end - r->pos - r->scanned);
        if (nl || (r->eof && r->pos < r->end)) {
            const char *start = r->buf + r->pos;
            size_t n = nl ? (size_t)(nl - start) : r->end - r->pos;
            r->pos += nl ? n + 1 : n;
            r->scanned = 0;
            *lineno = r->line++;
            if (n > IMPORT_MAX_ROW) {
                snprintf(r->err, sizeof r->err, "line %" PRIu64 " is longer than %zu MiB, the most import reads",
                         *lineno, IMPORT_MAX_ROW >> 20);
                return R_FATAL;
            }
            if (n > 0 && start[n - 1] == '\r')
                n--;
            *s = start;
            *len = n;
            return R_ROW;
        }
        if (r->eof)
            return R_END;
        r->scanned = r->end - r->pos;
        int f = fill(r);
        if (f < 0)
            return R_FATAL;
    }
}

static int blank(const char *s, size_t n)
{
    return skip_ws(s, s + n) == s + n;
}

static void trim(const char **s, size_t *n)
{
    while (*n && is_ws(**s))
        (*s)++, (*n)--;
    while (*n && is_ws((*s)[*n - 1]))
        (*n)--;
}

/* Next element of the top-level array (or the single top-level value). */
static int next_json(struct reader *r, const char **s, size_t *len, uint64_t *lineno)
{
    for (;;) {
        if (r->jstate == 4)
            return R_END;
        /* Skip whitespace, counting lines, refilling as needed. */
        while (r->pos < r->end && is_ws(r->buf[r->pos])) {
            if (r->buf[r->pos] == '\n')
                r->line++;
            r->pos++;
        }
        if (r->pos == r->end) {
            int f = fill(r);
            if (f < 0)
                return R_FATAL;
            if (f > 0)
                continue;
            if (r->jstate == 0) {
                r->jstate = 4;
                return R_END; /* an empty file */
            }
            if (r->jstate == 1) {
                r->jstate = 4;
                snprintf(r->err, sizeof r->err, "line %" PRIu64 ": the file ends inside the array (no closing ']')",
                         r->line);
                return R_BAD;
            }
            r->jstate = 4;
            return R_END;
        }
        if (r->jstate == 0) {
            if (r->buf[r->pos] == '[') {
                r->pos++;
                r->jstate = 1;
                /* "[]" */
                while (r->pos < r->end || fill(r) > 0) {
                    char ch = r->buf[r->pos];
                    if (!is_ws(ch))
                        break;
                    if (ch == '\n')
                        r->line++;
                    r->pos++;
                }
                if (r->pos < r->end && r->buf[r->pos] == ']') {
                    r->pos++;
                    r->jstate = 2;
                }
            } else {
                r->jstate = 3;
            }
            continue;
        }
        if (r->jstate == 2) {
            snprintf(r->err, sizeof r->err, "line %" PRIu64 ": unexpected text after the array's closing ']'",
                     r->line);
            r->jstate = 4;
            return R_FATAL;
        }
        if (r->jstate == 3) {
            /* One value: the whole rest of the file. */
            *lineno = r->line;
            while (!r->eof) {
                if (fill(r) < 0)
                    return R_FATAL;
            }
            *s = r->buf + r->pos;
            *len = r->end - r->pos;
            trim(s, len);
            r->pos = r->end;
            r->jstate = 4;
            return R_ROW;
        }
        /* In the array: find this element's end. */
        if (r->scanned == 0) {
            memset(&r->sp, 0, sizeof r->sp);
            r->elem_line = r->line;
        }
        const char *from = r->buf + r->pos + r->scanned;
        const char *q = split_scan(&r->sp, from, r->buf + r->end, &r->line);
        if (!q) {
            r->scanned = r->end - r->pos;
            int f = fill(r);
            if (f < 0)
                return R_FATAL;
            if (f == 0) {
                r->jstate = 4;
                snprintf(r->err, sizeof r->err,
                         "line %" PRIu64 ": the file ends inside the array (element cut short or no closing ']')",
                         r->elem_line);
                return R_BAD;
            }
            if (r->end - r->pos > IMPORT_MAX_ROW + 1) {
                snprintf(r->err, sizeof r->err, "line %" PRIu64 ": an array element is longer than %zu MiB",
                         r->elem_line, IMPORT_MAX_ROW >> 20);
                return R_FATAL;
            }
            continue;
        }
        *s = r->buf + r->pos;
        *len = (size_t)(q - *s);
        *lineno = r->elem_line;
        if (*q == ']')
            r->jstate = 2;
        r->pos = (size_t)(q - r->buf) + 1;
        r->scanned = 0;
        trim(s, len);
        if (*len == 0) {
            snprintf(r->err, sizeof r->err, "line %" PRIu64 ": empty array element", *lineno);
            return R_BAD;
        }
        return R_ROW;
    }
}

/* Split the array literal [s, s+n) into element spans (trimmed). Returns the
 * number of elements, or -1 when it is not a well-formed array. */
static long split_array(const char *s, size_t n, const char ***spans, size_t *cap)
{
    const char *p = skip_ws(s, s + n), *end = s + n;
    if (p >= end || *p != '[')
        return -1;
    p = skip_ws(p + 1, end);
    long count = 0;
    if (p < end && *p == ']')
        return skip_ws(p + 1, end) == end ? 0 : -1;
    for (;;) {
        struct splitter st = {0, 0, 0};
        uint64_t dummy = 0;
        const char *q = split_scan(&st, p, end, &dummy);
        if (!q)
            return -1;
        const char *a = p;
        size_t len = (size_t)(q - p);
        trim(&a, &len);
        if (len == 0)
            return -1;
        if ((size_t)(2 * count + 2) > *cap) {
            *cap = *cap ? *cap * 2 : 64;
            *spans = xrealloc(*spans, *cap * sizeof **spans);
        }
        (*spans)[2 * count] = a;
        (*spans)[2 * count + 1] = a + len;
        count++;
        if (*q == ']')
            return skip_ws(q + 1, end) == end ? count : -1;
        p = q + 1;
    }
}

/* header-ndjson: the first non-blank line names the fields. */
static int read_header(struct reader *r)
{
    const char *s;
    size_t n;
    uint64_t ln;
    int rc;
    while ((rc = next_line(r, &s, &n, &ln)) == R_ROW && blank(s, n))
        ;
    if (rc == R_END) {
        r->have_header = 1;
        return R_END;
    }
    if (rc != R_ROW)
        return rc;
    const char **spans = NULL;
    size_t cap = 0;
    long cols = split_array(s, n, &spans, &cap);
    if (cols <= 0) {
        free(spans);
        snprintf(r->err, sizeof r->err,
                 "line %" PRIu64 ": the header must be a JSON array of field names, e.g. [\"id\",\"name\"]", ln);
        return R_FATAL;
    }
    size_t total = 0;
    for (long i = 0; i < cols; i++) {
        const char *a = spans[2 * i], *b = spans[2 * i + 1], *why = NULL;
        if (*a != '"' || skip_string(a, b) != b) {
            free(spans);
            snprintf(r->err, sizeof r->err, "line %" PRIu64 ": header field %ld is not a string", ln, i + 1);
            return R_FATAL;
        }
        char *tmp = xmalloc((size_t)(b - a));
        long dl = decode_string(a, b, tmp, &why);
        free(tmp);
        if (dl < 0) {
            free(spans);
            snprintf(r->err, sizeof r->err, "line %" PRIu64 ": header field %ld has %s", ln, i + 1, why);
            return R_FATAL;
        }
        total += (size_t)(b - a);
    }
    r->hdr = xmalloc(total + 1);
    r->hdr_off = xmalloc(sizeof(size_t) * ((size_t)cols + 1));
    size_t o = 0;
    for (long i = 0; i < cols; i++) {
        size_t l = (size_t)(spans[2 * i + 1] - spans[2 * i]);
        r->hdr_off[i] = o;
        memcpy(r->hdr + o, spans[2 * i], l);
        o += l;
    }
    r->hdr_off[cols] = o;
    r->ncols = (size_t)cols;
    r->have_header = 1;
    free(spans);
    return R_ROW;
}

/* Next row as JSON text. */
static int next_row(struct reader *r, const char **s, size_t *len, uint64_t *lineno)
{
    int rc;
    if (r->fmt == FMT_JSON)
        return next_json(r, s, len, lineno);
    if (r->fmt == FMT_HEADER_NDJSON && !r->have_header) {
        rc = read_header(r);
        if (rc != R_ROW)
            return rc;
    }
    while ((rc = next_line(r, s, len, lineno)) == R_ROW && blank(*s, *len))
        ;
    if (rc != R_ROW || r->fmt == FMT_NDJSON)
        return rc;

    /* header-ndjson: ["v1", 2, ...] -> {"f1":"v1","f2":2,...} */
    long cols = split_array(*s, *len, &r->spans, &r->spans_cap);
    const char **spans = r->spans;
    if (cols < 0) {
        snprintf(r->err, sizeof r->err, "line %" PRIu64 ": not a JSON array of values", *lineno);
        return R_BAD;
    }
    if ((size_t)cols != r->ncols) {
        snprintf(r->err, sizeof r->err, "line %" PRIu64 ": has %ld value%s, the header names %zu field%s", *lineno,
                 cols, cols == 1 ? "" : "s", r->ncols, r->ncols == 1 ? "" : "s");
        return R_BAD;
    }
    size_t need = r->hdr_off[r->ncols] + *len + 2 * r->ncols + 2;
    if (need > r->row_cap) {
        r->row_cap = need * 2;
        r->row = xrealloc(r->row, r->row_cap);
    }
    char *o = r->row;
    *o++ = '{';
    for (size_t i = 0; i < r->ncols; i++) {
        if (i)
            *o++ = ',';
        size_t nl = r->hdr_off[i + 1] - r->hdr_off[i];
        memcpy(o, r->hdr + r->hdr_off[i], nl);
        o += nl;
        *o++ = ':';
        size_t vl = (size_t)(spans[2 * i + 1] - spans[2 * i]);
        memcpy(o, spans[2 * i], vl);
        o += vl;
    }
    *o++ = '}';
    *s = r->row;
    *len = (size_t)(o - r->row);
    return R_ROW;
}

/* ------------------------------------------------------------------------
 * Batches
 * ---------------------------------------------------------------------- */

struct row {
    uint64_t line;
    size_t val_off, val_len; /* val_off == SIZE_MAX: tombstone (--history) */
    size_t ns_off, key_off;  /* NUL-terminated strings in the arena */
    /* --history */
    int64_t ts;
    char node_id[33];
    char write_id[65];
    char prev[65];
};

struct importer {
    struct cli *c;
    char *ns;          /* NS argument without a trailing '/' (NULL: --history without NS) */
    const char *shown; /* the file, for messages */
    size_t batch;
    struct row *rows;
    size_t nrows;
    char *arena;
    size_t alen, acap;
    kd_write *writes;
    kd_import *imps;
    uint64_t next_seq;   /* generated keys */
    uint64_t committed;  /* rows written */
    uint64_t skipped;    /* bad rows left out (--skip-bad) */
    uint64_t other_ns;   /* --history NS: records of other namespaces */
    struct progress prog;
    uint64_t bad_line;   /* line of the row that stopped the import */
    int fatal;           /* stopped by something --skip-bad cannot skip */
    char bad_msg[1024];
};

static size_t arena_put(struct importer *im, const char *s, size_t n, int nul)
{
    size_t need = im->alen + n + 1;
    if (need > im->acap) {
        im->acap = need > 2 * im->acap ? need : 2 * im->acap;
        im->arena = xrealloc(im->arena, im->acap);
    }
    size_t off = im->alen;
    memcpy(im->arena + off, s, n);
    im->alen += n;
    if (nul)
        im->arena[im->alen++] = '\0';
    return off;
}

/* A bad row: with --skip-bad report it and go on (CLI_OK), otherwise keep
 * the message for the final error and stop (CLI_INVALID or `status`). */
static int bad_row(struct importer *im, int status, uint64_t line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int bad_row(struct importer *im, int status, uint64_t line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(im->bad_msg, sizeof im->bad_msg, fmt, ap);
    va_end(ap);
    progress_clear(&im->prog);
    if (im->c->skip_bad) {
        im->skipped++;
        if (line)
            cli_error(CLI_OK, im->shown, "line %" PRIu64 ": %s (skipped)", line, im->bad_msg);
        else
            cli_error(CLI_OK, im->shown, "%s (skipped)", im->bad_msg);
        return CLI_OK;
    }
    im->bad_line = line;
    return status;
}

/* Which write of the batch the library refused, from its message
 * ("batch write 12 (ns/key): ...", "import 12 (ns/key): ..."); *detail is
 * the message without that prefix. -1 when it does not say. */
static long failed_index(const char *msg, size_t n, const char **detail)
{
    *detail = msg;
    const char *p = NULL;
    if (strncmp(msg, "batch write ", 12) == 0)
        p = msg + 12;
    else if (strncmp(msg, "import ", 7) == 0)
        p = msg + 7;
    if (!p || *p < '0' || *p > '9')
        return n == 1 ? 0 : -1;
    char *q;
    unsigned long long idx = strtoull(p, &q, 10);
    if (idx >= n)
        return -1;
    if (*q == ' ' && q[1] == '(') {
        const char *close = strstr(q, "): ");
        if (close)
            q = (char *)close + 1;
    }
    if (*q == ':' && q[1] == ' ')
        *detail = q + 2;
    return (long)idx;
}

/* Is this library status about one row (rather than the database)? */
static int row_error(int rc)
{
    return rc == KD_EINVALID || rc == KD_ETOOBIG || rc == KD_ERESERVED || rc == KD_ECONFLICT || rc == KD_ENOTFOUND ||
           rc == KD_EDELETED;
}

/* Write the batch; with --skip-bad, rows the library refuses are reported
 * and dropped and the rest is written. */
/* import --history -w W where W does not exist: W is created just before
 * the first version imported (1 ns earlier), which works in a database
 * whose writes are all older than the history (a fresh one), as the
 * history itself needs; then the import goes on in W. */
static void created_workspace(struct importer *im, int64_t first)
{
    char t[40], *shown = cli_display(im->c->workspace, NULL, 200);
    cli_time(first - 1, t);
    progress_clear(&im->prog);
    fprintf(stderr, "created workspace %s at %s, just before the first version it imports\n", shown, t);
    free(shown);
    im->c->ws_missing = 0;
}

/* W is made only once the first batch is known to import
 * (kd_workspace_import, or its route through a server): a W made for a
 * history it then refused could never take one. Locally the import goes
 * on through a handle on W; through a server, on W's routes. */
static int import_first_batch(struct importer *im, size_t n)
{
    struct cli *c = im->c;
    int created = 0;
    int rc = st_workspace_import(c, c->workspace, im->imps, n, &created);
    if (rc == KD_OK && !c->remote) {
        kd_db *ws = NULL;
        if ((rc = kd_workspace_open(c->db, c->workspace, &ws)) != KD_OK)
            return rc;
        c->core = c->db;
        c->db = ws;
    }
    if (rc == KD_OK && created)
        created_workspace(im, im->imps[0].timestamp);
    else if (rc == KD_OK)
        c->ws_missing = 0; /* made meanwhile by someone else: it took the versions */
    return rc;
}

static int flush(struct importer *im)
{
    while (im->nrows > 0) {
        size_t n = im->nrows;
        int rc;
        if (im->c->history) {
            for (size_t i = 0; i < n; i++) {
                struct row *w = &im->rows[i];
                im->imps[i] = (kd_import){im->arena + w->ns_off,
                                          im->arena + w->key_off,
                                          w->val_off == SIZE_MAX ? NULL : im->arena + w->val_off,
                                          w->val_off == SIZE_MAX ? 0 : w->val_len,
                                          w->ts,
                                          w->node_id,
                                          w->prev,
                                          w->write_id};
            }
            rc = im->c->ws_missing ? import_first_batch(im, n) : st_import_versions(im->c, im->imps, n);
        } else {
            for (size_t i = 0; i < n; i++) {
                struct row *w = &im->rows[i];
                im->writes[i] = (kd_write){im->ns, im->arena + w->key_off, im->arena + w->val_off, w->val_len, NULL};
            }
            rc = st_put_batch(im->c, im->writes, n, NULL);
        }
        if (rc == KD_OK) {
            im->committed += n;
            im->nrows = 0;
            im->alen = 0;
            progress_poll(&im->prog, im->committed, 0);
            return CLI_OK;
        }
        if (!row_error(rc)) {
            /* The database's failure (a full disk, say), not a row's: it
             * stops the import; say where, and what was committed. */
            progress_clear(&im->prog);
            const char *why = st_errmsg(im->c);
            im->bad_line = im->rows[0].line;
            snprintf(im->bad_msg, sizeof im->bad_msg, "%s", why && *why ? why : kd_strerror(rc));
            return cli_error(cli_exit_status(rc), im->shown,
                             "lines %" PRIu64 "-%" PRIu64 ": %s; import stopped, %" PRIu64 " row%s committed before them",
                             im->rows[0].line, im->rows[n - 1].line, im->bad_msg, im->committed,
                             im->committed == 1 ? "" : "s");
        }
        const char *detail;
        long idx = failed_index(st_errmsg(im->c), n, &detail);
        if (idx < 0 && rc == KD_ETOOBIG) {
            /* The batch as a whole is too large (for one log record, or
             * for one request to a server: its --max-body): no row is to
             * blame and --skip-bad cannot help, smaller batches can. */
            progress_clear(&im->prog);
            snprintf(im->bad_msg, sizeof im->bad_msg, "lines %" PRIu64 "-%" PRIu64 ": %s: the batch is too large, use a smaller --batch",
                     im->rows[0].line, im->rows[n - 1].line, detail);
            im->fatal = 1;
            return CLI_INVALID;
        }
        if (idx < 0) {
            /* The library did not say which row: name the batch's lines. */
            int st = bad_row(im, cli_exit_status(rc), 0, "lines %" PRIu64 "-%" PRIu64 ": %s", im->rows[0].line,
                             im->rows[n - 1].line, detail);
            if (st != CLI_OK)
                return st;
            im->skipped += n - 1; /* the whole batch is left out */
            im->nrows = 0;
            im->alen = 0;
            return CLI_OK;
        }
        int st = bad_row(im, cli_exit_status(rc), im->rows[idx].line, "%s", detail);
        if (st != CLI_OK)
            return st;
        memmove(&im->rows[idx], &im->rows[idx + 1], (n - (size_t)idx - 1) * sizeof *im->rows);
        im->nrows--;
    }
    return CLI_OK;
}

/* ------------------------------------------------------------------------
 * Rows -> writes
 * ---------------------------------------------------------------------- */

/* The key of a row from --key FIELD into the arena. CLI_OK, or a bad row. */
static int key_from_field(struct importer *im, const char *s, size_t len, uint64_t line, size_t *key_off)
{
    const char *vs, *ve, *why = "";
    int f = find_path(s, s + len, im->c->key_field, &vs, &ve, &why);
    if (f < 0) {
        /* Let the library say what is wrong with the JSON, if anything. */
        char err[512] = "";
        char *canon = NULL;
        size_t clen = 0;
        if (kd_json_canonical(s, len, &canon, &clen, err, sizeof err) != KD_OK) {
            kd_free(canon);
            return bad_row(im, CLI_INVALID, line, "%s", err);
        }
        kd_free(canon);
        return bad_row(im, CLI_INVALID, line, "the row %s, so it has no field '%s' (--key)", why, im->c->key_field);
    }
    if (f == 0)
        return bad_row(im, CLI_INVALID, line, "no field '%s' (--key)", im->c->key_field);
    if (*vs == '"') {
        size_t cap = (size_t)(ve - vs);
        size_t need = im->alen + cap + 1;
        if (need > im->acap) {
            im->acap = need > 2 * im->acap ? need : 2 * im->acap;
            im->arena = xrealloc(im->arena, im->acap);
        }
        long n = decode_string(vs, ve, im->arena + im->alen, &why);
        if (n < 0)
            return bad_row(im, CLI_INVALID, line, "field '%s' (--key) has %s", im->c->key_field, why);
        if (n == 0)
            return bad_row(im, CLI_INVALID, line, "field '%s' (--key) is an empty string", im->c->key_field);
        *key_off = im->alen;
        im->alen += (size_t)n;
        im->arena[im->alen++] = '\0';
        return CLI_OK;
    }
    if (*vs == '-' || (*vs >= '0' && *vs <= '9')) {
        *key_off = arena_put(im, vs, (size_t)(ve - vs), 1);
        return CLI_OK;
    }
    const char *kind = *vs == '{' ? "an object" : *vs == '[' ? "an array" : *vs == 'n' ? "null" : "a boolean";
    return bad_row(im, CLI_INVALID, line, "field '%s' (--key) is %s, not a string or number", im->c->key_field, kind);
}

static int add_row(struct importer *im, const char *s, size_t len, uint64_t line)
{
    size_t mark = im->alen;
    struct row *w = &im->rows[im->nrows];
    w->line = line;
    if (im->c->key_field) {
        int st = key_from_field(im, s, len, line, &w->key_off);
        if (st != CLI_OK || im->alen == mark) {
            im->alen = mark;
            return st;
        }
    } else {
        char key[32];
        if (im->next_seq > 999999999999ull) {
            progress_clear(&im->prog);
            return cli_error(CLI_INVALID, im->shown, "line %" PRIu64 ": generated keys are exhausted (%d digits)",
                             line, KEY_DIGITS);
        }
        int kl = snprintf(key, sizeof key, "%0*" PRIu64, KEY_DIGITS, im->next_seq++);
        w->key_off = arena_put(im, key, (size_t)kl, 1);
    }
    w->val_off = arena_put(im, s, len, 0);
    w->val_len = len;
    im->nrows++;
    return CLI_OK;
}

/* The string member value [vs, ve) decoded into the arena. */
static int history_string(struct importer *im, const char *vs, const char *ve, size_t *off, const char **why)
{
    if (*vs != '"') {
        *why = "is not a string";
        return -1;
    }
    size_t need = im->alen + (size_t)(ve - vs) + 1;
    if (need > im->acap) {
        im->acap = need > 2 * im->acap ? need : 2 * im->acap;
        im->arena = xrealloc(im->arena, im->acap);
    }
    long n = decode_string(vs, ve, im->arena + im->alen, why);
    if (n < 0)
        return -1;
    *off = im->alen;
    im->alen += (size_t)n;
    im->arena[im->alen++] = '\0';
    return 0;
}

/* An id member: null/absent -> "", else a string of `hexlen` hex digits. */
static int history_id(const char *vs, const char *ve, char *out, size_t hexlen)
{
    out[0] = '\0';
    if (!vs || (ve - vs == 4 && memcmp(vs, "null", 4) == 0))
        return 0;
    if ((size_t)(ve - vs) != hexlen + 2 || *vs != '"')
        return -1;
    for (size_t i = 0; i < hexlen; i++) {
        char ch = vs[1 + i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            return -1;
    }
    memcpy(out, vs + 1, hexlen);
    out[hexlen] = '\0';
    return 0;
}

/* One version record of an `export --history` file. */
static int add_history_row(struct importer *im, const char *s, size_t len, uint64_t line)
{
    enum { F_NS, F_KEY, F_VALUE, F_WRITE, F_PREV, F_TS, F_DELETED, F_NODE, F_N };
    static const char *const names[F_N] = {"namespace", "key", "value", "write_id",
                                           "previous_write_id", "timestamp", "deleted", "node_id"};
    const char *vs[F_N] = {0}, *ve[F_N] = {0};
    struct members m = {s, s + len, 0};
    const char *a, *b, *c, *d, *why = "";
    int r;
    while ((r = next_member(&m, &a, &b, &c, &d)) == 1)
        for (int f = 0; f < F_N; f++)
            if (string_equals(a, b, names[f], strlen(names[f])))
                vs[f] = c, ve[f] = d;
    if (r < 0) {
        /* Not bad_msg: bad_row formats into it. */
        char err[512] = "";
        char *canon = NULL;
        size_t clen = 0;
        if (kd_json_canonical(s, len, &canon, &clen, err, sizeof err) == KD_OK)
            snprintf(err, sizeof err, "not a version record (a JSON object)");
        kd_free(canon);
        return bad_row(im, CLI_INVALID, line, "%s", err);
    }
    for (int f = 0; f < F_N; f++)
        if (!vs[f] && f != F_PREV)
            return bad_row(im, CLI_INVALID, line, "not a version record: no \"%s\" (was it written by export --history?)",
                           names[f]);
    size_t mark = im->alen;
    struct row *w = &im->rows[im->nrows];
    w->line = line;
    if (history_string(im, vs[F_NS], ve[F_NS], &w->ns_off, &why) < 0) {
        im->alen = mark;
        return bad_row(im, CLI_INVALID, line, "\"namespace\" %s", why);
    }
    if (im->ns && strcmp(im->arena + w->ns_off, im->ns) != 0) {
        im->alen = mark;
        im->other_ns++;
        return CLI_OK;
    }
    if (history_string(im, vs[F_KEY], ve[F_KEY], &w->key_off, &why) < 0) {
        im->alen = mark;
        return bad_row(im, CLI_INVALID, line, "\"key\" %s", why);
    }
    int deleted;
    if (ve[F_DELETED] - vs[F_DELETED] == 4 && memcmp(vs[F_DELETED], "true", 4) == 0)
        deleted = 1;
    else if (ve[F_DELETED] - vs[F_DELETED] == 5 && memcmp(vs[F_DELETED], "false", 5) == 0)
        deleted = 0;
    else {
        im->alen = mark;
        return bad_row(im, CLI_INVALID, line, "\"deleted\" must be true or false");
    }
    if (history_id(vs[F_WRITE], ve[F_WRITE], w->write_id, 64) < 0 || !w->write_id[0] ||
        history_id(vs[F_PREV], ve[F_PREV], w->prev, 64) < 0) {
        im->alen = mark;
        return bad_row(im, CLI_INVALID, line, "\"write_id\" and \"previous_write_id\" must be 64 hex digits");
    }
    if (history_id(vs[F_NODE], ve[F_NODE], w->node_id, 32) < 0 || !w->node_id[0]) {
        im->alen = mark;
        return bad_row(im, CLI_INVALID, line, "\"node_id\" must be 32 hex digits");
    }
    size_t ts_off;
    char err[256] = "";
    if (history_string(im, vs[F_TS], ve[F_TS], &ts_off, &why) < 0 || !((im->arena[ts_off] >= '0' &&
                                                                        im->arena[ts_off] <= '9') ||
                                                                       im->arena[ts_off] == '@') ||
        kd_time_parse(im->arena + ts_off, &w->ts, err, sizeof err) != KD_OK) {
        im->alen = mark;
        return bad_row(im, CLI_INVALID, line, "\"timestamp\" must be an RFC 3339 time%s%s", err[0] ? ": " : "", err);
    }
    im->alen = ts_off; /* the text is not needed any more */
    if (deleted) {
        w->val_off = SIZE_MAX;
        w->val_len = 0;
    } else {
        w->val_off = arena_put(im, vs[F_VALUE], (size_t)(ve[F_VALUE] - vs[F_VALUE]), 0);
        w->val_len = (size_t)(ve[F_VALUE] - vs[F_VALUE]);
    }
    im->nrows++;
    return CLI_OK;
}

/* ------------------------------------------------------------------------
 * Generated keys
 * ---------------------------------------------------------------------- */

/* kd_scan callback: is there a key with the prefix, and is it the prefix
 * itself? (The first one suffices.) */
struct first_key {
    const char *prefix;
    int found, exact;
};

static int note_first_key(void *ctx, const char *key, const char *value, size_t len, const kd_version *v)
{
    struct first_key *f = ctx;
    (void)value;
    (void)len;
    (void)v;
    f->found = 1;
    f->exact = strcmp(key, f->prefix) == 0;
    return 0;
}

/* The greatest live key of NS made of exactly KEY_DIGITS digits, found
 * digit by digit from the top with prefix scans of one key. 1 found (in
 * out), 0 none, < 0 a library error. */
static int greatest_generated(struct cli *c, const char *ns, char *prefix, size_t plen, char *out)
{
    for (int d = 9; d >= 0; d--) {
        prefix[plen] = (char)('0' + d);
        prefix[plen + 1] = '\0';
        struct first_key f = {prefix, 0, 0};
        int rc = st_scan(c, ns, prefix, NULL, 1, KD_TIME_MAX, note_first_key, &f);
        if (rc != KD_OK)
            return rc;
        if (!f.found)
            continue;
        if (plen + 1 == KEY_DIGITS) {
            if (f.exact) {
                memcpy(out, prefix, KEY_DIGITS + 1);
                return 1;
            }
            continue;
        }
        int r = greatest_generated(c, ns, prefix, plen + 1, out);
        if (r != 0)
            return r;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * The command
 * ---------------------------------------------------------------------- */

static int parse_format(const char *s, enum fmt *out)
{
    if (!s || strcmp(s, "ndjson") == 0)
        *out = FMT_NDJSON;
    else if (strcmp(s, "json") == 0)
        *out = FMT_JSON;
    else if (strcmp(s, "header-ndjson") == 0)
        *out = FMT_HEADER_NDJSON;
    else
        return 0;
    return 1;
}

static void print_summary(struct importer *im, struct reader *r, double secs, int status)
{
    uint64_t versions = im->committed;
    if (im->c->json) {
        printf("{\"ok\":%s,\"rows\":%" PRIu64 ",\"versions\":%" PRIu64 ",\"skipped\":%" PRIu64 ",\"bytes\":%" PRIu64
               ",\"seconds\":%.3f",
               status == CLI_OK ? "true" : "false", im->committed, versions, im->skipped, r->bytes, secs);
        if (im->c->history && im->ns)
            printf(",\"other_namespaces\":%" PRIu64, im->other_ns);
        if (status != CLI_OK && im->bad_msg[0]) {
            printf(",\"line\":%" PRIu64 ",\"error\":", im->bad_line);
            cli_print_json_string(im->bad_msg, strlen(im->bad_msg));
        }
        fputs("}\n", stdout);
        return;
    }
    if (status != CLI_OK)
        return; /* the error line says it all */
    char extra[128] = "";
    if (im->skipped)
        snprintf(extra, sizeof extra, ", %" PRIu64 " bad row%s skipped", im->skipped, im->skipped == 1 ? "" : "s");
    if (im->c->history && im->ns && im->other_ns)
        snprintf(extra + strlen(extra), sizeof extra - strlen(extra),
                 ", %" PRIu64 " record%s of other namespaces left out", im->other_ns, im->other_ns == 1 ? "" : "s");
    fprintf(stderr, "imported %" PRIu64 " row%s: %" PRIu64 " version%s, %" PRIu64 " bytes in %.2f s (%.0f rows/s)%s\n",
            im->committed, im->committed == 1 ? "" : "s", versions, versions == 1 ? "" : "s", r->bytes, secs,
            secs > 0 ? (double)im->committed / secs : 0.0, extra);
}

int cmd_import(struct cli *c)
{
    struct importer im;
    struct reader r;
    memset(&im, 0, sizeof im);
    memset(&r, 0, sizeof r);
    r.fd = -1;
    enum fmt fmt;
    int status = CLI_OK;
    char *shown = NULL;

    if (!parse_format(c->format, &fmt))
        return cli_error(CLI_USAGE, "--format", "unknown format '%s' (use ndjson, json or header-ndjson)", c->format);
    if (c->history) {
        if (c->key_field)
            return cli_error(CLI_USAGE, "--key", "cannot be used with --history (records carry their keys)");
        if (fmt == FMT_HEADER_NDJSON)
            return cli_error(CLI_USAGE, "--format", "--history reads ndjson or json, as export --history writes");
        im.ns = c->nargs == 2 ? cli_ns_arg(c->args[0]) : NULL;
    } else {
        if (c->nargs != 2)
            return cli_error(CLI_USAGE, "import", "missing arguments: usage: kdelta import NS FILE (try 'kdelta help import')");
        im.ns = cli_ns_arg(c->args[0]);
    }
    const char *file = c->args[c->nargs - 1];
    if (c->key_field && (!*c->key_field || c->key_field[0] == '.' || c->key_field[strlen(c->key_field) - 1] == '.' ||
                         strstr(c->key_field, ".."))) {
        free(im.ns);
        return cli_error(CLI_USAGE, "--key", "expected a field name or a dotted path such as user.id, got '%s'",
                         c->key_field);
    }
    if (im.ns && (status = cli_check_name(im.ns, NULL)) != CLI_OK) {
        free(im.ns);
        return status;
    }
    im.c = c;
    im.batch = c->batch > 0 ? (size_t)c->batch : 1000;

    /* Open the input. */
    if (strcmp(file, "-") == 0) {
        r.fd = STDIN_FILENO;
        shown = xstrdup("stdin");
    } else {
        shown = cli_display(file, NULL, 200);
        r.fd = open(file, O_RDONLY | O_CLOEXEC);
        if (r.fd < 0) {
            status = cli_error(CLI_ERROR, shown, "cannot open: %s", strerror(errno));
            goto done;
        }
    }
    im.shown = shown;
    r.name = shown;
    r.fmt = fmt;
    r.line = 1;
    r.cap = IMPORT_READ_CHUNK;
    r.buf = xmalloc(r.cap);
    struct stat st;
    uint64_t total = 0;
    if (fstat(r.fd, &st) == 0 && S_ISREG(st.st_mode)) {
        total = (uint64_t)st.st_size;
        posix_fadvise(r.fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    }

    /* A workspace's history goes into a workspace that does not exist yet
     * (its creation, a write of its own, must come before the history):
     * made by the first flush (import_first_batch_local,
     * create_workspace_remote). */
    c->ws_may_be_missing = c->history && c->workspace;
    if ((status = cli_open(c)) != CLI_OK)
        goto done;
    if (!c->history && !c->key_field) {
        char prefix[KEY_DIGITS + 2], top[KEY_DIGITS + 2];
        int g = greatest_generated(c, im.ns, prefix, 0, top);
        if (g < 0) {
            status = cli_kd_error(c, g, shown);
            goto done;
        }
        im.next_seq = g ? strtoull(top, NULL, 10) + 1 : 1;
    }
    im.rows = xmalloc(im.batch * sizeof *im.rows);
    if (c->history)
        im.imps = xmalloc(im.batch * sizeof *im.imps);
    else
        im.writes = xmalloc(im.batch * sizeof *im.writes);
    im.acap = 1 << 20;
    im.arena = xmalloc(im.acap);

    uint64_t t0 = progress_now_ns();
    progress_start(&im.prog, total);
    for (;;) {
        const char *s;
        size_t len;
        uint64_t line = 0;
        int rr = next_row(&r, &s, &len, &line);
        if (rr == R_END)
            break;
        if (rr == R_FATAL) {
            progress_clear(&im.prog);
            snprintf(im.bad_msg, sizeof im.bad_msg, "%s", r.err);
            im.fatal = 1;
            status = r.err[0] == 'c' ? CLI_ERROR : CLI_INVALID; /* "cannot read: ..." */
            break;
        }
        if (rr == R_BAD) {
            if (!c->history && !c->key_field)
                im.next_seq++; /* its key is not reused, as for a row the library refuses */
            status = bad_row(&im, CLI_INVALID, 0, "%s", r.err);
            if (status != CLI_OK)
                break;
            continue;
        }
        status = c->history ? add_history_row(&im, s, len, line) : add_row(&im, s, len, line);
        if (status != CLI_OK)
            break;
        if (im.nrows == im.batch && (status = flush(&im)) != CLI_OK)
            break;
        progress_update(&im.prog, im.committed + im.nrows, r.bytes);
    }
    if (status == CLI_OK)
        status = flush(&im);
    progress_clear(&im.prog);
    double secs = (double)(progress_now_ns() - t0) / 1e9;

    if (status != CLI_OK && im.bad_msg[0]) {
        /* One line: where, what, and what was kept. */
        char where[64] = "";
        if (im.bad_line)
            snprintf(where, sizeof where, "line %" PRIu64 ": ", im.bad_line);
        cli_error(status, shown, "%s%s; import stopped, %" PRIu64 " row%s committed before it%s", where, im.bad_msg,
                  im.committed, im.committed == 1 ? "" : "s",
                  c->skip_bad || im.fatal ? "" : " (--skip-bad goes on past bad rows)");
    }
    print_summary(&im, &r, secs, status);

done:
    if (r.fd > STDIN_FILENO)
        close(r.fd);
    free(r.buf);
    free(r.hdr);
    free(r.hdr_off);
    free(r.row);
    free(r.spans);
    free(im.rows);
    free(im.writes);
    free(im.imps);
    free(im.arena);
    free(im.ns);
    free(shown);
    return cli_finish_output(status);
}
