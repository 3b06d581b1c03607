/*
 * format.c — encoding and decoding of segment headers, record headers and
 * TXN payloads, and the hashes that tie versions together. Every length read
 * from disk is checked against the bytes actually present before use: this
 * file is the log-record decoder that tests/fuzz/fuzz_record.c fuzzes.
 *
 * Write layout inside a TXN (96 bytes + parents + names):
 *   i64 ts | u8 flags | u8 n_parents | u8 ws_len | u8 ns_len | u16 key_len |
 *   u16 pruned_by (0 unless flags has KD__WRITE_PRUNED) | node[16] | version_id[32] | write_id[32] |
 *   parents[32 * n_parents] | ws | ns | key
 */
#include "format.h"

#include <stdio.h>
#include <string.h>

#include "../util/crc32c.h"
#include "korudelta.h"
#include "../util/le.h"

/* ------------------------------------------------------------------------
 * Segment and record headers
 * ---------------------------------------------------------------------- */

void kd__seg_header_encode(uint8_t out[KD__SEG_HEADER_LEN], uint64_t seg_no, uint32_t format, uint32_t dict)
{
    memset(out, 0, KD__SEG_HEADER_LEN);
    memcpy(out, KD__SEG_MAGIC, 8);
    kd__put_u32(out + 8, format);
    kd__put_u32(out + 12, 0);
    kd__put_u64(out + 16, seg_no);
    kd__put_u32(out + 24, format >= KD__FORMAT_CONSOLIDATED ? dict : 0);
    kd__put_u32(out + 28, kd__crc32c(out, 28));
}

int kd__seg_header_decode(const uint8_t in[KD__SEG_HEADER_LEN], uint64_t *seg_no, uint32_t *format, uint32_t *dict)
{
    if (memcmp(in, KD__SEG_MAGIC, 8) != 0)
        return -1;
    *format = kd__get_u32(in + 8);
    if (kd__get_u32(in + 28) != kd__crc32c(in, 28))
        return -1;
    if (*format > KD__FORMAT_VERSION || *format == 0)
        return -2;
    *seg_no = kd__get_u64(in + 16);
    *dict = kd__get_u32(in + 24);
    if (*dict && *format < KD__FORMAT_CONSOLIDATED)
        return -1;
    return 0;
}

void kd__rec_header_encode(uint8_t out[KD__REC_HEADER_LEN], uint8_t type, const void *payload, uint32_t len)
{
    kd__put_u32(out, len);
    out[4] = type;
    out[5] = out[6] = out[7] = 0;
    kd__put_u32(out + 8, kd__crc32c(payload, len));
    kd__put_u32(out + 12, kd__crc32c(out, 12));
}

int kd__rec_header_decode(const uint8_t in[KD__REC_HEADER_LEN], uint8_t *type, uint32_t *len, uint32_t *payload_crc)
{
    if (kd__get_u32(in + 12) != kd__crc32c(in, 12))
        return -1;
    *len = kd__get_u32(in);
    *type = in[4];
    *payload_crc = kd__get_u32(in + 8);
    return 0;
}

/* ------------------------------------------------------------------------
 * TXN payload: encoding
 * ---------------------------------------------------------------------- */

void kd__txn_put_header(kd__buf *b, uint32_t n_values, uint32_t n_writes, const uint8_t root[KD__HASH_LEN])
{
    /* The caller reserved the space; see kd__txn_size in the writer. */
    uint8_t *p = (uint8_t *)b->data + b->len;
    kd__put_u32(p, n_values);
    kd__put_u32(p + 4, n_writes);
    memcpy(p + 8, root, KD__HASH_LEN);
    b->len += KD__TXN_HEADER_LEN;
}

int kd__txn_put_value(kd__buf *b, const uint8_t id[KD__HASH_LEN], const char *data, uint32_t len, int zstd)
{
    int rc = kd__buf_reserve(b, KD__VALUE_HEADER_LEN + (size_t)len);
    if (rc)
        return rc;
    uint8_t *p = (uint8_t *)b->data + b->len;
    memcpy(p, id, KD__HASH_LEN);
    kd__put_u32(p + 32, len | (zstd ? KD__VALUE_ZSTD : 0));
    memcpy(p + KD__VALUE_HEADER_LEN, data, len);
    b->len += KD__VALUE_HEADER_LEN + (size_t)len;
    return KD_OK;
}

int kd__txn_put_write(kd__buf *b, const kd__write_rec *w)
{
    size_t n = KD__WRITE_HEADER_LEN + (size_t)w->n_parents * KD__HASH_LEN + w->ws_len + w->ns_len + w->key_len;
    int rc = kd__buf_reserve(b, n);
    if (rc)
        return rc;
    uint8_t *p = (uint8_t *)b->data + b->len;
    kd__put_u64(p, (uint64_t)w->ts);
    p[8] = w->flags;
    p[9] = w->n_parents;
    p[10] = (uint8_t)w->ws_len;
    p[11] = (uint8_t)w->ns_len;
    kd__put_u16(p + 12, (uint16_t)w->key_len);
    kd__put_u16(p + 14, (w->flags & KD__WRITE_PRUNED) ? w->pruned_by : 0);
    memcpy(p + 16, w->node, 16);
    memcpy(p + 32, w->version_id, KD__HASH_LEN);
    memcpy(p + 64, w->write_id, KD__HASH_LEN);
    p += KD__WRITE_HEADER_LEN;
    if (w->n_parents) {
        memcpy(p, w->parent, KD__HASH_LEN);
        p += KD__HASH_LEN;
    }
    memcpy(p, w->ws, w->ws_len);
    p += w->ws_len;
    memcpy(p, w->ns, w->ns_len);
    p += w->ns_len;
    memcpy(p, w->key, w->key_len);
    b->len += n;
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * TXN payload: decoding (input is untrusted)
 * ---------------------------------------------------------------------- */

int kd__txn_open(kd__txn_cursor *c, const void *payload, size_t len, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    c->p = payload;
    c->len = len;
    if (len < KD__TXN_HEADER_LEN) {
        snprintf(err, errlen, "transaction of %zu bytes is shorter than its header", len);
        return -1;
    }
    c->n_values = kd__get_u32(c->p);
    c->n_writes = kd__get_u32(c->p + 4);
    memcpy(c->root_after, c->p + 8, KD__HASH_LEN);
    c->pos = KD__TXN_HEADER_LEN;
    if (c->n_writes == 0) {
        snprintf(err, errlen, "transaction has no writes");
        return -1;
    }
    /* Each value and write needs at least its header: cheap sanity bound. */
    if ((uint64_t)c->n_values * KD__VALUE_HEADER_LEN + (uint64_t)c->n_writes * KD__WRITE_HEADER_LEN >
        len - KD__TXN_HEADER_LEN) {
        snprintf(err, errlen, "transaction claims %u values and %u writes in %zu bytes", c->n_values,
                 c->n_writes, len);
        return -1;
    }
    return 0;
}

int kd__txn_next_value(kd__txn_cursor *c, kd__value_rec *v, char *err, size_t errlen)
{
    if (c->values_done >= c->n_values || c->len - c->pos < KD__VALUE_HEADER_LEN) {
        snprintf(err, errlen, "value %u truncated", c->values_done);
        return -1;
    }
    const uint8_t *p = c->p + c->pos;
    memcpy(v->version_id, p, KD__HASH_LEN);
    uint32_t word = kd__get_u32(p + 32);
    v->zstd = (word & KD__VALUE_ZSTD) != 0;
    v->len = word & ~KD__VALUE_ZSTD;
    if (v->len > c->len - c->pos - KD__VALUE_HEADER_LEN) {
        snprintf(err, errlen, "value %u claims %u bytes, only %zu left", c->values_done, v->len,
                 c->len - c->pos - KD__VALUE_HEADER_LEN);
        return -1;
    }
    v->offset = (uint32_t)(c->pos + KD__VALUE_HEADER_LEN);
    v->data = (const char *)p + KD__VALUE_HEADER_LEN;
    c->pos += KD__VALUE_HEADER_LEN + (size_t)v->len;
    c->values_done++;
    return 0;
}

int kd__txn_next_write(kd__txn_cursor *c, kd__write_rec *w, char *err, size_t errlen)
{
    if (c->values_done != c->n_values || c->writes_done >= c->n_writes) {
        snprintf(err, errlen, "write %u out of order", c->writes_done);
        return -1;
    }
    if (c->len - c->pos < KD__WRITE_HEADER_LEN) {
        snprintf(err, errlen, "write %u truncated", c->writes_done);
        return -1;
    }
    const uint8_t *p = c->p + c->pos;
    memset(w, 0, sizeof *w);
    w->ts = (int64_t)kd__get_u64(p);
    w->flags = p[8];
    w->n_parents = p[9];
    w->ws_len = p[10];
    w->ns_len = p[11];
    w->key_len = kd__get_u16(p + 12);
    w->pruned_by = kd__get_u16(p + 14);
    memcpy(w->node, p + 16, 16);
    memcpy(w->version_id, p + 32, KD__HASH_LEN);
    memcpy(w->write_id, p + 64, KD__HASH_LEN);
    /* A pruned write has a value (not a tombstone) and names its compaction. */
    int pruned = (w->flags & KD__WRITE_PRUNED) != 0;
    int bad_prune = pruned ? (w->flags & KD__WRITE_DELETED) || w->pruned_by == 0 : w->pruned_by != 0;
    if ((w->flags & ~(KD__WRITE_DELETED | KD__WRITE_PRUNED)) || bad_prune || w->n_parents > 1 || w->ns_len == 0 ||
        w->key_len == 0 || w->key_len > 1024 || w->ws_len == 0) {
        snprintf(err, errlen, "write %u has invalid fields", c->writes_done);
        return -1;
    }
    size_t need = KD__WRITE_HEADER_LEN + (size_t)w->n_parents * KD__HASH_LEN + w->ws_len + w->ns_len + w->key_len;
    if (need > c->len - c->pos) {
        snprintf(err, errlen, "write %u truncated", c->writes_done);
        return -1;
    }
    p += KD__WRITE_HEADER_LEN;
    if (w->n_parents) {
        memcpy(w->parent, p, KD__HASH_LEN);
        p += KD__HASH_LEN;
    }
    w->ws = (const char *)p;
    p += w->ws_len;
    w->ns = (const char *)p;
    p += w->ns_len;
    w->key = (const char *)p;
    c->pos += need;
    c->writes_done++;
    return 0;
}

int kd__txn_close(kd__txn_cursor *c, char *err, size_t errlen)
{
    if (c->values_done != c->n_values || c->writes_done != c->n_writes || c->pos != c->len) {
        snprintf(err, errlen, "transaction has %zu trailing bytes", c->len - c->pos);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * Hashes
 * ---------------------------------------------------------------------- */

void kd__write_id(const kd__write_rec *w, uint8_t out[KD__HASH_LEN])
{
    /* The preimage is assembled in one buffer and hashed in one call: many
     * small updates cost more than the hashing itself. Names are bounded
     * (255 + 255 + 1024 bytes), so it always fits. */
    static const char tag[] = "korudelta.write.v1";
    uint8_t buf[sizeof tag + 1 + 255 + 1 + 255 + 2 + 1024 + 1 + KD__HASH_LEN + 8 + 16 + 1 + KD__HASH_LEN];
    uint8_t *p = buf;
    memcpy(p, tag, sizeof tag); /* includes the NUL: the tag ends unambiguously */
    p += sizeof tag;
    *p++ = (uint8_t)w->ws_len;
    memcpy(p, w->ws, w->ws_len);
    p += w->ws_len;
    *p++ = (uint8_t)w->ns_len;
    memcpy(p, w->ns, w->ns_len);
    p += w->ns_len;
    kd__put_u16(p, (uint16_t)w->key_len);
    p += 2;
    memcpy(p, w->key, w->key_len);
    p += w->key_len;
    *p++ = (w->flags & KD__WRITE_DELETED) ? 1 : 0;
    memcpy(p, w->version_id, KD__HASH_LEN);
    p += KD__HASH_LEN;
    kd__put_u64(p, (uint64_t)w->ts);
    p += 8;
    memcpy(p, w->node, 16);
    p += 16;
    *p++ = w->n_parents;
    if (w->n_parents) {
        memcpy(p, w->parent, KD__HASH_LEN);
        p += KD__HASH_LEN;
    }
    kd__sha256(buf, (size_t)(p - buf), out);
}

/* root' = SHA-256(tag ‖ root ‖ write_id), tag NUL-terminated (one-shot:
 * this runs for every write). */
static void root_advance(const char *tag, size_t tag_size, uint8_t root[KD__HASH_LEN],
                         const uint8_t write_id[KD__HASH_LEN])
{
    uint8_t in[64 + 2 * KD__HASH_LEN];
    memcpy(in, tag, tag_size);
    memcpy(in + tag_size, root, KD__HASH_LEN);
    memcpy(in + tag_size + KD__HASH_LEN, write_id, KD__HASH_LEN);
    kd__sha256(in, tag_size + 2 * KD__HASH_LEN, root);
}

void kd__root_advance(uint8_t root[KD__HASH_LEN], const uint8_t write_id[KD__HASH_LEN])
{
    static const char tag[] = "korudelta.root.storage.v1";
    root_advance(tag, sizeof tag, root, write_id);
}

void kd__views_root_advance(uint8_t root[KD__HASH_LEN], const uint8_t write_id[KD__HASH_LEN])
{
    static const char tag[] = "korudelta.root.views.v1";
    root_advance(tag, sizeof tag, root, write_id);
}

int kd__is_views_ns(const char *ns, size_t len)
{
    return (len == sizeof KD__NS_VIEWS - 1 && !memcmp(ns, KD__NS_VIEWS, len)) ||
           (len == sizeof KD__NS_INDEXES - 1 && !memcmp(ns, KD__NS_INDEXES, len));
}

void kd__vectors_root_advance(uint8_t root[KD__HASH_LEN], const uint8_t write_id[KD__HASH_LEN])
{
    static const char tag[] = "korudelta.root.vectors.v1";
    root_advance(tag, sizeof tag, root, write_id);
}

int kd__is_vectors_ns(const char *ns, size_t len)
{
    return len > KD__NS_VEC_PREFIX_LEN && !memcmp(ns, KD__NS_VEC_PREFIX, KD__NS_VEC_PREFIX_LEN);
}

void kd__auth_root_advance(uint8_t root[KD__HASH_LEN], const uint8_t write_id[KD__HASH_LEN])
{
    static const char tag[] = "korudelta.root.auth.v1";
    root_advance(tag, sizeof tag, root, write_id);
}

int kd__is_auth_ns(const char *ns, size_t len)
{
    return len == sizeof KD__NS_AUTH - 1 && !memcmp(ns, KD__NS_AUTH, len);
}

int kd__root_is_zero(const uint8_t root[KD__HASH_LEN])
{
    for (int i = 0; i < KD__HASH_LEN; i++)
        if (root[i])
            return 0;
    return 1;
}

void kd__field_root(const uint8_t storage_root[KD__HASH_LEN], const uint8_t views_root[KD__HASH_LEN],
                    const uint8_t vectors_root[KD__HASH_LEN], const uint8_t auth_root[KD__HASH_LEN],
                    uint8_t out[KD__HASH_LEN])
{
    static const char tag[] = "korudelta.root.field.v1";
    kd__sha s;
    kd__sha_init(&s);
    kd__sha_update(&s, tag, sizeof tag);
    kd__sha_update(&s, "storage", sizeof "storage");
    kd__sha_update(&s, storage_root, KD__HASH_LEN);
    if (!kd__root_is_zero(views_root)) {
        kd__sha_update(&s, "views", sizeof "views");
        kd__sha_update(&s, views_root, KD__HASH_LEN);
    }
    if (!kd__root_is_zero(vectors_root)) {
        kd__sha_update(&s, "vectors", sizeof "vectors");
        kd__sha_update(&s, vectors_root, KD__HASH_LEN);
    }
    if (!kd__root_is_zero(auth_root)) {
        kd__sha_update(&s, "auth", sizeof "auth");
        kd__sha_update(&s, auth_root, KD__HASH_LEN);
    }
    kd__sha_final(&s, out);
}
