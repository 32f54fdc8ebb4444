/* file_sink.c: the "file" connector, the embedded default sink: one JSON object per line,
 * batches written with writev, durability by fsync policy, size-based rotation, and failure
 * handling that never completes a Reliable delivery before its line is on disk.
 *
 * Everything runs on the sink thread. Deliveries taken by submit wait in `pend` until the
 * batch_ready timer (zero delay: every submit of one loop iteration joins the same batch,
 * which is what makes fsync per batch affordable). A failed write or fsync truncates the file
 * back to the last line known complete, counts env->error, turns the state DOWN and retries
 * the same deliveries with backoff; the state is UP again once a write succeeds.
 */
#define _GNU_SOURCE /* renameat2, RENAME_NOREPLACE */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "connector.h"
#include "file_format.h"
#include "log.h"

#define FILE_PEND_CAP     8192u      /* deliveries taken, not yet written */
#define FILE_WAIT_CAP     65536u     /* interval policy: Reliable written, awaiting fsync */
#define FILE_BUF_BYTES    (1u << 20) /* formatting buffer per writev chunk */
#define FILE_IOV_CAP      512        /* <= IOV_MAX */
#define FILE_DIRECT_MIN   256        /* bodies at least this long are written from the message */
#define FILE_RETRY_MIN_NS (100ull * 1000 * 1000)
#define FILE_RETRY_MAX_NS (10ull * 1000 * 1000 * 1000)
#define FILE_MAX_INTERVAL 3600000
#define FILE_MAX_FILES    100000
#define FILE_PATH_MAX     (PATH_MAX - 64) /* room for ".<timestamp>.<n>" */

enum file_fsync { FSYNC_BATCH = 0, FSYNC_INTERVAL, FSYNC_NEVER };

struct file_conf {
    char path[PATH_MAX];
    enum file_fsync fsync;
    uint64_t fsync_interval_ms;
    uint64_t rotate_bytes; /* 0: never */
    uint64_t max_files;    /* 0: keep all */
    enum file_payload payload;
    mode_t dir_mode, file_mode;
};

struct gw_sink {
    gw_sink_env *env;
    struct file_conf c;
    int fd;          /* -1 while the file could not be (re)opened */
    int need_reopen; /* rotation renamed the file but opening the new one failed */
    int cut_pending; /* a truncation after a failure itself failed: redo it before writing */
    uint64_t cut_to;
    uint64_t written_size; /* file size after the last successful write: a line boundary */
    uint64_t synced_size;  /* file size covered by the last successful fsync */

    gw_delivery **pend; /* FIFO of deliveries to write, FILE_PEND_CAP */
    size_t pend_n;
    gw_delivery **wait; /* interval policy: Reliable lines written, not yet fsynced */
    size_t wait_n;
    int rewrite_wait; /* an fsync failed: wait's lines were truncated away, write them again */

    int failing;           /* last write/fsync/rotate failed: retry_due is armed */
    uint64_t backoff_ns;   /* current retry delay */
    int refused;           /* submit refused some: env->ready() once pend has room */
    uint64_t rng;          /* jitter */
    itr_timer batch_ready; /* deliveries are waiting in pend */
    itr_timer sync_due;    /* interval policy: the next fsync */
    itr_timer retry_due;   /* after a failure */

    /* formatting scratch for one writev chunk */
    char *buf;
    size_t buf_cap, buf_len;
    struct iovec iov[FILE_IOV_CAP];
    int iov_n;
    int iov_last_buf; /* iov[iov_n-1] points into buf (so it can be extended) */
    struct file_ts_cache ts_cache;

    _Atomic int state;          /* gw_sink_state, read by status() on any thread */
    _Atomic uint64_t in_flight; /* pend_n + wait_n, for status() */
};

/* ---- configuration ---- */

static int conf_fail_got(char *err, size_t errlen, const char *where, const char *key,
                         const char *expected, const cJSON *got)
{
    char *txt = cJSON_PrintUnformatted(got);
    snprintf(err, errlen, "%s.%s: expected %s, got %s", where, key, expected, txt ? txt : "?");
    cJSON_free(txt);
    return -1;
}

static int conf_uint(const cJSON *it, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!cJSON_IsNumber(it))
        return -1;
    double v = it->valuedouble;
    if (v < (double)min || v > (double)max || v != (double)(uint64_t)v)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

/* "0750" style: 3 or 4 octal digits, owner bits `need` required. */
static int conf_mode(const cJSON *it, mode_t need, mode_t *out)
{
    if (!cJSON_IsString(it))
        return -1;
    const char *s = it->valuestring;
    size_t n = strlen(s);
    if (n < 3 || n > 4)
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '7')
            return -1;
        v = v * 8 + (unsigned)(s[i] - '0');
    }
    if (v > 0777 || (v & need) != need)
        return -1;
    *out = (mode_t)v;
    return 0;
}

static int file_parse(const cJSON *conf, const char *where, struct file_conf *fc, char *err,
                      size_t errlen)
{
    static const char known[] = "path, fsync, fsync_interval_ms, rotate_bytes, max_files, "
                                "payload, dir_mode, file_mode";
    memset(fc, 0, sizeof(*fc));
    fc->fsync = FSYNC_BATCH;
    fc->fsync_interval_ms = 1000;
    fc->rotate_bytes = 104857600;
    fc->payload = FILE_PAYLOAD_AUTO;
    fc->dir_mode = 0750;
    fc->file_mode = 0640;
    int have_path = 0;
    if (!cJSON_IsObject(conf)) {
        snprintf(err, errlen, "%s: expected an object", where);
        return -1;
    }
    for (const cJSON *it = conf->child; it; it = it->next) {
        const char *k = it->string;
        if (!strcmp(k, "type") || !strcmp(k, "required") || !strcmp(k, "max_inflight_bytes") ||
            !strcmp(k, "queue_messages"))
            continue; /* the runtime's keys */
        if (!strcmp(k, "path")) {
            if (!cJSON_IsString(it) || !it->valuestring[0] ||
                strlen(it->valuestring) >= FILE_PATH_MAX)
                return conf_fail_got(err, errlen, where, k, "a non-empty file path", it);
            size_t n = strlen(it->valuestring);
            if (it->valuestring[n - 1] == '/')
                return conf_fail_got(err, errlen, where, k, "a file path, not a directory", it);
            memcpy(fc->path, it->valuestring, n + 1);
            have_path = 1;
        } else if (!strcmp(k, "fsync")) {
            const char *v = cJSON_IsString(it) ? it->valuestring : "";
            if (!strcmp(v, "batch"))
                fc->fsync = FSYNC_BATCH;
            else if (!strcmp(v, "interval"))
                fc->fsync = FSYNC_INTERVAL;
            else if (!strcmp(v, "never"))
                fc->fsync = FSYNC_NEVER;
            else
                return conf_fail_got(err, errlen, where, k, "\"batch\", \"interval\" or \"never\"",
                                     it);
        } else if (!strcmp(k, "fsync_interval_ms")) {
            if (conf_uint(it, 1, FILE_MAX_INTERVAL, &fc->fsync_interval_ms))
                return conf_fail_got(err, errlen, where, k, "an integer 1..3600000", it);
        } else if (!strcmp(k, "rotate_bytes")) {
            if (conf_uint(it, 0, (1ull << 53), &fc->rotate_bytes))
                return conf_fail_got(err, errlen, where, k, "an integer >= 0 (0: never rotate)",
                                     it);
        } else if (!strcmp(k, "max_files")) {
            if (conf_uint(it, 0, FILE_MAX_FILES, &fc->max_files))
                return conf_fail_got(err, errlen, where, k, "an integer 0..100000 (0: keep all)",
                                     it);
        } else if (!strcmp(k, "payload")) {
            const char *v = cJSON_IsString(it) ? it->valuestring : "";
            if (!strcmp(v, "auto"))
                fc->payload = FILE_PAYLOAD_AUTO;
            else if (!strcmp(v, "utf8"))
                fc->payload = FILE_PAYLOAD_UTF8;
            else if (!strcmp(v, "base64"))
                fc->payload = FILE_PAYLOAD_BASE64;
            else
                return conf_fail_got(err, errlen, where, k, "\"auto\", \"utf8\" or \"base64\"", it);
        } else if (!strcmp(k, "dir_mode")) {
            if (conf_mode(it, 0700, &fc->dir_mode))
                return conf_fail_got(err, errlen, where, k,
                                     "an octal mode string \"0700\"..\"0777\" with owner rwx", it);
        } else if (!strcmp(k, "file_mode")) {
            if (conf_mode(it, 0600, &fc->file_mode))
                return conf_fail_got(err, errlen, where, k,
                                     "an octal mode string \"0600\"..\"0777\" with owner rw", it);
        } else {
            snprintf(err, errlen, "%s.%s: unknown key (expected one of: %s)", where, k, known);
            return -1;
        }
    }
    if (!have_path) {
        snprintf(err, errlen, "%s.path: missing (expected a file path string)", where);
        return -1;
    }
    return 0;
}

static int file_validate(const cJSON *conf, const char *where, char *err, size_t errlen)
{
    struct file_conf fc;
    return file_parse(conf, where, &fc, err, errlen);
}

/* ---- file system helpers ---- */

static void path_dir(const char *path, char *dir, size_t cap)
{
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, cap, ".");
    } else if (slash == path) {
        snprintf(dir, cap, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= cap)
            n = cap - 1;
        memcpy(dir, path, n);
        dir[n] = 0;
    }
}

/* mkdir -p of path's directory. Returns 0 or -errno. */
static int make_parents(const char *path, mode_t mode)
{
    char dir[PATH_MAX];
    path_dir(path, dir, sizeof(dir));
    size_t n = strlen(dir);
    for (size_t i = 1; i <= n; i++) {
        if (dir[i] != '/' && dir[i] != 0)
            continue;
        char saved = dir[i];
        dir[i] = 0;
        if (mkdir(dir, mode) < 0 && errno != EEXIST) {
            int e = errno;
            dir[i] = saved;
            return -e;
        }
        dir[i] = saved;
    }
    return 0;
}

/* A new or renamed directory entry is durable only once the directory is fsynced. */
static int fsync_dir(const char *path)
{
    char dir[PATH_MAX];
    path_dir(path, dir, sizeof(dir));
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -errno;
    int rc = 0;
    if (fsync(dfd) < 0 && errno != EINVAL)
        rc = -errno;
    close(dfd);
    return rc;
}

/* Cut a partial last line (left by a crash or a failed write) so the file is whole lines.
 * Returns the resulting size, or -errno. */
static int64_t trim_partial_line(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    off_t end = st.st_size;
    char chunk[4096];
    while (end > 0) {
        off_t start = end > (off_t)sizeof(chunk) ? end - (off_t)sizeof(chunk) : 0;
        ssize_t r = pread(fd, chunk, (size_t)(end - start), start);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r != end - start)
            return -EIO;
        for (ssize_t i = r - 1; i >= 0; i--) {
            if (chunk[i] == '\n') {
                off_t keep = start + i + 1;
                if (keep != st.st_size && ftruncate(fd, keep) < 0)
                    return -errno;
                return (int64_t)keep;
            }
        }
        end = start;
    }
    if (st.st_size > 0 && ftruncate(fd, 0) < 0)
        return -errno;
    return 0;
}

/* Open (creating) the output file and trim a partial last line. Returns 0 or -errno and
 * names the step in *what. */
static int file_open_output(gw_sink *s, const char **what)
{
    *what = "create the directory of";
    int rc = make_parents(s->c.path, s->c.dir_mode);
    if (rc)
        return rc;
    struct stat st;
    int existed = stat(s->c.path, &st) == 0;
    *what = "open";
    int fd = open(s->c.path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, s->c.file_mode);
    if (fd < 0)
        return -errno;
    *what = "trim";
    int64_t size = trim_partial_line(fd);
    if (size < 0) {
        close(fd);
        return (int)size;
    }
    if (!existed) {
        *what = "fsync directory";
        rc = fsync_dir(s->c.path);
        if (rc) {
            close(fd);
            return rc;
        }
    }
    if (s->fd >= 0)
        close(s->fd);
    s->fd = fd;
    s->written_size = s->synced_size = (uint64_t)size;
    s->need_reopen = 0;
    s->cut_pending = 0;
    return 0;
}

/* ---- completion and failure bookkeeping ---- */

static void update_in_flight(gw_sink *s)
{
    atomic_store_explicit(&s->in_flight, (uint64_t)(s->pend_n + s->wait_n), memory_order_relaxed);
}

static void complete_list(gw_sink *s, gw_delivery **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        s->env->complete(s->env, list[i], GW_DURABLE, NULL);
}

static uint64_t jitter(gw_sink *s, uint64_t ns)
{
    /* xorshift64: +-20% so a fleet of gateways on one failed disk does not retry in step */
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    uint64_t span = ns / 5;
    return ns - span + (span ? s->rng % (2 * span + 1) : 0);
}

static void file_failed(gw_sink *s, const char *stage, int err, const char *detail)
{
    s->env->error(s->env, stage, "%s %s: %s", detail, s->c.path, strerror(err));
    s->backoff_ns = s->failing ? s->backoff_ns * 2 : FILE_RETRY_MIN_NS;
    if (s->backoff_ns > FILE_RETRY_MAX_NS)
        s->backoff_ns = FILE_RETRY_MAX_NS;
    s->failing = 1;
    atomic_store_explicit(&s->state, GW_SINK_DOWN, memory_order_relaxed);
    itr_loop_timer_set(s->env->loop, &s->retry_due, itr_now_ns() + jitter(s, s->backoff_ns));
}

static void file_recovered(gw_sink *s)
{
    if (s->failing) {
        s->failing = 0;
        s->backoff_ns = 0;
        itr_loop_timer_cancel(s->env->loop, &s->retry_due);
        s->env->log(s->env, GW_LOG_INFO, "file %s: writing again", s->c.path);
    }
    atomic_store_explicit(&s->state, GW_SINK_UP, memory_order_relaxed);
}

/* Undo a failed write or fsync: the file goes back to `size`, the last line boundary whose
 * bytes are accounted for. If the truncation fails too, it is redone before the next write
 * (the deliveries are still held, so nothing is acknowledged meanwhile). */
static void truncate_back(gw_sink *s, uint64_t size)
{
    s->written_size = size;
    if (s->synced_size > size)
        s->synced_size = size;
    s->cut_to = size;
    s->cut_pending = s->fd < 0 || ftruncate(s->fd, (off_t)size) < 0;
}

/* ---- writing ---- */

static int chunk_flush(gw_sink *s, uint64_t *bytes)
{
    struct iovec *iov = s->iov;
    int n = s->iov_n;
    while (n > 0) {
        ssize_t r = writev(s->fd, iov, n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -EIO;
        *bytes += (uint64_t)r;
        size_t left = (size_t)r;
        while (n > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    s->iov_n = 0;
    s->buf_len = 0;
    s->iov_last_buf = 0;
    return 0;
}

static void iov_add_buf(gw_sink *s, size_t off, size_t len)
{
    if (s->iov_n && s->iov_last_buf &&
        (char *)s->iov[s->iov_n - 1].iov_base + s->iov[s->iov_n - 1].iov_len == s->buf + off) {
        s->iov[s->iov_n - 1].iov_len += len;
        return;
    }
    s->iov[s->iov_n].iov_base = s->buf + off;
    s->iov[s->iov_n].iov_len = len;
    s->iov_n++;
    s->iov_last_buf = 1;
}

/* Append one delivery's line to the chunk, writing the chunk out first if it is full.
 * Returns 0 or -errno. */
static int chunk_add(gw_sink *s, const gw_delivery *d, uint64_t *bytes)
{
    const gw_msg *m = d->msg;
    size_t need = gw_file_line_max(m, s->c.payload);
    if (s->iov_n + 3 > FILE_IOV_CAP || s->buf_len + need > s->buf_cap) {
        int rc = chunk_flush(s, bytes);
        if (rc)
            return rc;
    }
    if (need > s->buf_cap) {
        /* A line larger than the buffer (huge message): grow once; not on the fast path. */
        char *nb = realloc(s->buf, need);
        if (!nb)
            return -ENOMEM;
        s->buf = nb;
        s->buf_cap = need;
    }
    int direct = 0;
    if (m->body_len >= FILE_DIRECT_MIN && s->c.payload != FILE_PAYLOAD_BASE64)
        direct = gw_file_json_plain(m->body, m->body_len);
    size_t start = s->buf_len;
    if (direct) {
        /* The body needs no escaping: point an iovec at the message instead of copying. */
        size_t head = gw_file_format_head(s->buf + start, m, &s->ts_cache);
        iov_add_buf(s, start, head);
        s->iov[s->iov_n].iov_base = (void *)(uintptr_t)m->body;
        s->iov[s->iov_n].iov_len = m->body_len;
        s->iov_n++;
        s->iov_last_buf = 0;
        size_t tail_off = start + head;
        memcpy(s->buf + tail_off, "\"}\n", 3);
        iov_add_buf(s, tail_off, 3);
        s->buf_len = tail_off + 3;
    } else {
        size_t len = gw_file_format_line(s->buf + start, m, s->c.payload, &s->ts_cache);
        iov_add_buf(s, start, len);
        s->buf_len = start + len;
    }
    return 0;
}

/* Write the lines of list in order, appending to the file. On failure the file is cut back
 * to where it was. Returns 0 or -errno. */
static int write_list(gw_sink *s, gw_delivery **list, size_t n)
{
    uint64_t start = s->written_size, bytes = 0;
    int rc = 0;
    s->iov_n = 0;
    s->buf_len = 0;
    s->iov_last_buf = 0;
    for (size_t i = 0; i < n && !rc; i++)
        rc = chunk_add(s, list[i], &bytes);
    if (!rc)
        rc = chunk_flush(s, &bytes);
    if (rc) {
        s->iov_n = 0;
        s->buf_len = 0;
        truncate_back(s, start);
        return rc;
    }
    s->written_size = start + bytes;
    return 0;
}

/* fsync what was written; interval policy: complete the Reliable ones waiting for it. */
static int sync_now(gw_sink *s)
{
    if (s->written_size == s->synced_size && !s->wait_n)
        return 0;
    if (fdatasync(s->fd) < 0) {
        int e = errno;
        /* After a failed fsync the page cache may have dropped the dirty pages: nothing
         * since the last good fsync can be trusted, so cut it and write it again. */
        truncate_back(s, s->synced_size);
        if (s->wait_n)
            s->rewrite_wait = 1;
        file_failed(s, "fsync", e, "fdatasync");
        return -e;
    }
    s->synced_size = s->written_size;
    size_t n = s->wait_n;
    s->wait_n = 0;
    update_in_flight(s);
    complete_list(s, s->wait, n);
    return 0;
}

struct rotated {
    char name[NAME_MAX + 1];
};

static int rotated_cmp(const void *a, const void *b)
{
    /* "<ts>.<n>": the timestamp part has a fixed width; n compares by length then text */
    const char *x = ((const struct rotated *)a)->name, *y = ((const struct rotated *)b)->name;
    int c = strncmp(x, y, 16);
    if (c)
        return c;
    size_t lx = strlen(x + 17), ly = strlen(y + 17);
    if (lx != ly)
        return lx < ly ? -1 : 1;
    return strcmp(x + 17, y + 17);
}

/* Keep the newest max_files rotated files. */
static void prune_rotated(gw_sink *s)
{
    if (!s->c.max_files)
        return;
    char dir[PATH_MAX];
    path_dir(s->c.path, dir, sizeof(dir));
    const char *slash = strrchr(s->c.path, '/');
    const char *base = slash ? slash + 1 : s->c.path;
    size_t blen = strlen(base);
    DIR *dh = opendir(dir);
    if (!dh) {
        s->env->error(s->env, "rotate", "opendir %s: %s", dir, strerror(errno));
        return;
    }
    struct rotated *list = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(dh))) {
        const char *nm = de->d_name;
        if (strncmp(nm, base, blen) || nm[blen] != '.' || !gw_file_rotated_suffix(nm + blen + 1))
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            struct rotated *nl = realloc(list, ncap * sizeof(*nl));
            if (!nl)
                break;
            list = nl;
            cap = ncap;
        }
        snprintf(list[n].name, sizeof(list[n].name), "%s", nm + blen + 1);
        n++;
    }
    closedir(dh);
    if (n > s->c.max_files) {
        qsort(list, n, sizeof(*list), rotated_cmp);
        for (size_t i = 0; i + s->c.max_files < n; i++) {
            char victim[PATH_MAX + NAME_MAX + 2];
            snprintf(victim, sizeof(victim), "%s.%s", s->c.path, list[i].name);
            if (unlink(victim) < 0 && errno != ENOENT)
                s->env->error(s->env, "rotate", "unlink %s: %s", victim, strerror(errno));
        }
        fsync_dir(s->c.path);
    }
    free(list);
}

/* The highest n among existing PATH.<ts>.<n> files. */
static unsigned rotated_max_n(gw_sink *s, const char *ts)
{
    char dir[PATH_MAX];
    path_dir(s->c.path, dir, sizeof(dir));
    const char *slash = strrchr(s->c.path, '/');
    const char *base = slash ? slash + 1 : s->c.path;
    size_t blen = strlen(base), tlen = strlen(ts);
    unsigned max = 0;
    DIR *dh = opendir(dir);
    if (!dh)
        return 0;
    struct dirent *de;
    while ((de = readdir(dh))) {
        const char *nm = de->d_name;
        if (strncmp(nm, base, blen) || nm[blen] != '.' || strncmp(nm + blen + 1, ts, tlen) ||
            nm[blen + 1 + tlen] != '.' || !gw_file_rotated_suffix(nm + blen + 1))
            continue;
        unsigned long v = strtoul(nm + blen + 2 + tlen, NULL, 10);
        if (v > max && v < 1000000000ul)
            max = (unsigned)v;
    }
    closedir(dh);
    return max;
}

/* Rename the full file to PATH.<UTC timestamp>.<n>, open a new one, fsync the directory. */
static int rotate(gw_sink *s)
{
    if (s->c.fsync != FSYNC_NEVER && sync_now(s))
        return -1;
    char ts[32];
    time_t now = (time_t)(itr_wall_ns() / 1000000000u);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(ts, sizeof(ts), "%Y%m%dT%H%M%SZ", &tm);
    char target[PATH_MAX + 48];
    int rc = -1;
    /* n continues after the highest one of this second, so the newest file always sorts
     * last even after older ones were pruned. */
    for (unsigned n = rotated_max_n(s, ts) + 1, tries = 0; tries < 10000; n++, tries++) {
        snprintf(target, sizeof(target), "%s.%s.%u", s->c.path, ts, n);
        rc = renameat2(AT_FDCWD, s->c.path, AT_FDCWD, target, RENAME_NOREPLACE);
        if (rc == 0 || errno != EEXIST)
            break;
    }
    if (rc < 0) {
        file_failed(s, "rotate", errno, "rename");
        return -1;
    }
    s->need_reopen = 1;
    const char *what;
    rc = file_open_output(s, &what);
    if (rc) {
        file_failed(s, "rotate", -rc, what);
        return -1;
    }
    rc = fsync_dir(s->c.path);
    if (rc)
        s->env->error(s->env, "rotate", "fsync directory of %s: %s", s->c.path, strerror(-rc));
    prune_rotated(s);
    return 0;
}

/* Write what is pending (batch_ready, retry_due and flush all come here). */
static void file_process(gw_sink *s)
{
    if (s->need_reopen) {
        const char *what;
        int rc = file_open_output(s, &what);
        if (rc) {
            file_failed(s, "open", -rc, what);
            return;
        }
    }
    if (s->cut_pending) {
        if (ftruncate(s->fd, (off_t)s->cut_to) < 0) {
            file_failed(s, "write", errno, "ftruncate");
            return;
        }
        s->cut_pending = 0;
    }
    if (s->rewrite_wait) {
        int rc = write_list(s, s->wait, s->wait_n);
        if (rc) {
            file_failed(s, "write", -rc, "write");
            return;
        }
        s->rewrite_wait = 0;
        if (sync_now(s))
            return;
    }
    if (!s->pend_n) {
        if (s->failing)
            file_recovered(s);
        return;
    }
    if (s->c.rotate_bytes && s->written_size >= s->c.rotate_bytes && rotate(s))
        return;
    if (s->c.fsync == FSYNC_INTERVAL && s->wait_n + s->pend_n > FILE_WAIT_CAP && sync_now(s))
        return;
    int rc = write_list(s, s->pend, s->pend_n);
    if (rc) {
        file_failed(s, "write", -rc, "write");
        return;
    }
    size_t n = s->pend_n;
    switch (s->c.fsync) {
    case FSYNC_BATCH:
        if (fdatasync(s->fd) < 0) {
            int e = errno;
            truncate_back(s, s->synced_size);
            file_failed(s, "fsync", e, "fdatasync");
            return;
        }
        s->synced_size = s->written_size;
        s->pend_n = 0;
        update_in_flight(s);
        complete_list(s, s->pend, n);
        break;
    case FSYNC_INTERVAL:
        s->pend_n = 0;
        for (size_t i = 0; i < n; i++) {
            if (s->pend[i]->reliable)
                s->wait[s->wait_n++] = s->pend[i];
        }
        update_in_flight(s);
        for (size_t i = 0; i < n; i++) {
            if (!s->pend[i]->reliable)
                s->env->complete(s->env, s->pend[i], GW_DURABLE, NULL);
        }
        if (s->wait_n && !itr_timer_armed(&s->sync_due))
            itr_loop_timer_set(s->env->loop, &s->sync_due,
                               itr_now_ns() + s->c.fsync_interval_ms * 1000000u);
        break;
    case FSYNC_NEVER:
        s->pend_n = 0;
        update_in_flight(s);
        complete_list(s, s->pend, n);
        break;
    }
    file_recovered(s);
    if (s->refused) {
        s->refused = 0;
        s->env->ready(s->env);
    }
}

static void on_batch_ready(void *arg, uint64_t now)
{
    gw_sink *s = arg;
    (void)now;
    if (!s->failing)
        file_process(s);
}

static void on_retry_due(void *arg, uint64_t now)
{
    gw_sink *s = arg;
    (void)now;
    file_process(s);
    if (!s->failing && s->c.fsync == FSYNC_INTERVAL && s->wait_n && !itr_timer_armed(&s->sync_due))
        itr_loop_timer_set(s->env->loop, &s->sync_due, now);
}

static void on_sync_due(void *arg, uint64_t now)
{
    gw_sink *s = arg;
    (void)now;
    if (!s->failing && !s->rewrite_wait)
        sync_now(s);
}

/* ---- connector interface ---- */

static void file_close(gw_sink *s);

static int file_open(gw_sink **out, const cJSON *conf, gw_sink_env *env, char *err, size_t errlen)
{
    gw_sink *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->env = env;
    s->fd = -1;
    itr_timer_init(&s->batch_ready, on_batch_ready, s);
    itr_timer_init(&s->sync_due, on_sync_due, s);
    itr_timer_init(&s->retry_due, on_retry_due, s);
    if (file_parse(conf, env->name, &s->c, err, errlen))
        goto fail;
    s->pend = calloc(FILE_PEND_CAP, sizeof(*s->pend));
    s->buf_cap = FILE_BUF_BYTES;
    s->buf = malloc(s->buf_cap);
    if (s->c.fsync == FSYNC_INTERVAL)
        s->wait = calloc(FILE_WAIT_CAP, sizeof(*s->wait));
    if (!s->pend || !s->buf || (s->c.fsync == FSYNC_INTERVAL && !s->wait)) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    s->rng = itr_now_ns() ^ (uint64_t)(uintptr_t)s;
    if (!s->rng)
        s->rng = 1;
    /* A file-size limit must be an EFBIG we handle, not a SIGXFSZ that kills the process. */
    struct sigaction sa;
    if (sigaction(SIGXFSZ, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
        signal(SIGXFSZ, SIG_IGN);
    const char *what;
    int rc = file_open_output(s, &what);
    if (rc) {
        snprintf(err, errlen, "%s %s: %s", what, s->c.path, strerror(-rc));
        goto fail;
    }
    atomic_store_explicit(&s->state, GW_SINK_UP, memory_order_relaxed);
    *out = s;
    return 0;
fail:
    file_close(s);
    return -1;
}

static size_t file_submit(gw_sink *s, gw_delivery **d, size_t n)
{
    size_t room = FILE_PEND_CAP - s->pend_n;
    size_t take = n < room ? n : room;
    memcpy(s->pend + s->pend_n, d, take * sizeof(*d));
    s->pend_n += take;
    update_in_flight(s);
    if (take < n)
        s->refused = 1;
    /* While failing, retry_due writes them; otherwise the end of this loop iteration. */
    if (take && !s->failing && !itr_timer_armed(&s->batch_ready))
        itr_loop_timer_set(s->env->loop, &s->batch_ready, itr_now_ns());
    return take;
}

static int file_flush(gw_sink *s, uint64_t deadline_ns)
{
    for (;;) {
        if (!s->failing) {
            itr_loop_timer_cancel(s->env->loop, &s->batch_ready);
            file_process(s);
            if (!s->failing && s->c.fsync == FSYNC_INTERVAL)
                sync_now(s);
        }
        if (!s->pend_n && !s->wait_n && !s->rewrite_wait && !s->failing)
            return 0;
        /* Failing: wait for retry_due (it runs file_process) but not past the deadline. */
        int rc = gw_sink_run_until(s->env->loop, deadline_ns);
        if (rc)
            return rc;
    }
}

static void file_status(gw_sink *s, gw_sink_status *st)
{
    st->state = (gw_sink_state)atomic_load_explicit(&s->state, memory_order_relaxed);
    st->in_flight = atomic_load_explicit(&s->in_flight, memory_order_relaxed);
    st->buffered_bytes = 0;
}

static void file_close(gw_sink *s)
{
    if (!s)
        return;
    if (s->env && s->env->loop) {
        itr_loop_timer_cancel(s->env->loop, &s->batch_ready);
        itr_loop_timer_cancel(s->env->loop, &s->sync_due);
        itr_loop_timer_cancel(s->env->loop, &s->retry_due);
    }
    if (s->fd >= 0) {
        if (s->c.fsync != FSYNC_NEVER && s->written_size != s->synced_size)
            (void)fdatasync(s->fd); /* best effort: what is still held is never acknowledged */
        close(s->fd);
    }
    free(s->pend);
    free(s->wait);
    free(s->buf);
    free(s);
}

const gw_connector gw_file_connector = {
    .type = "file",
    .validate = file_validate,
    .open = file_open,
    .submit = file_submit,
    .flush = file_flush,
    .status = file_status,
    .close = file_close,
};
