/* fake_control.h: an in-memory gw_gateway for the admin API's unit tests.
 *
 * tests/lib/fake_control.c implements control.h (health, peers, sinks, counters), the
 * document half of gateway.h (gw_gateway_apply_docs and the *_doc getters, with a small
 * validator standing in for the config module's builders), gw_gateway_state, gw_publish
 * (publish.h) and the sink-set status functions of sinks.h, so gateway/admin.c,
 * gateway/metrics.c and gateway/state.c can be tested over real HTTP without workers, sockets
 * or sinks. Link it only into those tests (it defines the daemon's symbols).
 */
#ifndef FAKE_CONTROL_H
#define FAKE_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "control.h"
#include "publish.h"
#include "state.h"

/* A fake gateway with sinks "archive" (file, required) and "kafka" (kafka, optional),
 * shards {"default": {}} and routes [{"name": "all", ...archive}], state in state_path
 * (NULL: memory only). Aborts on allocation failure (tests only). */
gw_gateway *fake_gateway_new(const char *state_path);
void fake_gateway_free(gw_gateway *g);

void fake_set_health(gw_gateway *g, int healthy, int ready, const char *why);
/* Add a live session: key from a seed byte (all 32 bytes = seed), in `shard`. */
void fake_add_peer(gw_gateway *g, uint8_t seed, const char *shard);
size_t fake_peer_count(gw_gateway *g);
/* gw_ctl_peers answers ITR_ERR_WOULDBLOCK while set. */
void fake_set_peers_unavailable(gw_gateway *g, int on);

/* How gw_publish behaves: sync_rc != ITR_OK is returned at once (done not called); else done
 * is called after delay_ms from another thread with `status` and targeted = sent = acked =
 * n_targets (failed = 0 unless status != ITR_OK). hold: never call done until
 * fake_publish_release (tests of a stopping admin server). */
void fake_set_publish(gw_gateway *g, int sync_rc, int status, uint32_t n_targets, uint32_t delay_ms,
                      int hold);
void fake_publish_release(gw_gateway *g);
/* The last request gw_publish accepted (copies). */
typedef struct fake_publish_seen {
    int count;
    gw_target_kind kind;
    char target[160];
    char topic[160];
    uint8_t body[4096];
    size_t body_len;
    itr_intent intent;
    uint8_t priority;
    uint32_t timeout_ms;
    int has_done;
} fake_publish_seen;
void fake_last_publish(gw_gateway *g, fake_publish_seen *out);

/* gw_gateway_apply_docs calls so far (successful ones), and forcing the next one to fail. */
int fake_apply_count(gw_gateway *g);
void fake_fail_next_apply(gw_gateway *g);

/* Replace the live shards document behind the state's back (like a SIGHUP reload). */
void fake_set_live_shards(gw_gateway *g, const cJSON *shards);

#endif
