/* config.c: load the gateway config: read, ${VAR} interpolation inside JSON strings, parse
 * with line:col errors, strict validation into an immutable gw_config (config.h). */
#define _POSIX_C_SOURCE 200809L /* fstat, strnlen */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <intentra/driver.h>
#include <intentra/error.h>

#include "connector.h"
#include "json_check.h"

struct gw_config {
    char *origin;
    cJSON *root; /* every borrowed string below points into it */
    size_t nlisten;
    const char *listen[GW_CONFIG_MAX_LISTEN];
    itr_addr listen_addr[GW_CONFIG_MAX_LISTEN];
    const char *key_file;
    unsigned workers;
    gw_log_config log;
    gw_transport_config transport;
    uint64_t message_pool_bytes;
    gw_unknown_peers unknown_peers;
    const char *default_shard;
    gw_admin_config admin;
    const char **open_endpoints;
    uint64_t drain_ns;
    gw_sink_spec *sinks;
    const char **sink_names;
    size_t nsinks;
    const cJSON *shards_doc; /* the file's "shards", or empty_shards */
    cJSON *empty_shards;     /* {} for a file without "shards" */
    const cJSON *routes_doc;
    gw_shards *shards;
    gw_router *router;
};

/* ---- interpolation ---- */

/* Growable output plus the map from output offsets back to input offsets (for the line:col
 * of parse errors after substitution). */
typedef struct map_ent {
    size_t out, in;
    int opaque; /* 1: inside a substitution: every offset maps to `in` */
} map_ent;

typedef struct ibuf {
    char *p;
    size_t len, cap;
    map_ent *map;
    size_t nmap, mapcap;
    int nomem;
} ibuf;

static void ib_put(ibuf *b, const char *s, size_t n)
{
    if (b->nomem)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->nomem = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void ib_map(ibuf *b, size_t in, int opaque)
{
    if (b->nomem)
        return;
    if (b->nmap == b->mapcap) {
        size_t cap = b->mapcap ? 2 * b->mapcap : 16;
        map_ent *m = realloc(b->map, cap * sizeof(*m));
        if (!m) {
            b->nomem = 1;
            return;
        }
        b->map = m;
        b->mapcap = cap;
    }
    b->map[b->nmap++] = (map_ent){.out = b->len, .in = in, .opaque = opaque};
}

/* An environment value as JSON string content. */
static void ib_put_escaped(ibuf *b, const char *s)
{
    char u[8];
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            ib_put(b, "\\", 1);
            ib_put(b, s, 1);
        } else if (ch < 0x20) {
            snprintf(u, sizeof(u), "\\u%04x", ch);
            ib_put(b, u, 6);
        } else {
            ib_put(b, s, 1);
        }
    }
}

typedef struct interp {
    const char *text;
    size_t len;
    const char *origin;
    char *err;
    size_t errlen;
} interp;

static size_t line_of(const interp *ip, size_t pos)
{
    size_t line = 1;
    for (size_t i = 0; i < pos && i < ip->len; i++)
        if (ip->text[i] == '\n')
            line++;
    return line;
}

static int ifail(const interp *ip, size_t pos, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int ifail(const interp *ip, size_t pos, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (ip->err && ip->errlen)
        snprintf(ip->err, ip->errlen, "%s:%zu: %s", ip->origin, line_of(ip, pos), msg);
    return ITR_ERR_INVALID;
}

static int is_name_start(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}

static int is_name_char(char ch)
{
    return is_name_start(ch) || (ch >= '0' && ch <= '9');
}

static int expand_text(interp *ip, size_t *pos, ibuf *out, int in_default, int emit);

/* *pos at '$' of "${". Expands one ${...} into out (when emit) and leaves *pos after '}'. */
static int expand_var(interp *ip, size_t *pos, ibuf *out, int emit)
{
    const char *t = ip->text;
    size_t start = *pos, i = *pos + 2, ns = i;
    char name[128];
    int r;

    while (i < ip->len && is_name_char(t[i]))
        i++;
    if (i == ns || !is_name_start(t[ns]) || i - ns >= sizeof(name))
        return ifail(ip, start,
                     "bad variable reference at \"%.*s\": expected ${NAME}, ${NAME:-default} or "
                     "${NAME:?message} with NAME of [A-Za-z_][A-Za-z0-9_]* (write $$ for a "
                     "literal $)",
                     (int)(i + 1 - start < 40 ? i + 1 - start : 40), t + start);
    memcpy(name, t + ns, i - ns);
    name[i - ns] = '\0';
    const char *val = getenv(name);

    if (i < ip->len && t[i] == '}') {
        *pos = i + 1;
        if (!val && emit)
            return ifail(ip, start, "${%s} is not set (set it, or give a default: ${%s:-default})",
                         name, name);
        if (emit)
            ib_put_escaped(out, val);
        return ITR_OK;
    }
    if (i + 1 < ip->len && t[i] == ':' && t[i + 1] == '-') {
        int use_default = !val || !*val;
        *pos = i + 2;
        if ((r = expand_text(ip, pos, out, 1, emit && use_default)) < 0)
            return r;
        if (emit && !use_default)
            ib_put_escaped(out, val);
        return ITR_OK;
    }
    if (i + 1 < ip->len && t[i] == ':' && t[i + 1] == '?') {
        size_t m = i + 2;
        while (m < ip->len && t[m] != '}' && t[m] != '"' && t[m] != '\n')
            m++;
        if (m >= ip->len || t[m] != '}')
            return ifail(ip, start, "unterminated ${%s:?...} (expected '}')", name);
        *pos = m + 1;
        if ((!val || !*val) && emit)
            return ifail(ip, start, "${%s}: %.*s", name, (int)(m - (i + 2)), t + i + 2);
        if (emit)
            ib_put_escaped(out, val);
        return ITR_OK;
    }
    if (i >= ip->len || t[i] == '"' || t[i] == '\n')
        return ifail(ip, start, "unterminated ${%s (expected '}')", name);
    return ifail(ip, start,
                 "bad variable reference ${%s%c...}: expected ${NAME}, ${NAME:-default} or "
                 "${NAME:?message}",
                 name, t[i]);
}

/* String content from *pos: copies text, expanding ${...} and $$, until the closing '"' of the
 * JSON string (left at *pos) or, in a default (in_default), until its '}' (consumed). */
static int expand_text(interp *ip, size_t *pos, ibuf *out, int in_default, int emit)
{
    const char *t = ip->text;
    size_t i = *pos;
    int r;
    while (i < ip->len) {
        char ch = t[i];
        if (ch == '"' || (ch == '\n' && !in_default)) {
            if (in_default)
                return ifail(ip, i,
                             "unterminated ${...:-default} (expected '}' before the end "
                             "of the string)");
            break;
        }
        if (in_default && ch == '}') {
            *pos = i + 1;
            return ITR_OK;
        }
        if (ch == '\\' && i + 1 < ip->len) {
            if (emit)
                ib_put(out, t + i, 2);
            i += 2;
            continue;
        }
        if (ch == '$' && i + 1 < ip->len && t[i + 1] == '$') {
            if (emit && !in_default)
                ib_map(out, i, 1);
            if (emit)
                ib_put(out, "$", 1);
            if (emit && !in_default)
                ib_map(out, i + 2, 0);
            i += 2;
            continue;
        }
        if (ch == '$' && i + 1 < ip->len && t[i + 1] == '{') {
            size_t at = i;
            if (emit && !in_default)
                ib_map(out, at, 1);
            if ((r = expand_var(ip, &i, out, emit)) < 0)
                return r;
            if (emit && !in_default)
                ib_map(out, i, 0);
            continue;
        }
        if (ch == '\n')
            return ifail(ip, i, "unterminated ${...:-default} (expected '}')");
        if (emit)
            ib_put(out, t + i, 1);
        i++;
    }
    if (in_default)
        return ifail(ip, i, "unterminated ${...:-default} (expected '}')");
    *pos = i;
    return ITR_OK;
}

static int interpolate(interp *ip, ibuf *out)
{
    const char *t = ip->text;
    size_t i = 0;
    int r;
    ib_map(out, 0, 0);
    while (i < ip->len) {
        size_t run = i;
        while (i < ip->len && t[i] != '"')
            i++;
        ib_put(out, t + run, i - run);
        if (i >= ip->len)
            break;
        ib_put(out, "\"", 1);
        i++;
        if ((r = expand_text(ip, &i, out, 0, 1)) < 0)
            return r;
        if (i < ip->len && t[i] == '"') {
            ib_put(out, "\"", 1);
            i++;
        }
    }
    if (out->nomem)
        return ITR_ERR_NOMEM;
    if (!out->p)
        ib_put(out, "", 0);
    return out->nomem ? ITR_ERR_NOMEM : ITR_OK;
}

int gw_config_interpolate(const char *text, size_t len, const char *origin, char **out,
                          size_t *outlen, char *err, size_t errlen)
{
    interp ip = {.text = text,
                 .len = len,
                 .origin = origin ? origin : "config",
                 .err = err,
                 .errlen = errlen};
    ibuf b = {0};
    int r = interpolate(&ip, &b);
    free(b.map);
    *out = NULL;
    *outlen = 0;
    if (r < 0) {
        if (r == ITR_ERR_NOMEM && err && errlen)
            snprintf(err, errlen, "%s: out of memory", ip.origin);
        free(b.p);
        return r;
    }
    *out = b.p;
    *outlen = b.len;
    return ITR_OK;
}

/* ---- parse ---- */

/* Map an offset in the interpolated text back to the file's line and column. */
static void position_of(const interp *ip, const ibuf *b, size_t out_pos, size_t *line, size_t *col)
{
    size_t in = out_pos;
    for (size_t k = b->nmap; k-- > 0;) {
        if (b->map[k].out <= out_pos) {
            in = b->map[k].opaque ? b->map[k].in : b->map[k].in + (out_pos - b->map[k].out);
            break;
        }
    }
    if (in > ip->len)
        in = ip->len;
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < in; i++) {
        if (ip->text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

/* ---- syntax check ----
 * cJSON reports roughly where it stopped (sometimes one byte late) and not what it wanted, so
 * the document is first checked by this small RFC 8259 scanner, which stops at the exact
 * offending byte and says what was expected. cJSON then builds the tree of a document known to
 * be well-formed. */

#define JSON_MAX_DEPTH 512

typedef struct jscan {
    const char *p;
    size_t n, i;
    const char *expected; /* set at the failure */
} jscan;

static void js_ws(jscan *s)
{
    while (s->i < s->n &&
           (s->p[s->i] == ' ' || s->p[s->i] == '\t' || s->p[s->i] == '\n' || s->p[s->i] == '\r'))
        s->i++;
}

static int js_fail(jscan *s, const char *expected)
{
    s->expected = expected;
    return -1;
}

static int js_hex(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

static int js_string(jscan *s)
{
    s->i++; /* opening quote */
    while (s->i < s->n) {
        unsigned char ch = (unsigned char)s->p[s->i];
        if (ch == '"') {
            s->i++;
            return 0;
        }
        if (ch < 0x20)
            return js_fail(s, ch == '\n' ? "'\"' to close the string before the end of the line"
                                         : "no control characters in a string (escape them)");
        if (ch == '\\') {
            s->i++;
            if (s->i >= s->n)
                break;
            ch = (unsigned char)s->p[s->i];
            if (ch == 'u') {
                for (int k = 1; k <= 4; k++) {
                    if (s->i + (size_t)k >= s->n || !js_hex(s->p[s->i + (size_t)k])) {
                        s->i += (size_t)k;
                        return js_fail(s, "4 hex digits after \\u");
                    }
                }
                /* cJSON refuses unpaired UTF-16 surrogates: say so here, precisely. */
                unsigned cu = (unsigned)strtoul(
                    (char[]){s->p[s->i + 1], s->p[s->i + 2], s->p[s->i + 3], s->p[s->i + 4], 0},
                    NULL, 16);
                if (cu >= 0xdc00 && cu <= 0xdfff)
                    return js_fail(s, "a \\u escape that is not a lone low surrogate");
                s->i += 5;
                if (cu >= 0xd800 && cu <= 0xdbff) {
                    unsigned lo = 0;
                    if (s->n - s->i >= 6 && s->p[s->i] == '\\' && s->p[s->i + 1] == 'u' &&
                        js_hex(s->p[s->i + 2]) && js_hex(s->p[s->i + 3]) &&
                        js_hex(s->p[s->i + 4]) && js_hex(s->p[s->i + 5]))
                        lo = (unsigned)strtoul((char[]){s->p[s->i + 2], s->p[s->i + 3],
                                                        s->p[s->i + 4], s->p[s->i + 5], 0},
                                               NULL, 16);
                    if (lo < 0xdc00 || lo > 0xdfff)
                        return js_fail(s, "a \\uDC00-\\uDFFF low surrogate after a high one");
                    s->i += 6;
                }
                continue;
            }
            if (!strchr("\"\\/bfnrt", ch) || ch == '\0')
                return js_fail(s, "an escape: \\\" \\\\ \\/ \\b \\f \\n \\r \\t or \\uXXXX");
        }
        s->i++;
    }
    return js_fail(s, "'\"' to close the string");
}

static int js_digits(jscan *s)
{
    size_t start = s->i;
    while (s->i < s->n && s->p[s->i] >= '0' && s->p[s->i] <= '9')
        s->i++;
    return s->i > start ? 0 : js_fail(s, "a digit");
}

static int js_number(jscan *s)
{
    if (s->p[s->i] == '-')
        s->i++;
    if (s->i < s->n && s->p[s->i] == '0')
        s->i++;
    else if (js_digits(s) < 0)
        return -1;
    if (s->i < s->n && s->p[s->i] == '.') {
        s->i++;
        if (js_digits(s) < 0)
            return -1;
    }
    if (s->i < s->n && (s->p[s->i] == 'e' || s->p[s->i] == 'E')) {
        s->i++;
        if (s->i < s->n && (s->p[s->i] == '+' || s->p[s->i] == '-'))
            s->i++;
        if (js_digits(s) < 0)
            return -1;
    }
    return 0;
}

static int js_value(jscan *s, int depth);

static int js_container(jscan *s, int depth, char close)
{
    int first = 1;
    if (depth >= JSON_MAX_DEPTH)
        return js_fail(s, "less nesting (at most 512 levels)");
    s->i++; /* '{' or '[' */
    for (;;) {
        js_ws(s);
        if (first && s->i < s->n && s->p[s->i] == close) {
            s->i++;
            return 0;
        }
        if (close == '}') {
            if (s->i >= s->n || s->p[s->i] != '"')
                return js_fail(s, first ? "a key string or '}'" : "a key string");
            if (js_string(s) < 0)
                return -1;
            js_ws(s);
            if (s->i >= s->n || s->p[s->i] != ':')
                return js_fail(s, "':' after the key");
            s->i++;
        }
        if (js_value(s, depth + 1) < 0)
            return -1;
        js_ws(s);
        if (s->i < s->n && s->p[s->i] == ',') {
            s->i++;
            first = 0;
            continue;
        }
        if (s->i < s->n && s->p[s->i] == close) {
            s->i++;
            return 0;
        }
        return js_fail(s, close == '}' ? "',' or '}'" : "',' or ']'");
    }
}

static int js_value(jscan *s, int depth)
{
    js_ws(s);
    if (s->i >= s->n)
        return js_fail(s, "a value");
    switch (s->p[s->i]) {
    case '{':
        return js_container(s, depth, '}');
    case '[':
        return js_container(s, depth, ']');
    case '"':
        return js_string(s);
    case 't':
    case 'f':
    case 'n': {
        static const char *const words[] = {"true", "false", "null"};
        for (int k = 0; k < 3; k++) {
            size_t l = strlen(words[k]);
            if (s->n - s->i >= l && memcmp(s->p + s->i, words[k], l) == 0) {
                s->i += l;
                return 0;
            }
        }
        return js_fail(s, "a value (true, false, null, a number, a string, an object or an "
                          "array)");
    }
    default:
        if (s->p[s->i] == '-' || (s->p[s->i] >= '0' && s->p[s->i] <= '9'))
            return js_number(s);
        return js_fail(s, "a value");
    }
}

/* 0 if text is one well-formed JSON value; else -1 with *pos and *expected. */
static int json_syntax_check(const char *text, size_t n, size_t *pos, const char **expected)
{
    jscan s = {.p = text, .n = n, .i = 0, .expected = NULL};
    if (js_value(&s, 0) == 0) {
        js_ws(&s);
        if (s.i >= s.n)
            return 0;
        s.expected = "the end of the document";
    }
    *pos = s.i;
    *expected = s.expected;
    return -1;
}

static int parse_document(const char *text, size_t len, const char *origin, cJSON **root, char *err,
                          size_t errlen)
{
    interp ip = {.text = text, .len = len, .origin = origin, .err = err, .errlen = errlen};
    ibuf b = {0};
    const char *expected = NULL;
    size_t pos = 0;
    int r;

    *root = NULL;
    /* A UTF-8 byte order mark is not JSON, but editors add it. */
    if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) {
        ip.text += 3;
        ip.len -= 3;
    }
    if (memchr(ip.text, '\0', ip.len)) {
        size_t at = (size_t)((const char *)memchr(ip.text, '\0', ip.len) - ip.text);
        r = ifail(&ip, at, "syntax error: NUL byte in the document");
        goto out;
    }
    if ((r = interpolate(&ip, &b)) < 0) {
        if (r == ITR_ERR_NOMEM && err && errlen)
            snprintf(err, errlen, "%s: out of memory", origin);
        goto out;
    }
    if (json_syntax_check(b.p, b.len, &pos, &expected) < 0) {
        size_t line, col;
        position_of(&ip, &b, pos, &line, &col);
        if (err && errlen) {
            unsigned char ch = pos < b.len ? (unsigned char)b.p[pos] : 0;
            if (pos >= b.len)
                snprintf(err, errlen,
                         "%s:%zu:%zu: syntax error: unexpected end of input "
                         "(expected %s)",
                         origin, line, col, expected);
            else if (ch >= 0x20 && ch < 0x7f)
                snprintf(err, errlen, "%s:%zu:%zu: syntax error: unexpected '%c' (expected %s)",
                         origin, line, col, ch, expected);
            else
                snprintf(err, errlen,
                         "%s:%zu:%zu: syntax error: unexpected byte 0x%02x (expected %s)", origin,
                         line, col, ch, expected);
        }
        r = ITR_ERR_INVALID;
        goto out;
    }
    *root = cJSON_ParseWithLength(b.p, b.len);
    if (!*root) {
        /* Well-formed but not built: cJSON ran out of memory. */
        r = ITR_ERR_NOMEM;
        if (err && errlen)
            snprintf(err, errlen, "%s: out of memory", origin);
        goto out;
    }
    r = ITR_OK;
out:
    free(b.p);
    free(b.map);
    return r;
}

/* ---- validation ---- */

static int addr_is_loopback(const itr_addr *a)
{
    if (a->u.sa.sa_family == AF_INET)
        return (ntohl(a->u.in.sin_addr.s_addr) >> 24) == 127;
    if (a->u.sa.sa_family == AF_INET6) {
        const uint8_t *b = a->u.in6.sin6_addr.s6_addr;
        static const uint8_t lo[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        return memcmp(b, lo, 16) == 0 || (memcmp(b, mapped, 12) == 0 && b[12] == 127);
    }
    return 0;
}

static int check_address(gw_jctx *c, const cJSON *v, itr_addr *out)
{
    char why[256], got[64];
    if (!cJSON_IsString(v) || !v->valuestring)
        return gw_jctx_fail(c, "expected an address \"HOST:PORT\", got %s",
                            gw_json_describe(v, got, sizeof(got)));
    if (itr_addr_parse(out, v->valuestring, why, sizeof(why)) < 0)
        return gw_jctx_fail(c, "%s", why);
    return ITR_OK;
}

static int check_listen(gw_jctx *c, gw_config *cfg, const cJSON *root)
{
    const cJSON *l = cJSON_GetObjectItemCaseSensitive(root, "listen");
    char got[64];
    size_t saved = gw_jctx_push_key(c, "listen"), i = 0;
    int r;
    if (!l) {
        static const char def[] = "127.0.0.1:7400";
        cfg->listen[0] = def;
        cfg->nlisten = 1;
        gw_jctx_pop(c, saved);
        return itr_addr_parse(&cfg->listen_addr[0], def, NULL, 0);
    }
    if (!cJSON_IsArray(l) || cJSON_GetArraySize(l) < 1 ||
        cJSON_GetArraySize(l) > GW_CONFIG_MAX_LISTEN)
        return gw_jctx_fail(c, "expected an array of 1..%d \"HOST:PORT\" addresses, got %s",
                            GW_CONFIG_MAX_LISTEN, gw_json_describe(l, got, sizeof(got)));
    for (const cJSON *a = l->child; a; a = a->next, i++) {
        size_t at = gw_jctx_push_index(c, i);
        if ((r = check_address(c, a, &cfg->listen_addr[i])) < 0)
            return r;
        for (size_t j = 0; j < i; j++)
            if (strcmp(cfg->listen[j], a->valuestring) == 0)
                return gw_jctx_fail(c, "address \"%s\" is listed twice (also listen[%zu])",
                                    a->valuestring, j);
        cfg->listen[i] = a->valuestring;
        cfg->nlisten = i + 1;
        gw_jctx_pop(c, at);
    }
    gw_jctx_pop(c, saved);
    return ITR_OK;
}

static int check_log(gw_jctx *c, gw_config *cfg, const cJSON *root)
{
    static const char *const keys[] = {"format", "level", "security_interval_seconds", NULL};
    static const char *const formats[] = {"logfmt", "json", NULL};
    static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "log");
    int format = GW_LOG_LOGFMT, level = GW_LOG_INFO, r;
    cfg->log.security_interval_ns = 60ull * 1000000000u;
    if (o) {
        size_t saved = gw_jctx_push_key(c, "log");
        if ((r = gw_jcheck_object(c, o, keys)) < 0 ||
            (r = gw_jget_enum(c, o, "format", formats, GW_LOG_LOGFMT, &format)) < 0 ||
            (r = gw_jget_enum(c, o, "level", levels, GW_LOG_INFO, &level)) < 0 ||
            (r = gw_jget_seconds(c, o, "security_interval_seconds", 0.1, 86400, 60,
                                 &cfg->log.security_interval_ns)) < 0)
            return r;
        gw_jctx_pop(c, saved);
    }
    cfg->log.format = (gw_log_format)format;
    cfg->log.level = (gw_log_level)level;
    return ITR_OK;
}

static int check_transport(gw_jctx *c, gw_config *cfg, const cJSON *root)
{
    static const char *const keys[] = {"cookie_mode",
                                       "cookie_load_threshold",
                                       "max_handshakes_in_flight",
                                       "max_handshakes_per_ip",
                                       "handshake_timeout_seconds",
                                       "idle_timeout_seconds",
                                       "keepalive_seconds",
                                       "rekey_interval_seconds",
                                       "rate_limit_pps",
                                       "rate_limit_burst",
                                       "strike_limit",
                                       "strike_window_seconds",
                                       "max_peers",
                                       "max_packet_bytes",
                                       "reorder_max_bytes",
                                       "socket_receive_buffer_bytes",
                                       "socket_send_buffer_bytes",
                                       "batch_size",
                                       "receive_coalesce_us",
                                       "udp_gso",
                                       "udp_gro",
                                       NULL};
    /* Same order as itr_cookie_mode. */
    static const char *const cookie_modes[] = {"off", "under_load", "always", NULL};
    /* Same order as gw_gro_mode. */
    static const char *const gro_modes[] = {"auto", "on", "off", NULL};
    int gro = GW_GRO_AUTO;
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "transport");
    gw_transport_config *t = &cfg->transport;
    itr_settings *s = &t->settings;
    int mode = ITR_COOKIE_UNDER_LOAD, r;
    uint32_t rcv = 4u << 20, snd = 4u << 20;
    size_t saved;

    itr_settings_default(s);
    s->accept_handshakes = 1;
    t->socket_receive_buffer_bytes = (int)rcv;
    t->socket_send_buffer_bytes = (int)snd;
    t->batch_size = 64;
    t->receive_coalesce_us = GW_RECEIVE_COALESCE_US_DEFAULT;
    t->udp_gso = 1;
    t->udp_gro = GW_GRO_AUTO;
    if (!o)
        return ITR_OK;
    saved = gw_jctx_push_key(c, "transport");
    if ((r = gw_jcheck_object(c, o, keys)) < 0 ||
        (r = gw_jget_enum(c, o, "cookie_mode", cookie_modes, ITR_COOKIE_UNDER_LOAD, &mode)) < 0 ||
        (r = gw_jget_u32(c, o, "cookie_load_threshold", 1, 1000000, 50,
                         &s->cookie_load_threshold)) < 0 ||
        (r = gw_jget_u32(c, o, "max_handshakes_in_flight", 1, 1000000, 100,
                         &s->max_handshakes_in_flight)) < 0 ||
        (r = gw_jget_u32(c, o, "max_handshakes_per_ip", 1, 1000000, 5, &s->max_handshakes_per_ip)) <
            0 ||
        (r = gw_jget_seconds(c, o, "handshake_timeout_seconds", 0.1, 300, 5,
                             &s->handshake_timeout_ns)) < 0 ||
        (r = gw_jget_seconds(c, o, "idle_timeout_seconds", 0.1, 86400, 60, &s->idle_timeout_ns)) <
            0 ||
        (r = gw_jget_seconds(c, o, "keepalive_seconds", 0.05, 3600, 10, &s->keepalive_ns)) < 0 ||
        (r = gw_jget_seconds(c, o, "rekey_interval_seconds", 1, 86400, 120, &s->rekey_after_ns)) <
            0 ||
        (r = gw_jget_u32(c, o, "rate_limit_pps", 1, 10000000, 10000, &s->rate_limit_pps)) < 0 ||
        (r = gw_jget_u32(c, o, "rate_limit_burst", 1, 10000000, 500, &s->rate_limit_burst)) < 0 ||
        (r = gw_jget_u32(c, o, "strike_limit", 1, 1000000, 10, &s->strike_limit)) < 0 ||
        (r = gw_jget_seconds(c, o, "strike_window_seconds", 0.001, 3600, 5, &s->strike_window_ns)) <
            0 ||
        (r = gw_jget_u32(c, o, "max_peers", 1, 16777216, 65536, &s->max_peers)) < 0 ||
        (r = gw_jget_u32(c, o, "max_packet_bytes", 256, ITR_MAX_PACKET, ITR_MAX_PACKET,
                         &s->max_packet)) < 0 ||
        (r = gw_jget_u32(c, o, "reorder_max_bytes", 256, 64u << 20, 65536, &s->reorder_max_bytes)) <
            0 ||
        (r = gw_jget_u32(c, o, "socket_receive_buffer_bytes", 0, 1u << 30, 4u << 20, &rcv)) < 0 ||
        (r = gw_jget_u32(c, o, "socket_send_buffer_bytes", 0, 1u << 30, 4u << 20, &snd)) < 0 ||
        (r = gw_jget_u32(c, o, "batch_size", 1, 1024, 64, &t->batch_size)) < 0 ||
        (r = gw_jget_u32(c, o, "receive_coalesce_us", 0, ITR_RX_COALESCE_MAX_US,
                         GW_RECEIVE_COALESCE_US_DEFAULT, &t->receive_coalesce_us)) < 0 ||
        (r = gw_jget_bool(c, o, "udp_gso", 1, &t->udp_gso)) < 0 ||
        (r = gw_jget_enum(c, o, "udp_gro", gro_modes, GW_GRO_AUTO, &gro)) < 0)
        return r;
    t->udp_gro = (gw_gro_mode)gro;
    s->cookie_mode = (itr_cookie_mode)mode;
    /* Keys stay usable one minute past the rekey point, as with the defaults (120 s / 180 s). */
    s->reject_after_ns = s->rekey_after_ns + 60ull * 1000000000u;
    t->socket_receive_buffer_bytes = (int)rcv;
    t->socket_send_buffer_bytes = (int)snd;
    if (s->keepalive_ns >= s->idle_timeout_ns)
        return gw_jctx_fail_key(c, "keepalive_seconds",
                                "must be less than idle_timeout_seconds (%g), or idle peers are "
                                "closed before a keepalive",
                                (double)s->idle_timeout_ns / 1e9);
    if (s->reorder_max_bytes < s->max_packet)
        return gw_jctx_fail_key(c, "reorder_max_bytes", "must be at least max_packet_bytes (%u)",
                                s->max_packet);
    gw_jctx_pop(c, saved);
    return ITR_OK;
}

static int check_token_file(gw_jctx *c, const char *path, int create)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT && create)
            return ITR_OK; /* the daemon creates it (0600, random) at start */
        if (errno == ENOENT)
            return gw_jctx_fail_key(c, "token_file",
                                    "%s does not exist (create it with mode 0600, or set "
                                    "\"token_create\": true)",
                                    path);
        return gw_jctx_fail_key(c, "token_file", "cannot stat %s: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode))
        return gw_jctx_fail_key(c, "token_file", "%s is not a regular file", path);
    if ((st.st_mode & 077) != 0)
        return gw_jctx_fail_key(c, "token_file",
                                "%s has mode %04o (expected 0600: run chmod 600 %s)", path,
                                (unsigned)(st.st_mode & 07777), path);
    return ITR_OK;
}

static int check_readable(gw_jctx *c, const char *key, const char *path)
{
    if (access(path, R_OK) != 0)
        return gw_jctx_fail_key(c, key, "cannot read %s: %s", path, strerror(errno));
    return ITR_OK;
}

static int check_admin(gw_jctx *c, gw_config *cfg, const cJSON *root)
{
    static const char *const keys[] = {"enabled",          "listen",
                                       "token_file",       "token_create",
                                       "token_env",        "open_endpoints",
                                       "tls_cert_file",    "tls_key_file",
                                       "state_file",       "max_body_bytes",
                                       "connection_limit", "timeout_seconds",
                                       "threads",          NULL};
    static const char *const default_open[] = {"/healthz", "/readyz", "/metrics"};
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "admin");
    gw_admin_config *a = &cfg->admin;
    const cJSON *open = NULL, *listen = NULL;
    size_t saved = gw_jctx_push_key(c, "admin");
    char got[64];
    int r;
    uint32_t u;
    static const cJSON empty = {0};

    if (!o)
        o = &empty; /* every key at its default */
    else if ((r = gw_jcheck_object(c, o, keys)) < 0)
        return r;
    if ((r = gw_jget_bool(c, o, "enabled", 1, &a->enabled)) < 0 ||
        (r = gw_jget_string(c, o, "listen", 0, 0, 1, 256, "127.0.0.1:7401", &a->listen)) < 0 ||
        (r = gw_jget_string(c, o, "token_file", 0, 1, 1, 4096, NULL, &a->token_file)) < 0 ||
        (r = gw_jget_bool(c, o, "token_create", 0, &a->token_create)) < 0 ||
        (r = gw_jget_string(c, o, "token_env", 0, 1, 1, 128, NULL, &a->token_env)) < 0 ||
        (r = gw_jget_string(c, o, "tls_cert_file", 0, 1, 1, 4096, NULL, &a->tls_cert_file)) < 0 ||
        (r = gw_jget_string(c, o, "tls_key_file", 0, 1, 1, 4096, NULL, &a->tls_key_file)) < 0 ||
        (r = gw_jget_string(c, o, "state_file", 0, 1, 1, 4096, "data/state.json", &a->state_file)) <
            0 ||
        (r = gw_jget_u64(c, o, "max_body_bytes", 1024, 64u << 20, 1u << 20, &a->max_body_bytes)) <
            0 ||
        (r = gw_jget_u32(c, o, "connection_limit", 1, 100000, 64, &u)) < 0)
        return r;
    a->connection_limit = u;
    if ((r = gw_jget_seconds(c, o, "timeout_seconds", 0.1, 3600, 10, &a->timeout_ns)) < 0 ||
        (r = gw_jget_u32(c, o, "threads", 1, 64, 2, &u)) < 0)
        return r;
    a->threads = u;

    listen = cJSON_GetObjectItemCaseSensitive(o, "listen");
    if (listen) {
        size_t at = gw_jctx_push_key(c, "listen");
        if ((r = check_address(c, listen, &a->listen_addr)) < 0)
            return r;
        gw_jctx_pop(c, at);
    } else if (itr_addr_parse(&a->listen_addr, a->listen, NULL, 0) < 0) {
        return ITR_ERR_INVALID;
    }
    a->listen_loopback = addr_is_loopback(&a->listen_addr);

    open = cJSON_GetObjectItemCaseSensitive(o, "open_endpoints");
    if (open) {
        size_t at = gw_jctx_push_key(c, "open_endpoints"), i = 0;
        if (!cJSON_IsArray(open) || cJSON_GetArraySize(open) > 32)
            return gw_jctx_fail(c, "expected an array of up to 32 paths like \"/healthz\", got %s",
                                gw_json_describe(open, got, sizeof(got)));
        a->open_endpoint_count = (size_t)cJSON_GetArraySize(open);
        cfg->open_endpoints = calloc(a->open_endpoint_count + 1, sizeof(char *));
        if (!cfg->open_endpoints)
            return ITR_ERR_NOMEM;
        for (const cJSON *p = open->child; p; p = p->next, i++) {
            size_t e = gw_jctx_push_index(c, i);
            if (!cJSON_IsString(p) || !p->valuestring || p->valuestring[0] != '/' ||
                strlen(p->valuestring) > 128 || strpbrk(p->valuestring, " \t\r\n?#"))
                return gw_jctx_fail(c, "expected a path like \"/healthz\" (no query), got %s",
                                    gw_json_describe(p, got, sizeof(got)));
            cfg->open_endpoints[i] = p->valuestring;
            gw_jctx_pop(c, e);
        }
        gw_jctx_pop(c, at);
    } else {
        a->open_endpoint_count = 3;
        cfg->open_endpoints = calloc(4, sizeof(char *));
        if (!cfg->open_endpoints)
            return ITR_ERR_NOMEM;
        for (size_t i = 0; i < 3; i++)
            cfg->open_endpoints[i] = default_open[i];
    }
    a->open_endpoints = cfg->open_endpoints;

    if (a->token_env) {
        const char *p = a->token_env;
        int ok = is_name_start(*p);
        for (; *p; p++)
            ok = ok && is_name_char(*p);
        if (!ok)
            return gw_jctx_fail_key(c, "token_env",
                                    "expected an environment variable name "
                                    "([A-Za-z_][A-Za-z0-9_]*), got \"%s\"",
                                    a->token_env);
    }
    if (a->token_create && !a->token_file)
        return gw_jctx_fail_key(c, "token_create", "needs admin.token_file (the file to create)");
    if (!a->tls_cert_file != !a->tls_key_file)
        return gw_jctx_fail_key(c, a->tls_cert_file ? "tls_key_file" : "tls_cert_file",
                                "tls_cert_file and tls_key_file go together (set both, or "
                                "neither for plain HTTP)");
    if (a->enabled) {
        /* Checked only for an enabled API: these look at files and the environment. */
        const char *env = a->token_env ? getenv(a->token_env) : NULL;
        int env_ok = env && *env;
        if (!a->listen_loopback && !a->token_file && !a->token_env)
            return gw_jctx_fail_key(c, "listen",
                                    "\"%s\" is not a loopback address and no admin token is "
                                    "configured (set admin.token_file or admin.token_env, or "
                                    "listen on 127.0.0.1)",
                                    a->listen);
        if (!a->listen_loopback && !a->token_file && !env_ok)
            return gw_jctx_fail_key(c, "token_env",
                                    "%s is not set and there is no admin.token_file: the admin "
                                    "API on \"%s\" would have no token",
                                    a->token_env, a->listen);
        if (a->token_file && (r = check_token_file(c, a->token_file, a->token_create)) < 0)
            return r;
        if (a->tls_cert_file && ((r = check_readable(c, "tls_cert_file", a->tls_cert_file)) < 0 ||
                                 (r = check_readable(c, "tls_key_file", a->tls_key_file)) < 0))
            return r;
    }
    gw_jctx_pop(c, saved);
    return ITR_OK;
}

static int sink_name_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char ch = s[n];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return 0;
    }
    return n >= 1 && n <= 64;
}

static int check_sinks(gw_jctx *c, gw_config *cfg, const cJSON *root, char *err, size_t errlen)
{
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(root, "sinks");
    char got[64], where[GW_JPATH_MAX + 64];
    size_t saved = gw_jctx_push_key(c, "sinks"), n = 0;
    int r;

    if (!o)
        return gw_jctx_fail(c, "missing required key (expected an object {name: {\"type\": ...}} "
                               "with at least one sink)");
    if (!cJSON_IsObject(o) || !o->child)
        return gw_jctx_fail(c,
                            "expected an object {name: {\"type\": ...}} with at least one "
                            "sink, got %s",
                            cJSON_IsObject(o) ? "{}" : gw_json_describe(o, got, sizeof(got)));
    if ((r = gw_jcheck_no_duplicates(c, o)) < 0)
        return r;
    for (const cJSON *s = o->child; s; s = s->next)
        n++;
    if (n > GW_MAX_SINKS)
        return gw_jctx_fail(c, "too many sinks: %zu (at most %d)", n, GW_MAX_SINKS);
    cfg->sinks = calloc(n, sizeof(gw_sink_spec));
    cfg->sink_names = calloc(n + 1, sizeof(char *));
    if (!cfg->sinks || !cfg->sink_names)
        return ITR_ERR_NOMEM;
    for (const cJSON *s = o->child; s; s = s->next) {
        gw_sink_spec *sp = &cfg->sinks[cfg->nsinks];
        size_t at = gw_jctx_push_key(c, s->string);
        const gw_connector *conn;
        const char *type;
        int required;
        if (!sink_name_ok(s->string))
            return gw_jctx_fail(c, "invalid sink name (expected 1..64 characters of "
                                   "[A-Za-z0-9_-])");
        if (!cJSON_IsObject(s))
            return gw_jctx_fail(c, "expected an object {\"type\": ...}, got %s",
                                gw_json_describe(s, got, sizeof(got)));
        if ((r = gw_jcheck_no_duplicates(c, s)) < 0 ||
            (r = gw_jget_string(c, s, "type", 1, 0, 1, 64, NULL, &type)) < 0 ||
            (r = gw_jget_bool(c, s, "required", 0, &required)) < 0 ||
            (r = gw_jget_u64(c, s, "max_inflight_bytes", 1, 1ull << 40,
                             GW_SINK_DEFAULT_MAX_INFLIGHT_BYTES, &sp->max_inflight_bytes)) < 0 ||
            (r = gw_jget_u32(c, s, "queue_messages", 1, 1u << 24, GW_SINK_DEFAULT_QUEUE_MESSAGES,
                             &sp->queue_messages)) < 0)
            return r;
        conn = gw_connector_find(type);
        if (!conn)
            return gw_jctx_fail_key(c, "type", "unknown sink type \"%s\" (known: %s)", type,
                                    gw_connector_types());
        /* The connector checks its own keys and writes "WHERE.key: problem". */
        snprintf(where, sizeof(where), "%s: %s", c->origin, c->path);
        if (conn->validate && conn->validate(s, where, err, errlen) < 0) {
            if (c->field)
                snprintf(c->field, c->fieldlen, "%s", c->path);
            return ITR_ERR_INVALID;
        }
        sp->name = s->string;
        sp->type = type;
        sp->conf = s;
        sp->required = required;
        cfg->sink_names[cfg->nsinks++] = s->string;
        gw_jctx_pop(c, at);
    }
    gw_jctx_pop(c, saved);
    return ITR_OK;
}

static int check_default_shard(const gw_config *cfg, const gw_shards *shards,
                               const char *shards_origin, char *err, size_t errlen, char *field,
                               size_t fieldlen)
{
    gw_jctx c;
    if (!cfg->default_shard || gw_shards_find(shards, cfg->default_shard))
        return ITR_OK;
    if (shards_origin && strcmp(shards_origin, cfg->origin) != 0) {
        gw_jctx_init(&c, shards_origin, "", err, errlen, field, fieldlen);
        return gw_jctx_fail(
            &c, "shard \"%s\" is missing: it is the default_shard of %s%s", cfg->default_shard,
            cfg->origin,
            cfg->unknown_peers == GW_UNKNOWN_ADMIT ? " (unknown peers are admitted to it)" : "");
    }
    gw_jctx_init(&c, cfg->origin, "default_shard", err, errlen, field, fieldlen);
    return gw_jctx_fail(&c, "shard \"%s\" is not defined in shards%s", cfg->default_shard,
                        cfg->unknown_peers == GW_UNKNOWN_ADMIT
                            ? " (unknown_peers is \"admit\": unlisted peers go to it)"
                            : "");
}

int gw_config_build_routing(const gw_config *cfg, const cJSON *shards_doc,
                            const char *shards_origin, const cJSON *routes_doc,
                            const char *routes_origin, gw_shards **shards, gw_router **router,
                            char *err, size_t errlen, char *field, size_t fieldlen)
{
    gw_shards *t = NULL;
    int r;
    *shards = NULL;
    *router = NULL;
    if (field && fieldlen)
        field[0] = '\0';
    /* Documents named after the config file keep their paths inside it ("shards.x..."). */
    if (!shards_doc) {
        shards_doc = cfg->shards_doc;
        shards_origin = cfg->origin;
    } else if (!shards_origin) {
        shards_origin = "request body";
    }
    if (!routes_doc) {
        routes_doc = cfg->routes_doc;
        routes_origin = cfg->origin;
    } else if (!routes_origin) {
        routes_origin = "request body";
    }
    r = gw_shards_build(&t, shards_doc, shards_origin,
                        strcmp(shards_origin, cfg->origin) == 0 ? "shards" : "", err, errlen, field,
                        fieldlen);
    if (r < 0)
        return r;
    if ((r = check_default_shard(cfg, t, shards_origin, err, errlen, field, fieldlen)) < 0)
        goto fail;
    r = gw_router_compile(router, routes_doc, routes_origin,
                          strcmp(routes_origin, cfg->origin) == 0 ? "routes" : "", t,
                          cfg->sink_names, cfg->nsinks, err, errlen, field, fieldlen);
    if (r < 0)
        goto fail;
    *shards = t;
    return ITR_OK;
fail:
    gw_shards_free(t);
    return r;
}

static int validate(gw_config *cfg, char *err, size_t errlen)
{
    static const char *const keys[] = {"_comment",
                                       "listen",
                                       "key_file",
                                       "workers",
                                       "log",
                                       "transport",
                                       "limits",
                                       "unknown_peers",
                                       "default_shard",
                                       "shards",
                                       "sinks",
                                       "routes",
                                       "admin",
                                       "drain_timeout_seconds",
                                       NULL};
    static const char *const unknown_names[] = {"reject", "admit", NULL};
    static const char *const limit_keys[] = {"message_pool_bytes", NULL};
    const cJSON *root = cfg->root, *v;
    char got[64];
    gw_jctx c;
    int r, unknown;
    uint32_t workers;

    gw_jctx_init(&c, cfg->origin, "", err, errlen, NULL, 0);
    if (!cJSON_IsObject(root))
        return gw_jctx_fail(&c, "expected a JSON object at the top level, got %s",
                            gw_json_describe(root, got, sizeof(got)));
    if ((r = gw_jcheck_object(&c, root, keys)) < 0)
        return r;
    v = cJSON_GetObjectItemCaseSensitive(root, "_comment");
    if (v && !cJSON_IsString(v))
        return gw_jctx_fail_key(&c, "_comment", "expected a string, got %s",
                                gw_json_describe(v, got, sizeof(got)));
    if ((r = check_listen(&c, cfg, root)) < 0 ||
        (r = gw_jget_string(&c, root, "key_file", 0, 0, 1, 4096, "data/gateway.key",
                            &cfg->key_file)) < 0 ||
        (r = gw_jget_u32(&c, root, "workers", 1, GW_MAX_WORKERS, 1, &workers)) < 0 ||
        (r = check_log(&c, cfg, root)) < 0 || (r = check_transport(&c, cfg, root)) < 0)
        return r;
    cfg->workers = workers;

    v = cJSON_GetObjectItemCaseSensitive(root, "limits");
    cfg->message_pool_bytes = 64ull << 20;
    if (v) {
        size_t saved = gw_jctx_push_key(&c, "limits");
        if ((r = gw_jcheck_object(&c, v, limit_keys)) < 0 ||
            (r = gw_jget_u64(&c, v, "message_pool_bytes", 65536, 1ull << 36, 64ull << 20,
                             &cfg->message_pool_bytes)) < 0)
            return r;
        gw_jctx_pop(&c, saved);
    }
    if ((r = gw_jget_enum(&c, root, "unknown_peers", unknown_names, GW_UNKNOWN_REJECT, &unknown)) <
        0)
        return r;
    cfg->unknown_peers = (gw_unknown_peers)unknown;
    if ((r = gw_jget_string(&c, root, "default_shard", 0, 0, 1, GW_SHARD_ID_MAX - 1,
                            cfg->unknown_peers == GW_UNKNOWN_ADMIT ? "default" : NULL,
                            &cfg->default_shard)) < 0 ||
        (r = gw_jget_seconds(&c, root, "drain_timeout_seconds", 0, 3600, 10, &cfg->drain_ns)) < 0 ||
        (r = check_admin(&c, cfg, root)) < 0 || (r = check_sinks(&c, cfg, root, err, errlen)) < 0)
        return r;

    cfg->shards_doc = cJSON_GetObjectItemCaseSensitive(root, "shards");
    if (!cfg->shards_doc) {
        if (!(cfg->empty_shards = cJSON_CreateObject()))
            return ITR_ERR_NOMEM;
        cfg->shards_doc = cfg->empty_shards;
    }
    cfg->routes_doc = cJSON_GetObjectItemCaseSensitive(root, "routes");
    if (!cfg->routes_doc)
        return gw_jctx_fail_key(&c, "routes",
                                "missing required key (expected an array of routes, e.g. "
                                "[{\"match\": {\"topic\": \"*\"}, \"sinks\": [{\"sink\": "
                                "\"%s\"}]}])",
                                cfg->sink_names[0]);
    return gw_config_build_routing(cfg, NULL, NULL, NULL, NULL, &cfg->shards, &cfg->router, err,
                                   errlen, NULL, 0);
}

void gw_config_free(gw_config *cfg)
{
    if (!cfg)
        return;
    gw_router_free(cfg->router);
    gw_shards_free(cfg->shards);
    free(cfg->sinks);
    free(cfg->sink_names);
    free(cfg->open_endpoints);
    cJSON_Delete(cfg->empty_shards);
    cJSON_Delete(cfg->root);
    free(cfg->origin);
    free(cfg);
}

int gw_config_parse_text(const char *text, size_t len, const char *origin, gw_config **out,
                         char *err, size_t errlen)
{
    gw_config *cfg = NULL;
    int r;
    *out = NULL;
    if (err && errlen)
        err[0] = '\0';
    if (!origin)
        origin = "config";
    if (len > GW_CONFIG_MAX_BYTES) {
        if (err && errlen)
            snprintf(err, errlen, "%s: too large: %zu bytes (at most %u)", origin, len,
                     GW_CONFIG_MAX_BYTES);
        return ITR_ERR_INVALID;
    }
    cfg = calloc(1, sizeof(*cfg));
    if (!cfg || !(cfg->origin = malloc(strlen(origin) + 1))) {
        free(cfg);
        if (err && errlen)
            snprintf(err, errlen, "%s: out of memory", origin);
        return ITR_ERR_NOMEM;
    }
    memcpy(cfg->origin, origin, strlen(origin) + 1);
    if ((r = parse_document(text, len, cfg->origin, &cfg->root, err, errlen)) < 0)
        goto fail;
    if ((r = validate(cfg, err, errlen)) < 0)
        goto fail;
    *out = cfg;
    return ITR_OK;
fail:
    if (r == ITR_ERR_NOMEM && err && errlen && !err[0])
        snprintf(err, errlen, "%s: out of memory", origin);
    gw_config_free(cfg);
    return r;
}

int gw_config_load(const char *path, gw_config **out, char *err, size_t errlen)
{
    FILE *f = NULL;
    char *text = NULL;
    struct stat st;
    size_t n = 0;
    int r = ITR_ERR_IO;

    *out = NULL;
    f = fopen(path, "rb");
    if (!f || fstat(fileno(f), &st) != 0) {
        if (err && errlen)
            snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > (off_t)GW_CONFIG_MAX_BYTES) {
        if (err && errlen)
            snprintf(err, errlen, "%s: %s", path,
                     S_ISREG(st.st_mode) ? "too large (at most 16 MiB)" : "not a regular file");
        r = ITR_ERR_INVALID;
        goto out;
    }
    text = malloc((size_t)st.st_size + 1);
    if (!text) {
        r = ITR_ERR_NOMEM;
        goto out;
    }
    n = fread(text, 1, (size_t)st.st_size, f);
    if (ferror(f)) {
        if (err && errlen)
            snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        goto out;
    }
    r = gw_config_parse_text(text, n, path, out, err, errlen);
out:
    free(text);
    if (f)
        fclose(f);
    return r;
}

/* ---- accessors ---- */

const char *gw_config_origin(const gw_config *cfg)
{
    return cfg->origin;
}

const cJSON *gw_config_json(const gw_config *cfg)
{
    return cfg->root;
}

size_t gw_config_listen_count(const gw_config *cfg)
{
    return cfg->nlisten;
}

const char *gw_config_listen(const gw_config *cfg, size_t i)
{
    return i < cfg->nlisten ? cfg->listen[i] : NULL;
}

const itr_addr *gw_config_listen_addr(const gw_config *cfg, size_t i)
{
    return i < cfg->nlisten ? &cfg->listen_addr[i] : NULL;
}

const char *gw_config_key_file(const gw_config *cfg)
{
    return cfg->key_file;
}

unsigned gw_config_workers(const gw_config *cfg)
{
    return cfg->workers;
}

const gw_log_config *gw_config_log(const gw_config *cfg)
{
    return &cfg->log;
}

const gw_transport_config *gw_config_transport(const gw_config *cfg)
{
    return &cfg->transport;
}

uint64_t gw_config_message_pool_bytes(const gw_config *cfg)
{
    return cfg->message_pool_bytes;
}

gw_unknown_peers gw_config_unknown_peers(const gw_config *cfg)
{
    return cfg->unknown_peers;
}

const char *gw_config_default_shard(const gw_config *cfg)
{
    return cfg->default_shard;
}

const gw_admin_config *gw_config_admin(const gw_config *cfg)
{
    return &cfg->admin;
}

uint64_t gw_config_drain_timeout_ns(const gw_config *cfg)
{
    return cfg->drain_ns;
}

size_t gw_config_sink_count(const gw_config *cfg)
{
    return cfg->nsinks;
}

const gw_sink_spec *gw_config_sinks(const gw_config *cfg, size_t *n)
{
    if (n)
        *n = cfg->nsinks;
    return cfg->sinks;
}

const char *const *gw_config_sink_names(const gw_config *cfg)
{
    return cfg->sink_names;
}

int gw_config_sink_index(const gw_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->nsinks; i++)
        if (strcmp(cfg->sink_names[i], name) == 0)
            return (int)i;
    return -1;
}

const cJSON *gw_config_shards_doc(const gw_config *cfg)
{
    return cfg->shards_doc;
}

const cJSON *gw_config_routes_doc(const gw_config *cfg)
{
    return cfg->routes_doc;
}

const gw_shards *gw_config_shards(const gw_config *cfg)
{
    return cfg->shards;
}

const gw_router *gw_config_router(const gw_config *cfg)
{
    return cfg->router;
}
