/* test_endpoint_util.h: shared harness of the endpoint tests: an endpoint with deterministic
 * identity attached to a memnet, recording every callback, plus helpers to connect sessions
 * and run the network until a condition holds. */
#ifndef TEST_ENDPOINT_UTIL_H
#define TEST_ENDPOINT_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <intentra/endpoint.h>

#include "memnet.h"

#define MS(x)  ((uint64_t)(x)*1000000ull)
#define SEC(x) ((uint64_t)(x)*1000000000ull)

typedef struct tpeer tpeer;

struct tpeer {
    itr_endpoint *ep;
    memnet *net;
    int node;
    itr_addr addr;
    uint8_t priv[ITR_KEY_LEN], pub[ITR_KEY_LEN];
    itr_settings settings;

    /* recorded events */
    uint64_t opens, closes, messages, acked, writable;
    itr_peer_id last_open, last_closed;
    itr_close_reason last_close_reason;
    itr_peer_info last_open_info;
    uint64_t sec[ITR_SEC_EVENT_COUNT];
    uint64_t check_calls;
    int refuse; /* check_peer refuses everything */

    /* optional hooks of a test */
    int (*on_message)(tpeer *p, const itr_message *m);
    void (*on_acked)(tpeer *p, itr_peer_id peer, uint32_t seq);
    void (*on_writable)(tpeer *p, itr_peer_id peer);
    void (*on_close)(tpeer *p, itr_peer_id peer, itr_close_reason why);
    void *user;
};

/* Default settings with a deterministic static key derived from seed. */
void tsettings(itr_settings *s, uint8_t seed);
/* Create an endpoint with settings s (NULL: tsettings(seed)), attach it at 127.0.0.1:port. */
void tpeer_init(tpeer *p, memnet *n, uint16_t port, uint8_t seed, const itr_settings *s);
void tpeer_free(tpeer *p);
/* Re-create the endpoint of p (same key, same node) with settings s (NULL: previous). */
void tpeer_restart(tpeer *p, const itr_settings *s);

/* Connect c to srv with suite and run until both sides have opened (asserts). */
itr_peer_id tconnect(tpeer *c, tpeer *srv, itr_suite suite);
/* The responder's id of the session with c. */
itr_peer_id tpeer_find(tpeer *srv, const tpeer *c);

/* Run the network until *flag >= value, at most max_ns protocol time. Returns 1 if reached. */
int trun_until_u64(memnet *n, const uint64_t *flag, uint64_t value, uint64_t max_ns);

uint64_t tstat_drop(const tpeer *p, itr_drop_reason r);

/* A handshake message 1 for a responder with static key server_pub: initiator id I,
 * ephemeral e, cookie (NULL: zeros), valid mac1. */
void tmsg1(uint8_t out[128], const uint8_t server_pub[ITR_KEY_LEN], uint32_t initiator_id,
           const uint8_t e[32], const uint8_t *cookie);
void tstats(const tpeer *p, itr_stats *st);

#endif
