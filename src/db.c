/*
 * db.c — opening and closing a database: options, the directory, its lock,
 * the node id, replay of the log into the index (with the torn-tail rule),
 * the sync=interval flusher, and status (stats, roots).
 *
 * Recovery rule (DESIGN.md §3): in the newest segment, a last record that is
 * incomplete (header or payload cut short), a zero-filled tail, or a last
 * record whose payload checksum fails is a torn write that was never
 * acknowledged, and is cut off. Anything else that fails a check is
 * corruption: opening fails naming the file and the offset.
 */
#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "db_int.h"
#include "query/hooks.h"
#include "store/segment.h"
#include "vector/vstore.h"

const char *kd_libversion(void)
{
    return KD_VERSION_STRING;
}

int kd_libversion_number(void)
{
    return KD_VERSION_NUMBER;
}

size_t kd_max_namespace_len(void)
{
    return 255;
}

size_t kd_max_key_len(void)
{
    return 1024;
}

void kd_free(void *p)
{
    free(p);
}

/* ------------------------------------------------------------------------
 * Options
 * ---------------------------------------------------------------------- */

static void options_default(struct kd_options *o)
{
    memset(o, 0, sizeof *o);
    o->sync = KD_SYNC_ALWAYS;
    o->interval_ms = 100;
    o->busy_timeout_ms = 10000;
    o->max_value_size = KD_DEFAULT_MAX_VALUE_SIZE;
    o->cache_size = 64u << 20;
    o->log_level = KD_LOG_WARN;
    o->create = 1;
    o->segment_size = KD__SEG_TARGET_SIZE;
    o->upkeep_ms = 5000;
    o->retention_ms = 3600u * 1000; /* hourly, as the seed's distillation */
    o->consolidate_ms = 300u * 1000;      /* every 5 minutes, as the seed's consolidation */
    o->consolidate_after_ms = 3600u * 1000; /* segments whose writes are all an hour old */
    o->checkpoint_bytes = 64u << 20;
}

kd_options *kd_options_new(void)
{
    kd_options *o = malloc(sizeof *o);
    if (o)
        options_default(o);
    return o;
}

void kd_options_free(kd_options *opts)
{
    free(opts);
}

int kd_options_set_sync(kd_options *o, kd_sync mode, uint32_t interval_ms)
{
    if (!o)
        return KD_EMISUSE;
    if (mode != KD_SYNC_ALWAYS && mode != KD_SYNC_INTERVAL && mode != KD_SYNC_NONE)
        return KD_EINVALID;
    if (mode == KD_SYNC_INTERVAL && interval_ms == 0)
        return KD_EINVALID;
    o->sync = mode;
    if (interval_ms)
        o->interval_ms = interval_ms;
    return KD_OK;
}

int kd_options_set_busy_timeout(kd_options *o, uint32_t ms)
{
    if (!o)
        return KD_EMISUSE;
    o->busy_timeout_ms = ms;
    return KD_OK;
}

int kd_options_set_max_value_size(kd_options *o, size_t bytes)
{
    if (!o)
        return KD_EMISUSE;
    if (bytes == 0 || bytes > (1u << 30))
        return KD_EINVALID;
    o->max_value_size = bytes;
    return KD_OK;
}

int kd_options_set_cache_size(kd_options *o, size_t bytes)
{
    if (!o)
        return KD_EMISUSE;
    o->cache_size = bytes;
    o->cache_size_set = 1;
    return KD_OK;
}

int kd_options_set_log(kd_options *o, kd_log_fn fn, void *ctx, kd_log_level max_level)
{
    if (!o)
        return KD_EMISUSE;
    o->log_fn = fn;
    o->log_ctx = ctx;
    o->log_level = max_level;
    return KD_OK;
}

int kd_options_set_segment_size(kd_options *o, size_t bytes)
{
    if (!o)
        return KD_EMISUSE;
    if (bytes < (64u << 10) || bytes > (1u << 30))
        return KD_EINVALID;
    o->segment_size = bytes;
    return KD_OK;
}

int kd_options_set_vector_index(kd_options *o, uint32_t m, uint32_t ef_construction, uint32_t ef_search)
{
    if (!o)
        return KD_EMISUSE;
    if ((m && (m < KD__VSTORE_MIN_M || m > KD__VSTORE_MAX_M)) || ef_construction > KD__VSTORE_MAX_EF ||
        ef_search > KD__VSTORE_MAX_EF)
        return KD_EINVALID;
    o->vec_m = m;
    o->vec_ef_construction = ef_construction;
    o->vec_ef_search = ef_search;
    return KD_OK;
}

int kd_options_set_create(kd_options *o, int create)
{
    if (!o)
        return KD_EMISUSE;
    o->create = create ? 1 : 0;
    return KD_OK;
}

/* ------------------------------------------------------------------------
 * Errors during open: the handle is not returned, so messages go to errbuf.
 * ---------------------------------------------------------------------- */

typedef struct open_err {
    char *buf;
    size_t len;
} open_err;

static int oerr(open_err *e, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int oerr(open_err *e, int rc, const char *fmt, ...)
{
    if (e->buf && e->len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->buf, e->len, fmt, ap);
        va_end(ap);
    }
    return rc;
}

static int errno_rc(int err)
{
    if (err == ENOSPC || err == EDQUOT)
        return KD_ENOSPACE;
    if (err == ENOMEM)
        return KD_ENOMEM;
    return KD_EIO;
}

const char *kd__seg_name(uint64_t no, char buf[32])
{
    snprintf(buf, 32, "log-%08llu.kdl", (unsigned long long)no);
    return buf;
}

/* ------------------------------------------------------------------------
 * Directory, lock, node id
 * ---------------------------------------------------------------------- */

/* A database file must never be fd 0, 1 or 2. A process started with its
 * standard streams closed (a daemon, a cron job, `cmd <&- >&-`) would get
 * them for the lock or the log, and its next printf or error message would
 * land in the database. Each one that is closed is pointed at /dev/null
 * (SQLite guards its files the same way). Called by every entry point that
 * opens a database's files. */
void kd__keep_std_fds(void)
{
    for (int fd = 0; fd <= 2; fd++) {
        if (fcntl(fd, F_GETFD) != -1 || errno != EBADF)
            continue;
        int null = open("/dev/null", O_RDWR);
        if (null < 0)
            return;
        if (null != fd) /* another thread took fd meanwhile: it is open now, and theirs */
            close(null);
    }
}

/* Name of this process ("kdelta"), for the lock file. */
static void self_name(char *buf, size_t n)
{
    snprintf(buf, n, "unknown");
    int fd = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t r = read(fd, buf, n - 1);
    close(fd);
    if (r <= 0)
        return;
    buf[r] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
}

int kd__lock_dir(const char *dir, uint32_t timeout_ms, int *out_fd, char *err, size_t errlen)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/LOCK", dir);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open lock file %s: %s", p, strerror(errno));
        return errno_rc(errno);
    }
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long sleep_us = 1000;
    for (;;) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
            /* The lock belongs to the file we opened; if the directory was
             * swapped meanwhile (kd_repair exchanges directories), LOCK is
             * now another file: lock that one instead. */
            struct stat held, now_there;
            if (fstat(fd, &held) == 0 && stat(p, &now_there) == 0 && held.st_ino == now_there.st_ino &&
                held.st_dev == now_there.st_dev)
                break;
            close(fd);
            fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
            if (fd < 0) {
                snprintf(err, errlen, "cannot open lock file %s: %s", p, strerror(errno));
                return errno_rc(errno);
            }
            continue;
        }
        if (errno != EWOULDBLOCK && errno != EINTR) {
            snprintf(err, errlen, "cannot lock %s: %s", p, strerror(errno));
            close(fd);
            return KD_EIO;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        int64_t waited_ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (waited_ms >= timeout_ms) {
            /* The holder wrote "pid command" into the file: name it. */
            char holder[128] = "";
            ssize_t r = pread(fd, holder, sizeof holder - 1, 0);
            holder[r > 0 ? r : 0] = '\0';
            holder[strcspn(holder, "\n")] = '\0';
            long pid = 0;
            char cmd[64] = "";
            if (sscanf(holder, "%ld %63s", &pid, cmd) >= 1 && pid > 0)
                snprintf(err, errlen,
                         "database %s is locked by process %ld (%s) (waited %u ms); wait for it to finish, or raise "
                         "the busy timeout",
                         dir, pid, cmd[0] ? cmd : "?", timeout_ms);
            else
                snprintf(err, errlen,
                         "database %s is locked by another process (waited %u ms); wait for it to finish, or raise "
                         "the busy timeout",
                         dir, timeout_ms);
            close(fd);
            return KD_EBUSY;
        }
        usleep((useconds_t)sleep_us);
        if (sleep_us < 50000)
            sleep_us *= 2;
    }
    /* Say who holds it, for the error message of the next process. */
    char name[64], line[128];
    self_name(name, sizeof name);
    int n = snprintf(line, sizeof line, "%ld %s\n", (long)getpid(), name);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, line, (size_t)n, 0) != n) {
        /* informational only */
    }
    *out_fd = fd;
    return KD_OK;
}

static int take_lock(kd_db *db, open_err *e)
{
    char why[4200];
    int rc = kd__lock_dir(db->path, db->opt.busy_timeout_ms, &db->lock_fd, why, sizeof why);
    if (rc)
        return oerr(e, rc, "%s", why);
    return KD_OK;
}

int kd__fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int kd__fsync_parent(const char *path)
{
    char parent[4200];
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') /* "a/b/" names a/b */
        n--;
    if (n >= sizeof parent) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(parent, path, n);
    parent[n] = '\0';
    char *slash = strrchr(parent, '/');
    if (!slash)
        snprintf(parent, sizeof parent, ".");
    else if (slash == parent)
        parent[1] = '\0';
    else
        *slash = '\0';
    if (kd__fsync_dir(parent) == 0)
        return 0;
    if (errno != EACCES && errno != EPERM)
        return -1;
    /* A parent this process may write in but not read (mode 0333) cannot
     * be opened to sync: sync the whole file system through `path`. */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = syncfs(fd);
    int en = errno;
    close(fd);
    errno = en;
    return rc;
}

int kd__write_full(int fd, const void *p, size_t n)
{
    const char *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        if (w == 0) { /* no progress: the disk is full */
            errno = ENOSPC;
            return -1;
        }
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

int kd__create_temp(const char *prefix, int dir, char *out, size_t outlen)
{
    for (int tries = 0; tries < 100; tries++) {
        char hex[KD__TEMP_SUFFIX_LEN + 1];
        if (kd_auth_random_hex(KD__TEMP_SUFFIX_LEN / 2, hex) != KD_OK) {
            errno = EIO;
            return -1;
        }
        if ((size_t)snprintf(out, outlen, "%s%s", prefix, hex) >= outlen) {
            errno = ENAMETOOLONG;
            return -1;
        }
        /* Files are backups, which hold every record (auth's too): owner only. */
        int rc = dir ? mkdir(out, 0755) : open(out, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (rc >= 0 || errno != EEXIST)
            return rc;
    }
    return -1; /* errno is EEXIST */
}

/* Is `name` a file that a write beside its final name leaves when the
 * process dies before the rename: a segment's rewrite by compaction or
 * consolidation (log-N.kdl.compact), or the temporary file of the index
 * checkpoint, the vector index, the node id, a dictionary or a compaction
 * plan (NAME.tmp)? None is ever read back: each is written again from
 * scratch when needed. */
static int is_leftover(const char *name)
{
    static const char *const tmp_of[] = {"index.ckpt", "vectors.idx", "NODE", "compact.pending"};
    size_t n = strlen(name);
    if (!strncmp(name, "log-", 4) && n > 12 && !strcmp(name + n - 12, ".kdl.compact"))
        return 1;
    if (n < 5 || strcmp(name + n - 4, ".tmp"))
        return 0;
    if (!strncmp(name, "zdict-", 6) && n == 18)
        return 1;
    for (size_t i = 0; i < sizeof tmp_of / sizeof *tmp_of; i++)
        if (n == strlen(tmp_of[i]) + 4 && !strncmp(name, tmp_of[i], n - 4))
            return 1;
    return 0;
}

/* Remove the leftovers of writes a crash interrupted (is_leftover), under
 * the directory lock, so that they do not hold disk space for good. A
 * failure is logged, never fatal. */
static void remove_leftovers(kd_db *db)
{
    DIR *d = opendir(db->path);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!is_leftover(de->d_name))
            continue;
        if (unlinkat(dirfd(d), de->d_name, 0) == 0)
            kd__log(db, KD_LOG_INFO, "removed %s, left by a write that a crash interrupted", de->d_name);
        else
            kd__log(db, KD_LOG_WARN, "cannot remove %s/%s (left by an interrupted write): %s", db->path, de->d_name,
                    strerror(errno));
    }
    closedir(d);
}

int kd__node_read(const char *dir, uint8_t node[16], char *why, size_t n)
{
    char p[4096], hex[64];
    snprintf(p, sizeof p, "%s/NODE", dir);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int err = errno;
        snprintf(why, n, "cannot read %s: %s", p, strerror(err));
        return err == ENOENT ? KD_ENOTFOUND : errno_rc(err);
    }
    ssize_t got = read(fd, hex, sizeof hex);
    int err = errno;
    close(fd);
    if (got < 0 && err != EISDIR) {
        snprintf(why, n, "cannot read %s: %s", p, strerror(err));
        return errno_rc(err);
    }
    if (got >= 32 && !kd__hex_decode(hex, 16, node))
        return KD_OK;
    /* Show what it holds (printable ASCII, the rest as '?'): a user can
     * then tell a stray write from a truncated file. */
    char shown[41];
    size_t k = 0;
    for (; got > 0 && k < (size_t)got && k < sizeof shown - 1; k++)
        shown[k] = hex[k] >= 0x20 && hex[k] < 0x7f && hex[k] != '"' ? hex[k] : '?';
    shown[k] = '\0';
    if (got <= 0)
        snprintf(why, n, "node id is not 32 hex digits (%s)", got < 0 ? "not a file" : "the file is empty");
    else
        snprintf(why, n, "node id is not 32 hex digits (it holds \"%s\"%s)", shown, (size_t)got > k ? "…" : "");
    return KD_ECORRUPT;
}

int kd__node_write(const char *dir, const uint8_t node[16], char *why, size_t n)
{
    char p[4096], tmp[4096], hex[33];
    kd__hex_encode(node, 16, hex);
    hex[32] = '\n';
    snprintf(p, sizeof p, "%s/NODE", dir);
    snprintf(tmp, sizeof tmp, "%s/NODE.tmp", dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(why, n, "cannot create %s: %s", tmp, strerror(errno));
        return errno_rc(errno);
    }
    if (write(fd, hex, 33) != 33 || fsync(fd) != 0) {
        int err = errno;
        close(fd);
        unlink(tmp);
        snprintf(why, n, "cannot write %s: %s", tmp, strerror(err));
        return errno_rc(err);
    }
    close(fd);
    if (rename(tmp, p) != 0 || kd__fsync_dir(dir) != 0) {
        snprintf(why, n, "cannot create %s: %s", p, strerror(errno));
        return errno_rc(errno);
    }
    return KD_OK;
}

/* The node id: NODE, or a new random one for a new database. */
static int load_node_id(kd_db *db, open_err *e)
{
    char why[4400];
    int rc = kd__node_read(db->path, db->node, why, sizeof why);
    if (rc == KD_ECORRUPT)
        return oerr(e, rc, "%s/NODE: %s", db->path, why);
    if (rc != KD_ENOTFOUND)
        return rc ? oerr(e, rc, "%s", why) : KD_OK;
    int rfd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (rfd < 0 || read(rfd, db->node, 16) != 16) {
        if (rfd >= 0)
            close(rfd);
        return oerr(e, KD_EIO, "cannot read /dev/urandom for the node id");
    }
    close(rfd);
    rc = kd__node_write(db->path, db->node, why, sizeof why);
    return rc ? oerr(e, rc, "%s", why) : KD_OK;
}

/* ------------------------------------------------------------------------
 * Segments
 * ---------------------------------------------------------------------- */

static int add_seg(kd_db *db, uint64_t no, int fd, uint64_t size, uint32_t zdict)
{
    if (db->nsegs == db->cap_segs) {
        size_t cap = db->cap_segs ? db->cap_segs * 2 : 8;
        kd__seg *s = realloc(db->segs, cap * sizeof *s);
        if (!s)
            return KD_ENOMEM;
        db->segs = s;
        db->cap_segs = cap;
    }
    db->segs[db->nsegs].no = no;
    db->segs[db->nsegs].fd = fd;
    db->segs[db->nsegs].size = size;
    db->segs[db->nsegs].zdict = zdict;
    db->segs[db->nsegs].max_ts = 0;
    void *m = mmap(NULL, KD__TAIL_MAP_SIZE, PROT_READ, MAP_SHARED, fd, 0);
    db->segs[db->nsegs].rmap = m == MAP_FAILED ? NULL : m;
    db->nsegs++;
    return KD_OK;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Sorted numbers of the segment files present. */
int kd__list_segments(const char *dir, uint64_t **nos, size_t *n, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "cannot read directory %s: %s", dir, strerror(errno));
        return errno_rc(errno);
    }
    uint64_t *v = NULL;
    size_t cnt = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        unsigned long long no;
        char tail[8];
        if (sscanf(de->d_name, "log-%llu.%7s", &no, tail) != 2 || strcmp(tail, "kdl") != 0 || no == 0)
            continue;
        char canon[32];
        if (strcmp(kd__seg_name(no, canon), de->d_name) != 0)
            continue;
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *nv = realloc(v, cap * sizeof *nv);
            if (!nv) {
                free(v);
                closedir(d);
                return KD_ENOMEM;
            }
            v = nv;
        }
        v[cnt++] = no;
    }
    closedir(d);
    if (cnt)
        qsort(v, cnt, sizeof *v, cmp_u64);
    *nos = v;
    *n = cnt;
    return KD_OK;
}

/* Create segment `no` with its header, durable (file and directory). */
int kd__seg_create(kd_db *db, uint64_t no, char *err, size_t errlen);
int kd__seg_create(kd_db *db, uint64_t no, char *err, size_t errlen)
{
    char name[32], p[4096];
    snprintf(p, sizeof p, "%s/%s", db->path, kd__seg_name(no, name));
    int fd = open(p, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create %s: %s", p, strerror(errno));
        return errno_rc(errno);
    }
    uint8_t hdr[KD__SEG_HEADER_LEN];
    kd__seg_header_encode(hdr, no, KD__FORMAT_PLAIN, 0);
    if (pwrite(fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr || fdatasync(fd) != 0 || kd__fsync_dir(db->path) != 0) {
        int en = errno ? errno : EIO;
        snprintf(err, errlen, "cannot write %s: %s", p, strerror(en));
        close(fd);
        unlink(p);
        return errno_rc(en);
    }
    int rc = add_seg(db, no, fd, KD__SEG_HEADER_LEN, 0);
    if (rc) {
        close(fd);
        snprintf(err, errlen, "out of memory");
    }
    return rc;
}

/* ------------------------------------------------------------------------
 * Replay
 * ---------------------------------------------------------------------- */

/* Apply one TXN payload (already checksummed) found at `payload_off` of
 * segment `seg` to the index. */
static int apply_txn(kd_db *db, uint32_t seg, uint64_t payload_off, const uint8_t *payload, size_t len, char *why,
                     size_t whylen)
{
    kd__txn_cursor c;
    if (kd__txn_open(&c, payload, len, why, whylen))
        return KD_ECORRUPT;
    /* The writer stores new values in the order of the writes that first
     * use them: remember their indexes so those writes need no lookup. */
    typedef struct stored {
        const uint8_t *id; /* the version_id's bytes in the payload */
        uint32_t idx;
    } stored;
    stored small[64], *st = small;
    if (c.n_values > 64 && !(st = malloc(c.n_values * sizeof *st)))
        return KD_ENOMEM;
    int rc = KD_OK;
    for (uint32_t i = 0; i < c.n_values && !rc; i++) {
        kd__value_rec v;
        if (kd__txn_next_value(&c, &v, why, whylen))
            rc = KD_ECORRUPT;
        else if (kd__index_value_add(&db->ix, v.version_id, seg, (uint32_t)(payload_off + v.offset),
                                     v.len | (v.zstd ? KD__VALUE_ZSTD : 0), 0,
                                     &st[i].idx))
            rc = KD_ENOMEM; /* a value stored twice keeps its first copy */
        else
            st[i].id = payload + v.offset - KD__VALUE_HEADER_LEN;
    }
    if (rc)
        goto out;
    uint32_t cursor = 0;
    uint8_t link[KD__HASH_LEN]; /* the root these writes lead to from the previous record's */
    memcpy(link, db->root, KD__HASH_LEN);
    for (uint32_t i = 0; i < c.n_writes && !rc; i++) {
        kd__write_rec w;
        if (kd__txn_next_write(&c, &w, why, whylen)) {
            rc = KD_ECORRUPT;
            break;
        }
        if (db->replay_linking)
            kd__root_advance(link, w.write_id);
        if (w.ts <= db->last_ts) {
            snprintf(why, whylen, "timestamp %lld is not after the previous one", (long long)w.ts);
            rc = KD_ECORRUPT;
            break;
        }
        kd__ver v;
        v.ts = w.ts;
        memcpy(v.write_id, w.write_id, KD__HASH_LEN);
        v.value = KD__NO_VALUE;
        if (!(w.flags & KD__WRITE_DELETED)) {
            if (cursor < c.n_values && !memcmp(st[cursor].id, w.version_id, KD__HASH_LEN)) {
                v.value = st[cursor++].idx;
            } else {
                v.value = kd__index_value_find(&db->ix, w.version_id);
            }
            /* A pruned write's value was removed (compact.c): keep its id. */
            if (v.value == KD__NO_VALUE && (w.flags & KD__WRITE_PRUNED) &&
                kd__index_value_add(&db->ix, w.version_id, KD__VAL_GONE, 0, 0, 0, &v.value)) {
                rc = KD_ENOMEM;
                break;
            }
            if (v.value == KD__NO_VALUE) {
                snprintf(why, whylen, "write %u refers to a value that is not stored", i);
                rc = KD_ECORRUPT;
                break;
            }
        }
        kd__ns *ns;
        kd__key *k;
        if (kd__index_ns_get(&db->ix, w.ws, w.ws_len, w.ns, w.ns_len, &ns) ||
            kd__index_key_get(&db->ix, ns, w.key, w.key_len, &k) || kd__index_append(&db->ix, k, &v)) {
            rc = KD_ENOMEM;
            break;
        }
        if (kd__is_views_ns(w.ns, w.ns_len))
            kd__views_root_advance(db->views_root, w.write_id);
        else if (kd__is_vectors_ns(w.ns, w.ns_len))
            kd__vectors_root_advance(db->vectors_root, w.write_id);
        else if (kd__is_auth_ns(w.ns, w.ns_len))
            kd__auth_root_advance(db->auth_root, w.write_id);
        db->last_ts = w.ts;
    }
    if (!rc && kd__txn_close(&c, why, whylen))
        rc = KD_ECORRUPT;
    if (!rc && db->replay_linking && memcmp(link, c.root_after, KD__HASH_LEN)) {
        snprintf(why, whylen, "records before this one are missing: its storage root does not follow from the "
                 "records before it (a log segment cut short or removed?)");
        rc = KD_ECORRUPT;
    }
    db->replay_linking = 0;
    if (!rc)
        memcpy(db->root, c.root_after, KD__HASH_LEN);
out:
    if (st != small)
        free(st);
    return rc;
}

/* Where the bytes of fd in [from, to) that are not zero end: `from` when
 * all are zero (the space an unclean exit left reserved). -1 with errno
 * when they cannot be read. */
static int nonzero_end(int fd, uint64_t from, uint64_t to, uint64_t *end)
{
    char buf[65536];
    *end = from;
    for (uint64_t at = from; at < to;) {
        size_t n = to - at < sizeof buf ? (size_t)(to - at) : sizeof buf;
        ssize_t r = pread(fd, buf, n, (off_t)at);
        if (r <= 0)
            return r < 0 ? -1 : (errno = EIO, -1);
        for (ssize_t i = r; i > 0; i--)
            if (buf[i - 1]) {
                *end = at + (uint64_t)i;
                break;
            }
        at += (uint64_t)r;
    }
    return 0;
}

/* Before a torn tail of `fd` from `from` is cut: when bytes that are not
 * zero (they end at `last`) lie past the one damaged record at `from`
 * (pages a crash kept from the disk while later ones reached it; see
 * segment.c), copy them into `path`.torn-<from>, durably. A crash leaves
 * such a tail, but so could a device that lost a write, and then those
 * bytes hold acknowledged records (for a person to recover). *kept is ""
 * when nothing needed keeping. 0, or -1 with errno. */
static int keep_torn_tail(int fd, const char *path, uint64_t from, uint64_t last, char *kept, size_t keptlen)
{
    char buf[65536];
    kept[0] = '\0';
    /* The damaged record's own extent: its header's length when that
     * header is whole, else the header alone. */
    uint8_t hdr[KD__REC_HEADER_LEN], type;
    uint32_t len = 0, crc;
    uint64_t own = from + KD__REC_HEADER_LEN;
    if (pread(fd, hdr, sizeof hdr, (off_t)from) == (ssize_t)sizeof hdr && kd__rec_header_decode(hdr, &type, &len, &crc) == 0)
        own += len;
    if (last <= own)
        return 0; /* one record written in part: nothing else to keep */
    /* a new name: an earlier one cut at the same offset is kept too */
    int out = -1;
    for (int i = 1; out < 0 && i < 1000; i++) {
        if (i == 1)
            snprintf(kept, keptlen, "%s.torn-%llu", path, (unsigned long long)from);
        else
            snprintf(kept, keptlen, "%s.torn-%llu-%d", path, (unsigned long long)from, i);
        out = open(kept, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (out < 0 && errno != EEXIST)
            return -1;
    }
    if (out < 0)
        return -1;
    for (uint64_t at = from; at < last;) {
        size_t n = last - at < sizeof buf ? (size_t)(last - at) : sizeof buf;
        ssize_t r = pread(fd, buf, n, (off_t)at);
        if (r <= 0 || kd__write_full(out, buf, (size_t)r) != 0) {
            int en = r < 0 ? errno : r == 0 ? EIO : errno;
            close(out);
            unlink(kept); /* a part is no use: the next open tries again */
            errno = en;
            return -1;
        }
        at += (uint64_t)r;
    }
    int rc = fsync(out);
    int en = errno;
    close(out);
    if (rc == 0)
        rc = kd__fsync_parent(kept);
    else
        errno = en;
    if (rc != 0) {
        en = errno;
        unlink(kept);
        errno = en;
    }
    return rc;
}

static int replay_record(void *ctx, uint64_t seg, uint64_t off, uint8_t type, const uint8_t *payload, size_t len,
                         char *why, size_t whylen)
{
    kd_db *db = ctx;
    if (type != KD__REC_TXN) {
        snprintf(why, whylen, "unknown record type %u", type);
        return KD_ECORRUPT;
    }
    int rc = apply_txn(db, (uint32_t)seg, off + KD__REC_HEADER_LEN, payload, len, why, whylen);
    if (rc == KD_OK) {
        db->last_rec_seg = seg;
        db->last_rec_off = off;
        db->last_rec_end = off + KD__REC_HEADER_LEN + len;
    }
    return rc;
}

/* Does the file hold only zero bytes? 0 when it cannot be read. */
static int file_all_zero(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    uint8_t buf[65536];
    ssize_t n;
    int zero = 1;
    while (zero && (n = read(fd, buf, sizeof buf)) != 0) {
        if (n < 0) {
            zero = 0;
            break;
        }
        for (ssize_t i = 0; i < n && zero; i++)
            zero = buf[i] == 0;
    }
    close(fd);
    return zero;
}

/* Replay one segment file into the index; in the newest segment a torn tail
 * is cut off (and logged). */
static int replay_segment(kd_db *db, uint64_t no, uint64_t start, int newest, open_err *e)
{
    char name[32], p[4096], err[512];
    snprintf(p, sizeof p, "%s/%s", db->path, kd__seg_name(no, name));
    struct stat st;
    if (stat(p, &st) != 0)
        return oerr(e, errno_rc(errno), "cannot stat %s: %s", p, strerror(errno));
    if (newest && (st.st_size < KD__SEG_HEADER_LEN || (st.st_size == KD__SEG_HEADER_LEN && file_all_zero(p)))) {
        /* A crash while creating the newest segment can leave it short, or
         * header-long with the header's bytes never written (the length
         * reached the disk, the data not): it holds no record, so write
         * its header again. Longer, it was synced with its header before
         * it grew (kd__seg_create): zeros there are damage. */
        kd__log(db, KD_LOG_WARN, "%s: segment header incomplete; rewriting it", p);
        int fd = open(p, O_RDWR | O_CLOEXEC);
        uint8_t hdr[KD__SEG_HEADER_LEN];
        kd__seg_header_encode(hdr, no, KD__FORMAT_PLAIN, 0);
        if (fd < 0 || pwrite(fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr || fdatasync(fd) != 0) {
            int en = errno;
            if (fd >= 0)
                close(fd);
            return oerr(e, errno_rc(en), "cannot repair %s: %s", p, strerror(en));
        }
        close(fd);
    }
    uint64_t end, size;
    uint32_t zdict = 0;
    /* A segment's first record (or the first after the checkpoint) must
     * continue the root where the records before it left it: a sealed
     * segment cut at a record boundary, or one removed, would otherwise
     * open as a shorter history without a word. One record per segment
     * is checked; verify checks them all. */
    db->replay_linking = 1;
    int rc = kd__segment_walk_from(p, no, start, 0, newest, replay_record, db, &zdict, &end, &size, err,
                                   sizeof err);
    db->replay_linking = 0;
    if (rc == KD_ENOMEM)
        return oerr(e, rc, "out of memory while loading %s", p);
    if (rc)
        return oerr(e, rc, "%s", err);
    if (end > KD__TAIL_MAP_SIZE) /* never written by this library: offsets would not fit */
        return oerr(e, KD_ECORRUPT, "%s: segment of %llu bytes is larger than any segment this library writes "
                    "(offset %llu)", p, (unsigned long long)end, (unsigned long long)KD__TAIL_MAP_SIZE);
    int fd = open(p, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return oerr(e, errno_rc(errno), "cannot open %s: %s", p, strerror(errno));
    if (end < size) {
        /* Zeros only: the space reserved ahead by an unclean exit, not data.
         * (Bytes that cannot be read cannot be kept aside: the open fails.) */
        uint64_t last = size;
        int reserve_only = nonzero_end(fd, end, size, &last) == 0 && last == end;
        char kept[4200];
        kept[0] = '\0';
        if (!reserve_only && keep_torn_tail(fd, p, end, last, kept, sizeof kept) != 0) {
            int en = errno;
            close(fd);
            return oerr(e, errno_rc(en), "%s ends in a torn write at offset %llu, and its bytes cannot be kept "
                        "aside in %s before it is cut: %s", p, (unsigned long long)end,
                        kept[0] ? kept : "a .torn file beside it", strerror(en));
        }
        if (reserve_only)
            kd__log(db, KD_LOG_INFO, "%s: dropping %llu reserved bytes after offset %llu", p,
                    (unsigned long long)(size - end), (unsigned long long)end);
        else if (!kept[0])
            kd__log(db, KD_LOG_WARN, "%s: cutting a torn write of %llu bytes at offset %llu", p,
                    (unsigned long long)(size - end), (unsigned long long)end);
        else
            kd__log(db, KD_LOG_WARN, "%s: cutting a torn tail of %llu bytes at offset %llu: pages of unacknowledged "
                    "writes a crash kept from the disk; its bytes are kept in %s", p,
                    (unsigned long long)(size - end), (unsigned long long)end, kept);
        if (ftruncate(fd, (off_t)end) != 0 || fdatasync(fd) != 0) {
            int en = errno;
            close(fd);
            return oerr(e, errno_rc(en), "cannot cut the torn tail of %s: %s", p, strerror(en));
        }
    }
    rc = add_seg(db, no, fd, end, zdict);
    if (rc) {
        close(fd);
        return oerr(e, rc, "out of memory");
    }
    return KD_OK;
}

/* A sealed segment whose records a checkpoint already holds: open it for
 * reading values, without walking it. */
static int attach_segment(kd_db *db, uint64_t no, open_err *e)
{
    char name[32], p[4096];
    snprintf(p, sizeof p, "%s/%s", db->path, kd__seg_name(no, name));
    int fd = open(p, O_RDWR | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int en = errno;
        if (fd >= 0)
            close(fd);
        return oerr(e, errno_rc(en), "cannot open %s: %s", p, strerror(en));
    }
    /* Not walked: its header is read here, for the dictionary it names. */
    uint8_t hdr[KD__SEG_HEADER_LEN];
    uint64_t hno;
    uint32_t format, zdict;
    int h = pread(fd, hdr, sizeof hdr, 0) == (ssize_t)sizeof hdr ? kd__seg_header_decode(hdr, &hno, &format, &zdict)
                                                                 : -1;
    if (h || hno != no) {
        close(fd);
        if (h == -2)
            return oerr(e, KD_EFORMAT, "%s was written by format version %u; this build reads format version %u", p,
                        format, KD__FORMAT_VERSION);
        return oerr(e, KD_ECORRUPT, "%s: bad segment header at offset 0", p);
    }
    int rc = add_seg(db, no, fd, (uint64_t)st.st_size, zdict);
    if (rc) {
        close(fd);
        return oerr(e, rc, "out of memory");
    }
    return KD_OK;
}

void kd__ix_wrlock(kd_db *db)
{
    __atomic_add_fetch(&db->ix_writers_waiting, 1, __ATOMIC_ACQ_REL);
    pthread_rwlock_wrlock(&db->ix_lock);
    __atomic_sub_fetch(&db->ix_writers_waiting, 1, __ATOMIC_ACQ_REL);
}

void kd__ix_relock(kd_db *db, void (*between)(void *), void *arg)
{
    pthread_rwlock_unlock(&db->ix_lock);
    if (between)
        between(arg);
    /* bounded: a writer gets the lock within microseconds once free */
    for (int i = 0; i < 10000 && __atomic_load_n(&db->ix_writers_waiting, __ATOMIC_ACQUIRE); i++)
        sched_yield();
    pthread_rwlock_rdlock(&db->ix_lock);
}

int kd__thread_start(pthread_t *t, void *(*fn)(void *), void *arg, const char *name)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc == 0)
        pthread_setname_np(*t, name);
    return rc;
}

/* ------------------------------------------------------------------------
 * Interval flusher
 * ---------------------------------------------------------------------- */

static void *flusher_main(void *arg)
{
    kd_db *db = arg;
    pthread_mutex_lock(&db->sync_mu);
    while (!db->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)(db->opt.interval_ms % 1000) * 1000000L;
        ts.tv_sec += db->opt.interval_ms / 1000 + ts.tv_nsec / 1000000000L;
        ts.tv_nsec %= 1000000000L;
        pthread_cond_timedwait(&db->sync_cv, &db->sync_mu, &ts);
        if (db->stopping)
            break;
        pthread_mutex_unlock(&db->sync_mu);
        kd__sync_log(db);
        pthread_mutex_lock(&db->sync_mu);
    }
    pthread_mutex_unlock(&db->sync_mu);
    return NULL;
}

/* ------------------------------------------------------------------------
 * Open and close
 * ---------------------------------------------------------------------- */

static void db_release(kd_db *db)
{
    kd__upkeep_free(db);
    kd__vstore_free(db);
    kd__hooks_close(db);
    if (db->nsegs)
        kd__tail_close(&db->tail, db->segs[db->nsegs - 1].size);
    for (size_t i = 0; i < db->nsegs; i++)
    {
        if (db->segs[i].rmap)
            munmap((void *)db->segs[i].rmap, KD__TAIL_MAP_SIZE);
        close(db->segs[i].fd);
    }
    free(db->segs);
    if (db->sync_fd >= 0)
        close(db->sync_fd);
    if (db->sync_fd_old >= 0)
        close(db->sync_fd_old);
    for (size_t i = 0; i < db->n_retired; i++) {
        if (db->retired[i].rmap)
            munmap((void *)db->retired[i].rmap, KD__TAIL_MAP_SIZE);
        close(db->retired[i].fd);
    }
    free(db->retired);
    kd__zdicts_free(db->zdicts);
    free(db->watch_hits);
    kd__index_free(&db->ix);
    kd__cache_free(&db->cache);
    kd__buf_free(&db->rec);
    pthread_rwlock_destroy(&db->ix_lock);
    pthread_mutex_destroy(&db->write_mu);
    pthread_mutex_destroy(&db->sync_mu);
    pthread_mutex_destroy(&db->ckpt_mu);
    pthread_mutex_destroy(&db->compact_mu);
    pthread_cond_destroy(&db->sync_cv);
    if (db->lock_fd >= 0)
        close(db->lock_fd); /* releases the flock */
    free(db->path);
    free(db);
}

/* kd_open; `resume`: finish a compaction a crash interrupted (0 on the
 * second open that follows one, so that it happens at most once). */
static int open_db(const char *path, const kd_options *opts, kd_db **out, char *errbuf, size_t errlen, int resume);

int kd_open(const char *path, const kd_options *opts, kd_db **out, char *errbuf, size_t errlen)
{
    return open_db(path, opts, out, errbuf, errlen, 1);
}

static int open_db(const char *path, const kd_options *opts, kd_db **out, char *errbuf, size_t errlen, int resume)
{
    open_err e = {errbuf, errlen};
    if (errbuf && errlen)
        errbuf[0] = '\0';
    if (!out)
        return oerr(&e, KD_EMISUSE, "kd_open: out is NULL");
    *out = NULL;
    if (!path || !*path)
        return oerr(&e, KD_EINVALID, "database path is empty");
    if (strlen(path) > 3000)
        return oerr(&e, KD_EINVALID, "database path is too long");
    kd__keep_std_fds();

    kd_db *db = calloc(1, sizeof *db);
    if (!db)
        return oerr(&e, KD_ENOMEM, "out of memory");
    db->lock_fd = -1;
    db->sync_fd = db->sync_fd_old = db->sync_fd_busy = -1;
    if (opts)
        db->opt = *opts;
    else
        options_default(&db->opt);
    pthread_rwlock_init(&db->ix_lock, NULL);
    pthread_mutex_init(&db->write_mu, NULL);
    pthread_mutex_init(&db->sync_mu, NULL);
    pthread_mutex_init(&db->ckpt_mu, NULL);
    pthread_mutex_init(&db->compact_mu, NULL);
    pthread_cond_init(&db->sync_cv, NULL);
    int rc;
    uint64_t *nos = NULL;
    size_t nnos = 0;
    db->path = strdup(path);
    if (!db->path || !(db->zdicts = kd__zdicts_new(path)) || kd__index_init(&db->ix) || kd__cache_init(&db->cache, kd__mem_open(db))) {
        rc = oerr(&e, KD_ENOMEM, "out of memory");
        goto fail;
    }

    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno != ENOENT) {
            rc = oerr(&e, errno_rc(errno), "cannot use database directory %s: %s", path, strerror(errno));
            goto fail;
        }
        if (!db->opt.create) {
            rc = oerr(&e, KD_ENOTFOUND, "database directory %s does not exist", path);
            goto fail;
        }
        if (mkdir(path, 0755) != 0 && errno != EEXIST) {
            rc = oerr(&e, errno == ENOSPC ? KD_ENOSPACE : KD_EIO, "cannot create database directory %s: %s", path,
                      strerror(errno));
            goto fail;
        }
        /* Its entry in the parent directory is durable before any write
         * in it is acknowledged. */
        if (kd__fsync_parent(path) != 0) {
            rc = oerr(&e, KD_EIO, "cannot sync the directory holding %s: %s", path, strerror(errno));
            goto fail;
        }
    } else if (!S_ISDIR(st.st_mode)) {
        rc = oerr(&e, KD_EINVALID, "%s exists and is not a directory", path);
        goto fail;
    }

    if ((rc = take_lock(db, &e)) || (rc = load_node_id(db, &e)))
        goto fail;
    remove_leftovers(db);
    {
        char why[4200];
        if ((rc = kd__list_segments(db->path, &nos, &nnos, why, sizeof why))) {
            oerr(&e, rc, "%s", why);
            goto fail;
        }
    }

    uint64_t ckpt_seg, ckpt_end;
    if ((rc = kd__checkpoint_load(db, nos, nnos, &ckpt_seg, &ckpt_end))) {
        oerr(&e, rc, "out of memory while loading the checkpoint");
        goto fail;
    }
    if (ckpt_seg == 0) {
        /* Size the hash tables for the log up front: a write costs at least
         * ~150 bytes of log, so this never underestimates by much and
         * spares rehashing millions of entries while replaying. */
        uint64_t total = 0;
        for (size_t i = 0; i < nnos; i++) {
            char name[32], p[4096];
            struct stat sb;
            snprintf(p, sizeof p, "%s/%s", path, kd__seg_name(nos[i], name));
            if (stat(p, &sb) == 0)
                total += (uint64_t)sb.st_size;
        }
        if (total > (64u << 20) && kd__index_reserve(&db->ix, total / 256, total / 256)) {
            rc = oerr(&e, KD_ENOMEM, "out of memory");
            goto fail;
        }
    }
    for (size_t i = 0; i < nnos; i++) {
        uint64_t expect = i ? nos[i - 1] + 1 : 1; /* numbered from 1, without gaps */
        if (nos[i] != expect) {
            char name[32];
            rc = oerr(&e, KD_ECORRUPT, "%s/%s: segment %llu is missing before it (offset 0)", path,
                      kd__seg_name(nos[i], name), (unsigned long long)expect);
            goto fail;
        }
        /* Segments the checkpoint covers whole are not read again. */
        if (nos[i] < ckpt_seg ? (rc = attach_segment(db, nos[i], &e))
                              : (rc = replay_segment(db, nos[i], nos[i] == ckpt_seg ? ckpt_end : 0, i + 1 == nnos, &e)))
            goto fail;
    }
    if (db->nsegs == 0) {
        char why[512];
        if ((rc = kd__seg_create(db, 1, why, sizeof why))) {
            oerr(&e, rc, "%s", why);
            goto fail;
        }
    }
    free(nos);
    nos = NULL;
    {
        char why[512];
        kd__seg *last = &db->segs[db->nsegs - 1];
        if ((rc = kd__tail_open(&db->tail, last->fd, last->size, why, sizeof why)) ||
            (rc = kd__sync_fd_reopen(db, why, sizeof why))) {
            oerr(&e, rc, "%s", why);
            goto fail;
        }
    }
    db->visible_ts = db->last_ts;
    db->synced = db->appended = 0;
    /* What an earlier session left unsynced (sync=none or interval, or a
     * crash) is synced by this session's first sync (sync_upto). */
    db->unsynced_before = 1;
    /* A compaction cut short by a crash is finished now; if it cannot be
     * (a full disk), the database is still whole and it is tried again at
     * the next open. */
    if ((rc = kd__compact_load_drops(db))) {
        oerr(&e, rc, "%s", kd_errmsg(db));
        goto fail;
    }
    rc = resume ? kd__compact_resume(db) : KD_OK;
    if (rc < 0) {
        kd__log(db, KD_LOG_WARN, "an interrupted compaction could not be finished: %s", kd_errmsg(db));
    } else if (rc > 0) {
        /* Finished: the index was built from the log as it was before.
         * A value stored again after the plan was made points at its first
         * copy there, which the compaction has now removed: the database
         * is opened again from the finished log. */
        free(nos);
        db_release(db);
        return open_db(path, opts, out, errbuf, errlen, 0);
    }
    rc = KD_OK;
    {
        char why[512];
        if ((rc = kd__hooks_open(db, why, sizeof why)) || (rc = kd__vstore_open(db, why, sizeof why))) {
            oerr(&e, rc, "%s", why);
            goto fail;
        }
    }

    if (db->opt.sync == KD_SYNC_INTERVAL) {
        if (kd__thread_start(&db->flusher, flusher_main, db, "kd-flusher") != 0) {
            rc = oerr(&e, KD_ENOMEM, "cannot start the sync thread");
            goto fail;
        }
        db->flusher_running = 1;
    }
    if ((rc = kd__upkeep_start(db))) {
        oerr(&e, rc, "cannot start the upkeep thread");
        goto fail;
    }
    kd__mem_rebalance(db);
    kd__log(db, KD_LOG_INFO, "opened %s: %llu keys, %llu versions, %zu segments", path,
            (unsigned long long)db->ix.key_count, (unsigned long long)db->ix.versions, db->nsegs);
    *out = db;
    return KD_OK;

fail:
    free(nos);
    db_release(db);
    return rc;
}

int kd_close(kd_db *db)
{
    if (!db)
        return KD_OK;
    if (db->core) {
        /* a workspace handle: the database stays open */
        kd__workspace_close(db);
        return KD_OK;
    }
    if (db->flusher_running) {
        pthread_mutex_lock(&db->sync_mu);
        db->stopping = 1;
        pthread_cond_broadcast(&db->sync_cv);
        pthread_mutex_unlock(&db->sync_mu);
        pthread_join(db->flusher, NULL);
    }
    /* No writer is left: a due checkpoint now makes the next open short. */
    kd__upkeep_at_close(db);
    int rc = KD_OK;
    if (db->nsegs) {
        kd__seg *last = &db->segs[db->nsegs - 1];
        rc = kd__tail_close(&db->tail, last->size);
        if (db->opt.sync != KD_SYNC_NONE && !kd__failed(db) && fdatasync(last->fd) != 0)
            rc = KD_EIO;
    }
    /* After the last write: keep the vector indexes for the next open
     * (a failure only costs a rebuild then; it is logged). */
    char what[200];
    if (kd__vstore_save(db, 1, what, sizeof what))
        kd__log(db, KD_LOG_WARN, "cannot save the vector indexes (%s); the next open rebuilds them", what);
    db_release(db);
    return rc;
}

/* ------------------------------------------------------------------------
 * Status
 * ---------------------------------------------------------------------- */

int kd_stats_get(kd_db *db, kd_stats *out)
{
    if (!db || !out)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    memset(out, 0, sizeof *out);
    pthread_rwlock_rdlock(&db->ix_lock);
    for (size_t i = 0; i < db->ix.ns_count; i++) {
        const kd__ns *ns = db->ix.ns_list[i];
        if (!strncmp(ns->name, "_kd", 3))
            continue;
        /* a handle counts its own workspace's keys (and, for a workspace
         * other than default, their versions) */
        if (strcmp(ns->ws, ws_ ? ws_ : KD__DEFAULT_WS))
            continue;
        if (ws_)
            for (size_t j = 0; j < ns->n_all; j++)
                out->versions += ns->all[j]->n;
        out->keys += ns->keys;
        out->live_keys += ns->live;
        if (ns->keys)
            out->namespaces++;
    }
    if (!ws_)
        out->versions = db->ix.versions;
    out->unique_values = db->ix.n_vals - db->ix.values_gone;
    out->segments = db->nsegs;
    for (size_t i = 0; i < db->nsegs; i++)
        out->disk_bytes += __atomic_load_n(&db->segs[i].size, __ATOMIC_RELAXED);
    out->index_bytes = db->ix.bytes;
    out->index_mapped_bytes = db->ix.borrowed;
    out->last_timestamp = kd__visible(db);
    pthread_rwlock_unlock(&db->ix_lock);
    pthread_rwlock_rdlock(&db->cache.lock);
    out->cache_bytes = db->cache.used;
    pthread_rwlock_unlock(&db->cache.lock);
    out->cache_hits = __atomic_load_n(&db->cache.hits, __ATOMIC_RELAXED);
    out->cache_misses = __atomic_load_n(&db->cache.misses, __ATOMIC_RELAXED);
    out->log_syncs = __atomic_load_n(&db->log_syncs, __ATOMIC_RELAXED);
    kd__vstore_totals(db, &out->vectors, &out->vector_index_bytes);
    uint64_t covered;
    kd__checkpoint_lag(db, &out->replay_bytes, &covered);
    out->memory_budget = db->mem.budget;
    out->cache_capacity = kd__cache_capacity(&db->cache);
    out->memory_used = out->cache_bytes + out->index_bytes + out->vector_index_bytes;
    out->log_window_bytes = db->mem.window;
    out->log_trims = __atomic_load_n(&db->mem.trims, __ATOMIC_RELAXED);
    return KD_OK;
}

int kd_roots(kd_db *db, kd_root **roots, size_t *n)
{
    if (!db || !roots || !n)
        return KD_EMISUSE;
    KD__WS_ENTER(db);
    kd_root *r = calloc(5, sizeof *r);
    if (!r)
        return kd__err(db, KD_ENOMEM, "out of memory");
    uint8_t storage[KD__HASH_LEN], views[KD__HASH_LEN], vectors[KD__HASH_LEN], auth[KD__HASH_LEN],
        field[KD__HASH_LEN];
    pthread_mutex_lock(&db->write_mu);
    memcpy(storage, db->root, KD__HASH_LEN);
    memcpy(views, db->views_root, KD__HASH_LEN);
    memcpy(vectors, db->vectors_root, KD__HASH_LEN);
    memcpy(auth, db->auth_root, KD__HASH_LEN);
    pthread_mutex_unlock(&db->write_mu);
    kd__field_root(storage, views, vectors, auth, field);
    size_t k = 0;
    snprintf(r[k].name, sizeof r[k].name, "storage");
    kd__hex_encode(storage, KD__HASH_LEN, r[k++].hex);
    if (!kd__root_is_zero(views)) {
        snprintf(r[k].name, sizeof r[k].name, "views");
        kd__hex_encode(views, KD__HASH_LEN, r[k++].hex);
    }
    if (!kd__root_is_zero(vectors)) {
        snprintf(r[k].name, sizeof r[k].name, "vectors");
        kd__hex_encode(vectors, KD__HASH_LEN, r[k++].hex);
    }
    if (!kd__root_is_zero(auth)) {
        snprintf(r[k].name, sizeof r[k].name, "auth");
        kd__hex_encode(auth, KD__HASH_LEN, r[k++].hex);
    }
    snprintf(r[k].name, sizeof r[k].name, "field");
    kd__hex_encode(field, KD__HASH_LEN, r[k++].hex);
    *roots = r;
    *n = k;
    return KD_OK;
}
