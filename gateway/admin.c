/* admin.c: the admin HTTP API on libmicrohttpd (docs/ADMIN.md).
 *
 * Threads: libmicrohttpd runs its own pool (admin.threads) with an internal polling thread
 * per pool member; every handler here runs on one of them and talks to the gateway only
 * through control.h / publish.h, which never block the packet path. A request is handled in
 * three phases of the access handler: (1) headers: route, method, token and Content-Length are
 * checked before a byte of the body is read, so unauthenticated or oversized requests cost
 * nothing; (2) body chunks are copied into a buffer capped at admin.max_body_bytes; (3) the
 * request is executed and answered. POST /v1/publish with "wait" suspends the connection
 * until the gateway reports the outcome (no admin thread is held while waiting).
 *
 * Locks: admin->lock guards the list of suspended publishes and `stopping`; each publish
 * wait has its own lock because the gateway may report after the admin server is gone.
 * Order: admin->lock, then pub_wait->lock.
 */
#define _POSIX_C_SOURCE 200809L /* strdup, O_CLOEXEC, O_NOFOLLOW, fsync */
#include "admin.h"
#include "json_check.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include <microhttpd.h>
#include <sodium.h>

#include <intentra/driver.h>
#include <intentra/error.h>
#include <intentra/keys.h>

#include "log.h"
#include "metrics.h"

#define ADMIN_TOKEN_HASH 32
/* A body over the cap without Content-Length (chunked) is read and thrown away up to this
 * many times the cap, so the client still gets its 413; past that the connection is closed. */
#define ADMIN_DISCARD_FACTOR             4
#define ADMIN_PUBLISH_DEFAULT_TIMEOUT_MS 5000u
#define ADMIN_AUTH_LOG_INTERVAL_NS       (60ull * 1000 * 1000 * 1000)

enum endpoint {
    EP_NONE = 0,
    EP_HEALTHZ,
    EP_READYZ,
    EP_METRICS,
    EP_SHARDS,
    EP_SHARD,
    EP_PEERS,
    EP_PEER,
    EP_ROUTES,
    EP_SINKS,
    EP_PUBLISH,
};

enum method {
    M_GET = 1 << 0,
    M_HEAD = 1 << 1,
    M_PUT = 1 << 2,
    M_PATCH = 1 << 3,
    M_DELETE = 1 << 4,
    M_POST = 1 << 5,
    M_OTHER = 1 << 6,
};

static const struct {
    unsigned methods;
    const char *allow;
} ep_methods[] = {
    [EP_NONE] = {0, ""},
    [EP_HEALTHZ] = {M_GET | M_HEAD, "GET, HEAD"},
    [EP_READYZ] = {M_GET | M_HEAD, "GET, HEAD"},
    [EP_METRICS] = {M_GET | M_HEAD, "GET, HEAD"},
    [EP_SHARDS] = {M_GET | M_HEAD | M_PUT | M_PATCH | M_DELETE, "GET, HEAD, PUT, PATCH, DELETE"},
    [EP_SHARD] = {M_GET | M_HEAD | M_PUT | M_PATCH | M_DELETE, "GET, HEAD, PUT, PATCH, DELETE"},
    [EP_PEERS] = {M_GET | M_HEAD, "GET, HEAD"},
    [EP_PEER] = {M_DELETE, "DELETE"},
    [EP_ROUTES] = {M_GET | M_HEAD | M_PUT, "GET, HEAD, PUT"},
    [EP_SINKS] = {M_GET | M_HEAD, "GET, HEAD"},
    [EP_PUBLISH] = {M_POST, "POST"},
};

/* A publish waiting for the gateway's done callback. Two references: the request and the
 * callback; the last one frees it. */
struct pub_wait {
    pthread_mutex_t lock;
    int refs;
    int done;
    gw_publish_result res;
    struct MHD_Connection *conn; /* set while suspended; NULL once resumed or detached */
    int detached;                /* the admin server stopped while waiting */
    struct pub_wait *next;       /* admin->waiting, under admin->lock */
    gw_admin_publish p;          /* keeps the body alive while the gateway copies it */
};

struct gw_admin {
    struct MHD_Daemon *daemon;
    struct gw_gateway *g;
    uint8_t token_hash[ADMIN_TOKEN_HASH];
    int have_token;
    int open_healthz, open_readyz, open_metrics;
    uint64_t max_body;
    int port;
    char *tls_key, *tls_cert; /* PEM text; libmicrohttpd reads it at start (key wiped at stop) */
    size_t tls_key_len;
    gw_lograte *auth_log;

    pthread_mutex_t lock;
    struct pub_wait *waiting; /* suspended publishes, under lock */
    int stopping;             /* under lock */

    _Atomic uint64_t responses[6]; /* by status class: [1]=1xx .. [5]=5xx */
    _Atomic uint64_t auth_failures;
};

/* Per-request state (libmicrohttpd's con_cls). */
struct req {
    enum endpoint ep;
    unsigned method;
    char id[GW_SHARD_ID_MAX]; /* {id} of /v1/shards/{id}, {key} of /v1/peers/{key} */
    char *body;
    size_t len, cap;
    uint64_t discarded; /* bytes thrown away past the cap */
    int too_large;
    struct pub_wait *pub;
};

/* ---- small helpers ---- */

static void set_error(gw_ctl_error *e, int status, const char *code, const char *field,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void set_error(gw_ctl_error *e, int status, const char *code, const char *field,
                      const char *fmt, ...)
{
    e->http_status = status;
    snprintf(e->code, sizeof(e->code), "%s", code);
    snprintf(e->field, sizeof(e->field), "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

static void pub_wait_unref(struct pub_wait *w)
{
    pthread_mutex_lock(&w->lock);
    int last = --w->refs == 0;
    pthread_mutex_unlock(&w->lock);
    if (!last)
        return;
    gw_admin_publish_clear(&w->p);
    pthread_mutex_destroy(&w->lock);
    free(w);
}

/* ---- JSON body parsing ---- */

static int utf8_valid(const unsigned char *s, size_t n, size_t *bad)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4;
            cp = c & 0x07;
        } else {
            goto fail;
        }
        if (n - i < len)
            goto fail;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                goto fail;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        /* overlong forms, surrogates, beyond U+10FFFF */
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
            goto fail;
        i += len;
    }
    return 1;
fail:
    *bad = i;
    return 0;
}

static void line_col(const char *s, size_t off, unsigned *line, unsigned *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        if (s[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static int name_cmp(const void *a, const void *b)
{
    const char *x = *(const char *const *)a;
    const char *y = *(const char *const *)b;
    return strcmp(x, y);
}

/* Append ".name" or "[i]" to a JSON path in a fixed buffer (cut when too long). */
static void path_push(char *path, size_t cap, const char *name, long index)
{
    size_t n = strlen(path);
    if (name)
        snprintf(path + n, cap - n, "%s%s", n ? "." : "", name);
    else
        snprintf(path + n, cap - n, "[%ld]", index);
}

/* Find a duplicated member name at any depth; fills path with where. 1 if found, -1 on
 * allocation failure, 0 if none. */
static int find_duplicate(const cJSON *v, char *path, size_t cap)
{
    if (!cJSON_IsObject(v) && !cJSON_IsArray(v))
        return 0;
    size_t base = strlen(path);
    if (cJSON_IsObject(v)) {
        size_t n = 0;
        for (const cJSON *c = v->child; c; c = c->next)
            n++;
        if (n > 1) {
            const char **names = malloc(n * sizeof(*names));
            if (!names)
                return -1;
            size_t k = 0;
            for (const cJSON *c = v->child; c; c = c->next)
                names[k++] = c->string;
            qsort(names, n, sizeof(*names), name_cmp);
            for (k = 1; k < n; k++) {
                if (!strcmp(names[k - 1], names[k])) {
                    path_push(path, cap, names[k], 0);
                    free(names);
                    return 1;
                }
            }
            free(names);
        }
        for (const cJSON *c = v->child; c; c = c->next) {
            path_push(path, cap, c->string, 0);
            int r = find_duplicate(c, path, cap);
            if (r)
                return r;
            path[base] = '\0';
        }
        return 0;
    }
    long i = 0;
    for (const cJSON *c = v->child; c; c = c->next, i++) {
        path_push(path, cap, NULL, i);
        int r = find_duplicate(c, path, cap);
        if (r)
            return r;
        path[base] = '\0';
    }
    return 0;
}

int gw_admin_parse_json(const char *body, size_t len, cJSON **out, gw_ctl_error *e)
{
    *out = NULL;
    if (len == 0) {
        set_error(e, 400, "invalid_json", NULL, "the request body is empty (expected JSON)");
        return ITR_ERR_INVALID;
    }
    const char *nul = memchr(body, '\0', len);
    if (nul) {
        set_error(e, 400, "invalid_json", NULL,
                  "the request body contains a NUL byte at offset %zu", (size_t)(nul - body));
        return ITR_ERR_INVALID;
    }
    size_t bad;
    if (!utf8_valid((const unsigned char *)body, len, &bad)) {
        unsigned line, col;
        line_col(body, bad, &line, &col);
        set_error(e, 400, "invalid_json", NULL,
                  "request body:%u:%u: invalid UTF-8 (JSON text must be UTF-8)", line, col);
        return ITR_ERR_INVALID;
    }
    const char *end = NULL;
    cJSON *doc = cJSON_ParseWithLengthOpts(body, len, &end, 0);
    if (!doc) {
        /* cJSON reports the failure position through end; NULL means out of memory. */
        if (!end) {
            set_error(e, 500, "internal", NULL, "out of memory parsing the request body");
            return ITR_ERR_NOMEM;
        }
        size_t off = (size_t)(end - body);
        if (off > len)
            off = len;
        unsigned line, col;
        line_col(body, off, &line, &col);
        set_error(e, 400, "invalid_json", NULL, "request body:%u:%u: syntax error near %s", line,
                  col, off < len ? "this position" : "the end of the body");
        return ITR_ERR_INVALID;
    }
    size_t off = (size_t)(end - body);
    while (off < len &&
           (body[off] == ' ' || body[off] == '\t' || body[off] == '\n' || body[off] == '\r'))
        off++;
    if (off < len) {
        unsigned line, col;
        line_col(body, off, &line, &col);
        set_error(e, 400, "invalid_json", NULL,
                  "request body:%u:%u: unexpected text after the JSON value", line, col);
        cJSON_Delete(doc);
        return ITR_ERR_INVALID;
    }
    char path[128] = "";
    int dup = find_duplicate(doc, path, sizeof(path));
    if (dup < 0) {
        cJSON_Delete(doc);
        set_error(e, 500, "internal", NULL, "out of memory checking the request body");
        return ITR_ERR_NOMEM;
    }
    if (dup) {
        cJSON_Delete(doc);
        set_error(e, 400, "invalid_json", path, "request body: %s: member name appears twice",
                  path);
        return ITR_ERR_INVALID;
    }
    *out = doc;
    return ITR_OK;
}

/* ---- publish body ---- */

static int parse_target(const cJSON *t, gw_admin_publish *p, gw_ctl_error *e)
{
    if (!cJSON_IsObject(t)) {
        set_error(e, 422, "invalid_type", "target",
                  "target: expected an object {\"peer\": hex} | {\"shard\": id} | {\"all\": "
                  "true}, got %s",
                  gw_json_type_name(t));
        return ITR_ERR_INVALID;
    }
    int members = 0;
    for (const cJSON *c = t->child; c; c = c->next)
        members++;
    if (members != 1) {
        set_error(e, 422, "validation_failed", "target",
                  "target: expected exactly one of \"peer\", \"shard\", \"all\" (got %d members)",
                  members);
        return ITR_ERR_INVALID;
    }
    const cJSON *m = t->child;
    if (!strcmp(m->string, "peer")) {
        uint8_t key[ITR_KEY_LEN];
        if (!cJSON_IsString(m) || strlen(m->valuestring) != 2 * ITR_KEY_LEN ||
            itr_hex_decode(key, sizeof(key), m->valuestring, 2 * ITR_KEY_LEN) != ITR_OK) {
            set_error(e, 422, "invalid_value", "target.peer",
                      "target.peer: expected a peer static public key of 64 hex digits");
            return ITR_ERR_INVALID;
        }
        itr_hex_encode(p->target_buf, key, sizeof(key));
        p->kind = GW_TARGET_PEER;
        p->target = p->target_buf;
        return ITR_OK;
    }
    if (!strcmp(m->string, "shard")) {
        size_t n = cJSON_IsString(m) ? strlen(m->valuestring) : 0;
        int ok = n > 0 && n < GW_SHARD_ID_MAX;
        for (size_t i = 0; ok && i < n; i++) {
            char ch = m->valuestring[i];
            ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '_' || ch == '.' || ch == '-';
        }
        if (!ok) {
            set_error(e, 422, "invalid_value", "target.shard",
                      "target.shard: expected a shard id (1..%d characters of [A-Za-z0-9_.-])",
                      GW_SHARD_ID_MAX - 1);
            return ITR_ERR_INVALID;
        }
        p->kind = GW_TARGET_SHARD;
        p->target = m->valuestring;
        return ITR_OK;
    }
    if (!strcmp(m->string, "all")) {
        if (!cJSON_IsTrue(m)) {
            set_error(e, 422, "invalid_value", "target.all", "target.all: expected true");
            return ITR_ERR_INVALID;
        }
        p->kind = GW_TARGET_ALL;
        p->target = "";
        return ITR_OK;
    }
    set_error(e, 422, "unknown_field", "target",
              "target.%.64s: unknown member (expected one of: "
              "peer, shard, all)",
              m->string);
    return ITR_ERR_INVALID;
}

int gw_admin_publish_parse(const cJSON *doc, gw_admin_publish *out, gw_ctl_error *e)
{
    memset(out, 0, sizeof(*out));
    out->intent = ITR_INTENT_RELIABLE;
    out->timeout_ms = ADMIN_PUBLISH_DEFAULT_TIMEOUT_MS;
    if (!cJSON_IsObject(doc)) {
        set_error(e, 422, "invalid_type", "", "request body: expected an object, got %s",
                  gw_json_type_name(doc));
        return ITR_ERR_INVALID;
    }
    const cJSON *target = NULL, *topic = NULL, *payload = NULL, *payload64 = NULL;
    for (const cJSON *c = doc->child; c; c = c->next) {
        const char *k = c->string;
        if (!strcmp(k, "target")) {
            target = c;
        } else if (!strcmp(k, "topic")) {
            topic = c;
        } else if (!strcmp(k, "payload")) {
            payload = c;
        } else if (!strcmp(k, "payload_base64")) {
            payload64 = c;
        } else if (!strcmp(k, "intent")) {
            if (cJSON_IsString(c) && !strcmp(c->valuestring, "reliable")) {
                out->intent = ITR_INTENT_RELIABLE;
            } else if (cJSON_IsString(c) && !strcmp(c->valuestring, "realtime")) {
                out->intent = ITR_INTENT_REALTIME;
            } else {
                set_error(e, 422, "invalid_value", "intent",
                          "intent: expected \"reliable\" or \"realtime\"");
                return ITR_ERR_INVALID;
            }
        } else if (!strcmp(k, "priority")) {
            /* Range first: converting an out-of-range double to an integer is undefined. */
            if (!cJSON_IsNumber(c) || !(c->valuedouble >= 0 && c->valuedouble <= 7) ||
                c->valuedouble != (double)(int)c->valuedouble) {
                set_error(e, 422, "invalid_value", "priority",
                          "priority: expected an integer 0..7");
                return ITR_ERR_INVALID;
            }
            out->priority = (uint8_t)c->valuedouble;
        } else if (!strcmp(k, "wait")) {
            if (!cJSON_IsBool(c)) {
                set_error(e, 422, "invalid_type", "wait", "wait: expected true or false, got %s",
                          gw_json_type_name(c));
                return ITR_ERR_INVALID;
            }
            out->wait = cJSON_IsTrue(c);
        } else if (!strcmp(k, "timeout_ms")) {
            if (!cJSON_IsNumber(c) ||
                !(c->valuedouble >= 1 && c->valuedouble <= GW_ADMIN_PUBLISH_MAX_TIMEOUT_MS) ||
                c->valuedouble != (double)(int64_t)c->valuedouble) {
                set_error(e, 422, "invalid_value", "timeout_ms",
                          "timeout_ms: expected an integer 1..%u", GW_ADMIN_PUBLISH_MAX_TIMEOUT_MS);
                return ITR_ERR_INVALID;
            }
            out->timeout_ms = (uint32_t)c->valuedouble;
        } else {
            set_error(e, 422, "unknown_field", k,
                      "%.64s: unknown member (expected one of: target, topic, payload, "
                      "payload_base64, intent, priority, wait, timeout_ms)",
                      k);
            return ITR_ERR_INVALID;
        }
    }
    if (!target) {
        set_error(e, 422, "missing_field", "target", "target: required");
        return ITR_ERR_INVALID;
    }
    int rc = parse_target(target, out, e);
    if (rc != ITR_OK)
        return rc;
    if (!topic) {
        set_error(e, 422, "missing_field", "topic", "topic: required");
        return ITR_ERR_INVALID;
    }
    if (!cJSON_IsString(topic) ||
        !itr_topic_valid(topic->valuestring, strlen(topic->valuestring))) {
        set_error(e, 422, "invalid_value", "topic",
                  "topic: expected 1..%d characters of [A-Za-z0-9._:/-]", ITR_MAX_TOPIC);
        return ITR_ERR_INVALID;
    }
    out->topic = topic->valuestring;
    if ((payload != NULL) == (payload64 != NULL)) {
        set_error(e, 422, payload ? "validation_failed" : "missing_field", "payload",
                  "payload: give exactly one of \"payload\" (a string) or \"payload_base64\"");
        return ITR_ERR_INVALID;
    }
    if (payload) {
        if (!cJSON_IsString(payload)) {
            set_error(e, 422, "invalid_type", "payload", "payload: expected a string, got %s",
                      gw_json_type_name(payload));
            return ITR_ERR_INVALID;
        }
        size_t n = strlen(payload->valuestring);
        out->body = malloc(n ? n : 1);
        if (!out->body) {
            set_error(e, 500, "internal", NULL, "out of memory");
            return ITR_ERR_NOMEM;
        }
        memcpy(out->body, payload->valuestring, n);
        out->body_len = n;
    } else {
        if (!cJSON_IsString(payload64)) {
            set_error(e, 422, "invalid_type", "payload_base64",
                      "payload_base64: expected a string, got %s", gw_json_type_name(payload64));
            return ITR_ERR_INVALID;
        }
        size_t n = strlen(payload64->valuestring);
        out->body = malloc(n ? n : 1);
        if (!out->body) {
            set_error(e, 500, "internal", NULL, "out of memory");
            return ITR_ERR_NOMEM;
        }
        size_t bin = 0;
        const char *endp = NULL;
        if (sodium_base642bin(out->body, n ? n : 1, payload64->valuestring, n, NULL, &bin, &endp,
                              sodium_base64_VARIANT_ORIGINAL) != 0 ||
            (endp && *endp)) {
            gw_admin_publish_clear(out);
            set_error(e, 422, "invalid_value", "payload_base64",
                      "payload_base64: expected standard base64 with padding (RFC 4648 §4)");
            return ITR_ERR_INVALID;
        }
        out->body_len = bin;
    }
    return ITR_OK;
}

void gw_admin_publish_clear(gw_admin_publish *p)
{
    free(p->body);
    p->body = NULL;
    p->body_len = 0;
}

/* ---- responses ---- */

static enum MHD_Result send_buffer(gw_admin *a, struct MHD_Connection *conn, unsigned status,
                                   char *data, size_t len, const char *ctype, const char *etag,
                                   const char *allow, const char *location)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(data);
        return MHD_NO;
    }
    if (ctype)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (etag)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ETAG, etag);
    if (allow)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, allow);
    if (location)
        MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, location);
    if (status == 401)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                "Bearer realm=\"intentra-gateway\"");
    if (status == 503)
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    if (status >= 100 && status < 600)
        atomic_fetch_add_explicit(&a->responses[status / 100], 1, memory_order_relaxed);
    return ret;
}

/* Send v (consumed) as JSON. */
static enum MHD_Result send_json(gw_admin *a, struct MHD_Connection *conn, unsigned status,
                                 cJSON *v, const char *etag, const char *location)
{
    char *text = v ? cJSON_PrintUnformatted(v) : NULL;
    cJSON_Delete(v);
    if (!text) {
        static const char oom[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\",\"field\":null}}";
        char *copy = strdup(oom);
        if (!copy)
            return MHD_NO;
        return send_buffer(a, conn, 500, copy, strlen(copy), "application/json", NULL, NULL, NULL);
    }
    size_t n = strlen(text);
    /* cJSON_free is free with the default hooks, which is what libmicrohttpd will call. */
    char *body = realloc(text, n + 2);
    if (!body) {
        free(text);
        return MHD_NO;
    }
    body[n] = '\n';
    body[n + 1] = '\0';
    return send_buffer(a, conn, status, body, n + 1, "application/json", etag, NULL, location);
}

static enum MHD_Result send_error(gw_admin *a, struct MHD_Connection *conn, const gw_ctl_error *e,
                                  const char *etag, const char *allow)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *err = cJSON_AddObjectToObject(root, "error");
    if (err) {
        cJSON_AddStringToObject(err, "code", e->code);
        cJSON_AddStringToObject(err, "message", e->message);
        if (e->field[0])
            cJSON_AddStringToObject(err, "field", e->field);
        else
            cJSON_AddNullToObject(err, "field");
    }
    int status = e->http_status >= 400 && e->http_status < 600 ? e->http_status : 500;
    char *text = root && err ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!text)
        return MHD_NO;
    size_t n = strlen(text);
    char *body = realloc(text, n + 2);
    if (!body) {
        free(text);
        return MHD_NO;
    }
    body[n] = '\n';
    body[n + 1] = '\0';
    return send_buffer(a, conn, (unsigned)status, body, n + 1, "application/json", etag, allow,
                       NULL);
}

static enum MHD_Result send_simple_error(gw_admin *a, struct MHD_Connection *conn, int status,
                                         const char *code, const char *field, const char *msg)
{
    gw_ctl_error e;
    set_error(&e, status, code, field, "%s", msg);
    return send_error(a, conn, &e, NULL, NULL);
}

static enum MHD_Result send_no_content(gw_admin *a, struct MHD_Connection *conn, const char *etag)
{
    char *empty = strdup("");
    if (!empty)
        return MHD_NO;
    return send_buffer(a, conn, 204, empty, 0, NULL, etag, NULL, NULL);
}

static void format_etag(char *buf, size_t cap, uint64_t version)
{
    snprintf(buf, cap, "\"%llu\"", (unsigned long long)version);
}

/* ---- request routing and checks ---- */

static unsigned method_of(const char *m)
{
    if (!strcmp(m, "GET"))
        return M_GET;
    if (!strcmp(m, "HEAD"))
        return M_HEAD;
    if (!strcmp(m, "PUT"))
        return M_PUT;
    if (!strcmp(m, "PATCH"))
        return M_PATCH;
    if (!strcmp(m, "DELETE"))
        return M_DELETE;
    if (!strcmp(m, "POST"))
        return M_POST;
    return M_OTHER;
}

static int id_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= GW_SHARD_ID_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

/* Map a path to an endpoint; {id}/{key} copied into r->id. Unknown -> EP_NONE. */
static enum endpoint route_of(const char *url, struct req *r)
{
    if (!strcmp(url, "/healthz"))
        return EP_HEALTHZ;
    if (!strcmp(url, "/readyz"))
        return EP_READYZ;
    if (!strcmp(url, "/metrics"))
        return EP_METRICS;
    if (!strcmp(url, "/v1/shards"))
        return EP_SHARDS;
    if (!strcmp(url, "/v1/peers"))
        return EP_PEERS;
    if (!strcmp(url, "/v1/routes"))
        return EP_ROUTES;
    if (!strcmp(url, "/v1/sinks"))
        return EP_SINKS;
    if (!strcmp(url, "/v1/publish"))
        return EP_PUBLISH;
    if (!strncmp(url, "/v1/shards/", 11) && id_valid(url + 11)) {
        snprintf(r->id, sizeof(r->id), "%s", url + 11);
        return EP_SHARD;
    }
    if (!strncmp(url, "/v1/peers/", 10) && strlen(url + 10) < sizeof(r->id) &&
        !strchr(url + 10, '/') && url[10]) {
        snprintf(r->id, sizeof(r->id), "%s", url + 10);
        return EP_PEER;
    }
    return EP_NONE;
}

static int needs_token(const gw_admin *a, enum endpoint ep, const char *url)
{
    switch (ep) {
    case EP_HEALTHZ:
        return !a->open_healthz;
    case EP_READYZ:
        return !a->open_readyz;
    case EP_METRICS:
        return !a->open_metrics;
    case EP_NONE:
        /* Unknown paths under /v1 are not revealed before authentication. */
        return !strncmp(url, "/v1/", 4) || !strcmp(url, "/v1");
    default:
        return 1;
    }
}

static void log_auth_failure(gw_admin *a, struct MHD_Connection *conn, const char *why)
{
    atomic_fetch_add_explicit(&a->auth_failures, 1, memory_order_relaxed);
    char addr[INET6_ADDRSTRLEN + 8] = "?";
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci && ci->client_addr) {
        itr_addr ia;
        memset(&ia, 0, sizeof(ia));
        if (ci->client_addr->sa_family == AF_INET)
            memcpy(&ia.u.in, ci->client_addr, sizeof(ia.u.in));
        else if (ci->client_addr->sa_family == AF_INET6)
            memcpy(&ia.u.in6, ci->client_addr, sizeof(ia.u.in6));
        if (ci->client_addr->sa_family == AF_INET || ci->client_addr->sa_family == AF_INET6)
            itr_addr_format(&ia, addr, sizeof(addr));
    }
    /* One line per client address per minute: a token-guessing client cannot flood the log. */
    const char *colon = strrchr(addr, ':');
    size_t keylen = colon ? (size_t)(colon - addr) : strlen(addr);
    const gw_log_field f[] = {GW_F_STR("client", addr), GW_F_STR("reason", why)};
    if (a->auth_log)
        gw_lograte_emit(a->auth_log, addr, keylen, itr_now_ns(), GW_LOG_WARN, "admin_auth_failed",
                        f, 2);
}

/* 1 if the request carries the right token. */
static int authorized(gw_admin *a, struct MHD_Connection *conn, const char **why)
{
    if (!a->have_token) {
        *why = "no admin token is configured (set admin.token_file or admin.token_env)";
        return 0;
    }
    const char *h =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h) {
        *why = "missing Authorization header (expected \"Authorization: Bearer <token>\")";
        return 0;
    }
    if (strncasecmp(h, "Bearer ", 7) != 0) {
        *why = "Authorization scheme must be Bearer";
        return 0;
    }
    const char *tok = h + 7;
    while (*tok == ' ')
        tok++;
    size_t n = strlen(tok);
    while (n && (tok[n - 1] == ' ' || tok[n - 1] == '\t'))
        n--;
    /* Compare hashes: constant time in the token's content and independent of its length. */
    uint8_t hash[ADMIN_TOKEN_HASH];
    crypto_generichash(hash, sizeof(hash), (const unsigned char *)tok, n, NULL, 0);
    int ok = itr_ct_equal(hash, a->token_hash, sizeof(hash));
    sodium_memzero(hash, sizeof(hash));
    if (!ok)
        *why = "wrong token";
    return ok;
}

/* If-Match: absent -> 0 (no precondition); "*" -> 0; "\"N\"" or W/"N" -> N; anything else
 * can never match a current version -> UINT64_MAX (answered 412). */
static uint64_t if_match_of(struct MHD_Connection *conn)
{
    const char *h = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_MATCH);
    if (!h)
        return 0;
    while (*h == ' ')
        h++;
    if (!strcmp(h, "*"))
        return 0;
    if (!strncmp(h, "W/", 2))
        h += 2;
    if (*h != '"')
        return UINT64_MAX;
    h++;
    uint64_t v = 0;
    int digits = 0;
    while (*h >= '0' && *h <= '9') {
        if (v > (UINT64_MAX - 9) / 10)
            return UINT64_MAX;
        v = v * 10 + (uint64_t)(*h - '0');
        h++;
        digits++;
    }
    if (!digits || *h != '"' || v == 0)
        return UINT64_MAX;
    h++;
    while (*h == ' ')
        h++;
    return *h ? UINT64_MAX : v;
}

/* Content-Type of a request with a body must be JSON (merge-patch JSON for PATCH too). */
static int content_type_ok(struct MHD_Connection *conn)
{
    const char *ct =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
    if (!ct)
        return 1;
    size_t n = strcspn(ct, ";");
    while (n && ct[n - 1] == ' ')
        n--;
    return (n == 16 && !strncasecmp(ct, "application/json", 16)) ||
           (n == 28 && !strncasecmp(ct, "application/merge-patch+json", 28));
}

/* ---- query arguments ---- */

struct query_check {
    const char *const *allowed;
    const char *unknown;
};

static enum MHD_Result query_iter(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    (void)kind;
    (void)value;
    struct query_check *q = cls;
    for (const char *const *k = q->allowed; *k; k++) {
        if (!strcmp(*k, key))
            return MHD_YES;
    }
    q->unknown = key;
    return MHD_NO;
}

/* Parse a non-negative decimal query argument within [0, max]; 1 on success. */
static int query_uint(struct MHD_Connection *conn, const char *name, uint64_t max, uint64_t dflt,
                      uint64_t *out)
{
    const char *v = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, name);
    if (!v) {
        *out = dflt;
        return 1;
    }
    if (!*v)
        return 0;
    uint64_t x = 0;
    for (const char *p = v; *p; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        if (x > (UINT64_MAX - 9) / 10)
            return 0;
        x = x * 10 + (uint64_t)(*p - '0');
    }
    if (x > max)
        return 0;
    *out = x;
    return 1;
}

/* ---- handlers ---- */

static enum MHD_Result handle_health(gw_admin *a, struct MHD_Connection *conn, enum endpoint ep)
{
    cJSON *o = cJSON_CreateObject();
    unsigned status = 200;
    if (ep == EP_HEALTHZ) {
        int ok = gw_ctl_healthy(a->g);
        cJSON_AddStringToObject(o, "status", ok ? "ok" : "unhealthy");
        status = ok ? 200 : 503;
    } else {
        char why[256] = "";
        int ok = gw_ctl_ready(a->g, why, sizeof(why));
        cJSON_AddStringToObject(o, "status", ok ? "ready" : "not_ready");
        if (!ok)
            cJSON_AddStringToObject(o, "reason", why);
        status = ok ? 200 : 503;
    }
    return send_json(a, conn, status, o, NULL, NULL);
}

static enum MHD_Result handle_metrics(gw_admin *a, struct MHD_Connection *conn)
{
    gw_metrics_buf b;
    gw_metrics_buf_init(&b);
    int rc = gw_metrics_render(a->g, &b);
    gw_prom_family(&b, "intentra_admin_responses_total", GW_PROM_COUNTER,
                   "Admin API responses, by status class.");
    static const char *const classes[] = {"", "1xx", "2xx", "3xx", "4xx", "5xx"};
    for (int i = 1; i <= 5; i++) {
        gw_prom_label l = {"class", classes[i]};
        /* This response is counted once sent: the page shows the requests before it. */
        gw_prom_u64(&b, "intentra_admin_responses_total", &l, 1,
                    atomic_load_explicit(&a->responses[i], memory_order_relaxed));
    }
    gw_prom_family(&b, "intentra_admin_auth_failures_total", GW_PROM_COUNTER,
                   "Admin API requests refused for a missing or wrong token.");
    gw_prom_u64(&b, "intentra_admin_auth_failures_total", NULL, 0,
                atomic_load_explicit(&a->auth_failures, memory_order_relaxed));
    if (rc != ITR_OK || b.failed) {
        gw_metrics_buf_free(&b);
        return send_simple_error(a, conn, 500, "internal", NULL, "out of memory rendering metrics");
    }
    char *data = b.data;
    size_t len = b.len;
    if (!data) {
        data = strdup("");
        if (!data)
            return MHD_NO;
    }
    return send_buffer(a, conn, 200, data, len, "text/plain; version=0.0.4; charset=utf-8", NULL,
                       NULL, NULL);
}

static enum MHD_Result ctl_failed(gw_admin *a, struct MHD_Connection *conn, gw_ctl_error *e, int rc,
                                  uint64_t version)
{
    if (e->http_status == 0)
        set_error(e, 500, "internal", NULL, "%s", itr_strerror(rc));
    char etag[32];
    format_etag(etag, sizeof(etag), version);
    return send_error(a, conn, e, e->http_status == 412 && version ? etag : NULL, NULL);
}

static void log_change(struct req *r, const char *what, uint64_t version)
{
    static const char *const names[] = {"GET", "HEAD", "PUT", "PATCH", "DELETE", "POST"};
    const char *m = "?";
    for (unsigned i = 0; i < 6; i++) {
        if (r->method == (1u << i))
            m = names[i];
    }
    GW_LOG(GW_LOG_INFO, "admin_change", GW_F_STR("method", m), GW_F_STR("document", what),
           GW_F_STR("id", r->id), GW_F_U64("version", version));
}

static enum MHD_Result handle_shards(gw_admin *a, struct MHD_Connection *conn, struct req *r,
                                     const cJSON *body)
{
    gw_ctl_error e;
    memset(&e, 0, sizeof(e));
    uint64_t if_match = if_match_of(conn);
    uint64_t version = 0;
    int rc = ITR_OK;
    int created = 0;
    int whole = r->ep == EP_SHARDS;

    switch (r->method) {
    case M_PUT:
        rc = whole ? gw_ctl_shards_put(a->g, body, if_match, &version, &e)
                   : gw_ctl_shard_put(a->g, r->id, body, if_match, &version, &created, &e);
        break;
    case M_PATCH:
        rc = whole ? gw_ctl_shards_patch(a->g, body, if_match, &version, &e)
                   : gw_ctl_shard_patch(a->g, r->id, body, if_match, &version, &e);
        break;
    case M_DELETE:
        rc = whole ? gw_ctl_shards_delete(a->g, if_match, &version, &e)
                   : gw_ctl_shard_delete(a->g, r->id, if_match, &version, &e);
        break;
    default:
        break;
    }
    if (rc != ITR_OK)
        return ctl_failed(a, conn, &e, rc, version);
    if (r->method != M_GET && r->method != M_HEAD)
        log_change(r, "shards", version);
    char etag[32];
    if (r->method == M_DELETE) {
        format_etag(etag, sizeof(etag), version);
        return send_no_content(a, conn, etag);
    }
    /* Answer with the document as it is now (after a write: as written). */
    cJSON *doc = NULL;
    if (whole) {
        rc = gw_ctl_shards_get(a->g, &doc, &version);
        if (rc != ITR_OK)
            set_error(&e, 500, "internal", NULL, "%s", itr_strerror(rc));
    } else {
        rc = gw_ctl_shard_get(a->g, r->id, &doc, &version, &e);
    }
    if (rc != ITR_OK)
        return ctl_failed(a, conn, &e, rc, version);
    format_etag(etag, sizeof(etag), version);
    char location[GW_SHARD_ID_MAX + 16];
    snprintf(location, sizeof(location), "/v1/shards/%s", r->id);
    return send_json(a, conn, created ? 201 : 200, doc, etag, created ? location : NULL);
}

static enum MHD_Result handle_routes(gw_admin *a, struct MHD_Connection *conn, struct req *r,
                                     const cJSON *body)
{
    gw_ctl_error e;
    memset(&e, 0, sizeof(e));
    uint64_t version = 0;
    int rc;
    if (r->method == M_PUT) {
        rc = gw_ctl_routes_put(a->g, body, if_match_of(conn), &version, &e);
        if (rc != ITR_OK)
            return ctl_failed(a, conn, &e, rc, version);
        log_change(r, "routes", version);
    }
    cJSON *doc = NULL;
    rc = gw_ctl_routes_get(a->g, &doc, &version);
    if (rc != ITR_OK) {
        set_error(&e, 500, "internal", NULL, "%s", itr_strerror(rc));
        return ctl_failed(a, conn, &e, rc, 0);
    }
    char etag[32];
    format_etag(etag, sizeof(etag), version);
    return send_json(a, conn, 200, doc, etag, NULL);
}

static const char *suite_name(itr_suite s)
{
    return s == ITR_SUITE_CHACHAPOLY ? "chachapoly" : "aesgcm";
}

static void add_time(cJSON *o, const char *name, uint64_t wall_ns)
{
    char buf[48];
    time_t secs = (time_t)(wall_ns / 1000000000ull);
    struct tm tm;
    if (!gmtime_r(&secs, &tm)) {
        cJSON_AddNullToObject(o, name);
        return;
    }
    size_t n = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof(buf) - n, ".%03uZ", (unsigned)((wall_ns / 1000000ull) % 1000ull));
    cJSON_AddStringToObject(o, name, buf);
}

static enum MHD_Result handle_peers(gw_admin *a, struct MHD_Connection *conn)
{
    static const char *const allowed[] = {"offset", "limit", NULL};
    struct query_check q = {allowed, NULL};
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, query_iter, &q);
    if (q.unknown) {
        char msg[256];
        snprintf(msg, sizeof(msg), "%.64s: unknown query parameter (expected offset, limit)",
                 q.unknown);
        return send_simple_error(a, conn, 400, "invalid_parameter", q.unknown, msg);
    }
    uint64_t offset, limit;
    if (!query_uint(conn, "offset", UINT32_MAX, 0, &offset))
        return send_simple_error(a, conn, 400, "invalid_parameter", "offset",
                                 "offset: expected an integer >= 0");
    if (!query_uint(conn, "limit", GW_ADMIN_PEERS_MAX, GW_ADMIN_PEERS_DEFAULT, &limit) ||
        limit == 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "limit: expected an integer 1..%d", GW_ADMIN_PEERS_MAX);
        return send_simple_error(a, conn, 400, "invalid_parameter", "limit", msg);
    }
    gw_peer_row *rows = calloc((size_t)limit, sizeof(*rows));
    if (!rows)
        return send_simple_error(a, conn, 500, "internal", NULL, "out of memory");
    size_t n = 0, total = 0;
    int rc = gw_ctl_peers(a->g, (size_t)offset, rows, (size_t)limit, &n, &total);
    if (rc != ITR_OK) {
        free(rows);
        if (rc == ITR_ERR_WOULDBLOCK)
            return send_simple_error(a, conn, 503, "unavailable", NULL,
                                     "a worker did not answer in time; retry");
        return send_simple_error(a, conn, 500, "internal", NULL, itr_strerror(rc));
    }
    uint64_t now = itr_now_ns(), wall = itr_wall_ns();
    cJSON *root = cJSON_CreateObject();
    cJSON_AddNumberToObject(root, "total", (double)total);
    cJSON_AddNumberToObject(root, "offset", (double)offset);
    cJSON_AddNumberToObject(root, "limit", (double)limit);
    if (offset + n < total)
        cJSON_AddNumberToObject(root, "next_offset", (double)(offset + n));
    else
        cJSON_AddNullToObject(root, "next_offset");
    cJSON *arr = cJSON_AddArrayToObject(root, "peers");
    for (size_t i = 0; arr && i < n; i++) {
        const itr_peer_info *p = &rows[i].info;
        cJSON *o = cJSON_CreateObject();
        if (!o)
            break;
        char hex[2 * ITR_KEY_LEN + 1], addr[INET6_ADDRSTRLEN + 16];
        itr_hex_encode(hex, p->static_key, ITR_KEY_LEN);
        itr_addr_format(&p->addr, addr, sizeof(addr));
        cJSON_AddStringToObject(o, "key", hex);
        cJSON_AddStringToObject(o, "address", addr);
        cJSON_AddStringToObject(o, "shard", rows[i].shard);
        cJSON_AddStringToObject(o, "suite", suite_name(p->suite));
        cJSON_AddBoolToObject(o, "initiator", p->initiator);
        add_time(o, "connected_at", wall - (now > p->opened_ns ? now - p->opened_ns : 0));
        add_time(o, "last_seen", wall - (now > p->last_recv_ns ? now - p->last_recv_ns : 0));
        cJSON_AddNumberToObject(o, "idle_seconds",
                                now > p->last_recv_ns ? (double)(now - p->last_recv_ns) / 1e9 : 0);
        if (p->rtt_ns)
            cJSON_AddNumberToObject(o, "rtt_ms", (double)p->rtt_ns / 1e6);
        else
            cJSON_AddNullToObject(o, "rtt_ms");
        cJSON_AddNumberToObject(o, "messages_in", (double)p->msgs_in);
        cJSON_AddNumberToObject(o, "messages_out", (double)p->msgs_out);
        cJSON_AddNumberToObject(o, "bytes_in", (double)p->bytes_in);
        cJSON_AddNumberToObject(o, "bytes_out", (double)p->bytes_out);
        cJSON_AddNumberToObject(o, "drops", (double)p->drops);
        cJSON_AddNumberToObject(o, "retransmits", (double)p->retransmits);
        cJSON_AddNumberToObject(o, "rekeys", (double)p->rekeys);
        cJSON_AddNumberToObject(o, "unacked_out", (double)p->unacked_out);
        cJSON_AddNumberToObject(o, "unacked_in", (double)p->unacked_in);
        cJSON_AddItemToArray(arr, o);
    }
    free(rows);
    return send_json(a, conn, 200, root, NULL, NULL);
}

static enum MHD_Result handle_peer_delete(gw_admin *a, struct MHD_Connection *conn, struct req *r)
{
    uint8_t key[ITR_KEY_LEN];
    if (strlen(r->id) != 2 * ITR_KEY_LEN ||
        itr_hex_decode(key, sizeof(key), r->id, 2 * ITR_KEY_LEN) != ITR_OK)
        return send_simple_error(a, conn, 400, "invalid_parameter", "key",
                                 "key: expected a peer static public key of 64 hex digits");
    char hex[2 * ITR_KEY_LEN + 1];
    itr_hex_encode(hex, key, sizeof(key));
    int rc = gw_ctl_peer_disconnect(a->g, hex);
    if (rc == ITR_ERR_NOT_FOUND)
        return send_simple_error(a, conn, 404, "not_found", "key", "no live session with this key");
    if (rc == ITR_ERR_WOULDBLOCK)
        return send_simple_error(a, conn, 503, "unavailable", NULL,
                                 "a worker did not answer in time; retry");
    if (rc != ITR_OK)
        return send_simple_error(a, conn, rc == ITR_ERR_INVALID ? 400 : 500,
                                 rc == ITR_ERR_INVALID ? "invalid_parameter" : "internal", "key",
                                 itr_strerror(rc));
    GW_LOG(GW_LOG_INFO, "admin_disconnect", GW_F_STR("peer", hex));
    return send_no_content(a, conn, NULL);
}

static enum MHD_Result handle_sinks(gw_admin *a, struct MHD_Connection *conn)
{
    cJSON *arr = gw_ctl_sinks_json(a->g);
    if (!arr)
        return send_simple_error(a, conn, 500, "internal", NULL, "out of memory");
    cJSON *root = cJSON_CreateObject();
    if (!root) {
        cJSON_Delete(arr);
        return send_simple_error(a, conn, 500, "internal", NULL, "out of memory");
    }
    cJSON_AddItemToObject(root, "sinks", arr);
    return send_json(a, conn, 200, root, NULL, NULL);
}

static cJSON *publish_result_json(const gw_publish_result *res)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", res->status == ITR_OK ? "ok" : itr_strerror(res->status));
    cJSON_AddNumberToObject(o, "targeted", res->targeted);
    cJSON_AddNumberToObject(o, "sent", res->sent);
    cJSON_AddNumberToObject(o, "acked", res->acked);
    cJSON_AddNumberToObject(o, "failed", res->failed);
    return o;
}

static enum MHD_Result send_publish_result(gw_admin *a, struct MHD_Connection *conn,
                                           const gw_publish_result *res)
{
    if (res->status == ITR_ERR_NOT_FOUND) {
        return send_simple_error(a, conn, 404, "not_found", "target",
                                 "target: no such peer or shard is connected");
    }
    return send_json(a, conn, 200, publish_result_json(res), NULL, NULL);
}

/* Called by the gateway, once, from one of its threads. */
static void publish_done(void *arg, const gw_publish_result *res)
{
    struct pub_wait *w = arg;
    pthread_mutex_lock(&w->lock);
    w->res = *res;
    w->done = 1;
    if (w->conn) {
        MHD_resume_connection(w->conn);
        w->conn = NULL;
    }
    pthread_mutex_unlock(&w->lock);
    pub_wait_unref(w);
}

static enum MHD_Result publish_error(gw_admin *a, struct MHD_Connection *conn, int rc)
{
    switch (rc) {
    case ITR_ERR_INVALID:
        return send_simple_error(a, conn, 422, "validation_failed", NULL,
                                 "the gateway refused the message (target, topic or size)");
    case ITR_ERR_WOULDBLOCK:
        return send_simple_error(a, conn, 503, "unavailable", NULL,
                                 "the workers' mailboxes are full; retry");
    case ITR_ERR_CLOSED:
        return send_simple_error(a, conn, 503, "draining", NULL, "the gateway is shutting down");
    case ITR_ERR_NOT_FOUND:
        return send_simple_error(a, conn, 404, "not_found", "target",
                                 "target: no such peer or shard is connected");
    default:
        return send_simple_error(a, conn, 500, "internal", NULL, itr_strerror(rc));
    }
}

static enum MHD_Result handle_publish(gw_admin *a, struct MHD_Connection *conn, struct req *r,
                                      const cJSON *body)
{
    gw_ctl_error e;
    memset(&e, 0, sizeof(e));
    struct pub_wait *w = calloc(1, sizeof(*w));
    if (!w)
        return send_simple_error(a, conn, 500, "internal", NULL, "out of memory");
    int rc = gw_admin_publish_parse(body, &w->p, &e);
    if (rc != ITR_OK) {
        free(w);
        return send_error(a, conn, &e, NULL, NULL);
    }
    gw_publish_req pr;
    memset(&pr, 0, sizeof(pr));
    pr.kind = w->p.kind;
    pr.target = w->p.target;
    pr.intent = w->p.intent;
    pr.priority = w->p.priority;
    pr.topic = w->p.topic;
    pr.topic_len = strlen(w->p.topic);
    pr.body = w->p.body;
    pr.body_len = w->p.body_len;
    pr.timeout_ms = w->p.timeout_ms;
    if (!w->p.wait) {
        rc = gw_publish(a->g, &pr);
        gw_admin_publish_clear(&w->p);
        free(w);
        if (rc != ITR_OK)
            return publish_error(a, conn, rc);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "status", "accepted");
        return send_json(a, conn, 202, o, NULL, NULL);
    }
    pthread_mutex_init(&w->lock, NULL);
    w->refs = 2;
    pr.done = publish_done;
    pr.arg = w;
    rc = gw_publish(a->g, &pr);
    if (rc != ITR_OK) {
        w->refs = 1; /* done will not be called */
        pub_wait_unref(w);
        return publish_error(a, conn, rc);
    }
    /* The request keeps its reference (dropped when the request completes). */
    r->pub = w;
    pthread_mutex_lock(&a->lock);
    pthread_mutex_lock(&w->lock);
    if (!w->done) {
        if (a->stopping) {
            w->detached = 1;
        } else {
            w->conn = conn;
            w->next = a->waiting;
            a->waiting = w;
            MHD_suspend_connection(conn);
        }
    }
    int done = w->done, detached = w->detached;
    gw_publish_result res = w->res;
    pthread_mutex_unlock(&w->lock);
    pthread_mutex_unlock(&a->lock);
    if (done)
        return send_publish_result(a, conn, &res);
    if (detached)
        return send_simple_error(a, conn, 503, "unavailable", NULL, "the admin server is stopping");
    return MHD_YES; /* resumed by publish_done (or by gw_admin_stop) */
}

/* Called again after a suspended publish was resumed. */
static enum MHD_Result finish_publish(gw_admin *a, struct MHD_Connection *conn, struct req *r)
{
    struct pub_wait *w = r->pub;
    pthread_mutex_lock(&a->lock);
    for (struct pub_wait **pp = &a->waiting; *pp; pp = &(*pp)->next) {
        if (*pp == w) {
            *pp = w->next;
            break;
        }
    }
    pthread_mutex_lock(&w->lock);
    int done = w->done;
    gw_publish_result res = w->res;
    pthread_mutex_unlock(&w->lock);
    pthread_mutex_unlock(&a->lock);
    if (!done)
        return send_simple_error(a, conn, 503, "unavailable", NULL, "the admin server is stopping");
    return send_publish_result(a, conn, &res);
}

/* Phase 3: the whole request is here. */
static enum MHD_Result execute(gw_admin *a, struct MHD_Connection *conn, struct req *r)
{
    if (r->pub)
        return finish_publish(a, conn, r);
    if (r->too_large) {
        char msg[128];
        snprintf(msg, sizeof(msg), "the request body is larger than admin.max_body_bytes (%llu)",
                 (unsigned long long)a->max_body);
        return send_simple_error(a, conn, 413, "body_too_large", NULL, msg);
    }
    cJSON *body = NULL;
    int with_body = r->method == M_PUT || r->method == M_PATCH || r->method == M_POST;
    if (with_body) {
        gw_ctl_error e;
        memset(&e, 0, sizeof(e));
        if (gw_admin_parse_json(r->body ? r->body : "", r->len, &body, &e) != ITR_OK)
            return send_error(a, conn, &e, NULL, NULL);
    }
    enum MHD_Result ret;
    switch (r->ep) {
    case EP_HEALTHZ:
    case EP_READYZ:
        ret = handle_health(a, conn, r->ep);
        break;
    case EP_METRICS:
        ret = handle_metrics(a, conn);
        break;
    case EP_SHARDS:
    case EP_SHARD:
        ret = handle_shards(a, conn, r, body);
        break;
    case EP_ROUTES:
        ret = handle_routes(a, conn, r, body);
        break;
    case EP_PEERS:
        ret = handle_peers(a, conn);
        break;
    case EP_PEER:
        ret = handle_peer_delete(a, conn, r);
        break;
    case EP_SINKS:
        ret = handle_sinks(a, conn);
        break;
    case EP_PUBLISH:
        ret = handle_publish(a, conn, r, body);
        break;
    default:
        ret = send_simple_error(a, conn, 404, "not_found", NULL, "no such endpoint");
        break;
    }
    cJSON_Delete(body);
    return ret;
}

/* Phase 1: headers only. Returns MHD_YES with *answered = 0 to go on reading the body. */
static enum MHD_Result check_headers(gw_admin *a, struct MHD_Connection *conn, const char *url,
                                     struct req *r, int *answered)
{
    *answered = 1;
    r->ep = route_of(url, r);
    const char *why = NULL;
    if (needs_token(a, r->ep, url) && !authorized(a, conn, &why)) {
        log_auth_failure(a, conn, why);
        return send_simple_error(a, conn, 401, "unauthorized", NULL, why);
    }
    if (r->ep == EP_NONE)
        return send_simple_error(a, conn, 404, "not_found", NULL,
                                 "no such endpoint (see docs/ADMIN.md)");
    if (!(ep_methods[r->ep].methods & r->method)) {
        gw_ctl_error e;
        set_error(&e, 405, "method_not_allowed", NULL, "method not allowed here (allowed: %s)",
                  ep_methods[r->ep].allow);
        return send_error(a, conn, &e, NULL, ep_methods[r->ep].allow);
    }
    if (r->method & (M_PUT | M_PATCH | M_POST)) {
        if (!content_type_ok(conn))
            return send_simple_error(a, conn, 415, "unsupported_media_type", NULL,
                                     "Content-Type must be application/json");
        const char *cl =
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl) {
            char *end = NULL;
            errno = 0;
            unsigned long long n = strtoull(cl, &end, 10);
            if (errno || !end || *end || n > a->max_body) {
                char msg[128];
                snprintf(msg, sizeof(msg),
                         "the request body is larger than admin.max_body_bytes (%llu)",
                         (unsigned long long)a->max_body);
                return send_simple_error(a, conn, 413, "body_too_large", NULL, msg);
            }
        }
    }
    *answered = 0;
    return MHD_YES;
}

/* Phase 2: copy a body chunk, never past the cap. */
static int take_chunk(gw_admin *a, struct req *r, const char *data, size_t n)
{
    if (r->too_large || r->len + n > a->max_body) {
        r->too_large = 1;
        r->discarded += n;
        return r->discarded <= a->max_body * ADMIN_DISCARD_FACTOR;
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n + 1)
            cap *= 2;
        if (cap > a->max_body + 1)
            cap = (size_t)a->max_body + 1;
        char *p = realloc(r->body, cap);
        if (!p)
            return 0;
        r->body = p;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = '\0';
    return 1;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    gw_admin *a = cls;
    struct req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof(*r));
        if (!r)
            return MHD_NO;
        *con_cls = r;
        r->method = method_of(method);
        int answered = 0;
        enum MHD_Result ret = check_headers(a, conn, url, r, &answered);
        if (answered)
            r->ep = EP_NONE; /* a queued answer: ignore any body that follows */
        return answered ? ret : MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->ep == EP_NONE)
            return MHD_YES;
        return take_chunk(a, r, upload_data, n) ? MHD_YES : MHD_NO;
    }
    if (r->ep == EP_NONE && !r->pub)
        return MHD_YES; /* already answered in phase 1 */
    return execute(a, conn, r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    (void)toe;
    gw_admin *a = cls;
    struct req *r = *con_cls;
    if (!r)
        return;
    if (r->pub) {
        /* Normally unlinked in finish_publish; a connection closed otherwise is unlinked here. */
        pthread_mutex_lock(&a->lock);
        for (struct pub_wait **pp = &a->waiting; *pp; pp = &(*pp)->next) {
            if (*pp == r->pub) {
                *pp = r->pub->next;
                break;
            }
        }
        pthread_mutex_unlock(&a->lock);
        pub_wait_unref(r->pub);
    }
    free(r->body);
    free(r);
    *con_cls = NULL;
}

__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    GW_LOG(GW_LOG_WARN, "admin_http", GW_F_STR("msg", msg));
}

/* ---- start / stop ---- */

static int read_file(const char *path, char **out, size_t *len, size_t max, char *err,
                     size_t errlen)
{
    int rc = ITR_ERR_IO;
    char *buf = NULL;
    size_t cap = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
        snprintf(err, errlen, "%s: not a regular file of at most %zu bytes", path, max);
        rc = ITR_ERR_INVALID;
        goto out;
    }
    cap = (size_t)st.st_size + 1;
    buf = malloc(cap);
    if (!buf) {
        rc = ITR_ERR_NOMEM;
        goto out;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t k = read(fd, buf + got, (size_t)st.st_size - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            snprintf(err, errlen, "%s: read failed: %s", path, k < 0 ? strerror(errno) : "EOF");
            goto out;
        }
        got += (size_t)k;
    }
    buf[got] = '\0';
    *out = buf;
    *len = got;
    buf = NULL;
    rc = ITR_OK;
out:
    if (buf) {
        sodium_memzero(buf, cap);
        free(buf);
    }
    if (fd >= 0)
        close(fd);
    return rc;
}

/* Create a token file: 0600, O_EXCL (never overwrites), fsynced. */
static int create_token_file(const char *path, char *err, size_t errlen)
{
    uint8_t raw[GW_ADMIN_TOKEN_BYTES];
    char hex[2 * GW_ADMIN_TOKEN_BYTES + 2];
    int rc = ITR_ERR_IO;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "admin.token_file: %s: cannot create: %s", path, strerror(errno));
        goto out;
    }
    randombytes_buf(raw, sizeof(raw));
    itr_hex_encode(hex, raw, sizeof(raw));
    hex[2 * GW_ADMIN_TOKEN_BYTES] = '\n';
    hex[2 * GW_ADMIN_TOKEN_BYTES + 1] = '\0';
    size_t n = 2 * GW_ADMIN_TOKEN_BYTES + 1;
    if (fchmod(fd, 0600) != 0 || write(fd, hex, n) != (ssize_t)n || fsync(fd) != 0) {
        snprintf(err, errlen, "admin.token_file: %s: cannot write: %s", path, strerror(errno));
        unlink(path);
        goto out;
    }
    GW_LOG(GW_LOG_INFO, "admin_token_created", GW_F_STR("path", path));
    rc = ITR_OK;
out:
    if (fd >= 0)
        close(fd);
    sodium_memzero(raw, sizeof(raw));
    sodium_memzero(hex, sizeof(hex));
    return rc;
}

/* Hash the token from the environment or the file into a->token_hash. */
static int load_token(gw_admin *a, const gw_admin_config *c, char *err, size_t errlen)
{
    const char *env = c->token_env ? getenv(c->token_env) : NULL;
    if (env && *env) {
        size_t n = strlen(env);
        if (n > GW_ADMIN_TOKEN_MAX) {
            snprintf(err, errlen, "admin.token_env: $%s is longer than %d bytes", c->token_env,
                     GW_ADMIN_TOKEN_MAX);
            return ITR_ERR_INVALID;
        }
        crypto_generichash(a->token_hash, sizeof(a->token_hash), (const unsigned char *)env, n,
                           NULL, 0);
        a->have_token = 1;
        return ITR_OK;
    }
    if (!c->token_file)
        return ITR_OK;
    struct stat st;
    if (lstat(c->token_file, &st) != 0) {
        if (errno != ENOENT || !c->token_create) {
            snprintf(err, errlen,
                     "admin.token_file: %s: %s (create it with 64 random hex digits, mode 0600, "
                     "or set admin.token_create)",
                     c->token_file, strerror(errno));
            return ITR_ERR_IO;
        }
        int rc = create_token_file(c->token_file, err, errlen);
        if (rc != ITR_OK)
            return rc;
        if (lstat(c->token_file, &st) != 0) {
            snprintf(err, errlen, "admin.token_file: %s: %s", c->token_file, strerror(errno));
            return ITR_ERR_IO;
        }
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "admin.token_file: %s: not a regular file", c->token_file);
        return ITR_ERR_INVALID;
    }
    if (st.st_mode & 077) {
        snprintf(err, errlen,
                 "admin.token_file: %s: readable or writable by group or others (fix: chmod 600 "
                 "%s)",
                 c->token_file, c->token_file);
        return ITR_ERR_INVALID;
    }
    char *text = NULL;
    size_t len = 0;
    int rc = read_file(c->token_file, &text, &len, GW_ADMIN_TOKEN_MAX + 2, err, errlen);
    if (rc != ITR_OK)
        return rc;
    size_t n = len;
    while (n && (text[n - 1] == '\n' || text[n - 1] == '\r' || text[n - 1] == ' ' ||
                 text[n - 1] == '\t'))
        n--;
    if (n == 0) {
        snprintf(err, errlen, "admin.token_file: %s: empty", c->token_file);
        rc = ITR_ERR_INVALID;
    } else {
        crypto_generichash(a->token_hash, sizeof(a->token_hash), (const unsigned char *)text, n,
                           NULL, 0);
        a->have_token = 1;
    }
    sodium_memzero(text, len);
    free(text);
    return rc;
}

int gw_admin_start(gw_admin **out, struct gw_gateway *g, const gw_admin_config *c, char *err,
                   size_t errlen)
{
    *out = NULL;
    if (sodium_init() < 0) {
        snprintf(err, errlen, "admin: libsodium failed to initialise");
        return ITR_ERR_INVALID;
    }
    gw_admin *a = calloc(1, sizeof(*a));
    if (!a)
        return ITR_ERR_NOMEM;
    int rc;
    pthread_mutex_init(&a->lock, NULL);
    a->g = g;
    a->max_body = c->max_body_bytes ? c->max_body_bytes : (1u << 20);
    for (size_t i = 0; i < c->open_endpoint_count; i++) {
        const char *p = c->open_endpoints[i];
        if (!strcmp(p, "/healthz"))
            a->open_healthz = 1;
        else if (!strcmp(p, "/readyz"))
            a->open_readyz = 1;
        else if (!strcmp(p, "/metrics"))
            a->open_metrics = 1;
    }
    rc = gw_lograte_new(&a->auth_log, 256, ADMIN_AUTH_LOG_INTERVAL_NS, 60);
    if (rc != ITR_OK)
        goto fail;
    rc = load_token(a, c, err, errlen);
    if (rc != ITR_OK)
        goto fail;
    if (!a->have_token)
        GW_LOG(GW_LOG_WARN, "admin_no_token",
               GW_F_STR("msg", "no admin token configured: every /v1 request is refused"));

    itr_addr addr;
    memset(&addr, 0, sizeof(addr));
    const char *listen = c->listen ? c->listen : GW_ADMIN_DEFAULT_LISTEN;
    if (c->listen && c->listen_addr.u.sa.sa_family != 0) {
        addr = c->listen_addr;
    } else {
        char perr[256];
        if (itr_addr_parse(&addr, listen, perr, sizeof(perr)) != ITR_OK) {
            snprintf(err, errlen, "admin.listen: %s", perr);
            rc = ITR_ERR_INVALID;
            goto fail;
        }
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG;
    if (addr.u.sa.sa_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    int tls = c->tls_cert_file && c->tls_key_file;
    if (tls) {
        if (MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES) {
            snprintf(err, errlen, "admin.tls_cert_file: this libmicrohttpd has no TLS support");
            rc = ITR_ERR_INVALID;
            goto fail;
        }
        size_t n;
        rc = read_file(c->tls_cert_file, &a->tls_cert, &n, 1u << 20, err, errlen);
        if (rc == ITR_OK)
            rc = read_file(c->tls_key_file, &a->tls_key, &a->tls_key_len, 1u << 20, err, errlen);
        if (rc != ITR_OK)
            goto fail;
        flags |= MHD_USE_TLS;
    }
    unsigned threads = c->threads ? c->threads : 2;
    unsigned timeout_s =
        c->timeout_ns ? (unsigned)((c->timeout_ns + 999999999ull) / 1000000000ull) : 10;
    unsigned limit = c->connection_limit ? c->connection_limit : 64;
    struct MHD_OptionItem opts[12];
    size_t k = 0;
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER, (intptr_t)on_mhd_log, NULL};
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_SOCK_ADDR, 0, &addr.u.sa};
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT, (intptr_t)limit, NULL};
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_TIMEOUT, (intptr_t)timeout_s, NULL};
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, a};
    if (threads > 1)
        opts[k++] = (struct MHD_OptionItem){MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)threads, NULL};
    if (tls) {
        opts[k++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, a->tls_cert};
        opts[k++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, a->tls_key};
    }
    opts[k++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};

    a->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, a, MHD_OPTION_ARRAY, opts,
                                 MHD_OPTION_END);
    if (!a->daemon) {
        snprintf(err, errlen, "admin.listen: cannot serve on %s%s", listen,
                 tls ? " (check the TLS certificate and key)" : " (address in use?)");
        rc = ITR_ERR_IO;
        goto fail;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(a->daemon, MHD_DAEMON_INFO_BIND_PORT);
    a->port = di ? di->port : 0;
    GW_LOG(GW_LOG_INFO, "admin_listening", GW_F_STR("listen", listen), GW_F_U64("port", a->port),
           GW_F_BOOL("tls", tls), GW_F_U64("threads", threads));
    *out = a;
    return ITR_OK;
fail:
    gw_admin_stop(a);
    return rc;
}

void gw_admin_stop(gw_admin *a)
{
    if (!a)
        return;
    if (a->daemon) {
        /* Resume every suspended publish so libmicrohttpd can close its connection; the
         * gateway's later done callback only drops its reference. */
        pthread_mutex_lock(&a->lock);
        a->stopping = 1;
        for (struct pub_wait *w = a->waiting; w; w = w->next) {
            pthread_mutex_lock(&w->lock);
            w->detached = 1;
            if (w->conn) {
                MHD_resume_connection(w->conn);
                w->conn = NULL;
            }
            pthread_mutex_unlock(&w->lock);
        }
        pthread_mutex_unlock(&a->lock);
        MHD_stop_daemon(a->daemon);
    }
    if (a->tls_key) {
        sodium_memzero(a->tls_key, a->tls_key_len);
        free(a->tls_key);
    }
    free(a->tls_cert);
    gw_lograte_free(a->auth_log);
    sodium_memzero(a->token_hash, sizeof(a->token_hash));
    pthread_mutex_destroy(&a->lock);
    free(a);
}

int gw_admin_port(const gw_admin *a)
{
    return a ? a->port : 0;
}
