/*
 * auth.c — `kdelta serve --auth`: registration, challenge–response login,
 * sessions, capabilities, and the gate every request passes before its
 * handler (docs/AUTH.md).
 *
 * State lives in the reserved namespace _kd.auth through the public API
 * (kd_auth_put / kd_auth_delete write it, kd_get / kd_scan read it), so it
 * is versioned, durable, covered by the auth causal root and survives
 * restarts:
 *   server                  {"server_id"}            made at the first start
 *   owner                   {"public_key"}           the first registration, or --owner
 *   identity/<key>          {"difficulty","document","public_key","registered_at"}
 *   session/<token hash>    {"created_at","expires_at","identity"}   deleted at logout
 *   grant/<grantee>/<id>    the signed grant         deleted when revoked
 * Only challenges stay in memory: they live five minutes and are used once.
 *
 * The gate maps each route (by its name in the route tables) to what it
 * needs: nothing, a session, or a permission on a key, a whole namespace,
 * or everything. Listings and searches then filter with ks_may.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "server.h"
#include "server_int.h"

#define CHALLENGE_NS (300 * (int64_t)1000000000) /* five minutes */
#define MAX_CHALLENGES 4096
#define MAX_CHAIN 4 /* granter of a granter of …: how deep delegation is followed */
static uint64_t challenge_seed; /* random at start: nets cannot be chosen to collide (challenge_to_drop) */
/* Valid grants one granter may give one identity: every request of the
 * identity, and of those it granted to, looks through what it holds.
 * (Counted per granter, so that an admin of one scope cannot use up what
 * others may grant the identity.) */
#define MAX_GRANTS_HELD 1000
#define MAX_GRANTS_HELD_ALL 10000 /* and from all granters */

static struct {
    int on;
    kd_db *db;
    unsigned difficulty;
    int64_t ttl;
    char server_id[KD_AUTH_KEY_HEX];
    pthread_mutex_t mu; /* owner and challenges */
    char owner[KD_AUTH_KEY_HEX];
    struct challenge {
        char hex[KD_AUTH_KEY_HEX];
        int64_t expires;
        uint8_t net[16]; /* whose (ks_client_net) */
        int has_net;
    } ch[MAX_CHALLENGES];
    size_t nch;
} A = {.mu = PTHREAD_MUTEX_INITIALIZER};

typedef struct grant_set grant_set; /* the grants one key holds (grants_of) */

/* The caller of one request, once its token was checked. */
typedef struct principal {
    char key[KD_AUTH_KEY_HEX];
    char token_hash[KD_AUTH_KEY_HEX];
    int64_t expires;
    int loaded;       /* grants read */
    grant_set *set;   /* valid (signed, unexpired) grants held by key */
    const kd_grant *grants; /* set->g */
    size_t n;
    /* A copy for a stream (ks_auth_copy) is used by two threads and lives
     * long: it re-reads its session and grants every few seconds, so a
     * logout, an expiry or a revoked grant ends what the stream shows. */
    int is_copy;
    char ws[256];      /* a copy's workspace ("" = default): its request's */
    int gone;          /* the session ended */
    int64_t loaded_at;
    pthread_mutex_t mu;
} principal;

#define COPY_REFRESH_NS (2 * (int64_t)1000000000)

static int record_str(const char *json, size_t len, const char *name, char *out, size_t size);

int ks_auth_enabled(void)
{
    return A.on;
}

static void owner_get(char out[KD_AUTH_KEY_HEX])
{
    pthread_mutex_lock(&A.mu);
    memcpy(out, A.owner, KD_AUTH_KEY_HEX);
    pthread_mutex_unlock(&A.mu);
}

static int is_owner(const char *key)
{
    char o[KD_AUTH_KEY_HEX];
    owner_get(o);
    return o[0] && strcmp(o, key) == 0;
}

/* ------------------------------------------------------------------------
 * Bodies (the Bearer header and durations are parsed in parse.c)
 * ---------------------------------------------------------------------- */

/* A string member of a JSON object body (canonical text), malloc'd; NULL
 * when absent or not a string. */
static char *member_str(const char *canon, size_t len, const char *name)
{
    const char *v;
    size_t vl;
    char *out = NULL;
    size_t ol;
    if (kd_json_path(canon, len, name, &v, &vl) != KD_OK || vl < 2 || v[0] != '"')
        return NULL;
    if (kd_json_unquote(v, vl, &out, &ol) != KD_OK)
        return NULL;
    if (strlen(out) != ol) { /* a NUL inside */
        kd_free(out);
        return NULL;
    }
    return out;
}

/* The request body in canonical form, or NULL after a 400. */
static char *body_canon(const ks_request *req, ks_response *res, size_t *len)
{
    char err[256], *c = NULL;
    if (kd_json_canonical(req->body, req->body_len, &c, len, err, sizeof err) != KD_OK) {
        ks_error(res, 400, "invalid", "body: %s", err);
        return NULL;
    }
    if (c[0] != '{') {
        kd_free(c);
        ks_error(res, 400, "invalid", "body: expected a JSON object");
        return NULL;
    }
    return c;
}

/* ------------------------------------------------------------------------
 * Grants and what they cover
 * ---------------------------------------------------------------------- */

/* Grants whose signature was verified, by their version_id (the SHA-256
 * of the stored canonical bytes): the same bytes verify the same way, so
 * a hit skips the Ed25519 check (expiry, scope and the granter's rights
 * are still checked on every use). A direct-mapped table; a collision
 * only costs a verification. */
#define GRANT_CACHE 512
static struct grant_cache {
    pthread_mutex_t mu;
    struct {
        char id[KD_ID_HEX];
        kd_grant g;
    } e[GRANT_CACHE];
} GC = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int grant_verify_cached(const char *value, size_t len, const char *version_id, kd_grant *g)
{
    if (strlen(version_id) != 64)
        return kd_grant_verify(value, len, g, NULL, 0);
    size_t slot = 0; /* from the first hex digits: the id is a hash already */
    for (int i = 0; i < 6 && version_id[i]; i++) {
        char c = version_id[i];
        slot = slot * 16 + (size_t)(c >= 'a' ? c - 'a' + 10 : c >= 'A' ? c - 'A' + 10 : c - '0');
    }
    slot %= GRANT_CACHE;
    pthread_mutex_lock(&GC.mu);
    int hit = strcmp(GC.e[slot].id, version_id) == 0;
    if (hit)
        *g = GC.e[slot].g;
    pthread_mutex_unlock(&GC.mu);
    if (hit)
        return KD_OK;
    int rc = kd_grant_verify(value, len, g, NULL, 0);
    if (rc == KD_OK) {
        pthread_mutex_lock(&GC.mu);
        memcpy(GC.e[slot].id, version_id, KD_ID_HEX);
        GC.e[slot].g = *g;
        pthread_mutex_unlock(&GC.mu);
    }
    return rc;
}

/* A grant record read into a set: its version_id and what it gave. */
typedef struct grant_seen {
    char vid[KD_ID_HEX];
    int32_t g; /* index in the set's g[], or -1: never valid (expired, not
                * the granter's signature, a grant to oneself, misfiled) */
} grant_seen;

/* The valid grants held by one key: signed by their granter, unexpired,
 * and not granted by the key to itself (such a grant never authorizes
 * anything: see covers_list). Read once and shared, read-only, by every
 * request that needs them, until one of the key's grants is created or
 * revoked (slot_gen) or one of them expires (valid_until). Reading them
 * anew for every request cost one Ed25519 check per grant whenever the
 * verification cache above missed, which a pile of grants to one
 * identity made it do every time: with 300 grants held by a granter,
 * each request of its grantees took 17 ms. */
struct grant_set {
    atomic_int refs;      /* the table's and each user's */
    uint64_t gen;         /* its slot's generation when read */
    int64_t valid_until;  /* the earliest expiry among them (INT64_MAX: none) */
    char key[KD_AUTH_KEY_HEX];
    size_t n, cap;
    kd_grant *g;
    /* Every record read, sorted by vid: the next reading of this key
     * takes what it already knows of the same bytes from here instead of
     * checking their signature again. */
    grant_seen *seen;
    size_t nseen, capseen;
    const struct grant_set *hint; /* while reading: the set read before */
    int complete;                 /* every record was read (no failure) */
};

#define GRANT_SETS 1024 /* sets kept, by key hash; a collision costs a reading */
static struct {
    pthread_mutex_t mu;
    grant_set *s[GRANT_SETS];
} GS = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Bumped after every write of a grant record to its grantee's slot
 * (grants_changed): a set read before it is stale. Grant records are
 * written only by this server while it runs (it holds the database), and
 * a grant record changes what its grantee holds, nothing else. */
static atomic_uint_fast64_t slot_gen[GRANT_SETS];

static size_t grant_set_slot(const char *key)
{
    size_t h = 5381;
    for (const char *c = key; *c; c++)
        h = h * 33 + (unsigned char)*c;
    return h % GRANT_SETS;
}

static void grants_changed(const char *grantee)
{
    atomic_fetch_add(&slot_gen[grant_set_slot(grantee)], 1);
}

static void grant_set_release(grant_set *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1) {
        free(s->g);
        free(s->seen);
        free(s);
    }
}

static int seen_cmp(const void *a, const void *b)
{
    return strcmp(((const grant_seen *)a)->vid, ((const grant_seen *)b)->vid);
}

/* Add g to the set (valid now); -1 when out of memory. */
static int set_add(grant_set *l, const kd_grant *g)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        kd_grant *p = realloc(l->g, cap * sizeof *p);
        if (!p)
            return -1;
        l->g = p;
        l->cap = cap;
    }
    l->g[l->n++] = *g;
    if (g->expires && g->expires < l->valid_until)
        l->valid_until = g->expires;
    return 0;
}

static int collect_grant(void *ctx, const char *key, const char *value, size_t value_len, const kd_version *v)
{
    (void)key;
    grant_set *l = ctx;
    if (l->nseen == l->capseen) {
        size_t cap = l->capseen ? l->capseen * 2 : 8;
        grant_seen *p = realloc(l->seen, cap * sizeof *p);
        if (!p)
            return 1;
        l->seen = p;
        l->capseen = cap;
    }
    grant_seen *e = &l->seen[l->nseen];
    snprintf(e->vid, sizeof e->vid, "%s", v->version_id);
    e->g = -1;
    const grant_seen *known = l->hint && l->hint->nseen
                                  ? bsearch(e, l->hint->seen, l->hint->nseen, sizeof *e, seen_cmp)
                                  : NULL;
    kd_grant g;
    int rc = KD_OK;
    if (known && known->g < 0) {
        l->nseen++; /* the same bytes were never valid: they never will be */
        return 0;
    }
    if (known)
        g = l->hint->g[known->g];
    else if ((rc = grant_verify_cached(value, value_len, v->version_id, &g)) == KD_ENOMEM)
        return 1; /* not an answer about these bytes */
    /* Only final answers are remembered: a bad signature or form, a grant
     * to someone else or to oneself, an expiry (time goes one way). */
    l->nseen++;
    if (rc != KD_OK || strcmp(g.grantee, l->key) != 0 || strcmp(g.granter, l->key) == 0 ||
        (g.expires && g.expires <= kd_now()))
        return 0;
    if (set_add(l, &g) != 0) {
        l->nseen--;
        return 1;
    }
    e->g = (int32_t)(l->n - 1);
    return 0;
}

/* The valid grants held by key, with a reference the caller releases
 * (grant_set_release). */
static grant_set *grants_of(const char *key)
{
    size_t slot = grant_set_slot(key);
    uint64_t gen = atomic_load(&slot_gen[slot]);
    pthread_mutex_lock(&GS.mu);
    grant_set *s = GS.s[slot], *hint = NULL;
    if (s && strcmp(s->key, key) == 0 && s->complete) {
        if (s->gen == gen && kd_now() < s->valid_until) {
            atomic_fetch_add(&s->refs, 1);
            pthread_mutex_unlock(&GS.mu);
            return s;
        }
        hint = s;
        atomic_fetch_add(&hint->refs, 1);
    }
    pthread_mutex_unlock(&GS.mu);
    /* Read them (gen was taken first: a grant written meanwhile makes
     * this set stale at once, never a stale set current). */
    s = ks_xmalloc(sizeof *s);
    memset(s, 0, sizeof *s);
    atomic_init(&s->refs, 2);
    s->gen = gen;
    s->valid_until = INT64_MAX;
    s->hint = hint;
    snprintf(s->key, sizeof s->key, "%s", key);
    char prefix[80];
    snprintf(prefix, sizeof prefix, "grant/%s/", key);
    /* A reading cut short (out of memory, a failed scan) serves this
     * request with what it got, fewer grants, never more, and is not
     * kept as current nor as the next reading's hint. */
    s->complete = kd_scan(A.db, KD_AUTH_NS, prefix, NULL, 0, KD_TIME_MAX, collect_grant, s) == KD_OK;
    s->hint = NULL;
    grant_set_release(hint);
    if (s->nseen > 1)
        qsort(s->seen, s->nseen, sizeof *s->seen, seen_cmp);
    pthread_mutex_lock(&GS.mu);
    grant_set *old = GS.s[slot];
    GS.s[slot] = s;
    pthread_mutex_unlock(&GS.mu);
    grant_set_release(old);
    return s;
}

static void grant_sets_clear(void)
{
    pthread_mutex_lock(&GS.mu);
    for (size_t i = 0; i < GRANT_SETS; i++) {
        grant_set_release(GS.s[i]);
        GS.s[i] = NULL;
    }
    pthread_mutex_unlock(&GS.mu);
}

/* A scope asked about: everything (all), a namespace (key NULL), a key. */
typedef struct scope {
    int all;
    const char *ns;
    const char *key;
} scope;

static int pattern_is_all(const char *p)
{
    if (!*p)
        return 0;
    for (; *p; p++)
        if (*p != '*')
            return 0;
    return 1;
}

/* The workspace the current check is about (the request's {ws}; NULL =
 * default): a grant covers only its own workspace. Set by every entry
 * point (ks_auth_gate, ks_may*, ks_may_copy) for the calling thread. */
static __thread const char *t_ws;

static void set_ws(const char *ws)
{
    t_ws = ws && *ws ? ws : NULL;
}

static int grant_covers(const kd_grant *g, const scope *s, kd_perm perm)
{
    if (strcmp(g->workspace, t_ws ? t_ws : "default") != 0)
        return 0;
    if (s->all)
        return (int)g->perm >= (int)perm && pattern_is_all(g->ns_pattern) && !g->has_prefix;
    return kd_grant_covers(g, s->ns, s->key, perm);
}

static int covers_list(const char *key, const kd_grant *gs, size_t n, const scope *s, kd_perm perm, int depth);

/* May `key` do perm on scope s? The owner may do anything; anyone else
 * needs a valid grant covering it whose granter is the owner or, in turn,
 * may administer the same scope (so revoking a granter's rights takes
 * back what it granted). */
static int covers(const char *key, const scope *s, kd_perm perm, int depth)
{
    if (is_owner(key))
        return 1;
    if (depth > MAX_CHAIN)
        return 0;
    grant_set *gs = grants_of(key);
    int ok = covers_list(key, gs->g, gs->n, s, perm, depth);
    grant_set_release(gs);
    return ok;
}

static int covers_list(const char *key, const kd_grant *gs, size_t n, const scope *s, kd_perm perm, int depth)
{
    if (is_owner(key))
        return 1;
    for (size_t i = 0; i < n; i++) {
        if (!grant_covers(&gs[i], s, perm) || strcmp(gs[i].granter, key) == 0)
            continue;
        if (is_owner(gs[i].granter) || covers(gs[i].granter, s, KD_PERM_ADMIN, depth + 1))
            return 1;
    }
    return 0;
}

/* Does admin-holder `key` administer everything grant g gives? (The
 * pattern, read as a name, must match key's own pattern: a '*' in it is
 * matched by a '*' of the admin's; the prefix must extend the admin's.) */
static int administers(const char *key, const kd_grant *g, int depth)
{
    if (is_owner(key))
        return 1;
    if (depth > MAX_CHAIN)
        return 0;
    grant_set *gs = grants_of(key);
    int ok = 0;
    for (size_t i = 0; i < gs->n && !ok; i++) {
        const kd_grant *a = &gs->g[i];
        if (a->perm != KD_PERM_ADMIN || strcmp(a->granter, key) == 0 || strcmp(a->workspace, g->workspace) != 0 ||
            !kd_auth_ns_match(a->ns_pattern, g->ns_pattern))
            continue;
        if (a->has_prefix && (!g->has_prefix || strncmp(g->prefix, a->prefix, strlen(a->prefix)) != 0))
            continue;
        ok = is_owner(a->granter) || administers(a->granter, a, depth + 1);
    }
    grant_set_release(gs);
    return ok;
}

/* Would grant g authorize anything? As on use (covers): its granter is the
 * owner, or someone else than its grantee who administers its scope, with
 * the granter counted as the first of the MAX_CHAIN granters followed. */
static int grant_effective(const kd_grant *g)
{
    if (is_owner(g->granter))
        return 1;
    return strcmp(g->granter, g->grantee) != 0 && administers(g->granter, g, 1);
}

static void principal_load(principal *p)
{
    if (p->loaded && p->is_copy && kd_now() - p->loaded_at > COPY_REFRESH_NS) {
        grant_set_release(p->set);
        p->set = NULL;
        p->grants = NULL;
        p->n = 0;
        p->loaded = 0;
        char rk[80], *json = NULL, when[64];
        size_t len = 0;
        int64_t exp = 0;
        snprintf(rk, sizeof rk, "session/%s", p->token_hash);
        if (kd_get(A.db, KD_AUTH_NS, rk, &json, &len, NULL) != KD_OK ||
            record_str(json, len, "expires_at", when, sizeof when) != 0 ||
            kd_time_parse(when, &exp, NULL, 0) != KD_OK || exp <= kd_now())
            p->gone = 1;
        kd_free(json);
    }
    if (!p->loaded) {
        p->set = grants_of(p->key);
        p->grants = p->set->g;
        p->n = p->set->n;
        p->loaded = 1;
        p->loaded_at = kd_now();
    }
}

static int may(principal *p, const scope *s, kd_perm perm)
{
    if (!p || p->gone)
        return 0;
    if (is_owner(p->key) && !p->is_copy)
        return 1;
    principal_load(p);
    if (p->gone)
        return 0;
    return covers_list(p->key, p->grants, p->n, s, perm, 0);
}

/* A user namespace for permission purposes: a vector namespace counts as
 * the namespace it belongs to. */
static const char *user_ns(const char *ns)
{
    return ns && strncmp(ns, KD_VECTOR_NS_PREFIX, strlen(KD_VECTOR_NS_PREFIX)) == 0
               ? ns + strlen(KD_VECTOR_NS_PREFIX)
               : ns;
}

int ks_may(const ks_request *req, const char *ns, const char *key, kd_perm perm)
{
    if (!A.on)
        return 1;
    set_ws(req->ws);
    scope s = {0, user_ns(ns), key};
    return ns && may(req->auth, &s, perm);
}

int ks_may_all(const ks_request *req, kd_perm perm)
{
    if (!A.on)
        return 1;
    set_ws(req->ws);
    scope s = {1, NULL, NULL};
    return may(req->auth, &s, perm);
}

int ks_may_database(const ks_request *req)
{
    if (!A.on)
        return 1;
    set_ws(NULL);
    scope s = {1, NULL, NULL};
    int ok = may(req->auth, &s, KD_PERM_READ);
    set_ws(req->ws);
    return ok;
}

int ks_may_some(const ks_request *req, const char *ns)
{
    char **ranges = NULL;
    size_t n = 0;
    if (ks_read_prefixes(req, ns, &ranges, &n))
        return 1;
    kd_free_list(ranges, n);
    return n > 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A growing list of prefixes (ks_read_prefixes). */
typedef struct prefix_list {
    char **p;
    size_t n, cap;
} prefix_list;

static void prefix_add(prefix_list *l, const char *prefix)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 8;
        l->p = ks_xrealloc(l->p, l->cap * sizeof *l->p);
    }
    l->p[l->n++] = ks_xstrdup(prefix);
}

/* How many candidates, and grants looked at, one grant's narrowing may
 * take (chain_prefixes): a bound on the work of a pathological graph of
 * admin grants. */
#define CHAIN_PREFIXES_MAX 64
#define CHAIN_GRANTS_MAX 10000

/* The prefixes, longer than `base` and extending it, of the admin grants
 * on ns held by `key` and, up the chain, by their granters: the ranges a
 * grant of `base` given by `key` may still be worth when key administers
 * less than base now (grants change after they are given). Each is only a
 * candidate: the caller checks it as any use is checked. */
static void chain_prefixes(const char *key, const char *ns, const char *base, int depth, prefix_list *out,
                           size_t *looked)
{
    if (is_owner(key) || depth > MAX_CHAIN)
        return;
    grant_set *gs = grants_of(key);
    size_t blen = strlen(base);
    for (size_t i = 0; i < gs->n && out->n < CHAIN_PREFIXES_MAX && *looked < CHAIN_GRANTS_MAX; i++) {
        const kd_grant *a = &gs->g[i];
        ++*looked;
        if ((int)a->perm < (int)KD_PERM_ADMIN || strcmp(a->granter, key) == 0 ||
            strcmp(a->workspace, t_ws ? t_ws : "default") != 0 || !kd_auth_ns_match(a->ns_pattern, ns))
            continue;
        if (a->has_prefix && strlen(a->prefix) > blen && strncmp(a->prefix, base, blen) == 0)
            prefix_add(out, a->prefix);
        chain_prefixes(a->granter, ns, base, depth + 1, out, looked);
    }
    grant_set_release(gs);
}

int ks_read_prefixes(const ks_request *req, const char *ns, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!A.on)
        return 1;
    set_ws(req->ws);
    principal *p = req->auth;
    if (!p || !ns)
        return 0;
    ns = user_ns(ns);
    scope whole = {0, ns, NULL};
    if (may(p, &whole, KD_PERM_READ))
        return 1;
    if (p->gone) /* may() loaded the grants, or found the session gone */
        return 0;
    prefix_list pre = {0};
    for (size_t i = 0; i < p->n; i++) {
        const kd_grant *g = &p->grants[i];
        if ((int)g->perm < (int)KD_PERM_READ || strcmp(g->workspace, t_ws ? t_ws : "default") != 0 ||
            !kd_auth_ns_match(g->ns_pattern, ns))
            continue;
        const char *base = g->has_prefix ? g->prefix : "";
        scope s = {0, ns, base};
        if (covers_list(p->key, g, 1, &s, KD_PERM_READ, 0)) {
            prefix_add(&pre, base);
            continue;
        }
        /* Its granter may administer only part of its range now: what is
         * left are ranges its chain's admin grants start (their prefixes
         * extend its own), each checked as a key read would be. */
        prefix_list cand = {0};
        size_t looked = 0;
        chain_prefixes(g->granter, ns, base, 1, &cand, &looked);
        for (size_t j = 0; j < cand.n; j++) {
            scope c = {0, ns, cand.p[j]};
            if (covers_list(p->key, g, 1, &c, KD_PERM_READ, 0))
                prefix_add(&pre, cand.p[j]);
        }
        kd_free_list(cand.p, cand.n);
    }
    /* Sorted, a prefix's extensions follow it directly (before any name
     * that does not start with it): keep only the shortest of each run. */
    if (pre.n > 1) /* (qsort of no array at all is undefined) */
        qsort(pre.p, pre.n, sizeof *pre.p, cmp_str);
    size_t kept = 0;
    for (size_t i = 0; i < pre.n; i++) {
        if (kept && strncmp(pre.p[i], pre.p[kept - 1], strlen(pre.p[kept - 1])) == 0)
            free(pre.p[i]);
        else
            pre.p[kept++] = pre.p[i];
    }
    *out = pre.p;
    *n = kept;
    return 0;
}

int ks_may_workspace(const ks_request *req, const char *ws)
{
    if (!A.on)
        return 1;
    principal *p = req->auth;
    if (!p || !ws)
        return 0;
    if (is_owner(p->key))
        return 1;
    principal_load(p);
    set_ws(strcmp(ws, "default") ? ws : NULL);
    int ok = 0;
    for (size_t i = 0; i < p->n && !ok; i++) {
        const kd_grant *g = &p->grants[i];
        if (strcmp(g->workspace, ws))
            continue;
        /* A valid grant of some reading in ws (its own pattern, read as a
         * namespace name, is one it covers). */
        scope s = {0, g->ns_pattern, g->has_prefix ? g->prefix : NULL};
        ok = covers_list(p->key, g, 1, &s, KD_PERM_READ, 0);
    }
    set_ws(req->ws);
    return ok;
}

void *ks_auth_copy(const ks_request *req)
{
    if (!A.on || !req->auth)
        return NULL;
    principal *src = req->auth, *p = ks_xmalloc(sizeof *p);
    *p = *src;
    p->set = NULL;
    p->grants = NULL;
    p->n = 0;
    p->loaded = 0;
    p->is_copy = 1;
    snprintf(p->ws, sizeof p->ws, "%s", req->ws ? req->ws : "");
    p->gone = 0;
    pthread_mutex_init(&p->mu, NULL);
    return p;
}

int ks_may_copy(void *copy, const char *ns, const char *key, kd_perm perm)
{
    if (!A.on)
        return 1;
    principal *p = copy;
    scope s = {0, user_ns(ns), key};
    if (!p || !ns)
        return 0;
    set_ws(p->ws);
    pthread_mutex_lock(&p->mu);
    int ok = may(p, &s, perm);
    pthread_mutex_unlock(&p->mu);
    return ok;
}

int ks_auth_copy_valid(void *copy)
{
    principal *p = copy;
    if (!A.on || !p)
        return 1;
    set_ws(p->ws);
    pthread_mutex_lock(&p->mu);
    if (!p->gone)
        principal_load(p);
    int valid = !p->gone;
    pthread_mutex_unlock(&p->mu);
    return valid;
}

void ks_auth_copy_free(void *copy)
{
    principal *p = copy;
    if (p) {
        grant_set_release(p->set);
        if (p->is_copy)
            pthread_mutex_destroy(&p->mu);
    }
    free(p);
}

void ks_auth_request_free(ks_request *req)
{
    ks_auth_copy_free(req->auth);
    req->auth = NULL;
}

/* ------------------------------------------------------------------------
 * Start: the server's id and its owner
 * ---------------------------------------------------------------------- */

/* A string member of a stored record, into out (size bytes). */
static int record_str(const char *json, size_t len, const char *name, char *out, size_t size)
{
    char *s = member_str(json, len, name);
    if (!s || strlen(s) >= size) {
        kd_free(s);
        return -1;
    }
    memcpy(out, s, strlen(s) + 1);
    kd_free(s);
    return 0;
}

static int register_identity(const char *doc, size_t len, unsigned min_bits, char key[KD_AUTH_KEY_HEX],
                             unsigned *bits, char *err, size_t errlen)
{
    char *canon = NULL;
    size_t cl = 0;
    int rc = kd_auth_check_identity(doc, len, min_bits, key, bits, &canon, &cl, err, errlen);
    if (rc)
        return rc;
    char when[40], rk[80];
    kd_time_format(kd_now(), when, sizeof when);
    ks_buf b = {0};
    ks_buf_printf(&b, "{\"difficulty\":%u,\"document\":%s,\"public_key\":\"%s\",\"registered_at\":\"%s\"}", *bits,
                  canon, key, when);
    kd_free(canon);
    snprintf(rk, sizeof rk, "identity/%s", key);
    rc = kd_auth_put(A.db, rk, b.p, b.len, KD_EXPECT_ABSENT, NULL);
    free(b.p);
    if (rc && rc != KD_ECONFLICT)
        snprintf(err, errlen, "cannot store the identity: %s", kd_errmsg(A.db));
    return rc;
}

int ks_auth_start(kd_db *db, const ks_config *cfg, char *err, size_t errlen)
{
    A.db = db;
    if (getrandom(&challenge_seed, sizeof challenge_seed, 0) != (ssize_t)sizeof challenge_seed)
        challenge_seed = (uint64_t)kd_now() ^ 1469598103934665603ull;
    A.difficulty = cfg->auth_difficulty;
    A.ttl = cfg->session_ttl_ns > 0 ? cfg->session_ttl_ns : 86400 * (int64_t)1000000000;
    A.nch = 0;
    A.owner[0] = '\0';
    char *json = NULL;
    size_t len = 0;
    int rc = kd_get(db, KD_AUTH_NS, "server", &json, &len, NULL);
    if (rc == KD_OK) {
        rc = record_str(json, len, "server_id", A.server_id, sizeof A.server_id) ? KD_ECORRUPT : KD_OK;
        kd_free(json);
    } else if (rc == KD_ENOTFOUND) {
        char id[33], rec[80];
        if (kd_auth_random_hex(16, id) != KD_OK) {
            snprintf(err, errlen, "no random bytes for the server's id");
            return -1;
        }
        int n = snprintf(rec, sizeof rec, "{\"server_id\":\"%s\"}", id);
        rc = kd_auth_put(db, "server", rec, (size_t)n, KD_EXPECT_ABSENT, NULL);
        snprintf(A.server_id, sizeof A.server_id, "%s", id);
    }
    if (rc) {
        snprintf(err, errlen, "auth: cannot read or make the server's id in %s: %s", KD_AUTH_NS, kd_strerror(rc));
        return -1;
    }
    if (cfg->owner_doc) {
        char key[KD_AUTH_KEY_HEX];
        unsigned bits = 0;
        char why[512];
        rc = register_identity(cfg->owner_doc, strlen(cfg->owner_doc), 0, key, &bits, why, sizeof why);
        if (rc && rc != KD_ECONFLICT) {
            snprintf(err, errlen, "--owner: %s", why);
            return -1;
        }
        char rec[120], cur[KD_AUTH_KEY_HEX] = "";
        if (kd_get(db, KD_AUTH_NS, "owner", &json, &len, NULL) == KD_OK) {
            record_str(json, len, "public_key", cur, sizeof cur);
            kd_free(json);
        }
        if (strcmp(cur, key) != 0) {
            int n = snprintf(rec, sizeof rec, "{\"public_key\":\"%s\"}", key);
            if ((rc = kd_auth_put(db, "owner", rec, (size_t)n, NULL, NULL)) != KD_OK) {
                snprintf(err, errlen, "--owner: cannot record the owner: %s", kd_errmsg(db));
                return -1;
            }
        }
        snprintf(A.owner, sizeof A.owner, "%s", key);
    } else if (kd_get(db, KD_AUTH_NS, "owner", &json, &len, NULL) == KD_OK) {
        record_str(json, len, "public_key", A.owner, sizeof A.owner);
        kd_free(json);
    }
    A.on = 1;
    ks_log(KD_LOG_INFO, "auth on: server id %s, owner %s, minimum proof of work %u bits", A.server_id,
           A.owner[0] ? A.owner : "(the first identity to register)", A.difficulty);
    return 0;
}

void ks_auth_stop(void)
{
    A.on = 0;
    A.db = NULL;
    grant_sets_clear();
}

/* ------------------------------------------------------------------------
 * The gate
 * ---------------------------------------------------------------------- */

static void unauthorized(ks_response *res, const char *why, int invalid_token)
{
    ks_error(res, 401, "unauthorized", "%s", why);
    if (invalid_token)
        snprintf(res->www_authenticate, sizeof res->www_authenticate,
                 "Bearer realm=\"korudelta\", error=\"invalid_token\"");
    else
        snprintf(res->www_authenticate, sizeof res->www_authenticate, "Bearer realm=\"korudelta\"");
}

/* Sessions this thread checked lately, by token hash. A request whose
 * session is here reads only the session record's version (no value, no
 * JSON) and, when it is still the same write, takes the identity and
 * expiry from here: a logout deletes the record and any change to it is a
 * new write, so neither can be missed. Per thread: no lock. */
typedef struct seen_session {
    char token_hash[KD_AUTH_KEY_HEX];
    char write_id[KD_ID_HEX];
    char identity[KD_AUTH_KEY_HEX];
    int64_t expires;
} seen_session;

#define SEEN_SESSIONS 64 /* a power of two */
static _Thread_local seen_session seen[SEEN_SESSIONS];

static unsigned hex_digit(char c)
{
    return c <= '9' ? (unsigned)(c - '0') : (unsigned)((c | 0x20) - 'a' + 10);
}

/* A token hash is a SHA-256: its first two digits spread sessions evenly. */
static seen_session *seen_slot(const char *hash)
{
    return &seen[(hex_digit(hash[0]) << 4 | hex_digit(hash[1])) & (SEEN_SESSIONS - 1)];
}

/* The identity and expiry of the session `rk` (hash: its token's), from
 * this thread's memory when its record is unchanged, else read and parsed.
 * 0, or -1 with the answer in res. */
static int session_record(const char *rk, const char *hash, ks_response *res, char key[KD_AUTH_KEY_HEX],
                          int64_t *expires)
{
    seen_session *c = seen_slot(hash);
    kd_version v;
    int rc;
    if (strcmp(c->token_hash, hash) == 0) {
        rc = kd_get(A.db, KD_AUTH_NS, rk, NULL, NULL, &v);
        if (rc == KD_OK && strcmp(v.write_id, c->write_id) == 0) {
            memcpy(key, c->identity, KD_AUTH_KEY_HEX);
            *expires = c->expires;
            return 0;
        }
        c->token_hash[0] = '\0';
    }
    char *json = NULL;
    size_t len = 0;
    rc = kd_get(A.db, KD_AUTH_NS, rk, &json, &len, &v);
    if (rc == KD_ENOTFOUND || rc == KD_EDELETED) {
        unauthorized(res, "unknown or revoked session token: log in again", 1);
        return -1;
    }
    if (rc) {
        ks_kd_error(res, A.db, rc);
        return -1;
    }
    char when[64];
    int ok = record_str(json, len, "identity", key, KD_AUTH_KEY_HEX) == 0 &&
             record_str(json, len, "expires_at", when, sizeof when) == 0 &&
             kd_time_parse(when, expires, NULL, 0) == KD_OK;
    kd_free(json);
    if (!ok) {
        ks_error(res, 500, "internal", "session record is damaged");
        return -1;
    }
    memcpy(c->token_hash, hash, KD_AUTH_KEY_HEX);
    memcpy(c->write_id, v.write_id, KD_ID_HEX);
    memcpy(c->identity, key, KD_AUTH_KEY_HEX);
    c->expires = *expires;
    return 0;
}

/* The session of the request's token: 0 with *out, or -1 with the answer
 * in res (401, or 500 for a damaged record or a database error). */
static int session(const ks_request *req, ks_response *res, principal **out)
{
    const char *h = ks_header(req, "Authorization");
    char tok[65], hash[KD_AUTH_KEY_HEX], rk[80];
    if (!h) {
        unauthorized(res, "this server needs a session: send 'Authorization: Bearer <token>' (POST /api/v1/auth/login)",
                     0);
        return -1;
    }
    if (!ks_auth_bearer(h, tok)) {
        unauthorized(res, "malformed Authorization header: expected 'Bearer <64 hex digits>'", 1);
        return -1;
    }
    kd_auth_token_hash(tok, hash);
    snprintf(rk, sizeof rk, "session/%s", hash);
    char key[KD_AUTH_KEY_HEX];
    int64_t expires;
    if (session_record(rk, hash, res, key, &expires) != 0)
        return -1;
    if (expires <= kd_now()) {
        kd_auth_delete(A.db, rk, NULL); /* tidy: an expired session is gone for good */
        unauthorized(res, "session expired: log in again", 1);
        return -1;
    }
    principal *p = ks_xmalloc(sizeof *p);
    memset(p, 0, sizeof *p);
    memcpy(p->key, key, sizeof key);
    p->expires = expires;
    memcpy(p->token_hash, hash, sizeof hash);
    *out = p;
    return 0;
}

enum need {
    N_OPEN,      /* nothing */
    N_SESSION,   /* a session; the handler filters or checks */
    N_KEY,       /* perm on {ns}/{key} */
    N_NS,        /* perm on the whole of {ns} */
    N_NS_SOME,   /* read on some of {ns}: the handler filters keys */
    N_ALL,       /* perm on every namespace */
    N_DB,        /* perm on every namespace of {ws} and of the default workspace:
                  * the route shows figures of {ws} and of the whole database */
    N_BATCH,     /* write on each write's namespace/key in the body */
    N_VIEW,      /* perm on the whole source namespace of view {name} */
    N_VIEW_BODY, /* perm on the whole namespace named by the body's "source" */
    N_INDEX_BODY, /* perm on the whole namespace named by the body's "namespace" */
    N_WATCH,     /* read on ?ns=&key= (the stream filters events without ns) */
    N_CHANGES,   /* read on ?ns= whole, or on everything without it */
    N_WS_BODY,   /* perm on every namespace of the workspace the body's "name" names */
    N_WS_VAR,    /* perm on every namespace of workspace {name} */
};

static const struct policy {
    const char *route;
    enum need need;
    kd_perm perm;
} policies[] = {
    {"healthz", N_OPEN, 0},
    {"auth_register", N_OPEN, 0},
    {"auth_challenge", N_OPEN, 0},
    {"auth_login", N_OPEN, 0},
    {"auth_logout", N_SESSION, 0},
    {"auth_whoami", N_SESSION, 0},
    {"auth_grants_list", N_SESSION, 0},
    {"auth_grant_create", N_SESSION, 0},
    {"auth_grant_revoke", N_SESSION, 0},
    {"metrics", N_ALL, KD_PERM_ADMIN},
    {"status", N_DB, KD_PERM_READ},
    {"verify", N_ALL, KD_PERM_ADMIN},
    {"import", N_ALL, KD_PERM_ADMIN},
    {"backup", N_ALL, KD_PERM_ADMIN},
    {"compact", N_ALL, KD_PERM_ADMIN},
    {"consolidate", N_ALL, KD_PERM_ADMIN},
    {"retention_list", N_ALL, KD_PERM_READ},
    {"retention_get", N_NS, KD_PERM_READ},
    {"retention_set", N_NS, KD_PERM_ADMIN},
    {"retention_clear", N_NS, KD_PERM_ADMIN},
    {"changes", N_CHANGES, KD_PERM_READ},
    {"namespaces", N_SESSION, 0},
    {"keys_list", N_NS_SOME, KD_PERM_READ},
    {"key_get", N_KEY, KD_PERM_READ},
    {"key_history", N_KEY, KD_PERM_READ},
    {"key_diff", N_KEY, KD_PERM_READ},
    {"history_query", N_KEY, KD_PERM_READ},
    {"vector_get", N_KEY, KD_PERM_READ},
    {"vector_history", N_KEY, KD_PERM_READ},
    {"key_put", N_KEY, KD_PERM_WRITE},
    {"key_delete", N_KEY, KD_PERM_WRITE},
    {"vector_put", N_KEY, KD_PERM_WRITE},
    {"vector_delete", N_KEY, KD_PERM_WRITE},
    {"batch", N_BATCH, KD_PERM_WRITE},
    {"watch", N_WATCH, KD_PERM_READ},
    {"query", N_NS, KD_PERM_READ},
    {"query_get", N_NS, KD_PERM_READ},
    {"scan", N_NS, KD_PERM_READ},
    {"vector_search", N_NS, KD_PERM_READ},
    {"vector_stats", N_NS, KD_PERM_READ},
    {"vector_search_all", N_SESSION, 0},
    {"vector_stats_all", N_SESSION, 0},
    {"views_list", N_SESSION, 0},
    {"indexes_list", N_SESSION, 0},
    {"view_create", N_VIEW_BODY, KD_PERM_ADMIN},
    {"view_get", N_VIEW, KD_PERM_READ},
    {"view_rows", N_VIEW, KD_PERM_READ},
    {"view_refresh", N_VIEW, KD_PERM_WRITE},
    {"view_delete", N_VIEW, KD_PERM_ADMIN},
    {"index_create", N_INDEX_BODY, KD_PERM_ADMIN},
    {"index_drop", N_NS, KD_PERM_ADMIN},
    {"workspaces_list", N_SESSION, 0},
    {"workspace_create", N_WS_BODY, KD_PERM_ADMIN},
    {"workspace_drop", N_WS_VAR, KD_PERM_ADMIN},
    {"workspace_import", N_WS_VAR, KD_PERM_ADMIN},
};

/* 403; the workspace is named when the check was about one other than
 * default (t_ws, set by the entry point). */
static int forbidden(ks_response *res, kd_perm perm, const char *what)
{
    if (t_ws && strcmp(t_ws, "default") != 0)
        ks_error(res, 403, "forbidden", "no capability gives you %s on %s in workspace '%.255s'", kd_perm_name(perm),
                 what, t_ws);
    else
        ks_error(res, 403, "forbidden", "no capability gives you %s on %s", kd_perm_name(perm), what);
    return -1;
}

static int check_ns_key(principal *p, ks_response *res, const char *ns, const char *key, kd_perm perm)
{
    if (!ns) { /* the handler reports the missing name */
        return 0;
    }
    scope s = {0, user_ns(ns), key};
    if (may(p, &s, perm))
        return 0;
    char what[400];
    if (key)
        snprintf(what, sizeof what, "key '%.150s' of namespace '%.150s'", key, ns);
    else
        snprintf(what, sizeof what, "the whole namespace '%.200s'", ns);
    return forbidden(res, perm, what);
}

/* Each write of a batch body {"writes":[{"namespace","key",…},…]}. */
static int check_batch(principal *p, const ks_request *req, ks_response *res, kd_perm perm)
{
    size_t len;
    char *c = body_canon(req, res, &len);
    if (!c)
        return -1;
    const char *arr;
    size_t al;
    int rc = 0;
    if (kd_json_path(c, len, "writes", &arr, &al) != KD_OK || arr[0] != '[') {
        kd_free(c);
        return 0; /* the handler explains what is missing */
    }
    size_t pos = 0;
    const char *v;
    size_t vl;
    while (!rc && kd_json_next(arr, al, &pos, NULL, NULL, &v, &vl) == 1) {
        char *ns = v[0] == '{' ? member_str(v, vl, "namespace") : NULL;
        char *key = v[0] == '{' ? member_str(v, vl, "key") : NULL;
        if (ns && key)
            rc = check_ns_key(p, res, ns, key, perm);
        kd_free(ns);
        kd_free(key);
    }
    kd_free(c);
    return rc;
}

static int check_body_ns(principal *p, const ks_request *req, ks_response *res, const char *member, kd_perm perm)
{
    size_t len;
    char *c = body_canon(req, res, &len);
    if (!c)
        return -1;
    char *ns = member_str(c, len, member);
    kd_free(c);
    int rc = ns ? check_ns_key(p, res, ns, NULL, perm) : 0;
    kd_free(ns);
    return rc;
}

static int check_view(principal *p, const ks_request *req, ks_response *res, kd_perm perm)
{
    const char *name = ks_var(req, "name");
    kd_view_info *list = NULL;
    size_t n = 0;
    if (kd_view_list(req->db, &list, &n) != KD_OK)
        return 0;
    int allowed = 0, found = 0;
    for (size_t i = 0; i < n; i++)
        if (name && strcmp(list[i].name, name) == 0) {
            scope s = {0, user_ns(list[i].source), NULL};
            found = 1;
            allowed = may(p, &s, perm);
        }
    kd_view_list_free(list, n);
    /* One answer whether the view exists or not, naming neither it nor
     * its source: a caller without the right learns nothing of either. */
    if (found ? !allowed : !is_owner(p->key))
        return forbidden(res, perm, "this view (the whole namespace it is made from)");
    return 0;
}

int ks_auth_gate(ks_request *req, ks_response *res, const char *name)
{
    const struct policy *pol = NULL;
    set_ws(req->ws);
    for (size_t i = 0; name && i < sizeof policies / sizeof policies[0]; i++)
        if (strcmp(policies[i].route, name) == 0) {
            pol = &policies[i];
            break;
        }
    if (pol && pol->need == N_OPEN)
        return 0;
    principal *p = req->auth; /* ks_auth_workspace_gate may have found it */
    if (!p && session(req, res, &p) != 0)
        return -1;
    req->auth = p;
    if (!pol) { /* a route nobody classified: closed */
        ks_error(res, 403, "forbidden", "this route is not open to sessions");
        return -1;
    }
    scope all = {1, NULL, NULL};
    switch (pol->need) {
    case N_OPEN:
    case N_SESSION: return 0;
    case N_KEY: return check_ns_key(p, res, ks_var(req, "ns"), ks_var(req, "key"), pol->perm);
    case N_NS: return check_ns_key(p, res, ks_var(req, "ns"), NULL, pol->perm);
    case N_NS_SOME: {
        const char *ns = ks_var(req, "ns");
        if (ns && !ks_may_some(req, ns)) {
            char what[300];
            snprintf(what, sizeof what, "any key of namespace '%.200s'", ns);
            return forbidden(res, KD_PERM_READ, what);
        }
        return 0;
    }
    case N_ALL:
        return may(p, &all, pol->perm) ? 0 : forbidden(res, pol->perm, "every namespace");
    case N_DB: {
        /* a workspace's status shows its key counts and the database's
         * figures (disk, segments, last write, causal roots, upkeep):
         * other workspaces' activity */
        if (!may(p, &all, pol->perm))
            return forbidden(res, pol->perm, "every namespace");
        set_ws(NULL);
        int rc = may(p, &all, pol->perm) ? 0
                                          : forbidden(res, pol->perm,
                                                      "every namespace of the default workspace (a status shows "
                                                      "figures of the whole database, every workspace's included)");
        set_ws(req->ws);
        return rc;
    }
    case N_BATCH: return check_batch(p, req, res, pol->perm);
    case N_VIEW: return check_view(p, req, res, pol->perm);
    case N_VIEW_BODY: return check_body_ns(p, req, res, "source", pol->perm);
    case N_INDEX_BODY: return check_body_ns(p, req, res, "namespace", pol->perm);
    case N_WATCH: {
        const char *ns = ks_param(req, "ns");
        if (!ns) /* every namespace: the stream shows only readable events */
            return 0;
        return check_ns_key(p, res, ns, ks_param(req, "key"), pol->perm);
    }
    case N_CHANGES: {
        const char *ns = ks_param(req, "ns");
        if (ns)
            return check_ns_key(p, res, ns, NULL, pol->perm);
        return may(p, &all, pol->perm) ? 0 : forbidden(res, pol->perm, "every namespace");
    }
    case N_WS_BODY:
    case N_WS_VAR: {
        const char *v = ks_var(req, "name");
        char *wsname = pol->need == N_WS_VAR ? ks_xstrdup(v ? v : "") : ks_ws_body_name(req, res);
        if (!wsname)
            return -1;
        set_ws(wsname);
        int ok = may(p, &all, pol->perm);
        set_ws(req->ws);
        char what[320];
        snprintf(what, sizeof what, "every namespace of workspace '%.255s'", wsname);
        free(wsname);
        return ok ? 0 : forbidden(res, pol->perm, what);
    }
    }
    return 0;
}

int ks_auth_workspace_gate(ks_request *req, ks_response *res, const char *ws)
{
    if (!A.on || !ws || strcmp(ws, "default") == 0)
        return 0;
    principal *p = NULL;
    if (session(req, res, &p) != 0)
        return -1;
    req->auth = p;
    if (ks_may_workspace(req, ws))
        return 0;
    /* the library's words for a workspace that does not exist */
    ks_error(res, 404, "not_found", "no workspace named '%s' (create it first)", ws);
    return -1;
}

/* ------------------------------------------------------------------------
 * Routes: /api/v1/auth/…
 * ---------------------------------------------------------------------- */

static int auth_off(ks_response *res)
{
    if (A.on)
        return 0;
    ks_error(res, 404, "not_found", "this server runs without --auth");
    return 1;
}

/* POST /api/v1/auth/register {identity document} → 201
 * {"difficulty","owner","public_key"} */
static int h_register(ks_request *req, ks_response *res)
{
    if (auth_off(res))
        return 0;
    char key[KD_AUTH_KEY_HEX], err[512];
    unsigned bits = 0;
    int rc = register_identity(req->body, req->body_len, A.difficulty, key, &bits, err, sizeof err);
    if (rc == KD_ECONFLICT) {
        ks_error(res, 409, "exists", "identity %s is already registered", key);
        return 0;
    }
    if (rc == KD_EINVALID) {
        ks_error(res, 400, "invalid", "%s", err);
        return 0;
    }
    if (rc) {
        ks_error(res, ks_kd_status(rc), "internal", "%s", err);
        return 0;
    }
    /* The first identity on a server without an owner becomes the owner
     * (a conditional write: of two racing registrations one wins). */
    int owner = 0;
    pthread_mutex_lock(&A.mu);
    if (!A.owner[0]) {
        char rec[120];
        int n = snprintf(rec, sizeof rec, "{\"public_key\":\"%s\"}", key);
        if (kd_auth_put(A.db, "owner", rec, (size_t)n, KD_EXPECT_ABSENT, NULL) == KD_OK) {
            snprintf(A.owner, sizeof A.owner, "%s", key);
            owner = 1;
        }
    }
    pthread_mutex_unlock(&A.mu);
    ks_buf b = {0};
    ks_buf_printf(&b, "{\"difficulty\":%u,\"owner\":%s,\"public_key\":\"%s\"}", bits, owner ? "true" : "false", key);
    ks_reply(res, 201, &b);
    return 0;
}

/* Which pending challenge gives way when all MAX_CHALLENGES are taken
 * (under A.mu): the oldest of the client (ks_client_net) holding the most.
 * So a flood pushes out its own challenges, never another client's, and
 * can at worst make a slow client ask again, never lock everyone out for
 * five minutes. Behind a proxy every client has the proxy's address: then
 * it is the oldest of all. */
static size_t challenge_to_drop(void)
{
    enum { SLOTS = 2 * MAX_CHALLENGES };
    static int32_t first[SLOTS], oldest[SLOTS];
    static uint32_t count[SLOTS];
    memset(first, 0xff, sizeof first); /* -1: an empty slot */
    size_t best = 0;
    for (size_t i = 0; i < A.nch; i++) {
        const struct challenge *c = &A.ch[i];
        uint64_t h = challenge_seed;
        for (size_t k = 0; k < sizeof c->net; k++)
            h = (h ^ c->net[k]) * 1099511628211ull;
        h ^= h >> 31; /* splitmix64's finish: every bit of the seed reaches the slot */
        h *= 0xbf58476d1ce4e5b9ull;
        h ^= h >> 29;
        size_t s = (size_t)(c->has_net ? h : 0) % SLOTS;
        while (first[s] >= 0 && (A.ch[first[s]].has_net != c->has_net ||
                                 memcmp(A.ch[first[s]].net, c->net, sizeof c->net) != 0))
            s = (s + 1) % SLOTS;
        if (first[s] < 0) {
            first[s] = oldest[s] = (int32_t)i;
            count[s] = 0;
        }
        count[s]++;
        if (c->expires < A.ch[oldest[s]].expires)
            oldest[s] = (int32_t)i;
        if (i == 0 || count[s] > count[best] ||
            (count[s] == count[best] && A.ch[oldest[s]].expires < A.ch[oldest[best]].expires))
            best = s;
    }
    return (size_t)oldest[best];
}

/* POST /api/v1/auth/challenge → {"challenge","expires_at","server_id"} */
static int h_challenge(ks_request *req, ks_response *res)
{
    if (auth_off(res))
        return 0;
    char hex[KD_AUTH_KEY_HEX], when[40];
    if (kd_auth_random_hex(32, hex) != KD_OK) {
        ks_error(res, 500, "internal", "no random bytes");
        return 0;
    }
    uint8_t net[16];
    int has_net = ks_client_net(req, net) == 0;
    int64_t now = kd_now(), exp = now + CHALLENGE_NS;
    pthread_mutex_lock(&A.mu);
    size_t j = 0;
    for (size_t i = 0; i < A.nch; i++)
        if (A.ch[i].expires > now)
            A.ch[j++] = A.ch[i];
    A.nch = j;
    if (A.nch == MAX_CHALLENGES) /* full of live challenges: a flood */
        A.ch[challenge_to_drop()] = A.ch[--A.nch];
    memcpy(A.ch[A.nch].net, net, sizeof net);
    A.ch[A.nch].has_net = has_net;
    memcpy(A.ch[A.nch].hex, hex, sizeof hex);
    A.ch[A.nch++].expires = exp;
    pthread_mutex_unlock(&A.mu);
    kd_time_format(exp, when, sizeof when);
    ks_buf b = {0};
    ks_buf_printf(&b, "{\"challenge\":\"%s\",\"expires_at\":\"%s\",\"server_id\":\"%s\"}", hex, when, A.server_id);
    ks_reply(res, 200, &b);
    return 0;
}

/* Take a challenge out of the table: 1 if it was there and alive. */
static int take_challenge(const char *hex)
{
    int64_t now = kd_now();
    int ok = 0;
    pthread_mutex_lock(&A.mu);
    for (size_t i = 0; i < A.nch; i++)
        if (strcmp(A.ch[i].hex, hex) == 0) {
            ok = A.ch[i].expires > now;
            A.ch[i] = A.ch[--A.nch];
            break;
        }
    pthread_mutex_unlock(&A.mu);
    return ok;
}

/* Sessions end at logout, and an expired one is deleted when it is next
 * presented; one never presented again would stay in _kd.auth for ever,
 * one record per login. So a login also deletes expired sessions, up to
 * SESSION_SWEEP_MAX, at most once a minute (or a session lifetime, when
 * that is shorter), with one fsync for all of them. */
#define SESSION_SWEEP_NS (60 * (int64_t)1000000000)
#define SESSION_SWEEP_MAX 256
static _Atomic int64_t last_sweep;

typedef struct session_count {
    int64_t now;
    size_t live;
    size_t n;                        /* expired ones found, up to SESSION_SWEEP_MAX */
    char (*expired)[KD_AUTH_KEY_HEX + 16]; /* their keys, or NULL: only count */
} session_count;

static int count_session(void *ctx, const char *key, const char *value, size_t len, const kd_version *v)
{
    (void)v;
    session_count *c = ctx;
    char when[64];
    int64_t exp = 0;
    int expired = record_str(value, len, "expires_at", when, sizeof when) == 0 &&
                  kd_time_parse(when, &exp, NULL, 0) == KD_OK && exp <= c->now;
    if (!expired)
        c->live++;
    else if (c->expired && c->n < SESSION_SWEEP_MAX)
        snprintf(c->expired[c->n++], sizeof c->expired[0], "%s", key);
    return 0;
}

static void sweep_sessions(void)
{
    int64_t now = kd_now(), every = A.ttl < SESSION_SWEEP_NS ? A.ttl : SESSION_SWEEP_NS;
    int64_t last = atomic_load(&last_sweep);
    if (now - last < every || !atomic_compare_exchange_strong(&last_sweep, &last, now))
        return;
    session_count c = {now, 0, 0, ks_xmalloc(SESSION_SWEEP_MAX * sizeof c.expired[0])};
    kd_scan(A.db, KD_AUTH_NS, "session/", NULL, 0, KD_TIME_MAX, count_session, &c);
    /* One fsync for them all (deferred durability), not one each. Only a
     * login sweeps, on a worker, outside any deferral of its own
     * (run_route defers only inline routes; kd_defer_begin does not nest). */
    size_t deleted = 0;
    kd_defer_begin(A.db);
    for (size_t i = 0; i < c.n; i++)
        deleted += kd_auth_delete(A.db, c.expired[i], NULL) == KD_OK;
    uint64_t ticket = kd_defer_end(A.db);
    if (ticket && kd_sync_ticket(A.db, ticket) != KD_OK)
        ks_log(KD_LOG_WARN, "auth: deleting expired sessions: %s", kd_errmsg(A.db));
    else if (deleted)
        ks_log(KD_LOG_INFO, "auth: deleted %zu expired sessions", deleted);
    free(c.expired);
}

long ks_auth_sessions(void)
{
    if (!A.on)
        return 0;
    session_count c = {kd_now(), 0, 0, NULL};
    kd_scan(A.db, KD_AUTH_NS, "session/", NULL, 0, KD_TIME_MAX, count_session, &c);
    return (long)c.live;
}

/* POST /api/v1/auth/login {"public_key","challenge","signature"} →
 * {"expires_at","identity","token"} */
static int h_login(ks_request *req, ks_response *res)
{
    if (auth_off(res))
        return 0;
    size_t len;
    char *c = body_canon(req, res, &len);
    if (!c)
        return 0;
    char *key = member_str(c, len, "public_key"), *ch = member_str(c, len, "challenge");
    char *sig = member_str(c, len, "signature");
    kd_free(c);
    char rk[80], *json = NULL;
    int rc;
    if (!key || !ch || !sig) {
        ks_error(res, 400, "invalid", "body: expected {\"public_key\", \"challenge\", \"signature\"} (strings)");
        goto done;
    }
    /* Single use: the challenge is gone whatever happens next. */
    if (!take_challenge(ch)) {
        unauthorized(res, "unknown, used or expired challenge: ask for a new one", 0);
        goto done;
    }
    snprintf(rk, sizeof rk, "identity/%.70s", key);
    rc = strlen(key) == 64 ? kd_get(A.db, KD_AUTH_NS, rk, &json, NULL, NULL) : KD_ENOTFOUND;
    kd_free(json);
    if (rc == KD_ENOTFOUND || rc == KD_EDELETED) {
        unauthorized(res, "unknown identity: register it first (POST /api/v1/auth/register)", 0);
        goto done;
    }
    if (rc) {
        ks_kd_error(res, A.db, rc);
        goto done;
    }
    if (kd_auth_verify_login(key, ch, A.server_id, "login", sig) != KD_OK) {
        unauthorized(res, "bad signature of the challenge", 0);
        goto done;
    }
    char tok[65], hash[KD_AUTH_KEY_HEX], now_s[40], exp_s[40];
    if (kd_auth_random_hex(32, tok) != KD_OK) {
        ks_error(res, 500, "internal", "no random bytes");
        goto done;
    }
    kd_auth_token_hash(tok, hash);
    int64_t now = kd_now();
    kd_time_format(now, now_s, sizeof now_s);
    kd_time_format(now + A.ttl, exp_s, sizeof exp_s);
    ks_buf b = {0};
    ks_buf_printf(&b, "{\"created_at\":\"%s\",\"expires_at\":\"%s\",\"identity\":\"%s\"}", now_s, exp_s, key);
    snprintf(rk, sizeof rk, "session/%s", hash);
    rc = kd_auth_put(A.db, rk, b.p, b.len, KD_EXPECT_ABSENT, NULL);
    free(b.p);
    memset(&b, 0, sizeof b);
    if (rc) {
        ks_kd_error(res, A.db, rc);
        goto done;
    }
    ks_buf_printf(&b, "{\"expires_at\":\"%s\",\"identity\":\"%s\",\"token\":\"%s\"}", exp_s, key, tok);
    ks_reply(res, 200, &b);
    sweep_sessions();
done:
    kd_free(key);
    kd_free(ch);
    kd_free(sig);
    return 0;
}

/* POST /api/v1/auth/logout: revoke the session of this request's token. */
static int h_logout(ks_request *req, ks_response *res)
{
    if (auth_off(res))
        return 0;
    principal *p = req->auth;
    char rk[80];
    snprintf(rk, sizeof rk, "session/%s", p->token_hash);
    int rc = kd_auth_delete(A.db, rk, NULL);
    if (rc && rc != KD_EDELETED) {
        ks_kd_error(res, A.db, rc);
        return 0;
    }
    static const char ok[] = "{\"revoked\":true}";
    ks_json(res, 200, ok, sizeof ok - 1);
    return 0;
}

typedef struct grant_dump {
    ks_buf b;
    int first;
    const char *only;  /* list grants where this key is granter or grantee; NULL = all */
    int64_t now;
    const char *find;  /* looking for this id */
    char *found;       /* its record key and value */
    char *found_value;
    size_t found_len;
} grant_dump;

static int dump_grant(void *ctx, const char *key, const char *value, size_t value_len, const kd_version *v)
{
    grant_dump *d = ctx;
    const char *id = strrchr(key, '/');
    id = id ? id + 1 : key;
    if (d->find) { /* (the revocation checks what it finds) */
        if (strcmp(id, d->find) == 0 && !d->found) {
            d->found = ks_xstrdup(key);
            d->found_value = ks_xmalloc(value_len + 1);
            memcpy(d->found_value, value, value_len);
            d->found_value[value_len] = '\0';
            d->found_len = value_len;
        }
        return 0;
    }
    if (d->only) {
        /* Someone else's grant is skipped before its signature is
         * checked (~0.1 ms each): listing must not cost every grant of
         * the database for any session. The grantee is in the record's
         * key, the granter in its JSON; both are checked again below. */
        const char *gk = key + strlen("grant/");
        char granter[KD_AUTH_KEY_HEX];
        int holds = strncmp(gk, d->only, KD_AUTH_KEY_HEX - 1) == 0 && gk[KD_AUTH_KEY_HEX - 1] == '/';
        if (!holds && (record_str(value, value_len, "granter", granter, sizeof granter) != 0 ||
                       strcmp(granter, d->only) != 0))
            return 0;
    }
    kd_grant g;
    int valid = grant_verify_cached(value, value_len, v->version_id, &g) == KD_OK;
    if (d->only && (!valid || (strcmp(g.granter, d->only) != 0 && strcmp(g.grantee, d->only) != 0)))
        return 0;
    int expired = valid && g.expires && g.expires <= d->now;
    /* valid: it would authorize now (signature, expiry, granter chain) */
    int effective = valid && !expired && grant_effective(&g);
    ks_buf_printf(&d->b, "%s{\"expired\":%s,\"grant\":%.*s,\"id\":\"%s\",\"valid\":%s}", d->first ? "" : ",",
                  expired ? "true" : "false", (int)value_len, value, id, effective ? "true" : "false");
    d->first = 0;
    return 0;
}

/* GET /api/v1/auth/whoami → {"expires_at","grants":[…],"owner","public_key"} */
static int h_whoami(ks_request *req, ks_response *res)
{
    if (auth_off(res))
        return 0;
    principal *p = req->auth;
    char exp_s[40];
    kd_time_format(p->expires, exp_s, sizeof exp_s);
    grant_dump d = {{0}, 1, p->key, kd_now(), NULL, NULL, NULL, 0};
    char prefix[80];
    snprintf(prefix, sizeof prefix, "grant/%s/", p->key);
    ks_buf_printf(&d.b, "{\"expires_at\":\"%s\",\"grants\":[", exp_s);
    kd_scan(A.db, KD_AUTH_NS, prefix, NULL, 0, KD_TIME_MAX, dump_grant, &d);
    ks_buf_printf(&d.b, "],\"owner\":%s,\"public_key\":\"%s\",\"server_id\":\"%s\"}",
                  is_owner(p->key) ? "true" : "false", p->key, A.server_id);
    ks_reply(res, 200, &d.b);
    return 0;
}

/* GET /api/v1/auth/grants → {"grants":[{"expired","grant","id","valid"}]}:
 * every grant for the owner or an admin of everything, else those the
 * caller gave or holds. */
static int h_grants_list(ks_request *req, ks_response *res)
{
    if (auth_off(res))
        return 0;
    principal *p = req->auth;
    scope all = {1, NULL, NULL};
    grant_dump d = {{0}, 1, may(p, &all, KD_PERM_ADMIN) ? NULL : p->key, kd_now(), NULL, NULL, NULL, 0};
    ks_buf_printf(&d.b, "{\"grants\":[");
    kd_scan(A.db, KD_AUTH_NS, "grant/", NULL, 0, KD_TIME_MAX, dump_grant, &d);
    ks_buf_printf(&d.b, "]}");
    ks_reply(res, 200, &d.b);
    return 0;
}

/* POST /api/v1/auth/grants {signed grant} → 201 {"grant","id"} */
static int h_grant_create(ks_request *req, ks_response *res)
{
    if (auth_off(res))
        return 0;
    principal *p = req->auth;
    kd_grant g;
    char err[512], rk[200];
    if (kd_grant_verify(req->body, req->body_len, &g, err, sizeof err) != KD_OK) {
        ks_error(res, 400, "invalid", "%s", err);
        return 0;
    }
    if (strcmp(g.granter, p->key) != 0) {
        ks_error(res, 403, "forbidden", "a grant is submitted by its granter: log in as %s", g.granter);
        return 0;
    }
    if (g.expires && g.expires <= kd_now()) {
        ks_error(res, 400, "invalid", "grant: already expired");
        return 0;
    }
    if (strcmp(g.grantee, g.granter) == 0) {
        ks_error(res, 400, "invalid",
                 "grant: granter and grantee are the same identity; a grant to oneself gives nothing (rights come "
                 "from the owner or from another admin)");
        return 0;
    }
    char *json = NULL;
    snprintf(rk, sizeof rk, "identity/%s", g.grantee);
    int rc = kd_get(A.db, KD_AUTH_NS, rk, &json, NULL, NULL);
    kd_free(json);
    if (rc) {
        ks_error(res, 400, "invalid", "grant: the grantee %s is not a registered identity", g.grantee);
        return 0;
    }
    /* p is the first granter of the chain its grantee's use will follow */
    if (!administers(p->key, &g, 1)) {
        if (administers(p->key, &g, 0))
            ks_error(res, 403, "forbidden",
                     "your admin rights on namespace '%s' come through four granters from the owner already; a "
                     "grant of yours would need five, and delegation is followed at most four granters deep, so it "
                     "could never be used",
                     g.ns_pattern);
        else
            ks_error(res, 403, "forbidden", "only an admin of namespace '%s'%s%s can grant on it", g.ns_pattern,
                     g.has_prefix ? " prefix " : "", g.has_prefix ? g.prefix : "");
        return 0;
    }
    grant_set *held = grants_of(g.grantee);
    size_t nheld = 0;
    for (size_t i = 0; i < held->n; i++)
        nheld += strcmp(held->g[i].granter, g.granter) == 0;
    size_t nall = held->n;
    grant_set_release(held);
    if (nall >= MAX_GRANTS_HELD_ALL) {
        ks_error(res, 409, "too_many_grants",
                 "the grantee %s holds %zu valid grants, the most one identity may hold; revoke some first",
                 g.grantee, nall);
        return 0;
    }
    if (nheld >= MAX_GRANTS_HELD) {
        ks_error(res, 409, "too_many_grants",
                 "the grantee %s holds %zu valid grants from you, the most one granter may give one identity; "
                 "revoke some first",
                 g.grantee, nheld);
        return 0;
    }
    char *canon = NULL;
    size_t cl = 0;
    if (kd_json_canonical(req->body, req->body_len, &canon, &cl, NULL, 0) != KD_OK) {
        ks_error(res, 400, "invalid", "grant: invalid JSON");
        return 0;
    }
    snprintf(rk, sizeof rk, "grant/%s/%s", g.grantee, g.id);
    rc = kd_auth_put(A.db, rk, canon, cl, KD_EXPECT_ABSENT, NULL);
    grants_changed(g.grantee);
    if (rc == KD_ECONFLICT) {
        kd_free(canon);
        ks_error(res, 409, "exists", "grant %s is already stored", g.id);
        return 0;
    }
    if (rc) {
        kd_free(canon);
        ks_kd_error(res, A.db, rc);
        return 0;
    }
    ks_buf b = {0};
    ks_buf_printf(&b, "{\"grant\":%s,\"id\":\"%s\"}", canon, g.id);
    kd_free(canon);
    ks_reply(res, 201, &b);
    return 0;
}

/* The grantee of a grant record "grant/<grantee>/<id>" (in a static
 * buffer of the calling thread). */
static const char *record_grantee(const char *rk)
{
    static __thread char key[KD_AUTH_KEY_HEX];
    const char *p = rk + strlen("grant/");
    size_t n = strcspn(p, "/");
    snprintf(key, sizeof key, "%.*s", (int)(n < sizeof key ? n : sizeof key - 1), p);
    return key;
}

/* DELETE /api/v1/auth/grants/{id}: by its granter or an admin of its scope. */
static int h_grant_revoke(ks_request *req, ks_response *res)
{
    if (auth_off(res))
        return 0;
    principal *p = req->auth;
    const char *id = ks_var(req, "id");
    grant_dump d = {{0}, 1, NULL, kd_now(), id, NULL, NULL, 0};
    kd_scan(A.db, KD_AUTH_NS, "grant/", NULL, 0, KD_TIME_MAX, dump_grant, &d);
    free(d.b.p);
    if (!d.found) {
        ks_error(res, 404, "not_found", "no grant %s", id ? id : "");
        return 0;
    }
    kd_grant g;
    int valid = kd_grant_verify(d.found_value, d.found_len, &g, NULL, 0) == KD_OK;
    if (!is_owner(p->key) && (!valid || (strcmp(g.granter, p->key) != 0 && !administers(p->key, &g, 1)))) {
        ks_error(res, 403, "forbidden", "only the granter or an admin of its scope can revoke grant %s", id);
    } else {
        int rc = kd_auth_delete(A.db, d.found, NULL);
        grants_changed(record_grantee(d.found));
        if (rc) {
            ks_kd_error(res, A.db, rc);
        } else {
            ks_buf b = {0};
            ks_buf_printf(&b, "{\"revoked\":\"%s\"}", id);
            ks_reply(res, 200, &b);
        }
    }
    free(d.found);
    free(d.found_value);
    return 0;
}

const ks_route ks_routes_auth[] = {
    {"POST", "api/v1/auth/register", h_register, "auth_register"},
    {"POST", "api/v1/auth/challenge", h_challenge, "auth_challenge"},
    {"POST", "api/v1/auth/login", h_login, "auth_login"},
    {"POST", "api/v1/auth/logout", h_logout, "auth_logout"},
    {"GET", "api/v1/auth/whoami", h_whoami, "auth_whoami"},
    {"GET", "api/v1/auth/grants", h_grants_list, "auth_grants_list"},
    {"POST", "api/v1/auth/grants", h_grant_create, "auth_grant_create"},
    {"DELETE", "api/v1/auth/grants/{id}", h_grant_revoke, "auth_grant_revoke"},
    {NULL, NULL, NULL, NULL},
};
