/* test_client.c: the client.h convenience API against an in-process responder (endpoint +
 * driver + its own loop on another thread): connect, send, drain, close and reconnect; the
 * three connect failures told apart (timeout, refused, pinned key mismatch) plus a key the
 * gateway does not admit; a Reliable send blocking on a full window until its timeout and
 * resuming when acknowledgements come; the reverse path with automatic acknowledgement. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <intentra/intentra.h>

#include "itr_session.h" /* test_connect_pinned_mismatch builds an impostor */

#define MS 1000000ull

/* ---- the responder: its endpoint is touched only on its own thread ---- */

struct responder {
    pthread_t th;
    itr_loop *loop;
    itr_endpoint *ep;
    itr_driver *drv;
    int fd;
    itr_addr addr;
    uint8_t pub[ITR_KEY_LEN];
    char addr_str[64];
    /* Loop thread only. */
    itr_peer_id peer;
    uint32_t rel_next;
    uint32_t ackq[ITR_RELIABLE_WINDOW];
    size_t ackq_len;
    uint32_t held[ITR_RELIABLE_WINDOW];
    size_t held_len;
    /* Set by the test thread. */
    atomic_int refuse_keys;
    atomic_int hold_acks;
    atomic_int send_cmd; /* ask the loop thread to send one Reliable "cmd" to the peer */
    /* Results, read by the test thread. */
    atomic_uint rel_received, rel_errors, rt_received, opens, closes_remote, reverse_acked;
    atomic_uint example_msgs; /* the README example's message */
    atomic_int send_rc;
};

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static int r_check_peer(void *user, const uint8_t key[ITR_KEY_LEN], const itr_addr *from)
{
    struct responder *r = user;
    (void)key;
    (void)from;
    return atomic_load(&r->refuse_keys);
}

static void r_open(void *user, const itr_peer_info *info)
{
    struct responder *r = user;
    r->peer = info->id;
    r->rel_next = 0; /* a new session restarts the stream */
    r->ackq_len = 0;
    r->held_len = 0;
    atomic_fetch_add(&r->opens, 1);
}

static void r_close(void *user, itr_peer_id peer, itr_close_reason why)
{
    struct responder *r = user;
    (void)peer;
    if (why == ITR_CLOSE_REMOTE)
        atomic_fetch_add(&r->closes_remote, 1);
}

static int r_message(void *user, const itr_message *m)
{
    struct responder *r = user;
    if (m->intent == ITR_INTENT_REALTIME) {
        atomic_fetch_add(&r->rt_received, 1);
        return ITR_OK;
    }
    if (m->topic_len == 17 && memcmp(m->topic, "telemetry.battery", 17) == 0 && m->seq == 0 &&
        m->body_len > 0 && m->body[0] == '{') {
        atomic_fetch_add(&r->example_msgs, 1);
        r->ackq[r->ackq_len++] = m->seq;
        return ITR_OK;
    }
    if (m->body_len != 4 || get_u32(m->body) != r->rel_next || m->seq != r->rel_next)
        atomic_fetch_add(&r->rel_errors, 1);
    r->rel_next++;
    atomic_fetch_add(&r->rel_received, 1);
    if (atomic_load(&r->hold_acks))
        r->held[r->held_len++] = m->seq;
    else
        r->ackq[r->ackq_len++] = m->seq;
    return ITR_OK;
}

static void r_acked(void *user, itr_peer_id peer, uint32_t seq)
{
    struct responder *r = user;
    (void)peer;
    (void)seq;
    atomic_fetch_add(&r->reverse_acked, 1);
}

static void r_batch(void *arg, uint64_t now)
{
    struct responder *r = arg;
    for (size_t i = 0; i < r->ackq_len; i++)
        (void)itr_endpoint_ack(r->ep, r->peer, r->ackq[i], now);
    r->ackq_len = 0;
}

/* Mailbox: the test thread changes a flag and wakes the loop. */
static void r_wake(void *arg)
{
    struct responder *r = arg;
    uint64_t now = itr_now_ns();
    if (!atomic_load(&r->hold_acks) && r->held_len) {
        for (size_t i = 0; i < r->held_len; i++)
            (void)itr_endpoint_ack(r->ep, r->peer, r->held[i], now);
        r->held_len = 0;
    }
    if (atomic_exchange(&r->send_cmd, 0)) {
        uint8_t body[4] = {0xC0, 0xFF, 0xEE, 0x01};
        atomic_store(&r->send_rc, itr_endpoint_send(r->ep, r->peer, ITR_INTENT_RELIABLE, 1, "cmd",
                                                    3, body, sizeof(body), now, NULL));
    }
    itr_driver_kick(r->drv);
}

static void *r_thread(void *arg)
{
    struct responder *r = arg;
    (void)itr_loop_run(r->loop);
    return NULL;
}

/* impersonate: accept handshakes addressed to this public key (mac1) while holding another
 * static key, as an attacker who knows a gateway's public key and can answer from its address
 * would. NULL for an honest responder. */
static void responder_start(struct responder *r, const uint8_t *impersonate)
{
    uint8_t priv[ITR_KEY_LEN];
    itr_settings set;
    memset(r, 0, sizeof(*r));
    assert_int_equal(itr_key_generate(priv, r->pub), ITR_OK);
    itr_settings_default(&set);
    memcpy(set.static_private, priv, ITR_KEY_LEN);
    set.max_peers = 16;
    static const itr_callbacks cbs = {
        .check_peer = r_check_peer,
        .peer_open = r_open,
        .peer_close = r_close,
        .message = r_message,
        .acked = r_acked,
    };
    assert_int_equal(itr_loop_new(&r->loop), ITR_OK);
    assert_int_equal(itr_endpoint_new(&r->ep, &set, &cbs, r, itr_now_ns()), ITR_OK);
    if (impersonate)
        itr_cookie_keys_derive(&r->ep->cookie_keys, impersonate);
    itr_addr any;
    assert_int_equal(itr_addr_parse(&any, "127.0.0.1:0", NULL, 0), ITR_OK);
    assert_int_equal(itr_udp_open(&any, NULL, &r->fd), ITR_OK);
    assert_int_equal(itr_udp_local_addr(r->fd, &r->addr), ITR_OK);
    itr_addr_format(&r->addr, r->addr_str, sizeof(r->addr_str));
    assert_int_equal(itr_driver_new(&r->drv, r->loop, r->ep, 64), ITR_OK);
    assert_int_equal(itr_driver_add_socket(r->drv, r->fd, NULL), ITR_OK);
    itr_driver_set_batch_hook(r->drv, r_batch, r);
    itr_loop_on_wake(r->loop, r_wake, r);
    itr_wipe(priv, sizeof(priv));
    itr_wipe(&set, sizeof(set));
    assert_int_equal(pthread_create(&r->th, NULL, r_thread, r), 0);
}

static void responder_stop(struct responder *r)
{
    itr_loop_stop(r->loop);
    assert_int_equal(pthread_join(r->th, NULL), 0);
    itr_driver_free(r->drv);
    itr_endpoint_free(r->ep);
    close(r->fd);
    itr_loop_free(r->loop);
}

/* ---- client helpers ---- */

struct app {
    unsigned messages, refusals_left, acked;
    uint32_t last_seq;
};

static int app_message(void *user, const itr_message *m)
{
    struct app *a = user;
    if (a->refusals_left > 0) {
        a->refusals_left--;
        return ITR_ERR_WOULDBLOCK; /* not now: the gateway retransmits */
    }
    a->messages++;
    assert_int_equal(m->topic_len, 3);
    assert_memory_equal(m->topic, "cmd", 3);
    return ITR_OK;
}

static void app_acked(void *user, uint32_t seq)
{
    struct app *a = user;
    a->acked++;
    a->last_seq = seq;
}

static itr_client *client_for(const char *gateway, const uint8_t pin[ITR_KEY_LEN], struct app *a)
{
    itr_client_options o;
    uint8_t pub[ITR_KEY_LEN];
    char err[256];
    itr_client *c = NULL;
    memset(&o, 0, sizeof(o));
    o.gateway = gateway;
    memcpy(o.gateway_key, pin, ITR_KEY_LEN);
    assert_int_equal(itr_key_generate(o.static_private, pub), ITR_OK);
    o.suite = ITR_SUITE_AESGCM;
    o.on_message = app_message;
    o.on_acked = app_acked;
    o.user = a;
    int rc = itr_client_new(&c, &o, err, sizeof(err));
    if (rc != ITR_OK)
        fail_msg("itr_client_new: %s", err);
    itr_wipe(o.static_private, sizeof(o.static_private));
    return c;
}

/* Poll the client until *v reaches target (the responder runs on its own thread). */
static int wait_for(itr_client *c, atomic_uint *v, unsigned target, int ms)
{
    uint64_t end = itr_now_ns() + (uint64_t)ms * MS;
    while (atomic_load(v) < target && itr_now_ns() < end)
        assert_true(itr_client_poll(c, 5) >= 0);
    return atomic_load(v) >= target;
}

static void send_rel(itr_client *c, uint32_t i, int timeout_ms, int expect)
{
    uint8_t body[4];
    put_u32(body, i);
    uint32_t seq = 0xFFFFFFFF;
    assert_int_equal(
        itr_client_send(c, ITR_INTENT_RELIABLE, "t.rel", body, sizeof(body), timeout_ms, &seq),
        expect);
    if (expect == ITR_OK)
        assert_int_equal(seq, i);
}

/* ---- tests ---- */

static void test_connect_send_drain_close(void **state)
{
    (void)state;
    struct responder r;
    struct app a = {0};
    char err[256];
    responder_start(&r, NULL);
    itr_client *c = client_for(r.addr_str, r.pub, &a);
    assert_int_equal(itr_client_peer(c), 0);
    assert_non_null(itr_client_loop(c));
    assert_non_null(itr_client_endpoint(c));

    /* Not connected yet: sends fail as the endpoint says (no such session). */
    uint8_t b4[4] = {0};
    assert_int_equal(itr_client_send(c, ITR_INTENT_RELIABLE, "t.rel", b4, 4, 0, NULL),
                     ITR_ERR_NOT_FOUND);

    uint64_t t0 = itr_now_ns();
    int rc = itr_client_connect(c, 3000, err, sizeof(err));
    if (rc != ITR_OK)
        fail_msg("connect: %s", err);
    print_message("connected in %.2f ms\n", (double)(itr_now_ns() - t0) / 1e6);
    assert_int_not_equal(itr_client_peer(c), 0);
    /* Connecting again while connected is a no-op. */
    assert_int_equal(itr_client_connect(c, 3000, err, sizeof(err)), ITR_OK);

    /* Realtime first, while the gateway's per-peer token bucket (10,000 pps, burst 500) is
     * full: the Reliable burst below exceeds it, and Realtime is not retransmitted. */
    for (uint32_t i = 0; i < 100; i++)
        assert_int_equal(itr_client_send(c, ITR_INTENT_REALTIME, "t.rt", b4, 4, 0, NULL), ITR_OK);
    assert_true(wait_for(c, &r.rt_received, 100, 2000));
    enum { N = 2000 };
    for (uint32_t i = 0; i < N; i++)
        send_rel(c, i, 5000, ITR_OK);
    assert_int_equal(itr_client_send(c, ITR_INTENT_RELIABLE, "bad topic!", b4, 4, 0, NULL),
                     ITR_ERR_INVALID);
    assert_int_equal(itr_client_send(c, ITR_INTENT_RELIABLE, NULL, b4, 4, 0, NULL),
                     ITR_ERR_INVALID);
    t0 = itr_now_ns();
    assert_int_equal(itr_client_drain(c, 10000), ITR_OK);
    print_message("%d Reliable messages sent and acknowledged; drain took %.2f ms\n", N,
                  (double)(itr_now_ns() - t0) / 1e6);
    /* Acknowledged end to end: the responder application has them all, in order. */
    assert_int_equal(atomic_load(&r.rel_received), N);
    assert_int_equal(atomic_load(&r.rel_errors), 0);
    assert_int_equal(a.acked, N);
    assert_int_equal(a.last_seq, N - 1);
    assert_int_equal(atomic_load(&r.rt_received), 100);

    /* Close: the responder hears CLOSE. */
    itr_client_close(c);
    assert_int_equal(itr_client_peer(c), 0);
    assert_true(wait_for(c, &r.closes_remote, 1, 2000));
    assert_int_equal(itr_client_drain(c, 0), ITR_ERR_CLOSED);
    itr_client_close(c); /* twice: a no-op */

    /* And connect again: a new session, the stream restarts at 0. */
    rc = itr_client_connect(c, 3000, err, sizeof(err));
    if (rc != ITR_OK)
        fail_msg("reconnect: %s", err);
    send_rel(c, 0, 1000, ITR_OK);
    assert_int_equal(itr_client_drain(c, 5000), ITR_OK);
    assert_int_equal(atomic_load(&r.opens), 2);
    assert_int_equal(atomic_load(&r.rel_errors), 0);
    itr_client_free(c); /* closes the session */
    uint64_t end = itr_now_ns() + 2000 * MS;
    while (atomic_load(&r.closes_remote) < 2 && itr_now_ns() < end)
        usleep(1000);
    assert_int_equal(atomic_load(&r.closes_remote), 2);
    responder_stop(&r);
}

static void test_connect_pinned_mismatch(void **state)
{
    (void)state;
    struct responder real, impostor;
    struct app a = {0};
    char err[256];
    responder_start(&real, NULL);
    /* An impostor answers handshakes meant for the real gateway's key with its own key: the
     * client detects it at message 2, without waiting for the timeout. */
    responder_start(&impostor, real.pub);
    itr_client *c = client_for(impostor.addr_str, real.pub, &a);
    uint64_t t0 = itr_now_ns();
    assert_int_equal(itr_client_connect(c, 3000, err, sizeof(err)), ITR_ERR_CLOSED);
    print_message("pinned key mismatch: \"%s\"\n", err);
    assert_non_null(strstr(err, "key mismatch"));
    assert_true(itr_now_ns() - t0 < 1000 * MS);
    assert_int_equal(itr_client_peer(c), 0);
    assert_int_equal(atomic_load(&impostor.opens), 0);
    itr_client_free(c);

    /* A wrong pin against the real gateway: it ignores handshakes addressed to another key
     * (mac1), so the client only sees silence, and says what to check. */
    uint8_t wrong_priv[ITR_KEY_LEN], wrong_pub[ITR_KEY_LEN];
    assert_int_equal(itr_key_generate(wrong_priv, wrong_pub), ITR_OK);
    c = client_for(real.addr_str, wrong_pub, &a);
    assert_int_equal(itr_client_connect(c, 300, err, sizeof(err)), ITR_ERR_CLOSED);
    print_message("wrong pin: \"%s\"\n", err);
    assert_non_null(strstr(err, "no answer"));
    assert_non_null(strstr(err, "pinned key"));
    itr_client_free(c);
    assert_int_equal(atomic_load(&real.opens), 0);
    responder_stop(&impostor);
    responder_stop(&real);
}

static void test_connect_refused(void **state)
{
    (void)state;
    struct app a = {0};
    uint8_t priv[ITR_KEY_LEN], pub[ITR_KEY_LEN];
    char err[256], where[64];
    /* A port that was just free: nothing listens there. */
    itr_addr any, dead;
    int fd;
    assert_int_equal(itr_addr_parse(&any, "127.0.0.1:0", NULL, 0), ITR_OK);
    assert_int_equal(itr_udp_open(&any, NULL, &fd), ITR_OK);
    assert_int_equal(itr_udp_local_addr(fd, &dead), ITR_OK);
    close(fd);
    itr_addr_format(&dead, where, sizeof(where));
    assert_int_equal(itr_key_generate(priv, pub), ITR_OK);
    itr_client *c = client_for(where, pub, &a);
    uint64_t t0 = itr_now_ns();
    assert_int_equal(itr_client_connect(c, 3000, err, sizeof(err)), ITR_ERR_CLOSED);
    print_message("refused: \"%s\"\n", err);
    assert_non_null(strstr(err, "refused"));
    assert_non_null(strstr(err, where));
    assert_true(itr_now_ns() - t0 < 1000 * MS);
    itr_client_free(c);

    /* The same over IPv6, where the host has it: the client's socket follows the family. */
    assert_int_equal(itr_addr_parse(&any, "[::1]:0", NULL, 0), ITR_OK);
    if (itr_udp_open(&any, NULL, &fd) != ITR_OK)
        return;
    assert_int_equal(itr_udp_local_addr(fd, &dead), ITR_OK);
    close(fd);
    itr_addr_format(&dead, where, sizeof(where));
    c = client_for(where, pub, &a);
    assert_int_equal(itr_client_connect(c, 3000, err, sizeof(err)), ITR_ERR_CLOSED);
    print_message("refused (IPv6): \"%s\"\n", err);
    assert_non_null(strstr(err, "refused"));
    assert_non_null(strstr(err, "[::1]:"));
    itr_client_free(c);
}

static void test_connect_timeout(void **state)
{
    (void)state;
    struct app a = {0};
    uint8_t priv[ITR_KEY_LEN], pub[ITR_KEY_LEN];
    char err[256], where[64];
    /* A socket that exists (no ICMP error) but never answers. */
    itr_addr any, silent;
    int fd;
    assert_int_equal(itr_addr_parse(&any, "127.0.0.1:0", NULL, 0), ITR_OK);
    assert_int_equal(itr_udp_open(&any, NULL, &fd), ITR_OK);
    assert_int_equal(itr_udp_local_addr(fd, &silent), ITR_OK);
    itr_addr_format(&silent, where, sizeof(where));
    assert_int_equal(itr_key_generate(priv, pub), ITR_OK);
    itr_client *c = client_for(where, pub, &a);
    uint64_t t0 = itr_now_ns();
    assert_int_equal(itr_client_connect(c, 400, err, sizeof(err)), ITR_ERR_CLOSED);
    uint64_t took = itr_now_ns() - t0;
    print_message("timeout: \"%s\" after %.0f ms\n", err, (double)took / 1e6);
    assert_non_null(strstr(err, "timeout"));
    assert_non_null(strstr(err, "no answer"));
    assert_true(took >= 399 * MS);
    assert_true(took < 1500 * MS);
    /* Message 1 was sent and retransmitted (250 ms) to the silent socket. */
    uint8_t buf[256];
    int got = 0;
    while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) == 128)
        got++;
    assert_true(got >= 2);
    itr_client_free(c);
    close(fd);
}

static void test_connect_not_admitted(void **state)
{
    (void)state;
    struct responder r;
    struct app a = {0};
    char err[256];
    responder_start(&r, NULL);
    atomic_store(&r.refuse_keys, 1);
    itr_client *c = client_for(r.addr_str, r.pub, &a);
    assert_int_equal(itr_client_connect(c, 700, err, sizeof(err)), ITR_ERR_CLOSED);
    print_message("not admitted: \"%s\"\n", err);
    assert_non_null(strstr(err, "timeout"));
    assert_non_null(strstr(err, "admitted"));
    /* Admitted now: the same client connects. */
    atomic_store(&r.refuse_keys, 0);
    int rc = itr_client_connect(c, 3000, err, sizeof(err));
    if (rc != ITR_OK)
        fail_msg("connect: %s", err);
    itr_client_free(c);
    responder_stop(&r);
}

static void test_send_blocks_on_full_window(void **state)
{
    (void)state;
    struct responder r;
    struct app a = {0};
    char err[256];
    responder_start(&r, NULL);
    atomic_store(&r.hold_acks, 1);
    itr_client *c = client_for(r.addr_str, r.pub, &a);
    int rc = itr_client_connect(c, 3000, err, sizeof(err));
    if (rc != ITR_OK)
        fail_msg("connect: %s", err);
    /* The responder takes messages but does not acknowledge: 256 fit in the window. */
    for (uint32_t i = 0; i < ITR_RELIABLE_WINDOW; i++)
        send_rel(c, i, 0, ITR_OK);
    assert_true(wait_for(c, &r.rel_received, ITR_RELIABLE_WINDOW, 5000));
    /* Without a timeout the next one fails at once... */
    send_rel(c, ITR_RELIABLE_WINDOW, 0, ITR_ERR_WOULDBLOCK);
    /* ...with one it blocks, running the loop, then gives up. */
    uint64_t t0 = itr_now_ns();
    send_rel(c, ITR_RELIABLE_WINDOW, 200, ITR_ERR_WOULDBLOCK);
    uint64_t took = itr_now_ns() - t0;
    assert_true(took >= 199 * MS);
    assert_true(took < 1000 * MS);
    assert_int_equal(itr_client_drain(c, 50), ITR_ERR_WOULDBLOCK);

    /* Acknowledgements resume: a blocked send proceeds as soon as the window opens. */
    atomic_store(&r.hold_acks, 0);
    itr_loop_wake(r.loop);
    t0 = itr_now_ns();
    send_rel(c, ITR_RELIABLE_WINDOW, 5000, ITR_OK);
    print_message("blocked send resumed %.2f ms after the acknowledgements were released\n",
                  (double)(itr_now_ns() - t0) / 1e6);
    assert_int_equal(itr_client_drain(c, 5000), ITR_OK);
    assert_int_equal(atomic_load(&r.rel_received), ITR_RELIABLE_WINDOW + 1);
    assert_int_equal(atomic_load(&r.rel_errors), 0);
    assert_int_equal(a.acked, ITR_RELIABLE_WINDOW + 1);
    itr_client_free(c);
    responder_stop(&r);
}

static void test_reverse_path_auto_ack(void **state)
{
    (void)state;
    struct responder r;
    struct app a = {.refusals_left = 1};
    char err[256];
    responder_start(&r, NULL);
    itr_client *c = client_for(r.addr_str, r.pub, &a);
    int rc = itr_client_connect(c, 3000, err, sizeof(err));
    if (rc != ITR_OK)
        fail_msg("connect: %s", err);
    /* The responder's peer_open may trail ours by a datagram. */
    assert_true(wait_for(c, &r.opens, 1, 2000));
    atomic_store(&r.send_cmd, 1);
    itr_loop_wake(r.loop);
    /* The first delivery is refused by on_message (WOULDBLOCK): not acknowledged, the
     * responder retransmits; the second is taken and acknowledged automatically. */
    assert_true(wait_for(c, &r.reverse_acked, 1, 5000));
    assert_int_equal(atomic_load(&r.send_rc), ITR_OK);
    assert_int_equal(a.refusals_left, 0);
    assert_int_equal(a.messages, 1);
    itr_client_free(c);
    responder_stop(&r);
}

/* The README example program, run as a child process against the responder. */
static int run_example(const char *const argv[], int timeout_ms)
{
    extern char **environ;
    pid_t pid;
    int status;
    assert_int_equal(
        posix_spawn(&pid, argv[0], NULL, NULL, (char *const *)(uintptr_t)argv, environ), 0);
    uint64_t end = itr_now_ns() + (uint64_t)timeout_ms * MS;
    for (;;) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        assert_true(w >= 0);
        if (w == pid)
            break;
        if (itr_now_ns() > end) {
            kill(pid, SIGKILL);
            assert_int_equal(waitpid(pid, &status, 0), pid);
            fail_msg("%s did not finish within %d ms", argv[0], timeout_ms);
        }
        usleep(2000);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static void test_example_program(void **state)
{
    (void)state;
    struct responder r;
    char dir[] = "/tmp/itr-example-XXXXXX", keyfile[64], pubhex[2 * ITR_KEY_LEN + 1];
    assert_non_null(mkdtemp(dir));
    snprintf(keyfile, sizeof(keyfile), "%s/client.key", dir);
    responder_start(&r, NULL);
    itr_hex_encode(pubhex, r.pub, ITR_KEY_LEN);
    const char *argv[] = {INTENTRA_EXAMPLE_CLIENT, r.addr_str, pubhex, keyfile, NULL};
    /* First run creates the client's key file, second run loads it. */
    assert_int_equal(run_example(argv, 20000), 0);
    assert_int_equal(run_example(argv, 20000), 0);
    assert_int_equal(atomic_load(&r.example_msgs), 2);
    assert_int_equal(atomic_load(&r.opens), 2);
    /* Usage error. */
    const char *usage[] = {INTENTRA_EXAMPLE_CLIENT, NULL};
    assert_int_equal(run_example(usage, 20000), 2);
    responder_stop(&r);
    assert_int_equal(unlink(keyfile), 0);
    assert_int_equal(rmdir(dir), 0);
}

static void test_client_new_errors(void **state)
{
    (void)state;
    itr_client_options o;
    itr_client *c = NULL;
    char err[256];
    memset(&o, 0, sizeof(o));
    assert_int_equal(itr_client_new(&c, &o, err, sizeof(err)), ITR_ERR_INVALID);
    assert_non_null(strstr(err, "gateway"));
    o.gateway = "gateway.example:7400";
    assert_int_equal(itr_client_new(&c, &o, err, sizeof(err)), ITR_ERR_INVALID);
    assert_non_null(strstr(err, "gateway.example:7400"));
    /* A good address but no identity: the endpoint refuses the settings. */
    o.gateway = "127.0.0.1:9";
    assert_int_equal(itr_client_new(&c, &o, err, sizeof(err)), ITR_ERR_INVALID);
    assert_non_null(strstr(err, "endpoint"));
    assert_null(c);
    itr_client_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_new_errors),
        cmocka_unit_test(test_connect_send_drain_close),
        cmocka_unit_test(test_connect_pinned_mismatch),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_connect_timeout),
        cmocka_unit_test(test_connect_not_admitted),
        cmocka_unit_test(test_send_blocks_on_full_window),
        cmocka_unit_test(test_reverse_path_auto_ack),
        cmocka_unit_test(test_example_program),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
