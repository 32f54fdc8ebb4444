/* fleet.h: the flags and helpers shared by the fleet tools (intentra-send, intentra-bench). */
#ifndef FLEET_H
#define FLEET_H

#include <stddef.h>
#include <stdint.h>

#include <intentra/intentra.h>

typedef struct fleet_opts {
    const char *gateway;     /* --gateway HOST:PORT */
    const char *gateway_key; /* --gateway-key HEX|FILE */
    const char *key_file;    /* --key FILE (NULL: ephemeral identity) */
    const char *topic;       /* --topic */
    itr_intent intent;       /* --intent reliable|realtime */
    itr_suite suite;         /* --suite aesgcm|chachapoly */
    int timeout_ms;          /* --timeout SECONDS */
    uint8_t gateway_pub[ITR_KEY_LEN];
    uint8_t own_priv[ITR_KEY_LEN];
} fleet_opts;

void fleet_opts_default(fleet_opts *o);
/* Try to consume argv[*i] (and its value) as a shared flag. Returns 1 if consumed, 0 if not a
 * shared flag, -1 on a bad value (message printed). */
int fleet_parse_flag(fleet_opts *o, int argc, char **argv, int *i);
/* Resolve keys (gateway key, own identity). Returns 0 or -1 (message printed). */
int fleet_resolve(fleet_opts *o, const char *prog);
/* Usage text of the shared flags. */
extern const char fleet_usage[];

#endif
