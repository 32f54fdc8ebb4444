/* json_check.c: strict JSON validation helpers with path-naming errors (json_check.h). */
#include "json_check.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <intentra/error.h>

void gw_jctx_init(gw_jctx *c, const char *origin, const char *path, char *err, size_t errlen,
                  char *field, size_t fieldlen)
{
    c->origin = origin ? origin : "config";
    c->len = 0;
    c->path[0] = '\0';
    if (path && *path) {
        int n = snprintf(c->path, sizeof(c->path), "%s", path);
        c->len = n < 0 ? 0 : ((size_t)n < sizeof(c->path) ? (size_t)n : sizeof(c->path) - 1);
    }
    c->err = errlen ? err : NULL;
    c->errlen = errlen;
    c->field = fieldlen ? field : NULL;
    c->fieldlen = fieldlen;
    if (c->err)
        c->err[0] = '\0';
    if (c->field)
        c->field[0] = '\0';
}

static int plain_key(const char *key)
{
    if (!*key)
        return 0;
    for (const char *p = key; *p; p++) {
        char ch = *p;
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

static void path_append(gw_jctx *c, const char *s, size_t n)
{
    size_t room = sizeof(c->path) - 1 - c->len;
    if (n > room)
        n = room;
    memcpy(c->path + c->len, s, n);
    c->len += n;
    c->path[c->len] = '\0';
}

/* Append key to buf[0..*len) in path syntax (used for the path and for one-off messages). */
static void key_segment(char *out, size_t cap, int first, const char *key)
{
    if (plain_key(key)) {
        snprintf(out, cap, "%s%s", first ? "" : ".", key);
        return;
    }
    /* ["..."] with quotes and backslashes escaped, control characters as '?'. */
    size_t o = 0;
    if (cap < 8) {
        out[0] = '\0';
        return;
    }
    out[o++] = '[';
    out[o++] = '"';
    for (const char *p = key; *p && o + 4 < cap; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\')
            out[o++] = '\\';
        out[o++] = ch < 0x20 ? '?' : (char)ch;
    }
    out[o++] = '"';
    out[o++] = ']';
    out[o] = '\0';
}

size_t gw_jctx_push_key(gw_jctx *c, const char *key)
{
    char seg[160];
    size_t saved = c->len;
    key_segment(seg, sizeof(seg), c->len == 0, key ? key : "");
    path_append(c, seg, strlen(seg));
    return saved;
}

size_t gw_jctx_push_index(gw_jctx *c, size_t i)
{
    char seg[32];
    size_t saved = c->len;
    int n = snprintf(seg, sizeof(seg), "[%zu]", i);
    if (n > 0)
        path_append(c, seg, (size_t)n);
    return saved;
}

void gw_jctx_pop(gw_jctx *c, size_t saved)
{
    if (saved <= c->len) {
        c->len = saved;
        c->path[saved] = '\0';
    }
}

static int vfail(gw_jctx *c, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static int vfail(gw_jctx *c, const char *fmt, va_list ap)
{
    char msg[768];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    if (c->err) {
        if (c->len)
            snprintf(c->err, c->errlen, "%s: %s: %s", c->origin, c->path, msg);
        else
            snprintf(c->err, c->errlen, "%s: %s", c->origin, msg);
    }
    if (c->field)
        snprintf(c->field, c->fieldlen, "%s", c->path);
    return ITR_ERR_INVALID;
}

int gw_jctx_fail(gw_jctx *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vfail(c, fmt, ap);
    va_end(ap);
    return r;
}

int gw_jctx_fail_key(gw_jctx *c, const char *key, const char *fmt, ...)
{
    va_list ap;
    size_t saved = gw_jctx_push_key(c, key);
    va_start(ap, fmt);
    int r = vfail(c, fmt, ap);
    va_end(ap);
    gw_jctx_pop(c, saved);
    return r;
}

const char *gw_json_type_name(const cJSON *v)
{
    if (!v)
        return "nothing";
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsNumber(v))
        return "a number";
    if (cJSON_IsBool(v))
        return "a boolean";
    if (cJSON_IsNull(v))
        return "null";
    if (cJSON_IsObject(v))
        return "an object";
    if (cJSON_IsArray(v))
        return "an array";
    return "an invalid value";
}

const char *gw_json_describe(const cJSON *v, char *out, size_t cap)
{
    if (cap == 0)
        return out;
    if (cJSON_IsString(v) && v->valuestring) {
        size_t o = 0;
        const char *s = v->valuestring;
        size_t n = strlen(s);
        size_t lim = n > 40 ? 40 : n;
        if (cap < 8) {
            out[0] = '\0';
            return out;
        }
        out[o++] = '"';
        for (size_t i = 0; i < lim && o + 6 < cap; i++) {
            unsigned char ch = (unsigned char)s[i];
            if (ch == '"' || ch == '\\')
                out[o++] = '\\';
            out[o++] = ch < 0x20 ? '?' : (char)ch;
        }
        if (n > lim && o + 5 < cap) {
            memcpy(out + o, "...", 3);
            o += 3;
        }
        out[o++] = '"';
        out[o] = '\0';
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) < 1e15)
            snprintf(out, cap, "%.0f", d);
        else
            snprintf(out, cap, "%.17g", d);
    } else if (cJSON_IsBool(v)) {
        snprintf(out, cap, "%s", cJSON_IsTrue(v) ? "true" : "false");
    } else {
        snprintf(out, cap, "%s", gw_json_type_name(v));
    }
    return out;
}

size_t gw_json_edit_distance(const char *a, const char *b, size_t cap)
{
    /* Two-row Levenshtein over at most 64 characters of each (keys are short). */
    size_t prev[65], cur[65];
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return cap + 1;
    if ((la > lb ? la - lb : lb - la) > cap)
        return cap + 1;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            size_t m = sub < del ? sub : del;
            cur[j] = m < ins ? m : ins;
        }
        memcpy(prev, cur, (lb + 1) * sizeof(size_t));
    }
    return prev[lb] > cap ? cap + 1 : prev[lb];
}

int gw_jcheck_no_duplicates(gw_jctx *c, const cJSON *obj)
{
    /* Quadratic, but objects in a config are small; a shards object with many ids is checked
     * by its builder's hash table instead. */
    for (const cJSON *a = obj ? obj->child : NULL; a; a = a->next) {
        for (const cJSON *b = a->next; b; b = b->next) {
            if (a->string && b->string && strcmp(a->string, b->string) == 0)
                return gw_jctx_fail_key(c, a->string, "key appears twice in the object");
        }
    }
    return ITR_OK;
}

int gw_jcheck_object(gw_jctx *c, const cJSON *obj, const char *const *allowed)
{
    char got[64];
    if (!cJSON_IsObject(obj))
        return gw_jctx_fail(c, "expected an object, got %s",
                            gw_json_describe(obj, got, sizeof(got)));
    for (const cJSON *m = obj->child; m; m = m->next) {
        const char *best = NULL;
        size_t best_d = 3;
        int found = 0;
        for (size_t i = 0; allowed[i]; i++) {
            if (strcmp(m->string, allowed[i]) == 0) {
                found = 1;
                break;
            }
            size_t d = gw_json_edit_distance(m->string, allowed[i], 2);
            if (d < best_d) {
                best_d = d;
                best = allowed[i];
            }
        }
        if (found)
            continue;
        char list[512];
        size_t o = 0;
        list[0] = '\0';
        for (size_t i = 0; allowed[i] && o + 2 < sizeof(list); i++) {
            int n = snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "", allowed[i]);
            if (n < 0)
                break;
            o += (size_t)n < sizeof(list) - o ? (size_t)n : sizeof(list) - o - 1;
        }
        if (best)
            return gw_jctx_fail_key(c, m->string, "unknown key (did you mean \"%s\"? allowed: %s)",
                                    best, list);
        return gw_jctx_fail_key(c, m->string, "unknown key (allowed: %s)", list);
    }
    return gw_jcheck_no_duplicates(c, obj);
}

int gw_jget_int(gw_jctx *c, const cJSON *obj, const char *key, int required, int64_t min,
                int64_t max, int64_t def, int64_t *out)
{
    char got[64];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) {
        if (required)
            return gw_jctx_fail_key(c, key, "missing required key (expected an integer %lld..%lld)",
                                    (long long)min, (long long)max);
        *out = def;
        return ITR_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
        v->valuedouble < (double)min || v->valuedouble > (double)max)
        return gw_jctx_fail_key(c, key, "expected an integer %lld..%lld, got %s", (long long)min,
                                (long long)max, gw_json_describe(v, got, sizeof(got)));
    *out = (int64_t)v->valuedouble;
    return ITR_OK;
}

int gw_jget_u32(gw_jctx *c, const cJSON *obj, const char *key, uint32_t min, uint32_t max,
                uint32_t def, uint32_t *out)
{
    int64_t v = 0;
    int r = gw_jget_int(c, obj, key, 0, min, max, def, &v);
    if (r == ITR_OK)
        *out = (uint32_t)v;
    return r;
}

int gw_jget_u64(gw_jctx *c, const cJSON *obj, const char *key, uint64_t min, uint64_t max,
                uint64_t def, uint64_t *out)
{
    int64_t v = 0;
    /* Config values stay far below 2^53 (exact in a double). */
    int64_t lim = max > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)max;
    int r = gw_jget_int(c, obj, key, 0, (int64_t)min, lim, (int64_t)def, &v);
    if (r == ITR_OK)
        *out = (uint64_t)v;
    return r;
}

int gw_jget_seconds(gw_jctx *c, const cJSON *obj, const char *key, double min, double max,
                    double def, uint64_t *out_ns)
{
    char got[64];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    double s = def;
    if (v) {
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= min && v->valuedouble <= max))
            return gw_jctx_fail_key(c, key, "expected a number of seconds %g..%g, got %s", min, max,
                                    gw_json_describe(v, got, sizeof(got)));
        s = v->valuedouble;
    }
    *out_ns = (uint64_t)llround(s * 1e9);
    return ITR_OK;
}

int gw_jget_bool(gw_jctx *c, const cJSON *obj, const char *key, int def, int *out)
{
    char got[64];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v) {
        *out = def;
        return ITR_OK;
    }
    if (!cJSON_IsBool(v))
        return gw_jctx_fail_key(c, key, "expected true or false, got %s",
                                gw_json_describe(v, got, sizeof(got)));
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return ITR_OK;
}

int gw_jget_string(gw_jctx *c, const cJSON *obj, const char *key, int required, int nullable,
                   size_t minlen, size_t maxlen, const char *def, const char **out)
{
    char got[64];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || (nullable && cJSON_IsNull(v))) {
        if (required)
            return gw_jctx_fail_key(c, key, "missing required key (expected a string)");
        *out = v ? NULL : def; /* an explicit null unsets, whatever the default */
        return ITR_OK;
    }
    if (!cJSON_IsString(v) || !v->valuestring)
        return gw_jctx_fail_key(c, key, "expected a string%s, got %s", nullable ? " or null" : "",
                                gw_json_describe(v, got, sizeof(got)));
    size_t n = strlen(v->valuestring);
    if (n < minlen || n > maxlen) {
        if (minlen == 1 && n == 0)
            return gw_jctx_fail_key(c, key, "expected a non-empty string, got \"\"");
        return gw_jctx_fail_key(c, key, "expected a string of %zu..%zu bytes, got %zu bytes",
                                minlen, maxlen, n);
    }
    *out = v->valuestring;
    return ITR_OK;
}

int gw_jget_enum(gw_jctx *c, const cJSON *obj, const char *key, const char *const *names, int def,
                 int *out)
{
    char got[64], list[256];
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    size_t o = 0;
    if (!v) {
        *out = def;
        return ITR_OK;
    }
    if (cJSON_IsString(v) && v->valuestring) {
        for (int i = 0; names[i]; i++) {
            if (strcmp(v->valuestring, names[i]) == 0) {
                *out = i;
                return ITR_OK;
            }
        }
    }
    list[0] = '\0';
    for (int i = 0; names[i] && o + 2 < sizeof(list); i++) {
        int n = snprintf(list + o, sizeof(list) - o, "%s\"%s\"", i ? " | " : "", names[i]);
        if (n < 0)
            break;
        o += (size_t)n < sizeof(list) - o ? (size_t)n : sizeof(list) - o - 1;
    }
    return gw_jctx_fail_key(c, key, "expected %s, got %s", list,
                            gw_json_describe(v, got, sizeof(got)));
}
