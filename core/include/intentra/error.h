/* intentra/error.h: the error enum every libintentra function returns (0 or negative). */
#ifndef INTENTRA_ERROR_H
#define INTENTRA_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define ITR_API __attribute__((visibility("default")))
#else
#define ITR_API
#endif

typedef enum itr_error {
    ITR_OK = 0,
    ITR_ERR_INVALID = -1,    /* an argument is out of range or malformed */
    ITR_ERR_NOMEM = -2,      /* an allocation failed (only at set-up or handshake time) */
    ITR_ERR_WOULDBLOCK = -3, /* a bounded resource is full (window, pool, ring): retry later */
    ITR_ERR_NOT_FOUND = -4,  /* unknown or stale handle (peer closed, id reused) */
    ITR_ERR_NOT_READY = -5,  /* session not yet established */
    ITR_ERR_TOO_BIG = -6,    /* message does not fit in one packet */
    ITR_ERR_CRYPTO = -7,     /* authentication or key agreement failed */
    ITR_ERR_IO = -8,         /* a system call failed; errno has the detail */
    ITR_ERR_LIMIT = -9,      /* a configured limit refused the request */
    ITR_ERR_PROTO = -10,     /* the peer violated the protocol */
    ITR_ERR_PARTIAL = -11,   /* a parser needs more bytes */
    ITR_ERR_CLOSED = -12,    /* the endpoint or session is closing */
} itr_error;

/* Short English text for an itr_error; never NULL. */
ITR_API const char *itr_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
