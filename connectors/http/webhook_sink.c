/* webhook_sink.c: the "webhook" connector: batches of messages POSTed as JSON to an HTTP(S)
 * endpoint, signed the Standard Webhooks way (docs/SINKS.md, "webhook").
 *
 * Everything runs on the sink thread. libcurl's multi interface is driven by the sink's
 * itr_loop: CURLMOPT_SOCKETFUNCTION maps curl's sockets to fd watches, CURLMOPT_TIMERFUNCTION
 * to one loop timer, and both call curl_multi_socket_action. Nothing blocks; connections
 * stay in the multi handle's cache between requests (keep-alive).
 *
 * A request slot (max_concurrent_requests of them, allocated at open) owns one easy handle,
 * its body buffer, its header list and the deliveries of one batch, from the moment the
 * batch is formed until every delivery in it is completed:
 *   FREE -> FILLING (taking deliveries from `pend`, linger timer) -> IN_FLIGHT -> FREE, or
 *   IN_FLIGHT -> BACKOFF (retry timer; same webhook-id) -> IN_FLIGHT ...
 * A 2xx completes the batch GW_DURABLE; 5xx, 408, timeouts and connection errors retry with
 * exponential backoff and full jitter; 429 waits for Retry-After; other statuses are
 * permanent: the batch goes to the dead-letter file (GW_DEAD_LETTER, Reliable) or is
 * discarded (Realtime). Realtime deliveries are discarded after realtime_max_retries failed
 * attempts; Reliable deliveries are retried until they succeed or are dead-lettered.
 * Backpressure: `pend` is bounded; submit takes what fits and env->ready() follows.
 */
#define _GNU_SOURCE /* O_CLOEXEC, strcasecmp */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sodium.h>

#include <intentra/driver.h>
#include <intentra/error.h>

#include "connector.h"
#include "file/file_format.h"
#include "json_check.h"
#include "router.h"
#include "shards.h"
#include "webhook_sign.h"

#define WH_PEND_CAP        16384u /* deliveries taken, not yet in a batch */
#define WH_URL_MAX         2048
#define WH_HEADERS_MAX     32
#define WH_HEADER_MAX      1024
#define WH_ID_LEN          36           /* "msg_" + 32 hex */
#define WH_RETRY_AFTER_MAX 3600000      /* ms: a Retry-After is honoured up to an hour */
#define WH_ERRBODY_MAX     200          /* response text kept for the dead-letter line */
#define WH_BODY_INITIAL    (256u << 10) /* body buffer per slot at open */
#define WH_NFIXED_HEADERS  5            /* content-type, id, timestamp, signature, expect */

enum slot_state { SLOT_FREE = 0, SLOT_FILLING, SLOT_IN_FLIGHT, SLOT_BACKOFF };

struct wh_conf {
    char *url;
    uint8_t key[GW_WEBHOOK_KEY_MAX];
    size_t keylen; /* 0: requests are not signed */
    char *secret_file;
    char *headers[WH_HEADERS_MAX]; /* "Name: value" */
    size_t nheaders;
    uint32_t batch_max_messages, max_concurrent, realtime_max_retries;
    uint64_t batch_max_bytes, linger_ms, timeout_ms, retry_initial_ms, retry_max_ms;
    int tls_verify;
    char *ca_file;
    char *dead_letter_file;
};

struct slot {
    struct gw_sink *s;
    enum slot_state state;
    CURL *easy;
    gw_delivery **d; /* batch_max_messages */
    size_t n;
    char *body;
    size_t len, cap;
    char url[WH_URL_MAX];
    char id[WH_ID_LEN + 1];
    uint32_t attempts;
    const char *bad_url;    /* the URL cannot be used (why): dead-lettered without a request */
    int64_t retry_after_ms; /* from the last response, -1 if none */
    long status;
    char errbody[WH_ERRBODY_MAX + 1];
    size_t errbody_len;
    char h_id[16 + WH_ID_LEN], h_ts[48], h_sig[32 + GW_WEBHOOK_SIG_LEN];
    struct curl_slist *hdr; /* WH_NFIXED_HEADERS + nheaders nodes, ours (never freed by curl) */
    itr_timer retry_due;
    struct file_ts_cache tc;
};

struct gw_sink {
    gw_sink_env *env;
    struct wh_conf c;
    CURLM *multi;
    itr_timer curl_due; /* CURLMOPT_TIMERFUNCTION */
    itr_timer linger_due;
    struct slot *slots;
    struct slot *filling; /* the slot taking deliveries, or NULL */
    gw_delivery **pend;   /* FIFO, WH_PEND_CAP */
    size_t pend_head, pend_n;
    int refused; /* submit refused some: env->ready() once there is room */
    int flushing;
    int in_pump, pump_again;
    int dlq_fd;
    uint64_t rng;
    size_t held;
    _Atomic int state;
    _Atomic uint64_t held_view;
};

static void pump(gw_sink *s);
static void slot_permanent(gw_sink *s, struct slot *sl, const char *reason, const char *error);

/* ---- configuration ---- */

static void split_where(const char *where, char *origin, size_t ocap, char *path, size_t pcap)
{
    const char *sep = strstr(where, ": ");
    if (!sep) {
        snprintf(origin, ocap, "sinks");
        snprintf(path, pcap, "%s", where);
        return;
    }
    snprintf(origin, ocap, "%.*s", (int)(sep - where), where);
    snprintf(path, pcap, "%s", sep + 2);
}

static char *dupstr(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p)
        memcpy(p, s, n);
    return p;
}

static void conf_free(struct wh_conf *c)
{
    free(c->url);
    free(c->secret_file);
    free(c->ca_file);
    free(c->dead_letter_file);
    for (size_t i = 0; i < c->nheaders; i++)
        free(c->headers[i]);
    sodium_memzero(c->key, sizeof(c->key));
    memset(c, 0, sizeof(*c));
}

/* 0 if u is an absolute http:// or https:// URL with a host (libcurl's own parser). */
static int url_check(const char *u, char *why, size_t cap)
{
    int rc = -1;
    char *scheme = NULL, *host = NULL;
    CURLU *h = curl_url();
    if (!h) {
        snprintf(why, cap, "out of memory");
        return -1;
    }
    if (curl_url_set(h, CURLUPART_URL, u, 0) != CURLUE_OK) {
        snprintf(why, cap, "not a valid URL");
        goto out;
    }
    if (curl_url_get(h, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        (strcasecmp(scheme, "http") && strcasecmp(scheme, "https"))) {
        snprintf(why, cap, "scheme must be http or https");
        goto out;
    }
    if (curl_url_get(h, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host[0]) {
        snprintf(why, cap, "no host");
        goto out;
    }
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(h);
    return rc;
}

static int header_name_reserved(const char *n)
{
    static const char *const reserved[] = {"content-type",
                                           "content-length",
                                           "host",
                                           "webhook-id",
                                           "webhook-timestamp",
                                           "webhook-signature",
                                           "expect",
                                           "transfer-encoding",
                                           "connection",
                                           NULL};
    for (size_t i = 0; reserved[i]; i++)
        if (!strcasecmp(n, reserved[i]))
            return 1;
    return 0;
}

static int header_token_ok(const char *n)
{
    if (!n[0])
        return 0;
    for (const char *p = n; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch <= 0x20 || ch >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", ch))
            return 0;
    }
    return 1;
}

/* Parse and check one sink object. where: "FILE: sinks.NAME". */
static int conf_parse(struct wh_conf *wc, const cJSON *conf, const char *where, char *err,
                      size_t errlen)
{
    static const char *const keys[] = {"type",
                                       "required",
                                       "max_inflight_bytes",
                                       "queue_messages",
                                       "url",
                                       "secret",
                                       "secret_file",
                                       "batch_max_messages",
                                       "batch_max_bytes",
                                       "linger_ms",
                                       "timeout_ms",
                                       "max_concurrent_requests",
                                       "retry_initial_ms",
                                       "retry_max_ms",
                                       "realtime_max_retries",
                                       "headers",
                                       "tls_verify",
                                       "ca_file",
                                       "dead_letter_file",
                                       NULL};
    char origin[256], path[GW_JPATH_MAX], why[128];
    gw_jctx c;
    const char *str;
    int rc;
    memset(wc, 0, sizeof(*wc));
    split_where(where, origin, sizeof(origin), path, sizeof(path));
    gw_jctx_init(&c, origin, path, err, errlen, NULL, 0);

    if ((rc = gw_jcheck_object(&c, conf, keys)) < 0)
        goto out;
    if ((rc = gw_jget_string(&c, conf, "url", 1, 0, 1, WH_URL_MAX - 1, NULL, &str)) < 0)
        goto out;
    if (url_check(str, why, sizeof(why))) {
        rc = gw_jctx_fail_key(&c, "url", "%s (expected an http:// or https:// URL)", why);
        goto out;
    }
    if (!(wc->url = dupstr(str)))
        goto nomem;
    const char *secret = NULL, *secret_file = NULL;
    if ((rc = gw_jget_string(&c, conf, "secret", 0, 0, 1, 1024, NULL, &secret)) < 0 ||
        (rc = gw_jget_string(&c, conf, "secret_file", 0, 0, 1, PATH_MAX - 1, NULL, &secret_file)) <
            0)
        goto out;
    if (secret && secret_file) {
        rc = gw_jctx_fail_key(&c, "secret_file", "set either secret or secret_file, not both");
        goto out;
    }
    if (secret) {
        wc->keylen = gw_webhook_secret_decode(secret, wc->key);
        if (!wc->keylen) {
            /* never echo the value */
            rc = gw_jctx_fail_key(&c, "secret",
                                  "not a Standard Webhooks secret (expected \"whsec_\" followed "
                                  "by base64 of 1..256 bytes)");
            goto out;
        }
    }
    if (secret_file && !(wc->secret_file = dupstr(secret_file)))
        goto nomem;
    if ((rc = gw_jget_u32(&c, conf, "batch_max_messages", 1, 10000, 100, &wc->batch_max_messages)) <
            0 ||
        (rc = gw_jget_u64(&c, conf, "batch_max_bytes", 1024, 64ull << 20, 1ull << 20,
                          &wc->batch_max_bytes)) < 0 ||
        (rc = gw_jget_u64(&c, conf, "linger_ms", 0, 60000, 5, &wc->linger_ms)) < 0 ||
        (rc = gw_jget_u64(&c, conf, "timeout_ms", 100, 600000, 10000, &wc->timeout_ms)) < 0 ||
        (rc = gw_jget_u32(&c, conf, "max_concurrent_requests", 1, 256, 4, &wc->max_concurrent)) <
            0 ||
        (rc = gw_jget_u64(&c, conf, "retry_initial_ms", 1, 600000, 100, &wc->retry_initial_ms)) <
            0 ||
        (rc = gw_jget_u64(&c, conf, "retry_max_ms", 1, 3600000, 30000, &wc->retry_max_ms)) < 0 ||
        (rc = gw_jget_u32(&c, conf, "realtime_max_retries", 0, 1000, 3,
                          &wc->realtime_max_retries)) < 0 ||
        (rc = gw_jget_bool(&c, conf, "tls_verify", 1, &wc->tls_verify)) < 0)
        goto out;
    if (wc->retry_max_ms < wc->retry_initial_ms) {
        rc = gw_jctx_fail_key(&c, "retry_max_ms",
                              "smaller than retry_initial_ms (expected retry_max_ms >= "
                              "retry_initial_ms)");
        goto out;
    }
    if ((rc = gw_jget_string(&c, conf, "ca_file", 0, 0, 1, PATH_MAX - 1, NULL, &str)) < 0)
        goto out;
    if (str && !(wc->ca_file = dupstr(str)))
        goto nomem;
    if ((rc = gw_jget_string(&c, conf, "dead_letter_file", 0, 0, 1, PATH_MAX - 1, NULL, &str)) < 0)
        goto out;
    if (str && !(wc->dead_letter_file = dupstr(str)))
        goto nomem;
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(conf, "headers");
    if (h) {
        size_t at = gw_jctx_push_key(&c, "headers");
        if (!cJSON_IsObject(h)) {
            rc = gw_jctx_fail(&c, "expected an object of header names to string values");
            goto out;
        }
        if ((rc = gw_jcheck_no_duplicates(&c, h)) < 0)
            goto out;
        for (const cJSON *it = h->child; it; it = it->next) {
            if (wc->nheaders >= WH_HEADERS_MAX) {
                rc = gw_jctx_fail(&c, "too many headers (expected at most %d)", WH_HEADERS_MAX);
                goto out;
            }
            if (!header_token_ok(it->string)) {
                rc = gw_jctx_fail_key(&c, it->string,
                                      "not a valid header name (expected an HTTP token)");
                goto out;
            }
            if (header_name_reserved(it->string)) {
                rc = gw_jctx_fail_key(&c, it->string, "set by the connector, cannot be overridden");
                goto out;
            }
            if (!cJSON_IsString(it) || strpbrk(it->valuestring, "\r\n") ||
                strlen(it->string) + strlen(it->valuestring) + 3 > WH_HEADER_MAX) {
                rc = gw_jctx_fail_key(&c, it->string,
                                      "expected a string without CR/LF (name and value at most "
                                      "%d bytes)",
                                      WH_HEADER_MAX - 3);
                goto out;
            }
            char line[WH_HEADER_MAX + 8];
            if (snprintf(line, sizeof(line), "%s: %s", it->string, it->valuestring) < 0)
                goto nomem;
            if (!(wc->headers[wc->nheaders] = dupstr(line)))
                goto nomem;
            wc->nheaders++;
        }
        gw_jctx_pop(&c, at);
    }
    return 0;
nomem:
    snprintf(err, errlen, "out of memory");
    rc = ITR_ERR_NOMEM;
out:
    conf_free(wc);
    return rc;
}

/* Read the secret from secret_file (open time: the file may be mounted at run time). */
static int load_secret_file(struct wh_conf *wc, const char *name, char *err, size_t errlen)
{
    char buf[1100];
    int fd = open(wc->secret_file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "sinks.%s.secret_file: %s: %s", name, wc->secret_file,
                 strerror(errno));
        return ITR_ERR_IO;
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n < 0)
        n = 0;
    buf[n] = 0;
    wc->keylen = gw_webhook_secret_decode(buf, wc->key);
    sodium_memzero(buf, sizeof(buf));
    if (!wc->keylen) {
        snprintf(err, errlen,
                 "sinks.%s.secret_file: %s: not a Standard Webhooks secret (expected "
                 "\"whsec_\" followed by base64 of 1..256 bytes)",
                 name, wc->secret_file);
        return ITR_ERR_INVALID;
    }
    return 0;
}

/* ---- small helpers ---- */

static uint64_t rnd(gw_sink *s)
{
    s->rng ^= s->rng << 13;
    s->rng ^= s->rng >> 7;
    s->rng ^= s->rng << 17;
    return s->rng;
}

static void held_add(gw_sink *s, size_t n)
{
    s->held += n;
    atomic_store_explicit(&s->held_view, s->held, memory_order_relaxed);
}

static void complete(gw_sink *s, gw_delivery *d, gw_result r, const char *reason)
{
    s->held--;
    atomic_store_explicit(&s->held_view, s->held, memory_order_relaxed);
    s->env->complete(s->env, d, r, reason);
}

static void set_state(gw_sink *s, gw_sink_state st)
{
    atomic_store_explicit(&s->state, (int)st, memory_order_relaxed);
}

/* The URL for logs and dead letters: without user:password@ and without the query, which
 * may carry credentials. */
static const char *url_shown(const char *url, char *out, size_t cap)
{
    const char *p = strstr(url, "://");
    size_t at = 0;
    if (p) {
        p += 3;
        size_t host_end = strcspn(p, "/?#");
        const char *cred = memchr(p, '@', host_end);
        at = (size_t)(p - url);
        if (cred) {
            snprintf(out, cap, "%.*s%.*s", (int)at, url, (int)strcspn(cred + 1, "?#"), cred + 1);
            return out;
        }
    }
    snprintf(out, cap, "%.*s", (int)(at + strcspn(url + at, "?#")), url);
    return out;
}

/* The URL of one delivery: a destination that renders to an http(s) URL, else the shard's
 * webhook_endpoint, else `url`. Returns NULL if the rendered URL does not fit. */
static const char *target_url(gw_sink *s, const gw_delivery *d, char *buf, size_t cap)
{
    size_t n = gw_route_sink_destination(d->rs, d->msg, buf, cap);
    if (n != (size_t)-1 && (!strncmp(buf, "http://", 7) || !strncmp(buf, "https://", 8)))
        return buf;
    if (n == (size_t)-1 && !strncmp(gw_route_sink_destination_template(d->rs), "http", 4))
        return NULL; /* a URL template that does not fit */
    if (d->msg->shard) {
        const gw_shard_attrs *a = gw_shard_attributes(d->msg->shard);
        if (a && a->webhook_endpoint && a->webhook_endpoint[0])
            return a->webhook_endpoint;
    }
    return s->c.url;
}

/* ---- body ---- */

/* Append one message's JSON object (and a ',' separator) to the slot's body. Returns 0, or -1
 * if the body buffer cannot grow. */
static int body_append(struct slot *sl, const gw_msg *m)
{
    size_t need = gw_file_line_max(m, FILE_PAYLOAD_AUTO) + 2;
    if (sl->len + need > sl->cap) {
        size_t cap = sl->cap ? sl->cap : 4096;
        while (cap < sl->len + need)
            cap *= 2;
        char *nb = realloc(sl->body, cap);
        if (!nb)
            return -1;
        sl->body = nb;
        sl->cap = cap;
    }
    if (!sl->len)
        sl->body[sl->len++] = '[';
    size_t l = gw_file_format_line(sl->body + sl->len, m, FILE_PAYLOAD_AUTO, &sl->tc);
    sl->len += l;
    sl->body[sl->len - 1] = ','; /* was the newline */
    return 0;
}

/* The finished body: "[o1,o2]", or "o1" when batches are single objects. */
static void body_finish(gw_sink *s, struct slot *sl, const char **p, size_t *n)
{
    if (s->c.batch_max_messages == 1) {
        *p = sl->body + 1;
        *n = sl->len - 2;
    } else {
        sl->body[sl->len - 1] = ']';
        *p = sl->body;
        *n = sl->len;
    }
}

/* Render the body again from the slot's deliveries (after Realtime ones were dropped). */
static int body_rebuild(struct slot *sl)
{
    sl->len = 0;
    for (size_t i = 0; i < sl->n; i++)
        if (body_append(sl, sl->d[i]->msg))
            return -1;
    return 0;
}

/* ---- dead letters ---- */

static int dlq_open(gw_sink *s, char *err, size_t errlen)
{
    const char *path = s->c.dead_letter_file;
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        for (char *p = dir + 1; *p; p++) {
            if (*p != '/')
                continue;
            *p = 0;
            if (mkdir(dir, 0750) < 0 && errno != EEXIST)
                goto fail;
            *p = '/';
        }
        if (mkdir(dir, 0750) < 0 && errno != EEXIST)
            goto fail;
    }
    s->dlq_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    if (s->dlq_fd < 0)
        goto fail;
    return 0;
fail:
    snprintf(err, errlen, "open dead-letter file %s: %s", path, strerror(errno));
    return ITR_ERR_IO;
}

/* One line per failed batch: {"ts","sink","reason","error","status","url","webhook_id",
 * "messages":[...]} written and fdatasynced. Returns 0, or -1 (errno set) to retry later. */
static int dlq_write(gw_sink *s, struct slot *sl, const char *reason, const char *error)
{
    char head[WH_URL_MAX + 1024], esc_url[6 * 256 + 1], esc_err[6 * (WH_ERRBODY_MAX + 128) + 1];
    char ts[48];
    uint64_t now = itr_wall_ns();
    time_t sec = (time_t)(now / 1000000000u);
    struct tm tm;
    gmtime_r(&sec, &tm);
    size_t tl = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof(ts) - tl, ".%09uZ", (unsigned)(now % 1000000000u));
    char shown[257];
    url_shown(sl->url, shown, sizeof(shown));
    esc_url[gw_file_json_escape(esc_url, (const uint8_t *)shown, strlen(shown))] = 0;
    size_t el = strlen(error);
    if (el > WH_ERRBODY_MAX + 128)
        el = WH_ERRBODY_MAX + 128;
    esc_err[gw_file_json_escape(esc_err, (const uint8_t *)error, el)] = 0;
    int hl = snprintf(head, sizeof(head),
                      "{\"ts\":\"%s\",\"sink\":\"%s\",\"reason\":\"%s\",\"error\":\"%s\","
                      "\"status\":%ld,\"url\":\"%s\",\"webhook_id\":\"%s\",\"messages\":",
                      ts, s->env->name, reason, esc_err, sl->status, esc_url, sl->id);
    if (hl < 0 || (size_t)hl >= sizeof(head)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    /* The messages as an array, whatever the batch form. */
    sl->body[sl->len - 1] = ']';
    struct part {
        const char *p;
        size_t n;
    } parts[3] = {{head, (size_t)hl}, {sl->body, sl->len}, {"}\n", 2}};
    off_t start = lseek(s->dlq_fd, 0, SEEK_END);
    for (int i = 0; i < 3; i++) {
        size_t done = 0;
        while (done < parts[i].n) {
            ssize_t w = write(s->dlq_fd, parts[i].p + done, parts[i].n - done);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                int e = w < 0 ? errno : EIO;
                if (start >= 0 && ftruncate(s->dlq_fd, start) < 0) {
                    /* readers skip a line that does not parse */
                }
                errno = e;
                return -1;
            }
            done += (size_t)w;
        }
    }
    if (fdatasync(s->dlq_fd) < 0)
        return -1;
    return 0;
}

/* ---- slots ---- */

static void slot_release(gw_sink *s, struct slot *sl)
{
    sl->state = SLOT_FREE;
    sl->bad_url = NULL;
    sl->n = 0;
    sl->len = 0;
    sl->attempts = 0;
    (void)s;
}

static void update_state(gw_sink *s, gw_sink_state on_failure)
{
    for (uint32_t i = 0; i < s->c.max_concurrent; i++)
        if (s->slots[i].state == SLOT_BACKOFF) {
            set_state(s, on_failure);
            return;
        }
    set_state(s, GW_SINK_UP);
}

static void new_id(struct slot *sl)
{
    uint8_t r[16];
    static const char hex[] = "0123456789abcdef";
    randombytes_buf(r, sizeof(r));
    memcpy(sl->id, "msg_", 4);
    for (int i = 0; i < 16; i++) {
        sl->id[4 + 2 * i] = hex[r[i] >> 4];
        sl->id[5 + 2 * i] = hex[r[i] & 15];
    }
    sl->id[WH_ID_LEN] = 0;
}

/* Start (or restart) the POST of a slot's batch. */
static void slot_send(gw_sink *s, struct slot *sl)
{
    const char *body;
    size_t n;
    char ts[24];
    if (sl->bad_url) {
        sl->attempts++;
        slot_permanent(s, sl, "invalid_destination", sl->bad_url);
        return;
    }
    body_finish(s, sl, &body, &n);
    snprintf(ts, sizeof(ts), "%" PRIu64, itr_wall_ns() / 1000000000u);
    snprintf(sl->h_id, sizeof(sl->h_id), "webhook-id: %s", sl->id);
    snprintf(sl->h_ts, sizeof(sl->h_ts), "webhook-timestamp: %s", ts);
    if (s->c.keylen) {
        char sig[GW_WEBHOOK_SIG_LEN + 1];
        gw_webhook_sign(sig, s->c.key, s->c.keylen, sl->id, ts, body, n);
        snprintf(sl->h_sig, sizeof(sl->h_sig), "webhook-signature: %s", sig);
    }
    sl->retry_after_ms = -1;
    sl->status = 0;
    sl->errbody_len = 0;
    sl->errbody[0] = 0;
    curl_easy_setopt(sl->easy, CURLOPT_URL, sl->url);
    curl_easy_setopt(sl->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)n);
    curl_easy_setopt(sl->easy, CURLOPT_POSTFIELDS, body);
    sl->state = SLOT_IN_FLIGHT;
    CURLMcode mc = curl_multi_add_handle(s->multi, sl->easy);
    if (mc != CURLM_OK) {
        /* Cannot happen short of memory: retry the batch later. */
        s->env->error(s->env, "other", "curl_multi_add_handle: %s", curl_multi_strerror(mc));
        sl->state = SLOT_BACKOFF;
        itr_loop_timer_set(s->env->loop, &sl->retry_due,
                           itr_now_ns() + s->c.retry_initial_ms * 1000000u);
    }
}

static void on_retry_due(void *arg, uint64_t now)
{
    struct slot *sl = arg;
    (void)now;
    if (sl->state == SLOT_BACKOFF)
        slot_send(sl->s, sl);
}

/* Exponential backoff with full jitter: uniform in [0, min(retry_max, initial * 2^(a-1))]. */
static uint64_t backoff_ms(gw_sink *s, uint32_t attempts)
{
    uint64_t cap = s->c.retry_initial_ms;
    for (uint32_t i = 1; i < attempts && cap < s->c.retry_max_ms; i++)
        cap *= 2;
    if (cap > s->c.retry_max_ms)
        cap = s->c.retry_max_ms;
    return rnd(s) % (cap + 1);
}

/* Complete the whole batch and free the slot. */
static void slot_finish(gw_sink *s, struct slot *sl, gw_result r_reliable, gw_result r_realtime,
                        const char *reason)
{
    for (size_t i = 0; i < sl->n; i++) {
        gw_delivery *d = sl->d[i];
        gw_result r = d->reliable ? r_reliable : r_realtime;
        complete(s, d, r, r == GW_DURABLE ? NULL : reason);
    }
    slot_release(s, sl);
}

static void slot_retry(gw_sink *s, struct slot *sl, int64_t delay_ms)
{
    /* Realtime deliveries get a bounded number of attempts. */
    if (sl->attempts > s->c.realtime_max_retries) {
        size_t k = 0;
        for (size_t i = 0; i < sl->n; i++) {
            if (sl->d[i]->reliable)
                sl->d[k++] = sl->d[i];
            else
                complete(s, sl->d[i], GW_DISCARDED, "sink_down");
        }
        if (k != sl->n) {
            sl->n = k;
            if (!k) {
                slot_release(s, sl);
                return;
            }
            /* Same webhook-id: if an earlier attempt did arrive, it held these too. */
            if (body_rebuild(sl)) {
                s->env->error(s->env, "other", "out of memory rebuilding a batch: retrying");
                delay_ms = (int64_t)s->c.retry_max_ms;
            }
        }
    }
    if (delay_ms < 0)
        delay_ms = (int64_t)backoff_ms(s, sl->attempts);
    sl->state = SLOT_BACKOFF;
    itr_loop_timer_set(s->env->loop, &sl->retry_due, itr_now_ns() + (uint64_t)delay_ms * 1000000u);
}

/* Permanent failure (4xx other than 408/429): dead letter / discard. */
static void slot_permanent(gw_sink *s, struct slot *sl, const char *reason, const char *error)
{
    int reliable = 0;
    for (size_t i = 0; i < sl->n; i++)
        reliable |= sl->d[i]->reliable;
    if (reliable && s->dlq_fd >= 0) {
        if (dlq_write(s, sl, reason, error) < 0) {
            s->env->error(s->env, "dead_letter", "writing %s: %s: retrying the batch",
                          s->c.dead_letter_file, strerror(errno));
            sl->body[sl->len - 1] = ','; /* body_finish closes it again */
            slot_retry(s, sl, (int64_t)backoff_ms(s, sl->attempts));
            return;
        }
    } else if (reliable) {
        s->env->error(s->env, "dead_letter",
                      "batch %s (%zu messages) failed permanently (%s): no dead_letter_file "
                      "configured, messages not kept",
                      sl->id, sl->n, error);
    }
    slot_finish(s, sl, GW_DEAD_LETTER, GW_DISCARDED, reason);
}

static const char *status_reason(long st)
{
    if (st == 413)
        return "message_too_large";
    if (st == 404 || st == 410)
        return "invalid_destination";
    return "rejected";
}

/* A finished transfer. */
static void slot_done(gw_sink *s, struct slot *sl, CURLcode res)
{
    char error[WH_ERRBODY_MAX + 128], shown[WH_URL_MAX];
    curl_multi_remove_handle(s->multi, sl->easy);
    sl->attempts++;
    if (res == CURLE_URL_MALFORMAT || res == CURLE_UNSUPPORTED_PROTOCOL) {
        /* e.g. a destination template rendering "https://" with an empty attribute */
        snprintf(error, sizeof(error), "%s", curl_easy_strerror(res));
        s->env->error(s->env, "delivery", "POST %s (batch %s, %zu messages): %s: %s",
                      url_shown(sl->url, shown, sizeof(shown)), sl->id, sl->n, error,
                      s->dlq_fd >= 0 ? "dead-lettered" : "not retried");
        slot_permanent(s, sl, "invalid_destination", error);
        update_state(s, GW_SINK_DEGRADED);
        return;
    }
    if (res != CURLE_OK) {
        const char *stage =
            res == CURLE_OPERATION_TIMEDOUT ? "timeout"
            : res == CURLE_COULDNT_CONNECT || res == CURLE_COULDNT_RESOLVE_HOST ||
                    res == CURLE_COULDNT_RESOLVE_PROXY
                ? "connect"
            : res == CURLE_SSL_CONNECT_ERROR || res == CURLE_PEER_FAILED_VERIFICATION ? "tls"
                                                                                      : "delivery";
        s->env->error(s->env, stage, "POST %s (batch %s, %zu messages, attempt %" PRIu32 "): %s",
                      url_shown(sl->url, shown, sizeof(shown)), sl->id, sl->n, sl->attempts,
                      curl_easy_strerror(res));
        slot_retry(s, sl, -1);
        update_state(s, GW_SINK_DOWN);
        return;
    }
    long st = 0;
    curl_easy_getinfo(sl->easy, CURLINFO_RESPONSE_CODE, &st);
    sl->status = st;
    if (st >= 200 && st < 300) {
        slot_finish(s, sl, GW_DURABLE, GW_DURABLE, NULL);
        update_state(s, GW_SINK_DEGRADED);
        return;
    }
    snprintf(error, sizeof(error), "HTTP %ld%s%.*s", st, sl->errbody_len ? ": " : "",
             (int)sl->errbody_len, sl->errbody);
    if (st == 429) {
        s->env->error(s->env, "http_429", "POST %s (batch %s): %s%s",
                      url_shown(sl->url, shown, sizeof(shown)), sl->id, error,
                      sl->retry_after_ms >= 0 ? ": waiting for Retry-After" : "");
        slot_retry(s, sl, sl->retry_after_ms);
        update_state(s, GW_SINK_DEGRADED);
        return;
    }
    if (st >= 500 || st == 408 || st < 200) {
        s->env->error(s->env, st >= 500 ? "http_5xx" : "delivery",
                      "POST %s (batch %s, attempt %" PRIu32 "): %s: retrying",
                      url_shown(sl->url, shown, sizeof(shown)), sl->id, sl->attempts, error);
        slot_retry(s, sl, sl->retry_after_ms); /* a 503 may say when, too */
        update_state(s, GW_SINK_DEGRADED);
        return;
    }
    const char *reason = status_reason(st);
    s->env->error(s->env, "http_4xx", "POST %s (batch %s, %zu messages): %s: %s",
                  url_shown(sl->url, shown, sizeof(shown)), sl->id, sl->n, error,
                  s->dlq_fd >= 0 ? "dead-lettered" : "not retried");
    slot_permanent(s, sl, reason, error);
    update_state(s, GW_SINK_DEGRADED);
}

static void check_done(gw_sink *s)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(s->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct slot *sl = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&sl);
        if (sl)
            slot_done(s, sl, msg->data.result);
    }
}

/* ---- curl callbacks ---- */

static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
    struct slot *sl = arg;
    size_t n = size * nmemb;
    size_t room = WH_ERRBODY_MAX - sl->errbody_len;
    size_t k = n < room ? n : room;
    for (size_t i = 0; i < k; i++) {
        char ch = p[i];
        sl->errbody[sl->errbody_len++] = (ch >= 0x20 && ch < 0x7f) ? ch : ' ';
    }
    sl->errbody[sl->errbody_len] = 0;
    return n;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *arg)
{
    struct slot *sl = arg;
    size_t n = size * nmemb;
    if (n > 5 && !strncmp(p, "HTTP/", 5)) {
        sl->retry_after_ms = -1; /* a new response (after 100 Continue) */
        return n;
    }
    if (n > 12 && !strncasecmp(p, "retry-after:", 12)) {
        char v[128];
        size_t l = n - 12;
        if (l >= sizeof(v))
            l = sizeof(v) - 1;
        memcpy(v, p + 12, l);
        v[l] = 0;
        char *q = v;
        while (*q == ' ' || *q == '\t')
            q++;
        char *e = q + strlen(q);
        while (e > q && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' '))
            *--e = 0;
        char *end;
        errno = 0;
        unsigned long long secs = strtoull(q, &end, 10);
        int64_t ms = -1;
        if (*q >= '0' && *q <= '9' && !*end && !errno) {
            ms = secs > WH_RETRY_AFTER_MAX / 1000 ? WH_RETRY_AFTER_MAX : (int64_t)secs * 1000;
        } else {
            time_t t = curl_getdate(q, NULL);
            if (t != -1) {
                int64_t d = ((int64_t)t - (int64_t)(itr_wall_ns() / 1000000000u)) * 1000;
                ms = d < 0 ? 0 : d > WH_RETRY_AFTER_MAX ? WH_RETRY_AFTER_MAX : d;
            }
        }
        sl->retry_after_ms = ms;
    }
    return n;
}

static void on_socket_ready(void *arg, int fd, uint32_t events)
{
    gw_sink *s = arg;
    int running = 0;
    int mask = 0;
    if (events & ITR_EV_READ)
        mask |= CURL_CSELECT_IN;
    if (events & ITR_EV_WRITE)
        mask |= CURL_CSELECT_OUT;
    if (events & ITR_EV_ERROR)
        mask |= CURL_CSELECT_ERR;
    curl_multi_socket_action(s->multi, fd, mask, &running);
    check_done(s);
    pump(s);
}

static int on_curl_socket(CURL *e, curl_socket_t fd, int what, void *arg, void *sockp)
{
    gw_sink *s = arg;
    (void)e;
    (void)sockp;
    if (what == CURL_POLL_REMOVE) {
        itr_loop_unwatch(s->env->loop, fd);
        return 0;
    }
    uint32_t ev = 0;
    if (what & CURL_POLL_IN)
        ev |= ITR_EV_READ;
    if (what & CURL_POLL_OUT)
        ev |= ITR_EV_WRITE;
    if (itr_loop_watch(s->env->loop, fd, ev, on_socket_ready, s) < 0) {
        s->env->error(s->env, "other", "watching a connection's socket failed");
        return -1;
    }
    return 0;
}

static int on_curl_timer(CURLM *m, long timeout_ms, void *arg)
{
    gw_sink *s = arg;
    (void)m;
    if (timeout_ms < 0)
        itr_loop_timer_cancel(s->env->loop, &s->curl_due);
    else
        itr_loop_timer_set(s->env->loop, &s->curl_due,
                           itr_now_ns() + (uint64_t)timeout_ms * 1000000u);
    return 0;
}

static void on_curl_due(void *arg, uint64_t now)
{
    gw_sink *s = arg;
    int running = 0;
    (void)now;
    curl_multi_socket_action(s->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(s);
    pump(s);
}

/* ---- batching ---- */

static void send_filling(gw_sink *s)
{
    struct slot *sl = s->filling;
    s->filling = NULL;
    itr_loop_timer_cancel(s->env->loop, &s->linger_due);
    new_id(sl);
    slot_send(s, sl);
}

static void on_linger_due(void *arg, uint64_t now)
{
    gw_sink *s = arg;
    (void)now;
    if (s->filling)
        send_filling(s);
    pump(s);
}

static struct slot *free_slot(gw_sink *s)
{
    for (uint32_t i = 0; i < s->c.max_concurrent; i++)
        if (s->slots[i].state == SLOT_FREE)
            return &s->slots[i];
    return NULL;
}

static void pump(gw_sink *s)
{
    char urlbuf[WH_URL_MAX];
    if (s->in_pump) {
        s->pump_again = 1;
        return;
    }
    s->in_pump = 1;
    do {
        s->pump_again = 0;
        while (s->pend_n) {
            gw_delivery *d = s->pend[s->pend_head];
            const char *url = target_url(s, d, urlbuf, sizeof(urlbuf));
            struct slot *sl = s->filling;
            if (!url) {
                /* A batch of its own that goes to the dead-letter file, not to the network. */
                if (sl)
                    send_filling(s);
                if (!(sl = free_slot(s)))
                    break;
                if (body_append(sl, d->msg))
                    break;
                sl->state = SLOT_FILLING;
                sl->url[0] = 0;
                sl->bad_url = "the route's destination renders to a URL longer than 2047 bytes";
                sl->d[sl->n++] = d;
                s->pend_head = (s->pend_head + 1) % WH_PEND_CAP;
                s->pend_n--;
                s->env->error(s->env, "delivery", "route %s: %s", gw_route_sink_route_name(d->rs),
                              sl->bad_url);
                new_id(sl);
                slot_send(s, sl);
                continue;
            }
            if (sl && strcmp(sl->url, url)) {
                send_filling(s); /* one URL per batch */
                sl = NULL;
            }
            if (!sl) {
                if (!(sl = free_slot(s)))
                    break; /* every slot busy: wait for a response */
                sl->state = SLOT_FILLING;
                snprintf(sl->url, sizeof(sl->url), "%s", url);
                s->filling = sl;
            }
            size_t before = sl->len;
            if (body_append(sl, d->msg)) {
                s->env->error(s->env, "other", "out of memory for a request body: waiting");
                if (sl->n) {
                    send_filling(s);
                } else {
                    slot_release(s, sl);
                    s->filling = NULL;
                }
                break;
            }
            if (sl->n && sl->len + 1 > s->c.batch_max_bytes) {
                sl->len = before; /* does not fit: it starts the next batch */
                send_filling(s);
                continue;
            }
            sl->d[sl->n++] = d;
            s->pend_head = (s->pend_head + 1) % WH_PEND_CAP;
            s->pend_n--;
            if (sl->n >= s->c.batch_max_messages || sl->len + 1 >= s->c.batch_max_bytes)
                send_filling(s);
        }
        if (s->filling) {
            if (s->flushing || !s->c.linger_ms)
                send_filling(s);
            else if (!itr_timer_armed(&s->linger_due))
                itr_loop_timer_set(s->env->loop, &s->linger_due,
                                   itr_now_ns() + s->c.linger_ms * 1000000u);
        }
    } while (s->pump_again);
    s->in_pump = 0;
    if (s->refused && s->pend_n < WH_PEND_CAP / 2) {
        s->refused = 0;
        s->env->ready(s->env);
    }
}

/* ---- connector interface ---- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int webhook_validate(const cJSON *conf, const char *where, char *err, size_t errlen)
{
    struct wh_conf wc;
    int rc = conf_parse(&wc, conf, where, err, errlen);
    if (rc == 0)
        conf_free(&wc);
    return rc;
}

static void webhook_close(gw_sink *s);

static int slot_init(gw_sink *s, struct slot *sl)
{
    sl->s = s;
    itr_timer_init(&sl->retry_due, on_retry_due, sl);
    sl->d = calloc(s->c.batch_max_messages, sizeof(*sl->d));
    size_t nh = WH_NFIXED_HEADERS + s->c.nheaders;
    sl->hdr = calloc(nh, sizeof(*sl->hdr));
    /* Grown on demand (rarely: up to batch_max_bytes, or one larger message), never shrunk. */
    sl->cap = s->c.batch_max_bytes + 4096 < WH_BODY_INITIAL ? s->c.batch_max_bytes + 4096
                                                            : WH_BODY_INITIAL;
    sl->body = malloc(sl->cap);
    sl->easy = curl_easy_init();
    if (!sl->d || !sl->hdr || !sl->body || !sl->easy)
        return -1;
    /* Our own list nodes: the three webhook-* lines are rewritten in place per attempt. */
    static char ctype[] = "Content-Type: application/json";
    static char expect[] = "Expect:"; /* no 100-continue round trip */
    char *lines[WH_NFIXED_HEADERS] = {ctype, sl->h_id, sl->h_ts, sl->h_sig, expect};
    for (size_t i = 0; i < nh; i++) {
        sl->hdr[i].data = i < WH_NFIXED_HEADERS ? lines[i] : s->c.headers[i - WH_NFIXED_HEADERS];
        sl->hdr[i].next = i + 1 < nh ? &sl->hdr[i + 1] : NULL;
    }
    if (!s->c.keylen)
        sl->hdr[2].next = &sl->hdr[4]; /* unsigned: no webhook-signature line */
    CURL *e = sl->easy;
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)sl);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)s->c.timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)s->c.timeout_ms);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, sl->hdr);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "intentra-gateway/" INTENTRA_VERSION);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, sl);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, sl);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, s->c.tls_verify ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, s->c.tls_verify ? 2L : 0L);
    if (s->c.ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, s->c.ca_file);
    return 0;
}

static int webhook_open(gw_sink **out, const cJSON *conf, gw_sink_env *env, char *err,
                        size_t errlen)
{
    char where[300];
    int rc;
    gw_sink *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return ITR_ERR_NOMEM;
    }
    pthread_once(&curl_once, curl_init_once);
    s->env = env;
    s->dlq_fd = -1;
    itr_timer_init(&s->curl_due, on_curl_due, s);
    itr_timer_init(&s->linger_due, on_linger_due, s);
    s->rng = itr_now_ns() ^ (uint64_t)(uintptr_t)s;
    if (!s->rng)
        s->rng = 1;
    snprintf(where, sizeof(where), "sinks.%s", env->name);
    if ((rc = conf_parse(&s->c, conf, where, err, errlen)) < 0) {
        free(s);
        return rc;
    }
    if (s->c.secret_file && (rc = load_secret_file(&s->c, env->name, err, errlen)) < 0)
        goto fail;
    if (s->c.dead_letter_file && (rc = dlq_open(s, err, errlen)) < 0)
        goto fail;
    s->pend = calloc(WH_PEND_CAP, sizeof(*s->pend));
    s->slots = calloc(s->c.max_concurrent, sizeof(*s->slots));
    s->multi = curl_multi_init();
    rc = ITR_ERR_NOMEM;
    if (!s->pend || !s->slots || !s->multi) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    for (uint32_t i = 0; i < s->c.max_concurrent; i++) {
        if (slot_init(s, &s->slots[i])) {
            snprintf(err, errlen, "out of memory (curl handles)");
            goto fail;
        }
    }
    curl_multi_setopt(s->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(s->multi, CURLMOPT_SOCKETDATA, s);
    curl_multi_setopt(s->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(s->multi, CURLMOPT_TIMERDATA, s);
    curl_multi_setopt(s->multi, CURLMOPT_MAXCONNECTS, (long)s->c.max_concurrent);
    curl_multi_setopt(s->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)s->c.max_concurrent);
    set_state(s, GW_SINK_STARTING);
    char shown[WH_URL_MAX];
    env->log(env, 2, "webhook: POST to %s (%s, batches of <= %" PRIu32 " messages)",
             url_shown(s->c.url, shown, sizeof(shown)), s->c.keylen ? "signed" : "unsigned",
             s->c.batch_max_messages);
    *out = s;
    return 0;
fail:
    webhook_close(s);
    return rc;
}

static size_t webhook_submit(gw_sink *s, gw_delivery **d, size_t n)
{
    size_t room = WH_PEND_CAP - s->pend_n;
    size_t take = n < room ? n : room;
    for (size_t i = 0; i < take; i++)
        s->pend[(s->pend_head + s->pend_n + i) % WH_PEND_CAP] = d[i];
    s->pend_n += take;
    held_add(s, take);
    if (take < n)
        s->refused = 1;
    pump(s);
    return take;
}

static int webhook_flush(gw_sink *s, uint64_t deadline_ns)
{
    s->flushing = 1;
    int rc = 0;
    for (;;) {
        pump(s);
        if (!s->held)
            break;
        rc = gw_sink_run_until(s->env->loop, deadline_ns);
        if (rc)
            break;
    }
    s->flushing = 0;
    return rc;
}

static void webhook_status(gw_sink *s, gw_sink_status *st)
{
    st->state = (gw_sink_state)atomic_load_explicit(&s->state, memory_order_relaxed);
    st->in_flight = atomic_load_explicit(&s->held_view, memory_order_relaxed);
    st->buffered_bytes = 0;
}

static void webhook_close(gw_sink *s)
{
    if (!s)
        return;
    itr_loop_timer_cancel(s->env->loop, &s->linger_due);
    /* Deliveries still held are completed by the runtime as not durable. */
    for (uint32_t i = 0; s->slots && i < s->c.max_concurrent; i++) {
        struct slot *sl = &s->slots[i];
        itr_loop_timer_cancel(s->env->loop, &sl->retry_due);
        if (sl->easy && sl->state == SLOT_IN_FLIGHT && s->multi)
            curl_multi_remove_handle(s->multi, sl->easy);
    }
    if (s->multi)
        curl_multi_cleanup(s->multi); /* closes the cached connections (unwatching them) */
    itr_loop_timer_cancel(s->env->loop, &s->curl_due);
    for (uint32_t i = 0; s->slots && i < s->c.max_concurrent; i++) {
        struct slot *sl = &s->slots[i];
        if (sl->easy)
            curl_easy_cleanup(sl->easy);
        free(sl->d);
        free(sl->hdr);
        free(sl->body);
    }
    if (s->dlq_fd >= 0)
        close(s->dlq_fd);
    free(s->slots);
    free(s->pend);
    conf_free(&s->c);
    free(s);
}

const gw_connector gw_webhook_connector = {
    .type = "webhook",
    .validate = webhook_validate,
    .open = webhook_open,
    .submit = webhook_submit,
    .flush = webhook_flush,
    .status = webhook_status,
    .close = webhook_close,
};
