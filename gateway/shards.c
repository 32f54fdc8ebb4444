/* shards.c: the immutable shard table: ids, peers, labels, attributes, and a keyed-hash index
 * from peer static key to shard (shards.h). */
#include "shards.h"

#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include <intentra/error.h>

#include "json_check.h"

#define MAX_SHARDS      65536
#define LABEL_NAME_MAX  64
#define LABEL_VALUE_MAX 1024
#define KAFKA_TOPIC_MAX 249
#define STRING_ATTR_MAX 2048

struct gw_shard {
    const gw_shards *table;
    unsigned index;
    char *id;
    size_t id_len;
    gw_shard_attrs attrs; /* strings owned (freed with the shard) */
    size_t nlabels;
    char **label_names; /* nlabels each */
    char **label_values;
    size_t npeers;
    uint8_t (*peers)[GW_SHARD_KEY_LEN];
};

/* Open-addressing index entry: the hash tags the slot so most probes skip the memcmp. */
typedef struct idx_entry {
    uint64_t hash; /* 0 = empty */
    uint32_t shard;
    uint32_t item; /* peer index inside the shard (peer index only) */
} idx_entry;

struct gw_shards {
    uint8_t hash_key[crypto_shorthash_KEYBYTES]; /* random: keys are attacker-chosen */
    size_t n;
    gw_shard *shards;
    size_t total_peers;
    idx_entry *peer_idx; /* capacity peer_mask + 1 (power of two), load <= 1/2 */
    size_t peer_mask;
    idx_entry *id_idx;
    size_t id_mask;
};

static uint64_t keyed_hash(const gw_shards *t, const void *p, size_t n)
{
    uint8_t out[crypto_shorthash_BYTES];
    uint64_t h;
    crypto_shorthash(out, (const unsigned char *)p, n, t->hash_key);
    memcpy(&h, out, sizeof(h));
    return h ? h : 1;
}

static size_t table_cap(size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap <<= 1;
    return cap;
}

static int valid_id_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-' || ch == '.';
}

static int valid_name(const char *s, size_t maxlen)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!valid_id_char(s[n]))
            return 0;
    return n >= 1 && n <= maxlen;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Exactly 64 hex digits (either case) -> 32 bytes. */
static int parse_key_hex(const char *s, uint8_t out[GW_SHARD_KEY_LEN])
{
    if (strlen(s) != 2 * GW_SHARD_KEY_LEN)
        return -1;
    for (size_t i = 0; i < GW_SHARD_KEY_LEN; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

static void key_hex(char out[2 * GW_SHARD_KEY_LEN + 1], const uint8_t *k)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < GW_SHARD_KEY_LEN; i++) {
        out[2 * i] = digits[k[i] >> 4];
        out[2 * i + 1] = digits[k[i] & 15];
    }
    out[2 * GW_SHARD_KEY_LEN] = '\0';
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static void shard_release(gw_shard *s)
{
    free(s->id);
    for (size_t i = 0; i < s->nlabels; i++) {
        free(s->label_names[i]);
        free(s->label_values[i]);
    }
    free(s->label_names);
    free(s->label_values);
    free(s->peers);
    free((char *)(uintptr_t)s->attrs.kafka_topic);
    free((char *)(uintptr_t)s->attrs.redis_prefix);
    free((char *)(uintptr_t)s->attrs.webhook_endpoint);
}

void gw_shards_free(gw_shards *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        shard_release(&t->shards[i]);
    free(t->shards);
    free(t->peer_idx);
    free(t->id_idx);
    sodium_memzero(t->hash_key, sizeof(t->hash_key));
    free(t);
}

static gw_shards *table_alloc(size_t nshards, size_t npeers)
{
    gw_shards *t = calloc(1, sizeof(*t));
    if (!t || sodium_init() < 0) {
        free(t);
        return NULL;
    }
    randombytes_buf(t->hash_key, sizeof(t->hash_key));
    t->shards = calloc(nshards ? nshards : 1, sizeof(gw_shard));
    size_t pcap = table_cap(npeers), icap = table_cap(nshards);
    t->peer_idx = calloc(pcap, sizeof(idx_entry));
    t->id_idx = calloc(icap, sizeof(idx_entry));
    t->peer_mask = pcap - 1;
    t->id_mask = icap - 1;
    if (!t->shards || !t->peer_idx || !t->id_idx) {
        gw_shards_free(t);
        return NULL;
    }
    return t;
}

int gw_shards_new_empty(gw_shards **out)
{
    *out = table_alloc(0, 0);
    return *out ? ITR_OK : ITR_ERR_NOMEM;
}

/* Insert peer (shard si, item pi); returns the shard already holding the key, or -1. */
static int64_t peer_insert(gw_shards *t, uint32_t si, uint32_t pi)
{
    const uint8_t *key = t->shards[si].peers[pi];
    uint64_t h = keyed_hash(t, key, GW_SHARD_KEY_LEN);
    for (size_t i = h & t->peer_mask;; i = (i + 1) & t->peer_mask) {
        idx_entry *e = &t->peer_idx[i];
        if (e->hash == 0) {
            e->hash = h;
            e->shard = si;
            e->item = pi;
            return -1;
        }
        if (e->hash == h && memcmp(t->shards[e->shard].peers[e->item], key, GW_SHARD_KEY_LEN) == 0)
            return (int64_t)e->shard << 32 | e->item;
    }
}

static int id_insert(gw_shards *t, uint32_t si)
{
    const gw_shard *s = &t->shards[si];
    uint64_t h = keyed_hash(t, s->id, s->id_len);
    for (size_t i = h & t->id_mask;; i = (i + 1) & t->id_mask) {
        idx_entry *e = &t->id_idx[i];
        if (e->hash == 0) {
            e->hash = h;
            e->shard = si;
            return 0;
        }
        const gw_shard *o = &t->shards[e->shard];
        if (e->hash == h && o->id_len == s->id_len && memcmp(o->id, s->id, s->id_len) == 0)
            return -1;
    }
}

static int build_labels(gw_jctx *c, gw_shard *s, const cJSON *labels)
{
    char got[64];
    size_t n = 0, saved;
    int r;
    if (!cJSON_IsObject(labels))
        return gw_jctx_fail(c, "expected an object {name: \"value\"}, got %s",
                            gw_json_describe(labels, got, sizeof(got)));
    if ((r = gw_jcheck_no_duplicates(c, labels)) < 0)
        return r;
    for (const cJSON *l = labels->child; l; l = l->next)
        n++;
    s->label_names = calloc(n ? n : 1, sizeof(char *));
    s->label_values = calloc(n ? n : 1, sizeof(char *));
    if (!s->label_names || !s->label_values)
        return ITR_ERR_NOMEM;
    for (const cJSON *l = labels->child; l; l = l->next) {
        saved = gw_jctx_push_key(c, l->string);
        if (!valid_name(l->string, LABEL_NAME_MAX)) {
            r = gw_jctx_fail(c,
                             "invalid label name (expected 1..%d characters of "
                             "[A-Za-z0-9_.-])",
                             LABEL_NAME_MAX);
            return r;
        }
        if (!cJSON_IsString(l) || !l->valuestring)
            return gw_jctx_fail(c, "expected a string, got %s",
                                gw_json_describe(l, got, sizeof(got)));
        if (strlen(l->valuestring) > LABEL_VALUE_MAX)
            return gw_jctx_fail(c, "label value too long (at most %d bytes)", LABEL_VALUE_MAX);
        gw_jctx_pop(c, saved);
        s->label_names[s->nlabels] = dup_str(l->string);
        s->label_values[s->nlabels] = dup_str(l->valuestring);
        if (!s->label_names[s->nlabels] || !s->label_values[s->nlabels]) {
            free(s->label_names[s->nlabels]);
            free(s->label_values[s->nlabels]);
            return ITR_ERR_NOMEM;
        }
        s->nlabels++;
    }
    return ITR_OK;
}

static int kafka_topic_valid(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char ch = s[n];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-' || ch == '.'))
            return 0;
    }
    return n >= 1 && n <= KAFKA_TOPIC_MAX && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static int url_valid(const char *s)
{
    if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0)
        return 0;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return 0;
    return strlen(s) <= STRING_ATTR_MAX && strlen(s) > (s[4] == 's' ? 8u : 7u);
}

static int build_attrs(gw_jctx *c, gw_shard *s, const cJSON *attrs)
{
    static const char *const keys[] = {"kafka_topic", "kafka_partition", "redis_prefix",
                                       "webhook_endpoint", NULL};
    const char *topic = NULL, *prefix = NULL, *url = NULL;
    int64_t part;
    int r;
    if ((r = gw_jcheck_object(c, attrs, keys)) < 0)
        return r;
    if ((r = gw_jget_string(c, attrs, "kafka_topic", 0, 1, 1, KAFKA_TOPIC_MAX, NULL, &topic)) < 0)
        return r;
    if (topic && !kafka_topic_valid(topic))
        return gw_jctx_fail_key(c, "kafka_topic",
                                "invalid Kafka topic \"%s\" (expected 1..249 characters of "
                                "[A-Za-z0-9._-])",
                                topic);
    if ((r = gw_jget_int(c, attrs, "kafka_partition", 0, 0, INT32_MAX, -1, &part)) < 0)
        return r;
    if ((r = gw_jget_string(c, attrs, "redis_prefix", 0, 1, 1, STRING_ATTR_MAX, NULL, &prefix)) < 0)
        return r;
    if ((r = gw_jget_string(c, attrs, "webhook_endpoint", 0, 1, 1, STRING_ATTR_MAX, NULL, &url)) <
        0)
        return r;
    if (url && !url_valid(url))
        return gw_jctx_fail_key(c, "webhook_endpoint",
                                "expected an http:// or https:// URL without spaces, got \"%s\"",
                                url);
    s->attrs.kafka_partition = (int32_t)part;
    if ((topic && !(s->attrs.kafka_topic = dup_str(topic))) ||
        (prefix && !(s->attrs.redis_prefix = dup_str(prefix))) ||
        (url && !(s->attrs.webhook_endpoint = dup_str(url))))
        return ITR_ERR_NOMEM;
    return ITR_OK;
}

static int build_shard(gw_jctx *c, gw_shards *t, uint32_t si, const cJSON *obj)
{
    static const char *const keys[] = {"peers", "labels", "attributes", NULL};
    gw_shard *s = &t->shards[si];
    const cJSON *peers, *labels, *attrs;
    char got[64], hex[2 * GW_SHARD_KEY_LEN + 1];
    size_t saved, n = 0;
    int r;

    s->table = t;
    s->index = si;
    s->attrs.kafka_partition = -1;
    s->id_len = strlen(obj->string);
    if (!(s->id = dup_str(obj->string)))
        return ITR_ERR_NOMEM;
    if (!valid_name(s->id, GW_SHARD_ID_MAX - 1))
        return gw_jctx_fail(c, "invalid shard id (expected 1..%d characters of [A-Za-z0-9_.-])",
                            GW_SHARD_ID_MAX - 1);
    if (id_insert(t, si) < 0)
        return gw_jctx_fail(c, "shard id appears twice");
    if ((r = gw_jcheck_object(c, obj, keys)) < 0)
        return r;

    peers = cJSON_GetObjectItemCaseSensitive(obj, "peers");
    if (peers) {
        saved = gw_jctx_push_key(c, "peers");
        if (!cJSON_IsArray(peers))
            return gw_jctx_fail(c, "expected an array of 64-hex-digit peer keys, got %s",
                                gw_json_describe(peers, got, sizeof(got)));
        n = (size_t)cJSON_GetArraySize(peers);
        s->peers = calloc(n ? n : 1, GW_SHARD_KEY_LEN);
        if (!s->peers)
            return ITR_ERR_NOMEM;
        size_t i = 0;
        for (const cJSON *p = peers->child; p; p = p->next, i++) {
            size_t at = gw_jctx_push_index(c, i);
            if (!cJSON_IsString(p) || !p->valuestring)
                return gw_jctx_fail(c, "expected a peer key (64 hex digits), got %s",
                                    gw_json_describe(p, got, sizeof(got)));
            if (parse_key_hex(p->valuestring, s->peers[i]) < 0)
                return gw_jctx_fail(c, "expected a peer key of 64 hex digits, got %s",
                                    gw_json_describe(p, got, sizeof(got)));
            s->npeers = i + 1;
            int64_t dup = peer_insert(t, si, (uint32_t)i);
            if (dup >= 0) {
                uint32_t other = (uint32_t)(dup >> 32), item = (uint32_t)(dup & 0xffffffff);
                key_hex(hex, s->peers[i]);
                if (other == si)
                    return gw_jctx_fail(c,
                                        "peer %s is listed twice in shard \"%s\" (also at "
                                        "peers[%u])",
                                        hex, s->id, item);
                return gw_jctx_fail(c,
                                    "peer %s is already in shard \"%s\" (peers[%u]); a peer "
                                    "belongs to one shard",
                                    hex, t->shards[other].id, item);
            }
            gw_jctx_pop(c, at);
        }
        t->total_peers += s->npeers;
        gw_jctx_pop(c, saved);
    }

    labels = cJSON_GetObjectItemCaseSensitive(obj, "labels");
    if (labels) {
        saved = gw_jctx_push_key(c, "labels");
        if ((r = build_labels(c, s, labels)) < 0)
            return r;
        gw_jctx_pop(c, saved);
    }
    attrs = cJSON_GetObjectItemCaseSensitive(obj, "attributes");
    if (attrs) {
        saved = gw_jctx_push_key(c, "attributes");
        if ((r = build_attrs(c, s, attrs)) < 0)
            return r;
        gw_jctx_pop(c, saved);
    }
    return ITR_OK;
}

int gw_shards_build(gw_shards **out, const cJSON *obj, const char *origin, const char *path,
                    char *err, size_t errlen, char *field, size_t fieldlen)
{
    gw_jctx c;
    gw_shards *t = NULL;
    size_t nshards = 0, npeers = 0;
    char got[64];
    int r = ITR_OK;

    *out = NULL;
    gw_jctx_init(&c, origin, path, err, errlen, field, fieldlen);
    if (!cJSON_IsObject(obj))
        return gw_jctx_fail(&c, "expected an object {shard id: shard}, got %s",
                            gw_json_describe(obj, got, sizeof(got)));
    for (const cJSON *s = obj->child; s; s = s->next) {
        const cJSON *p = cJSON_IsObject(s) ? cJSON_GetObjectItemCaseSensitive(s, "peers") : NULL;
        nshards++;
        if (cJSON_IsArray(p))
            npeers += (size_t)cJSON_GetArraySize(p);
    }
    if (nshards > MAX_SHARDS)
        return gw_jctx_fail(&c, "too many shards: %zu (at most %d)", nshards, MAX_SHARDS);
    if (!(t = table_alloc(nshards, npeers)))
        return ITR_ERR_NOMEM;

    uint32_t si = 0;
    for (const cJSON *s = obj->child; s; s = s->next, si++) {
        size_t saved = gw_jctx_push_key(&c, s->string);
        t->n = si + 1; /* so a failure frees what this shard got */
        if ((r = build_shard(&c, t, si, s)) < 0)
            goto out;
        gw_jctx_pop(&c, saved);
    }
    t->n = nshards;
    *out = t;
    t = NULL;
out:
    if (r == ITR_ERR_NOMEM && err && errlen)
        snprintf(err, errlen, "%s: out of memory building the shard table", c.origin);
    gw_shards_free(t);
    return r;
}

size_t gw_shards_count(const gw_shards *t)
{
    return t->n;
}

const gw_shard *gw_shards_at(const gw_shards *t, size_t i)
{
    return i < t->n ? &t->shards[i] : NULL;
}

const gw_shard *gw_shards_findn(const gw_shards *t, const char *id, size_t len)
{
    uint64_t h = keyed_hash(t, id, len);
    for (size_t i = h & t->id_mask;; i = (i + 1) & t->id_mask) {
        const idx_entry *e = &t->id_idx[i];
        if (e->hash == 0)
            return NULL;
        const gw_shard *s = &t->shards[e->shard];
        if (e->hash == h && s->id_len == len && memcmp(s->id, id, len) == 0)
            return s;
    }
}

const gw_shard *gw_shards_find(const gw_shards *t, const char *id)
{
    return gw_shards_findn(t, id, strlen(id));
}

const gw_shard *gw_shards_lookup_peer(const gw_shards *t, const uint8_t key[GW_SHARD_KEY_LEN])
{
    uint64_t h = keyed_hash(t, key, GW_SHARD_KEY_LEN);
    for (size_t i = h & t->peer_mask;; i = (i + 1) & t->peer_mask) {
        const idx_entry *e = &t->peer_idx[i];
        if (e->hash == 0)
            return NULL;
        if (e->hash == h && memcmp(t->shards[e->shard].peers[e->item], key, GW_SHARD_KEY_LEN) == 0)
            return &t->shards[e->shard];
    }
}

size_t gw_shards_peer_count(const gw_shards *t)
{
    return t->total_peers;
}

cJSON *gw_shard_to_json(const gw_shard *s)
{
    char hex[2 * GW_SHARD_KEY_LEN + 1];
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    if (s->npeers) {
        cJSON *a = cJSON_AddArrayToObject(o, "peers");
        if (!a)
            goto fail;
        for (size_t i = 0; i < s->npeers; i++) {
            key_hex(hex, s->peers[i]);
            cJSON *str = cJSON_CreateString(hex);
            if (!str || !cJSON_AddItemToArray(a, str)) {
                cJSON_Delete(str);
                goto fail;
            }
        }
    }
    if (s->nlabels) {
        cJSON *l = cJSON_AddObjectToObject(o, "labels");
        if (!l)
            goto fail;
        for (size_t i = 0; i < s->nlabels; i++)
            if (!cJSON_AddStringToObject(l, s->label_names[i], s->label_values[i]))
                goto fail;
    }
    if (s->attrs.kafka_topic || s->attrs.kafka_partition >= 0 || s->attrs.redis_prefix ||
        s->attrs.webhook_endpoint) {
        cJSON *a = cJSON_AddObjectToObject(o, "attributes");
        if (!a)
            goto fail;
        if (s->attrs.kafka_topic &&
            !cJSON_AddStringToObject(a, "kafka_topic", s->attrs.kafka_topic))
            goto fail;
        if (s->attrs.kafka_partition >= 0 &&
            !cJSON_AddNumberToObject(a, "kafka_partition", s->attrs.kafka_partition))
            goto fail;
        if (s->attrs.redis_prefix &&
            !cJSON_AddStringToObject(a, "redis_prefix", s->attrs.redis_prefix))
            goto fail;
        if (s->attrs.webhook_endpoint &&
            !cJSON_AddStringToObject(a, "webhook_endpoint", s->attrs.webhook_endpoint))
            goto fail;
    }
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

cJSON *gw_shards_to_json(const gw_shards *t)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    for (size_t i = 0; i < t->n; i++) {
        cJSON *s = gw_shard_to_json(&t->shards[i]);
        if (!s || !cJSON_AddItemToObject(o, t->shards[i].id, s)) {
            cJSON_Delete(s);
            cJSON_Delete(o);
            return NULL;
        }
    }
    return o;
}

const char *gw_shard_id(const gw_shard *s)
{
    return s->id;
}

size_t gw_shard_id_len(const gw_shard *s)
{
    return s->id_len;
}

unsigned gw_shard_index(const gw_shard *s)
{
    return s->index;
}

const gw_shards *gw_shard_table(const gw_shard *s)
{
    return s->table;
}

const gw_shard_attrs *gw_shard_attributes(const gw_shard *s)
{
    return &s->attrs;
}

const char *gw_shard_labeln(const gw_shard *s, const char *name, size_t len)
{
    /* Linear: a shard has a handful of labels. */
    for (size_t i = 0; i < s->nlabels; i++) {
        if (strlen(s->label_names[i]) == len && memcmp(s->label_names[i], name, len) == 0)
            return s->label_values[i];
    }
    return NULL;
}

const char *gw_shard_label(const gw_shard *s, const char *name)
{
    return gw_shard_labeln(s, name, strlen(name));
}

size_t gw_shard_label_count(const gw_shard *s)
{
    return s->nlabels;
}

void gw_shard_label_at(const gw_shard *s, size_t i, const char **name, const char **value)
{
    *name = i < s->nlabels ? s->label_names[i] : NULL;
    *value = i < s->nlabels ? s->label_values[i] : NULL;
}

size_t gw_shard_peer_count(const gw_shard *s)
{
    return s->npeers;
}

const uint8_t *gw_shard_peer(const gw_shard *s, size_t i)
{
    return i < s->npeers ? s->peers[i] : NULL;
}
