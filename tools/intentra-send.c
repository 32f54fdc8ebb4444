/* intentra-send: send one message per argument, or one per stdin line, to a gateway.
 * Reliable messages are waited for: the exit status says whether every one was acknowledged
 * end to end (durable in every sink on its route). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <intentra/intentra.h>

#include "fleet.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: intentra-send [flags] [MESSAGE...]\n"
            "Sends each MESSAGE (or, with none, each line of standard input) to the gateway.\n"
            "Exit status: 0 all sent (Reliable: all acknowledged), 1 failure, 2 usage.\n\n"
            "flags:\n%s"
            "  --help, --version\n",
            fleet_usage);
}

static int send_one(itr_client *c, const fleet_opts *o, const char *msg, size_t len,
                    unsigned long *sent)
{
    int rc = itr_client_send(c, o->intent, o->topic, msg, len, o->timeout_ms, NULL);
    if (rc != ITR_OK) {
        fprintf(stderr, "intentra-send: send: %s\n", itr_strerror(rc));
        return -1;
    }
    (*sent)++;
    return 0;
}

int main(int argc, char **argv)
{
    fleet_opts o;
    itr_client_options co;
    itr_client *c = NULL;
    char err[256];
    int first_msg = argc, status = 1, rc;
    unsigned long sent = 0;
    char *line = NULL;
    size_t cap = 0;

    fleet_opts_default(&o);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(argv[i], "--version")) {
            printf("intentra-send %s\n", INTENTRA_VERSION);
            return 0;
        }
        if (!strcmp(argv[i], "--")) {
            first_msg = i + 1;
            break;
        }
        rc = fleet_parse_flag(&o, argc, argv, &i);
        if (rc < 0)
            return 2;
        if (rc == 0) {
            if (argv[i][0] == '-' && argv[i][1] == '-') {
                fprintf(stderr, "intentra-send: unknown flag %s (see --help)\n", argv[i]);
                return 2;
            }
            first_msg = i;
            break;
        }
    }
    if (fleet_resolve(&o, "intentra-send") < 0)
        return 1;

    memset(&co, 0, sizeof(co));
    co.gateway = o.gateway;
    memcpy(co.gateway_key, o.gateway_pub, ITR_KEY_LEN);
    memcpy(co.static_private, o.own_priv, ITR_KEY_LEN);
    co.suite = o.suite;
    if (itr_client_new(&c, &co, err, sizeof(err)) != ITR_OK) {
        fprintf(stderr, "intentra-send: %s\n", err);
        goto out;
    }
    if (itr_client_connect(c, o.timeout_ms, err, sizeof(err)) != ITR_OK) {
        fprintf(stderr, "intentra-send: connect %s: %s\n", o.gateway, err);
        goto out;
    }
    if (first_msg < argc) {
        for (int i = first_msg; i < argc; i++)
            if (send_one(c, &o, argv[i], strlen(argv[i]), &sent) < 0)
                goto out;
    } else {
        ssize_t n;
        while ((n = getline(&line, &cap, stdin)) >= 0) {
            if (n > 0 && line[n - 1] == '\n')
                n--;
            if (send_one(c, &o, line, (size_t)n, &sent) < 0)
                goto out;
        }
    }
    if (o.intent == ITR_INTENT_RELIABLE) {
        rc = itr_client_drain(c, o.timeout_ms);
        if (rc != ITR_OK) {
            fprintf(stderr, "intentra-send: %lu sent, not all acknowledged within %d ms: %s\n",
                    sent, o.timeout_ms, itr_strerror(rc));
            goto out;
        }
        fprintf(stderr, "intentra-send: %lu sent, %lu acknowledged\n", sent, sent);
    } else {
        /* Realtime has no acknowledgement; give the transmit ring a moment to empty. */
        for (int i = 0; i < 10 && itr_endpoint_tx_pending(itr_client_endpoint(c)); i++)
            itr_client_poll(c, 10);
        fprintf(stderr, "intentra-send: %lu sent (realtime: not acknowledged)\n", sent);
    }
    status = 0;
out:
    free(line);
    if (c) {
        itr_client_close(c);
        itr_client_free(c);
    }
    itr_wipe(o.own_priv, sizeof(o.own_priv));
    return status;
}
