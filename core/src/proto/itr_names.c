/* itr_names.c: stable snake_case names of drop reasons, close reasons and security events.
 * They are metric label values (intentra_packets_dropped_total{reason="..."}) and log
 * fields, so they must match docs/PROTOCOL.md and never change once released. */
#include <intentra/endpoint.h>

static const char *const drop_names[ITR_DROP_REASON_COUNT] = {
    [ITR_DROP_TOO_SHORT] = "too_short",
    [ITR_DROP_TOO_LONG] = "too_long",
    [ITR_DROP_BAD_VERSION] = "bad_version",
    [ITR_DROP_BAD_TYPE] = "bad_type",
    [ITR_DROP_BAD_HEADER] = "bad_header",
    [ITR_DROP_UNKNOWN_CONN] = "unknown_conn",
    [ITR_DROP_RATE_LIMIT] = "rate_limit",
    [ITR_DROP_CRYPTO] = "crypto",
    [ITR_DROP_REPLAY] = "replay",
    [ITR_DROP_BAD_MAC1] = "bad_mac1",
    [ITR_DROP_BAD_COOKIE] = "bad_cookie",
    [ITR_DROP_COOKIE_REQUIRED] = "cookie_required",
    [ITR_DROP_HANDSHAKE_LIMIT] = "handshake_limit",
    [ITR_DROP_HANDSHAKE_PER_IP] = "handshake_per_ip",
    [ITR_DROP_HANDSHAKE_STATE] = "handshake_state",
    [ITR_DROP_REFUSED_KEY] = "refused_key",
    [ITR_DROP_PINNED_KEY] = "pinned_key",
    [ITR_DROP_PEERS_FULL] = "peers_full",
    [ITR_DROP_BAD_ENVELOPE] = "bad_envelope",
    [ITR_DROP_BAD_ACK] = "bad_ack",
    [ITR_DROP_WINDOW] = "window",
    [ITR_DROP_BAD_FRAME] = "bad_frame",
    [ITR_DROP_DUPLICATE] = "duplicate",
    [ITR_DROP_REORDER_FULL] = "reorder_full",
    [ITR_DROP_DEFERRED] = "deferred",
    [ITR_DROP_KEY_EXPIRED] = "key_expired",
    [ITR_DROP_TX_RING_FULL] = "tx_ring_full",
};

static const char *const close_names[ITR_CLOSE_REASON_COUNT] = {
    [ITR_CLOSE_LOCAL] = "local",
    [ITR_CLOSE_REMOTE] = "remote",
    [ITR_CLOSE_IDLE] = "idle",
    [ITR_CLOSE_STRIKES] = "strikes",
    [ITR_CLOSE_REPLACED] = "replaced",
    [ITR_CLOSE_HANDSHAKE_TIMEOUT] = "handshake_timeout",
    [ITR_CLOSE_KEY_EXPIRED] = "key_expired",
    [ITR_CLOSE_REFUSED] = "refused",
    [ITR_CLOSE_SHUTDOWN] = "shutdown",
};

static const char *const security_names[ITR_SEC_EVENT_COUNT] = {
    [ITR_SEC_REFUSED_KEY] = "refused_key",
    [ITR_SEC_PINNED_KEY] = "pinned_key",
    [ITR_SEC_BAD_COOKIE] = "bad_cookie",
    [ITR_SEC_BAD_MAC1] = "bad_mac1",
    [ITR_SEC_STRIKE] = "strike",
    [ITR_SEC_STRIKES_CLOSED] = "strikes_closed",
    [ITR_SEC_HANDSHAKE_FLOOD] = "handshake_flood",
};

const char *itr_drop_reason_name(itr_drop_reason r)
{
    if ((unsigned)r >= ITR_DROP_REASON_COUNT)
        return "unknown";
    return drop_names[r];
}

const char *itr_close_reason_name(itr_close_reason r)
{
    if ((unsigned)r >= ITR_CLOSE_REASON_COUNT)
        return "unknown";
    return close_names[r];
}

const char *itr_security_event_name(itr_security_event e)
{
    if ((unsigned)e >= ITR_SEC_EVENT_COUNT)
        return "unknown";
    return security_names[e];
}
