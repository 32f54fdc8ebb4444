/* test_config.c: gateway/config.c: one test per class of mistake, each asserting the exact
 * message (file, JSON path, what was expected), plus interpolation, defaults, the routing
 * builder used by the admin API, and every shipped config under conf/ loading cleanly. */
#define _POSIX_C_SOURCE 200809L /* setenv, mkdtemp */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include <intentra/error.h>

#include "config.h"
#include "connector.h"

#ifndef INTENTRA_SOURCE_DIR
#define INTENTRA_SOURCE_DIR "."
#endif

static char err[1024];

/* A valid base: two null sinks, one route (admin on its loopback default). */
#define BASE_SINKS  "\"sinks\": {\"kafka\": {\"type\": \"null\"}, \"archive\": {\"type\": \"null\"}}"
#define BASE_ROUTES "\"routes\": [{\"sinks\": [{\"sink\": \"archive\"}]}]"

static gw_config *parse_ok(const char *text)
{
    gw_config *cfg = NULL;
    int r = gw_config_parse_text(text, strlen(text), "t.json", &cfg, err, sizeof(err));
    if (r != ITR_OK)
        fail_msg("unexpected error: %s", err);
    assert_non_null(cfg);
    return cfg;
}

static void expect_error(const char *text, const char *expected)
{
    gw_config *cfg = (gw_config *)1;
    int r = gw_config_parse_text(text, strlen(text), "t.json", &cfg, err, sizeof(err));
    assert_int_equal(r, ITR_ERR_INVALID);
    assert_null(cfg);
    assert_string_equal(err, expected);
}

/* ---- one test per class of mistake ---- */

static void test_syntax_error_line_col(void **state)
{
    (void)state;
    expect_error("{\n"
                 "  \"listen\": [\"127.0.0.1:7400\"],\n"
                 "  \"workers\": 2,,\n"
                 "}\n",
                 "t.json:3:16: syntax error: unexpected ',' (expected a key string)");
    /* The column refers to the file even after a substitution on the same line. */
    setenv("TCFG_LONG", "a-rather-long-value-that-shifts-the-columns", 1);
    expect_error("{\"key_file\": \"${TCFG_LONG}\", \"workers\": }",
                 "t.json:1:41: syntax error: unexpected '}' (expected a value)");
    expect_error("", "t.json:1:1: syntax error: unexpected end of input (expected a value)");
    expect_error("{\"workers\": 1",
                 "t.json:1:14: syntax error: unexpected end of input (expected ',' or '}')");
    expect_error("{} x",
                 "t.json:1:4: syntax error: unexpected 'x' (expected the end of the document)");
    expect_error("[1]", "t.json: expected a JSON object at the top level, got an array");
    expect_error("{\"a\": \"x\ny\"}",
                 "t.json:1:9: syntax error: unexpected byte 0x0a (expected '\"' "
                 "to close the string before the end of the line)");
    expect_error("{\"a\": \"\\udc00\"}", "t.json:1:9: syntax error: unexpected 'u' (expected a "
                                         "\\u escape that is not a lone low surrogate)");
    expect_error("{\"a\": 01}", "t.json:1:8: syntax error: unexpected '1' (expected ',' or '}')");
    expect_error("{\"a\": tru}",
                 "t.json:1:7: syntax error: unexpected 't' (expected a value (true, "
                 "false, null, a number, a string, an object or an array))");
}

static void test_unknown_key(void **state)
{
    (void)state;
    expect_error("{\"worker\": 2, " BASE_SINKS ", " BASE_ROUTES "}",
                 "t.json: worker: unknown key (did you mean \"workers\"? allowed: _comment, "
                 "listen, key_file, workers, log, transport, limits, unknown_peers, "
                 "default_shard, shards, sinks, routes, admin, drain_timeout_seconds)");
    expect_error("{\"log\": {\"colour\": true}, " BASE_SINKS ", " BASE_ROUTES "}",
                 "t.json: log.colour: unknown key (allowed: format, level, "
                 "security_interval_seconds)");
    expect_error("{" BASE_SINKS ", " BASE_ROUTES ", \"workers\": 1, \"workers\": 2}",
                 "t.json: workers: key appears twice in the object");
    expect_error("{" BASE_SINKS ", \"routes\": [{\"sinks\": [{\"sink\": \"archive\"}], "
                 "\"match\": {\"topics\": \"a\"}}]}",
                 "t.json: routes[0].match.topics: unknown key (did you mean \"topic\"? allowed: "
                 "shard, peer, topic)");
}

static void test_wrong_type(void **state)
{
    (void)state;
    expect_error("{\"transport\": {\"rate_limit_pps\": \"fast\"}, " BASE_SINKS ", " BASE_ROUTES "}",
                 "t.json: transport.rate_limit_pps: expected an integer 1..10000000, got \"fast\"");
    expect_error("{\"transport\": {\"receive_coalesce_us\": 5000}, " BASE_SINKS ", " BASE_ROUTES
                 "}",
                 "t.json: transport.receive_coalesce_us: expected an integer 0..1000, got 5000");
    expect_error("{\"transport\": {\"udp_gro\": true}, " BASE_SINKS ", " BASE_ROUTES "}",
                 "t.json: transport.udp_gro: expected \"auto\" | \"on\" | \"off\", got true");
    expect_error("{\"transport\": {\"udp_gso\": \"yes\"}, " BASE_SINKS ", " BASE_ROUTES "}",
                 "t.json: transport.udp_gso: expected true or false, got \"yes\"");
    expect_error("{\"listen\": \"127.0.0.1:7400\", " BASE_SINKS ", " BASE_ROUTES "}",
                 "t.json: listen: expected an array of 1..16 \"HOST:PORT\" addresses, got "
                 "\"127.0.0.1:7400\"");
    expect_error("{\"log\": {\"level\": \"loud\"}, " BASE_SINKS ", " BASE_ROUTES "}",
                 "t.json: log.level: expected \"error\" | \"warn\" | \"info\" | \"debug\", got "
                 "\"loud\"");
    expect_error("{\"admin\": {\"enabled\": \"yes\"}, " BASE_SINKS ", " BASE_ROUTES "}",
                 "t.json: admin.enabled: expected true or false, got \"yes\"");
    expect_error("{\"_comment\": 5, " BASE_SINKS ", " BASE_ROUTES "}",
                 "t.json: _comment: expected a string, got 5");
}

static void test_out_of_range(void **state)
{
    (void)state;
    expect_error("{\"workers\": 65, " BASE_SINKS ", " BASE_ROUTES "}",
                 "t.json: workers: expected an integer 1..64, got 65");
    expect_error("{\"workers\": 1.5, " BASE_SINKS ", " BASE_ROUTES "}",
                 "t.json: workers: expected an integer 1..64, got 1.5");
    expect_error("{\"transport\": {\"idle_timeout_seconds\": 0}, " BASE_SINKS ", " BASE_ROUTES "}",
                 "t.json: transport.idle_timeout_seconds: expected a number of seconds "
                 "0.1..86400, got 0");
    expect_error(
        "{\"transport\": {\"keepalive_seconds\": 30, \"idle_timeout_seconds\": 20}, " BASE_SINKS
        ", " BASE_ROUTES "}",
        "t.json: transport.keepalive_seconds: must be less than idle_timeout_seconds "
        "(20), or idle peers are closed before a keepalive");
    expect_error("{\"sinks\": {\"a\": {\"type\": \"null\", \"queue_messages\": 0}}, " BASE_ROUTES
                 "}",
                 "t.json: sinks.a.queue_messages: expected an integer 1..16777216, got 0");
}

static void test_missing_required(void **state)
{
    (void)state;
    expect_error("{" BASE_ROUTES "}",
                 "t.json: sinks: missing required key (expected an object {name: {\"type\": "
                 "...}} with at least one sink)");
    expect_error("{\"sinks\": {\"archive\": {\"path\": \"x\"}}, " BASE_ROUTES "}",
                 "t.json: sinks.archive.type: missing required key (expected a string)");
    expect_error("{" BASE_SINKS "}",
                 "t.json: routes: missing required key (expected an array of routes, e.g. "
                 "[{\"match\": {\"topic\": \"*\"}, \"sinks\": [{\"sink\": \"kafka\"}]}])");
    expect_error("{" BASE_SINKS ", \"routes\": [{\"name\": \"r\"}]}",
                 "t.json: routes[0].sinks: missing required key (expected an array of 1..8 "
                 "{\"sink\": name})");
    expect_error("{" BASE_SINKS ", \"routes\": [{\"sinks\": [{\"destination\": \"x\"}]}]}",
                 "t.json: routes[0].sinks[0].sink: missing required key (expected a string)");
}

static void test_unset_variable(void **state)
{
    (void)state;
    unsetenv("TCFG_UNSET");
    expect_error("{\n  " BASE_SINKS ",\n  \"key_file\": \"${TCFG_UNSET}\",\n  " BASE_ROUTES "\n}",
                 "t.json:3: ${TCFG_UNSET} is not set (set it, or give a default: "
                 "${TCFG_UNSET:-default})");
    /* Set but empty is a value for ${VAR} (and then fails validation as an empty string). */
    setenv("TCFG_EMPTY", "", 1);
    expect_error("{" BASE_SINKS ", \"key_file\": \"${TCFG_EMPTY}\", " BASE_ROUTES "}",
                 "t.json: key_file: expected a non-empty string, got \"\"");
    expect_error("{\"key_file\": \"${TCFG_UNSET\"}",
                 "t.json:1: unterminated ${TCFG_UNSET (expected '}')");
    expect_error("{\"key_file\": \"${9X}\"}",
                 "t.json:1: bad variable reference at \"${9X}\": expected ${NAME}, "
                 "${NAME:-default} or ${NAME:?message} with NAME of [A-Za-z_][A-Za-z0-9_]* "
                 "(write $$ for a literal $)");
    expect_error("{\"key_file\": \"${TCFG_UNSET:-abc\"}",
                 "t.json:1: unterminated ${...:-default} (expected '}' before the end of the "
                 "string)");
}

static void test_required_variable_message(void **state)
{
    (void)state;
    unsetenv("TCFG_UNSET");
    expect_error("{\n\n  \"key_file\": \"${TCFG_UNSET:?point it at the gateway key file}\"\n}",
                 "t.json:3: ${TCFG_UNSET}: point it at the gateway key file");
    setenv("TCFG_EMPTY", "", 1);
    expect_error("{\"key_file\": \"${TCFG_EMPTY:?must not be empty}\"}",
                 "t.json:1: ${TCFG_EMPTY}: must not be empty");
    setenv("TCFG_SET", "/keys/gw.key", 1);
    gw_config *cfg =
        parse_ok("{" BASE_SINKS ", \"key_file\": \"${TCFG_SET:?unused}\", " BASE_ROUTES "}");
    assert_string_equal(gw_config_key_file(cfg), "/keys/gw.key");
    gw_config_free(cfg);
}

static void test_dollar_escape_and_interpolation(void **state)
{
    (void)state;
    gw_config *cfg;
    unsetenv("TCFG_UNSET");
    setenv("TCFG_DIR", "/srv/data", 1);
    setenv("TCFG_Q", "a\"b\\c", 1);
    setenv("TCFG_EMPTY", "", 1);

    cfg = parse_ok("{" BASE_SINKS ", \"key_file\": \"a$$b$${X}$x\", " BASE_ROUTES "}");
    assert_string_equal(gw_config_key_file(cfg), "a$b${X}$x");
    gw_config_free(cfg);

    /* Nested defaults, as in conf/gateway.json. */
    cfg = parse_ok("{" BASE_SINKS
                   ", \"key_file\": \"${TCFG_UNSET:-${TCFG_DIR:-data}/gw.key}\", " BASE_ROUTES "}");
    assert_string_equal(gw_config_key_file(cfg), "/srv/data/gw.key");
    gw_config_free(cfg);
    cfg =
        parse_ok("{" BASE_SINKS
                 ", \"key_file\": \"${TCFG_UNSET:-${TCFG_UNSET:-data}/gw.key}\", " BASE_ROUTES "}");
    assert_string_equal(gw_config_key_file(cfg), "data/gw.key");
    gw_config_free(cfg);
    /* :- also replaces an empty value; a set value ignores the default (and its errors are
     * not evaluated: the unset variable inside is never looked at). */
    cfg = parse_ok("{" BASE_SINKS ", \"key_file\": \"${TCFG_EMPTY:-dflt}\", " BASE_ROUTES "}");
    assert_string_equal(gw_config_key_file(cfg), "dflt");
    gw_config_free(cfg);
    cfg =
        parse_ok("{" BASE_SINKS ", \"key_file\": \"${TCFG_DIR:-${TCFG_UNSET}}\", " BASE_ROUTES "}");
    assert_string_equal(gw_config_key_file(cfg), "/srv/data");
    gw_config_free(cfg);
    /* Values are JSON-escaped: quotes and backslashes arrive intact. */
    cfg = parse_ok("{" BASE_SINKS ", \"key_file\": \"${TCFG_Q}\", " BASE_ROUTES "}");
    assert_string_equal(gw_config_key_file(cfg), "a\"b\\c");
    gw_config_free(cfg);
    /* Only strings are interpolated: ${...} outside a string is a syntax error. */
    expect_error("{\"workers\": ${TCFG_DIR}}",
                 "t.json:1:13: syntax error: unexpected '$' (expected a value)");
    /* Keys are strings too, and JSON escapes in strings pass through. */
    char *out;
    size_t outlen;
    const char *in = "{\"${TCFG_DIR}\": \"x\\\"$$\"} ${TCFG_DIR}";
    assert_int_equal(gw_config_interpolate(in, strlen(in), "i", &out, &outlen, err, sizeof(err)),
                     ITR_OK);
    assert_string_equal(out, "{\"/srv/data\": \"x\\\"$\"} ${TCFG_DIR}");
    assert_int_equal(outlen, strlen(out));
    free(out);
}

static void test_unknown_sink_in_route(void **state)
{
    (void)state;
    expect_error("{" BASE_SINKS ", \"routes\": [\n"
                 "  {\"match\": {\"topic\": \"a\"}, \"sinks\": [{\"sink\": \"archive\"}], "
                 "\"continue\": true},\n"
                 "  {\"match\": {\"topic\": \"b\"}, \"sinks\": [{\"sink\": \"kafka\"}]},\n"
                 "  {\"match\": {\"topic\": \"c\"}, \"sinks\": [{\"sink\": \"kafak\"}]}]}",
                 "t.json: routes[2].sinks[0].sink: unknown sink \"kafak\" (defined: kafka, "
                 "archive)");
}

#define KEY_A "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29"
#define KEY_B "A7C1B2E3F4051627384950A1B2C3D4E5F60718293A4B5C6D7E8F90A1B2C3D4E5"

static void test_duplicate_peer_across_shards(void **state)
{
    (void)state;
    expect_error("{" BASE_SINKS ", " BASE_ROUTES ", \"shards\": {"
                 "\"fleet_a\": {\"peers\": [\"" KEY_A "\"]},"
                 "\"fleet_b\": {\"peers\": [\"" KEY_B "\", \"" KEY_A "\"]}}}",
                 "t.json: shards.fleet_b.peers[1]: peer " KEY_A
                 " is already in shard \"fleet_a\" (peers[0]); a peer belongs to one shard");
    /* Case does not make a key different. */
    expect_error("{" BASE_SINKS ", " BASE_ROUTES ", \"shards\": {"
                 "\"fleet_a\": {\"peers\": [\"" KEY_B "\"]},"
                 "\"fleet_b\": {\"peers\": [\"a7c1b2e3f4051627384950a1b2c3d4e5f60718293a4b5c6d7e8f"
                 "90a1b2c3d4e5\"]}}}",
                 "t.json: shards.fleet_b.peers[0]: peer "
                 "a7c1b2e3f4051627384950a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5 is already in "
                 "shard \"fleet_a\" (peers[0]); a peer belongs to one shard");
}

static void test_bad_hex_key(void **state)
{
    (void)state;
    expect_error("{" BASE_SINKS ", " BASE_ROUTES ", \"shards\": {\"a\": {\"peers\": [\"" KEY_A
                 "\", \"xyz\"]}}}",
                 "t.json: shards.a.peers[1]: expected a peer key of 64 hex digits, got \"xyz\"");
    expect_error("{" BASE_SINKS ", \"routes\": [{\"match\": {\"peer\": \"" KEY_A
                 "0\"}, \"sinks\": [{\"sink\": \"archive\"}]}]}",
                 "t.json: routes[0].match.peer: expected a string of 1..64 bytes, got 65 bytes");
    expect_error("{" BASE_SINKS ", \"routes\": [{\"match\": {\"peer\": "
                 "\"g" KEY_A "\"}, \"sinks\": [{\"sink\": \"archive\"}]}]}",
                 "t.json: routes[0].match.peer: expected a string of 1..64 bytes, got 65 bytes");
    expect_error("{" BASE_SINKS ", \"routes\": [{\"match\": {\"peer\": "
                 "\"zz6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29\"}, "
                 "\"sinks\": [{\"sink\": \"archive\"}]}]}",
                 "t.json: routes[0].match.peer: expected a peer key of 64 hex digits, got "
                 "\"zz6a27bcceb6a42d62a3a8d02a6f0d7365321577...\"");
}

static void test_bad_template_variable(void **state)
{
    (void)state;
    expect_error("{" BASE_SINKS ", \"routes\": [{\"sinks\": [{\"sink\": \"kafka\", "
                 "\"destination\": \"fleet.{sahrd}.{topic}\"}]}]}",
                 "t.json: routes[0].sinks[0].destination: unknown variable {sahrd} (valid: "
                 "{shard} {peer} {peer_short} {topic} {intent} {label:NAME} {attr:NAME})");
    expect_error("{" BASE_SINKS ", \"routes\": [{\"sinks\": [{\"sink\": \"kafka\", "
                 "\"key\": \"{attr:partition}\"}]}]}",
                 "t.json: routes[0].sinks[0].key: unknown attribute {attr:partition} (valid: "
                 "kafka_topic, kafka_partition, redis_prefix, webhook_endpoint)");
    expect_error("{" BASE_SINKS ", \"routes\": [{\"sinks\": [{\"sink\": \"kafka\", "
                 "\"key\": \"{peer\"}]}]}",
                 "t.json: routes[0].sinks[0].key: unterminated '{' at offset 0 (write {{ for a "
                 "literal brace)");
}

static void test_bad_glob(void **state)
{
    (void)state;
    expect_error("{" BASE_SINKS ", \"routes\": [{\"match\": {\"topic\": \"fleet.[ab\"}, "
                 "\"sinks\": [{\"sink\": \"archive\"}]}]}",
                 "t.json: routes[0].match.topic: bad topic pattern \"fleet.[ab\": unterminated "
                 "'[' at offset 6 (expected ']')");
    expect_error("{" BASE_SINKS ", \"routes\": [{\"match\": {\"topic\": \"a b\"}, "
                 "\"sinks\": [{\"sink\": \"archive\"}]}]}",
                 "t.json: routes[0].match.topic: bad topic pattern \"a b\": invalid character "
                 "' ' at offset 1");
    expect_error("{" BASE_SINKS ", \"routes\": [{\"match\": {\"shard\": \"nope\"}, "
                 "\"sinks\": [{\"sink\": \"archive\"}]}], \"shards\": {\"x\": {}, \"y\": {}}}",
                 "t.json: routes[0].match.shard: unknown shard \"nope\" (defined: x, y)");
}

static void test_admin_non_loopback_without_token(void **state)
{
    (void)state;
    expect_error("{" BASE_SINKS ", " BASE_ROUTES ", \"admin\": {\"listen\": \"0.0.0.0:7401\"}}",
                 "t.json: admin.listen: \"0.0.0.0:7401\" is not a loopback address and no admin "
                 "token is configured (set admin.token_file or admin.token_env, or listen on "
                 "127.0.0.1)");
    unsetenv("TCFG_TOKEN");
    expect_error("{" BASE_SINKS ", " BASE_ROUTES ", \"admin\": {\"listen\": \"[::]:7401\", "
                 "\"token_env\": \"TCFG_TOKEN\"}}",
                 "t.json: admin.token_env: TCFG_TOKEN is not set and there is no "
                 "admin.token_file: the admin API on \"[::]:7401\" would have no token");
    setenv("TCFG_TOKEN", "s3cret-token-value", 1);
    gw_config *cfg = parse_ok("{" BASE_SINKS ", " BASE_ROUTES
                              ", \"admin\": {\"listen\": \"[::]:7401\", \"token_env\": "
                              "\"TCFG_TOKEN\"}}");
    assert_false(gw_config_admin(cfg)->listen_loopback);
    gw_config_free(cfg);
    /* Loopback without a token is allowed (local use). */
    cfg = parse_ok("{" BASE_SINKS ", " BASE_ROUTES ", \"admin\": {\"listen\": \"[::1]:7401\"}}");
    assert_true(gw_config_admin(cfg)->listen_loopback);
    gw_config_free(cfg);
}

static void test_admin_token_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_config_XXXXXX", path[256], text[1024];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/admin.token", dir);

    /* Missing without token_create. */
    snprintf(text, sizeof(text),
             "{" BASE_SINKS ", " BASE_ROUTES ", \"admin\": {\"token_file\": \"%s\"}}", path);
    char expected[1024];
    snprintf(expected, sizeof(expected),
             "t.json: admin.token_file: %s does not exist (create it with mode 0600, or set "
             "\"token_create\": true)",
             path);
    expect_error(text, expected);
    /* Missing with token_create: the daemon creates it. */
    snprintf(text, sizeof(text),
             "{" BASE_SINKS ", " BASE_ROUTES ", \"admin\": {\"token_file\": \"%s\", "
             "\"token_create\": true, \"listen\": \"0.0.0.0:7401\"}}",
             path);
    gw_config *cfg = parse_ok(text);
    assert_true(gw_config_admin(cfg)->token_create);
    assert_string_equal(gw_config_admin(cfg)->token_file, path);
    gw_config_free(cfg);
    /* Present with a group-readable mode. */
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "tok\n", 4), 4);
    close(fd);
    assert_int_equal(chmod(path, 0640), 0);
    snprintf(expected, sizeof(expected),
             "t.json: admin.token_file: %s has mode 0640 (expected 0600: run chmod 600 %s)", path,
             path);
    expect_error(text, expected);
    assert_int_equal(chmod(path, 0600), 0);
    cfg = parse_ok(text);
    gw_config_free(cfg);
    /* token_create needs a file; TLS files go in pairs. */
    expect_error("{" BASE_SINKS ", " BASE_ROUTES ", \"admin\": {\"token_create\": true}}",
                 "t.json: admin.token_create: needs admin.token_file (the file to create)");
    expect_error("{" BASE_SINKS ", " BASE_ROUTES ", \"admin\": {\"tls_cert_file\": \"c.pem\"}}",
                 "t.json: admin.tls_key_file: tls_cert_file and tls_key_file go together (set "
                 "both, or neither for plain HTTP)");
    unlink(path);
    rmdir(dir);
}

static void test_bad_listen_address(void **state)
{
    (void)state;
    expect_error("{\"listen\": [\"127.0.0.1\"], " BASE_SINKS ", " BASE_ROUTES "}",
                 "t.json: listen[0]: address \"127.0.0.1\": expected HOST:PORT");
    expect_error("{\"listen\": [\"127.0.0.1:7400\", \"127.0.0.1:99999\"], " BASE_SINKS
                 ", " BASE_ROUTES "}",
                 "t.json: listen[1]: address \"127.0.0.1:99999\": port must be a number 0-65535");
    expect_error("{\"listen\": [\"::1:7400\"], " BASE_SINKS ", " BASE_ROUTES "}",
                 "t.json: listen[0]: address \"::1:7400\": IPv6 addresses need brackets, e.g. "
                 "\"[::1]:7400\"");
    expect_error("{\"listen\": [\"127.0.0.1:7400\", \"127.0.0.1:7400\"], " BASE_SINKS
                 ", " BASE_ROUTES "}",
                 "t.json: listen[1]: address \"127.0.0.1:7400\" is listed twice (also listen[0])");
    expect_error("{\"listen\": [], " BASE_SINKS ", " BASE_ROUTES "}",
                 "t.json: listen: expected an array of 1..16 \"HOST:PORT\" addresses, got an "
                 "array");
    expect_error("{" BASE_SINKS ", " BASE_ROUTES ", \"admin\": {\"listen\": \"localhost\"}}",
                 "t.json: admin.listen: address \"localhost\": expected HOST:PORT");
}

static void test_unknown_sink_type(void **state)
{
    (void)state;
    char expected[512];
    snprintf(expected, sizeof(expected),
             "t.json: sinks.archive.type: unknown sink type \"fiel\" (known: %s)",
             gw_connector_types());
    expect_error("{\"sinks\": {\"archive\": {\"type\": \"fiel\", \"path\": \"x\"}}, " BASE_ROUTES
                 "}",
                 expected);
    /* Type-specific keys are the connector's: its message is passed through, naming the path. */
    gw_config *cfg = (gw_config *)1;
    const char *text =
        "{\"sinks\": {\"archive\": {\"type\": \"null\", \"colour\": 1}}, " BASE_ROUTES "}";
    assert_int_equal(gw_config_parse_text(text, strlen(text), "t.json", &cfg, err, sizeof(err)),
                     ITR_ERR_INVALID);
    assert_null(cfg);
    assert_non_null(strstr(err, "t.json: sinks.archive"));
    assert_non_null(strstr(err, "colour"));
    expect_error("{\"sinks\": {\"bad name\": {\"type\": \"null\"}}, " BASE_ROUTES "}",
                 "t.json: sinks[\"bad name\"]: invalid sink name (expected 1..64 characters of "
                 "[A-Za-z0-9_-])");
}

/* ---- beyond single mistakes ---- */

static void test_default_shard(void **state)
{
    (void)state;
    expect_error("{" BASE_SINKS ", " BASE_ROUTES ", \"unknown_peers\": \"admit\"}",
                 "t.json: default_shard: shard \"default\" is not defined in shards "
                 "(unknown_peers is \"admit\": unlisted peers go to it)");
    expect_error("{" BASE_SINKS ", " BASE_ROUTES ", \"unknown_peers\": \"open\"}",
                 "t.json: unknown_peers: expected \"reject\" | \"admit\", got \"open\"");
    gw_config *cfg = parse_ok("{" BASE_SINKS ", " BASE_ROUTES
                              ", \"unknown_peers\": \"admit\", \"shards\": {\"default\": {}}}");
    assert_int_equal(gw_config_unknown_peers(cfg), GW_UNKNOWN_ADMIT);
    assert_string_equal(gw_config_default_shard(cfg), "default");
    gw_config_free(cfg);
    cfg = parse_ok("{" BASE_SINKS ", " BASE_ROUTES "}");
    assert_int_equal(gw_config_unknown_peers(cfg), GW_UNKNOWN_REJECT);
    assert_null(gw_config_default_shard(cfg));
    gw_config_free(cfg);
}

static void test_defaults_and_accessors(void **state)
{
    (void)state;
    gw_config *cfg = parse_ok("{" BASE_SINKS ", " BASE_ROUTES "}");
    const gw_transport_config *t = gw_config_transport(cfg);
    const gw_admin_config *a = gw_config_admin(cfg);
    size_t n;

    assert_string_equal(gw_config_origin(cfg), "t.json");
    assert_int_equal(gw_config_listen_count(cfg), 1);
    assert_string_equal(gw_config_listen(cfg, 0), "127.0.0.1:7400");
    assert_int_equal(gw_config_listen_addr(cfg, 0)->u.sa.sa_family, AF_INET);
    assert_null(gw_config_listen(cfg, 1));
    assert_string_equal(gw_config_key_file(cfg), "data/gateway.key");
    assert_int_equal(gw_config_workers(cfg), 1);
    assert_int_equal(gw_config_log(cfg)->format, GW_LOG_LOGFMT);
    assert_int_equal(gw_config_log(cfg)->level, GW_LOG_INFO);
    assert_int_equal(gw_config_log(cfg)->security_interval_ns, 60000000000ull);
    assert_int_equal(t->settings.cookie_mode, ITR_COOKIE_UNDER_LOAD);
    assert_int_equal(t->settings.cookie_load_threshold, 50);
    assert_int_equal(t->settings.max_handshakes_in_flight, 100);
    assert_int_equal(t->settings.max_handshakes_per_ip, 5);
    assert_int_equal(t->settings.handshake_timeout_ns, 5000000000ull);
    assert_int_equal(t->settings.idle_timeout_ns, 60000000000ull);
    assert_int_equal(t->settings.keepalive_ns, 10000000000ull);
    assert_int_equal(t->settings.rekey_after_ns, 120000000000ull);
    assert_int_equal(t->settings.reject_after_ns, 180000000000ull);
    assert_int_equal(t->settings.rate_limit_pps, 10000);
    assert_int_equal(t->settings.rate_limit_burst, 500);
    assert_int_equal(t->settings.strike_limit, 10);
    assert_int_equal(t->settings.strike_window_ns, 5000000000ull);
    assert_int_equal(t->settings.max_peers, 65536);
    assert_int_equal(t->settings.max_packet, 2048);
    assert_int_equal(t->settings.reorder_max_bytes, 65536);
    assert_int_equal(t->settings.accept_handshakes, 1);
    assert_int_equal(t->socket_receive_buffer_bytes, 4194304);
    assert_int_equal(t->socket_send_buffer_bytes, 4194304);
    assert_int_equal(t->batch_size, 64);
    assert_int_equal(t->receive_coalesce_us, 50);
    assert_int_equal(t->udp_gso, 1);
    assert_int_equal(t->udp_gro, GW_GRO_AUTO);
    assert_int_equal(gw_config_message_pool_bytes(cfg), 64ull << 20);
    assert_int_equal(gw_config_drain_timeout_ns(cfg), 10000000000ull);
    assert_true(a->enabled);
    assert_string_equal(a->listen, "127.0.0.1:7401");
    assert_true(a->listen_loopback);
    assert_null(a->token_file);
    assert_null(a->token_env);
    assert_int_equal(a->open_endpoint_count, 3);
    assert_string_equal(a->open_endpoints[2], "/metrics");
    assert_string_equal(a->state_file, "data/state.json");
    assert_int_equal(a->max_body_bytes, 1048576);
    assert_int_equal(a->connection_limit, 64);
    assert_int_equal(a->timeout_ns, 10000000000ull);
    assert_int_equal(a->threads, 2);

    const gw_sink_spec *s = gw_config_sinks(cfg, &n);
    assert_int_equal(n, 2);
    assert_int_equal(gw_config_sink_count(cfg), 2);
    assert_string_equal(s[0].name, "kafka");
    assert_string_equal(s[1].name, "archive");
    assert_string_equal(s[1].type, "null");
    assert_int_equal(s[1].required, 0);
    assert_int_equal(s[1].max_inflight_bytes, GW_SINK_DEFAULT_MAX_INFLIGHT_BYTES);
    assert_int_equal(s[1].queue_messages, GW_SINK_DEFAULT_QUEUE_MESSAGES);
    assert_ptr_equal(s[1].conf, cJSON_GetObjectItem(
                                    cJSON_GetObjectItem(gw_config_json(cfg), "sinks"), "archive"));
    assert_int_equal(gw_config_sink_index(cfg, "archive"), 1);
    assert_int_equal(gw_config_sink_index(cfg, "nope"), -1);
    assert_string_equal(gw_config_sink_names(cfg)[0], "kafka");
    assert_true(cJSON_IsObject(gw_config_shards_doc(cfg)));
    assert_null(gw_config_shards_doc(cfg)->child);
    assert_non_null(gw_config_routes_doc(cfg));
    assert_int_equal(gw_shards_count(gw_config_shards(cfg)), 0);
    assert_int_equal(gw_router_route_count(gw_config_router(cfg)), 1);
    gw_config_free(cfg);

    /* Explicit values. */
    cfg =
        parse_ok("{\"_comment\": \"x\", \"listen\": [\"[::1]:0\", \"127.0.0.1:0\"], \"workers\": 4,"
                 "\"log\": {\"format\": \"json\", \"level\": \"debug\", "
                 "\"security_interval_seconds\": 0.5},"
                 "\"transport\": {\"cookie_mode\": \"always\", \"rekey_interval_seconds\": 30,"
                 "\"idle_timeout_seconds\": 2.5, \"keepalive_seconds\": 0.5, "
                 "\"max_packet_bytes\": 1400, \"socket_receive_buffer_bytes\": 0},"
                 "\"limits\": {\"message_pool_bytes\": 1048576}, \"drain_timeout_seconds\": 0,"
                 "\"sinks\": {\"archive\": {\"type\": \"null\", \"required\": true, "
                 "\"max_inflight_bytes\": 1000, \"queue_messages\": 10}}, " BASE_ROUTES ","
                 "\"admin\": {\"enabled\": false, \"state_file\": null, "
                 "\"open_endpoints\": [\"/healthz\"]}}");
    t = gw_config_transport(cfg);
    assert_int_equal(gw_config_listen_count(cfg), 2);
    assert_int_equal(gw_config_listen_addr(cfg, 0)->u.sa.sa_family, AF_INET6);
    assert_int_equal(gw_config_workers(cfg), 4);
    assert_int_equal(gw_config_log(cfg)->format, GW_LOG_JSON);
    assert_int_equal(gw_config_log(cfg)->level, GW_LOG_DEBUG);
    assert_int_equal(gw_config_log(cfg)->security_interval_ns, 500000000ull);
    assert_int_equal(t->settings.cookie_mode, ITR_COOKIE_ALWAYS);
    assert_int_equal(t->settings.rekey_after_ns, 30000000000ull);
    assert_int_equal(t->settings.reject_after_ns, 90000000000ull);
    assert_int_equal(t->settings.idle_timeout_ns, 2500000000ull);
    assert_int_equal(t->settings.max_packet, 1400);
    assert_int_equal(t->socket_receive_buffer_bytes, 0);
    assert_int_equal(gw_config_message_pool_bytes(cfg), 1048576);
    assert_int_equal(gw_config_drain_timeout_ns(cfg), 0);
    s = gw_config_sinks(cfg, &n);
    assert_int_equal(s[0].required, 1);
    assert_int_equal(s[0].max_inflight_bytes, 1000);
    assert_int_equal(s[0].queue_messages, 10);
    assert_null(gw_config_admin(cfg)->state_file);
    assert_int_equal(gw_config_admin(cfg)->open_endpoint_count, 1);
    gw_config_free(cfg);
    gw_config_free(NULL);
}

static void test_build_routing_request_body(void **state)
{
    (void)state;
    char field[128];
    gw_shards *shards;
    gw_router *router;
    gw_config *cfg = parse_ok("{" BASE_SINKS ", " BASE_ROUTES ", \"unknown_peers\": \"admit\", "
                              "\"shards\": {\"default\": {}}}");

    cJSON *doc = cJSON_Parse("{\"default\": {}, \"a\": {\"peers\": [\"nothex\"]}}");
    assert_int_equal(gw_config_build_routing(cfg, doc, "request body", NULL, NULL, &shards, &router,
                                             err, sizeof(err), field, sizeof(field)),
                     ITR_ERR_INVALID);
    assert_string_equal(err, "request body: a.peers[0]: expected a peer key of 64 hex digits, got "
                             "\"nothex\"");
    assert_string_equal(field, "a.peers[0]");
    cJSON_Delete(doc);

    /* Removing the default shard is refused while unknown peers are admitted to it. */
    doc = cJSON_Parse("{\"other\": {}}");
    assert_int_equal(gw_config_build_routing(cfg, doc, "request body", NULL, NULL, &shards, &router,
                                             err, sizeof(err), field, sizeof(field)),
                     ITR_ERR_INVALID);
    assert_string_equal(err, "request body: shard \"default\" is missing: it is the default_shard "
                             "of t.json (unknown peers are admitted to it)");
    cJSON_Delete(doc);

    /* Routes from a request body, against the config's sinks. */
    doc = cJSON_Parse("[{\"sinks\": [{\"sink\": \"kafka\"}]}, {\"sinks\": [{\"sink\": \"x\"}]}]");
    assert_int_equal(gw_config_build_routing(cfg, NULL, NULL, doc, "request body", &shards, &router,
                                             err, sizeof(err), field, sizeof(field)),
                     ITR_ERR_INVALID);
    assert_string_equal(err, "request body: [1].sinks[0].sink: unknown sink \"x\" (defined: "
                             "kafka, archive)");
    assert_string_equal(field, "[1].sinks[0].sink");
    cJSON_Delete(doc);

    /* Copies of the file's own documents, named after the file, keep their paths in it. */
    doc = cJSON_Parse("{\"default\": {\"peers\": [\"x\"]}}");
    assert_int_equal(gw_config_build_routing(cfg, doc, gw_config_origin(cfg), NULL, NULL, &shards,
                                             &router, err, sizeof(err), field, sizeof(field)),
                     ITR_ERR_INVALID);
    assert_string_equal(err, "t.json: shards.default.peers[0]: expected a peer key of 64 hex "
                             "digits, got \"x\"");
    assert_string_equal(field, "shards.default.peers[0]");
    cJSON_Delete(doc);

    doc =
        cJSON_Parse("[{\"match\": {\"shard\": \"default\"}, \"sinks\": [{\"sink\": \"kafka\"}]}]");
    assert_int_equal(gw_config_build_routing(cfg, NULL, NULL, doc, "request body", &shards, &router,
                                             err, sizeof(err), field, sizeof(field)),
                     ITR_OK);
    assert_int_equal(gw_router_route_count(router), 1);
    assert_ptr_equal(gw_router_shards(router), shards);
    gw_router_free(router);
    gw_shards_free(shards);
    cJSON_Delete(doc);
    gw_config_free(cfg);
}

static void test_load_file_errors(void **state)
{
    (void)state;
    gw_config *cfg = (gw_config *)1;
    assert_int_equal(gw_config_load("/nonexistent/gw.json", &cfg, err, sizeof(err)), ITR_ERR_IO);
    assert_null(cfg);
    assert_string_equal(err, "/nonexistent/gw.json: cannot read: No such file or directory");
    assert_int_equal(gw_config_load("/tmp", &cfg, err, sizeof(err)), ITR_ERR_INVALID);
    assert_string_equal(err, "/tmp: not a regular file");
}

/* Every shipped config validates (with the variables the production example requires). */
static int load_dir(const char *dir, unsigned *count)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int failures = 0;
    assert_non_null(d);
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        char path[1024];
        gw_config *cfg;
        if (n < 6 || strcmp(e->d_name + n - 5, ".json") != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (gw_config_load(path, &cfg, err, sizeof(err)) != ITR_OK) {
            print_error("%s\n", err);
            failures++;
            continue;
        }
        (*count)++;
        gw_config_free(cfg);
    }
    closedir(d);
    return failures;
}

static void test_shipped_configs(void **state)
{
    (void)state;
    char tmp[] = "/tmp/test_config_data_XXXXXX";
    unsigned count = 0;
    assert_non_null(mkdtemp(tmp));
    setenv("INTENTRA_DATA_DIR", tmp, 1);
    setenv("KAFKA_SASL_PASSWORD", "not-a-real-password", 1);
    unsetenv("INTENTRA_ADMIN_TOKEN");
    int failures = load_dir(INTENTRA_SOURCE_DIR "/conf", &count) +
                   load_dir(INTENTRA_SOURCE_DIR "/conf/examples", &count);
    assert_int_equal(failures, 0);
    assert_true(count >= 5);

    /* The embedded default: nested defaults resolved from INTENTRA_DATA_DIR. */
    gw_config *cfg;
    char expect[256];
    unsetenv("INTENTRA_KEY_FILE");
    unsetenv("INTENTRA_LISTEN");
    assert_int_equal(
        gw_config_load(INTENTRA_SOURCE_DIR "/conf/gateway.json", &cfg, err, sizeof(err)), ITR_OK);
    snprintf(expect, sizeof(expect), "%s/gateway.key", tmp);
    assert_string_equal(gw_config_key_file(cfg), expect);
    assert_string_equal(gw_config_listen(cfg, 0), "127.0.0.1:7400");
    assert_int_equal(gw_config_unknown_peers(cfg), GW_UNKNOWN_ADMIT);
    assert_string_equal(gw_config_default_shard(cfg), "default");
    assert_true(gw_config_admin(cfg)->token_create);
    gw_config_free(cfg);
    setenv("INTENTRA_KEY_FILE", "/etc/k", 1);
    setenv("INTENTRA_LISTEN", "[::1]:9", 1);
    assert_int_equal(
        gw_config_load(INTENTRA_SOURCE_DIR "/conf/gateway.json", &cfg, err, sizeof(err)), ITR_OK);
    assert_string_equal(gw_config_key_file(cfg), "/etc/k");
    assert_string_equal(gw_config_listen(cfg, 0), "[::1]:9");
    gw_config_free(cfg);
    unsetenv("INTENTRA_KEY_FILE");
    unsetenv("INTENTRA_LISTEN");

    /* production.json insists on its secret. */
    unsetenv("KAFKA_SASL_PASSWORD");
    assert_int_equal(gw_config_load(INTENTRA_SOURCE_DIR "/conf/examples/production.json", &cfg, err,
                                    sizeof(err)),
                     ITR_ERR_INVALID);
    assert_non_null(strstr(err, "${KAFKA_SASL_PASSWORD}: set KAFKA_SASL_PASSWORD"));
    unsetenv("INTENTRA_DATA_DIR");
    rmdir(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_syntax_error_line_col),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_wrong_type),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_unset_variable),
        cmocka_unit_test(test_required_variable_message),
        cmocka_unit_test(test_dollar_escape_and_interpolation),
        cmocka_unit_test(test_unknown_sink_in_route),
        cmocka_unit_test(test_duplicate_peer_across_shards),
        cmocka_unit_test(test_bad_hex_key),
        cmocka_unit_test(test_bad_template_variable),
        cmocka_unit_test(test_bad_glob),
        cmocka_unit_test(test_admin_non_loopback_without_token),
        cmocka_unit_test(test_admin_token_file),
        cmocka_unit_test(test_bad_listen_address),
        cmocka_unit_test(test_unknown_sink_type),
        cmocka_unit_test(test_default_shard),
        cmocka_unit_test(test_defaults_and_accessors),
        cmocka_unit_test(test_build_routing_request_body),
        cmocka_unit_test(test_load_file_errors),
        cmocka_unit_test(test_shipped_configs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
