/*
 * vector_int.h — distance kernels and the HNSW index of the vector subsystem
 * (private to the library).
 *
 * Two parts:
 *   distance.c  dot product and squared L2 distance of float32 vectors,
 *               in portable C, AVX2+FMA and AVX-512F, one chosen at run
 *               time (first use, thread-safe) from what the CPU can run;
 *               lengths, directions and cosines;
 *   hnsw.c      an approximate nearest-neighbour index: the hierarchical
 *               navigable small world graph of Malkov & Yashunin (2016/2018),
 *               with deletes, in-place updates, filtered search that is
 *               exact in its count, an exact brute-force search, and a
 *               checksummed on-disk form.
 *
 * Scores (one convention everywhere, kd__vec_score and both searches):
 *   KD__VEC_COSINE  cosine similarity in [-1, 1]   higher = more similar
 *   KD__VEC_DOT     dot product                    higher = more similar
 *   KD__VEC_L2      Euclidean distance (not squared) lower = more similar
 * Results always come best first: by score descending for cosine and dot,
 * by distance ascending for L2; ties by label ascending.
 *
 * Vectors: 1..KD__VEC_MAX_DIM float32 components, all finite (NaN and ±Inf
 * give KD_EINVALID). For cosine the index stores the vector's direction
 * (kd__vec_normalize), so a zero vector (or a zero query) is KD_EINVALID
 * there, and scores the cosine of two directions with kd__vec_cosine: a
 * vector and itself (or one of the same direction as computed) score
 * exactly 1, and no score leaves [-1, 1].
 */
#ifndef KD_VECTOR_INT_H
#define KD_VECTOR_INT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/buf.h"

#define KD__VEC_MAX_DIM 4096

typedef enum kd__vec_metric {
    KD__VEC_COSINE = 0,
    KD__VEC_DOT = 1,
    KD__VEC_L2 = 2,
} kd__vec_metric;

/* "cosine", "dot", "l2" <-> the enum. parse: KD_EINVALID for anything else
 * (NULL included); name: NULL for a value outside the enum. */
int kd__vec_metric_parse(const char *name, kd__vec_metric *out);
const char *kd__vec_metric_name(kd__vec_metric m);

/* ------------------------------------------------------------------------
 * Distance kernels (distance.c)
 * ---------------------------------------------------------------------- */

typedef float (*kd__vec_fn)(const float *a, const float *b, size_t n);

/* One implementation of the kernels. Pointers need no alignment beyond
 * that of float; n may be any length (0 gives 0). Results are computed in
 * float with several partial sums, so they differ from a sequential double
 * sum by rounding only (relative error ~1e-6 for n <= 4096). */
typedef struct kd__vec_kernels {
    const char *name; /* "portable", "avx2", "avx512" */
    kd__vec_fn dot;   /* sum a[i]*b[i] */
    kd__vec_fn l2sq;  /* sum (a[i]-b[i])^2 */
} kd__vec_kernels;

/* The kernels in use. Chosen once, on first use, thread-safely: the best
 * the CPU (and OS) supports — avx512 (AVX-512F), then avx2 (AVX2 and FMA),
 * then portable — among those kd__vec_kernels_check passes, unless the environment variable KD_SIMD names one
 * (portable|avx2|avx512; "auto" or empty = the default). A KD_SIMD value
 * that is unknown or that the CPU cannot run is not used: the best
 * available kernel is, and kd__vec_kernel_note() says why. Never NULL. */
const kd__vec_kernels *kd__vec_kernels_active(void);
/* 0 if k's dot and l2sq agree with a double-precision sum on fixed
 * vectors of every length 1..80 (all the 64-, 16- and 8-wide steps and
 * masked tails), else the first length where they do not. The choice
 * above skips kernels that fail it, with a note; the AVX-512 ones can
 * only be run, so checked, on a CPU that has AVX-512F. */
size_t kd__vec_kernels_check(const kd__vec_kernels *k);
/* The kernels called `name` if this CPU can run them, else NULL (tests
 * and benchmarks run each available kernel through this). */
const kd__vec_kernels *kd__vec_kernels_named(const char *name);
/* Name of the active kernels: "portable", "avx2" or "avx512". */
const char *kd__vec_kernel_name(void);
/* NULL, or a sentence saying that KD_SIMD was ignored and why, e.g.
 * "KD_SIMD=avx512 ignored: this CPU cannot run it; using avx2", or that
 * kernels were left out because kd__vec_kernels_check failed. For a
 * debug log line; the library itself prints nothing. */
const char *kd__vec_kernel_note(void);

/* Convenience wrappers over the active kernels. */
float kd__vec_dot(const float *a, const float *b, size_t n);
float kd__vec_l2sq(const float *a, const float *b, size_t n);

/* The length of a, sqrt(sum a[i]^2), summed in double and rounded once to
 * float: it neither overflows nor underflows where float32 squares would
 * (it is finite for every vector a put accepts; a query's may be inf), and
 * is the same whatever the kernels. */
float kd__vec_norm(const float *a, size_t n);
/* The direction of v into out (which may be v): v[i] / |v|, each computed
 * in double and rounded once, so finite even when 1/|v| is beyond float32.
 * Returns kd__vec_norm(v, n); a zero vector gives 0 and zeros. */
float kd__vec_normalize(const float *v, size_t n, float *out);
/* The cosine of a and b from their dot products ab = dot(a, b), aa =
 * dot(a, a), bb = dot(b, b): ab / sqrt(aa * bb) in double, clamped to
 * [-1, 1] (float rounding may put it just outside); exactly 1 when the
 * three are equal, as for a vector and itself; 0 when aa or bb is not > 0. */
float kd__vec_cosine(float ab, float aa, float bb);

/* KD_OK if all n components are finite, KD_EINVALID otherwise. */
int kd__vec_check(const float *v, size_t n);
/* The score of b for query a under metric m, in the convention above,
 * computed in double from the raw vectors (so it neither overflows nor
 * underflows): the reference for tests. The searches agree with it up to
 * float rounding. Cosine with a zero vector gives 0. */
float kd__vec_score(kd__vec_metric m, const float *a, const float *b, size_t n);

/* ------------------------------------------------------------------------
 * HNSW index (hnsw.c)
 *
 * Nodes are addressed by the caller's label: a dense slot number
 * (0 .. KD__HNSW_MAX_LABEL). The index keeps per-slot arrays indexed by the
 * label itself, so labels should be dense (a gap costs the per-slot
 * overhead, ~2 + 4*(2M+1) + dim*4 bytes). The vectors are copied in.
 *
 * Thread safety: the index has no lock of its own for its graph. Any number
 * of threads may call the read functions (search, search_exact, count,
 * live, contains, memory, save*) at once; add, remove, reserve and free need
 * the index to themselves. The caller guards it with a reader-writer lock:
 * read lock for the former, write lock for the latter. (Searches share a
 * small pool of scratch memory behind an internal mutex.)
 *
 * Memory: per slot dim*4 (vector) + 4*(2M+1) (level-0 links: count and 2M
 * neighbours, all nodes in one flat array) + 2 (level, flags) + 8 (pointer
 * to upper-level links) bytes; a node of level L > 0 has L*4*(M+1) more.
 * With M=16, dim=128: 654 bytes + ~4.5 bytes of upper links on average.
 * ---------------------------------------------------------------------- */

/* Defaults, from the measurements in docs/BENCH.md ("Vector search") and
 * test_hnsw: M 16 and ef_construction 200 give hnswlib's recall per ef at
 * 0.64-0.86x its build time; ef_search 100 gives recall@10 ~0.995 on the
 * benchmark's 100,000 clustered 128-dim vectors (0.95 needs ef ~40) and
 * 0.976 on 20,000 random 32-dim ones, where 64 gives only 0.926. */
#define KD__HNSW_DEFAULT_M 16
#define KD__HNSW_DEFAULT_EF_CONSTRUCTION 200
#define KD__HNSW_DEFAULT_EF_SEARCH 100
#define KD__HNSW_MIN_M 2
#define KD__HNSW_MAX_M 128
#define KD__HNSW_MAX_EF 65536 /* larger ef_construction / ef are clamped to it */
#define KD__HNSW_MAX_LABEL 0x7ffffffeu

typedef struct kd__hnsw kd__hnsw;

/* Filter of a search: return nonzero to let `label` be a result, 0 to
 * exclude it. Called from the searching thread, possibly more than once per
 * label; must not modify the index. */
typedef int (*kd__hnsw_accept_fn)(uint32_t label, void *ctx);

/* New empty index. dim 1..KD__VEC_MAX_DIM; M (max links per node on upper
 * levels; level 0 allows 2M) 0 = default, else KD__HNSW_MIN_M..KD__HNSW_MAX_M;
 * ef_construction 0 = default (clamped to [M, KD__HNSW_MAX_EF]); seed makes
 * the random levels reproducible (same seed, same inserts = same graph).
 * Errors: KD_EINVALID (dim, metric or M out of range), KD_ENOMEM. */
int kd__hnsw_new(uint32_t dim, kd__vec_metric metric, uint32_t M, uint32_t ef_construction, uint64_t seed,
                 kd__hnsw **out);
void kd__hnsw_free(kd__hnsw *h); /* NULL is a no-op */


/* Copies made in pieces while writers go on (the vector index file). A
 * copy of a large index made in one go holds writers for its whole length;
 * instead the owner copies a few labels at a time, letting writers in
 * between, and the index remembers which labels changed meanwhile:
 *   empty_like   an empty index with h's parameters: the copy to fill;
 *   track_begin  counts every label below max(n, slots) as changed and
 *                starts noting changes: any add or remove marks the labels
 *                whose vector, links or flags it changes; KD_ENOMEM;
 *   mark         counts `label` as changed (the owner's data of the label
 *                changed; no-op when not tracking); never fails (a lack of
 *                memory makes copy_finish fail);
 *   track_next   the first changed label >= from, UINT32_MAX if none;
 *   copy_label   makes c's node `label` what h's is and clears its mark;
 *                KD_ENOMEM (the mark stays);
 *   copy_finish  once no label is marked: c's counts, entry point and
 *                random state become h's, so c equals h (the same saved
 *                bytes); KD_ENOMEM when a mark was lost, KD_EINVALID when
 *                labels are still marked;
 *   track_end    stops noting changes (also after a failure).
 * Locking: mark runs where h changes (write lock). The copier is one
 * thread at a time; it calls the others with the lock held for reading
 * (which keeps writers out, so the marks do not change under it), and
 * can release it between any two calls. track_begin, copy_label and
 * track_end write h's marks under that read lock while searches run:
 * searches never read them. */
int kd__hnsw_empty_like(const kd__hnsw *h, kd__hnsw **out);
int kd__hnsw_track_begin(kd__hnsw *h, uint32_t n);
void kd__hnsw_mark(kd__hnsw *h, uint32_t label);
uint32_t kd__hnsw_track_next(const kd__hnsw *h, uint32_t from);
int kd__hnsw_copy_label(kd__hnsw *h, kd__hnsw *c, uint32_t label);
int kd__hnsw_copy_finish(const kd__hnsw *h, kd__hnsw *c);
void kd__hnsw_track_end(kd__hnsw *h);

/* Make room for labels below n without reallocating later (optional; the
 * arrays otherwise grow by 1.5x), and touch that memory now. Errors: KD_EINVALID (n too large), KD_ENOMEM. */
int kd__hnsw_reserve(kd__hnsw *h, uint32_t n);

/* Insert vector v (n floats, copied; n must be the index's dim) under
 * `label`. If the label is already in the index (live or removed) this is
 * an update: its vector is replaced, the node is relinked from its new
 * position and is live again. Errors: KD_EINVALID (n != dim, label >
 * KD__HNSW_MAX_LABEL, NaN/Inf component, zero vector under cosine),
 * KD_ENOMEM (the index is unchanged). */
int kd__hnsw_add(kd__hnsw *h, uint32_t label, const float *v, uint32_t n);

/* Remove `label`: it is never returned by a search again. Its node stays in
 * the graph (it still routes searches) until the label is added again.
 * Errors: KD_ENOTFOUND (no live node with this label). */
int kd__hnsw_remove(kd__hnsw *h, uint32_t label);

/* What a search did (optional out-parameter of kd__hnsw_search_ex). */
typedef enum kd__hnsw_method {
    KD__HNSW_GRAPH = 0,     /* graph search only */
    KD__HNSW_EXACT = 1,     /* brute force chosen up front */
    KD__HNSW_FALLBACK = 2,  /* graph search abandoned or short, then brute force */
} kd__hnsw_method;
typedef struct kd__hnsw_search_info {
    kd__hnsw_method method;
    uint64_t distances;     /* distance computations, both phases */
    uint64_t accept_calls;  /* calls of the accept function, both phases */
    double accept_estimate; /* estimated share of live nodes accepted (1 without filter) */
} kd__hnsw_search_info;

/* The k best live nodes for query q (n floats, n == dim), best first: labels[i]
 * and scores[i] for i < *n_out (arrays of k entries; may be NULL if k == 0).
 * ef: size of the dynamic candidate list (0 = KD__HNSW_DEFAULT_EF_SEARCH;
 * max(ef, k) is used); higher = better recall, slower. accept (may be NULL)
 * filters labels; ctx is passed to it.
 *
 * Exactness of the count: *n_out = min(k, number of live accepted nodes),
 * always. Which nodes is approximate (recall), except when brute force runs.
 *
 * Brute force or graph (decided per search from measured counts):
 *   1. live nodes <= KD__HNSW_EXACT_MAX_NODES: brute force (as fast, exact);
 *   2. no filter and no removed nodes: the graph search;
 *   3. otherwise, with p the accepted share of live nodes (from calling
 *      accept() on KD__HNSW_SAMPLE slots spread over the index; 1 without
 *      a filter) and e = p * live / (nodes in the graph) the share of graph
 *      nodes that may be results, both costs are estimated in graph
 *      distance computations: brute force = (slots * c_slot + p * live *
 *      c_scan) / c_graph, the graph walk = (4 * ef + 200) / e^0.6 (it
 *      must cross rejected or removed nodes to find results; the exponent
 *      fits the walks measured). The walk runs if its estimate is at most
 *      0.6 x the brute force (walks vary much between queries), with the
 *      brute-force cost as its budget: a walk that passes it is abandoned
 *      for brute force, so a wrong guess costs at most twice the best. The
 *      constants c_* (ns, measured with 5,000-100,000 vectors of dim 32 and
 *      128, filters of 1-100 %) are in hnsw.c.
 *   A graph search that ends with fewer than k results (possible only with
 *   a filter or removed nodes) is completed by brute force, so the count is
 *   always exact. Brute force fetches vectors ahead, and with a filter
 *   keeping 1 % of 100,000 nodes (dim 128) takes ~0.3 ms, mostly the
 *   100,000 accept calls.
 * Errors: KD_EINVALID (NULL argument, n != dim, NaN/Inf in q, zero q under
 * cosine), KD_ENOMEM. */
#define KD__HNSW_EXACT_MAX_NODES 2048
#define KD__HNSW_SAMPLE 256
int kd__hnsw_search(kd__hnsw *h, const float *q, uint32_t n, size_t k, size_t ef, kd__hnsw_accept_fn accept,
                    void *ctx, uint32_t *labels, float *scores, size_t *n_out);
/* The same, reporting what it did in *info (may be NULL). */
int kd__hnsw_search_ex(kd__hnsw *h, const float *q, uint32_t n, size_t k, size_t ef, kd__hnsw_accept_fn accept,
                       void *ctx, uint32_t *labels, float *scores, size_t *n_out, kd__hnsw_search_info *info);
/* Brute force over every live accepted node: the exact top k, same
 * signature, scores and order (ef is ignored). */
int kd__hnsw_search_exact(kd__hnsw *h, const float *q, uint32_t n, size_t k, size_t ef, kd__hnsw_accept_fn accept,
                          void *ctx, uint32_t *labels, float *scores, size_t *n_out);

/* Accessors. count = nodes in the graph (live + removed), live = live
 * nodes; memory = bytes allocated by the index (arrays at their capacity,
 * upper links, scratch memory of searches). */
size_t kd__hnsw_count(const kd__hnsw *h);
size_t kd__hnsw_live(const kd__hnsw *h);
size_t kd__hnsw_memory(const kd__hnsw *h);
/* Of which the search and insert scratch kept for reuse (tests). */
size_t kd__hnsw_scratch_bytes(const kd__hnsw *h);
int kd__hnsw_contains(const kd__hnsw *h, uint32_t label); /* 1 if live */
uint32_t kd__hnsw_dim(const kd__hnsw *h);
kd__vec_metric kd__hnsw_metric(const kd__hnsw *h);
uint32_t kd__hnsw_M(const kd__hnsw *h);
uint32_t kd__hnsw_ef_construction(const kd__hnsw *h);
/* The stored vector of a live label (normalized under cosine), or NULL.
 * Valid until the next add/remove/reserve/free. */
const float *kd__hnsw_vector(const kd__hnsw *h, uint32_t label);

/* ------------------------------------------------------------------------
 * On-disk form (format version 1; docs: top of hnsw.c "On disk")
 *
 * save writes the whole index: a 16-byte preamble (magic "KDHNSW\r\n",
 * format version, flags) then blocks of at most 1 MiB, each with its length
 * and CRC-32C, ended by an empty block. load reads it back into a new index
 * that gives identical search results. load checks every block's checksum
 * before using its bytes, every length and count before allocating, and
 * every link; it fails with KD_ECORRUPT (bad checksum, truncated, trailing
 * bytes, or inconsistent content), KD_EFORMAT (a newer format version),
 * KD_EIO (read error), KD_ENOMEM — never crashes, and describes the
 * problem in errbuf (may be NULL) with its byte offset.
 * save errors: KD_EIO (write error), KD_ENOMEM.
 * ---------------------------------------------------------------------- */

#define KD__HNSW_FORMAT_VERSION 1

int kd__hnsw_save(const kd__hnsw *h, FILE *f);
int kd__hnsw_save_buf(const kd__hnsw *h, kd__buf *out); /* appends to out */
int kd__hnsw_load(FILE *f, kd__hnsw **out, char *errbuf, size_t errlen);
int kd__hnsw_load_mem(const void *p, size_t n, kd__hnsw **out, char *errbuf, size_t errlen);

#endif
