/* itr_cookie.c: mac1, stateless cookies and COOKIE_REPLY (PROTOCOL.md §4.1, §4.4). */
#include "itr_cookie.h"

#include <string.h>

#include <intentra/keys.h>

#include "itr_crypto.h"

void itr_cookie_keys_derive(itr_cookie_keys *k, const uint8_t static_pub[32])
{
    itr_blake2b256(k->mac1_key, "intentra mac1 v1", static_pub, 32);
    itr_blake2b256(k->reply_key, "intentra cookie v1", static_pub, 32);
}

void itr_mac1_write(const itr_cookie_keys *k, uint8_t *msg1)
{
    itr_mac16(msg1 + ITR_MSG1_MAC1_OFF, k->mac1_key, sizeof(k->mac1_key), msg1, ITR_MSG1_MAC1_OFF,
              NULL, 0);
}

int itr_mac1_verify(const itr_cookie_keys *k, const uint8_t *msg1)
{
    uint8_t mac[ITR_MSG1_MAC_LEN];
    itr_mac16(mac, k->mac1_key, sizeof(k->mac1_key), msg1, ITR_MSG1_MAC1_OFF, NULL, 0);
    return itr_ct_equal(mac, msg1 + ITR_MSG1_MAC1_OFF, sizeof(mac));
}

void itr_cookie_jar_init(itr_cookie_jar *j, uint64_t rotate_ns, uint64_t now)
{
    itr_random(j->cur, sizeof(j->cur));
    memset(j->prev, 0, sizeof(j->prev));
    j->have_prev = 0;
    j->rotated_at = now;
    j->rotate_ns = rotate_ns;
}

void itr_cookie_jar_tick(itr_cookie_jar *j, uint64_t now)
{
    if (j->rotate_ns == 0 || now < j->rotated_at || now - j->rotated_at < j->rotate_ns)
        return;
    if (now - j->rotated_at >= 2 * j->rotate_ns) {
        /* Nobody ticked for a whole period: cookies of the current secret are already older
         * than one period and would outlive the 2-period bound as prev. */
        itr_wipe(j->prev, sizeof(j->prev));
        j->have_prev = 0;
    } else {
        memcpy(j->prev, j->cur, sizeof(j->prev));
        j->have_prev = 1;
    }
    itr_random(j->cur, sizeof(j->cur));
    j->rotated_at = now;
}

void itr_cookie_jar_wipe(itr_cookie_jar *j)
{
    itr_wipe(j, sizeof(*j));
}

void itr_cookie_addr_bytes(const itr_addr *a, uint8_t out[ITR_COOKIE_ADDR_LEN])
{
    memset(out, 0, ITR_COOKIE_ADDR_LEN);
    if (a->u.sa.sa_family == AF_INET) {
        out[10] = 0xff;
        out[11] = 0xff;
        memcpy(out + 12, &a->u.in.sin_addr.s_addr, 4);
        memcpy(out + 16, &a->u.in.sin_port, 2); /* already network order */
    } else if (a->u.sa.sa_family == AF_INET6) {
        memcpy(out, a->u.in6.sin6_addr.s6_addr, 16);
        memcpy(out + 16, &a->u.in6.sin6_port, 2);
    }
}

static void cookie_mac(const uint8_t secret[32], const uint8_t addr[ITR_COOKIE_ADDR_LEN],
                       const uint8_t e[32], uint8_t out[ITR_COOKIE_LEN])
{
    itr_mac16(out, secret, 32, addr, ITR_COOKIE_ADDR_LEN, e, 32);
}

void itr_cookie_make(const itr_cookie_jar *j, const itr_addr *src, const uint8_t e[32],
                     uint8_t out[ITR_COOKIE_LEN])
{
    uint8_t addr[ITR_COOKIE_ADDR_LEN];
    itr_cookie_addr_bytes(src, addr);
    cookie_mac(j->cur, addr, e, out);
}

int itr_cookie_verify(const itr_cookie_jar *j, const itr_addr *src, const uint8_t e[32],
                      const uint8_t cookie[ITR_COOKIE_LEN])
{
    uint8_t addr[ITR_COOKIE_ADDR_LEN];
    uint8_t want[ITR_COOKIE_LEN];
    int ok;

    itr_cookie_addr_bytes(src, addr);
    cookie_mac(j->cur, addr, e, want);
    ok = itr_ct_equal(want, cookie, sizeof(want));
    /* Always do the second MAC so the time taken does not say which secret matched. */
    cookie_mac(j->prev, addr, e, want);
    ok |= j->have_prev & itr_ct_equal(want, cookie, sizeof(want));
    itr_wipe(want, sizeof(want));
    return ok;
}

void itr_cookie_reply_write(uint8_t out[ITR_COOKIE_REPLY_LEN], const itr_cookie_keys *k,
                            const uint8_t *msg1, const uint8_t cookie[ITR_COOKIE_LEN])
{
    uint32_t initiator_id;
    (void)itr_get_u32(msg1 + 12, &initiator_id); /* message 1's ack field carries I */
    itr_header h = {
        .version = ITR_VERSION,
        .type = ITR_PT_COOKIE_REPLY,
        .payload_len = ITR_COOKIE_REPLY_LEN - ITR_HEADER_LEN,
        .conn_id = initiator_id,
    };
    itr_header_write(out, &h);
    uint8_t *nonce = out + ITR_COOKIE_REPLY_NONCE_OFF;
    itr_random(nonce, ITR_COOKIE_REPLY_NONCE_LEN);
    itr_xaead_seal(out + ITR_COOKIE_REPLY_BOX_OFF, k->reply_key, nonce, cookie, ITR_COOKIE_LEN,
                   msg1 + ITR_MSG1_MAC1_OFF, ITR_MSG1_MAC_LEN);
}

int itr_cookie_reply_read(const uint8_t *pkt, size_t len, const itr_cookie_keys *k,
                          const uint8_t mac1[ITR_MSG1_MAC_LEN], uint8_t cookie_out[ITR_COOKIE_LEN])
{
    uint8_t cookie[ITR_COOKIE_LEN];
    int rc = ITR_OK;

    if (len != ITR_COOKIE_REPLY_LEN) {
        rc = ITR_ERR_INVALID;
        goto out;
    }
    if (itr_xaead_open(
            cookie, k->reply_key, pkt + ITR_COOKIE_REPLY_NONCE_OFF, pkt + ITR_COOKIE_REPLY_BOX_OFF,
            ITR_COOKIE_REPLY_LEN - ITR_COOKIE_REPLY_BOX_OFF, mac1, ITR_MSG1_MAC_LEN) != 0) {
        rc = ITR_ERR_CRYPTO;
        goto out;
    }
    memcpy(cookie_out, cookie, sizeof(cookie));
out:
    itr_wipe(cookie, sizeof(cookie));
    return rc;
}
