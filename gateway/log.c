/* log.c: structured log lines (logfmt / JSON) written with one write(2), redaction helpers
 * and the per-key rate limiter (log.h). */
#define _POSIX_C_SOURCE 200809L /* gmtime_r, clock_gettime */
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include <intentra/error.h>

/* Process-wide settings: relaxed atomics, because a reload may change them while any thread
 * logs, and a line formatted with a mix of old and new settings is still a valid line. */
static _Atomic int log_format = GW_LOG_LOGFMT;
static _Atomic int log_level = GW_LOG_INFO;
static _Atomic int log_fd = 2;
static _Atomic int log_timestamps = 1;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

/* Room kept at the end of a line for the truncation marker and the newline. */
#define TRUNC_RESERVE 24

const char *gw_log_level_name(gw_log_level level)
{
    if ((unsigned)level > GW_LOG_DEBUG)
        return "unknown";
    return level_names[level];
}

int gw_log_level_parse(const char *name, gw_log_level *out)
{
    for (unsigned i = 0; i <= GW_LOG_DEBUG; i++) {
        if (name && strcmp(name, level_names[i]) == 0) {
            *out = (gw_log_level)i;
            return ITR_OK;
        }
    }
    return ITR_ERR_INVALID;
}

int gw_log_format_parse(const char *name, gw_log_format *out)
{
    if (name && strcmp(name, "logfmt") == 0) {
        *out = GW_LOG_LOGFMT;
        return ITR_OK;
    }
    if (name && strcmp(name, "json") == 0) {
        *out = GW_LOG_JSON;
        return ITR_OK;
    }
    return ITR_ERR_INVALID;
}

void gw_log_options_default(gw_log_options *o)
{
    o->format = GW_LOG_LOGFMT;
    o->level = GW_LOG_INFO;
    o->fd = 2;
    o->timestamps = 1;
}

void gw_log_configure(const gw_log_options *o)
{
    int format = o->format == GW_LOG_JSON ? GW_LOG_JSON : GW_LOG_LOGFMT;
    int level = (unsigned)o->level <= GW_LOG_DEBUG ? (int)o->level : GW_LOG_INFO;
    atomic_store_explicit(&log_format, format, memory_order_relaxed);
    atomic_store_explicit(&log_level, level, memory_order_relaxed);
    atomic_store_explicit(&log_fd, o->fd >= 0 ? o->fd : 2, memory_order_relaxed);
    atomic_store_explicit(&log_timestamps, o->timestamps ? 1 : 0, memory_order_relaxed);
}

void gw_log_get(gw_log_options *o)
{
    o->format = (gw_log_format)atomic_load_explicit(&log_format, memory_order_relaxed);
    o->level = (gw_log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
    o->fd = atomic_load_explicit(&log_fd, memory_order_relaxed);
    o->timestamps = atomic_load_explicit(&log_timestamps, memory_order_relaxed);
}

int gw_log_enabled(gw_log_level level)
{
    return (int)level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

/* ---- line formatting ---- */

/* A bounded writer: `cap` excludes the reserve kept for the truncation marker. */
typedef struct line_buf {
    char *p;
    size_t len;
    size_t cap;
    int truncated;
} line_buf;

static int lb_put(line_buf *b, const char *s, size_t n)
{
    if (b->truncated || n > b->cap - b->len) {
        b->truncated = 1;
        return -1;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return 0;
}

static int lb_puts(line_buf *b, const char *s)
{
    return lb_put(b, s, strlen(s));
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 if invalid. Overlong forms,
 * surrogates and code points above U+10FFFF are invalid (RFC 3629). */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1fu;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0fu;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07u;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* 1 if a logfmt value needs quotes. */
static int logfmt_needs_quotes(const char *s, size_t n)
{
    if (n == 0)
        return 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == '=' || c == '"' || c == '\\' || c == 0x7f)
            return 1;
        if (c >= 0x80) {
            size_t l = utf8_seq_len((const unsigned char *)s + i, n - i);
            if (l == 0)
                return 1;
            i += l - 1;
        }
    }
    return 0;
}

/* Append s as a quoted string (JSON string syntax, which is also logfmt's quoting), cutting it
 * at a character boundary when it does not fit. Invalid UTF-8 bytes become \ufffd (JSON) or
 * \xNN (logfmt), so every line is valid UTF-8. */
static void put_quoted(line_buf *b, const char *s, size_t n, int json)
{
    char tmp[8];
    if (lb_put(b, "\"", 1) < 0)
        return;
    for (size_t i = 0; i < n;) {
        const unsigned char *u = (const unsigned char *)s + i;
        const char *unit = tmp;
        size_t ulen;
        size_t adv = 1;
        switch (*u) {
        case '"':
            unit = "\\\"";
            ulen = 2;
            break;
        case '\\':
            unit = "\\\\";
            ulen = 2;
            break;
        case '\n':
            unit = "\\n";
            ulen = 2;
            break;
        case '\r':
            unit = "\\r";
            ulen = 2;
            break;
        case '\t':
            unit = "\\t";
            ulen = 2;
            break;
        default:
            if (*u < 0x20 || *u == 0x7f) {
                ulen = (size_t)snprintf(tmp, sizeof(tmp), "\\u%04x", *u);
            } else if (*u < 0x80) {
                unit = (const char *)u;
                ulen = 1;
            } else {
                size_t l = utf8_seq_len(u, n - i);
                if (l > 0) {
                    unit = (const char *)u;
                    ulen = l;
                    adv = l;
                } else if (json) {
                    unit = "\\ufffd";
                    ulen = 6;
                } else {
                    ulen = (size_t)snprintf(tmp, sizeof(tmp), "\\x%02x", *u);
                }
            }
            break;
        }
        /* Keep one byte for the closing quote. */
        if (ulen + 1 > b->cap - b->len) {
            b->truncated = 1;
            break;
        }
        memcpy(b->p + b->len, unit, ulen);
        b->len += ulen;
        i += adv;
    }
    /* The closing quote always fits: it was kept above (or the reserve takes it). */
    b->p[b->len++] = '"';
}

/* Keys come from code, but a key that is not snake_case would break the line's syntax:
 * anything outside [A-Za-z0-9_.] becomes '_'. */
static void put_key(line_buf *b, const char *key, int json)
{
    char tmp[64];
    size_t n = 0;
    if (!key || !*key)
        key = "field";
    for (; key[n] && n < sizeof(tmp); n++) {
        unsigned char c = (unsigned char)key[n];
        tmp[n] = (char)(isalnum(c) || c == '_' || c == '.' ? c : '_');
    }
    if (json) {
        if (lb_put(b, ",\"", 2) == 0 && lb_put(b, tmp, n) == 0)
            lb_put(b, "\":", 2);
    } else {
        if (lb_put(b, " ", 1) == 0 && lb_put(b, tmp, n) == 0)
            lb_put(b, "=", 1);
    }
}

static void put_string_value(line_buf *b, const char *s, size_t n, int json)
{
    /* A bare value that does not fit is written quoted, so it can be cut. */
    if (!json && !logfmt_needs_quotes(s, n) && n <= b->cap - b->len) {
        lb_put(b, s, n);
        return;
    }
    put_quoted(b, s, n, json);
}

static void put_field(line_buf *b, const gw_log_field *f, int json)
{
    char num[48];
    size_t start = b->len;
    int n = 0;
    put_key(b, f->key, json);
    if (b->truncated)
        goto rollback;
    switch (f->kind) {
    case GW_LOG_STR: {
        const char *s = f->v.s ? f->v.s : "";
        put_string_value(b, s, strlen(s), json);
        return; /* strings are cut in place rather than rolled back */
    }
    case GW_LOG_STRN:
        put_string_value(b, f->v.s ? f->v.s : "", f->v.s ? f->n : 0, json);
        return;
    case GW_LOG_I64:
        n = snprintf(num, sizeof(num), "%lld", (long long)f->v.i);
        break;
    case GW_LOG_U64:
        n = snprintf(num, sizeof(num), "%llu", (unsigned long long)f->v.u);
        break;
    case GW_LOG_F64:
        /* JSON has no NaN/Infinity: they are written as null (logfmt: as text). */
        if (f->v.f != f->v.f || f->v.f > 1.7976931348623157e308 || f->v.f < -1.7976931348623157e308)
            n = snprintf(num, sizeof(num), "%s",
                         json ? "null" : (f->v.f != f->v.f ? "NaN" : "Inf"));
        else
            n = snprintf(num, sizeof(num), "%.17g", f->v.f);
        break;
    case GW_LOG_BOOL:
        n = snprintf(num, sizeof(num), "%s", f->v.i ? "true" : "false");
        break;
    default:
        n = snprintf(num, sizeof(num), "%s", json ? "null" : "\"\"");
        break;
    }
    if (n > 0 && lb_put(b, num, (size_t)n) == 0)
        return;
rollback:
    b->len = start;
    b->truncated = 1;
}

static size_t format_ts(char *out, size_t cap, uint64_t wall_ns)
{
    time_t sec = (time_t)(wall_ns / 1000000000u);
    unsigned usec = (unsigned)((wall_ns % 1000000000u) / 1000u);
    struct tm tm;
    if (!gmtime_r(&sec, &tm))
        return 0;
    int n = snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%06uZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, usec);
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

size_t gw_log_format_line(char *buf, size_t cap, gw_log_format format, uint64_t wall_ns,
                          gw_log_level level, const char *event, const gw_log_field *fields,
                          size_t n)
{
    int json = format == GW_LOG_JSON;
    char ts[48];
    size_t tslen = wall_ns ? format_ts(ts, sizeof(ts), wall_ns) : 0;
    line_buf b = {.p = buf, .len = 0, .cap = cap - TRUNC_RESERVE, .truncated = 0};

    if (cap < 64) {
        if (cap > 0)
            buf[0] = '\0';
        return 0;
    }
    if (json) {
        lb_puts(&b, "{");
        if (tslen) {
            lb_puts(&b, "\"ts\":\"");
            lb_put(&b, ts, tslen);
            lb_puts(&b, "\",");
        }
        lb_puts(&b, "\"level\":\"");
        lb_puts(&b, gw_log_level_name(level));
        lb_puts(&b, "\",\"event\":");
        put_quoted(&b, event ? event : "", event ? strlen(event) : 0, 1);
    } else {
        if (tslen) {
            lb_puts(&b, "ts=");
            lb_put(&b, ts, tslen);
            lb_puts(&b, " ");
        }
        lb_puts(&b, "level=");
        lb_puts(&b, gw_log_level_name(level));
        lb_puts(&b, " event=");
        put_string_value(&b, event ? event : "", event ? strlen(event) : 0, 0);
    }
    for (size_t i = 0; i < n && !b.truncated; i++)
        put_field(&b, &fields[i], json);

    /* The reserve holds the marker, the closing brace and the newline. */
    b.cap = cap - 1;
    if (b.truncated) {
        b.truncated = 0;
        lb_puts(&b, json ? ",\"truncated\":true" : " truncated=true");
    }
    if (json)
        lb_puts(&b, "}");
    lb_puts(&b, "\n");
    buf[b.len] = '\0';
    return b.len;
}

static uint64_t wall_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void write_line(int fd, const char *p, size_t len)
{
    /* One write(2) per line; a partial write (pipe full) is finished rather than lost. */
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += w;
        len -= (size_t)w;
    }
}

void gw_log_emit(gw_log_level level, const char *event, const gw_log_field *fields, size_t n)
{
    char buf[GW_LOG_LINE_MAX];
    if (!gw_log_enabled(level))
        return;
    gw_log_format format = (gw_log_format)atomic_load_explicit(&log_format, memory_order_relaxed);
    int fd = atomic_load_explicit(&log_fd, memory_order_relaxed);
    uint64_t wall = atomic_load_explicit(&log_timestamps, memory_order_relaxed) ? wall_now_ns() : 0;
    size_t len = gw_log_format_line(buf, sizeof(buf), format, wall, level, event, fields, n);
    write_line(fd, buf, len);
}

void gw_vlogf(gw_log_level level, const char *event, const gw_log_field *fields, size_t n,
              const char *fmt, va_list ap)
{
    gw_log_field all[16];
    char msg[GW_LOG_LINE_MAX];
    if (!gw_log_enabled(level))
        return;
    if (n > 15)
        n = 15;
    for (size_t i = 0; i < n; i++)
        all[i] = fields[i];
    int m = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (m < 0)
        msg[0] = '\0';
    all[n] = GW_F_STR("msg", msg);
    gw_log_emit(level, event, all, n + 1);
}

void gw_logf(gw_log_level level, const char *event, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    gw_vlogf(level, event, NULL, 0, fmt, ap);
    va_end(ap);
}

/* ---- redaction ---- */

int gw_log_key_is_secret(const char *key)
{
    static const char *const words[] = {"password", "passwd",  "secret", "credential",
                                        "private",  "api_key", "apikey", "authorization"};
    static const char *const exact[] = {"ssl.key.pem", "sasl.oauthbearer.config"};
    static const char *const token_ok[] = {"token_file", "token_env", "token_create"};
    char low[128];
    size_t n = 0;
    if (!key)
        return 0;
    for (; key[n] && n < sizeof(low) - 1; n++)
        low[n] = (char)tolower((unsigned char)key[n]);
    low[n] = '\0';
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        if (strstr(low, words[i]))
            return 1;
    for (size_t i = 0; i < sizeof(exact) / sizeof(exact[0]); i++)
        if (strcmp(low, exact[i]) == 0)
            return 1;
    if (strstr(low, "token")) {
        for (size_t i = 0; i < sizeof(token_ok) / sizeof(token_ok[0]); i++)
            if (strcmp(low, token_ok[i]) == 0)
                return 0;
        return 1;
    }
    return 0;
}

static int redact_walk(cJSON *v)
{
    for (cJSON *c = v ? v->child : NULL; c; c = c->next) {
        if (c->string && gw_log_key_is_secret(c->string)) {
            cJSON *r = cJSON_CreateString(GW_LOG_REDACTED);
            size_t kl = strlen(c->string) + 1;
            /* ReplaceItemViaPointer keeps the replacement's (absent) key: give it c's. cJSON
             * frees keys with its free hook, which the gateway leaves at free(). */
            char *k = malloc(kl);
            if (!r || !k) {
                cJSON_Delete(r);
                free(k);
                return -1;
            }
            memcpy(k, c->string, kl);
            r->string = k;
            if (!cJSON_ReplaceItemViaPointer(v, c, r)) {
                cJSON_Delete(r);
                return -1;
            }
            c = r;
        } else if (redact_walk(c) < 0) {
            return -1;
        }
    }
    return 0;
}

cJSON *gw_log_redact_json(const cJSON *v)
{
    cJSON *copy = cJSON_Duplicate(v, 1);
    if (copy && redact_walk(copy) < 0) {
        cJSON_Delete(copy);
        return NULL;
    }
    return copy;
}

/* ---- rate limiter ---- */

#define LR_WAYS 4

typedef struct lr_slot {
    uint64_t hash;       /* keyed hash of the key; 0 = empty */
    uint64_t last_ns;    /* when a line for this key was last let through */
    uint64_t suppressed; /* held back since then */
    int logged;          /* 0: never let through (held back by the global cap) */
} lr_slot;

struct gw_lograte {
    pthread_mutex_t mu; /* guards everything below */
    uint8_t hash_key[crypto_shorthash_KEYBYTES];
    lr_slot *slots;
    size_t nbuckets; /* power of two; LR_WAYS slots each */
    uint64_t interval_ns;
    uint32_t max_lines;    /* global cap per interval, 0 = none */
    uint64_t window_start; /* global window */
    uint32_t window_lines; /* lines let through in the window */
    int window_started;
    uint64_t other; /* counts of evicted keys, reported as suppressed_other */
};

int gw_lograte_new(gw_lograte **out, size_t slots, uint64_t interval_ns,
                   uint32_t max_lines_per_interval)
{
    gw_lograte *r = NULL;
    size_t nb = 4;
    *out = NULL;
    if (interval_ns == 0 || slots > ((size_t)1 << 24))
        return ITR_ERR_INVALID;
    if (sodium_init() < 0)
        return ITR_ERR_NOMEM;
    while (nb * LR_WAYS < slots)
        nb <<= 1;
    r = calloc(1, sizeof(*r));
    if (!r)
        return ITR_ERR_NOMEM;
    r->slots = calloc(nb * LR_WAYS, sizeof(lr_slot));
    if (!r->slots) {
        free(r);
        return ITR_ERR_NOMEM;
    }
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        free(r->slots);
        free(r);
        return ITR_ERR_NOMEM;
    }
    randombytes_buf(r->hash_key, sizeof(r->hash_key));
    r->nbuckets = nb;
    r->interval_ns = interval_ns;
    r->max_lines = max_lines_per_interval;
    *out = r;
    return ITR_OK;
}

void gw_lograte_free(gw_lograte *r)
{
    if (!r)
        return;
    pthread_mutex_destroy(&r->mu);
    sodium_memzero(r->hash_key, sizeof(r->hash_key));
    free(r->slots);
    free(r);
}

void gw_lograte_set_interval(gw_lograte *r, uint64_t interval_ns)
{
    if (interval_ns == 0)
        return;
    pthread_mutex_lock(&r->mu);
    r->interval_ns = interval_ns;
    pthread_mutex_unlock(&r->mu);
}

/* Find key's slot, or claim one (an empty slot, else the least recently logged of the
 * bucket, whose held-back count moves to `other` so it is still reported). */
static lr_slot *lr_slot_for(gw_lograte *r, uint64_t h)
{
    lr_slot *bucket = &r->slots[(h & (r->nbuckets - 1)) * LR_WAYS];
    lr_slot *victim = NULL;
    for (unsigned i = 0; i < LR_WAYS; i++) {
        if (bucket[i].hash == h)
            return &bucket[i];
    }
    for (unsigned i = 0; i < LR_WAYS; i++) {
        lr_slot *s = &bucket[i];
        if (s->hash == 0) {
            victim = s;
            break;
        }
        if (!victim || (s->logged && !victim->logged) ||
            (s->logged == victim->logged && s->last_ns < victim->last_ns))
            victim = s;
    }
    if (victim->hash != 0)
        r->other += victim->suppressed;
    victim->hash = h;
    victim->last_ns = 0;
    victim->suppressed = 0;
    victim->logged = 0;
    return victim;
}

int gw_lograte_check(gw_lograte *r, const void *key, size_t keylen, uint64_t now_ns,
                     uint64_t *suppressed, uint64_t *suppressed_other)
{
    uint8_t hb[crypto_shorthash_BYTES];
    uint64_t h;
    int allow = 0;
    crypto_shorthash(hb, (const unsigned char *)key, keylen, r->hash_key);
    memcpy(&h, hb, sizeof(h));
    if (h == 0)
        h = 1; /* 0 marks an empty slot */

    pthread_mutex_lock(&r->mu);
    lr_slot *s = lr_slot_for(r, h);
    if (!s->logged || now_ns - s->last_ns >= r->interval_ns) {
        allow = 1;
        if (r->max_lines) {
            if (!r->window_started || now_ns - r->window_start >= r->interval_ns) {
                r->window_started = 1;
                r->window_start = now_ns;
                r->window_lines = 0;
            }
            if (r->window_lines >= r->max_lines)
                allow = 0;
            else
                r->window_lines++;
        }
    }
    if (allow) {
        if (suppressed)
            *suppressed = s->suppressed;
        if (suppressed_other)
            *suppressed_other = r->other;
        s->suppressed = 0;
        s->last_ns = now_ns;
        s->logged = 1;
        r->other = 0;
    } else {
        s->suppressed++;
    }
    pthread_mutex_unlock(&r->mu);
    return allow;
}

int gw_lograte_emit(gw_lograte *r, const void *key, size_t keylen, uint64_t now_ns,
                    gw_log_level level, const char *event, const gw_log_field *fields, size_t n)
{
    gw_log_field all[16];
    uint64_t sup = 0, other = 0;
    size_t k = 0;
    if (!gw_lograte_check(r, key, keylen, now_ns, &sup, &other))
        return 0;
    if (n > 14)
        n = 14;
    for (; k < n; k++)
        all[k] = fields[k];
    if (sup)
        all[k++] = GW_F_U64("suppressed", sup);
    if (other)
        all[k++] = GW_F_U64("suppressed_other", other);
    gw_log_emit(level, event, all, k);
    return 1;
}
