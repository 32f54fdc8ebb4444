/* intentra/client.h: the fleet side in a few calls.
 *
 * An itr_client owns one loop, one UDP socket, one initiator endpoint and its driver, and one
 * session to a gateway whose static key is pinned. It is the convenience layer under the
 * fleet tools and the README example; anything it does can be done with endpoint.h and
 * driver.h directly. Single-threaded.
 */
#ifndef INTENTRA_CLIENT_H
#define INTENTRA_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <intentra/driver.h>
#include <intentra/endpoint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct itr_client itr_client;

typedef struct itr_client_options {
    const char *gateway;                 /* "HOST:PORT" */
    uint8_t gateway_key[ITR_KEY_LEN];    /* pinned responder static key */
    uint8_t static_private[ITR_KEY_LEN]; /* own identity */
    itr_suite suite;                     /* ITR_SUITE_AESGCM unless the board lacks AES */
    const itr_settings *settings;        /* NULL: defaults */
    /* Optional: messages from the gateway (reverse path). Reliable ones are acknowledged
     * automatically after the callback returns ITR_OK. */
    int (*on_message)(void *user, const itr_message *msg);
    /* Optional: a Reliable message was acknowledged end to end. */
    void (*on_acked)(void *user, uint32_t seq);
    void *user;
} itr_client_options;

/* Errors: ITR_ERR_INVALID (bad address; err says why), ITR_ERR_IO, ITR_ERR_NOMEM. */
ITR_API int itr_client_new(itr_client **out, const itr_client_options *o, char *err, size_t errlen);
ITR_API void itr_client_free(itr_client *c);
/* Handshake, waiting up to timeout_ms. Errors: ITR_ERR_CLOSED (refused, pinned key mismatch or
 * timeout: err says which). */
ITR_API int itr_client_connect(itr_client *c, int timeout_ms, char *err, size_t errlen);
/* Send one message. A Reliable send blocks (running the loop) up to timeout_ms while the
 * window is full. Errors as itr_endpoint_send, plus ITR_ERR_WOULDBLOCK on timeout. */
ITR_API int itr_client_send(itr_client *c, itr_intent intent, const char *topic, const void *body,
                            size_t len, int timeout_ms, uint32_t *seq_out);
/* Run the loop once, waiting up to timeout_ms. */
ITR_API int itr_client_poll(itr_client *c, int timeout_ms);
/* Wait until every Reliable message sent so far is acknowledged. Errors: ITR_ERR_WOULDBLOCK
 * (timeout), ITR_ERR_CLOSED. */
ITR_API int itr_client_drain(itr_client *c, int timeout_ms);
/* Send CLOSE and release the session (the client can connect again). */
ITR_API void itr_client_close(itr_client *c);
ITR_API itr_endpoint *itr_client_endpoint(itr_client *c);
ITR_API itr_peer_id itr_client_peer(const itr_client *c);
ITR_API itr_loop *itr_client_loop(itr_client *c);

#ifdef __cplusplus
}
#endif
#endif
