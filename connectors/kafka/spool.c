/* spool.c: the disk buffer (spool.h): record codec, segment files, commit, replay, acks.
 *
 * One thread owns a spool (the Kafka sink's). Segments are kept oldest first in `segs`; the
 * last one is the active segment while `active` is set. Appends collect encoded records in
 * `wbuf`; commit writes them at the active segment's durable end with pwrite and fdatasyncs,
 * so a failed commit can cut the file back to the last durable size. A new segment is started
 * only at an append that finds the buffer empty (right after a commit), so a commit never
 * spans two files.
 */
#define _GNU_SOURCE /* O_CLOEXEC, pread/pwrite */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <intentra/error.h>

#include "spool.h"

#define SPOOL_MAGIC       "ITRSPL1\n"
#define SPOOL_MAGIC_LEN   8
#define SPOOL_VERSION     1
#define SPOOL_MIN_PAYLOAD (1 + 1 + 4 + 8 + 2 + 4 + 2 + 4)
#define SPOOL_WBUF_BYTES  (1u << 20)
#define SPOOL_RBUF_BYTES  (256u << 10)
#define SPOOL_NAME_FMT    "spool-%020" PRIu64 ".seg"

struct seg {
    uint64_t seq;
    int fd;
    uint64_t size;     /* durable bytes (sealed: the file size) */
    uint64_t read_off; /* next record to hand out */
    uint64_t read_n;   /* records handed out */
    uint64_t acked_n;
    int sealed;     /* no longer appended to */
    int dir_synced; /* its directory entry is durable */
    int problem_logged;
};

struct gw_spool {
    char dir[PATH_MAX];
    uint64_t max_bytes, segment_bytes;
    void (*log)(void *arg, const char *msg);
    void *log_arg;
    int lock_fd;

    struct seg **segs; /* oldest first */
    size_t nsegs, segs_cap;
    size_t read_idx; /* first segment that may still have unread records */
    uint64_t next_seq;
    uint64_t total_bytes; /* durable bytes of all segments */
    _Atomic uint64_t bytes_view;

    uint8_t *wbuf; /* encoded records awaiting commit (for the last segment) */
    size_t wbuf_len, wbuf_cap;
    size_t uncommitted;

    uint8_t *rbuf; /* read window of one segment */
    size_t rbuf_cap, rbuf_len;
    uint64_t rbuf_seq, rbuf_off; /* which segment and offset rbuf[0] is */
    gw_spool_header rheaders[GW_SPOOL_MAX_HEADERS];

    uint64_t unacked;
    uint64_t skipped;
};

/* ---- CRC-32C ---- */

static uint32_t crc_table[256];
static _Atomic int crc_ready;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? 0x82F63B78u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
    atomic_store(&crc_ready, 1);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t n)
{
    uint64_t c64 = c;
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c64 = __builtin_ia32_crc32di(c64, v);
        p += 8;
        n -= 8;
    }
    c = (uint32_t)c64;
    while (n--)
        c = __builtin_ia32_crc32qi(c, *p++);
    return c;
}
#define HAVE_CRC_HW 1
#endif

uint32_t gw_spool_crc32c(uint32_t crc, const void *data, size_t n)
{
    const uint8_t *p = data;
    uint32_t c = ~crc;
#ifdef HAVE_CRC_HW
    static int hw = -1;
    if (hw < 0)
        hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
    if (hw)
        return ~crc_hw(c, p, n);
#endif
    if (!atomic_load_explicit(&crc_ready, memory_order_acquire))
        crc_init(); /* idempotent: racing threads compute the same table */
    while (n--)
        c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return ~c;
}

/* ---- codec ---- */

static uint8_t *put16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    return p + 2;
}

static uint8_t *put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
    return p + 4;
}

static uint8_t *put64(uint8_t *p, uint64_t v)
{
    p = put32(p, (uint32_t)v);
    return put32(p, (uint32_t)(v >> 32));
}

static uint8_t *put_bytes(uint8_t *p, const void *src, size_t n)
{
    if (n)
        memcpy(p, src, n);
    return p + n;
}

static uint32_t get16(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

size_t gw_spool_encoded_size(const gw_spool_record *rec)
{
    if (rec->topic_len > 0xffff || rec->header_count > GW_SPOOL_MAX_HEADERS ||
        (rec->key && rec->key_len >= GW_SPOOL_NO_KEY) || rec->value_len > GW_SPOOL_RECORD_MAX)
        return 0;
    uint64_t n = SPOOL_MIN_PAYLOAD + (uint64_t)rec->topic_len + rec->value_len;
    if (rec->key)
        n += rec->key_len;
    for (size_t i = 0; i < rec->header_count; i++) {
        const gw_spool_header *h = &rec->headers[i];
        if (h->name_len > 0xffff || h->value_len > GW_SPOOL_RECORD_MAX)
            return 0;
        n += 2 + 4 + (uint64_t)h->name_len + h->value_len;
    }
    if (n > GW_SPOOL_RECORD_MAX)
        return 0;
    return (size_t)n + GW_SPOOL_FRAME_BYTES;
}

size_t gw_spool_encode(const gw_spool_record *rec, uint8_t *out, size_t cap)
{
    size_t total = gw_spool_encoded_size(rec);
    if (!total || total > cap)
        return 0;
    uint8_t *p = out + GW_SPOOL_FRAME_BYTES;
    *p++ = SPOOL_VERSION;
    *p++ = rec->flags;
    p = put32(p, (uint32_t)rec->partition);
    p = put64(p, (uint64_t)rec->timestamp_ms);
    p = put16(p, (uint32_t)rec->topic_len);
    p = put_bytes(p, rec->topic, rec->topic_len);
    if (rec->key) {
        p = put32(p, (uint32_t)rec->key_len);
        p = put_bytes(p, rec->key, rec->key_len);
    } else {
        p = put32(p, GW_SPOOL_NO_KEY);
    }
    p = put16(p, (uint32_t)rec->header_count);
    for (size_t i = 0; i < rec->header_count; i++) {
        const gw_spool_header *h = &rec->headers[i];
        p = put16(p, (uint32_t)h->name_len);
        p = put_bytes(p, h->name, h->name_len);
        p = put32(p, (uint32_t)h->value_len);
        p = put_bytes(p, h->value, h->value_len);
    }
    p = put32(p, (uint32_t)rec->value_len);
    p = put_bytes(p, rec->value, rec->value_len);
    size_t plen = (size_t)(p - out) - GW_SPOOL_FRAME_BYTES;
    put32(out, (uint32_t)plen);
    put32(out + 4, gw_spool_crc32c(0, out + GW_SPOOL_FRAME_BYTES, plen));
    return total;
}

/* Bounds-checked reader over one payload. */
struct rd {
    const uint8_t *p, *end;
};

static int rd_take(struct rd *r, size_t n, const uint8_t **out)
{
    if ((size_t)(r->end - r->p) < n)
        return -1;
    *out = r->p;
    r->p += n;
    return 0;
}

long gw_spool_decode(const uint8_t *buf, size_t len, gw_spool_record *out, gw_spool_header *headers,
                     size_t *need)
{
    *need = 0;
    if (len < GW_SPOOL_FRAME_BYTES)
        return ITR_ERR_PARTIAL;
    uint32_t plen = get32(buf);
    uint32_t crc = get32(buf + 4);
    if (plen < SPOOL_MIN_PAYLOAD || plen > GW_SPOOL_RECORD_MAX)
        return ITR_ERR_PROTO; /* a length we cannot trust: no skipping past it */
    size_t total = GW_SPOOL_FRAME_BYTES + (size_t)plen;
    *need = total;
    if (len < total)
        return ITR_ERR_PARTIAL;
    const uint8_t *pl = buf + GW_SPOOL_FRAME_BYTES;
    if (gw_spool_crc32c(0, pl, plen) != crc)
        return ITR_ERR_PROTO;

    struct rd r = {pl, pl + plen};
    const uint8_t *f;
    memset(out, 0, sizeof(*out));
    if (rd_take(&r, 1 + 1 + 4 + 8 + 2, &f) || f[0] != SPOOL_VERSION)
        return ITR_ERR_PROTO;
    out->flags = f[1];
    out->partition = (int32_t)get32(f + 2);
    out->timestamp_ms = (int64_t)get64(f + 6);
    out->topic_len = get16(f + 14);
    if (rd_take(&r, out->topic_len, &f))
        return ITR_ERR_PROTO;
    out->topic = (const char *)f;
    if (rd_take(&r, 4, &f))
        return ITR_ERR_PROTO;
    uint32_t klen = get32(f);
    if (klen != GW_SPOOL_NO_KEY) {
        if (rd_take(&r, klen, &f))
            return ITR_ERR_PROTO;
        out->key = f;
        out->key_len = klen;
    }
    if (rd_take(&r, 2, &f))
        return ITR_ERR_PROTO;
    size_t nh = get16(f);
    if (nh > GW_SPOOL_MAX_HEADERS)
        return ITR_ERR_PROTO;
    for (size_t i = 0; i < nh; i++) {
        if (rd_take(&r, 2, &f))
            return ITR_ERR_PROTO;
        headers[i].name_len = get16(f);
        if (rd_take(&r, headers[i].name_len, &f))
            return ITR_ERR_PROTO;
        headers[i].name = (const char *)f;
        if (rd_take(&r, 4, &f))
            return ITR_ERR_PROTO;
        headers[i].value_len = get32(f);
        if (rd_take(&r, headers[i].value_len, &f))
            return ITR_ERR_PROTO;
        headers[i].value = f;
    }
    out->headers = nh ? headers : NULL;
    out->header_count = nh;
    if (rd_take(&r, 4, &f))
        return ITR_ERR_PROTO;
    out->value_len = get32(f);
    if (rd_take(&r, out->value_len, &f))
        return ITR_ERR_PROTO;
    out->value = f;
    if (r.p != r.end)
        return ITR_ERR_PROTO; /* trailing bytes: not a record we wrote */
    return (long)total;
}

/* ---- files ---- */

static void spool_log(gw_spool *sp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void spool_log(gw_spool *sp, const char *fmt, ...)
{
    if (!sp->log)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    sp->log(sp->log_arg, msg);
}

static void seg_path(const gw_spool *sp, uint64_t seq, char *out, size_t cap)
{
    snprintf(out, cap, "%s/" SPOOL_NAME_FMT, sp->dir, seq);
}

static int fsync_dir(const char *dir)
{
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    int rc = fsync(dfd);
    int e = errno;
    close(dfd);
    errno = e;
    return rc;
}

static int mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    size_t n = strlen(path);
    if (n >= sizeof(tmp))
        return -1;
    memcpy(tmp, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (tmp[i] != '/' && tmp[i] != 0)
            continue;
        char saved = tmp[i];
        tmp[i] = 0;
        if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
            return -1;
        tmp[i] = saved;
    }
    return 0;
}

static void update_bytes(gw_spool *sp)
{
    atomic_store_explicit(&sp->bytes_view, sp->total_bytes, memory_order_relaxed);
}

static void seg_free(struct seg *s)
{
    if (!s)
        return;
    if (s->fd >= 0)
        close(s->fd);
    free(s);
}

static int segs_push(gw_spool *sp, struct seg *s)
{
    if (sp->nsegs == sp->segs_cap) {
        size_t cap = sp->segs_cap ? sp->segs_cap * 2 : 16;
        struct seg **n = realloc(sp->segs, cap * sizeof(*n));
        if (!n)
            return -1;
        sp->segs = n;
        sp->segs_cap = cap;
    }
    sp->segs[sp->nsegs++] = s;
    return 0;
}

static struct seg *active_seg(const gw_spool *sp)
{
    if (!sp->nsegs || sp->segs[sp->nsegs - 1]->sealed)
        return NULL;
    return sp->segs[sp->nsegs - 1];
}

static uint64_t seg_unread_limit(const struct seg *s)
{
    return s->size;
}

/* Delete segment i if nothing in it is still needed. Returns 1 if deleted. */
static int seg_try_delete(gw_spool *sp, size_t i)
{
    struct seg *s = sp->segs[i];
    if (s->read_off < s->size || s->acked_n < s->read_n)
        return 0;
    if (!s->sealed) {
        /* The active segment, fully delivered: retire it so a restart does not replay it;
         * the next append starts a new one. Only between commits. */
        if (sp->wbuf_len || s->size <= SPOOL_MAGIC_LEN)
            return 0;
        s->sealed = 1;
    }
    char path[PATH_MAX + 64];
    seg_path(sp, s->seq, path, sizeof(path));
    if (unlink(path) < 0 && errno != ENOENT) {
        spool_log(sp, "spool: cannot delete delivered segment %s: %s", path, strerror(errno));
        return 0;
    }
    sp->total_bytes -= s->size;
    update_bytes(sp);
    seg_free(s);
    memmove(sp->segs + i, sp->segs + i + 1, (sp->nsegs - i - 1) * sizeof(*sp->segs));
    sp->nsegs--;
    if (sp->read_idx > i)
        sp->read_idx--;
    /* Losing the unlink in a crash only replays delivered records again: no fsync here. */
    return 1;
}

static int seq_cmp(const void *a, const void *b)
{
    uint64_t x = (*(struct seg *const *)a)->seq, y = (*(struct seg *const *)b)->seq;
    return x < y ? -1 : x > y;
}

/* Index the segments an earlier process left. */
static int spool_scan(gw_spool *sp, char *err, size_t errlen)
{
    DIR *dh = opendir(sp->dir);
    if (!dh) {
        snprintf(err, errlen, "open spool directory %s: %s", sp->dir, strerror(errno));
        return ITR_ERR_IO;
    }
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(dh))) {
        uint64_t seq;
        int used = 0;
        if (sscanf(de->d_name, "spool-%20" SCNu64 ".seg%n", &seq, &used) != 1 ||
            (size_t)used != strlen(de->d_name) || strlen(de->d_name) != 30)
            continue;
        char path[PATH_MAX + 64];
        seg_path(sp, seq, path, sizeof(path));
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0) {
            snprintf(err, errlen, "open spool segment %s: %s", path, strerror(errno));
            if (fd >= 0)
                close(fd);
            rc = ITR_ERR_IO;
            break;
        }
        char magic[SPOOL_MAGIC_LEN];
        if (st.st_size < SPOOL_MAGIC_LEN) {
            /* Created, never committed (a crash before the first fdatasync): nothing in it. */
            close(fd);
            unlink(path);
            continue;
        }
        if (pread(fd, magic, sizeof(magic), 0) != (ssize_t)sizeof(magic) ||
            memcmp(magic, SPOOL_MAGIC, SPOOL_MAGIC_LEN)) {
            spool_log(sp, "spool: %s is not a spool segment (bad magic): left alone", path);
            close(fd);
            continue;
        }
        struct seg *s = calloc(1, sizeof(*s));
        if (!s || segs_push(sp, s)) {
            free(s);
            close(fd);
            snprintf(err, errlen, "out of memory");
            rc = ITR_ERR_NOMEM;
            break;
        }
        s->seq = seq;
        s->fd = fd;
        s->size = (uint64_t)st.st_size;
        s->read_off = SPOOL_MAGIC_LEN;
        s->sealed = 1;
        s->dir_synced = 1;
        sp->total_bytes += s->size;
        if (seq >= sp->next_seq)
            sp->next_seq = seq + 1;
    }
    closedir(dh);
    if (!rc && sp->nsegs)
        qsort(sp->segs, sp->nsegs, sizeof(*sp->segs), seq_cmp);
    update_bytes(sp);
    return rc;
}

int gw_spool_open(gw_spool **out, const gw_spool_options *o, char *err, size_t errlen)
{
    *out = NULL;
    if (!o->dir || !o->dir[0] || strlen(o->dir) >= PATH_MAX - 64 || !o->max_bytes ||
        !o->segment_bytes) {
        snprintf(err, errlen, "spool: bad options");
        return ITR_ERR_INVALID;
    }
    gw_spool *sp = calloc(1, sizeof(*sp));
    if (!sp) {
        snprintf(err, errlen, "out of memory");
        return ITR_ERR_NOMEM;
    }
    int rc;
    snprintf(sp->dir, sizeof(sp->dir), "%s", o->dir);
    sp->max_bytes = o->max_bytes;
    sp->segment_bytes = o->segment_bytes;
    sp->log = o->log;
    sp->log_arg = o->log_arg;
    sp->lock_fd = -1;
    sp->next_seq = 1;
    sp->wbuf_cap = SPOOL_WBUF_BYTES;
    sp->rbuf_cap = SPOOL_RBUF_BYTES;
    sp->wbuf = malloc(sp->wbuf_cap);
    sp->rbuf = malloc(sp->rbuf_cap);
    if (!sp->wbuf || !sp->rbuf) {
        snprintf(err, errlen, "out of memory");
        rc = ITR_ERR_NOMEM;
        goto out;
    }
    if (mkdir_p(sp->dir) < 0) {
        snprintf(err, errlen, "create spool directory %s: %s", sp->dir, strerror(errno));
        rc = ITR_ERR_IO;
        goto out;
    }
    /* Two processes replaying and deleting the same segments would lose records. */
    char lock_path[PATH_MAX + 16];
    snprintf(lock_path, sizeof(lock_path), "%s/LOCK", sp->dir);
    sp->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (sp->lock_fd < 0) {
        snprintf(err, errlen, "open %s: %s", lock_path, strerror(errno));
        rc = ITR_ERR_IO;
        goto out;
    }
    if (flock(sp->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        int busy = errno == EWOULDBLOCK;
        snprintf(err, errlen, "spool directory %s is in use by another process or sink (%s)",
                 sp->dir, strerror(errno));
        rc = busy ? ITR_ERR_WOULDBLOCK : ITR_ERR_IO;
        goto out;
    }
    rc = spool_scan(sp, err, errlen);
out:
    if (rc) {
        gw_spool_close(sp);
        return rc;
    }
    *out = sp;
    return 0;
}

void gw_spool_close(gw_spool *sp)
{
    if (!sp)
        return;
    for (size_t i = 0; i < sp->nsegs; i++)
        seg_free(sp->segs[i]);
    free(sp->segs);
    if (sp->lock_fd >= 0)
        close(sp->lock_fd); /* releases the flock */
    free(sp->wbuf);
    free(sp->rbuf);
    free(sp);
}

/* ---- appending ---- */

static int seg_start(gw_spool *sp)
{
    struct seg *s = calloc(1, sizeof(*s));
    if (!s)
        return ITR_ERR_NOMEM;
    s->seq = sp->next_seq++;
    char path[PATH_MAX + 64];
    seg_path(sp, s->seq, path, sizeof(path));
    s->fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (s->fd < 0) {
        int e = errno;
        free(s);
        errno = e;
        return ITR_ERR_IO;
    }
    s->read_off = SPOOL_MAGIC_LEN;
    if (segs_push(sp, s)) {
        close(s->fd);
        unlink(path);
        free(s);
        return ITR_ERR_NOMEM;
    }
    return 0;
}

int gw_spool_append(gw_spool *sp, const gw_spool_record *rec)
{
    size_t n = gw_spool_encoded_size(rec);
    if (!n)
        return ITR_ERR_TOO_BIG;
    struct seg *a = active_seg(sp);
    if (!sp->wbuf_len && a && a->size >= sp->segment_bytes) {
        a->sealed = 1; /* full: the next records go to a new segment */
        seg_try_delete(sp, sp->nsegs - 1);
        a = NULL;
    }
    uint64_t extra = (uint64_t)n + (a ? 0 : SPOOL_MAGIC_LEN);
    if (sp->total_bytes + sp->wbuf_len + extra > sp->max_bytes)
        return ITR_ERR_WOULDBLOCK;
    if (sp->wbuf_len + extra > sp->wbuf_cap) {
        size_t cap = sp->wbuf_cap;
        while (cap < sp->wbuf_len + extra)
            cap *= 2;
        uint8_t *nb = realloc(sp->wbuf, cap);
        if (!nb)
            return ITR_ERR_NOMEM;
        sp->wbuf = nb;
        sp->wbuf_cap = cap;
    }
    if (!a) {
        int rc = seg_start(sp);
        if (rc)
            return rc;
        a = active_seg(sp);
        if (!a)
            return ITR_ERR_IO; /* seg_start succeeded, so this cannot happen */
    }
    if (a->size == 0 && sp->wbuf_len == 0) {
        memcpy(sp->wbuf, SPOOL_MAGIC, SPOOL_MAGIC_LEN);
        sp->wbuf_len = SPOOL_MAGIC_LEN;
    }
    gw_spool_encode(rec, sp->wbuf + sp->wbuf_len, n);
    sp->wbuf_len += n;
    sp->uncommitted++;
    return 0;
}

size_t gw_spool_uncommitted(const gw_spool *sp)
{
    return sp->uncommitted;
}

int gw_spool_commit(gw_spool *sp)
{
    struct seg *a = active_seg(sp);
    if (!sp->wbuf_len || !a)
        return 0;
    size_t done = 0;
    int e = 0;
    while (done < sp->wbuf_len) {
        ssize_t w = pwrite(a->fd, sp->wbuf + done, sp->wbuf_len - done, (off_t)(a->size + done));
        if (w < 0) {
            if (errno == EINTR)
                continue;
            e = errno;
            break;
        }
        if (w == 0) {
            e = EIO;
            break;
        }
        done += (size_t)w;
    }
    if (!e && fdatasync(a->fd) < 0)
        e = errno;
    if (!e && !a->dir_synced) {
        if (fsync_dir(sp->dir) < 0)
            e = errno;
        else
            a->dir_synced = 1;
    }
    if (e) {
        /* After a failed write or fdatasync nothing past the last durable size can be
         * trusted: cut it off (best effort; reads never look past a->size anyway). */
        if (ftruncate(a->fd, (off_t)a->size) < 0) {
            /* The bytes stay beyond a->size; the next commit overwrites them. */
        }
        sp->wbuf_len = 0;
        sp->uncommitted = 0;
        errno = e;
        return ITR_ERR_IO;
    }
    a->size += sp->wbuf_len;
    sp->total_bytes += sp->wbuf_len;
    update_bytes(sp);
    sp->wbuf_len = 0;
    sp->uncommitted = 0;
    return 0;
}

/* ---- replay ---- */

/* Make rbuf hold [off, off + want) of segment s (as far as the durable end allows).
 * Returns the bytes available from off, or -1 (errno). */
static long rbuf_fill(gw_spool *sp, struct seg *s, uint64_t off, size_t want)
{
    uint64_t limit = seg_unread_limit(s);
    if (sp->rbuf_seq == s->seq && off >= sp->rbuf_off && off <= sp->rbuf_off + sp->rbuf_len) {
        size_t have = (size_t)(sp->rbuf_off + sp->rbuf_len - off);
        if (have >= want || off + have >= limit)
            return (long)have;
    }
    if (want > sp->rbuf_cap) {
        uint8_t *nb = realloc(sp->rbuf, want);
        if (!nb) {
            errno = ENOMEM;
            return -1;
        }
        sp->rbuf = nb;
        sp->rbuf_cap = want;
    }
    size_t len = sp->rbuf_cap;
    if (off + len > limit)
        len = (size_t)(limit - off);
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(s->fd, sp->rbuf + got, len - got, (off_t)(off + got));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            sp->rbuf_seq = 0;
            sp->rbuf_len = 0;
            return -1;
        }
        if (r == 0)
            break; /* shorter than indexed: treated as a torn tail by the caller */
        got += (size_t)r;
    }
    sp->rbuf_seq = s->seq;
    sp->rbuf_off = off;
    sp->rbuf_len = got;
    return (long)got;
}

static void seg_problem(gw_spool *sp, struct seg *s, const char *what, uint64_t off)
{
    sp->skipped++;
    if (s->problem_logged)
        return;
    s->problem_logged = 1;
    char path[PATH_MAX + 64];
    seg_path(sp, s->seq, path, sizeof(path));
    spool_log(sp, "spool: %s: %s at offset %" PRIu64 " skipped", path, what, off);
}

int gw_spool_next(gw_spool *sp, gw_spool_record *rec, uint64_t *id)
{
    while (sp->read_idx < sp->nsegs) {
        size_t idx = sp->read_idx;
        struct seg *s = sp->segs[idx];
        uint64_t limit = seg_unread_limit(s);
        if (s->read_off >= limit) {
            if (!s->sealed)
                return ITR_ERR_WOULDBLOCK; /* the active segment: nothing durable unread */
            sp->read_idx++;
            seg_try_delete(sp, idx);
            continue;
        }
        long have = rbuf_fill(sp, s, s->read_off, GW_SPOOL_FRAME_BYTES);
        if (have < 0)
            return errno == ENOMEM ? ITR_ERR_NOMEM : ITR_ERR_IO;
        size_t need = 0;
        long used = gw_spool_decode(sp->rbuf + (s->read_off - sp->rbuf_off), (size_t)have, rec,
                                    sp->rheaders, &need);
        if (used == ITR_ERR_PARTIAL && need && s->read_off + need <= limit) {
            have = rbuf_fill(sp, s, s->read_off, need);
            if (have < 0)
                return errno == ENOMEM ? ITR_ERR_NOMEM : ITR_ERR_IO;
            used = gw_spool_decode(sp->rbuf + (s->read_off - sp->rbuf_off), (size_t)have, rec,
                                   sp->rheaders, &need);
        }
        if (used > 0) {
            *id = s->seq << 32 | (s->read_off & 0xffffffffu);
            s->read_off += (uint64_t)used;
            s->read_n++;
            sp->unacked++;
            return 0;
        }
        if (used == ITR_ERR_PROTO && need && s->read_off + need <= limit) {
            seg_problem(sp, s, "corrupt record (CRC mismatch)", s->read_off);
            s->read_off += need;
        } else {
            /* Runs past the end (a torn write) or a length that cannot be trusted: nothing
             * after it in this segment can be framed. */
            seg_problem(sp, s, used == ITR_ERR_PARTIAL ? "torn record" : "corrupt record",
                        s->read_off);
            s->read_off = limit;
        }
    }
    return ITR_ERR_WOULDBLOCK;
}

int gw_spool_has_unread(const gw_spool *sp)
{
    for (size_t i = sp->read_idx; i < sp->nsegs; i++) {
        if (sp->segs[i]->read_off < seg_unread_limit(sp->segs[i]))
            return 1;
    }
    return 0;
}

int gw_spool_ack(gw_spool *sp, uint64_t id)
{
    uint64_t seq = id >> 32;
    for (size_t i = 0; i < sp->nsegs; i++) {
        struct seg *s = sp->segs[i];
        if (s->seq != seq)
            continue;
        if (s->acked_n >= s->read_n)
            return ITR_ERR_NOT_FOUND;
        s->acked_n++;
        sp->unacked--;
        /* This segment, and older fully delivered ones whose deletion failed before. */
        size_t upto = i, j = 0;
        while (j <= upto && j < sp->nsegs) {
            if (!seg_try_delete(sp, j))
                j++;
            else if (upto-- == 0)
                break;
        }
        return 0;
    }
    return ITR_ERR_NOT_FOUND;
}

uint64_t gw_spool_unacked(const gw_spool *sp)
{
    return sp->unacked;
}

uint64_t gw_spool_bytes(const gw_spool *sp)
{
    return atomic_load_explicit(&sp->bytes_view, memory_order_relaxed);
}

uint64_t gw_spool_skipped(const gw_spool *sp)
{
    return sp->skipped;
}
