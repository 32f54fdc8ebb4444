/* kafka_dlq.c: the dead-letter file (kafka_dlq.h). Not on the fast path: lines are built with
 * cJSON. */
#define _GNU_SOURCE /* O_CLOEXEC */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include <intentra/driver.h>
#include <intentra/error.h>

#include "file/file_format.h"
#include "kafka_dlq.h"

struct kafka_dlq {
    char path[PATH_MAX];
    int fd;
    uint64_t size; /* durable size: the end of the last committed line */
    char *buf;
    size_t len, cap;
    size_t pending;
};

static int mkdir_parents(const char *path)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s", path);
    char *slash = strrchr(tmp, '/');
    if (!slash || slash == tmp)
        return 0;
    *slash = 0;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(tmp, 0750) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0750) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

int kafka_dlq_open(struct kafka_dlq **out, const char *path, char *err, size_t errlen)
{
    *out = NULL;
    struct kafka_dlq *q = calloc(1, sizeof(*q));
    if (!q) {
        snprintf(err, errlen, "out of memory");
        return ITR_ERR_NOMEM;
    }
    snprintf(q->path, sizeof(q->path), "%s", path);
    if (mkdir_parents(path) < 0) {
        snprintf(err, errlen, "create the directory of dead-letter file %s: %s", path,
                 strerror(errno));
        free(q);
        return ITR_ERR_IO;
    }
    q->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    struct stat st;
    if (q->fd < 0 || fstat(q->fd, &st) < 0) {
        snprintf(err, errlen, "open dead-letter file %s: %s", path, strerror(errno));
        if (q->fd >= 0)
            close(q->fd);
        free(q);
        return ITR_ERR_IO;
    }
    q->size = (uint64_t)st.st_size;
    *out = q;
    return 0;
}

void kafka_dlq_close(struct kafka_dlq *q)
{
    if (!q)
        return;
    close(q->fd);
    free(q->buf);
    free(q);
}

const char *kafka_dlq_path(const struct kafka_dlq *q)
{
    return q->path;
}

size_t kafka_dlq_pending(const struct kafka_dlq *q)
{
    return q->pending;
}

/* Text for JSON: UTF-8 without NUL is kept as is; anything else becomes base64. Returns a
 * malloc'ed NUL-terminated string; *b64 tells which. */
static char *json_text(const void *p, size_t n, int *b64)
{
    const uint8_t *u = p;
    *b64 = !gw_file_utf8_valid(u, n) || memchr(u, 0, n) != NULL;
    if (!*b64) {
        char *s = malloc(n + 1);
        if (s) {
            if (n)
                memcpy(s, u, n);
            s[n] = 0;
        }
        return s;
    }
    size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
    char *s = malloc(cap);
    if (s)
        sodium_bin2base64(s, cap, u, n, sodium_base64_VARIANT_ORIGINAL);
    return s;
}

static int add_text(cJSON *obj, const char *name, const char *enc_name, const void *p, size_t n)
{
    int b64;
    char *s = json_text(p, n, &b64);
    if (!s || !cJSON_AddStringToObject(obj, name, s)) {
        free(s);
        return -1;
    }
    free(s);
    if (b64 && enc_name && !cJSON_AddStringToObject(obj, enc_name, "base64"))
        return -1;
    return 0;
}

int kafka_dlq_add(struct kafka_dlq *q, const char *sink, const char *reason, const char *error,
                  const gw_spool_record *rec)
{
    int rc = ITR_ERR_NOMEM;
    char ts[48];
    uint64_t now = itr_wall_ns();
    time_t sec = (time_t)(now / 1000000000u);
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t tl = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof(ts) - tl, ".%09uZ", (unsigned)(now % 1000000000u));

    cJSON *o = cJSON_CreateObject();
    cJSON *h = NULL;
    char *line = NULL;
    if (!o || !cJSON_AddStringToObject(o, "ts", ts) ||
        !cJSON_AddStringToObject(o, "sink", sink ? sink : "") ||
        !cJSON_AddStringToObject(o, "reason", reason ? reason : "other") ||
        !cJSON_AddStringToObject(o, "error", error ? error : "") ||
        add_text(o, "topic", NULL, rec->topic, rec->topic_len) ||
        !cJSON_AddNumberToObject(o, "partition", rec->partition))
        goto out;
    if (rec->key) {
        if (add_text(o, "key", "key_encoding", rec->key, rec->key_len))
            goto out;
    } else if (!cJSON_AddNullToObject(o, "key")) {
        goto out;
    }
    if (!(h = cJSON_AddObjectToObject(o, "headers")))
        goto out;
    for (size_t i = 0; i < rec->header_count; i++) {
        const gw_spool_header *hd = &rec->headers[i];
        int b64;
        char name[256];
        snprintf(name, sizeof(name), "%.*s", (int)hd->name_len, hd->name);
        char *v = json_text(hd->value, hd->value_len, &b64);
        if (!v)
            goto out;
        /* Our own headers are ASCII; a foreign binary value is marked by its prefix. */
        size_t vl = strlen(v);
        char *pv = b64 ? malloc(vl + 8) : v;
        if (b64 && pv)
            snprintf(pv, vl + 8, "base64:%s", v);
        cJSON *ok = pv ? cJSON_AddStringToObject(h, name, pv) : NULL;
        if (pv != v)
            free(pv);
        free(v);
        if (!ok)
            goto out;
    }
    if (add_text(o, "payload", "payload_encoding", rec->value, rec->value_len))
        goto out;
    line = cJSON_PrintUnformatted(o);
    if (!line)
        goto out;
    size_t n = strlen(line);
    if (q->len + n + 1 > q->cap) {
        size_t cap = q->cap ? q->cap : 4096;
        while (cap < q->len + n + 1)
            cap *= 2;
        char *nb = realloc(q->buf, cap);
        if (!nb)
            goto out;
        q->buf = nb;
        q->cap = cap;
    }
    memcpy(q->buf + q->len, line, n);
    q->buf[q->len + n] = '\n';
    q->len += n + 1;
    q->pending++;
    rc = 0;
out:
    cJSON_free(line);
    cJSON_Delete(o);
    return rc;
}

int kafka_dlq_commit(struct kafka_dlq *q)
{
    if (!q->len)
        return 0;
    size_t done = 0;
    int e = 0;
    while (done < q->len) {
        ssize_t w = write(q->fd, q->buf + done, q->len - done);
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
    if (!e && fdatasync(q->fd) < 0)
        e = errno;
    if (e) {
        /* Whole lines only: cut what was written of this batch (best effort). */
        if (ftruncate(q->fd, (off_t)q->size) < 0) {
            /* The next successful commit still starts after a partial line; readers skip
             * lines that do not parse. */
        }
        q->len = 0;
        q->pending = 0;
        errno = e;
        return ITR_ERR_IO;
    }
    q->size += q->len;
    q->len = 0;
    q->pending = 0;
    return 0;
}
