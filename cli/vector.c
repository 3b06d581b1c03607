/*
 * vector.c — `kdelta vector put|get|log|delete|search|stats`: float32
 * vectors (embeddings) kept as versioned values next to the data, and
 * similarity search over them, now or as they were at a past time
 * (docs/VECTORS.md; the library's kd_vector_* through store_vector.c, so
 * the same output locally and with --url).
 *
 * A VECTOR argument is a JSON array of numbers, given as text, '-' (stdin)
 * or @FILE like set's VALUE, read with kd_vector_parse (each number rounded
 * to the nearest float32). Everything a command line can get wrong (the
 * vector, --meta, --model, --metric, --min-score, --filter, --at) is
 * checked before the database is opened; the rest (dimensions, zero
 * vectors, names) is the library's to judge, in its words.
 *
 * Numbers are shown as the shortest decimal that reads back to the same
 * float32 (kd_vector_to_json), so output can be pasted back exactly. The
 * --json objects are those of the HTTP API (server/routes_vector.c): a
 * vector record, {"hits":[…]}, {"stats":[…]}.
 */
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "store.h"

/* ------------------------------------------------------------------------
 * Subcommands and their options
 * ---------------------------------------------------------------------- */

#define VO_MODEL 1u  /* --model */
#define VO_META 2u   /* --meta */
#define VO_AT 4u     /* --at */
#define VO_LOG 8u    /* --limit, --reverse */
#define VO_SEARCH 16u /* --filter, -k/--top, --metric, --min-score, --ef */

static int vector_put(struct cli *c);
static int vector_get(struct cli *c);
static int vector_log(struct cli *c);
static int vector_delete(struct cli *c);
static int vector_search(struct cli *c);
static int vector_stats(struct cli *c);

static const struct {
    const char *name;
    int (*run)(struct cli *c);
    int min_args, max_args; /* after the subcommand */
    unsigned opts;
    const char *usage;
} subs[] = {
    {"put", vector_put, 2, 2, VO_MODEL | VO_META, "NS/KEY VECTOR --model M [--meta JSON]"},
    {"get", vector_get, 1, 1, VO_AT, "NS/KEY [--at TIME]"},
    {"log", vector_log, 1, 1, VO_LOG, "NS/KEY [--limit N] [--reverse]"},
    {"delete", vector_delete, 1, 1, 0, "NS/KEY"},
    {"search", vector_search, 1, 2, VO_AT | VO_MODEL | VO_SEARCH,
     "[NS] VECTOR [-k N] [--at TIME] [--filter EXPR] [--metric cosine|dot|l2] [--model M] [--min-score S] [--ef N]"},
    {"stats", vector_stats, 0, 1, 0, "[NS]"},
};

#define NSUBS (sizeof subs / sizeof subs[0])

/* The first option given that `opts` does not allow, or NULL. */
static const char *stray_option(const struct cli *c, const struct cli_vector_options *vo, unsigned opts)
{
    if (!(opts & VO_MODEL) && vo->model)
        return "--model";
    if (!(opts & VO_META) && vo->meta)
        return "--meta";
    if (!(opts & VO_AT) && c->at)
        return "--at";
    if (!(opts & VO_LOG) && c->limit_set)
        return "--limit";
    if (!(opts & VO_LOG) && c->reverse)
        return "--reverse";
    if (!(opts & VO_SEARCH)) {
        if (c->filter)
            return "--filter";
        if (vo->top)
            return "-k/--top";
        if (vo->metric)
            return "--metric";
        if (vo->min_score)
            return "--min-score";
        if (vo->ef_set)
            return "--ef";
    }
    return NULL;
}

int cmd_vector(struct cli *c)
{
    const char *sub = c->args[0];
    size_t i = 0;
    while (i < NSUBS && strcmp(subs[i].name, sub) != 0)
        i++;
    if (i == NSUBS) {
        char *shown = cli_display(sub, NULL, 60);
        int status = cli_error(CLI_USAGE, "vector",
                               "unknown subcommand '%s' (use put, get, log, delete, search or stats; try 'kdelta help "
                               "vector')",
                               shown);
        free(shown);
        return status;
    }
    int n = c->nargs - 1;
    char what[32];
    snprintf(what, sizeof what, "vector %s", subs[i].name);
    if (n < subs[i].min_args || n > subs[i].max_args)
        return cli_error(CLI_USAGE, what, "%s arguments: usage: kdelta vector %s %s (try 'kdelta help vector')",
                         n < subs[i].min_args ? "missing" : "too many", subs[i].name, subs[i].usage);
    const char *stray = stray_option(c, &c->vector, subs[i].opts);
    if (stray)
        return cli_error(CLI_USAGE, stray, "is not an option of '%s' (try 'kdelta help vector')", what);
    return subs[i].run(c);
}

/* ------------------------------------------------------------------------
 * Reading the command line
 * ---------------------------------------------------------------------- */

/* VECTOR as typed (JSON text, '-' or @FILE) into floats (kd_free). */
static int read_vector_arg(const char *arg, float **v, size_t *dim)
{
    char *text = NULL, err[512];
    size_t len = 0;
    int status = cli_read_value(arg, "vector", &text, &len);
    if (status != CLI_OK)
        return status;
    int rc = kd_vector_parse(text, len, v, dim, err, sizeof err);
    free(text);
    if (rc == KD_EINVALID)
        return cli_error(CLI_INVALID, "vector", "%s (a vector is a JSON array of numbers, e.g. '[0.1, -2, 3e-4]')",
                         err);
    if (rc != KD_OK)
        return cli_error(cli_exit_status(rc), "vector", "%s", kd_strerror(rc));
    return CLI_OK;
}

/* A model name must travel as JSON text (to a server as well). */
static int check_model(const char *model)
{
    char *q = NULL;
    size_t ql;
    int rc = kd_json_quote(model, strlen(model), &q, &ql);
    kd_free(q);
    if (rc != KD_OK)
        return cli_error(CLI_INVALID, "--model", "the model name is not valid UTF-8");
    return CLI_OK;
}

static int parse_at(const struct cli *c, int64_t *at)
{
    char err[512];
    if (c->at && kd_time_parse(c->at, at, err, sizeof err) != KD_OK)
        return cli_error(CLI_INVALID, "--at", "%s", err);
    return CLI_OK;
}

/* ------------------------------------------------------------------------
 * Output
 * ---------------------------------------------------------------------- */

/* Short form of an id for people: the first 12 hex digits. */
static const char *short_id(const char *id, char *buf)
{
    size_t n = strnlen(id, 12);
    memcpy(buf, id, n);
    buf[n] = '\0';
    return buf;
}

/* A float32 as the API writes it (buf >= 48): the shortest decimal that
 * reads back to it, or "inf", "-inf", "nan" — quoted when `json`. */
static const char *float_text(float f, int json, char *buf)
{
    const char *special = isnan(f) ? "nan" : isinf(f) ? (f < 0 ? "-inf" : "inf") : NULL;
    if (special) {
        snprintf(buf, 48, json ? "\"%s\"" : "%s", special);
        return buf;
    }
    char *t = NULL;
    size_t tl = 0;
    if (kd_vector_to_json(&f, 1, &t, &tl) == KD_OK && tl >= 2 && tl < 48)
        snprintf(buf, 48, "%.*s", (int)(tl - 2), t + 1);
    else
        snprintf(buf, 48, "%.9g", (double)f);
    kd_free(t);
    return buf;
}

static void print_id(const char *name, const char *id)
{
    if (id[0])
        printf(",\"%s\":\"%s\"", name, id);
    else
        printf(",\"%s\":null", name);
}

/* The vector record (no newline): v, or NULL for a tombstone. */
static int print_record(const char *ns, const char *key, const kd_vector *v, const kd_version *ver)
{
    char t[48];
    int status;
    fputs("{\"namespace\":", stdout);
    if ((status = cli_print_json_string(ns, strlen(ns))) != CLI_OK)
        return status;
    fputs(",\"key\":", stdout);
    if ((status = cli_print_json_string(key, strlen(key))) != CLI_OK)
        return status;
    if (v) {
        char *arr = NULL;
        size_t alen = 0;
        int rc = kd_vector_to_json(v->values, v->dim, &arr, &alen);
        if (rc != KD_OK)
            return cli_error(cli_exit_status(rc), "output", "cannot write the vector as JSON: %s", kd_strerror(rc));
        fputs(",\"model\":", stdout);
        status = cli_print_json_string(v->model, strlen(v->model));
        if (status == CLI_OK) {
            printf(",\"dim\":%zu,\"vector\":", v->dim);
            fwrite(arr, 1, alen, stdout);
            fputs(",\"meta\":", stdout);
            fwrite(v->meta, 1, v->meta_len, stdout);
        }
        kd_free(arr);
        if (status != CLI_OK)
            return status;
    } else {
        fputs(",\"model\":null,\"dim\":null,\"vector\":null,\"meta\":null", stdout);
    }
    print_id("version_id", ver->version_id);
    print_id("write_id", ver->write_id);
    print_id("previous_write_id", ver->previous_write_id);
    printf(",\"timestamp\":\"%s\",\"deleted\":%s", cli_time_utc(ver->timestamp, t), ver->deleted ? "true" : "false");
    if (ver->pruned) /* as in a key's history */
        printf(",\"pruned_by\":\"%s\",\"pruned\":true", ver->pruned == KD_PRUNED_WORKSPACE ? "workspace_drop" : "retention");
    fputc('}', stdout);
    return CLI_OK;
}

/* One version for people, as `kdelta log` shows a value's. */
static void print_block(struct cli *c, const kd_vector *v, const kd_version *ver, int first)
{
    char t[40];
    const char *reset = cli_sgr(c, CLI_RESET);
    if (!first)
        fputc('\n', stdout);
    printf("write    %s%s%s\n", cli_sgr(c, CLI_YELLOW), ver->write_id, reset);
    printf("time     %s\n", cli_time(ver->timestamp, t));
    if (ver->deleted)
        printf("version  %sdeleted%s\n", cli_sgr(c, CLI_RED), reset);
    else
        printf("version  %s\n", ver->version_id);
    printf("parent   %s\n", ver->previous_write_id[0] ? ver->previous_write_id : "none");
    if (ver->pruned)
        printf("vector   %s(removed %s)%s\n", cli_sgr(c, CLI_DIM),
               ver->pruned == KD_PRUNED_WORKSPACE ? "with its dropped workspace" : "by retention", reset);
    if (!v)
        return;
    char *model = cli_display(v->model, NULL, 0), *arr = NULL;
    size_t alen = 0;
    printf("model    %s\ndim      %zu\nmeta     ", model, v->dim);
    fwrite(v->meta, 1, v->meta_len, stdout);
    fputs("\nvector   ", stdout);
    if (kd_vector_to_json(v->values, v->dim, &arr, &alen) == KD_OK)
        fwrite(arr, 1, alen, stdout);
    fputc('\n', stdout);
    kd_free(arr);
    free(model);
}

/* A count line for people, dim on a terminal ("3 hits"). */
static void print_count(const struct cli *c, size_t n, const char *one, const char *many)
{
    printf("%s%zu %s%s\n", cli_sgr(c, CLI_DIM), n, n == 1 ? one : many, cli_sgr(c, CLI_RESET));
}

/* The not-found family, with what exactly was not found (at: the time
 * read, KD_TIME_MAX for now). */
static int report_missing(struct cli *c, int rc, const char *ns, const char *key, const char *shown, int64_t at)
{
    char t1[40], t2[40];
    kd_version *vs = NULL;
    size_t n = 0;
    int status;
    if (rc == KD_ENOTFOUND) {
        /* with versions: they went with its dropped workspace */
        int had = st_vector_history(c, ns, key, KD_TIME_MIN, KD_TIME_MAX, 1, 0, &vs, &n) == KD_OK && n > 0;
        status = cli_error(CLI_NOTFOUND, shown, had ? "not found: its vectors were removed when its workspace was "
                                                      "dropped (and compacted)"
                                                    : "not found: no vector (never written)");
    } else if (rc == KD_EDELETED) {
        /* the tombstone the read found: the newest version at or before at */
        if (st_vector_history(c, ns, key, KD_TIME_MIN, at, 1, KD_HISTORY_NEWEST_FIRST, &vs, &n) == KD_OK && n == 1 &&
            vs[0].deleted)
            status = cli_error(CLI_NOTFOUND, shown, "not found: vector deleted at %s (write %s)",
                               cli_time(vs[0].timestamp, t1), vs[0].write_id);
        else
            status = cli_error(CLI_NOTFOUND, shown, "not found: vector deleted");
    } else if (rc == KD_ENOVERSION) {
        if (st_vector_history(c, ns, key, KD_TIME_MIN, KD_TIME_MAX, 1, 0, &vs, &n) == KD_OK && n == 1)
            status = cli_error(CLI_NOTFOUND, shown, "not found: no vector at or before %s (the first is at %s)",
                               cli_time(at, t1), cli_time(vs[0].timestamp, t2));
        else
            status = cli_error(CLI_NOTFOUND, shown, "not found: no vector at or before %s", cli_time(at, t1));
    } else {
        status = cli_kd_error(c, rc, shown);
    }
    kd_free(vs);
    return status;
}

/* ------------------------------------------------------------------------
 * put, get, log, delete
 * ---------------------------------------------------------------------- */

static int vector_put(struct cli *c)
{
    const struct cli_vector_options *vo = &c->vector;
    char *ns = NULL, *key = NULL, *shown = NULL, *meta = NULL, err[512];
    size_t dim = 0, meta_len = 0;
    float *v = NULL;
    int status = cli_split_name(c->args[1], &ns, &key);
    if (status != CLI_OK)
        goto done;
    if (!vo->model) {
        status = cli_error(CLI_USAGE, "vector put",
                           "--model is required: the model the vector comes from, e.g. --model text-embedding-3-small "
                           "(try 'kdelta help vector')");
        goto done;
    }
    if ((status = check_model(vo->model)) != CLI_OK || (status = read_vector_arg(c->args[2], &v, &dim)) != CLI_OK)
        goto done;
    if (kd_vector_check(v, dim, err, sizeof err) != KD_OK) { /* refused before the database is opened */
        shown = cli_display(ns, key, 200);
        status = cli_error(CLI_INVALID, shown, "%s", err);
        goto done;
    }
    if (vo->meta) {
        int rc = kd_json_canonical(vo->meta, strlen(vo->meta), &meta, &meta_len, err, sizeof err);
        if (rc != KD_OK) {
            status = cli_error(cli_exit_status(rc), "--meta", "%s", err);
            goto done;
        }
    }
    shown = cli_display(ns, key, 0);
    if ((status = cli_open(c)) != CLI_OK)
        goto done;

    kd_version ver;
    memset(&ver, 0, sizeof ver);
    int rc = st_vector_put(c, ns, key, vo->model, v, dim, meta, meta_len, &ver);
    if (rc != KD_OK) {
        status = cli_kd_error(c, rc, shown);
        goto done;
    }
    if (c->json) {
        kd_vector put = {ns, key, (char *)vo->model, v, dim, meta ? meta : "null", meta ? meta_len : 4, ver};
        if ((status = print_record(ns, key, &put, &ver)) == CLI_OK)
            fputc('\n', stdout);
    } else {
        char a[16], b[16], t[40];
        char *model = cli_display(vo->model, NULL, 0);
        printf("%s  model %s  dim %zu  version %s  write %s  at %s\n", shown, model, dim, short_id(ver.version_id, a),
               short_id(ver.write_id, b), cli_time(ver.timestamp, t));
        free(model);
    }
done:
    kd_free(v);
    kd_free(meta);
    free(ns);
    free(key);
    free(shown);
    return cli_finish_output(status);
}

static int vector_get(struct cli *c)
{
    char *ns = NULL, *key = NULL, *shown = NULL;
    int64_t at = KD_TIME_MAX;
    kd_vector *v = NULL;
    int status = cli_split_name(c->args[1], &ns, &key);
    if (status != CLI_OK || (status = parse_at(c, &at)) != CLI_OK)
        goto done;
    shown = cli_display(ns, key, 0);
    if ((status = cli_open(c)) != CLI_OK)
        goto done;

    int rc = c->at ? st_vector_get_at(c, ns, key, at, &v) : st_vector_get(c, ns, key, &v);
    if (rc != KD_OK) {
        status = report_missing(c, rc, ns, key, shown, at);
        goto done;
    }
    if (c->json) {
        if ((status = print_record(ns, key, v, &v->version)) == CLI_OK)
            fputc('\n', stdout);
    } else {
        print_block(c, v, &v->version, 1);
    }
done:
    if (v)
        st_vector_free(c, v);
    free(ns);
    free(key);
    free(shown);
    return cli_finish_output(status);
}

static int vector_log(struct cli *c)
{
    char *ns = NULL, *key = NULL, *shown = NULL;
    kd_version *vs = NULL;
    kd_vector **vecs = NULL;
    size_t n = 0;
    int status = cli_split_name(c->args[1], &ns, &key);
    if (status != CLI_OK)
        goto done;
    shown = cli_display(ns, key, 0);
    if ((status = cli_open(c)) != CLI_OK)
        goto done;

    size_t failed;
    int rc = st_vector_log(c, ns, key, (size_t)c->limit, KD_HISTORY_NEWEST_FIRST, &vs, &vecs, &n, &failed);
    if (rc != KD_OK && failed == SIZE_MAX) {
        status = report_missing(c, rc, ns, key, shown, KD_TIME_MAX);
        goto done;
    }
    if (rc != KD_OK) {
        char what[1200];
        snprintf(what, sizeof what, "%s: version %s", shown, vs[failed].write_id);
        status = cli_kd_error(c, rc, what);
        goto done;
    }
    if (c->json)
        fputs(n ? "[\n" : "[", stdout);
    for (size_t i = 0; i < n && status == CLI_OK; i++) {
        size_t j = c->reverse ? n - 1 - i : i;
        if (c->json) {
            status = print_record(ns, key, vecs[j], &vs[j]);
            fputs(i + 1 < n ? ",\n" : "\n", stdout);
        } else {
            print_block(c, vecs[j], &vs[j], i == 0);
        }
    }
    if (c->json && status == CLI_OK)
        fputs("]\n", stdout);
done:
    for (size_t i = 0; vecs && i < n; i++)
        if (vecs[i])
            st_vector_free(c, vecs[i]);
    free(vecs);
    kd_free(vs);
    free(ns);
    free(key);
    free(shown);
    return cli_finish_output(status);
}

static int vector_delete(struct cli *c)
{
    char *ns = NULL, *key = NULL, *shown = NULL;
    int status = cli_split_name(c->args[1], &ns, &key);
    if (status != CLI_OK)
        goto done;
    shown = cli_display(ns, key, 0);
    if ((status = cli_open(c)) != CLI_OK)
        goto done;

    kd_version ver;
    memset(&ver, 0, sizeof ver);
    int rc = st_vector_delete(c, ns, key, &ver);
    if (rc == KD_ENOTFOUND) {
        status = cli_error(CLI_NOTFOUND, shown, "not found: no vector (never written)");
    } else if (rc == KD_EDELETED) {
        status = cli_error(CLI_NOTFOUND, shown, "not found: vector already deleted");
    } else if (rc != KD_OK) {
        status = cli_kd_error(c, rc, shown);
    } else if (c->json) {
        if ((status = print_record(ns, key, NULL, &ver)) == CLI_OK)
            fputc('\n', stdout);
    } else {
        char b[16], t[40];
        printf("%s  vector deleted  write %s  at %s\n", shown, short_id(ver.write_id, b), cli_time(ver.timestamp, t));
    }
done:
    free(ns);
    free(key);
    free(shown);
    return cli_finish_output(status);
}

/* ------------------------------------------------------------------------
 * search, stats
 * ---------------------------------------------------------------------- */

#define DEFAULT_K 10

static void print_hits_json(const kd_vector_hit *hits, size_t n)
{
    char s[48];
    fputs("{\"hits\":[", stdout);
    for (size_t i = 0; i < n; i++) {
        const kd_vector_hit *h = &hits[i];
        fputs(i ? ",{\"namespace\":" : "{\"namespace\":", stdout);
        cli_print_json_string(h->ns, strlen(h->ns));
        fputs(",\"key\":", stdout);
        cli_print_json_string(h->key, strlen(h->key));
        fputs(",\"model\":", stdout);
        cli_print_json_string(h->model, strlen(h->model));
        printf(",\"score\":%s,\"meta\":", float_text(h->score, 1, s));
        fwrite(h->meta, 1, h->meta_len, stdout);
        print_id("version_id", h->version.version_id);
        print_id("write_id", h->version.write_id);
        print_id("previous_write_id", h->version.previous_write_id);
        printf(",\"timestamp\":\"%s\"}", cli_time_utc(h->version.timestamp, s));
    }
    fputs("]}\n", stdout);
}

static void print_hits(struct cli *c, const kd_vector_hit *hits, size_t n, int all)
{
    if (n) {
        struct cli_table t = {.ncols = all ? 5 : 4};
        cli_table_add(&t, xstrdup("score"));
        if (all)
            cli_table_add(&t, xstrdup("namespace"));
        cli_table_add(&t, xstrdup("key"));
        cli_table_add(&t, xstrdup("model"));
        cli_table_add(&t, xstrdup("meta"));
        for (size_t i = 0; i < n; i++) {
            char s[48];
            cli_table_add(&t, xstrdup(float_text(hits[i].score, 0, s)));
            if (all)
                cli_table_add(&t, cli_display(hits[i].ns, NULL, 0));
            cli_table_add(&t, cli_display(hits[i].key, NULL, 0));
            cli_table_add(&t, cli_display(hits[i].model, NULL, 0));
            cli_table_add(&t, cli_display(hits[i].meta, NULL, 0));
        }
        cli_table_print(c, &t);
        cli_table_free(&t);
    }
    print_count(c, n, "hit", "hits");
}

static int vector_search(struct cli *c)
{
    const struct cli_vector_options *vo = &c->vector;
    int all = c->nargs == 2;
    char *ns = all ? NULL : cli_ns_arg(c->args[1]), *shown = NULL, err[1024];
    float *q = NULL;
    size_t dim = 0, n = 0;
    kd_filter *filter = NULL;
    kd_vector_hit *hits = NULL;
    kd_vector_search_options o;
    memset(&o, 0, sizeof o);
    int status = CLI_OK, rc;
    if (ns && !*ns) {
        status = cli_error(CLI_INVALID, "vector search", "expected a namespace, got ''");
        goto done;
    }
    if (ns && (status = cli_check_name(ns, NULL)) != CLI_OK)
        goto done;
    if ((status = read_vector_arg(c->args[all ? 1 : 2], &q, &dim)) != CLI_OK || (status = parse_at(c, &o.at)) != CLI_OK)
        goto done;
    if (vo->model && (status = check_model(vo->model)) != CLI_OK)
        goto done;
    if (vo->metric && (rc = kd_vector_metric_parse(vo->metric, &o.metric, err, sizeof err)) != KD_OK) {
        status = cli_error(cli_exit_status(rc), "--metric", "%s", err);
        goto done;
    }
    if (o.metric == KD_VECTOR_COSINE) { /* refused before the database is opened, as the library would */
        size_t nz = 0;
        while (nz < dim && q[nz] == 0.0f)
            nz++;
        if (nz == dim) {
            status = cli_error(CLI_INVALID, "vector search", "the query is a zero vector: it has no cosine similarity "
                                                             "to anything (--metric dot or l2 take it)");
            goto done;
        }
    }
    if (vo->min_score) {
        /* read as a component is, so it rounds to the same float32 */
        size_t l = strlen(vo->min_score), sn = 0;
        char *arr = xmalloc(l + 3);
        float *s = NULL;
        snprintf(arr, l + 3, "[%s]", vo->min_score);
        rc = kd_vector_parse(arr, l + 2, &s, &sn, NULL, 0);
        free(arr);
        if (rc == KD_OK && sn == 1) {
            o.has_min_score = 1;
            o.min_score = s[0];
        }
        kd_free(s);
        if (!o.has_min_score) {
            char *shown_s = cli_display(vo->min_score, NULL, 60);
            status = cli_error(CLI_USAGE, "--min-score", "expected a number (within the float32 range), got '%s'",
                               shown_s);
            free(shown_s);
            goto done;
        }
    }
    if (c->filter) {
        char *qt = NULL;
        size_t ql;
        rc = kd_json_quote(c->filter, strlen(c->filter), &qt, &ql);
        kd_free(qt);
        if (rc != KD_OK) {
            status = cli_error(CLI_INVALID, "--filter", "not valid UTF-8");
            goto done;
        }
        if ((rc = kd_filter_parse(c->filter, &filter, err, sizeof err)) != KD_OK) {
            status = cli_error(cli_exit_status(rc), "--filter", "%s", err);
            goto done;
        }
    }
    if (c->at && o.at == 0)
        o.at = -1; /* the library reads at 0 as "now"; no write is older than 1970 */
    o.model = vo->model;
    o.filter = filter;
    o.ef = (size_t)vo->ef;
    shown = all ? xstrdup("vector search") : cli_display(ns, NULL, 200);
    if ((status = cli_open(c)) != CLI_OK)
        goto done;

    rc = st_vector_search(c, ns, q, dim, vo->top ? (size_t)vo->top : DEFAULT_K, &o, &hits, &n);
    if (rc != KD_OK) {
        status = cli_kd_error(c, rc, shown);
        goto done;
    }
    if (c->json)
        print_hits_json(hits, n);
    else
        print_hits(c, hits, n, all);
done:
    st_vector_hits_free(c, hits, n);
    kd_filter_free(filter);
    kd_free(q);
    free(ns);
    free(shown);
    return cli_finish_output(status);
}

static int vector_stats(struct cli *c)
{
    char *ns = c->nargs > 1 ? cli_ns_arg(c->args[1]) : NULL, *shown = NULL;
    kd_vector_info *list = NULL;
    size_t n = 0;
    int status = CLI_OK;
    if (ns && !*ns) {
        status = cli_error(CLI_INVALID, "vector stats", "expected a namespace, got ''");
        goto done;
    }
    if (ns && (status = cli_check_name(ns, NULL)) != CLI_OK)
        goto done;
    shown = ns ? cli_display(ns, NULL, 200) : xstrdup("vector stats");
    if ((status = cli_open(c)) != CLI_OK)
        goto done;
    int rc = st_vector_stats(c, ns, &list, &n);
    if (rc != KD_OK) {
        status = cli_kd_error(c, rc, shown);
        goto done;
    }
    if (c->json) {
        fputs("{\"stats\":[", stdout);
        for (size_t i = 0; i < n && status == CLI_OK; i++) {
            fputs(i ? ",{\"namespace\":" : "{\"namespace\":", stdout);
            if ((status = cli_print_json_string(list[i].ns, strlen(list[i].ns))) != CLI_OK)
                break;
            fputs(",\"model\":", stdout);
            if ((status = cli_print_json_string(list[i].model, strlen(list[i].model))) != CLI_OK)
                break;
            printf(",\"dim\":%zu,\"vectors\":%" PRIu64 ",\"unindexed\":%" PRIu64 ",\"index_bytes\":%" PRIu64 "}",
                   list[i].dim, list[i].vectors, list[i].unindexed, list[i].index_bytes);
        }
        if (status == CLI_OK)
            fputs("]}\n", stdout);
    } else if (n) {
        struct cli_table t = {.ncols = 6};
        cli_table_add(&t, xstrdup("namespace"));
        cli_table_add(&t, xstrdup("model"));
        cli_table_add(&t, xstrdup("dim"));
        cli_table_add(&t, xstrdup("vectors"));
        cli_table_add(&t, xstrdup("unindexed"));
        cli_table_add(&t, xstrdup("index_bytes"));
        for (size_t i = 0; i < n; i++) {
            char num[32];
            cli_table_add(&t, cli_display(list[i].ns, NULL, 0));
            cli_table_add(&t, cli_display(list[i].model, NULL, 0));
            snprintf(num, sizeof num, "%zu", list[i].dim);
            cli_table_add(&t, xstrdup(num));
            snprintf(num, sizeof num, "%" PRIu64, list[i].vectors);
            cli_table_add(&t, xstrdup(num));
            snprintf(num, sizeof num, "%" PRIu64, list[i].unindexed);
            cli_table_add(&t, xstrdup(num));
            snprintf(num, sizeof num, "%" PRIu64, list[i].index_bytes);
            cli_table_add(&t, xstrdup(num));
        }
        cli_table_print(c, &t);
        cli_table_free(&t);
    }
done:
    st_vector_stats_free(c, list, n);
    free(ns);
    free(shown);
    return cli_finish_output(status);
}
