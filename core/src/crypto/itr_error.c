/* itr_error.c: itr_strerror, the text of every itr_error. */
#include <intentra/error.h>

const char *itr_strerror(int err)
{
    switch ((itr_error)err) {
    case ITR_OK:
        return "success";
    case ITR_ERR_INVALID:
        return "invalid argument";
    case ITR_ERR_NOMEM:
        return "out of memory";
    case ITR_ERR_WOULDBLOCK:
        return "resource temporarily full, retry later";
    case ITR_ERR_NOT_FOUND:
        return "unknown or stale handle";
    case ITR_ERR_NOT_READY:
        return "session not established yet";
    case ITR_ERR_TOO_BIG:
        return "message too big for one packet";
    case ITR_ERR_CRYPTO:
        return "authentication or key agreement failed";
    case ITR_ERR_IO:
        return "system call failed";
    case ITR_ERR_LIMIT:
        return "refused by a configured limit";
    case ITR_ERR_PROTO:
        return "protocol violation by the peer";
    case ITR_ERR_PARTIAL:
        return "incomplete input, more bytes needed";
    case ITR_ERR_CLOSED:
        return "endpoint or session is closing";
    }
    return "unknown error";
}
