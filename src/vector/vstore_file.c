/*
 * vstore_file.c — the vector index file, so that opening a database does
 * not rebuild its HNSW graphs (docs/FORMAT.md "Vector index file").
 *
 * The upkeep thread (a checkpoint) and kd_close write every group of the
 * vector store to <dir>/vectors.idx (temp file, fsync, rename, directory
 * fsync), stamped with the vectors root and the timestamp of the last
 * vector write the indexes hold. The groups are copied into memory a few
 * labels at a time under the store's lock, so that vector writers (which
 * hold the database's writer mutex while they wait for the lock) go on in
 * between; each group's index notes the labels that change while the copy
 * is made, and those are copied again, until one last hold copies the few
 * left and stamps the copy with the root of that moment. Encoding and
 * writing the file happen after the lock is released. kd_open loads the
 * file and, when the log has vector writes after it, checks that the
 * file's root is the log's vectors root at the file's timestamp (the root
 * is a hash chain over every vector write, so an equal root means the same
 * vectors) and applies the writes after it (vstore.c); otherwise (no file,
 * another history, other index parameters, any damage) it rebuilds from
 * the log. The file is a cache: deleting it is always safe.
 *
 * Layout (little-endian):
 *   header   "KDVEC\0\r\n", u32 format (3), u32 groups, root[32], i64
 *            timestamp, u32 CRC-32C of the 56 bytes before it
 *   groups   u32 length, u32 CRC-32C, then `length` bytes:
 *              u16 ns length, ns, u16 model length, model, u32 dim,
 *              u32 slots, u64 live, and per slot (= label): u16 key length
 *              (0: a free slot, nothing follows), key, f32 norm
 *              (kd__vec_norm), u32 meta length, meta (canonical JSON);
 *            u64 length, then the HNSW index in its own checksummed form
 *            (vector_int.h, kd__hnsw_save)
 *   trailer  "KDVEND\r\n"
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db_int.h"
#include "json/json.h"
#include "util/crc32c.h"
#include "vector/vector_int.h"
#include "vector/vstore.h"
#include "../util/le.h"

#define FILE_MAGIC "KDVEC\0\r\n"
#define FILE_TRAILER "KDVEND\r\n"
/* 3: norms and the graphs' directions computed in double (kd__vec_norm,
 * kd__vec_normalize), which searches of the log compute too; a file of 2
 * (float32 norms, which overflowed) is rebuilt. */
#define FILE_FORMAT 3u
#define HEADER_LEN 60

/* Append little-endian integers to b; the first failure sticks in *rc. */
static void put_u16(kd__buf *b, uint16_t v, int *rc)
{
    uint8_t p[2];
    kd__put_u16(p, v);
    if (!*rc)
        *rc = kd__buf_append(b, p, 2);
}

static void put_u32(kd__buf *b, uint32_t v, int *rc)
{
    uint8_t p[4];
    kd__put_u32(p, v);
    if (!*rc)
        *rc = kd__buf_append(b, p, 4);
}

static void put_u64(kd__buf *b, uint64_t v, int *rc)
{
    uint8_t p[8];
    kd__put_u64(p, v);
    if (!*rc)
        *rc = kd__buf_append(b, p, 8);
}

static void put_bytes(kd__buf *b, const void *p, size_t n, int *rc)
{
    if (!*rc)
        *rc = kd__buf_append(b, p, n);
}

/* ------------------------------------------------------------------------
 * Save
 * ---------------------------------------------------------------------- */

/* One group as copied for a save: the labels' key, norm and metadata and
 * a copy of the graph, filled label by label (kd__hnsw_track_begin). */
typedef struct gcopy {
    kd__vgroup *g;     /* the live group (groups live until close) */
    uint32_t resets;   /* g->resets when the copy began: a reset group is copied again */
    kd__hnsw *graph;   /* the copy of g->h */
    kd__vslot *slots;  /* by label; meta malloc'ed */
    uint32_t cap_slots;
    uint32_t want;     /* labels when the copy began: room made by kd__vstore_file_snapshot_reserve */
    uint32_t next;     /* the pass's cursor: labels below it were looked at */
    int done;          /* the pass reached the last label */
    /* From the finish, under the same hold as the graph's last labels: */
    uint32_t n_slots;
    uint64_t live;
} gcopy;

struct kd__vsnap {
    uint8_t root[KD__HASH_LEN];
    int64_t ts;
    gcopy *groups;
    size_t n, cap;
    int tracking;      /* tracking started in every group of `groups` */
};

static void gcopy_clear(gcopy *c)
{
    for (uint32_t i = 0; i < c->cap_slots; i++)
        free(c->slots[i].meta);
    free(c->slots);
    kd__hnsw_free(c->graph);
    c->slots = NULL;
    c->cap_slots = 0;
    c->graph = NULL;
}

void kd__vstore_file_snapshot_free(kd__vsnap *snap)
{
    if (!snap)
        return;
    for (size_t i = 0; i < snap->n; i++)
        gcopy_clear(&snap->groups[i]);
    free(snap->groups);
    free(snap);
}

/* (Re)start copying group c->g: every label counts as changed. */
static int gcopy_start(gcopy *c)
{
    gcopy_clear(c);
    c->resets = c->g->resets;
    c->want = c->g->n_slots; /* labels are slots: the graph has none beyond */
    c->next = 0;
    c->done = 0;
    int rc = kd__hnsw_empty_like(c->g->h, &c->graph);
    if (!rc)
        rc = kd__hnsw_track_begin(c->g->h, c->g->n_slots);
    return rc;
}

/* Copy one changed label of c's group; its mark is cleared once it is. */
static int gcopy_label(gcopy *c, uint32_t label, size_t *bytes)
{
    const kd__vgroup *g = c->g;
    if (label >= c->cap_slots) {
        uint64_t cap = (uint64_t)label + 1 + label / 2;
        if (cap > (uint64_t)KD__HNSW_MAX_LABEL + 1)
            cap = (uint64_t)KD__HNSW_MAX_LABEL + 1;
        kd__vslot *s = realloc(c->slots, (size_t)cap * sizeof *s);
        if (!s)
            return KD_ENOMEM;
        memset(s + c->cap_slots, 0, ((size_t)cap - c->cap_slots) * sizeof *s);
        c->slots = s;
        c->cap_slots = (uint32_t)cap;
    }
    kd__vslot *d = &c->slots[label];
    char *meta = NULL;
    const kd__vslot *s = label < g->n_slots && g->slots[label].key ? &g->slots[label] : NULL;
    if (s) {
        if (!(meta = malloc((size_t)s->meta_len + 1)))
            return KD_ENOMEM;
        memcpy(meta, s->meta, (size_t)s->meta_len + 1);
    }
    int rc = kd__hnsw_copy_label(g->h, c->graph, label);
    if (rc) {
        free(meta);
        return rc;
    }
    free(d->meta);
    *d = s ? (kd__vslot){s->key, meta, s->meta_len, s->norm} : (kd__vslot){0};
    *bytes += (size_t)g->dim * sizeof(float) + 4 * (2 * (size_t)kd__hnsw_M(g->h) + 1) + (s ? s->meta_len : 0) + 32;
    return KD_OK;
}

static int snap_add_group(kd__vsnap *snap, kd__vgroup *g)
{
    gcopy *v = kd__grow(snap->groups, &snap->cap, snap->n, sizeof *v, 8);
    if (!v)
        return KD_ENOMEM;
    snap->groups = v;
    gcopy *c = &snap->groups[snap->n++];
    *c = (gcopy){.g = g};
    return gcopy_start(c);
}

int kd__vstore_file_snapshot_begin(kd__vstore *vs, kd__vsnap **out)
{
    *out = NULL;
    kd__vsnap *snap = calloc(1, sizeof *snap);
    if (!snap)
        return KD_ENOMEM;
    snap->tracking = 1;
    int rc = KD_OK;
    for (size_t i = 0; i < vs->n_groups && !rc; i++)
        if (vs->groups[i]->live)
            rc = snap_add_group(snap, vs->groups[i]);
    *out = snap; /* also on failure: kd__vstore_file_snapshot_end stops the tracking */
    return rc;
}

int kd__vstore_file_snapshot_reserve(kd__vsnap *snap)
{
    for (size_t i = 0; i < snap->n; i++) {
        gcopy *c = &snap->groups[i];
        int rc = kd__hnsw_reserve(c->graph, c->want);
        if (!rc && c->want > c->cap_slots) {
            kd__vslot *s = realloc(c->slots, (size_t)c->want * sizeof *s);
            if (!s)
                return KD_ENOMEM;
            memset(s + c->cap_slots, 0, ((size_t)c->want - c->cap_slots) * sizeof *s);
            c->slots = s;
            c->cap_slots = c->want;
        }
        if (rc)
            return rc;
    }
    return KD_OK;
}

void kd__vstore_file_snapshot_pass(kd__vsnap *snap)
{
    for (size_t i = 0; i < snap->n; i++) {
        snap->groups[i].next = 0;
        snap->groups[i].done = 0;
    }
}

int kd__vstore_file_snapshot_step(kd__vsnap *snap, size_t budget, size_t *copied, int *more)
{
    size_t bytes = 0;
    *copied = 0;
    *more = 0;
    for (size_t i = 0; i < snap->n; i++) {
        gcopy *c = &snap->groups[i];
        if (c->resets != c->g->resets) { /* a new index: copy it again */
            int rc = gcopy_start(c);
            if (rc)
                return rc;
        }
        while (!c->done && bytes < budget) {
            uint32_t label = kd__hnsw_track_next(c->g->h, c->next);
            if (label == UINT32_MAX) {
                c->done = 1;
                break;
            }
            int rc = gcopy_label(c, label, &bytes);
            if (rc)
                return rc;
            c->next = label + 1;
            (*copied)++;
        }
        if (!c->done)
            *more = 1;
    }
    return KD_OK;
}

int kd__vstore_file_snapshot_finish(kd__vstore *vs, kd__vsnap *snap, const uint8_t root[KD__HASH_LEN], int64_t ts)
{
    /* Groups that have vectors now and none when the copy began. */
    for (size_t i = 0; i < vs->n_groups; i++) {
        kd__vgroup *g = vs->groups[i];
        size_t j = 0;
        while (j < snap->n && snap->groups[j].g != g)
            j++;
        int rc;
        if (j == snap->n && g->live && (rc = snap_add_group(snap, g)))
            return rc;
    }
    kd__vstore_file_snapshot_pass(snap);
    size_t copied;
    int more, rc = kd__vstore_file_snapshot_step(snap, SIZE_MAX, &copied, &more);
    for (size_t i = 0; i < snap->n && !rc; i++) {
        gcopy *c = &snap->groups[i];
        if (c->g->n_tail)
            return KD_EINVALID; /* cannot happen: tails come only from an open */
        c->n_slots = c->g->n_slots;
        c->live = c->g->live;
        rc = kd__hnsw_copy_finish(c->g->h, c->graph);
    }
    if (rc)
        return rc;
    memcpy(snap->root, root, KD__HASH_LEN);
    snap->ts = ts;
    return KD_OK;
}

void kd__vstore_file_snapshot_end(kd__vsnap *snap)
{
    if (!snap || !snap->tracking)
        return;
    for (size_t i = 0; i < snap->n; i++)
        kd__hnsw_track_end(snap->groups[i].g->h);
    snap->tracking = 0;
}

static int group_section(const gcopy *c, kd__buf *b)
{
    int rc = KD_OK;
    const kd__vgroup *g = c->g; /* names and dimension: not changed by a reset of a live group */
    size_t nl = strlen(g->ns), ml = strlen(g->model);
    put_u32(b, 0, &rc); /* length and checksum, set below */
    put_u32(b, 0, &rc);
    put_u16(b, (uint16_t)nl, &rc);
    put_bytes(b, g->ns, nl, &rc);
    put_u16(b, (uint16_t)ml, &rc);
    put_bytes(b, g->model, ml, &rc);
    put_u32(b, kd__hnsw_dim(c->graph), &rc);
    put_u32(b, c->n_slots, &rc);
    put_u64(b, c->live, &rc);
    for (uint32_t i = 0; i < c->n_slots && !rc; i++) {
        const kd__vslot *s = i < c->cap_slots ? &c->slots[i] : NULL;
        if (!s || !s->key) {
            put_u16(b, 0, &rc);
            continue;
        }
        uint32_t norm;
        memcpy(&norm, &s->norm, 4);
        put_u16(b, s->key->len, &rc);
        put_bytes(b, s->key->name, s->key->len, &rc);
        put_u32(b, norm, &rc);
        put_u32(b, s->meta_len, &rc);
        put_bytes(b, s->meta, s->meta_len, &rc);
    }
    if (!rc && b->len - 8 > UINT32_MAX)
        rc = KD_ETOOBIG;
    if (rc)
        return rc;
    uint32_t len = (uint32_t)(b->len - 8), crc = kd__crc32c(b->data + 8, len);
    kd__put_u32((uint8_t *)b->data, len);
    kd__put_u32((uint8_t *)b->data + 4, crc);
    return KD_OK;
}

static int write_all(FILE *f, const void *p, size_t n)
{
    return fwrite(p, 1, n, f) == n ? KD_OK : KD_EIO;
}

int kd__vstore_file_encode(const kd__vsnap *snap, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    FILE *f = open_memstream(out, out_len);
    if (!f)
        return KD_ENOMEM;
    kd__buf b = KD__BUF_INIT;
    int rc = KD_OK;
    put_bytes(&b, FILE_MAGIC, 8, &rc);
    put_u32(&b, FILE_FORMAT, &rc);
    uint32_t groups = 0;
    for (size_t i = 0; i < snap->n; i++)
        groups += snap->groups[i].live > 0;
    put_u32(&b, groups, &rc);
    put_bytes(&b, snap->root, KD__HASH_LEN, &rc);
    put_u64(&b, (uint64_t)snap->ts, &rc);
    if (!rc)
        put_u32(&b, kd__crc32c(b.data, b.len), &rc);
    if (!rc)
        rc = write_all(f, b.data, b.len);
    for (size_t i = 0; i < snap->n && !rc; i++) {
        const gcopy *c = &snap->groups[i];
        if (!c->live)
            continue;
        kd__buf_reset(&b);
        if ((rc = group_section(c, &b)) || (rc = write_all(f, b.data, b.len)))
            break;
        /* The index's own form, preceded by its length (patched after). */
        long at = ftell(f);
        uint8_t zero[8] = {0};
        if (at < 0 || (rc = write_all(f, zero, 8)))
            rc = KD_ENOMEM;
        else if ((rc = kd__hnsw_save(c->graph, f)))
            break;
        long end = ftell(f);
        if (end < 0 || fseek(f, at, SEEK_SET)) {
            rc = KD_ENOMEM;
            break;
        }
        kd__buf_reset(&b);
        put_u64(&b, (uint64_t)(end - at - 8), &rc);
        if (!rc && ((rc = write_all(f, b.data, 8)) || fseek(f, end, SEEK_SET)))
            rc = rc ? rc : KD_ENOMEM;
    }
    if (!rc)
        rc = write_all(f, FILE_TRAILER, 8);
    kd__buf_free(&b);
    if (fclose(f) && !rc)
        rc = KD_ENOMEM;
    if (rc) {
        free(*out);
        *out = NULL;
        *out_len = 0;
        return rc == KD_EIO ? KD_ENOMEM : rc; /* a memory stream fails only for want of memory */
    }
    return KD_OK;
}

int kd__vstore_file_write(kd_db *db, const char *bytes, size_t len, char *err, size_t errlen)
{
    char path[4200], tmp[4200];
    snprintf(path, sizeof path, "%s/" KD__VSTORE_FILE, db->path);
    snprintf(tmp, sizeof tmp, "%s/" KD__VSTORE_FILE ".tmp", db->path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", tmp, strerror(errno));
        return errno == ENOSPC ? KD_ENOSPACE : KD_EIO;
    }
    int en = 0;
    for (size_t done = 0; done < len && !en;) {
        ssize_t w = write(fd, bytes + done, len - done);
        if (w < 0 && errno != EINTR)
            en = errno;
        else if (w > 0)
            done += (size_t)w;
    }
    if (!en && fsync(fd))
        en = errno;
    if (close(fd) && !en)
        en = errno;
    if (!en && rename(tmp, path))
        en = errno;
    if (en) {
        snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(en));
        unlink(tmp);
        return en == ENOSPC ? KD_ENOSPACE : KD_EIO;
    }
    if (kd__fsync_dir(db->path)) {
        /* the rename may not be durable: the next open then rebuilds */
    }
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Load
 * ---------------------------------------------------------------------- */

typedef struct rd {
    const uint8_t *p;
    size_t len, pos;
} rd;

static int take(rd *r, size_t n, const uint8_t **out)
{
    if (r->len - r->pos < n)
        return -1;
    *out = r->p + r->pos;
    r->pos += n;
    return 0;
}

static int take_u16(rd *r, uint16_t *v)
{
    const uint8_t *p;
    if (take(r, 2, &p))
        return -1;
    *v = kd__get_u16(p);
    return 0;
}

static int take_u32(rd *r, uint32_t *v)
{
    const uint8_t *p;
    if (take(r, 4, &p))
        return -1;
    *v = kd__get_u32(p);
    return 0;
}

static int groups_push(kd__vstore *vs, kd__vgroup *g)
{
    if (vs->n_groups == vs->cap_groups) {
        size_t cap = vs->cap_groups ? vs->cap_groups * 2 : 8;
        kd__vgroup **v = realloc(vs->groups, cap * sizeof *v);
        if (!v)
            return KD_ENOMEM;
        vs->groups = v;
        vs->cap_groups = cap;
    }
    vs->groups[vs->n_groups++] = g;
    return KD_OK;
}

/* The parameters a new index would get from the options. */
static int expected_params(const kd__vstore *vs, uint32_t *m, uint32_t *efc)
{
    kd__hnsw *h;
    int rc = kd__hnsw_new(1, KD__VEC_COSINE, vs->m, vs->ef_construction, 0, &h);
    if (rc)
        return rc;
    *m = kd__hnsw_M(h);
    *efc = kd__hnsw_ef_construction(h);
    kd__hnsw_free(h);
    return KD_OK;
}

#define BAD(...)                                                                                                     \
    do {                                                                                                             \
        snprintf(err, errlen, __VA_ARGS__);                                                                          \
        rc = KD_ECORRUPT;                                                                                            \
        goto fail;                                                                                                   \
    } while (0)

/* One group from its section and index blob; *out is complete or NULL. */
static int load_group(kd_db *db, kd__vstore *vs, rd *r, int64_t saved_ts, uint32_t want_m, uint32_t want_efc,
                      kd__vgroup **out, char *err, size_t errlen)
{
    *out = NULL;
    size_t at = r->pos;
    int rc = KD_OK;
    uint32_t len, crc;
    const uint8_t *sec, *p;
    kd__vgroup *g = NULL;
    if (take_u32(r, &len) || take_u32(r, &crc) || take(r, len, &sec))
        BAD("group at offset %zu is cut short", at);
    if (kd__crc32c(sec, len) != crc)
        BAD("group at offset %zu fails its checksum", at);
    rd s = {sec, len, 0};
    uint16_t nl, ml;
    uint32_t dim, n_slots;
    const uint8_t *ns, *model;
    if (take_u16(&s, &nl) || take(&s, nl, &ns) || take_u16(&s, &ml) || take(&s, ml, &model) ||
        take_u32(&s, &dim) || take_u32(&s, &n_slots) || take(&s, 8, &p))
        BAD("group at offset %zu: header cut short", at);
    uint64_t live = kd__get_u64(p);
    /* a workspace's group: "ws" 0xFF "ns", each part a name */
    const uint8_t *sep = nl ? memchr(ns, KD__WS_SEP, nl) : NULL;
    size_t wl = sep ? (size_t)(sep - ns) : 0, ll = sep ? nl - wl - 1 : nl;
    if (nl < 1 || ll < 1 || ll > KD__VSTORE_MAX_NS || (sep && (wl < 1 || wl > 255)) ||
        !kd__utf8_valid((const char *)ns + (sep ? wl + 1 : 0), ll) ||
        (sep && !kd__utf8_valid((const char *)ns, wl)) || memchr(ns, 0, nl) || ml < 1 ||
        ml > KD__VSTORE_MAX_MODEL || !kd__utf8_valid((const char *)model, ml) || memchr(model, 0, ml) || dim < 1 ||
        dim > KD_VECTOR_MAX_DIM || n_slots > (len - s.pos) / 2 || live > n_slots)
        BAD("group at offset %zu: bad names, dimension or counts", at);
    char vns[KD__QNS_MAX];
    size_t wp = sep ? wl + 1 : 0;
    memcpy(vns, ns, wp);
    memcpy(vns + wp, KD__NS_VEC_PREFIX, KD__NS_VEC_PREFIX_LEN);
    memcpy(vns + wp + KD__NS_VEC_PREFIX_LEN, ns + wp, ll);
    vns[wp + KD__NS_VEC_PREFIX_LEN + ll] = '\0';
    const kd__ns *nsp = kd__qns_find(&db->ix, vns, strlen(vns));
    if (!nsp)
        BAD("group at offset %zu: namespace %s is not in the log", at, vns);

    g = calloc(1, sizeof *g);
    uint32_t cap = n_slots > 64 ? n_slots : 64;
    if (!g || !(g->ns = strndup((const char *)ns, nl)) || !(g->model = strndup((const char *)model, ml)) ||
        !(g->slots = calloc(cap, sizeof *g->slots)) || !(g->free_slots = malloc(cap * sizeof *g->free_slots))) {
        rc = KD_ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    g->dim = dim;
    g->cap_slots = g->cap_free = cap;
    g->n_slots = n_slots;
    for (uint32_t i = 0; i < n_slots; i++) {
        uint16_t kl;
        if (take_u16(&s, &kl))
            BAD("group at offset %zu: slot %u cut short", at, i);
        if (kl == 0) {
            g->free_slots[g->n_free++] = i;
            continue;
        }
        const uint8_t *key, *np;
        uint32_t ml2;
        const uint8_t *meta;
        if (take(&s, kl, &key) || take(&s, 4, &np) || take_u32(&s, &ml2) || take(&s, ml2, &meta))
            BAD("group at offset %zu: slot %u cut short", at, i);
        /* live when the file was saved (the log may have more after it;
         * a compaction since may have cut it with its dropped workspace:
         * kd__vstore_open lets go of those) */
        kd__key *k = kd__index_key_find(&db->ix, nsp, (const char *)key, kl);
        const kd__ver *v = k ? kd__key_at(k, saved_ts) : NULL;
        if (!v || v->value == KD__NO_VALUE)
            BAD("group at offset %zu: slot %u names a key without a live vector", at, i);
        kd__vslot *sl = &g->slots[i];
        uint32_t nb = kd__get_u32(np);
        memcpy(&sl->norm, &nb, 4);
        if (!(sl->norm > 0) || !isfinite(sl->norm))
            BAD("group at offset %zu: slot %u has a bad norm", at, i);
        if (!(sl->meta = malloc((size_t)ml2 + 1))) {
            rc = KD_ENOMEM;
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        memcpy(sl->meta, meta, ml2);
        sl->meta[ml2] = '\0';
        sl->meta_len = ml2;
        sl->key = k;
        g->meta_bytes += ml2;
        g->live++;
    }
    if (s.pos != s.len || g->live != live)
        BAD("group at offset %zu: %s", at, s.pos != s.len ? "trailing bytes" : "live count differs");

    const uint8_t *lp, *blob;
    if (take(r, 8, &lp))
        BAD("index of group at offset %zu is cut short", at);
    uint64_t bl = kd__get_u64(lp);
    if (bl > r->len - r->pos || take(r, (size_t)bl, &blob))
        BAD("index of group at offset %zu is cut short", at);
    char herr[256] = "";
    rc = kd__hnsw_load_mem(blob, (size_t)bl, &g->h, herr, sizeof herr);
    if (rc) {
        snprintf(err, errlen, "index of group at offset %zu: %s", at, herr);
        goto fail;
    }
    if (kd__hnsw_dim(g->h) != dim || kd__hnsw_metric(g->h) != KD__VEC_COSINE || kd__hnsw_live(g->h) != live)
        BAD("index of group at offset %zu does not match its group", at);
    for (uint32_t i = 0; i < n_slots; i++)
        if (kd__hnsw_contains(g->h, i) != (g->slots[i].key != NULL))
            BAD("index of group at offset %zu: label %u does not match its slot", at, i);
    if (kd__hnsw_M(g->h) != want_m || kd__hnsw_ef_construction(g->h) != want_efc) {
        snprintf(err, errlen, "saved with other index parameters (M %u, ef_construction %u)", kd__hnsw_M(g->h),
                 kd__hnsw_ef_construction(g->h));
        rc = KD_ENOTFOUND;
        goto fail;
    }
    for (uint32_t i = 0; i < n_slots; i++) {
        if (!g->slots[i].key)
            continue;
        size_t before = vs->map_n;
        if ((rc = kd__vstore_map_put(vs, g->slots[i].key, g, i))) {
            snprintf(err, errlen, "out of memory");
            goto fail;
        }
        if (vs->map_n == before) /* a key holds one vector, in one group */
            BAD("group at offset %zu: key %s appears twice", at, g->slots[i].key->name);
    }
    *out = g;
    return KD_OK;
fail:
    kd__vstore_group_free(g);
    return rc;
}

int kd__vstore_file_load(kd_db *db, kd__vstore *vs, uint8_t root[KD__HASH_LEN], int64_t *ts, char *err,
                         size_t errlen)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/" KD__VSTORE_FILE, db->path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return errno == ENOENT ? KD_ENOTFOUND : KD_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) || st.st_size < HEADER_LEN + 8) {
        close(fd);
        snprintf(err, errlen, "%s: too short", path);
        return KD_ECORRUPT;
    }
    size_t size = (size_t)st.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        snprintf(err, errlen, "cannot map %s: %s", path, strerror(errno));
        return KD_EIO;
    }
    const uint8_t *p = map;
    int rc = KD_OK;
    uint32_t want_m = 0, want_efc = 0;
    if (memcmp(p, FILE_MAGIC, 8)) {
        snprintf(err, errlen, "%s: bad magic", path);
        rc = KD_ECORRUPT;
    } else if (kd__get_u32(p + 8) != FILE_FORMAT) {
        snprintf(err, errlen, "%s: format version %u; this build reads %u", path, kd__get_u32(p + 8), FILE_FORMAT);
        rc = kd__get_u32(p + 8) > FILE_FORMAT ? KD_EFORMAT : KD_ENOTFOUND;
    } else if (kd__crc32c(p, HEADER_LEN - 4) != kd__get_u32(p + HEADER_LEN - 4)) {
        snprintf(err, errlen, "%s: header checksum mismatch", path);
        rc = KD_ECORRUPT;
    } else if ((rc = expected_params(vs, &want_m, &want_efc))) {
        snprintf(err, errlen, "out of memory");
    } else {
        memcpy(root, p + 16, KD__HASH_LEN);
        *ts = (int64_t)kd__get_u64(p + 48);
    }
    uint32_t n_groups = rc ? 0 : kd__get_u32(p + 12);
    rd r = {p, size, HEADER_LEN};
    pthread_rwlock_rdlock(&db->ix_lock);
    for (uint32_t i = 0; i < n_groups && !rc; i++) {
        kd__vgroup *g;
        rc = load_group(db, vs, &r, *ts, want_m, want_efc, &g, err, errlen);
        if (!rc && (rc = groups_push(vs, g))) {
            kd__vstore_group_free(g);
            snprintf(err, errlen, "out of memory");
        }
    }
    pthread_rwlock_unlock(&db->ix_lock);
    if (!rc && (size - r.pos != 8 || memcmp(p + r.pos, FILE_TRAILER, 8))) {
        snprintf(err, errlen, "%s: missing or misplaced trailer at offset %zu", path, r.pos);
        rc = KD_ECORRUPT;
    }
    munmap(map, size);
    return rc;
}
