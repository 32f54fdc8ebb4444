/* itr_client.c: the fleet side in a few calls (client.h): one loop, one UDP socket, one
 * initiator endpoint and its driver, one session to a gateway whose key is pinned.
 *
 * The socket is connect()ed to the gateway: the kernel then drops datagrams from anyone else
 * before they cost a lookup, and reports ICMP "port unreachable" as ECONNREFUSED, which is how
 * connect tells "refused" (nothing listens there) from "timeout" (nobody answers).
 *
 * Received Reliable messages are acknowledged after on_message returns ITR_OK, at the end of
 * the receive batch (the driver's batch hook), so one ACK covers a whole batch. Sends use UDP
 * GSO (itr_driver_set_offload): what is queued between two flushes leaves in one message.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sodium.h>

#include <intentra/client.h>

#include "itr_io.h"

#define CLIENT_BATCH    64
#define CLIENT_CLOSE_MS 50 /* how long close waits for its CLOSE datagram to leave */
#define NS_PER_MS       1000000ull

struct itr_client {
    itr_loop *loop;
    itr_endpoint *ep;
    itr_driver *drv;
    int fd;
    itr_addr gw;
    char gw_str[64];
    uint8_t gateway_key[ITR_KEY_LEN];
    itr_suite suite;
    int (*on_message)(void *user, const itr_message *msg);
    void (*on_acked)(void *user, uint32_t seq);
    void *user;
    /* The current session (or handshake in progress); 0 when there is none. */
    itr_peer_id peer;
    int established;
    int closed; /* peer_close fired for `peer` */
    itr_close_reason close_why;
    int pinned_mismatch;
    int sock_err; /* errno reported by the driver for our socket (ECONNREFUSED, ...) */
    /* Reliable messages taken by on_message, acknowledged at the end of the batch. At most
     * a window's worth can be delivered and unacknowledged at once. */
    uint32_t ackq[ITR_RELIABLE_WINDOW];
    size_t ackq_len;
};

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt,
                                                          ...)
{
    va_list ap;
    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- endpoint and driver callbacks ---- */

static void cb_peer_open(void *user, const itr_peer_info *info)
{
    itr_client *c = user;
    if (info->id == c->peer)
        c->established = 1;
}

static void cb_peer_close(void *user, itr_peer_id peer, itr_close_reason why)
{
    itr_client *c = user;
    if (peer != c->peer)
        return;
    c->closed = 1;
    c->established = 0;
    c->close_why = why;
    c->ackq_len = 0;
}

static int cb_message(void *user, const itr_message *msg)
{
    itr_client *c = user;
    int reliable = msg->intent == ITR_INTENT_RELIABLE;
    /* Check for room before the application sees the message: refusing it afterwards would
     * deliver it twice. The endpoint never delivers more than a window unacknowledged, so
     * this is a safety net. */
    if (reliable && c->ackq_len == ITR_RELIABLE_WINDOW)
        return ITR_ERR_WOULDBLOCK;
    int rc = c->on_message ? c->on_message(c->user, msg) : ITR_OK;
    if (reliable && rc == ITR_OK)
        c->ackq[c->ackq_len++] = msg->seq;
    return rc;
}

static void cb_acked(void *user, itr_peer_id peer, uint32_t seq)
{
    itr_client *c = user;
    if (peer == c->peer && c->on_acked)
        c->on_acked(c->user, seq);
}

static void cb_security(void *user, itr_security_event ev, const itr_addr *from,
                        const uint8_t *static_key)
{
    itr_client *c = user;
    (void)from;
    (void)static_key;
    if (ev == ITR_SEC_PINNED_KEY)
        c->pinned_mismatch = 1;
}

static void flush_acks(itr_client *c, uint64_t now)
{
    for (size_t i = 0; i < c->ackq_len; i++)
        (void)itr_endpoint_ack(c->ep, c->peer, c->ackq[i], now);
    c->ackq_len = 0;
}

static void on_batch(void *arg, uint64_t now)
{
    flush_acks(arg, now);
}

static void on_sock_error(void *arg, uint32_t local, int err)
{
    itr_client *c = arg;
    (void)local;
    c->sock_err = err;
}

/* ---- helpers ---- */

static uint64_t deadline_after(int timeout_ms)
{
    return itr_now_ns() + (timeout_ms > 0 ? (uint64_t)timeout_ms * NS_PER_MS : 0);
}

/* Milliseconds left until deadline, rounded up; 0 when it has passed. */
static int ms_left(uint64_t deadline)
{
    uint64_t now = itr_now_ns();
    if (now >= deadline)
        return 0;
    uint64_t ms = (deadline - now + NS_PER_MS - 1) / NS_PER_MS;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* One loop iteration; acknowledgements queued outside a receive batch go out too. */
static int step(itr_client *c, int timeout_ms)
{
    int rc = itr_loop_run_once(c->loop, timeout_ms);
    if (c->ackq_len) {
        flush_acks(c, itr_now_ns());
        itr_driver_kick(c->drv);
    }
    return rc;
}

/* ---- public API ---- */

int itr_client_new(itr_client **out, const itr_client_options *o, char *err, size_t errlen)
{
    itr_settings set;
    itr_client *c = NULL;
    int rc = ITR_ERR_INVALID;

    if (!out || !o || !o->gateway) {
        set_err(err, errlen, "client options: gateway address missing");
        goto out;
    }
    rc = ITR_ERR_NOMEM;
    c = calloc(1, sizeof(*c));
    if (!c) {
        set_err(err, errlen, "out of memory");
        goto out;
    }
    c->fd = -1;
    rc = itr_addr_parse(&c->gw, o->gateway, err, errlen);
    if (rc != ITR_OK)
        goto err_free;
    itr_addr_format(&c->gw, c->gw_str, sizeof(c->gw_str));
    memcpy(c->gateway_key, o->gateway_key, ITR_KEY_LEN);
    c->suite = o->suite ? o->suite : ITR_SUITE_AESGCM;
    c->on_message = o->on_message;
    c->on_acked = o->on_acked;
    c->user = o->user;

    if (o->settings)
        set = *o->settings;
    else
        itr_settings_default(&set);
    memcpy(set.static_private, o->static_private, ITR_KEY_LEN);
    set.accept_handshakes = 0;

    rc = itr_loop_new(&c->loop);
    if (rc != ITR_OK) {
        set_err(err, errlen, "event loop: %s", strerror(errno));
        goto err_free;
    }
    /* An ephemeral port on the gateway's address family, connected to the gateway. */
    itr_addr local;
    memset(&local, 0, sizeof(local));
    local.u.sa.sa_family = c->gw.u.sa.sa_family;
    rc = itr_udp_open(&local, NULL, &c->fd);
    if (rc == ITR_OK && connect(c->fd, &c->gw.u.sa, itr_addr_len(&c->gw)) != 0)
        rc = ITR_ERR_IO;
    if (rc != ITR_OK) {
        set_err(err, errlen, "socket for %s: %s", c->gw_str, strerror(errno));
        goto err_loop;
    }
    static const itr_callbacks cbs = {
        .peer_open = cb_peer_open,
        .peer_close = cb_peer_close,
        .message = cb_message,
        .acked = cb_acked,
        .security = cb_security,
    };
    rc = itr_endpoint_new(&c->ep, &set, &cbs, c, itr_now_ns());
    if (rc != ITR_OK) {
        set_err(err, errlen, "endpoint: %s", itr_strerror(rc));
        goto err_sock;
    }
    rc = itr_driver_new(&c->drv, c->loop, c->ep, CLIENT_BATCH);
    /* A burst of sends to the gateway leaves as one GSO message (the driver falls back to
     * one by one where the kernel or the device cannot). */
    if (rc == ITR_OK)
        rc = itr_driver_set_offload(c->drv, ITR_DRIVER_GSO);
    if (rc == ITR_OK)
        rc = itr_driver_add_socket(c->drv, c->fd, NULL);
    if (rc != ITR_OK) {
        set_err(err, errlen, "driver: %s", itr_strerror(rc));
        goto err_ep;
    }
    itr_driver_set_batch_hook(c->drv, on_batch, c);
    itr_driver_set_error_hook(c->drv, on_sock_error, c);
    *out = c;
    c = NULL;
    rc = ITR_OK;
    goto out;

err_ep:
    itr_driver_free(c->drv);
    itr_endpoint_free(c->ep);
err_sock:
    close(c->fd);
err_loop:
    itr_loop_free(c->loop);
err_free:
    sodium_memzero(c, sizeof(*c));
    free(c);
out:
    sodium_memzero(&set, sizeof(set));
    return rc;
}

void itr_client_free(itr_client *c)
{
    if (!c)
        return;
    itr_client_close(c);
    itr_driver_free(c->drv);
    itr_endpoint_free(c->ep); /* wipes the static key */
    close(c->fd);
    itr_loop_free(c->loop);
    sodium_memzero(c, sizeof(*c));
    free(c);
}

/* Forget the current session or attempt without waiting for anything. */
static void drop_session(itr_client *c)
{
    if (c->peer && !c->closed)
        (void)itr_endpoint_close_peer(c->ep, c->peer, itr_now_ns());
    c->peer = 0;
    c->established = 0;
    c->closed = 0;
    c->ackq_len = 0;
}

int itr_client_connect(itr_client *c, int timeout_ms, char *err, size_t errlen)
{
    if (c->peer && c->established && !c->closed)
        return ITR_OK;
    drop_session(c);
    itr_driver_kick(c->drv);

    uint64_t deadline = deadline_after(timeout_ms);
    itr_stats before;
    itr_endpoint_stats(c->ep, &before);
    for (;;) {
        c->pinned_mismatch = 0;
        c->sock_err = 0;
        c->closed = 0;
        c->established = 0;
        int rc =
            itr_endpoint_connect(c->ep, &c->gw, c->gateway_key, c->suite, itr_now_ns(), &c->peer);
        if (rc != ITR_OK) {
            c->peer = 0;
            set_err(err, errlen, "connect to %s: %s", c->gw_str, itr_strerror(rc));
            return rc;
        }
        itr_driver_kick(c->drv);
        while (!c->established && !c->closed && !c->sock_err && ms_left(deadline) > 0) {
            if (step(c, ms_left(deadline)) < 0) {
                set_err(err, errlen, "connect to %s: event loop: %s", c->gw_str, strerror(errno));
                drop_session(c);
                return ITR_ERR_IO;
            }
        }
        if (c->established)
            return ITR_OK;
        if (c->pinned_mismatch || (c->closed && c->close_why == ITR_CLOSE_REFUSED)) {
            set_err(err, errlen,
                    "connect to %s: gateway key mismatch: the responder presented a static key "
                    "other than the pinned one",
                    c->gw_str);
            drop_session(c);
            return ITR_ERR_CLOSED;
        }
        if (c->sock_err) {
            set_err(err, errlen, "connect to %s: refused (%s): is the gateway running there?",
                    c->gw_str, strerror(c->sock_err));
            drop_session(c);
            return ITR_ERR_CLOSED;
        }
        /* The endpoint gave up on this attempt (its handshake_timeout) before our deadline:
         * start a fresh one. Anything else ends here. */
        if (!(c->closed && c->close_why == ITR_CLOSE_HANDSHAKE_TIMEOUT && ms_left(deadline) > 0))
            break;
        c->peer = 0;
    }
    itr_stats after;
    itr_endpoint_stats(c->ep, &after);
    if (c->closed && c->close_why != ITR_CLOSE_HANDSHAKE_TIMEOUT) {
        set_err(err, errlen, "connect to %s: session closed during the handshake (%s)", c->gw_str,
                itr_close_reason_name(c->close_why));
    } else if (after.packets_received > before.packets_received) {
        /* Something came back from the gateway, yet no session: it answered message 1 and
         * then dropped our message 3, which is what a key allowlist does. */
        set_err(err, errlen,
                "connect to %s: timeout after %d ms: the gateway answered but did not confirm "
                "the session (is this client's key admitted?)",
                c->gw_str, timeout_ms);
    } else {
        set_err(err, errlen,
                "connect to %s: timeout after %d ms: no answer from the gateway (is it running, "
                "and is the pinned key its key? a gateway ignores handshakes meant for another "
                "key)",
                c->gw_str, timeout_ms);
    }
    drop_session(c);
    itr_driver_kick(c->drv);
    return ITR_ERR_CLOSED;
}

int itr_client_send(itr_client *c, itr_intent intent, const char *topic, const void *body,
                    size_t len, int timeout_ms, uint32_t *seq_out)
{
    if (!topic)
        return ITR_ERR_INVALID;
    size_t topic_len = strlen(topic);
    uint64_t deadline = deadline_after(timeout_ms);
    int rc;
    for (;;) {
        rc = itr_endpoint_send(c->ep, c->peer, intent, 0, topic, topic_len, body, len, itr_now_ns(),
                               seq_out);
        if (rc != ITR_ERR_WOULDBLOCK)
            break;
        /* Full ring: sending it may be all that is needed. Full window or pool: run the
         * loop until something happens (the acknowledgements that fire the endpoint's
         * `writable`, a writable socket, a retransmission) and try again. */
        itr_driver_kick(c->drv);
        int left = ms_left(deadline);
        if (left == 0)
            break;
        if (step(c, left) < 0)
            return ITR_ERR_IO;
        if (c->closed)
            return ITR_ERR_CLOSED;
    }
    if (rc == ITR_OK)
        itr_driver_kick(c->drv);
    return rc;
}

int itr_client_poll(itr_client *c, int timeout_ms)
{
    return step(c, timeout_ms);
}

int itr_client_drain(itr_client *c, int timeout_ms)
{
    uint64_t deadline = deadline_after(timeout_ms);
    for (;;) {
        itr_peer_info info;
        if (!c->peer || c->closed || itr_endpoint_peer_info(c->ep, c->peer, &info) != ITR_OK)
            return ITR_ERR_CLOSED;
        itr_driver_kick(c->drv);
        if (info.unacked_out == 0 && itr_endpoint_tx_pending(c->ep) == 0)
            return ITR_OK;
        int left = ms_left(deadline);
        if (left == 0)
            return ITR_ERR_WOULDBLOCK;
        if (step(c, left) < 0)
            return ITR_ERR_IO;
    }
}

void itr_client_close(itr_client *c)
{
    if (!c->peer)
        return;
    drop_session(c);
    itr_driver_kick(c->drv);
    /* Give the CLOSE a moment to leave if the socket buffer was full. */
    uint64_t deadline = deadline_after(CLIENT_CLOSE_MS);
    while (itr_endpoint_tx_pending(c->ep) > 0 && ms_left(deadline) > 0)
        if (step(c, ms_left(deadline)) < 0)
            break;
}

itr_endpoint *itr_client_endpoint(itr_client *c)
{
    return c->ep;
}

itr_peer_id itr_client_peer(const itr_client *c)
{
    return c->established ? c->peer : 0;
}

itr_loop *itr_client_loop(itr_client *c)
{
    return c->loop;
}
