/* test_endpoint_util.c: shared harness of the endpoint tests (see test_endpoint_util.h). */
#include "test_endpoint_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include <intentra/keys.h>

#include "itr_cookie.h"
#include "itr_wire.h"

static int cb_check(void *user, const uint8_t key[ITR_KEY_LEN], const itr_addr *from)
{
    tpeer *p = user;
    (void)key;
    (void)from;
    p->check_calls++;
    return p->refuse ? -1 : 0;
}

static void cb_open(void *user, const itr_peer_info *info)
{
    tpeer *p = user;
    p->opens++;
    p->last_open = info->id;
    p->last_open_info = *info;
}

static void cb_close(void *user, itr_peer_id peer, itr_close_reason why)
{
    tpeer *p = user;
    p->closes++;
    p->last_closed = peer;
    p->last_close_reason = why;
    if (p->on_close)
        p->on_close(p, peer, why);
}

static int cb_message(void *user, const itr_message *m)
{
    tpeer *p = user;
    p->messages++;
    if (p->on_message)
        return p->on_message(p, m);
    return ITR_OK;
}

static void cb_acked(void *user, itr_peer_id peer, uint32_t seq)
{
    tpeer *p = user;
    p->acked++;
    if (p->on_acked)
        p->on_acked(p, peer, seq);
}

static void cb_writable(void *user, itr_peer_id peer)
{
    tpeer *p = user;
    p->writable++;
    if (p->on_writable)
        p->on_writable(p, peer);
}

static void cb_security(void *user, itr_security_event ev, const itr_addr *from, const uint8_t *key)
{
    tpeer *p = user;
    (void)from;
    (void)key;
    p->sec[ev]++;
}

void tsettings(itr_settings *s, uint8_t seed)
{
    itr_settings_default(s);
    for (int i = 0; i < ITR_KEY_LEN; i++)
        s->static_private[i] = (uint8_t)(seed * 31 + i * 7 + 1);
    /* Smaller pools keep the tests light; the defaults are exercised by the bench. */
    s->max_peers = 1024;
    s->tx_pool_slots = 1024;
    s->reorder_pool_slots = 1024;
    s->tx_ring_slots = 1024;
    s->aead_cache_entries = 64;
}

static void create(tpeer *p)
{
    itr_callbacks cb;
    memset(&cb, 0, sizeof(cb));
    cb.check_peer = cb_check;
    cb.peer_open = cb_open;
    cb.peer_close = cb_close;
    cb.message = cb_message;
    cb.acked = cb_acked;
    cb.writable = cb_writable;
    cb.security = cb_security;
    assert_int_equal(itr_endpoint_new(&p->ep, &p->settings, &cb, p, memnet_now(p->net)), ITR_OK);
}

void tpeer_init(tpeer *p, memnet *n, uint16_t port, uint8_t seed, const itr_settings *s)
{
    memset(p, 0, sizeof(*p));
    p->net = n;
    if (s)
        p->settings = *s;
    else
        tsettings(&p->settings, seed);
    memcpy(p->priv, p->settings.static_private, ITR_KEY_LEN);
    assert_int_equal(itr_key_public(p->priv, p->pub), ITR_OK);
    create(p);
    p->addr = memnet_addr_v4(port);
    p->node = memnet_attach(n, p->ep, &p->addr);
    assert_true(p->node >= 0);
}

void tpeer_free(tpeer *p)
{
    if (p->ep) {
        memnet_set_endpoint(p->net, p->node, NULL);
        itr_endpoint_free(p->ep);
        p->ep = NULL;
    }
}

void tpeer_restart(tpeer *p, const itr_settings *s)
{
    memnet_set_endpoint(p->net, p->node, NULL);
    itr_endpoint_free(p->ep);
    if (s)
        p->settings = *s;
    create(p);
    memnet_set_endpoint(p->net, p->node, p->ep);
}

typedef struct both_open {
    const tpeer *c, *s;
    uint64_t c0, s0;
} both_open;

static int opened(void *arg)
{
    both_open *b = arg;
    return b->c->opens > b->c0 && b->s->opens > b->s0;
}

itr_peer_id tconnect(tpeer *c, tpeer *srv, itr_suite suite)
{
    itr_peer_id id = 0;
    both_open b = {c, srv, c->opens, srv->opens};
    assert_int_equal(
        itr_endpoint_connect(c->ep, &srv->addr, srv->pub, suite, memnet_now(c->net), &id), ITR_OK);
    assert_true(id != 0);
    assert_true(memnet_run(c->net, SEC(2), 100000, opened, &b));
    assert_true(c->last_open == id);
    return id;
}

itr_peer_id tpeer_find(tpeer *srv, const tpeer *c)
{
    itr_peer_id id = 0;
    assert_int_equal(itr_endpoint_find_peer(srv->ep, c->pub, &id), ITR_OK);
    return id;
}

typedef struct flag_wait {
    const uint64_t *flag;
    uint64_t value;
} flag_wait;

static int flag_reached(void *arg)
{
    flag_wait *w = arg;
    return *w->flag >= w->value;
}

int trun_until_u64(memnet *n, const uint64_t *flag, uint64_t value, uint64_t max_ns)
{
    flag_wait w = {flag, value};
    return memnet_run(n, max_ns, UINT64_MAX, flag_reached, &w);
}

void tstats(const tpeer *p, itr_stats *st)
{
    itr_endpoint_stats(p->ep, st);
}

uint64_t tstat_drop(const tpeer *p, itr_drop_reason r)
{
    itr_stats st;
    itr_endpoint_stats(p->ep, &st);
    return st.dropped[r];
}

void tmsg1(uint8_t out[128], const uint8_t server_pub[ITR_KEY_LEN], uint32_t initiator_id,
           const uint8_t e[32], const uint8_t *cookie)
{
    itr_header h;
    itr_cookie_keys ck;
    memset(out, 0, 128);
    memset(&h, 0, sizeof(h));
    h.version = ITR_VERSION;
    h.type = ITR_PT_HANDSHAKE;
    h.payload_len = 112;
    h.seq = 1;
    h.ack = initiator_id;
    itr_header_write(out, &h);
    out[ITR_MSG1_SUITE_OFF] = ITR_SUITE_AESGCM;
    memcpy(out + ITR_MSG1_E_OFF, e, 32);
    itr_put_u32(out + ITR_MSG1_PAYLOAD_OFF, initiator_id);
    itr_cookie_keys_derive(&ck, server_pub);
    itr_mac1_write(&ck, out);
    if (cookie)
        memcpy(out + ITR_MSG1_COOKIE_OFF, cookie, 16);
}
