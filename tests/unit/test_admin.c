/* test_admin.c: the admin HTTP API (gateway/admin.c + gateway/state.c) over real HTTP on
 * 127.0.0.1 (a free port), against the in-memory fake gateway (tests/lib/fake_control.c):
 * every endpoint's happy path and every error class, ETags and If-Match, concurrent writers,
 * persistence and its failure, token sources, HTTPS, and stopping with a publish waiting.
 */
#define _GNU_SOURCE /* mkdtemp, setenv */
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <curl/curl.h>

#include <intentra/error.h>

#include "admin.h"
#include "fake_control.h"
#include "log.h"
#include "state.h"

#define TOKEN "s3cret-token-for-tests"

struct resp {
    long status;
    char body[1 << 16];
    size_t len;
    char etag[64];
    char allow[128];
    char www[128];
    char ctype[128];
    char location[160];
    char retry_after[16];
};

struct fixture {
    char dir[64];
    char state_path[128];
    char token_path[128];
    gw_gateway *g;
    gw_admin *a;
    int port;
};

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct resp *r = arg;
    size_t k = size * n;
    size_t room = sizeof(r->body) - 1 - r->len;
    size_t c = k < room ? k : room;
    memcpy(r->body + r->len, p, c);
    r->len += c;
    r->body[r->len] = '\0';
    return k;
}

static void header_value(const char *line, size_t n, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if (n <= nl + 1 || strncasecmp(line, name, nl) || line[nl] != ':')
        return;
    const char *v = line + nl + 1;
    size_t vn = n - nl - 1;
    while (vn && (*v == ' '))
        v++, vn--;
    while (vn && (v[vn - 1] == '\r' || v[vn - 1] == '\n'))
        vn--;
    snprintf(out, cap, "%.*s", (int)vn, v);
}

static size_t on_header(char *p, size_t size, size_t n, void *arg)
{
    struct resp *r = arg;
    size_t k = size * n;
    header_value(p, k, "ETag", r->etag, sizeof(r->etag));
    header_value(p, k, "Allow", r->allow, sizeof(r->allow));
    header_value(p, k, "WWW-Authenticate", r->www, sizeof(r->www));
    header_value(p, k, "Content-Type", r->ctype, sizeof(r->ctype));
    header_value(p, k, "Location", r->location, sizeof(r->location));
    header_value(p, k, "Retry-After", r->retry_after, sizeof(r->retry_after));
    return k;
}

/* One request. extra: more header lines (NULL-terminated list) or NULL. */
static void http_ex(int port, const char *method, const char *path, const char *body,
                    size_t body_len, const char *token, const char *const *extra,
                    const char *scheme, const char *cafile, struct resp *r)
{
    memset(r, 0, sizeof(*r));
    CURL *c = curl_easy_init();
    assert_non_null(c);
    char url[512];
    snprintf(url, sizeof(url), "%s://127.0.0.1:%d%s", scheme ? scheme : "http", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (!strcmp(method, "HEAD"))
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (cafile) {
        curl_easy_setopt(c, CURLOPT_CAINFO, cafile);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    struct curl_slist *h = NULL;
    char auth[256];
    if (token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
    }
    h = curl_slist_append(h, "Expect:");
    for (size_t i = 0; extra && extra[i]; i++)
        h = curl_slist_append(h, extra[i]);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)body_len);
        int has_ct = 0;
        for (size_t i = 0; extra && extra[i]; i++)
            has_ct |= !strncasecmp(extra[i], "Content-Type:", 13);
        if (!has_ct)
            h = curl_slist_append(h, "Content-Type: application/json");
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK)
        fprintf(stderr, "curl %s %s: %s\n", method, path, curl_easy_strerror(rc));
    assert_int_equal(rc, CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
}

static void http(struct fixture *f, const char *method, const char *path, const char *body,
                 const char *if_match, struct resp *r)
{
    char im[96];
    const char *extra[2] = {NULL, NULL};
    if (if_match) {
        snprintf(im, sizeof(im), "If-Match: %s", if_match);
        extra[0] = im;
    }
    http_ex(f->port, method, path, body, body ? strlen(body) : 0, TOKEN, extra, NULL, NULL, r);
}

static cJSON *json_of(const struct resp *r)
{
    cJSON *v = cJSON_Parse(r->body);
    if (!v)
        fprintf(stderr, "not JSON: %s\n", r->body);
    assert_non_null(v);
    return v;
}

/* Assert an error response: status, code, field (NULL: JSON null). */
static void assert_error(const struct resp *r, long status, const char *code, const char *field)
{
    if (r->status != status)
        fprintf(stderr, "expected %ld, got %ld: %s\n", status, r->status, r->body);
    assert_int_equal(r->status, status);
    assert_non_null(strstr(r->ctype, "application/json"));
    cJSON *v = json_of(r);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(v, "error");
    assert_true(cJSON_IsObject(e));
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
    const cJSON *fl = cJSON_GetObjectItemCaseSensitive(e, "field");
    assert_true(cJSON_IsString(c));
    assert_string_equal(c->valuestring, code);
    assert_true(cJSON_IsString(m) && m->valuestring[0]);
    if (field) {
        assert_true(cJSON_IsString(fl));
        assert_string_equal(fl->valuestring, field);
    } else {
        assert_true(cJSON_IsNull(fl));
    }
    cJSON_Delete(v);
}

static void default_config(gw_admin_config *c, const struct fixture *f)
{
    static const char *const open_eps[] = {"/healthz", "/readyz"};
    memset(c, 0, sizeof(*c));
    c->enabled = 1;
    c->listen = "127.0.0.1:0";
    c->token_file = f->token_path;
    c->token_create = 0;
    c->open_endpoints = open_eps;
    c->open_endpoint_count = 2;
    c->state_file = f->state_path;
    c->max_body_bytes = 4096;
    c->connection_limit = 32;
    c->timeout_ns = 5ull * 1000000000ull;
    c->threads = 2;
}

static void write_token(const char *path, const char *tok, mode_t mode)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, tok, strlen(tok)), (ssize_t)strlen(tok));
    assert_int_equal(write(fd, "\n", 1), 1);
    fchmod(fd, mode);
    close(fd);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/test-admin-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->state_path, sizeof(f->state_path), "%s/state.json", f->dir);
    snprintf(f->token_path, sizeof(f->token_path), "%s/admin.token", f->dir);
    write_token(f->token_path, TOKEN, 0600);
    f->g = fake_gateway_new(f->state_path);
    gw_admin_config c;
    default_config(&c, f);
    char err[512] = "";
    int rc = gw_admin_start(&f->a, f->g, &c, err, sizeof(err));
    if (rc != ITR_OK)
        fprintf(stderr, "gw_admin_start: %s\n", err);
    assert_int_equal(rc, ITR_OK);
    f->port = gw_admin_port(f->a);
    assert_true(f->port > 0);
    *state = f;
    return 0;
}

static void rm_rf(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    gw_admin_stop(f->a);
    fake_gateway_free(f->g);
    rm_rf(f->dir);
    free(f);
    return 0;
}

/* ---- health, readiness, metrics ---- */

static void test_health_and_ready(void **state)
{
    struct fixture *f = *state;
    struct resp r;
    http_ex(f->port, "GET", "/healthz", NULL, 0, NULL, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"ok\""));
    http_ex(f->port, "GET", "/readyz", NULL, 0, NULL, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    fake_set_health(f->g, 0, 0, "sink kafka: down: broker unreachable");
    http_ex(f->port, "GET", "/readyz", NULL, 0, NULL, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "broker unreachable"));
    assert_string_equal(r.retry_after, "1");
    http_ex(f->port, "GET", "/healthz", NULL, 0, NULL, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 503);
    http_ex(f->port, "HEAD", "/healthz", NULL, 0, NULL, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 503);
    assert_int_equal(r.len, 0);
}

static void test_metrics_needs_token_unless_open(void **state)
{
    struct fixture *f = *state;
    struct resp r;
    /* /metrics is not in open_endpoints here. */
    http_ex(f->port, "GET", "/metrics", NULL, 0, NULL, NULL, NULL, NULL, &r);
    assert_error(&r, 401, "unauthorized", NULL);
    http(f, "GET", "/metrics", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.ctype, "text/plain; version=0.0.4"));
    assert_non_null(strstr(r.body, "# TYPE intentra_packets_received_total counter\n"
                                   "intentra_packets_received_total 3000\n"));
    assert_non_null(strstr(r.body, "intentra_gateway_sink_latency_seconds_bucket{sink=\"kafka\""));
    assert_non_null(strstr(r.body, "intentra_admin_responses_total{class=\"4xx\"} 1\n"));
    assert_non_null(strstr(r.body, "intentra_admin_auth_failures_total 1\n"));
    assert_non_null(strstr(r.body, "process_open_fds "));
}

/* ---- authentication ---- */

static void test_auth_errors(void **state)
{
    struct fixture *f = *state;
    struct resp r;
    http_ex(f->port, "GET", "/v1/shards", NULL, 0, NULL, NULL, NULL, NULL, &r);
    assert_error(&r, 401, "unauthorized", NULL);
    assert_string_equal(r.www, "Bearer realm=\"intentra-gateway\"");
    http_ex(f->port, "GET", "/v1/shards", NULL, 0, "wrong", NULL, NULL, NULL, &r);
    assert_error(&r, 401, "unauthorized", NULL);
    http_ex(f->port, "GET", "/v1/shards", NULL, 0, TOKEN "x", NULL, NULL, NULL, &r);
    assert_error(&r, 401, "unauthorized", NULL);
    const char *basic[] = {"Authorization: Basic dXNlcjpwYXNz", NULL};
    http_ex(f->port, "GET", "/v1/shards", NULL, 0, NULL, basic, NULL, NULL, &r);
    assert_error(&r, 401, "unauthorized", NULL);
    /* Unknown /v1 paths are not revealed without a token; with one they are 404. */
    http_ex(f->port, "GET", "/v1/nothing", NULL, 0, NULL, NULL, NULL, NULL, &r);
    assert_error(&r, 401, "unauthorized", NULL);
    http(f, "GET", "/v1/nothing", NULL, NULL, &r);
    assert_error(&r, 404, "not_found", NULL);
    http_ex(f->port, "GET", "/nothing", NULL, 0, NULL, NULL, NULL, NULL, &r);
    assert_error(&r, 404, "not_found", NULL);
    /* A body sent without a token is refused before it is read. */
    http_ex(f->port, "PUT", "/v1/shards", "{}", 2, NULL, NULL, NULL, NULL, &r);
    assert_error(&r, 401, "unauthorized", NULL);
    /* Case-insensitive scheme. */
    const char *lower[] = {"Authorization: bearer " TOKEN, NULL};
    http_ex(f->port, "GET", "/v1/shards", NULL, 0, NULL, lower, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
}

static void test_token_env_and_created_file(void **state)
{
    (void)state;
    char dir[64] = "/tmp/test-admin-tok-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char tokpath[128];
    snprintf(tokpath, sizeof(tokpath), "%s/new.token", dir);
    gw_gateway *g = fake_gateway_new(NULL);
    struct fixture tmp;
    memset(&tmp, 0, sizeof(tmp));
    snprintf(tmp.token_path, sizeof(tmp.token_path), "%s", tokpath);
    gw_admin_config c;
    default_config(&c, &tmp);
    c.state_file = NULL;
    char err[512] = "";
    gw_admin *a = NULL;

    /* Missing file without token_create: refused, naming the file. */
    assert_int_equal(gw_admin_start(&a, g, &c, err, sizeof(err)), ITR_ERR_IO);
    assert_non_null(strstr(err, tokpath));

    /* token_create: 0600, 64 hex digits, and it works. */
    c.token_create = 1;
    assert_int_equal(gw_admin_start(&a, g, &c, err, sizeof(err)), ITR_OK);
    struct stat st;
    assert_int_equal(stat(tokpath, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char tok[80] = "";
    FILE *fp = fopen(tokpath, "r");
    assert_non_null(fp);
    assert_non_null(fgets(tok, sizeof(tok), fp));
    fclose(fp);
    tok[strcspn(tok, "\n")] = '\0';
    assert_int_equal(strlen(tok), 64);
    struct resp r;
    http_ex(gw_admin_port(a), "GET", "/v1/routes", NULL, 0, tok, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    gw_admin_stop(a);

    /* The environment variable wins over the file. */
    setenv("TEST_ADMIN_TOKEN", "from-env", 1);
    c.token_env = "TEST_ADMIN_TOKEN";
    assert_int_equal(gw_admin_start(&a, g, &c, err, sizeof(err)), ITR_OK);
    http_ex(gw_admin_port(a), "GET", "/v1/routes", NULL, 0, "from-env", NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    http_ex(gw_admin_port(a), "GET", "/v1/routes", NULL, 0, tok, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 401);
    gw_admin_stop(a);
    unsetenv("TEST_ADMIN_TOKEN");

    /* A token file others can read is refused. */
    chmod(tokpath, 0644);
    c.token_env = NULL;
    assert_int_equal(gw_admin_start(&a, g, &c, err, sizeof(err)), ITR_ERR_INVALID);
    assert_non_null(strstr(err, "chmod 600"));

    /* No token source at all: /v1 refused, open endpoints still served. */
    c.token_file = NULL;
    assert_int_equal(gw_admin_start(&a, g, &c, err, sizeof(err)), ITR_OK);
    http_ex(gw_admin_port(a), "GET", "/v1/routes", NULL, 0, "anything", NULL, NULL, NULL, &r);
    assert_error(&r, 401, "unauthorized", NULL);
    assert_non_null(strstr(r.body, "no admin token"));
    http_ex(gw_admin_port(a), "GET", "/healthz", NULL, 0, NULL, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    gw_admin_stop(a);

    /* A bad listen address. */
    c.listen = "127.0.0.1:notaport";
    assert_int_equal(gw_admin_start(&a, g, &c, err, sizeof(err)), ITR_ERR_INVALID);
    assert_non_null(strstr(err, "admin.listen"));
    fake_gateway_free(g);
    rm_rf(dir);
}

/* ---- request errors ---- */

static void test_method_and_media_errors(void **state)
{
    struct fixture *f = *state;
    struct resp r;
    http(f, "POST", "/v1/shards", "{}", NULL, &r);
    assert_error(&r, 405, "method_not_allowed", NULL);
    assert_string_equal(r.allow, "GET, HEAD, PUT, PATCH, DELETE");
    http(f, "DELETE", "/v1/routes", NULL, NULL, &r);
    assert_error(&r, 405, "method_not_allowed", NULL);
    assert_string_equal(r.allow, "GET, HEAD, PUT");
    http(f, "GET", "/v1/publish", NULL, NULL, &r);
    assert_error(&r, 405, "method_not_allowed", NULL);
    assert_string_equal(r.allow, "POST");
    http(f, "OPTIONS", "/v1/sinks", NULL, NULL, &r);
    assert_error(&r, 405, "method_not_allowed", NULL);
    http_ex(f->port, "POST", "/healthz", "{}", 2, NULL, NULL, NULL, NULL, &r);
    assert_error(&r, 405, "method_not_allowed", NULL);
    const char *xml[] = {"Content-Type: application/xml", NULL};
    http_ex(f->port, "PUT", "/v1/routes", "[]", 2, TOKEN, xml, NULL, NULL, &r);
    assert_error(&r, 415, "unsupported_media_type", NULL);
    const char *mp[] = {"Content-Type: application/merge-patch+json", NULL};
    http_ex(f->port, "PATCH", "/v1/shards", "{}", 2, TOKEN, mp, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
}

static void test_malformed_json(void **state)
{
    struct fixture *f = *state;
    struct resp r;
    int applied = fake_apply_count(f->g);
    http(f, "PUT", "/v1/shards", "{\"a\": {\n  \"peers\": [,]}}", NULL, &r);
    assert_error(&r, 400, "invalid_json", NULL);
    assert_non_null(strstr(r.body, "request body:2:"));
    http(f, "PUT", "/v1/shards", "{} {}", NULL, &r);
    assert_error(&r, 400, "invalid_json", NULL);
    assert_non_null(strstr(r.body, "unexpected text after"));
    http(f, "PUT", "/v1/shards", "{\"a\": {}, \"a\": {}}", NULL, &r);
    assert_error(&r, 400, "invalid_json", "a");
    http(f, "PUT", "/v1/shards", "{\"a\": {\"labels\": {\"x\": \"1\", \"x\": \"2\"}}}", NULL, &r);
    assert_error(&r, 400, "invalid_json", "a.labels.x");
    http(f, "PUT", "/v1/shards", "", NULL, &r);
    assert_error(&r, 400, "invalid_json", NULL);
    http_ex(f->port, "PUT", "/v1/shards", "{\"a\":\0{}}", 8, TOKEN, NULL, NULL, NULL, &r);
    assert_error(&r, 400, "invalid_json", NULL);
    http(f, "PUT", "/v1/shards", "{\"a\xff\": {}}", NULL, &r);
    assert_error(&r, 400, "invalid_json", NULL);
    assert_non_null(strstr(r.body, "UTF-8"));
    assert_int_equal(fake_apply_count(f->g), applied);
}

static void test_body_too_large(void **state)
{
    struct fixture *f = *state;
    struct resp r;
    size_t n = 10000; /* cap is 4096 */
    char *big = malloc(n + 1);
    assert_non_null(big);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    big[n] = '\0';
    http(f, "PUT", "/v1/shards", big, NULL, &r);
    assert_error(&r, 413, "body_too_large", NULL);
    /* Chunked (no Content-Length): refused after reading past the cap. */
    const char *chunked[] = {"Transfer-Encoding: chunked", NULL};
    http_ex(f->port, "PUT", "/v1/shards", big, n, TOKEN, chunked, NULL, NULL, &r);
    assert_error(&r, 413, "body_too_large", NULL);
    /* Right at the cap is fine (valid JSON of exactly 4096 bytes). */
    big[4095] = '}';
    big[4096] = '\0';
    http(f, "PATCH", "/v1/shards", big, NULL, &r);
    assert_int_equal(r.status, 200);
    free(big);
}

/* ---- shards ---- */

static const char *const KEY_A = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char *const KEY_B = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

static void test_shards_crud_and_etags(void **state)
{
    struct fixture *f = *state;
    struct resp r;
    http(f, "GET", "/v1/shards", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.etag, "\"1\"");
    assert_non_null(strstr(r.ctype, "application/json"));
    cJSON *v = json_of(&r);
    assert_non_null(cJSON_GetObjectItemCaseSensitive(v, "default"));
    cJSON_Delete(v);

    char body[512];
    snprintf(body, sizeof(body),
             "{\"default\": {}, \"fleet_a\": {\"peers\": [\"%s\"], "
             "\"labels\": {\"site\": \"x\"}}}",
             KEY_A);
    http(f, "PUT", "/v1/shards", body, "\"1\"", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.etag, "\"2\"");
    assert_non_null(strstr(r.body, KEY_A));

    /* Stale version: 412 with the current ETag, nothing changed. */
    http(f, "PUT", "/v1/shards", "{}", "\"1\"", &r);
    assert_error(&r, 412, "version_mismatch", NULL);
    assert_string_equal(r.etag, "\"2\"");
    http(f, "PUT", "/v1/shards", "{}", "\"nonsense", &r);
    assert_error(&r, 412, "version_mismatch", NULL);
    http(f, "GET", "/v1/shards/fleet_a", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.etag, "\"2\"");

    /* Merge patch: add a label, delete another, weak ETag and "*" accepted. */
    http(f, "PATCH", "/v1/shards", "{\"fleet_a\": {\"labels\": {\"site\": null, \"zone\": \"b\"}}}",
         "W/\"2\"", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.etag, "\"3\"");
    v = json_of(&r);
    const cJSON *labels =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(v, "fleet_a"), "labels");
    assert_null(cJSON_GetObjectItemCaseSensitive(labels, "site"));
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(labels, "zone")->valuestring, "b");
    assert_non_null(strstr(r.body, KEY_A));
    cJSON_Delete(v);

    /* One shard: create (201 + Location), patch, replace, delete. */
    snprintf(body, sizeof(body), "{\"peers\": [\"%s\"]}", KEY_B);
    http(f, "PUT", "/v1/shards/fleet_b", body, "*", &r);
    assert_int_equal(r.status, 201);
    assert_string_equal(r.location, "/v1/shards/fleet_b");
    assert_string_equal(r.etag, "\"4\"");
    http(f, "PATCH", "/v1/shards/fleet_b", "{\"attributes\": {\"kafka_partition\": 3}}", "\"4\"",
         &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"kafka_partition\":3"));
    assert_non_null(strstr(r.body, KEY_B));
    http(f, "PUT", "/v1/shards/fleet_b", "{\"peers\": []}", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.etag, "\"6\"");
    http(f, "DELETE", "/v1/shards/fleet_b", NULL, "\"6\"", &r);
    assert_int_equal(r.status, 204);
    assert_string_equal(r.etag, "\"7\"");
    http(f, "GET", "/v1/shards/fleet_b", NULL, NULL, &r);
    assert_error(&r, 404, "not_found", "id");
    http(f, "DELETE", "/v1/shards/fleet_b", NULL, NULL, &r);
    assert_error(&r, 404, "not_found", "id");
    http(f, "PATCH", "/v1/shards/fleet_b", "{}", NULL, &r);
    assert_error(&r, 404, "not_found", "id");
    /* Ids outside [A-Za-z0-9_.-] are not routes. */
    http(f, "GET", "/v1/shards/bad%20id", NULL, NULL, &r);
    assert_error(&r, 404, "not_found", NULL);

    /* HEAD carries the ETag. */
    http(f, "HEAD", "/v1/shards", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.etag, "\"7\"");

    /* Delete everything. */
    http(f, "DELETE", "/v1/shards", NULL, "\"7\"", &r);
    assert_int_equal(r.status, 204);
    http(f, "GET", "/v1/shards", NULL, NULL, &r);
    assert_string_equal(r.body, "{}\n");
    assert_string_equal(r.etag, "\"8\"");
}

static void test_shards_validation_changes_nothing(void **state)
{
    struct fixture *f = *state;
    struct resp r, before, after;
    http(f, "GET", "/v1/shards", NULL, NULL, &before);
    int applied = fake_apply_count(f->g);

    char body[512];
    /* Duplicate peer across shards: 409 naming the second place. */
    snprintf(body, sizeof(body),
             "{\"a\": {\"peers\": [\"%s\"]}, \"b\": {\"peers\": [\"%s\", "
             "\"%s\"]}}",
             KEY_A, KEY_B, KEY_A);
    http(f, "PUT", "/v1/shards", body, NULL, &r);
    assert_error(&r, 409, "duplicate_peer", "b.peers[1]");
    /* The same across a single-shard PUT (case-insensitive hex). */
    snprintf(body, sizeof(body), "{\"a\": {\"peers\": [\"%s\"]}}", KEY_A);
    http(f, "PUT", "/v1/shards", body, NULL, &r);
    assert_int_equal(r.status, 200);
    http(f, "GET", "/v1/shards", NULL, NULL, &before);
    applied = fake_apply_count(f->g);
    http(f, "PUT", "/v1/shards/b",
         "{\"peers\": [\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"]}",
         NULL, &r);
    assert_error(&r, 409, "duplicate_peer", "b.peers[0]");

    /* Validation (the gateway's builders): 422 with the field path. */
    http(f, "PUT", "/v1/shards", "{\"a\": {\"peers\": [\"xyz\"]}}", NULL, &r);
    assert_error(&r, 422, "validation_failed", "a.peers[0]");
    http(f, "PUT", "/v1/shards", "{\"a\": {\"colour\": 1}}", NULL, &r);
    assert_error(&r, 422, "validation_failed", "a.colour");
    /* Wrong types. */
    http(f, "PUT", "/v1/shards", "[]", NULL, &r);
    assert_error(&r, 422, "invalid_type", NULL);
    http(f, "PUT", "/v1/shards/a", "\"peers\"", NULL, &r);
    assert_error(&r, 422, "invalid_type", NULL);
    http(f, "PATCH", "/v1/shards", "[1]", NULL, &r);
    assert_error(&r, 422, "invalid_type", NULL);

    http(f, "GET", "/v1/shards", NULL, NULL, &after);
    assert_string_equal(after.body, before.body);
    assert_string_equal(after.etag, before.etag);
    assert_int_equal(fake_apply_count(f->g), applied);
}

static void test_version_follows_live_document(void **state)
{
    struct fixture *f = *state;
    struct resp r;
    http(f, "GET", "/v1/shards", NULL, NULL, &r);
    assert_string_equal(r.etag, "\"1\"");
    /* A reload changed the live shards: the version moves, so old ETags no longer match. */
    cJSON *reloaded = cJSON_Parse("{\"default\": {}, \"new\": {}}");
    fake_set_live_shards(f->g, reloaded);
    cJSON_Delete(reloaded);
    http(f, "GET", "/v1/shards", NULL, NULL, &r);
    assert_string_equal(r.etag, "\"2\"");
    http(f, "PUT", "/v1/shards", "{}", "\"1\"", &r);
    assert_error(&r, 412, "version_mismatch", NULL);
}

/* ---- routes ---- */

static void test_routes(void **state)
{
    struct fixture *f = *state;
    struct resp r;
    http(f, "GET", "/v1/routes", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.etag, "\"1\"");
    assert_int_equal(r.body[0], '[');
    const char *routes = "[{\"name\": \"k\", \"match\": {\"shard\": \"*\", \"topic\": \"t.*\"}, "
                         "\"sinks\": [{\"sink\": \"kafka\", \"destination\": \"x.{shard}\"}]}]";
    http(f, "PUT", "/v1/routes", routes, "\"1\"", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.etag, "\"2\"");
    assert_non_null(strstr(r.body, "x.{shard}"));
    http(f, "PUT", "/v1/routes", routes, "\"1\"", &r);
    assert_error(&r, 412, "version_mismatch", NULL);
    assert_string_equal(r.etag, "\"2\"");
    http(f, "PUT", "/v1/routes", "[{\"sinks\": [{\"sink\": \"kafak\"}]}]", NULL, &r);
    assert_error(&r, 422, "validation_failed", "[0].sinks[0].sink");
    http(f, "PUT", "/v1/routes", "{\"routes\": []}", NULL, &r);
    assert_error(&r, 422, "invalid_type", NULL);
    http(f, "GET", "/v1/routes", NULL, NULL, &r);
    assert_string_equal(r.etag, "\"2\"");
    assert_non_null(strstr(r.body, "x.{shard}"));
}

/* ---- persistence ---- */

static void test_persisted_and_reloaded(void **state)
{
    struct fixture *f = *state;
    struct resp r;
    char body[256];
    snprintf(body, sizeof(body), "{\"fleet\": {\"peers\": [\"%s\"]}}", KEY_A);
    http(f, "PUT", "/v1/shards", body, NULL, &r);
    assert_int_equal(r.status, 200);
    http(f, "PUT", "/v1/routes", "[{\"sinks\": [{\"sink\": \"archive\"}]}]", NULL, &r);
    assert_int_equal(r.status, 200);
    struct stat st;
    assert_int_equal(stat(f->state_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* A new state (a restart) reads the documents and versions back. */
    gw_state *s = NULL;
    char err[512];
    assert_int_equal(gw_state_open(&s, f->state_path, err, sizeof(err)), ITR_OK);
    assert_int_equal(gw_state_shards_version(s), 2);
    assert_int_equal(gw_state_routes_version(s), 2);
    assert_non_null(cJSON_GetObjectItemCaseSensitive(gw_state_shards(s), "fleet"));
    assert_int_equal(cJSON_GetArraySize(gw_state_routes(s)), 1);
    gw_state_free(s);

    /* Restart the whole fake + admin on the same state file: same documents and ETags. */
    gw_admin_stop(f->a);
    fake_gateway_free(f->g);
    f->g = fake_gateway_new(f->state_path);
    gw_admin_config c;
    default_config(&c, f);
    assert_int_equal(gw_admin_start(&f->a, f->g, &c, err, sizeof(err)), ITR_OK);
    f->port = gw_admin_port(f->a);
    http(f, "GET", "/v1/shards", NULL, NULL, &r);
    assert_string_equal(r.etag, "\"2\"");
    assert_non_null(strstr(r.body, KEY_A));
    http(f, "GET", "/v1/routes", NULL, NULL, &r);
    assert_string_equal(r.etag, "\"2\"");

    /* A corrupt state file fails start-up with a message naming it. */
    int fd = open(f->state_path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "{\"format\": 1,", 13), 13);
    close(fd);
    assert_int_not_equal(gw_state_open(&s, f->state_path, err, sizeof(err)), ITR_OK);
    assert_non_null(strstr(err, f->state_path));
}

static void test_persist_failure_changes_nothing(void **state)
{
    struct fixture *f = *state;
    struct resp r, before, after;
    http(f, "PUT", "/v1/shards", "{\"x\": {}}", NULL, &r);
    assert_int_equal(r.status, 200);
    http(f, "GET", "/v1/shards", NULL, NULL, &before);
    struct stat st0;
    assert_int_equal(stat(f->state_path, &st0), 0);
    /* The temp file's name is taken by a directory: the write cannot be persisted. */
    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.tmp", f->state_path);
    assert_int_equal(mkdir(tmp, 0700), 0);
    http(f, "PUT", "/v1/shards", "{\"y\": {}}", NULL, &r);
    assert_error(&r, 500, "persist_failed", NULL);
    http(f, "GET", "/v1/shards", NULL, NULL, &after);
    assert_string_equal(after.body, before.body);
    assert_string_equal(after.etag, before.etag);
    gw_state *s = NULL;
    char err[512];
    assert_int_equal(gw_state_open(&s, f->state_path, err, sizeof(err)), ITR_OK);
    assert_non_null(cJSON_GetObjectItemCaseSensitive(gw_state_shards(s), "x"));
    gw_state_free(s);
    rmdir(tmp);
    http(f, "PUT", "/v1/shards", "{\"y\": {}}", before.etag, &r);
    assert_int_equal(r.status, 200);

    /* A forced apply failure also changes nothing. */
    http(f, "GET", "/v1/shards", NULL, NULL, &before);
    fake_fail_next_apply(f->g);
    http(f, "PUT", "/v1/shards", "{\"z\": {}}", NULL, &r);
    assert_error(&r, 422, "validation_failed", NULL);
    http(f, "GET", "/v1/shards", NULL, NULL, &after);
    assert_string_equal(after.body, before.body);
    assert_string_equal(after.etag, before.etag);
}

struct racer {
    struct fixture *f;
    pthread_barrier_t *barrier;
    int index;
    long status;
};

static void *race(void *arg)
{
    struct racer *rc = arg;
    char body[64];
    snprintf(body, sizeof(body), "{\"racer%d\": {}}", rc->index);
    pthread_barrier_wait(rc->barrier);
    struct resp *r = malloc(sizeof(*r));
    if (!r)
        abort();
    http(rc->f, "PUT", "/v1/shards", body, "\"1\"", r);
    rc->status = r->status;
    free(r);
    return NULL;
}

static void test_concurrent_puts_one_wins(void **state)
{
    struct fixture *f = *state;
    enum { N = 4 };
    for (int round = 0; round < 5; round++) {
        if (round) {
            /* Back to version 1: a fresh fake and admin. */
            teardown(state);
            setup(state);
            f = *state;
        }
        pthread_barrier_t b;
        pthread_barrier_init(&b, NULL, N);
        struct racer rs[N];
        pthread_t t[N];
        for (int i = 0; i < N; i++) {
            rs[i] = (struct racer){f, &b, i, 0};
            assert_int_equal(pthread_create(&t[i], NULL, race, &rs[i]), 0);
        }
        int ok = 0, stale = 0;
        for (int i = 0; i < N; i++) {
            pthread_join(t[i], NULL);
            ok += rs[i].status == 200;
            stale += rs[i].status == 412;
        }
        pthread_barrier_destroy(&b);
        assert_int_equal(ok, 1);
        assert_int_equal(stale, N - 1);
        struct resp r;
        http(f, "GET", "/v1/shards", NULL, NULL, &r);
        assert_string_equal(r.etag, "\"2\"");
    }
}

/* ---- peers ---- */

static void test_peers_pagination_and_disconnect(void **state)
{
    struct fixture *f = *state;
    for (int i = 1; i <= 5; i++)
        fake_add_peer(f->g, (uint8_t)(0x10 * i), i % 2 ? "default" : "fleet");
    struct resp r;
    http(f, "GET", "/v1/peers", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    cJSON *v = json_of(&r);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(v, "total")->valueint, 5);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(v, "limit")->valueint, 100);
    assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(v, "next_offset")));
    const cJSON *p0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(v, "peers"), 0);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(p0, "key")->valuestring,
                        "1010101010101010101010101010101010101010101010101010101010101010");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(p0, "address")->valuestring,
                        "127.0.0.1:40016");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(p0, "shard")->valuestring, "default");
    assert_true(cJSON_GetObjectItemCaseSensitive(p0, "rtt_ms")->valuedouble == 1.5);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(p0, "messages_in")->valueint, 0x10);
    assert_non_null(cJSON_GetObjectItemCaseSensitive(p0, "last_seen"));
    cJSON_Delete(v);

    http(f, "GET", "/v1/peers?offset=1&limit=2", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    v = json_of(&r);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(v, "peers")), 2);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(v, "next_offset")->valueint, 3);
    p0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(v, "peers"), 0);
    assert_non_null(strstr(cJSON_GetObjectItemCaseSensitive(p0, "key")->valuestring, "2020"));
    cJSON_Delete(v);

    http(f, "GET", "/v1/peers?offset=9", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"peers\":[]"));
    http(f, "GET", "/v1/peers?limit=1001", NULL, NULL, &r);
    assert_error(&r, 400, "invalid_parameter", "limit");
    http(f, "GET", "/v1/peers?limit=0", NULL, NULL, &r);
    assert_error(&r, 400, "invalid_parameter", "limit");
    http(f, "GET", "/v1/peers?offset=-1", NULL, NULL, &r);
    assert_error(&r, 400, "invalid_parameter", "offset");
    http(f, "GET", "/v1/peers?page=2", NULL, NULL, &r);
    assert_error(&r, 400, "invalid_parameter", "page");
    fake_set_peers_unavailable(f->g, 1);
    http(f, "GET", "/v1/peers", NULL, NULL, &r);
    assert_error(&r, 503, "unavailable", NULL);
    fake_set_peers_unavailable(f->g, 0);

    http(f, "DELETE", "/v1/peers/3030303030303030303030303030303030303030303030303030303030303030",
         NULL, NULL, &r);
    assert_int_equal(r.status, 204);
    assert_int_equal(fake_peer_count(f->g), 4);
    http(f, "DELETE", "/v1/peers/3030303030303030303030303030303030303030303030303030303030303030",
         NULL, NULL, &r);
    assert_error(&r, 404, "not_found", "key");
    http(f, "DELETE", "/v1/peers/nothex", NULL, NULL, &r);
    assert_error(&r, 400, "invalid_parameter", "key");
    http(f, "GET", "/v1/peers/3030303030303030303030303030303030303030303030303030303030303030",
         NULL, NULL, &r);
    assert_error(&r, 405, "method_not_allowed", NULL);
}

static void test_sinks(void **state)
{
    struct fixture *f = *state;
    struct resp r;
    http(f, "GET", "/v1/sinks", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    cJSON *v = json_of(&r);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(v, "sinks");
    assert_int_equal(cJSON_GetArraySize(arr), 2);
    const cJSON *k = cJSON_GetArrayItem(arr, 1);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(k, "state")->valuestring, "down");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(k, "last_error")->valuestring,
                        "broker unreachable");
    cJSON_Delete(v);
}

/* ---- publish ---- */

static void test_publish(void **state)
{
    struct fixture *f = *state;
    struct resp r;
    fake_publish_seen seen;
    char body[512];

    /* Fire and forget. */
    snprintf(body, sizeof(body),
             "{\"target\": {\"peer\": \"%s\"}, \"topic\": \"cmd.stop\", "
             "\"payload\": \"halt\", \"intent\": \"realtime\", \"priority\": 5}",
             KEY_A);
    http(f, "POST", "/v1/publish", body, NULL, &r);
    assert_int_equal(r.status, 202);
    fake_last_publish(f->g, &seen);
    assert_int_equal(seen.count, 1);
    assert_int_equal(seen.kind, GW_TARGET_PEER);
    assert_string_equal(seen.target, KEY_A);
    assert_string_equal(seen.topic, "cmd.stop");
    assert_int_equal(seen.body_len, 4);
    assert_memory_equal(seen.body, "halt", 4);
    assert_int_equal(seen.intent, ITR_INTENT_REALTIME);
    assert_int_equal(seen.priority, 5);
    assert_false(seen.has_done);

    /* Wait for the outcome (done comes 50 ms later from another thread). */
    fake_set_publish(f->g, ITR_OK, ITR_OK, 3, 50, 0);
    http(f, "POST", "/v1/publish",
         "{\"target\": {\"shard\": \"fleet\"}, \"topic\": \"cmd\", \"payload_base64\": "
         "\"AAEC/w==\", \"wait\": true, \"timeout_ms\": 2000}",
         NULL, &r);
    assert_int_equal(r.status, 200);
    cJSON *v = json_of(&r);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(v, "status")->valuestring, "ok");
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(v, "targeted")->valueint, 3);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(v, "acked")->valueint, 3);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(v, "failed")->valueint, 0);
    cJSON_Delete(v);
    fake_last_publish(f->g, &seen);
    assert_int_equal(seen.kind, GW_TARGET_SHARD);
    assert_string_equal(seen.target, "fleet");
    assert_int_equal(seen.body_len, 4);
    assert_memory_equal(seen.body, "\x00\x01\x02\xff", 4);
    assert_int_equal(seen.intent, ITR_INTENT_RELIABLE);
    assert_int_equal(seen.timeout_ms, 2000);

    /* Immediate completion (before the connection could be suspended). */
    fake_set_publish(f->g, ITR_OK, ITR_OK, 7, 0, 0);
    http(f, "POST", "/v1/publish",
         "{\"target\": {\"all\": true}, \"topic\": \"t\", \"payload\": \"\", \"wait\": true}", NULL,
         &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"targeted\":7"));

    /* Nobody connected. */
    fake_set_publish(f->g, ITR_OK, ITR_ERR_NOT_FOUND, 0, 10, 0);
    http(f, "POST", "/v1/publish",
         "{\"target\": {\"shard\": \"empty\"}, \"topic\": \"t\", \"payload\": \"x\", \"wait\": "
         "true}",
         NULL, &r);
    assert_error(&r, 404, "not_found", "target");
    /* Synchronous refusals. */
    fake_set_publish(f->g, ITR_ERR_WOULDBLOCK, ITR_OK, 1, 0, 0);
    http(f, "POST", "/v1/publish",
         "{\"target\": {\"all\": true}, \"topic\": \"t\", \"payload\": \"x\"}", NULL, &r);
    assert_error(&r, 503, "unavailable", NULL);
    fake_set_publish(f->g, ITR_ERR_CLOSED, ITR_OK, 1, 0, 0);
    http(f, "POST", "/v1/publish",
         "{\"target\": {\"all\": true}, \"topic\": \"t\", \"payload\": \"x\", \"wait\": true}",
         NULL, &r);
    assert_error(&r, 503, "draining", NULL);
    fake_set_publish(f->g, ITR_OK, ITR_OK, 1, 0, 0);

    /* Body validation. */
    static const struct {
        const char *body;
        const char *code;
        const char *field;
    } bad[] = {
        {"[]", "invalid_type", ""},
        {"{\"topic\": \"t\", \"payload\": \"x\"}", "missing_field", "target"},
        {"{\"target\": {\"all\": true}, \"payload\": \"x\"}", "missing_field", "topic"},
        {"{\"target\": {\"all\": true}, \"topic\": \"t\"}", "missing_field", "payload"},
        {"{\"target\": {\"all\": false}, \"topic\": \"t\", \"payload\": \"x\"}", "invalid_value",
         "target.all"},
        {"{\"target\": {\"peer\": \"abc\"}, \"topic\": \"t\", \"payload\": \"x\"}", "invalid_value",
         "target.peer"},
        {"{\"target\": {\"shard\": \"a b\"}, \"topic\": \"t\", \"payload\": \"x\"}",
         "invalid_value", "target.shard"},
        {"{\"target\": {\"all\": true, \"shard\": \"a\"}, \"topic\": \"t\", \"payload\": \"x\"}",
         "validation_failed", "target"},
        {"{\"target\": {\"group\": 1}, \"topic\": \"t\", \"payload\": \"x\"}", "unknown_field",
         "target"},
        {"{\"target\": \"all\", \"topic\": \"t\", \"payload\": \"x\"}", "invalid_type", "target"},
        {"{\"target\": {\"all\": true}, \"topic\": \"bad topic\", \"payload\": \"x\"}",
         "invalid_value", "topic"},
        {"{\"target\": {\"all\": true}, \"topic\": 5, \"payload\": \"x\"}", "invalid_value",
         "topic"},
        {"{\"target\": {\"all\": true}, \"topic\": \"t\", \"payload\": 5}", "invalid_type",
         "payload"},
        {"{\"target\": {\"all\": true}, \"topic\": \"t\", \"payload\": \"x\", "
         "\"payload_base64\": \"eA==\"}",
         "validation_failed", "payload"},
        {"{\"target\": {\"all\": true}, \"topic\": \"t\", \"payload_base64\": \"!!\"}",
         "invalid_value", "payload_base64"},
        {"{\"target\": {\"all\": true}, \"topic\": \"t\", \"payload\": \"x\", \"intent\": "
         "\"fast\"}",
         "invalid_value", "intent"},
        {"{\"target\": {\"all\": true}, \"topic\": \"t\", \"payload\": \"x\", \"priority\": 8}",
         "invalid_value", "priority"},
        {"{\"target\": {\"all\": true}, \"topic\": \"t\", \"payload\": \"x\", \"priority\": 1.5}",
         "invalid_value", "priority"},
        {"{\"target\": {\"all\": true}, \"topic\": \"t\", \"payload\": \"x\", \"wait\": 1}",
         "invalid_type", "wait"},
        {"{\"target\": {\"all\": true}, \"topic\": \"t\", \"payload\": \"x\", \"timeout_ms\": 0}",
         "invalid_value", "timeout_ms"},
        {"{\"target\": {\"all\": true}, \"topic\": \"t\", \"payload\": \"x\", \"extra\": 0}",
         "unknown_field", "extra"},
    };
    fake_last_publish(f->g, &seen);
    int count = seen.count;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        http(f, "POST", "/v1/publish", bad[i].body, NULL, &r);
        if (r.status != 422 || !strstr(r.body, bad[i].code))
            fprintf(stderr, "case %zu: %s -> %ld %s\n", i, bad[i].body, r.status, r.body);
        assert_error(&r, 422, bad[i].code, bad[i].field[0] ? bad[i].field : NULL);
    }
    fake_last_publish(f->g, &seen);
    assert_int_equal(seen.count, count);
}

struct waiter {
    struct fixture *f;
    struct resp r;
    CURLcode rc;
};

static void *wait_publish(void *arg)
{
    struct waiter *w = arg;
    memset(&w->r, 0, sizeof(w->r));
    CURL *c = curl_easy_init();
    if (!c)
        abort();
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/publish", w->f->port);
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer " TOKEN);
    h = curl_slist_append(h, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS,
                     "{\"target\": {\"all\": true}, \"topic\": \"t\", "
                     "\"payload\": \"x\", \"wait\": true}");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &w->r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    w->rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &w->r.status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return NULL;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A publish waiting for its outcome does not hold an admin thread: other requests are served
 * meanwhile; the outcome arriving later is answered; stopping the server while one waits
 * neither hangs nor leaks (the client gets 503 or a closed connection). */
static void test_publish_wait_is_suspended(void **state)
{
    struct fixture *f = *state;
    struct waiter *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    w->f = f;
    fake_set_publish(f->g, ITR_OK, ITR_OK, 2, 0, 1);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wait_publish, w), 0);
    fake_publish_seen seen;
    for (int i = 0; i < 500; i++) {
        fake_last_publish(f->g, &seen);
        if (seen.count == 1)
            break;
        sleep_ms(10);
    }
    assert_int_equal(seen.count, 1);
    /* Both pool threads stay available while the publish waits. */
    struct resp r;
    for (int i = 0; i < 4; i++) {
        http(f, "GET", "/v1/routes", NULL, NULL, &r);
        assert_int_equal(r.status, 200);
    }
    fake_publish_release(f->g);
    pthread_join(t, NULL);
    assert_int_equal(w->rc, CURLE_OK);
    assert_int_equal(w->r.status, 200);
    assert_non_null(strstr(w->r.body, "\"acked\":2"));

    /* Now stop the server while a publish waits. */
    fake_set_publish(f->g, ITR_OK, ITR_OK, 2, 0, 1);
    assert_int_equal(pthread_create(&t, NULL, wait_publish, w), 0);
    for (int i = 0; i < 500; i++) {
        fake_last_publish(f->g, &seen);
        if (seen.count == 2)
            break;
        sleep_ms(10);
    }
    assert_int_equal(seen.count, 2);
    sleep_ms(50);
    gw_admin_stop(f->a);
    f->a = NULL;
    pthread_join(t, NULL);
    assert_true(w->rc != CURLE_OK || w->r.status == 503);
    free(w);
    /* The gateway reports after the server is gone: only the wait's last reference drops. */
    fake_publish_release(f->g);
}

static void test_https(void **state)
{
    (void)state;
    char dir[64] = "/tmp/test-admin-tls-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cmd[1024], cert[128], key[128];
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 "
             "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout '%s' -out '%s' "
             ">/dev/null 2>&1",
             key, cert);
    if (system(cmd) != 0) {
        rm_rf(dir);
        skip();
    }
    struct fixture tmp;
    memset(&tmp, 0, sizeof(tmp));
    snprintf(tmp.token_path, sizeof(tmp.token_path), "%s/tok", dir);
    write_token(tmp.token_path, TOKEN, 0600);
    gw_gateway *g = fake_gateway_new(NULL);
    gw_admin_config c;
    default_config(&c, &tmp);
    c.state_file = NULL;
    c.tls_cert_file = cert;
    c.tls_key_file = key;
    gw_admin *a = NULL;
    char err[512] = "";
    int rc = gw_admin_start(&a, g, &c, err, sizeof(err));
    if (rc != ITR_OK)
        fprintf(stderr, "%s\n", err);
    assert_int_equal(rc, ITR_OK);
    struct resp r;
    http_ex(gw_admin_port(a), "GET", "/v1/routes", NULL, 0, TOKEN, NULL, "https", cert, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.etag, "\"1\"");
    gw_admin_stop(a);

    /* A missing key file is an error naming it. */
    c.tls_key_file = "/nonexistent/key.pem";
    assert_int_equal(gw_admin_start(&a, g, &c, err, sizeof(err)), ITR_ERR_IO);
    assert_non_null(strstr(err, "/nonexistent/key.pem"));
    fake_gateway_free(g);
    rm_rf(dir);
}

static int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* 1 if the server closed fd within timeout_ms (recv returns 0 or an error). */
static int closed_within(int fd, int timeout_ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0)
        return 0;
    char c;
    return recv(fd, &c, 1, 0) <= 0;
}

/* connection_limit and timeout_seconds: a connection past the limit is not served (it waits
 * in the listen backlog), idle ones are closed after the timeout, and then the waiting one is
 * served. */
static void test_connection_limit_and_timeout(void **state)
{
    (void)state;
    char dir[64] = "/tmp/test-admin-lim-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct fixture tmp;
    memset(&tmp, 0, sizeof(tmp));
    snprintf(tmp.token_path, sizeof(tmp.token_path), "%s/tok", dir);
    write_token(tmp.token_path, TOKEN, 0600);
    gw_gateway *g = fake_gateway_new(NULL);
    gw_admin_config c;
    default_config(&c, &tmp);
    c.state_file = NULL;
    c.connection_limit = 2;
    c.timeout_ns = 1000000000ull;
    c.threads = 1;
    gw_admin *a = NULL;
    char err[512] = "";
    assert_int_equal(gw_admin_start(&a, g, &c, err, sizeof(err)), ITR_OK);
    int port = gw_admin_port(a);
    int c1 = raw_connect(port), c2 = raw_connect(port);
    sleep_ms(100);
    /* A third connection waits in the backlog: its request is not served while two are open. */
    int c3 = raw_connect(port);
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(send(c3, req, sizeof(req) - 1, 0), (ssize_t)(sizeof(req) - 1));
    struct pollfd p = {c3, POLLIN, 0};
    assert_int_equal(poll(&p, 1, 400), 0);
    /* Idle connections are closed after about a second; then the waiting one is served. */
    assert_true(closed_within(c1, 3000));
    assert_true(closed_within(c2, 1000));
    char buf[512] = "";
    p.revents = 0;
    assert_int_equal(poll(&p, 1, 3000), 1);
    assert_true(recv(c3, buf, sizeof(buf) - 1, 0) > 12);
    assert_int_equal(strncmp(buf, "HTTP/1.1 200", 12), 0);
    close(c1);
    close(c2);
    close(c3);
    struct resp r;
    http_ex(port, "GET", "/healthz", NULL, 0, NULL, NULL, NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    gw_admin_stop(a);
    fake_gateway_free(g);
    rm_rf(dir);
}

int main(void)
{
    gw_log_options lo;
    gw_log_options_default(&lo);
    lo.level = GW_LOG_ERROR;
    gw_log_configure(&lo);
    curl_global_init(CURL_GLOBAL_ALL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_health_and_ready, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_needs_token_unless_open, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_errors, setup, teardown),
        cmocka_unit_test(test_token_env_and_created_file),
        cmocka_unit_test_setup_teardown(test_method_and_media_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_json, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_too_large, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shards_crud_and_etags, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shards_validation_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_follows_live_document, setup, teardown),
        cmocka_unit_test_setup_teardown(test_routes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persisted_and_reloaded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_persist_failure_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_puts_one_wins, setup, teardown),
        cmocka_unit_test_setup_teardown(test_peers_pagination_and_disconnect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sinks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish, setup, teardown),
        cmocka_unit_test_setup_teardown(test_publish_wait_is_suspended, setup, teardown),
        cmocka_unit_test(test_https),
        cmocka_unit_test(test_connection_limit_and_timeout),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
