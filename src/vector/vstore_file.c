/*
 * vstore_file.c — the vector index file, so that opening a database does
 * not rebuild its HNSW graphs (docs/FORMAT.md "Vector index file").
 *
 * The upkeep thread (a checkpoint) and kd_close write every group of the
 * vector store to <dir>/vectors.idx (temp file, fsync, rename, directory
 * fsync), stamped with the vectors root and the timestamp of the last
 * vector write the indexes hold. The groups are encoded into memory under
 * the store's lock and written after it is released. kd_open loads the
 * file and, when the log has vector writes after it, checks that the
 * file's root is the log's vectors root at the file's timestamp (the root
 * is a hash chain over every vector write, so an equal root means the same
 * vectors) and applies the writes after it (vstore.c); otherwise (no file,
 * another history, other index parameters, any damage) it rebuilds from
 * the log. The file is a cache: deleting it is always safe.
 *
 * Layout (little-endian):
 *   header   "KDVEC\0\r\n", u32 format (2), u32 groups, root[32], i64
 *            timestamp, u32 CRC-32C of the 56 bytes before it
 *   groups   u32 length, u32 CRC-32C, then `length` bytes:
 *              u16 ns length, ns, u16 model length, model, u32 dim,
 *              u32 slots, u64 live, and per slot (= label): u16 key length
 *              (0: a free slot, nothing follows), key, f32 norm, u32 meta
 *              length, meta (canonical JSON);
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
#define FILE_FORMAT 2u
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

static int group_section(const kd__vgroup *g, kd__buf *b)
{
    int rc = KD_OK;
    size_t nl = strlen(g->ns), ml = strlen(g->model);
    put_u16(b, (uint16_t)nl, &rc);
    put_bytes(b, g->ns, nl, &rc);
    put_u16(b, (uint16_t)ml, &rc);
    put_bytes(b, g->model, ml, &rc);
    put_u32(b, g->dim, &rc);
    put_u32(b, g->n_slots, &rc);
    put_u64(b, g->live, &rc);
    for (uint32_t i = 0; i < g->n_slots && !rc; i++) {
        const kd__vslot *s = &g->slots[i];
        if (!s->key) {
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
    return rc;
}

static int write_all(FILE *f, const void *p, size_t n)
{
    return fwrite(p, 1, n, f) == n ? KD_OK : KD_EIO;
}

/* What a save needs of the store, copied while writers wait: each live
 * group's section (slots and metadata, encoded) and a clone of its graph. */
struct kd__vsnap {
    uint8_t root[KD__HASH_LEN];
    int64_t ts;
    size_t n;
    kd__buf *sections; /* u32 length, u32 CRC-32C, section bytes */
    kd__hnsw **graphs;
};

void kd__vstore_file_snapshot_free(kd__vsnap *snap)
{
    if (!snap)
        return;
    for (size_t i = 0; i < snap->n; i++) {
        kd__buf_free(&snap->sections[i]);
        kd__hnsw_free(snap->graphs[i]);
    }
    free(snap->sections);
    free(snap->graphs);
    free(snap);
}

int kd__vstore_file_snapshot(kd__vstore *vs, const uint8_t root[KD__HASH_LEN], int64_t ts, kd__vsnap **out)
{
    *out = NULL;
    kd__vsnap *snap = calloc(1, sizeof *snap);
    size_t live = 0;
    for (size_t i = 0; i < vs->n_groups; i++)
        if (vs->groups[i]->live)
            live++;
    if (!snap || !(snap->sections = calloc(live ? live : 1, sizeof *snap->sections)) ||
        !(snap->graphs = calloc(live ? live : 1, sizeof *snap->graphs))) {
        kd__vstore_file_snapshot_free(snap);
        return KD_ENOMEM;
    }
    memcpy(snap->root, root, KD__HASH_LEN);
    snap->ts = ts;
    int rc = KD_OK;
    for (size_t i = 0; i < vs->n_groups && !rc; i++) {
        const kd__vgroup *g = vs->groups[i];
        if (!g->live)
            continue;
        kd__buf *b = &snap->sections[snap->n];
        *b = (kd__buf)KD__BUF_INIT;
        snap->n++;
        put_u32(b, 0, &rc); /* length and checksum, set below */
        put_u32(b, 0, &rc);
        if (!rc)
            rc = group_section(g, b);
        if (!rc && b->len - 8 > UINT32_MAX)
            rc = KD_ETOOBIG;
        if (rc)
            break;
        uint32_t len = (uint32_t)(b->len - 8), crc = kd__crc32c(b->data + 8, len);
        for (int j = 0; j < 4; j++) {
            b->data[j] = (char)(len >> (8 * j));
            b->data[4 + j] = (char)(crc >> (8 * j));
        }
        rc = kd__hnsw_clone(g->h, &snap->graphs[snap->n - 1]);
    }
    if (rc) {
        kd__vstore_file_snapshot_free(snap);
        return rc;
    }
    *out = snap;
    return KD_OK;
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
    put_u32(&b, (uint32_t)snap->n, &rc);
    put_bytes(&b, snap->root, KD__HASH_LEN, &rc);
    put_u64(&b, (uint64_t)snap->ts, &rc);
    if (!rc)
        put_u32(&b, kd__crc32c(b.data, b.len), &rc);
    if (!rc)
        rc = write_all(f, b.data, b.len);
    for (size_t i = 0; i < snap->n && !rc; i++) {
        if ((rc = write_all(f, snap->sections[i].data, snap->sections[i].len)))
            break;
        /* The index's own form, preceded by its length (patched after). */
        long at = ftell(f);
        uint8_t zero[8] = {0};
        if (at < 0 || (rc = write_all(f, zero, 8)))
            rc = KD_ENOMEM;
        else if ((rc = kd__hnsw_save(snap->graphs[i], f)))
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
        /* live when the file was saved (the log may have more after it) */
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
