/*
 * test_subs.c — change subscriptions, one thread (sync=none): event types
 * and previous values, version records, scoping by namespace, key and type,
 * batches and imports, reserved namespaces, errors, and the exact count of
 * events a stalled subscriber missed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db_int.h"
#include "harness.h"
#include "korudelta.h"

static kd_db *open_fresh(const char *tag, char *dir)
{
    snprintf(dir, 256, "/tmp/kd_test_subs_%s_XXXXXX", tag);
    if (!mkdtemp(dir))
        abort();
    kd_options *o = kd_options_new();
    kd_options_set_sync(o, KD_SYNC_NONE, 0);
    kd_db *db = NULL;
    char err[256];
    if (kd_open(dir, o, &db, err, sizeof err))
        fprintf(stderr, "open: %s\n", err);
    kd_options_free(o);
    return db;
}

static void rm_rf(const char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    if (system(cmd))
        fprintf(stderr, "cleanup failed\n");
}

static int put(kd_db *db, const char *ns, const char *key, const char *json, kd_version *v)
{
    return kd_put(db, ns, key, json, strlen(json), v);
}

static int same_version(const kd_version *a, const kd_version *b)
{
    return !strcmp(a->version_id, b->version_id) && !strcmp(a->write_id, b->write_id) &&
           !strcmp(a->previous_write_id, b->previous_write_id) && a->timestamp == b->timestamp &&
           a->deleted == b->deleted;
}

/* ------------------------------------------------------------------------ */

static void test_types_and_prev(void)
{
    char dir[256];
    kd_db *db = open_fresh("types", dir);
    CHECK(db);
    uint64_t id = 0;
    CHECK_RC(kd_subscribe(db, NULL, &id), KD_OK);
    CHECK(id != 0);

    kd_version v1, v2, v3, v4;
    CHECK_RC(put(db, "users", "alice", "{ \"age\": 30 }", &v1), KD_OK);
    CHECK_RC(put(db, "users", "alice", "{\"age\":31}", &v2), KD_OK);
    CHECK_RC(kd_delete(db, "users", "alice", &v3), KD_OK);
    CHECK_RC(put(db, "users", "alice", "1", &v4), KD_OK);

    kd_event ev;
    CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_OK);
    CHECK_EQ_INT(ev.type, KD_EVENT_INSERT);
    CHECK_EQ_STR(ev.ns, "users");
    CHECK_EQ_STR(ev.key, "alice");
    CHECK_EQ_STR(ev.value, "{\"age\":30}"); /* canonical */
    CHECK_EQ_INT(ev.value_len, 10);
    CHECK(ev.prev_value == NULL);
    CHECK(same_version(&ev.version, &v1));
    kd_event_clear(&ev);
    CHECK(ev.ns == NULL && ev.value == NULL && ev.type == 0);

    CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_OK);
    CHECK_EQ_INT(ev.type, KD_EVENT_UPDATE);
    CHECK_EQ_STR(ev.value, "{\"age\":31}");
    CHECK_EQ_STR(ev.prev_value, "{\"age\":30}");
    CHECK_EQ_INT(ev.prev_len, 10);
    CHECK(same_version(&ev.version, &v2));
    CHECK_EQ_STR(ev.version.previous_write_id, v1.write_id);
    kd_event_clear(&ev);

    CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_OK);
    CHECK_EQ_INT(ev.type, KD_EVENT_DELETE);
    CHECK(ev.value == NULL);
    CHECK_EQ_STR(ev.prev_value, "{\"age\":31}");
    CHECK(ev.version.deleted);
    CHECK_EQ_STR(ev.version.version_id, "");
    CHECK(same_version(&ev.version, &v3));
    kd_event_clear(&ev);

    /* A value after a delete is an insert again. */
    CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_OK);
    CHECK_EQ_INT(ev.type, KD_EVENT_INSERT);
    CHECK(ev.prev_value == NULL);
    CHECK_EQ_STR(ev.value, "1");
    CHECK(same_version(&ev.version, &v4));
    kd_event_clear(&ev);

    CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_ETIMEOUT);
    CHECK_RC(kd_sub_next(db, id, 30, &ev), KD_ETIMEOUT);
    CHECK(ev.ns == NULL);
    CHECK_RC(kd_unsubscribe(db, id), KD_OK);
    /* Writes with nobody listening, then nothing delivered to the old id. */
    CHECK_RC(put(db, "users", "bob", "2", NULL), KD_OK);
    CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_ENOTFOUND);
    CHECK(kd_close(db) == KD_OK);
    rm_rf(dir);
}

/* Only writes made after kd_subscribe returns are delivered. */
static void test_starts_now(void)
{
    char dir[256];
    kd_db *db = open_fresh("now", dir);
    CHECK(db);
    CHECK_RC(put(db, "a", "before", "1", NULL), KD_OK);
    uint64_t id;
    CHECK_RC(kd_subscribe(db, NULL, &id), KD_OK);
    CHECK_RC(put(db, "a", "after", "2", NULL), KD_OK);
    kd_event ev;
    CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_OK);
    CHECK_EQ_STR(ev.key, "after");
    kd_event_clear(&ev);
    CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_ETIMEOUT);
    /* Left subscribed: kd_close frees it. */
    CHECK(kd_close(db) == KD_OK);
    rm_rf(dir);
}

static void test_scoping(void)
{
    char dir[256];
    kd_db *db = open_fresh("scope", dir);
    CHECK(db);
    uint64_t all, ns, key, dels, upd_ins;
    kd_sub_options o = {0};
    CHECK_RC(kd_subscribe(db, &o, &all), KD_OK);
    o.ns = "users";
    CHECK_RC(kd_subscribe(db, &o, &ns), KD_OK);
    o.key = "alice";
    CHECK_RC(kd_subscribe(db, &o, &key), KD_OK);
    o = (kd_sub_options){.types = KD_EVENT_DELETE};
    CHECK_RC(kd_subscribe(db, &o, &dels), KD_OK);
    o = (kd_sub_options){.ns = "users", .types = KD_EVENT_INSERT | KD_EVENT_UPDATE};
    CHECK_RC(kd_subscribe(db, &o, &upd_ins), KD_OK);
    CHECK(all != ns && ns != key && key != dels && dels != upd_ins);

    CHECK_RC(put(db, "users", "alice", "1", NULL), KD_OK);
    CHECK_RC(put(db, "users", "alicex", "2", NULL), KD_OK); /* not "alice" */
    CHECK_RC(put(db, "usersx", "alice", "3", NULL), KD_OK); /* not "users" */
    CHECK_RC(put(db, "orders", "o1", "4", NULL), KD_OK);
    CHECK_RC(kd_delete(db, "users", "alice", NULL), KD_OK);
    CHECK_RC(kd_delete(db, "orders", "o1", NULL), KD_OK);
    CHECK_RC(put(db, "users", "alicex", "5", NULL), KD_OK);

    struct {
        uint64_t id;
        const char *want; /* key/value of each event, in order */
    } cases[] = {
        {all, "alice=1 alicex=2 alice=3 o1=4 alice=- o1=- alicex=5 "},
        {ns, "alice=1 alicex=2 alice=- alicex=5 "},
        {key, "alice=1 alice=- "},
        {dels, "alice=- o1=- "},
        {upd_ins, "alice=1 alicex=2 alicex=5 "},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char got[256] = "";
        kd_event ev;
        int rc;
        while ((rc = kd_sub_next(db, cases[c].id, 0, &ev)) == KD_OK) {
            size_t l = strlen(got);
            snprintf(got + l, sizeof got - l, "%s=%s ", ev.key, ev.value ? ev.value : "-");
            kd_event_clear(&ev);
        }
        CHECK_RC(rc, KD_ETIMEOUT);
        CHECK_EQ_STR(got, cases[c].want);
    }
    CHECK(kd_close(db) == KD_OK);
    rm_rf(dir);
}

static void test_batch(void)
{
    char dir[256];
    kd_db *db = open_fresh("batch", dir);
    CHECK(db);
    CHECK_RC(put(db, "n", "k", "\"old\"", NULL), KD_OK);
    uint64_t id;
    CHECK_RC(kd_subscribe(db, NULL, &id), KD_OK);
    kd_write w[] = {
        {"n", "k", "\"a\"", 3, NULL},
        {"n", "j", "[1, 2]", 6, NULL},
        {"n", "k", "\"b\"", 3, NULL},
        {"n", "k", NULL, 0, NULL},
        {"m", "k", "{}", 2, NULL},
    };
    kd_version v[5];
    CHECK_RC(kd_put_batch(db, w, 5, v), KD_OK);
    struct {
        unsigned type;
        const char *ns, *key, *value, *prev;
    } want[] = {
        {KD_EVENT_UPDATE, "n", "k", "\"a\"", "\"old\""},
        {KD_EVENT_INSERT, "n", "j", "[1,2]", NULL},
        {KD_EVENT_UPDATE, "n", "k", "\"b\"", "\"a\""}, /* the batch's earlier value */
        {KD_EVENT_DELETE, "n", "k", NULL, "\"b\""},
        {KD_EVENT_INSERT, "m", "k", "{}", NULL},
    };
    int64_t last = 0;
    for (int i = 0; i < 5; i++) {
        kd_event ev;
        CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_OK);
        CHECK_EQ_INT(ev.type, want[i].type);
        CHECK_EQ_STR(ev.ns, want[i].ns);
        CHECK_EQ_STR(ev.key, want[i].key);
        if (want[i].value)
            CHECK_EQ_STR(ev.value, want[i].value);
        else
            CHECK(ev.value == NULL);
        if (want[i].prev)
            CHECK_EQ_STR(ev.prev_value, want[i].prev);
        else
            CHECK(ev.prev_value == NULL);
        CHECK(same_version(&ev.version, &v[i]));
        CHECK(ev.version.timestamp > last);
        last = ev.version.timestamp;
        kd_event_clear(&ev);
    }
    kd_event ev;
    CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_ETIMEOUT);
    CHECK(kd_close(db) == KD_OK);
    rm_rf(dir);
}

/* kd_import_versions emits like any write: export with kd_changes, import
 * into a second database that has a subscriber. */
typedef struct exported {
    kd_import imp[8];
    char ns[8][16], key[8][16], node[8][33], wid[8][KD_ID_HEX], prev[8][KD_ID_HEX];
    char *json[8];
    kd_version v[8];
    size_t n;
} exported;

static int export_one(void *ctx, const kd_change *c)
{
    exported *x = ctx;
    if (x->n == 8)
        return 1;
    size_t i = x->n++;
    snprintf(x->ns[i], 16, "%s", c->ns);
    snprintf(x->key[i], 16, "%s", c->key);
    snprintf(x->node[i], 33, "%s", c->node_id);
    snprintf(x->wid[i], KD_ID_HEX, "%s", c->version.write_id);
    snprintf(x->prev[i], KD_ID_HEX, "%s", c->version.previous_write_id);
    x->json[i] = c->value ? strdup(c->value) : NULL;
    x->v[i] = c->version;
    x->imp[i] = (kd_import){x->ns[i], x->key[i], x->json[i], c->value ? c->value_len : 0, c->version.timestamp,
                            x->node[i], x->prev[i], x->wid[i]};
    return 0;
}

static void test_import(void)
{
    char d1[256], d2[256];
    kd_db *a = open_fresh("imp_a", d1), *b = open_fresh("imp_b", d2);
    CHECK(a && b);
    CHECK_RC(put(a, "p", "x", "{\"v\":1}", NULL), KD_OK);
    CHECK_RC(put(a, "p", "x", "{\"v\":2}", NULL), KD_OK);
    CHECK_RC(put(a, "p", "y", "true", NULL), KD_OK);
    CHECK_RC(kd_delete(a, "p", "x", NULL), KD_OK);
    exported x;
    memset(&x, 0, sizeof x);
    CHECK_RC(kd_changes(a, NULL, INT64_MIN, export_one, &x), KD_OK);
    CHECK_EQ_INT(x.n, 4);

    uint64_t id;
    CHECK_RC(kd_subscribe(b, NULL, &id), KD_OK);
    CHECK_RC(kd_import_versions(b, x.imp, x.n), KD_OK);
    unsigned types[] = {KD_EVENT_INSERT, KD_EVENT_UPDATE, KD_EVENT_INSERT, KD_EVENT_DELETE};
    const char *prevs[] = {NULL, "{\"v\":1}", NULL, "{\"v\":2}"};
    for (size_t i = 0; i < x.n; i++) {
        kd_event ev;
        CHECK_RC(kd_sub_next(b, id, 0, &ev), KD_OK);
        CHECK_EQ_INT(ev.type, types[i]);
        CHECK_EQ_STR(ev.key, x.key[i]);
        CHECK(same_version(&ev.version, &x.v[i]));
        if (prevs[i])
            CHECK_EQ_STR(ev.prev_value, prevs[i]);
        else
            CHECK(ev.prev_value == NULL);
        if (x.json[i])
            CHECK_EQ_STR(ev.value, x.json[i]);
        kd_event_clear(&ev);
    }
    for (size_t i = 0; i < x.n; i++)
        free(x.json[i]);
    kd_event ev;
    CHECK_RC(kd_sub_next(b, id, 0, &ev), KD_ETIMEOUT);
    CHECK(kd_close(a) == KD_OK);
    CHECK(kd_close(b) == KD_OK);
    rm_rf(d1);
    rm_rf(d2);
}

static void test_reserved_not_delivered(void)
{
    char dir[256];
    kd_db *db = open_fresh("reserved", dir);
    CHECK(db);
    uint64_t id;
    CHECK_RC(kd_subscribe(db, NULL, &id), KD_OK);
    kd__allow_reserved(1);
    int rc = put(db, "_kd.test", "secret", "1", NULL);
    kd__allow_reserved(0);
    CHECK_RC(rc, KD_OK);
    CHECK_RC(put(db, "_kdx", "k", "1", NULL), KD_ERESERVED);
    CHECK_RC(put(db, "kd_visible", "k", "2", NULL), KD_OK);
    kd_event ev;
    CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_OK);
    CHECK_EQ_STR(ev.ns, "kd_visible");
    kd_event_clear(&ev);
    CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_ETIMEOUT);
    /* Subscribing to a reserved namespace is refused outright. */
    kd_sub_options o = {.ns = "_kd.views"};
    uint64_t id2 = 99;
    CHECK_RC(kd_subscribe(db, &o, &id2), KD_ERESERVED);
    CHECK_EQ_INT(id2, 0);
    CHECK(kd_close(db) == KD_OK);
    rm_rf(dir);
}

static void test_errors(void)
{
    char dir[256];
    kd_db *db = open_fresh("errors", dir);
    CHECK(db);
    kd_event ev;
    uint64_t id;
    /* Unknown ids, before and after the first subscription. */
    CHECK_RC(kd_sub_next(db, 1, 0, &ev), KD_ENOTFOUND);
    CHECK_RC(kd_unsubscribe(db, 1), KD_ENOTFOUND);
    CHECK_RC(kd_subscribe(db, NULL, &id), KD_OK);
    CHECK_RC(kd_sub_next(db, id + 1, 0, &ev), KD_ENOTFOUND);
    CHECK(strstr(kd_errmsg(db), "subscription") != NULL);
    CHECK_RC(kd_unsubscribe(db, id + 1), KD_ENOTFOUND);
    CHECK_RC(kd_unsubscribe(db, id), KD_OK);
    CHECK_RC(kd_unsubscribe(db, id), KD_ENOTFOUND);
    CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_ENOTFOUND);
    /* Ids are not reused. */
    uint64_t id2;
    CHECK_RC(kd_subscribe(db, NULL, &id2), KD_OK);
    CHECK(id2 != id);

    kd_sub_options o = {.key = "k"};
    CHECK_RC(kd_subscribe(db, &o, &id), KD_EINVALID); /* key without ns */
    o = (kd_sub_options){.ns = ""};
    CHECK_RC(kd_subscribe(db, &o, &id), KD_EINVALID);
    o = (kd_sub_options){.ns = "n", .key = ""};
    CHECK_RC(kd_subscribe(db, &o, &id), KD_EINVALID);
    o = (kd_sub_options){.ns = "\xff\xfe"};
    CHECK_RC(kd_subscribe(db, &o, &id), KD_EINVALID);
    char longname[300];
    memset(longname, 'a', 256);
    longname[256] = '\0';
    o = (kd_sub_options){.ns = longname};
    CHECK_RC(kd_subscribe(db, &o, &id), KD_ETOOBIG);
    o = (kd_sub_options){.types = KD_EVENT_MISSED};
    CHECK_RC(kd_subscribe(db, &o, &id), KD_EINVALID);
    o = (kd_sub_options){.types = 16};
    CHECK_RC(kd_subscribe(db, &o, &id), KD_EINVALID);
    CHECK_RC(kd_subscribe(db, NULL, NULL), KD_EINVALID);
    CHECK_RC(kd_subscribe(NULL, NULL, &id), KD_EMISUSE);
    CHECK_RC(kd_sub_next(NULL, id2, 0, &ev), KD_EMISUSE);
    CHECK_RC(kd_sub_next(db, id2, 0, NULL), KD_EINVALID);
    CHECK_RC(kd_unsubscribe(NULL, id2), KD_EMISUSE);
    kd_event_clear(NULL);
    /* Valid options with every field set. */
    o = (kd_sub_options){.ns = "n", .key = "k", .types = KD_EVENT_ALL, .queue = 5};
    CHECK_RC(kd_subscribe(db, &o, &id), KD_OK);
    CHECK(kd_close(db) == KD_OK);
    rm_rf(dir);
}

/* A stalled subscriber (queue 100) keeps the 100 oldest of 1,000 writes,
 * then learns that 900 were missed, then gets what came after. */
static void test_overflow(void)
{
    char dir[256];
    kd_db *db = open_fresh("overflow", dir);
    CHECK(db);
    uint64_t id, other;
    kd_sub_options o = {.queue = 100};
    CHECK_RC(kd_subscribe(db, &o, &id), KD_OK);
    CHECK_RC(kd_subscribe(db, NULL, &other), KD_OK); /* default queue: loses nothing */
    char key[32], val[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        snprintf(val, sizeof val, "%d", i);
        CHECK_RC(put(db, "n", key, val, NULL), KD_OK);
    }
    kd_event ev;
    for (int i = 0; i < 100; i++) {
        CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_OK);
        snprintf(key, sizeof key, "k%d", i);
        CHECK_EQ_INT(ev.type, KD_EVENT_INSERT);
        CHECK_EQ_STR(ev.key, key);
        kd_event_clear(&ev);
    }
    /* Nothing new yet: the gap is reported at once, then nothing. */
    CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_OK);
    CHECK_EQ_INT(ev.type, KD_EVENT_MISSED);
    CHECK_EQ_INT(ev.missed, 900);
    CHECK(ev.ns == NULL && ev.key == NULL && ev.value == NULL);
    kd_event_clear(&ev);
    CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_ETIMEOUT);
    CHECK_RC(put(db, "n", "after", "1", NULL), KD_OK);
    CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_OK);
    CHECK_EQ_STR(ev.key, "after");
    kd_event_clear(&ev);

    /* The gap sits between the events around it: fill the queue, drop 5,
     * free room for 2 (which arrive), then read everything. */
    for (int i = 0; i < 105; i++) {
        snprintf(key, sizeof key, "g%d", i);
        CHECK_RC(put(db, "n", key, "0", NULL), KD_OK);
    }
    for (int i = 0; i < 2; i++) {
        CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_OK);
        kd_event_clear(&ev);
    }
    CHECK_RC(put(db, "n", "h0", "0", NULL), KD_OK);
    CHECK_RC(put(db, "n", "h1", "0", NULL), KD_OK);
    CHECK_RC(put(db, "n", "h2", "0", NULL), KD_OK); /* full again: dropped */
    for (int i = 2; i < 100; i++) {
        CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_OK);
        snprintf(key, sizeof key, "g%d", i);
        CHECK_EQ_STR(ev.key, key);
        kd_event_clear(&ev);
    }
    CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_OK);
    CHECK_EQ_INT(ev.type, KD_EVENT_MISSED);
    CHECK_EQ_INT(ev.missed, 5);
    CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_OK);
    CHECK_EQ_STR(ev.key, "h0");
    kd_event_clear(&ev);
    CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_OK);
    CHECK_EQ_STR(ev.key, "h1");
    kd_event_clear(&ev);
    CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_OK);
    CHECK_EQ_INT(ev.type, KD_EVENT_MISSED);
    CHECK_EQ_INT(ev.missed, 1);
    CHECK_RC(kd_sub_next(db, id, 0, &ev), KD_ETIMEOUT);

    /* The other subscriber saw all 1,000 + 1 + 105 + 3 in order. */
    int n = 0;
    int64_t last = 0;
    while (kd_sub_next(db, other, 0, &ev) == KD_OK) {
        CHECK(ev.type == KD_EVENT_INSERT);
        CHECK(ev.version.timestamp > last);
        last = ev.version.timestamp;
        kd_event_clear(&ev);
        n++;
    }
    CHECK_EQ_INT(n, 1109);
    CHECK(kd_close(db) == KD_OK);
    rm_rf(dir);
}

/* Events not yet taken are freed by kd_unsubscribe and kd_close. */
static void test_pending_freed(void)
{
    char dir[256];
    kd_db *db = open_fresh("pending", dir);
    CHECK(db);
    uint64_t a, b;
    CHECK_RC(kd_subscribe(db, NULL, &a), KD_OK);
    CHECK_RC(kd_subscribe(db, NULL, &b), KD_OK);
    for (int i = 0; i < 10; i++)
        CHECK_RC(put(db, "n", "k", "{\"big\":\"value\"}", NULL), KD_OK);
    CHECK_RC(kd_unsubscribe(db, a), KD_OK);
    kd_event ev;
    CHECK_RC(kd_sub_next(db, b, 0, &ev), KD_OK);
    kd_event_clear(&ev);
    CHECK(kd_close(db) == KD_OK); /* ASan: no leak of b's 9 events */
    rm_rf(dir);
}

/* A filter on the new value (for a delete: the value deleted), combined
 * with types; the subscription keeps its own copy of the filter. */
static void test_filter(void)
{
    char dir[256];
    kd_db *db = open_fresh("filter", dir);
    CHECK(db);
    kd_filter *f = NULL, *re = NULL;
    char err[128];
    CHECK_RC(kd_filter_parse("age > 30", &f, err, sizeof err), KD_OK);
    CHECK_RC(kd_filter_parse("name matches \"^a\" and not banned exists", &re, err, sizeof err), KD_OK);
    uint64_t old, young_dels, named;
    kd_sub_options o = {.ns = "users", .filter = f};
    CHECK_RC(kd_subscribe(db, &o, &old), KD_OK);
    o.types = KD_EVENT_DELETE;
    CHECK_RC(kd_subscribe(db, &o, &young_dels), KD_OK);
    o = (kd_sub_options){.filter = re};
    CHECK_RC(kd_subscribe(db, &o, &named), KD_OK);
    kd_filter_free(f); /* copied at subscribe */
    kd_filter_free(re);

    CHECK_RC(put(db, "users", "a", "{\"age\":20,\"name\":\"ann\"}", NULL), KD_OK);   /* named */
    CHECK_RC(put(db, "users", "b", "{\"age\":40,\"name\":\"bob\"}", NULL), KD_OK);   /* old */
    CHECK_RC(put(db, "users", "b", "{\"age\":10,\"name\":\"al\"}", NULL), KD_OK);    /* named */
    CHECK_RC(put(db, "users", "c", "{\"age\":50,\"name\":\"amy\",\"banned\":true}", NULL), KD_OK); /* old */
    CHECK_RC(put(db, "users", "d", "[1]", NULL), KD_OK);                                 /* none */
    CHECK_RC(kd_delete(db, "users", "c", NULL), KD_OK); /* value deleted had age 50: old, young_dels */
    CHECK_RC(kd_delete(db, "users", "b", NULL), KD_OK); /* age 10: named (name "al") */
    CHECK_RC(put(db, "other", "x", "{\"age\":99,\"name\":\"ax\"}", NULL), KD_OK); /* named only */

    struct {
        uint64_t id;
        const char *want;
    } cases[] = {
        {old, "b:I c:I c:D "},
        {young_dels, "c:D "},
        {named, "a:I b:U b:D x:I "},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        char got[256] = "";
        kd_event ev;
        int rc;
        while ((rc = kd_sub_next(db, cases[c].id, 0, &ev)) == KD_OK) {
            size_t l = strlen(got);
            char t = ev.type == KD_EVENT_INSERT ? 'I' : ev.type == KD_EVENT_UPDATE ? 'U' : 'D';
            snprintf(got + l, sizeof got - l, "%s:%c ", ev.key, t);
            kd_event_clear(&ev);
        }
        CHECK_RC(rc, KD_ETIMEOUT);
        CHECK_EQ_STR(got, cases[c].want);
    }
    CHECK(kd_close(db) == KD_OK);
    rm_rf(dir);
}

int main(void)
{
    RUN(test_types_and_prev);
    RUN(test_starts_now);
    RUN(test_scoping);
    RUN(test_batch);
    RUN(test_import);
    RUN(test_reserved_not_delivered);
    RUN(test_errors);
    RUN(test_overflow);
    RUN(test_pending_freed);
    RUN(test_filter);
    return HARNESS_DONE();
}
