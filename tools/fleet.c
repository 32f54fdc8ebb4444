/* fleet.c: shared flag parsing and key handling for the fleet tools. */
#define _GNU_SOURCE
#include "fleet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char fleet_usage[] =
    "  --gateway HOST:PORT      gateway address (default 127.0.0.1:7400)\n"
    "  --gateway-key HEX|FILE   gateway public key: 64 hex digits, or the gateway's key file\n"
    "                           (default data/gateway.key)\n"
    "  --key FILE               own identity; created (0600) if absent (default: a fresh\n"
    "                           identity for this run only)\n"
    "  --topic NAME             topic (default \"test\")\n"
    "  --intent reliable|realtime  delivery intent (default reliable)\n"
    "  --suite aesgcm|chachapoly   cipher suite (default aesgcm)\n"
    "  --timeout SECONDS        connect / acknowledgement timeout (default 10)\n";

void fleet_opts_default(fleet_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->gateway = "127.0.0.1:7400";
    o->gateway_key = "data/gateway.key";
    o->topic = "test";
    o->intent = ITR_INTENT_RELIABLE;
    o->suite = ITR_SUITE_AESGCM;
    o->timeout_ms = 10000;
}

static const char *flag_value(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "%s: missing value\n", argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

int fleet_parse_flag(fleet_opts *o, int argc, char **argv, int *i)
{
    const char *f = argv[*i];
    const char *v;

    if (strcmp(f, "--gateway") && strcmp(f, "--gateway-key") && strcmp(f, "--key") &&
        strcmp(f, "--topic") && strcmp(f, "--intent") && strcmp(f, "--suite") &&
        strcmp(f, "--timeout"))
        return 0;
    if (!(v = flag_value(argc, argv, i)))
        return -1;
    if (!strcmp(f, "--gateway")) {
        o->gateway = v;
    } else if (!strcmp(f, "--gateway-key")) {
        o->gateway_key = v;
    } else if (!strcmp(f, "--key")) {
        o->key_file = v;
    } else if (!strcmp(f, "--topic")) {
        if (!itr_topic_valid(v, strlen(v))) {
            fprintf(stderr, "--topic %s: topics are 1..%d characters of [A-Za-z0-9._:/-]\n", v,
                    ITR_MAX_TOPIC);
            return -1;
        }
        o->topic = v;
    } else if (!strcmp(f, "--intent")) {
        if (!strcmp(v, "reliable")) {
            o->intent = ITR_INTENT_RELIABLE;
        } else if (!strcmp(v, "realtime")) {
            o->intent = ITR_INTENT_REALTIME;
        } else {
            fprintf(stderr, "--intent %s: expected reliable or realtime\n", v);
            return -1;
        }
    } else if (!strcmp(f, "--suite")) {
        if (!strcmp(v, "aesgcm")) {
            o->suite = ITR_SUITE_AESGCM;
        } else if (!strcmp(v, "chachapoly")) {
            o->suite = ITR_SUITE_CHACHAPOLY;
        } else {
            fprintf(stderr, "--suite %s: expected aesgcm or chachapoly\n", v);
            return -1;
        }
    } else {
        char *end;
        double s = strtod(v, &end);
        if (*end || s <= 0 || s > 86400) {
            fprintf(stderr, "--timeout %s: expected seconds, > 0\n", v);
            return -1;
        }
        o->timeout_ms = (int)(s * 1000);
    }
    return 1;
}

int fleet_resolve(fleet_opts *o, const char *prog)
{
    char err[256];
    int created = 0;

    if (itr_key_parse_public(o->gateway_key, o->gateway_pub, err, sizeof(err)) != ITR_OK) {
        fprintf(stderr, "%s: --gateway-key: %s\n", prog, err);
        return -1;
    }
    if (!o->key_file) {
        uint8_t pub[ITR_KEY_LEN];
        if (itr_key_generate(o->own_priv, pub) != ITR_OK) {
            fprintf(stderr, "%s: cannot generate a key pair\n", prog);
            return -1;
        }
        return 0;
    }
    if (itr_keyfile_load_or_create(o->key_file, o->own_priv, &created, err, sizeof(err)) !=
        ITR_OK) {
        fprintf(stderr, "%s: --key: %s\n", prog, err);
        return -1;
    }
    if (created) {
        uint8_t pub[ITR_KEY_LEN];
        char hex[2 * ITR_KEY_LEN + 1];
        itr_key_public(o->own_priv, pub);
        itr_hex_encode(hex, pub, sizeof(pub));
        fprintf(stderr, "%s: created identity %s (public key %s)\n", prog, o->key_file, hex);
    }
    return 0;
}
