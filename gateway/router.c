/* router.c: routes compiled into per-shard candidate sets (exact topics hashed, globs in
 * order), allocation-free matching, and destination/key templates (router.h). */
#define _POSIX_C_SOURCE 200809L /* strnlen */
#include "router.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <intentra/endpoint.h>
#include <intentra/error.h>

#include "json_check.h"

#define ROUTE_NAME_MAX  64
#define PATTERN_MAX     256
#define MAX_CANDIDATES  (16u << 20) /* shard-specific (route, shard) pairs in all */
#define SINKS_PER_ROUTE GW_MAX_DELIVERIES

/* ---- templates ---- */

enum {
    SEG_LIT = 0,
    SEG_SHARD,
    SEG_PEER,
    SEG_PEER_SHORT,
    SEG_TOPIC,
    SEG_INTENT,
    SEG_LABEL,
    SEG_ATTR,
};

enum { ATTR_KAFKA_TOPIC = 0, ATTR_KAFKA_PARTITION, ATTR_REDIS_PREFIX, ATTR_WEBHOOK_ENDPOINT };
static const char *const attr_names[] = {"kafka_topic", "kafka_partition", "redis_prefix",
                                         "webhook_endpoint", NULL};

typedef struct tseg {
    uint8_t kind;
    uint8_t attr;
    uint16_t len; /* literal or label name length */
    uint32_t off; /* into tmpl.text */
} tseg;

typedef struct tmpl {
    char *src;  /* the template as written */
    char *text; /* literals and label names, unescaped */
    tseg *segs;
    size_t nseg;
    int constant;
} tmpl;

struct gw_route_sink {
    const struct route *route;
    unsigned sink;
    uint8_t cls;
    uint32_t dedupe_id; /* equal for equal (sink, destination, key) */
    tmpl dest, key;
};

enum { TOPIC_ANY = 0, TOPIC_EXACT, TOPIC_GLOB };

typedef struct route {
    char *name;
    char *shard_pat;
    int shard_any; /* "*" */
    int has_peer;
    uint8_t peer[GW_SHARD_KEY_LEN];
    char *topic_pat;
    size_t topic_len;
    size_t topic_prefix; /* literal bytes before the first glob character */
    int topic_kind;
    uint8_t cls;
    int cont;
    size_t first_rs, nrs;
} route;

/* An exact-topic hash entry: the routes (ascending) of one candidate set with this topic. */
typedef struct xentry {
    uint64_t hash; /* 0 = empty */
    const char *topic;
    uint32_t len;
    uint32_t start, count; /* into cset.xroutes */
} xentry;

/* Candidate routes for one shard (or for all shards: the "*" routes). */
typedef struct cset {
    uint32_t *glob; /* routes with topic "*" or a glob, ascending */
    size_t nglob;
    xentry *exact; /* NULL when no exact-topic route */
    size_t exact_mask;
    uint32_t *xroutes;
} cset;

struct gw_router {
    const gw_shards *shards;
    uint8_t hash_key[crypto_shorthash_KEYBYTES]; /* topics are attacker-chosen */
    route *routes;
    size_t nroutes;
    gw_route_sink *rs;
    size_t nrs;
    char **sink_names;
    size_t nsinks;
    cset wild;       /* routes with shard "*" */
    cset *per_shard; /* gw_shards_count entries: the other routes matching each shard */
    size_t nshards;
};

static char *dup_strn(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static char *dup_str(const char *s)
{
    return dup_strn(s, strlen(s));
}

static uint64_t keyed_hash(const gw_router *r, const void *p, size_t n)
{
    uint8_t out[crypto_shorthash_BYTES];
    uint64_t h;
    crypto_shorthash(out, (const unsigned char *)p, n, r->hash_key);
    memcpy(&h, out, sizeof(h));
    return h ? h : 1;
}

/* ---- globs ---- */

static int topic_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '_' || ch == ':' || ch == '/' || ch == '-';
}

static int shard_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '_' || ch == '-';
}

static int has_glob_chars(const char *p)
{
    return strpbrk(p, "*?[") != NULL;
}

/* Check a glob: characters allowed by ok() plus * ? [ ]; classes terminated and non-empty.
 * On error writes the problem to why. */
static int glob_check(const char *p, int (*ok)(char), char *why, size_t whylen)
{
    size_t n = strlen(p);
    if (n == 0 || n > PATTERN_MAX) {
        snprintf(why, whylen, "expected a pattern of 1..%d characters", PATTERN_MAX);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '*' || p[i] == '?')
            continue;
        if (p[i] == '[') {
            size_t j = i + 1;
            if (p[j] == '!' || p[j] == '^')
                j++;
            if (p[j] == ']')
                j++; /* a ']' first in a class is literal */
            while (p[j] && p[j] != ']') {
                if (!ok(p[j]) && p[j] != '[') {
                    snprintf(why, whylen, "invalid character '%c' in class at offset %zu", p[j], j);
                    return -1;
                }
                j++;
            }
            if (!p[j]) {
                snprintf(why, whylen, "unterminated '[' at offset %zu (expected ']')", i);
                return -1;
            }
            i = j;
            continue;
        }
        if (p[i] == ']') {
            snprintf(why, whylen, "unmatched ']' at offset %zu", i);
            return -1;
        }
        if (!ok(p[i])) {
            if ((unsigned char)p[i] < 0x20 || (unsigned char)p[i] >= 0x7f)
                snprintf(why, whylen, "invalid byte 0x%02x at offset %zu", (unsigned char)p[i], i);
            else
                snprintf(why, whylen, "invalid character '%c' at offset %zu", p[i], i);
            return -1;
        }
    }
    return 0;
}

/* p at '[' of a checked class: does ch match? *end gets the position after ']'. */
static int class_match(const char *p, char ch, const char **end)
{
    const char *q = p + 1;
    int neg = 0, hit = 0;
    if (*q == '!' || *q == '^') {
        neg = 1;
        q++;
    }
    int first = 1;
    while (*q && (first || *q != ']')) {
        first = 0;
        if (q[1] == '-' && q[2] && q[2] != ']') {
            if ((unsigned char)ch >= (unsigned char)q[0] &&
                (unsigned char)ch <= (unsigned char)q[2])
                hit = 1;
            q += 3;
        } else {
            if (*q == ch)
                hit = 1;
            q++;
        }
    }
    *end = *q ? q + 1 : q;
    return hit != neg;
}

/* fnmatch without FNM_PATHNAME on a checked pattern; s is n bytes. Backtracks only to the
 * last '*', so the cost is O(len(p) * n) at worst. */
static int glob_match(const char *p, const char *s, size_t n)
{
    const char *star_p = NULL;
    size_t star_i = 0, i = 0;
    while (i < n) {
        if (*p == '*') {
            while (*p == '*')
                p++;
            if (!*p)
                return 1;
            star_p = p;
            star_i = i;
            continue;
        }
        if (*p == '?') {
            p++;
            i++;
            continue;
        }
        if (*p == '[') {
            const char *end;
            if (class_match(p, s[i], &end)) {
                p = end;
                i++;
                continue;
            }
        } else if (*p && *p == s[i]) {
            p++;
            i++;
            continue;
        }
        if (!star_p)
            return 0;
        p = star_p;
        i = ++star_i;
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

/* ---- templates ---- */

static const char valid_vars[] =
    "{shard} {peer} {peer_short} {topic} {intent} {label:NAME} {attr:NAME}";

static int label_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!shard_char(s[i]))
            return 0;
    return 1;
}

static void tmpl_release(tmpl *t)
{
    free(t->src);
    free(t->text);
    free(t->segs);
}

/* Compile src into t; on error returns -1 with the problem in why. -2: out of memory. */
static int tmpl_compile(tmpl *t, const char *src, char *why, size_t whylen)
{
    size_t n = strlen(src), tl = 0;
    memset(t, 0, sizeof(*t));
    if (n > GW_ROUTE_TEMPLATE_MAX) {
        snprintf(why, whylen, "template too long: %zu bytes (at most %d)", n,
                 GW_ROUTE_TEMPLATE_MAX);
        return -1;
    }
    t->src = dup_str(src);
    t->text = malloc(n + 1);
    t->segs = calloc(n + 1, sizeof(tseg)); /* at most one segment per byte */
    if (!t->src || !t->text || !t->segs)
        return -2;
    t->constant = 1;
    for (size_t i = 0; i < n;) {
        if (src[i] == '{' && src[i + 1] != '{') {
            const char *close = strchr(src + i + 1, '}');
            const char *v = src + i + 1;
            size_t vl;
            tseg sg = {0};
            if (!close) {
                snprintf(why, whylen,
                         "unterminated '{' at offset %zu (write {{ for a literal "
                         "brace)",
                         i);
                return -1;
            }
            vl = (size_t)(close - v);
            if (vl == 5 && memcmp(v, "shard", 5) == 0) {
                sg.kind = SEG_SHARD;
            } else if (vl == 4 && memcmp(v, "peer", 4) == 0) {
                sg.kind = SEG_PEER;
            } else if (vl == 10 && memcmp(v, "peer_short", 10) == 0) {
                sg.kind = SEG_PEER_SHORT;
            } else if (vl == 5 && memcmp(v, "topic", 5) == 0) {
                sg.kind = SEG_TOPIC;
            } else if (vl == 6 && memcmp(v, "intent", 6) == 0) {
                sg.kind = SEG_INTENT;
            } else if (vl > 6 && memcmp(v, "label:", 6) == 0) {
                if (!label_name_ok(v + 6, vl - 6)) {
                    snprintf(why, whylen,
                             "invalid label name in {%.*s} (expected 1..64 "
                             "characters of [A-Za-z0-9_.-])",
                             (int)(vl > 80 ? 80 : vl), v);
                    return -1;
                }
                sg.kind = SEG_LABEL;
                sg.off = (uint32_t)tl;
                sg.len = (uint16_t)(vl - 6);
                memcpy(t->text + tl, v + 6, vl - 6);
                tl += vl - 6;
            } else if (vl > 5 && memcmp(v, "attr:", 5) == 0) {
                int found = -1;
                for (int a = 0; attr_names[a]; a++)
                    if (strlen(attr_names[a]) == vl - 5 &&
                        memcmp(v + 5, attr_names[a], vl - 5) == 0)
                        found = a;
                if (found < 0) {
                    snprintf(why, whylen,
                             "unknown attribute {%.*s} (valid: kafka_topic, "
                             "kafka_partition, redis_prefix, webhook_endpoint)",
                             (int)(vl > 80 ? 80 : vl), v);
                    return -1;
                }
                sg.kind = SEG_ATTR;
                sg.attr = (uint8_t)found;
            } else {
                snprintf(why, whylen, "unknown variable {%.*s} (valid: %s)",
                         (int)(vl > 80 ? 80 : vl), v, valid_vars);
                return -1;
            }
            t->segs[t->nseg++] = sg;
            t->constant = 0;
            i = (size_t)(close - src) + 1;
            continue;
        }
        if (src[i] == '}' && src[i + 1] != '}') {
            snprintf(why, whylen, "unmatched '}' at offset %zu (write }} for a literal brace)", i);
            return -1;
        }
        /* A literal byte ({{ and }} stand for one brace); merge with a preceding literal. */
        char ch = src[i];
        i += (ch == '{' || ch == '}') ? 2 : 1;
        if (t->nseg && t->segs[t->nseg - 1].kind == SEG_LIT) {
            t->segs[t->nseg - 1].len++;
        } else {
            tseg sg = {.kind = SEG_LIT, .off = (uint32_t)tl, .len = 1};
            t->segs[t->nseg++] = sg;
        }
        t->text[tl++] = ch;
    }
    t->text[tl] = '\0';
    return 0;
}

static size_t tmpl_render(const tmpl *t, const gw_msg *m, char *out, size_t cap)
{
    size_t o = 0;
    char num[16];
    for (size_t i = 0; i < t->nseg; i++) {
        const tseg *sg = &t->segs[i];
        const char *p = NULL;
        size_t n = 0;
        const gw_shard_attrs *at = m->shard ? gw_shard_attributes(m->shard) : NULL;
        switch (sg->kind) {
        case SEG_LIT:
            p = t->text + sg->off;
            n = sg->len;
            break;
        case SEG_SHARD:
            if (m->shard) {
                p = gw_shard_id(m->shard);
                n = gw_shard_id_len(m->shard);
            } else if (m->shard_name) {
                p = m->shard_name;
                n = m->shard_name_len;
            }
            break;
        case SEG_PEER:
            p = m->peer_hex;
            n = strnlen(m->peer_hex, sizeof(m->peer_hex));
            break;
        case SEG_PEER_SHORT:
            p = m->peer_hex;
            n = strnlen(m->peer_hex, 8);
            break;
        case SEG_TOPIC:
            p = m->topic;
            n = m->topic_len;
            break;
        case SEG_INTENT:
            p = m->intent == ITR_INTENT_RELIABLE ? "reliable" : "realtime";
            n = strlen(p);
            break;
        case SEG_LABEL:
            if (m->shard)
                p = gw_shard_labeln(m->shard, t->text + sg->off, sg->len);
            n = p ? strlen(p) : 0;
            break;
        case SEG_ATTR:
            if (!at)
                break;
            if (sg->attr == ATTR_KAFKA_TOPIC)
                p = at->kafka_topic;
            else if (sg->attr == ATTR_REDIS_PREFIX)
                p = at->redis_prefix;
            else if (sg->attr == ATTR_WEBHOOK_ENDPOINT)
                p = at->webhook_endpoint;
            else if (at->kafka_partition >= 0) {
                int k = snprintf(num, sizeof(num), "%d", (int)at->kafka_partition);
                p = num;
                n = k > 0 ? (size_t)k : 0;
                break;
            }
            n = p ? strlen(p) : 0;
            break;
        default:
            break;
        }
        if (n >= cap - o)
            return (size_t)-1;
        if (n)
            memcpy(out + o, p, n);
        o += n;
    }
    if (o >= cap)
        return (size_t)-1;
    out[o] = '\0';
    return o;
}

size_t gw_route_sink_destination(const struct gw_route_sink *rs, const gw_msg *m, char *out,
                                 size_t cap)
{
    if (cap == 0)
        return (size_t)-1;
    return tmpl_render(&rs->dest, m, out, cap);
}

size_t gw_route_sink_key(const struct gw_route_sink *rs, const gw_msg *m, char *out, size_t cap)
{
    if (cap == 0)
        return (size_t)-1;
    return tmpl_render(&rs->key, m, out, cap);
}

unsigned gw_route_sink_index(const struct gw_route_sink *rs)
{
    return rs->sink;
}

int gw_route_sink_class(const struct gw_route_sink *rs)
{
    return rs->cls;
}

int gw_route_sink_reliable(const struct gw_route_sink *rs, int intent)
{
    if (rs->cls == GW_CLASS_RELIABLE)
        return 1;
    if (rs->cls == GW_CLASS_REALTIME)
        return 0;
    return intent == ITR_INTENT_RELIABLE;
}

const char *gw_route_sink_route_name(const struct gw_route_sink *rs)
{
    return rs->route->name;
}

const char *gw_route_sink_destination_template(const struct gw_route_sink *rs)
{
    return rs->dest.src;
}

const char *gw_route_sink_key_template(const struct gw_route_sink *rs)
{
    return rs->key.src;
}

int gw_route_sink_destination_is_constant(const struct gw_route_sink *rs)
{
    return rs->dest.constant;
}

int gw_route_sink_key_is_constant(const struct gw_route_sink *rs)
{
    return rs->key.constant;
}

static const char *const class_names[] = {"as_sent", "realtime", "reliable", NULL};

const char *gw_delivery_class_name(int c)
{
    return c >= 0 && c <= GW_CLASS_RELIABLE ? class_names[c] : "unknown";
}

/* ---- compile ---- */

static void cset_release(cset *s)
{
    free(s->glob);
    free(s->exact);
    free(s->xroutes);
}

void gw_router_free(gw_router *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nrs; i++) {
        tmpl_release(&r->rs[i].dest);
        tmpl_release(&r->rs[i].key);
    }
    free(r->rs);
    for (size_t i = 0; i < r->nroutes; i++) {
        free(r->routes[i].name);
        free(r->routes[i].shard_pat);
        free(r->routes[i].topic_pat);
    }
    free(r->routes);
    for (size_t i = 0; i < r->nsinks; i++)
        free(r->sink_names[i]);
    free(r->sink_names);
    cset_release(&r->wild);
    if (r->per_shard)
        for (size_t i = 0; i < r->nshards; i++)
            cset_release(&r->per_shard[i]);
    free(r->per_shard);
    sodium_memzero(r->hash_key, sizeof(r->hash_key));
    free(r);
}

static int parse_key_hex(const char *s, uint8_t out[GW_SHARD_KEY_LEN])
{
    if (strlen(s) != 2 * GW_SHARD_KEY_LEN)
        return -1;
    for (size_t i = 0; i < 2 * GW_SHARD_KEY_LEN; i++) {
        char ch = s[i];
        int v = (ch >= '0' && ch <= '9')   ? ch - '0'
                : (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10
                : (ch >= 'A' && ch <= 'F') ? ch - 'A' + 10
                                           : -1;
        if (v < 0)
            return -1;
        if (i % 2 == 0)
            out[i / 2] = (uint8_t)(v << 4);
        else
            out[i / 2] |= (uint8_t)v;
    }
    return 0;
}

/* "a, b, c" of up to 10 names, then ", ... (N in all)". */
static void name_list(char *out, size_t cap, const char *const *names, size_t n)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && i < 10 && o + 1 < cap; i++) {
        int k = snprintf(out + o, cap - o, "%s%s", i ? ", " : "", names[i]);
        if (k < 0)
            return;
        o += (size_t)k < cap - o ? (size_t)k : cap - o - 1;
    }
    if (n > 10 && o + 1 < cap)
        snprintf(out + o, cap - o, ", ... (%zu in all)", n);
    if (n == 0)
        snprintf(out, cap, "none");
}

static int compile_sink(gw_jctx *c, gw_router *r, route *rt, const cJSON *js)
{
    static const char *const keys[] = {"sink", "destination", "key", NULL};
    gw_route_sink *rs = &r->rs[r->nrs];
    const char *name, *dest, *key;
    char why[256];
    int res;
    if ((res = gw_jcheck_object(c, js, keys)) < 0)
        return res;
    if ((res = gw_jget_string(c, js, "sink", 1, 0, 1, 64, NULL, &name)) < 0)
        return res;
    if ((res = gw_jget_string(c, js, "destination", 0, 0, 0, GW_ROUTE_TEMPLATE_MAX, "{topic}",
                              &dest)) < 0)
        return res;
    if ((res = gw_jget_string(c, js, "key", 0, 0, 0, GW_ROUTE_TEMPLATE_MAX, "{peer}", &key)) < 0)
        return res;
    size_t si = 0;
    while (si < r->nsinks && strcmp(r->sink_names[si], name) != 0)
        si++;
    if (si == r->nsinks) {
        char list[512];
        name_list(list, sizeof(list), (const char *const *)r->sink_names, r->nsinks);
        return gw_jctx_fail_key(c, "sink", "unknown sink \"%s\" (defined: %s)", name, list);
    }
    rs->route = rt;
    rs->sink = (unsigned)si;
    rs->cls = rt->cls;
    r->nrs++; /* owned from here: released with the router even if a template fails */
    res = tmpl_compile(&rs->dest, dest, why, sizeof(why));
    if (res == -2)
        return ITR_ERR_NOMEM;
    if (res < 0)
        return gw_jctx_fail_key(c, "destination", "%s", why);
    res = tmpl_compile(&rs->key, key, why, sizeof(why));
    if (res == -2)
        return ITR_ERR_NOMEM;
    if (res < 0)
        return gw_jctx_fail_key(c, "key", "%s", why);
    return ITR_OK;
}

static int compile_route(gw_jctx *c, gw_router *r, size_t ri, const cJSON *jr)
{
    static const char *const keys[] = {"name", "match", "sinks", "delivery", "continue", NULL};
    static const char *const match_keys[] = {"shard", "peer", "topic", NULL};
    route *rt = &r->routes[ri];
    const cJSON *match, *sinks;
    const char *name = NULL, *shard = "*", *topic = "*", *peer = NULL;
    char why[256], got[64], defname[32];
    size_t saved;
    int res, cls, cont;

    if ((res = gw_jcheck_object(c, jr, keys)) < 0)
        return res;
    snprintf(defname, sizeof(defname), "route_%zu", ri);
    if ((res = gw_jget_string(c, jr, "name", 0, 0, 1, ROUTE_NAME_MAX, defname, &name)) < 0)
        return res;
    for (const char *p = name; *p; p++)
        if (!shard_char(*p))
            return gw_jctx_fail_key(c, "name",
                                    "invalid route name \"%s\" (expected 1..%d "
                                    "characters of [A-Za-z0-9_.-])",
                                    name, ROUTE_NAME_MAX);
    for (size_t j = 0; j < ri; j++)
        if (strcmp(r->routes[j].name, name) == 0)
            return gw_jctx_fail_key(c, "name", "route name \"%s\" is already used by routes[%zu]",
                                    name, j);
    if (!(rt->name = dup_str(name)))
        return ITR_ERR_NOMEM;
    if ((res = gw_jget_enum(c, jr, "delivery", class_names, GW_CLASS_AS_SENT, &cls)) < 0)
        return res;
    if ((res = gw_jget_bool(c, jr, "continue", 0, &cont)) < 0)
        return res;
    rt->cls = (uint8_t)cls;
    rt->cont = cont;

    match = cJSON_GetObjectItemCaseSensitive(jr, "match");
    if (match) {
        saved = gw_jctx_push_key(c, "match");
        if ((res = gw_jcheck_object(c, match, match_keys)) < 0)
            return res;
        if ((res = gw_jget_string(c, match, "shard", 0, 0, 1, PATTERN_MAX, "*", &shard)) < 0 ||
            (res = gw_jget_string(c, match, "topic", 0, 0, 1, PATTERN_MAX, "*", &topic)) < 0 ||
            (res = gw_jget_string(c, match, "peer", 0, 1, 1, 64, NULL, &peer)) < 0)
            return res;
        if (glob_check(shard, shard_char, why, sizeof(why)) < 0)
            return gw_jctx_fail_key(c, "shard", "bad shard pattern \"%s\": %s", shard, why);
        if (!has_glob_chars(shard) && !gw_shards_find(r->shards, shard)) {
            char list[512];
            const char *names[10];
            size_t ns = gw_shards_count(r->shards);
            for (size_t i = 0; i < ns && i < 10; i++)
                names[i] = gw_shard_id(gw_shards_at(r->shards, i));
            name_list(list, sizeof(list), names, ns);
            return gw_jctx_fail_key(c, "shard", "unknown shard \"%s\" (defined: %s)", shard, list);
        }
        if (glob_check(topic, topic_char, why, sizeof(why)) < 0)
            return gw_jctx_fail_key(c, "topic", "bad topic pattern \"%s\": %s", topic, why);
        if (!has_glob_chars(topic) && strlen(topic) > ITR_MAX_TOPIC)
            return gw_jctx_fail_key(c, "topic", "topic longer than %d characters", ITR_MAX_TOPIC);
        if (peer && parse_key_hex(peer, rt->peer) < 0) {
            cJSON tmp = {0};
            tmp.type = cJSON_String;
            tmp.valuestring = (char *)(uintptr_t)peer;
            return gw_jctx_fail_key(c, "peer", "expected a peer key of 64 hex digits, got %s",
                                    gw_json_describe(&tmp, got, sizeof(got)));
        }
        gw_jctx_pop(c, saved);
    }
    rt->has_peer = peer != NULL;
    rt->shard_any = strcmp(shard, "*") == 0;
    if (!(rt->shard_pat = dup_str(shard)) || !(rt->topic_pat = dup_str(topic)))
        return ITR_ERR_NOMEM;
    rt->topic_len = strlen(topic);
    rt->topic_prefix = strcspn(topic, "*?[");
    rt->topic_kind = strcmp(topic, "*") == 0 ? TOPIC_ANY
                     : has_glob_chars(topic) ? TOPIC_GLOB
                                             : TOPIC_EXACT;

    sinks = cJSON_GetObjectItemCaseSensitive(jr, "sinks");
    saved = gw_jctx_push_key(c, "sinks");
    if (!sinks)
        return gw_jctx_fail(c,
                            "missing required key (expected an array of 1..%d "
                            "{\"sink\": name})",
                            SINKS_PER_ROUTE);
    if (!cJSON_IsArray(sinks) || cJSON_GetArraySize(sinks) < 1 ||
        cJSON_GetArraySize(sinks) > SINKS_PER_ROUTE)
        return gw_jctx_fail(c, "expected an array of 1..%d {\"sink\": name} objects, got %s",
                            SINKS_PER_ROUTE, gw_json_describe(sinks, got, sizeof(got)));
    rt->first_rs = r->nrs;
    size_t i = 0;
    for (const cJSON *js = sinks->child; js; js = js->next, i++) {
        size_t at = gw_jctx_push_index(c, i);
        if ((res = compile_sink(c, r, rt, js)) < 0)
            return res;
        gw_jctx_pop(c, at);
    }
    rt->nrs = r->nrs - rt->first_rs;
    gw_jctx_pop(c, saved);
    return ITR_OK;
}

/* Give equal (sink, destination, key) triples one id, so matching dedupes by integer. */
static int assign_dedupe_ids(gw_router *r)
{
    size_t cap = 16;
    while (cap < 2 * r->nrs)
        cap <<= 1;
    struct slot {
        uint64_t h;
        uint32_t rs;
    } *tab = calloc(cap, sizeof(*tab));
    if (!tab)
        return ITR_ERR_NOMEM;
    for (size_t i = 0; i < r->nrs; i++) {
        gw_route_sink *rs = &r->rs[i];
        uint8_t buf[2 * GW_ROUTE_TEMPLATE_MAX + 16];
        size_t dl = strlen(rs->dest.src), kl = strlen(rs->key.src), o = 0;
        memcpy(buf, &rs->sink, sizeof(rs->sink));
        o += sizeof(rs->sink);
        memcpy(buf + o, rs->dest.src, dl + 1);
        o += dl + 1;
        memcpy(buf + o, rs->key.src, kl + 1);
        o += kl + 1;
        uint64_t h = keyed_hash(r, buf, o);
        for (size_t j = h & (cap - 1);; j = (j + 1) & (cap - 1)) {
            if (tab[j].h == 0) {
                tab[j].h = h;
                tab[j].rs = (uint32_t)i;
                rs->dedupe_id = (uint32_t)i;
                break;
            }
            const gw_route_sink *o2 = &r->rs[tab[j].rs];
            if (tab[j].h == h && o2->sink == rs->sink && strcmp(o2->dest.src, rs->dest.src) == 0 &&
                strcmp(o2->key.src, rs->key.src) == 0) {
                rs->dedupe_id = o2->dedupe_id;
                break;
            }
        }
    }
    free(tab);
    return ITR_OK;
}

/* Fill a candidate set from the ascending route list idx[0..n). */
static int cset_build(gw_router *r, cset *s, const uint32_t *idx, size_t n)
{
    size_t nexact = 0, nglob = 0;
    for (size_t i = 0; i < n; i++) {
        if (r->routes[idx[i]].topic_kind == TOPIC_EXACT)
            nexact++;
        else
            nglob++;
    }
    if (nglob) {
        if (!(s->glob = malloc(nglob * sizeof(uint32_t))))
            return ITR_ERR_NOMEM;
        for (size_t i = 0; i < n; i++)
            if (r->routes[idx[i]].topic_kind != TOPIC_EXACT)
                s->glob[s->nglob++] = idx[i];
    }
    if (!nexact)
        return ITR_OK;
    size_t cap = 16;
    while (cap < 2 * nexact)
        cap <<= 1;
    s->exact = calloc(cap, sizeof(xentry));
    s->xroutes = malloc(nexact * sizeof(uint32_t));
    if (!s->exact || !s->xroutes)
        return ITR_ERR_NOMEM;
    s->exact_mask = cap - 1;
    /* Two passes: count per topic, then place (keeps each topic's routes contiguous and in
     * route order). */
    for (size_t i = 0; i < n; i++) {
        const route *rt = &r->routes[idx[i]];
        if (rt->topic_kind != TOPIC_EXACT)
            continue;
        uint64_t h = keyed_hash(r, rt->topic_pat, rt->topic_len);
        for (size_t j = h & s->exact_mask;; j = (j + 1) & s->exact_mask) {
            xentry *e = &s->exact[j];
            if (e->hash == 0) {
                e->hash = h;
                e->topic = rt->topic_pat;
                e->len = (uint32_t)rt->topic_len;
                e->count = 1;
                break;
            }
            if (e->hash == h && e->len == rt->topic_len &&
                memcmp(e->topic, rt->topic_pat, rt->topic_len) == 0) {
                e->count++;
                break;
            }
        }
    }
    uint32_t next = 0;
    for (size_t j = 0; j <= s->exact_mask; j++) {
        if (s->exact[j].hash) {
            s->exact[j].start = next;
            next += s->exact[j].count;
            s->exact[j].count = 0;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const route *rt = &r->routes[idx[i]];
        if (rt->topic_kind != TOPIC_EXACT)
            continue;
        uint64_t h = keyed_hash(r, rt->topic_pat, rt->topic_len);
        for (size_t j = h & s->exact_mask;; j = (j + 1) & s->exact_mask) {
            xentry *e = &s->exact[j];
            if (e->hash == h && e->len == rt->topic_len &&
                memcmp(e->topic, rt->topic_pat, rt->topic_len) == 0) {
                s->xroutes[e->start + e->count++] = idx[i];
                break;
            }
        }
    }
    return ITR_OK;
}

static int build_candidates(gw_router *r, gw_jctx *c)
{
    uint32_t *idx = malloc((r->nroutes ? r->nroutes : 1) * sizeof(uint32_t));
    size_t n = 0, total = 0;
    int res = ITR_OK;
    if (!idx)
        return ITR_ERR_NOMEM;
    for (size_t i = 0; i < r->nroutes; i++)
        if (r->routes[i].shard_any)
            idx[n++] = (uint32_t)i;
    if ((res = cset_build(r, &r->wild, idx, n)) < 0)
        goto out;
    r->nshards = gw_shards_count(r->shards);
    r->per_shard = calloc(r->nshards ? r->nshards : 1, sizeof(cset));
    if (!r->per_shard) {
        res = ITR_ERR_NOMEM;
        goto out;
    }
    for (size_t s = 0; s < r->nshards; s++) {
        const gw_shard *sh = gw_shards_at(r->shards, s);
        n = 0;
        for (size_t i = 0; i < r->nroutes; i++) {
            const route *rt = &r->routes[i];
            if (rt->shard_any)
                continue;
            if (glob_match(rt->shard_pat, gw_shard_id(sh), gw_shard_id_len(sh)))
                idx[n++] = (uint32_t)i;
        }
        total += n;
        if (total > MAX_CANDIDATES) {
            res = gw_jctx_fail(c,
                               "routes x shards too large: more than %u shard-specific "
                               "(route, shard) pairs",
                               MAX_CANDIDATES);
            goto out;
        }
        if ((res = cset_build(r, &r->per_shard[s], idx, n)) < 0)
            goto out;
    }
out:
    free(idx);
    return res;
}

int gw_router_compile(gw_router **out, const cJSON *routes, const char *origin, const char *path,
                      const gw_shards *shards, const char *const *sink_names, size_t nsinks,
                      char *err, size_t errlen, char *field, size_t fieldlen)
{
    gw_jctx c;
    gw_router *r = NULL;
    char got[64];
    int res = ITR_OK;
    size_t n;

    *out = NULL;
    gw_jctx_init(&c, origin, path, err, errlen, field, fieldlen);
    if (!cJSON_IsArray(routes))
        return gw_jctx_fail(&c, "expected an array of routes, got %s",
                            gw_json_describe(routes, got, sizeof(got)));
    n = (size_t)cJSON_GetArraySize(routes);
    if (n > GW_MAX_ROUTES)
        return gw_jctx_fail(&c, "too many routes: %zu (at most %d)", n, GW_MAX_ROUTES);
    if (sodium_init() < 0 || !(r = calloc(1, sizeof(*r))))
        return ITR_ERR_NOMEM;
    randombytes_buf(r->hash_key, sizeof(r->hash_key));
    r->shards = shards;
    r->routes = calloc(n ? n : 1, sizeof(route));
    r->rs = calloc(n ? n * SINKS_PER_ROUTE : 1, sizeof(gw_route_sink));
    r->sink_names = calloc(nsinks ? nsinks : 1, sizeof(char *));
    if (!r->routes || !r->rs || !r->sink_names) {
        res = ITR_ERR_NOMEM;
        goto out;
    }
    for (; r->nsinks < nsinks; r->nsinks++) {
        if (!(r->sink_names[r->nsinks] = dup_str(sink_names[r->nsinks]))) {
            res = ITR_ERR_NOMEM;
            goto out;
        }
    }
    size_t i = 0;
    for (const cJSON *jr = routes->child; jr; jr = jr->next, i++) {
        size_t saved = gw_jctx_push_index(&c, i);
        r->nroutes = i + 1;
        if ((res = compile_route(&c, r, i, jr)) < 0)
            goto out;
        gw_jctx_pop(&c, saved);
    }
    if ((res = assign_dedupe_ids(r)) < 0 || (res = build_candidates(r, &c)) < 0)
        goto out;
    *out = r;
    r = NULL;
out:
    if (res == ITR_ERR_NOMEM && err && errlen)
        snprintf(err, errlen, "%s: out of memory compiling routes", c.origin);
    gw_router_free(r);
    return res;
}

/* ---- match ---- */

static const xentry *cset_exact(const gw_router *r, const cset *s, const char *topic, size_t n,
                                uint64_t *h, int *have_h)
{
    if (!s->exact)
        return NULL;
    if (!*have_h) {
        *h = keyed_hash(r, topic, n);
        *have_h = 1;
    }
    for (size_t j = *h & s->exact_mask;; j = (j + 1) & s->exact_mask) {
        const xentry *e = &s->exact[j];
        if (e->hash == 0)
            return NULL;
        if (e->hash == *h && e->len == n && memcmp(e->topic, topic, n) == 0)
            return e;
    }
}

/* Delivery class strength for dedupe: reliable > as_sent > realtime. */
static int class_rank(int cls)
{
    return cls == GW_CLASS_RELIABLE ? 2 : cls == GW_CLASS_AS_SENT ? 1 : 0;
}

typedef struct match_state {
    const gw_route_sink **out;
    size_t n;
    unsigned overflow;
    uint32_t over_ids[32]; /* distinct ids already counted as overflow */
    size_t nover;
} match_state;

static void add_route(const gw_router *r, const route *rt, match_state *ms)
{
    for (size_t k = 0; k < rt->nrs; k++) {
        const gw_route_sink *rs = &r->rs[rt->first_rs + k];
        size_t j = 0;
        for (; j < ms->n; j++) {
            if (ms->out[j]->dedupe_id == rs->dedupe_id) {
                if (class_rank(rs->cls) > class_rank(ms->out[j]->cls))
                    ms->out[j] = rs;
                break;
            }
        }
        if (j < ms->n)
            continue;
        if (ms->n < GW_MAX_DELIVERIES) {
            ms->out[ms->n++] = rs;
            continue;
        }
        for (j = 0; j < ms->nover; j++)
            if (ms->over_ids[j] == rs->dedupe_id)
                break;
        if (j < ms->nover)
            continue;
        if (ms->nover < sizeof(ms->over_ids) / sizeof(ms->over_ids[0]))
            ms->over_ids[ms->nover++] = rs->dedupe_id;
        ms->overflow++;
    }
}

size_t gw_router_match(const gw_router *r, const gw_shard *shard,
                       const uint8_t peer[GW_SHARD_KEY_LEN], const char *topic, size_t topic_len,
                       const gw_route_sink *out[GW_MAX_DELIVERIES], unsigned *overflow)
{
    /* Four ascending streams of candidate route indices, merged so routes are tried in
     * order: the shard's glob routes, the shard's exact-topic hits, and the same two for the
     * "*" routes. Exact hits already matched the topic; globs are checked here. */
    const uint32_t *seq[4] = {NULL, NULL, NULL, NULL};
    size_t len[4] = {0, 0, 0, 0}, pos[4] = {0, 0, 0, 0};
    uint64_t h = 0;
    int have_h = 0;
    match_state ms = {.out = out, .n = 0, .overflow = 0, .nover = 0};
    const cset *sets[2] = {&r->wild, NULL};

    if (shard) {
        if (gw_shard_table(shard) != r->shards || gw_shard_index(shard) >= r->nshards) {
            if (overflow)
                *overflow = 0;
            return 0;
        }
        sets[1] = &r->per_shard[gw_shard_index(shard)];
    }
    for (int k = 0; k < 2; k++) {
        const cset *s = sets[k];
        if (!s)
            continue;
        seq[2 * k] = s->glob;
        len[2 * k] = s->nglob;
        const xentry *e = cset_exact(r, s, topic, topic_len, &h, &have_h);
        if (e) {
            seq[2 * k + 1] = s->xroutes + e->start;
            len[2 * k + 1] = e->count;
        }
    }
    for (;;) {
        int best = -1;
        uint32_t bi = 0;
        for (int k = 0; k < 4; k++) {
            if (pos[k] < len[k] && (best < 0 || seq[k][pos[k]] < bi)) {
                best = k;
                bi = seq[k][pos[k]];
            }
        }
        if (best < 0)
            break;
        pos[best]++;
        const route *rt = &r->routes[bi];
        if (rt->has_peer && (!peer || memcmp(rt->peer, peer, GW_SHARD_KEY_LEN) != 0))
            continue;
        /* The literal prefix rejects most glob routes with one memcmp. */
        if (rt->topic_kind == TOPIC_GLOB &&
            (topic_len < rt->topic_prefix || memcmp(rt->topic_pat, topic, rt->topic_prefix) != 0 ||
             !glob_match(rt->topic_pat + rt->topic_prefix, topic + rt->topic_prefix,
                         topic_len - rt->topic_prefix)))
            continue;
        add_route(r, rt, &ms);
        if (!rt->cont)
            break;
    }
    if (overflow)
        *overflow = ms.overflow;
    return ms.n;
}

size_t gw_router_route_count(const gw_router *r)
{
    return r->nroutes;
}

const gw_shards *gw_router_shards(const gw_router *r)
{
    return r->shards;
}

cJSON *gw_router_to_json(const gw_router *r)
{
    static const char digits[] = "0123456789abcdef";
    cJSON *arr = cJSON_CreateArray();
    if (!arr)
        return NULL;
    for (size_t i = 0; i < r->nroutes; i++) {
        const route *rt = &r->routes[i];
        cJSON *o = cJSON_CreateObject(), *m, *sinks;
        if (!o || !cJSON_AddItemToArray(arr, o)) {
            cJSON_Delete(o);
            goto fail;
        }
        if (!cJSON_AddStringToObject(o, "name", rt->name) ||
            !(m = cJSON_AddObjectToObject(o, "match")) ||
            !cJSON_AddStringToObject(m, "shard", rt->shard_pat))
            goto fail;
        if (rt->has_peer) {
            char hex[2 * GW_SHARD_KEY_LEN + 1];
            for (size_t b = 0; b < GW_SHARD_KEY_LEN; b++) {
                hex[2 * b] = digits[rt->peer[b] >> 4];
                hex[2 * b + 1] = digits[rt->peer[b] & 15];
            }
            hex[2 * GW_SHARD_KEY_LEN] = '\0';
            if (!cJSON_AddStringToObject(m, "peer", hex))
                goto fail;
        }
        if (!cJSON_AddStringToObject(m, "topic", rt->topic_pat) ||
            !(sinks = cJSON_AddArrayToObject(o, "sinks")))
            goto fail;
        for (size_t k = 0; k < rt->nrs; k++) {
            const gw_route_sink *rs = &r->rs[rt->first_rs + k];
            cJSON *so = cJSON_CreateObject();
            if (!so || !cJSON_AddItemToArray(sinks, so)) {
                cJSON_Delete(so);
                goto fail;
            }
            if (!cJSON_AddStringToObject(so, "sink", r->sink_names[rs->sink]) ||
                !cJSON_AddStringToObject(so, "destination", rs->dest.src) ||
                !cJSON_AddStringToObject(so, "key", rs->key.src))
                goto fail;
        }
        if (!cJSON_AddStringToObject(o, "delivery", class_names[rt->cls]) ||
            !cJSON_AddBoolToObject(o, "continue", rt->cont))
            goto fail;
    }
    return arr;
fail:
    cJSON_Delete(arr);
    return NULL;
}
