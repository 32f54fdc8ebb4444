/* log.h: structured logging to stderr (logfmt or JSON lines) and a per-key rate limiter.
 *
 * Every line is one event: a timestamp, a level, a stable snake_case event name and typed
 * key/value fields, e.g.
 *   logfmt: ts=2026-11-23T07:16:19.123Z level=warn event=sink_error sink=kafka msg="broker down"
 *   json:   {"ts":"2026-11-23T07:16:19.123Z","level":"warn","event":"sink_error",...}
 * Values are escaped for the format (logfmt: quoted when they contain a space, '=', '"' or a
 * control character; JSON: RFC 8259 string escaping); numbers and booleans are bare.
 *
 * Threads: every function may be called from any thread. A line is formatted on the caller's
 * stack and written with one write(2), so lines from different threads never interleave.
 * Lines longer than GW_LOG_LINE_MAX are cut and end with truncated=true.
 *
 * Secrets are never logged: private keys, admin tokens, SASL/TLS passwords and webhook
 * secrets must not be passed as field values. Code that logs configuration (for example a
 * sink's JSON object in an error) passes it through gw_log_redact_json(), which replaces the
 * value of every key gw_log_key_is_secret() recognises with "<redacted>". Peer public keys
 * are identities, not secrets, and are logged in hex.
 */
#ifndef GW_LOG_H
#define GW_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#define GW_LOG_LINE_MAX 4096 /* bytes per line, newline included */
#define GW_LOG_REDACTED "<redacted>"

typedef enum gw_log_level {
    GW_LOG_ERROR = 0,
    GW_LOG_WARN = 1,
    GW_LOG_INFO = 2,
    GW_LOG_DEBUG = 3,
} gw_log_level;

typedef enum gw_log_format {
    GW_LOG_LOGFMT = 0,
    GW_LOG_JSON = 1,
} gw_log_format;

/* One field. Build with the GW_F_* macros. */
typedef enum gw_log_kind {
    GW_LOG_STR = 0, /* s: NUL-terminated (NULL logs as an empty string) */
    GW_LOG_STRN,    /* s, n: exactly n bytes (may contain anything; escaped) */
    GW_LOG_I64,
    GW_LOG_U64,
    GW_LOG_F64,
    GW_LOG_BOOL,
} gw_log_kind;

typedef struct gw_log_field {
    const char *key; /* stable snake_case */
    gw_log_kind kind;
    size_t n; /* GW_LOG_STRN length */
    union {
        const char *s;
        int64_t i;
        uint64_t u;
        double f;
    } v;
} gw_log_field;

#define GW_F_STR(k, val) ((gw_log_field){.key = (k), .kind = GW_LOG_STR, .v.s = (val)})
#define GW_F_STRN(k, val, len) \
    ((gw_log_field){.key = (k), .kind = GW_LOG_STRN, .n = (len), .v.s = (val)})
#define GW_F_I64(k, val)  ((gw_log_field){.key = (k), .kind = GW_LOG_I64, .v.i = (int64_t)(val)})
#define GW_F_U64(k, val)  ((gw_log_field){.key = (k), .kind = GW_LOG_U64, .v.u = (uint64_t)(val)})
#define GW_F_F64(k, val)  ((gw_log_field){.key = (k), .kind = GW_LOG_F64, .v.f = (double)(val)})
#define GW_F_BOOL(k, val) ((gw_log_field){.key = (k), .kind = GW_LOG_BOOL, .v.i = (val) ? 1 : 0})

/* Log an event with at least one field:
 *   GW_LOG(GW_LOG_INFO, "listening", GW_F_STR("addr", a), GW_F_U64("workers", n));
 * The fields are not evaluated when the level is disabled. (No fields: gw_log_emit(l, e, NULL, 0).)
 */
#define GW_LOG(level, event, ...)                                            \
    do {                                                                     \
        if (gw_log_enabled(level)) {                                         \
            const gw_log_field gw_log_fields_[] = {__VA_ARGS__};             \
            gw_log_emit((level), (event), gw_log_fields_,                    \
                        sizeof(gw_log_fields_) / sizeof(gw_log_fields_[0])); \
        }                                                                    \
    } while (0)

/* Process-wide settings (atomics: a reload may change them while other threads log). */
typedef struct gw_log_options {
    gw_log_format format; /* GW_LOG_LOGFMT by default */
    gw_log_level level;   /* GW_LOG_INFO by default: lines above it are skipped */
    int fd;               /* 2 by default; tests point it at a pipe or file */
    int timestamps;       /* 1 by default; 0 leaves out "ts" (deterministic test output) */
} gw_log_options;

/* The defaults above. */
void gw_log_options_default(gw_log_options *o);
/* Apply o (values out of range are clamped to the defaults). */
void gw_log_configure(const gw_log_options *o);
void gw_log_get(gw_log_options *o);
/* 1 when lines of this level are written. */
int gw_log_enabled(gw_log_level level);

/* Write one line (if the level is enabled). */
void gw_log_emit(gw_log_level level, const char *event, const gw_log_field *fields, size_t n);
/* Write one line whose free text goes into a "msg" field, plus optional fields before it. */
void gw_logf(gw_log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void gw_vlogf(gw_log_level level, const char *event, const gw_log_field *fields, size_t n,
              const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));

/* The formatter behind gw_log_emit, pure (no clock, no global state): format one line,
 * newline included, into buf (NUL-terminated). wall_ns 0 leaves out "ts". Returns the length
 * (< cap); a line that does not fit is cut at a field boundary and ends with truncated=true.
 * cap must be at least 64. */
size_t gw_log_format_line(char *buf, size_t cap, gw_log_format format, uint64_t wall_ns,
                          gw_log_level level, const char *event, const gw_log_field *fields,
                          size_t n);

/* "error", "warn", "info", "debug". */
const char *gw_log_level_name(gw_log_level level);
/* Parse a level / format name. Errors: ITR_ERR_INVALID. */
int gw_log_level_parse(const char *name, gw_log_level *out);
int gw_log_format_parse(const char *name, gw_log_format *out);

/* Redaction. 1 when a configuration key names a secret: its lower-cased name contains
 * "password", "passwd", "secret", "token" (but not "token_file"/"token_env"/
 * "token_create"), "credential", "private", "api_key", "authorization", or is "ssl.key.pem" /
 * "sasl.oauthbearer.config". */
int gw_log_key_is_secret(const char *key);
/* A deep copy of v with every secret value (by key, at any depth) replaced by
 * GW_LOG_REDACTED. Caller frees with cJSON_Delete. NULL on allocation failure. */
cJSON *gw_log_redact_json(const cJSON *v);

/* ---- rate limiter for repeated events ----
 * "At most one line per key per interval": security events once per peer per interval, sink
 * error lines once per sink and stage per interval. A line that gets through after others
 * were held back carries suppressed=N (how many were held back for that key since its last
 * line). Keys are attacker-influenced (peer addresses and keys), so the table is bounded
 * (slots fixed at creation, a keyed hash, the least recently logged key of a full bucket is
 * evicted) and a global cap bounds the lines per interval over all keys; lines held back by
 * the global cap are reported as suppressed_other=N on the next line let through.
 * Thread-safe (one mutex; every call is O(1)). Time is passed in (scripted in tests). */
typedef struct gw_lograte gw_lograte;

/* slots: keys remembered (rounded up to a power of two, >= 16). interval_ns > 0.
 * max_lines_per_interval: global cap over all keys (0: no global cap).
 * Errors: ITR_ERR_INVALID, ITR_ERR_NOMEM. */
int gw_lograte_new(gw_lograte **out, size_t slots, uint64_t interval_ns,
                   uint32_t max_lines_per_interval);
void gw_lograte_free(gw_lograte *r); /* NULL is a no-op */
/* Change the interval (reload). */
void gw_lograte_set_interval(gw_lograte *r, uint64_t interval_ns);
/* Decide for one occurrence of key at now_ns: returns 1 (log it; *suppressed and
 * *suppressed_other get the counts to report, then reset) or 0 (held back and counted).
 * Either pointer may be NULL. */
int gw_lograte_check(gw_lograte *r, const void *key, size_t keylen, uint64_t now_ns,
                     uint64_t *suppressed, uint64_t *suppressed_other);
/* gw_lograte_check on key, then, if let through, gw_log_emit with the fields followed by
 * suppressed=N / suppressed_other=N when nonzero. At most 14 fields. Returns 1 if logged.
 * The check happens even when the level is disabled (counts stay true). */
int gw_lograte_emit(gw_lograte *r, const void *key, size_t keylen, uint64_t now_ns,
                    gw_log_level level, const char *event, const gw_log_field *fields, size_t n);

#endif
