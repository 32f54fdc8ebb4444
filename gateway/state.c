/* state.c: the admin API's versioned shard and route documents (control.h) and their
 * persistence in admin.state_file (state.h).
 *
 * One mutex per state serializes every read-modify-write, so two writers holding the same
 * version cannot both succeed: the second sees the new version and gets 412. A write goes:
 * check If-Match -> build the new document -> publish it as the override (readers such as a
 * concurrent SIGHUP reload then build with it) -> gw_gateway_apply_docs (validates and swaps
 * the routing snapshot, or changes nothing) -> persist atomically (temp file, fsync, rename,
 * fsync the directory) -> bump the version. If applying fails the override is restored; if
 * persisting fails the previous documents are applied again, so a failed request changes
 * nothing, live or on disk.
 *
 * Versions follow the live document: when the gateway's document changed underneath (a reload
 * of the config file while no override exists), the next access bumps the version so an ETag
 * never names two different documents.
 *
 * Lifetime of borrowed documents (gw_state_shards/routes): a replaced document is kept until
 * the write after next, so a reader that fetched it just before a write can finish with it.
 */
#define _POSIX_C_SOURCE 200809L /* fsync, O_CLOEXEC, O_DIRECTORY, strdup */
#include "state.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <intentra/error.h>

#include "control.h"
#include "gateway.h"

#define STATE_FORMAT    1
#define STATE_MAX_BYTES (64u << 20)

enum doc_kind { DOC_SHARDS = 0, DOC_ROUTES = 1 };

struct gw_state {
    char *path; /* NULL: memory only */
    pthread_mutex_t lock;
    /* Overrides (NULL: never written); published with atomic stores for lock-free readers. */
    cJSON *doc[2];
    uint64_t version[2];
    cJSON *seen[2];    /* the live document `version` describes (under lock) */
    cJSON *retired[2]; /* previous override, freed at the next write (see the file comment) */
};

static const char *const doc_names[2] = {"shards", "routes"};

/* ---- RFC 7386 JSON merge patch ---- */

cJSON *gw_state_merge_patch(const cJSON *target, const cJSON *patch)
{
    if (!cJSON_IsObject(patch))
        return cJSON_Duplicate(patch, 1);
    cJSON *out = cJSON_IsObject(target) ? cJSON_Duplicate(target, 1) : cJSON_CreateObject();
    if (!out)
        return NULL;
    for (const cJSON *p = patch->child; p; p = p->next) {
        if (cJSON_IsNull(p)) {
            cJSON_DeleteItemFromObjectCaseSensitive(out, p->string);
            continue;
        }
        const cJSON *cur = cJSON_GetObjectItemCaseSensitive(out, p->string);
        cJSON *merged = gw_state_merge_patch(cur, p);
        if (!merged) {
            cJSON_Delete(out);
            return NULL;
        }
        if (cur) {
            cJSON_ReplaceItemInObjectCaseSensitive(out, p->string, merged);
        } else if (!cJSON_AddItemToObject(out, p->string, merged)) {
            cJSON_Delete(merged);
            cJSON_Delete(out);
            return NULL;
        }
    }
    return out;
}

/* ---- state file ---- */

static int state_load(gw_state *s, char *err, size_t errlen)
{
    int rc = ITR_ERR_IO;
    char *text = NULL;
    cJSON *root = NULL;
    int fd = open(s->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return ITR_OK; /* no edits yet */
        snprintf(err, errlen, "admin.state_file: %s: cannot open: %s", s->path, strerror(errno));
        goto out;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > STATE_MAX_BYTES) {
        snprintf(err, errlen, "admin.state_file: %s: not a regular file of at most %u bytes",
                 s->path, STATE_MAX_BYTES);
        rc = ITR_ERR_INVALID;
        goto out;
    }
    text = malloc((size_t)st.st_size + 1);
    if (!text) {
        rc = ITR_ERR_NOMEM;
        goto out;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, text + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            snprintf(err, errlen, "admin.state_file: %s: read failed: %s", s->path,
                     n < 0 ? strerror(errno) : "file shrank");
            goto out;
        }
        got += (size_t)n;
    }
    text[got] = '\0';
    rc = ITR_ERR_INVALID;
    root = cJSON_ParseWithLength(text, got);
    const char *fix = "(restore it from a backup, or move it away to start from the config file's "
                      "shards and routes)";
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "admin.state_file: %s: not a JSON object %s", s->path, fix);
        goto out;
    }
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "format");
    if (!cJSON_IsNumber(fmt) || fmt->valuedouble != STATE_FORMAT) {
        snprintf(err, errlen, "admin.state_file: %s: format: expected %d %s", s->path, STATE_FORMAT,
                 fix);
        goto out;
    }
    for (int k = 0; k < 2; k++) {
        char key[32];
        snprintf(key, sizeof(key), "%s_version", doc_names[k]);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
        if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 9007199254740992.0 ||
            v->valuedouble != (double)(uint64_t)v->valuedouble) {
            snprintf(err, errlen, "admin.state_file: %s: %s: expected an integer >= 1 %s", s->path,
                     key, fix);
            goto out;
        }
        s->version[k] = (uint64_t)v->valuedouble;
        cJSON *d = cJSON_DetachItemFromObjectCaseSensitive(root, doc_names[k]);
        if (d && !(k == DOC_SHARDS ? cJSON_IsObject(d) : cJSON_IsArray(d))) {
            cJSON_Delete(d);
            snprintf(err, errlen, "admin.state_file: %s: %s: expected %s %s", s->path, doc_names[k],
                     k == DOC_SHARDS ? "an object" : "an array", fix);
            goto out;
        }
        s->doc[k] = d;
    }
    for (const cJSON *c = root->child; c; c = c->next) {
        if (strcmp(c->string, "format") && strcmp(c->string, "shards_version") &&
            strcmp(c->string, "routes_version")) {
            snprintf(err, errlen, "admin.state_file: %s: %s: unknown key %s", s->path, c->string,
                     fix);
            goto out;
        }
    }
    rc = ITR_OK;
out:
    if (rc != ITR_OK) {
        for (int k = 0; k < 2; k++) {
            cJSON_Delete(s->doc[k]);
            s->doc[k] = NULL;
        }
    }
    cJSON_Delete(root);
    free(text);
    if (fd >= 0)
        close(fd);
    return rc;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Write docs + versions to s->path atomically. */
static int state_persist(gw_state *s, cJSON *const docs[2], const uint64_t versions[2], char *err,
                         size_t errlen)
{
    if (!s->path)
        return ITR_OK;
    int rc = ITR_ERR_NOMEM;
    char *text = NULL, *tmp = NULL, *dir = NULL;
    int fd = -1, dfd = -1;
    cJSON *root = cJSON_CreateObject();
    if (!root || !cJSON_AddNumberToObject(root, "format", STATE_FORMAT) ||
        !cJSON_AddNumberToObject(root, "shards_version", (double)versions[DOC_SHARDS]) ||
        !cJSON_AddNumberToObject(root, "routes_version", (double)versions[DOC_ROUTES]))
        goto out;
    for (int k = 0; k < 2; k++) {
        if (!docs[k])
            continue;
        cJSON *copy = cJSON_Duplicate(docs[k], 1);
        if (!copy || !cJSON_AddItemToObject(root, doc_names[k], copy)) {
            cJSON_Delete(copy);
            goto out;
        }
    }
    text = cJSON_Print(root);
    size_t plen = strlen(s->path);
    tmp = malloc(plen + 5);
    dir = strdup(s->path);
    if (!text || !tmp || !dir)
        goto out;
    memcpy(tmp, s->path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");

    rc = ITR_ERR_IO;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "admin.state_file: %s: cannot create: %s", tmp, strerror(errno));
        goto out;
    }
    size_t n = strlen(text);
    text[n] = '\n'; /* cJSON_Print's buffer has room: replace the NUL, write n+1 bytes */
    if (fchmod(fd, 0600) != 0 || write_all(fd, text, n + 1) != 0 || fsync(fd) != 0) {
        snprintf(err, errlen, "admin.state_file: %s: cannot write: %s", tmp, strerror(errno));
        text[n] = '\0';
        goto out;
    }
    text[n] = '\0';
    if (close(fd) != 0) {
        fd = -1;
        snprintf(err, errlen, "admin.state_file: %s: close failed: %s", tmp, strerror(errno));
        goto out;
    }
    fd = -1;
    if (rename(tmp, s->path) != 0) {
        snprintf(err, errlen, "admin.state_file: %s: cannot rename into place: %s", s->path,
                 strerror(errno));
        goto out;
    }
    /* The rename is durable only once the directory is. */
    dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || fsync(dfd) != 0) {
        snprintf(err, errlen, "admin.state_file: %s: cannot fsync the directory: %s", dir,
                 strerror(errno));
        goto out;
    }
    rc = ITR_OK;
out:
    if (rc == ITR_ERR_NOMEM)
        snprintf(err, errlen, "admin.state_file: out of memory");
    if (fd >= 0) {
        close(fd);
        unlink(tmp);
    } else if (rc != ITR_OK && tmp) {
        unlink(tmp);
    }
    if (dfd >= 0)
        close(dfd);
    cJSON_Delete(root);
    cJSON_free(text);
    free(tmp);
    free(dir);
    return rc;
}

/* ---- state.h ---- */

int gw_state_open(gw_state **out, const char *path, char *err, size_t errlen)
{
    *out = NULL;
    gw_state *s = calloc(1, sizeof(*s));
    if (!s)
        return ITR_ERR_NOMEM;
    pthread_mutex_init(&s->lock, NULL);
    s->version[DOC_SHARDS] = s->version[DOC_ROUTES] = 1;
    if (path) {
        s->path = strdup(path);
        if (!s->path) {
            gw_state_free(s);
            return ITR_ERR_NOMEM;
        }
        int rc = state_load(s, err, errlen);
        if (rc != ITR_OK) {
            gw_state_free(s);
            return rc;
        }
    }
    *out = s;
    return ITR_OK;
}

void gw_state_free(gw_state *s)
{
    if (!s)
        return;
    for (int k = 0; k < 2; k++) {
        cJSON_Delete(s->doc[k]);
        cJSON_Delete(s->seen[k]);
        cJSON_Delete(s->retired[k]);
    }
    pthread_mutex_destroy(&s->lock);
    free(s->path);
    free(s);
}

const cJSON *gw_state_shards(const gw_state *s)
{
    return __atomic_load_n(&s->doc[DOC_SHARDS], __ATOMIC_ACQUIRE);
}

const cJSON *gw_state_routes(const gw_state *s)
{
    return __atomic_load_n(&s->doc[DOC_ROUTES], __ATOMIC_ACQUIRE);
}

uint64_t gw_state_shards_version(const gw_state *s)
{
    return __atomic_load_n(&s->version[DOC_SHARDS], __ATOMIC_RELAXED);
}

uint64_t gw_state_routes_version(const gw_state *s)
{
    return __atomic_load_n(&s->version[DOC_ROUTES], __ATOMIC_RELAXED);
}

/* ---- control.h: versioned documents ---- */

static void set_error(gw_ctl_error *e, int status, const char *code, const char *field,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void set_error(gw_ctl_error *e, int status, const char *code, const char *field,
                      const char *fmt, ...)
{
    if (!e)
        return;
    e->http_status = status;
    snprintf(e->code, sizeof(e->code), "%s", code);
    snprintf(e->field, sizeof(e->field), "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, ap);
    va_end(ap);
}

static cJSON *live_doc(gw_gateway *g, int k)
{
    return k == DOC_SHARDS ? gw_gateway_shards_doc(g) : gw_gateway_routes_doc(g);
}

/* The live document (caller frees) with s->version[k] brought in line with it. Under lock. */
static cJSON *current(gw_state *s, gw_gateway *g, int k)
{
    cJSON *live = live_doc(g, k);
    if (!live)
        return NULL;
    if (!s->seen[k] || !cJSON_Compare(s->seen[k], live, 1)) {
        if (s->seen[k])
            __atomic_store_n(&s->version[k], s->version[k] + 1, __ATOMIC_RELAXED);
        cJSON *copy = cJSON_Duplicate(live, 1);
        if (!copy) {
            cJSON_Delete(live);
            return NULL;
        }
        cJSON_Delete(s->seen[k]);
        s->seen[k] = copy;
    }
    return live;
}

static gw_state *state_of(gw_gateway *g, gw_ctl_error *e)
{
    gw_state *s = gw_gateway_state(g);
    if (!s)
        set_error(e, 500, "internal", NULL, "the gateway has no admin state");
    return s;
}

static int get_doc(gw_gateway *g, int k, cJSON **out, uint64_t *version)
{
    *out = NULL;
    gw_state *s = gw_gateway_state(g);
    if (!s)
        return ITR_ERR_INVALID;
    pthread_mutex_lock(&s->lock);
    cJSON *doc = current(s, g, k);
    *version = s->version[k];
    pthread_mutex_unlock(&s->lock);
    if (!doc)
        return ITR_ERR_NOMEM;
    *out = doc;
    return ITR_OK;
}

int gw_ctl_shards_get(gw_gateway *g, cJSON **out, uint64_t *version)
{
    return get_doc(g, DOC_SHARDS, out, version);
}

int gw_ctl_routes_get(gw_gateway *g, cJSON **out, uint64_t *version)
{
    return get_doc(g, DOC_ROUTES, out, version);
}

int gw_ctl_shard_get(gw_gateway *g, const char *id, cJSON **out, uint64_t *version, gw_ctl_error *e)
{
    cJSON *doc = NULL;
    *out = NULL;
    int rc = get_doc(g, DOC_SHARDS, &doc, version);
    if (rc != ITR_OK) {
        set_error(e, 500, "internal", NULL, "%s", itr_strerror(rc));
        return rc;
    }
    cJSON *shard = cJSON_DetachItemFromObjectCaseSensitive(doc, id);
    cJSON_Delete(doc);
    if (!shard) {
        set_error(e, 404, "not_found", "id", "no shard \"%s\"", id);
        return ITR_ERR_NOT_FOUND;
    }
    *out = shard;
    return ITR_OK;
}

/* Peer keys listed in two different shards: 409 naming both (the shard builder would refuse
 * too, but with a 422; a conflict between documents is a 409). */
struct peer_ref {
    char key[65];
    const char *shard;
    int index;
    size_t pos; /* document order: the later of two listings is the one reported */
};

static int peer_ref_cmp(const void *a, const void *b)
{
    const struct peer_ref *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->pos > y->pos) - (x->pos < y->pos);
}

static int check_duplicate_peers(const cJSON *shards, gw_ctl_error *e)
{
    size_t n = 0;
    for (const cJSON *sh = shards->child; sh; sh = sh->next) {
        const cJSON *peers = cJSON_GetObjectItemCaseSensitive(sh, "peers");
        n += (size_t)(cJSON_IsArray(peers) ? cJSON_GetArraySize(peers) : 0);
    }
    if (n < 2)
        return ITR_OK;
    struct peer_ref *refs = calloc(n, sizeof(*refs));
    if (!refs) {
        set_error(e, 500, "internal", NULL, "out of memory");
        return ITR_ERR_NOMEM;
    }
    size_t k = 0;
    for (const cJSON *sh = shards->child; sh; sh = sh->next) {
        const cJSON *peers = cJSON_GetObjectItemCaseSensitive(sh, "peers");
        if (!cJSON_IsArray(peers))
            continue;
        int i = 0;
        for (const cJSON *p = peers->child; p; p = p->next, i++) {
            if (!cJSON_IsString(p) || strlen(p->valuestring) != 64)
                continue; /* malformed keys are the builder's to report */
            for (int c = 0; c < 64; c++)
                refs[k].key[c] = (char)tolower((unsigned char)p->valuestring[c]);
            refs[k].shard = sh->string;
            refs[k].index = i;
            refs[k].pos = k;
            k++;
        }
    }
    qsort(refs, k, sizeof(*refs), peer_ref_cmp);
    int rc = ITR_OK;
    for (size_t i = 1; i < k; i++) {
        if (!strcmp(refs[i - 1].key, refs[i].key) && strcmp(refs[i - 1].shard, refs[i].shard)) {
            char field[128];
            snprintf(field, sizeof(field), "%.80s.peers[%d]", refs[i].shard, refs[i].index);
            set_error(e, 409, "duplicate_peer", field,
                      "%s: peer %.64s is already in shard \"%.80s\" (a peer belongs to one "
                      "shard: remove it from one of them)",
                      field, refs[i].key, refs[i - 1].shard);
            rc = ITR_ERR_INVALID;
            break;
        }
    }
    free(refs);
    return rc;
}

enum shard_op {
    OP_PUT_ALL,
    OP_PATCH_ALL,
    OP_DELETE_ALL,
    OP_PUT_ONE,
    OP_PATCH_ONE,
    OP_DELETE_ONE,
    OP_PUT_ROUTES,
};

/* The new document for op, from the current one (NULL with e set on error). */
static cJSON *build(enum shard_op op, const cJSON *cur, const char *id, const cJSON *arg,
                    int *created, gw_ctl_error *e)
{
    cJSON *doc = NULL;
    switch (op) {
    case OP_PUT_ALL:
        if (!cJSON_IsObject(arg)) {
            set_error(e, 422, "invalid_type", "",
                      "request body: expected an object of shards "
                      "{\"id\": {\"peers\": [...], ...}}");
            return NULL;
        }
        doc = cJSON_Duplicate(arg, 1);
        break;
    case OP_PATCH_ALL:
        if (!cJSON_IsObject(arg)) {
            set_error(e, 422, "invalid_type", "",
                      "request body: expected a JSON merge patch "
                      "object (RFC 7386)");
            return NULL;
        }
        doc = gw_state_merge_patch(cur, arg);
        break;
    case OP_DELETE_ALL:
        doc = cJSON_CreateObject();
        break;
    case OP_PUT_ONE:
    case OP_PATCH_ONE: {
        const cJSON *old = cJSON_GetObjectItemCaseSensitive(cur, id);
        if (op == OP_PATCH_ONE && !old) {
            set_error(e, 404, "not_found", "id", "no shard \"%s\"", id);
            return NULL;
        }
        if (!cJSON_IsObject(arg)) {
            set_error(e, 422, "invalid_type", "",
                      op == OP_PUT_ONE ? "request body: expected a shard object {\"peers\": "
                                         "[...], \"labels\": {...}, \"attributes\": {...}}"
                                       : "request body: expected a JSON merge patch object "
                                         "(RFC 7386)");
            return NULL;
        }
        cJSON *shard = op == OP_PUT_ONE ? cJSON_Duplicate(arg, 1) : gw_state_merge_patch(old, arg);
        doc = cJSON_Duplicate(cur, 1);
        if (!shard || !doc) {
            cJSON_Delete(shard);
            cJSON_Delete(doc);
            doc = NULL;
            break;
        }
        if (old) {
            cJSON_ReplaceItemInObjectCaseSensitive(doc, id, shard);
        } else {
            *created = 1;
            if (!cJSON_AddItemToObject(doc, id, shard)) {
                cJSON_Delete(shard);
                cJSON_Delete(doc);
                doc = NULL;
            }
        }
        break;
    }
    case OP_DELETE_ONE:
        if (!cJSON_GetObjectItemCaseSensitive(cur, id)) {
            set_error(e, 404, "not_found", "id", "no shard \"%s\"", id);
            return NULL;
        }
        doc = cJSON_Duplicate(cur, 1);
        if (doc)
            cJSON_DeleteItemFromObjectCaseSensitive(doc, id);
        break;
    case OP_PUT_ROUTES:
        if (!cJSON_IsArray(arg)) {
            set_error(e, 422, "invalid_type", "", "request body: expected an array of routes");
            return NULL;
        }
        doc = cJSON_Duplicate(arg, 1);
        break;
    }
    if (!doc)
        set_error(e, 500, "internal", NULL, "out of memory");
    return doc;
}

static int write_doc(gw_gateway *g, enum shard_op op, const char *id, const cJSON *arg,
                     uint64_t if_match, uint64_t *version, int *created, gw_ctl_error *e)
{
    int k = op == OP_PUT_ROUTES ? DOC_ROUTES : DOC_SHARDS;
    int dummy = 0;
    if (!created)
        created = &dummy;
    *created = 0;
    gw_state *s = state_of(g, e);
    if (!s)
        return ITR_ERR_INVALID;
    int rc = ITR_OK;
    int published = 0;
    cJSON *next = NULL;
    pthread_mutex_lock(&s->lock);
    cJSON *cur = current(s, g, k);
    *version = s->version[k];
    if (!cur) {
        set_error(e, 500, "internal", NULL, "out of memory");
        rc = ITR_ERR_NOMEM;
        goto out;
    }
    if (if_match && if_match != s->version[k]) {
        set_error(e, 412, "version_mismatch", NULL,
                  "If-Match does not match the current version \"%llu\" of the %s (someone "
                  "changed it: GET it again, reapply your change and retry)",
                  (unsigned long long)s->version[k], doc_names[k]);
        rc = ITR_ERR_INVALID;
        goto out;
    }
    next = build(op, cur, id, arg, created, e);
    if (!next) {
        rc = e && e->http_status == 404 ? ITR_ERR_NOT_FOUND : ITR_ERR_INVALID;
        goto out;
    }
    if (k == DOC_SHARDS) {
        rc = check_duplicate_peers(next, e);
        if (rc != ITR_OK)
            goto out;
    }

    /* Publish the override first so a concurrent reload builds with it, then apply. */
    cJSON *prev = s->doc[k];
    __atomic_store_n(&s->doc[k], next, __ATOMIC_RELEASE);
    published = 1;
    char err[512] = "", field[128] = "";
    rc = gw_gateway_apply_docs(g, k == DOC_SHARDS ? next : NULL, k == DOC_ROUTES ? next : NULL, err,
                               sizeof(err), field, sizeof(field));
    if (rc != ITR_OK) {
        __atomic_store_n(&s->doc[k], prev, __ATOMIC_RELEASE);
        if (rc == ITR_ERR_NOMEM)
            set_error(e, 500, "internal", NULL, "out of memory applying the %s", doc_names[k]);
        else
            set_error(e, 422, "validation_failed", field, "%s", err[0] ? err : "invalid document");
        rc = rc == ITR_ERR_NOMEM ? rc : ITR_ERR_INVALID;
        goto out;
    }
    uint64_t versions[2] = {s->version[0], s->version[1]};
    versions[k]++;
    rc = state_persist(s, s->doc, versions, err, sizeof(err));
    if (rc != ITR_OK) {
        /* Put the previous documents back live and in memory: nothing changed. */
        char err2[512], field2[128];
        __atomic_store_n(&s->doc[k], prev, __ATOMIC_RELEASE);
        int rc2 =
            gw_gateway_apply_docs(g, k == DOC_SHARDS ? cur : NULL, k == DOC_ROUTES ? cur : NULL,
                                  err2, sizeof(err2), field2, sizeof(field2));
        set_error(e, 500, "persist_failed", NULL, "%s; the change was rolled back%s", err,
                  rc2 == ITR_OK ? "" : " in memory, but re-applying the previous documents failed");
        rc = ITR_ERR_IO;
        goto out;
    }
    /* Committed. The replaced override stays readable until the next write. */
    cJSON_Delete(s->retired[k]);
    s->retired[k] = prev;
    next = NULL;
    __atomic_store_n(&s->version[k], versions[k], __ATOMIC_RELAXED);
    *version = versions[k];
    /* What is live now is what `version` describes. */
    cJSON *live = live_doc(g, k);
    if (live) {
        cJSON_Delete(s->seen[k]);
        s->seen[k] = live;
    }
out:
    if (next && published) {
        /* It was readable for a moment: retire it like a replaced override. */
        cJSON_Delete(s->retired[k]);
        s->retired[k] = next;
    } else {
        cJSON_Delete(next);
    }
    pthread_mutex_unlock(&s->lock);
    cJSON_Delete(cur);
    return rc;
}

int gw_ctl_shards_put(gw_gateway *g, const cJSON *doc, uint64_t if_match, uint64_t *version,
                      gw_ctl_error *e)
{
    return write_doc(g, OP_PUT_ALL, NULL, doc, if_match, version, NULL, e);
}

int gw_ctl_shards_patch(gw_gateway *g, const cJSON *merge_patch, uint64_t if_match,
                        uint64_t *version, gw_ctl_error *e)
{
    return write_doc(g, OP_PATCH_ALL, NULL, merge_patch, if_match, version, NULL, e);
}

int gw_ctl_shards_delete(gw_gateway *g, uint64_t if_match, uint64_t *version, gw_ctl_error *e)
{
    return write_doc(g, OP_DELETE_ALL, NULL, NULL, if_match, version, NULL, e);
}

int gw_ctl_shard_put(gw_gateway *g, const char *id, const cJSON *shard, uint64_t if_match,
                     uint64_t *version, int *created, gw_ctl_error *e)
{
    return write_doc(g, OP_PUT_ONE, id, shard, if_match, version, created, e);
}

int gw_ctl_shard_patch(gw_gateway *g, const char *id, const cJSON *merge_patch, uint64_t if_match,
                       uint64_t *version, gw_ctl_error *e)
{
    return write_doc(g, OP_PATCH_ONE, id, merge_patch, if_match, version, NULL, e);
}

int gw_ctl_shard_delete(gw_gateway *g, const char *id, uint64_t if_match, uint64_t *version,
                        gw_ctl_error *e)
{
    return write_doc(g, OP_DELETE_ONE, id, NULL, if_match, version, NULL, e);
}

int gw_ctl_routes_put(gw_gateway *g, const cJSON *routes, uint64_t if_match, uint64_t *version,
                      gw_ctl_error *e)
{
    return write_doc(g, OP_PUT_ROUTES, NULL, routes, if_match, version, NULL, e);
}
