/* itr_udp.c: UDP addresses (parse/format/compare) and sockets: options, SO_RXQ_OVFL, the
 * SO_REUSEPORT steering program that sends each session's datagrams to the worker owning it,
 * and the packing of datagrams into GSO messages for sendmmsg. */
#define _GNU_SOURCE /* SO_RCVBUFFORCE, SO_RXQ_OVFL, SOCK_NONBLOCK */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <intentra/driver.h>

#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif

/* ---- addresses ---- */

static int addr_fail(char *err, size_t errlen, const char *hostport, const char *why)
{
    if (err && errlen)
        snprintf(err, errlen, "address \"%s\": %s", hostport, why);
    return ITR_ERR_INVALID;
}

int itr_addr_parse(itr_addr *out, const char *hostport, char *err, size_t errlen)
{
    char host[INET6_ADDRSTRLEN];
    const char *port_str;
    size_t host_len;
    int bracketed = 0;

    if (!out || !hostport)
        return addr_fail(err, errlen, "(null)", "missing");
    if (hostport[0] == '[') {
        const char *close = strchr(hostport, ']');
        if (!close)
            return addr_fail(err, errlen, hostport, "missing ']' after an IPv6 address");
        if (close[1] != ':')
            return addr_fail(err, errlen, hostport, "expected ':PORT' after ']'");
        host_len = (size_t)(close - hostport - 1);
        memcpy(host, hostport + 1, host_len < sizeof(host) ? host_len : 0);
        port_str = close + 2;
        bracketed = 1;
    } else {
        const char *colon = strrchr(hostport, ':');
        if (!colon)
            return addr_fail(err, errlen, hostport, "expected HOST:PORT");
        if (memchr(hostport, ':', (size_t)(colon - hostport)))
            return addr_fail(err, errlen, hostport,
                             "IPv6 addresses need brackets, e.g. \"[::1]:7400\"");
        host_len = (size_t)(colon - hostport);
        memcpy(host, hostport, host_len < sizeof(host) ? host_len : 0);
        port_str = colon + 1;
    }
    if (host_len == 0)
        return addr_fail(err, errlen, hostport, "empty host");
    if (host_len >= sizeof(host))
        return addr_fail(err, errlen, hostport, "host too long");
    host[host_len] = '\0';

    /* Port: 1-5 decimal digits, 0..65535 (0 asks the kernel for an ephemeral port). */
    size_t digits = strlen(port_str);
    if (digits == 0)
        return addr_fail(err, errlen, hostport, "missing port");
    if (digits > 5 || strspn(port_str, "0123456789") != digits)
        return addr_fail(err, errlen, hostport, "port must be a number 0-65535");
    unsigned long port = 0;
    for (size_t i = 0; i < digits; i++)
        port = port * 10 + (unsigned long)(port_str[i] - '0');
    if (port > 65535)
        return addr_fail(err, errlen, hostport, "port must be a number 0-65535");

    memset(out, 0, sizeof(*out));
    if (!bracketed && strcmp(host, "localhost") == 0) {
        out->u.in.sin_family = AF_INET;
        out->u.in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        out->u.in.sin_port = htons((uint16_t)port);
        return ITR_OK;
    }
    if (bracketed) {
        if (inet_pton(AF_INET6, host, &out->u.in6.sin6_addr) != 1)
            return addr_fail(err, errlen, hostport, "not a numeric IPv6 address");
        out->u.in6.sin6_family = AF_INET6;
        out->u.in6.sin6_port = htons((uint16_t)port);
        return ITR_OK;
    }
    if (inet_pton(AF_INET, host, &out->u.in.sin_addr) != 1)
        return addr_fail(err, errlen, hostport,
                         "not a numeric IPv4 address, \"[IPv6]\" or \"localhost\" "
                         "(host names are not resolved)");
    out->u.in.sin_family = AF_INET;
    out->u.in.sin_port = htons((uint16_t)port);
    return ITR_OK;
}

size_t itr_addr_format(const itr_addr *a, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN];
    int n;
    if (!buf || len == 0)
        return 0;
    if (a->u.sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &a->u.in.sin_addr, host, sizeof(host));
        n = snprintf(buf, len, "%s:%u", host, (unsigned)ntohs(a->u.in.sin_port));
    } else if (a->u.sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &a->u.in6.sin6_addr, host, sizeof(host));
        n = snprintf(buf, len, "[%s]:%u", host, (unsigned)ntohs(a->u.in6.sin6_port));
    } else {
        n = snprintf(buf, len, "(family %u)", (unsigned)a->u.sa.sa_family);
    }
    if (n < 0) {
        buf[0] = '\0';
        return 0;
    }
    return (size_t)n < len ? (size_t)n : len - 1;
}

int itr_addr_equal(const itr_addr *a, const itr_addr *b)
{
    if (a->u.sa.sa_family != b->u.sa.sa_family)
        return 0;
    if (a->u.sa.sa_family == AF_INET)
        return a->u.in.sin_port == b->u.in.sin_port &&
               a->u.in.sin_addr.s_addr == b->u.in.sin_addr.s_addr;
    if (a->u.sa.sa_family == AF_INET6)
        return a->u.in6.sin6_port == b->u.in6.sin6_port &&
               a->u.in6.sin6_scope_id == b->u.in6.sin6_scope_id &&
               memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, sizeof(struct in6_addr)) == 0;
    return 0;
}

socklen_t itr_addr_len(const itr_addr *a)
{
    if (a->u.sa.sa_family == AF_INET)
        return (socklen_t)sizeof(struct sockaddr_in);
    if (a->u.sa.sa_family == AF_INET6)
        return (socklen_t)sizeof(struct sockaddr_in6);
    return 0;
}

/* ---- sockets ---- */

static int set_int(int fd, int level, int name, int value)
{
    return setsockopt(fd, level, name, &value, sizeof(value));
}

/* Buffer sizes above net.core.[rw]mem_max need the FORCE variant (CAP_NET_ADMIN); without it
 * the kernel silently caps the plain option, so try FORCE first and fall back. */
static int set_buffer(int fd, int force_opt, int opt, int bytes)
{
    if (bytes <= 0)
        return 0;
    if (set_int(fd, SOL_SOCKET, force_opt, bytes) == 0)
        return 0;
    return set_int(fd, SOL_SOCKET, opt, bytes);
}

int itr_udp_open(const itr_addr *bind_addr, const itr_udp_options *o, int *fd_out)
{
    static const itr_udp_options defaults;
    int family = bind_addr ? bind_addr->u.sa.sa_family : AF_UNSPEC;
    int err = ITR_ERR_IO;
    int fd = -1;

    if (!o)
        o = &defaults;
    if (!fd_out || (family != AF_INET && family != AF_INET6)) {
        errno = EAFNOSUPPORT;
        goto out;
    }
    fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
    if (fd < 0)
        goto out;
    if (family == AF_INET6 && set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, o->v6only ? 1 : 0) != 0)
        goto out;
    if (o->reuseport && set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1) != 0)
        goto out;
    if (set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, o->rcvbuf_bytes) != 0 ||
        set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, o->sndbuf_bytes) != 0)
        goto out;
    /* The kernel's count of datagrams dropped for a full receive buffer, as a control
     * message on every datagram: the driver turns it into kernel_drops. */
    if (set_int(fd, SOL_SOCKET, SO_RXQ_OVFL, 1) != 0)
        goto out;
    if (bind(fd, &bind_addr->u.sa, itr_addr_len(bind_addr)) != 0)
        goto out;
    *fd_out = fd;
    fd = -1;
    err = ITR_OK;
out:
    if (fd >= 0) {
        int saved = errno;
        close(fd);
        errno = saved;
    }
    return err;
}

int itr_udp_local_addr(int fd, itr_addr *out)
{
    memset(out, 0, sizeof(*out));
    socklen_t len = (socklen_t)sizeof(out->u);
    if (getsockname(fd, &out->u.sa, &len) != 0)
        return ITR_ERR_IO;
    return ITR_OK;
}

int itr_udp_buffer_sizes(int fd, int *rcvbuf_bytes, int *sndbuf_bytes)
{
    socklen_t len = (socklen_t)sizeof(int);
    if (rcvbuf_bytes && getsockopt(fd, SOL_SOCKET, SO_RCVBUF, rcvbuf_bytes, &len) != 0)
        return ITR_ERR_IO;
    len = (socklen_t)sizeof(int);
    if (sndbuf_bytes && getsockopt(fd, SOL_SOCKET, SO_SNDBUF, sndbuf_bytes, &len) != 0)
        return ITR_ERR_IO;
    return ITR_OK;
}

/* The steering program (classic BPF; the kernel runs it with the UDP payload at offset 0):
 *
 *     A = len;         if A < 8 goto hash      too short to hold a conn_id
 *     A = payload[4:8] (conn_id, big-endian; BPF_ABS loads are network order)
 *     if A == 0 goto hash                      handshake message 1
 *     return A % workers
 *   hash:
 *     return 0xffffffff                        out of range: the kernel falls back to its
 *                                              4-tuple hash
 *
 * Handshake initiations use the kernel's hash (PROTOCOL.md §11), not a random pick: the
 * hash keeps one source on one worker, so a retransmitted message 1 and the message 1 that
 * echoes a cookie reach the worker that holds the handshake and knows the cookie secret, and
 * the per-IP handshake limit counts on one worker. */
int itr_udp_attach_steering(int fd, uint32_t workers)
{
    if (workers == 0) {
        errno = EINVAL;
        return ITR_ERR_INVALID;
    }
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 8, 0, 4),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 4),        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 2, 0),
        BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, workers), BPF_STMT(BPF_RET | BPF_A, 0),
        BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),
    };
    struct sock_fprog prog = {
        .len = (unsigned short)(sizeof(code) / sizeof(code[0])),
        .filter = code,
    };
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof(prog)) != 0)
        return ITR_ERR_IO;
    return ITR_OK;
}

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103 /* linux/udp.h, 4.18 */
#endif
#ifndef UDP_GRO
#define UDP_GRO 104 /* linux/udp.h, 5.0 */
#endif

int itr_udp_gso_refused(int err)
{
    return err == EIO || err == EINVAL || err == EMSGSIZE || err == EOPNOTSUPP ||
           err == ENOPROTOOPT;
}

size_t itr_udp_gro_segment(const struct msghdr *h)
{
    if (h->msg_controllen == 0)
        return 0;
    /* CMSG_NXTHDR takes a non-const header but only reads it. */
    struct msghdr *m = (struct msghdr *)(uintptr_t)h;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
            int seg;
            memcpy(&seg, CMSG_DATA(c), sizeof(seg));
            return seg > 0 ? (size_t)seg : 0;
        }
    }
    return 0;
}

/* May dg[j] join a GSO message that starts with dg[i] and holds `total` bytes so far? */
static int gso_joins(const itr_datagram *dg, size_t i, size_t j, size_t total)
{
    return j - i < ITR_GSO_MAX_SEGMENTS && dg[j].len > 0 && dg[j].len <= dg[i].len &&
           total + dg[j].len <= ITR_GSO_MAX_BYTES && dg[j].addr.local == dg[i].addr.local &&
           itr_addr_equal(&dg[j].addr, &dg[i].addr);
}

size_t itr_udp_pack(const itr_datagram *dg, size_t n, int gso, struct mmsghdr *msgs,
                    struct iovec *iov, uint8_t *ctrl, uint32_t *counts)
{
    size_t m = 0;
    for (size_t i = 0; i < n; m++) {
        size_t k = 1, total = dg[i].len;
        if (gso && dg[i].len > 0 && dg[i].len <= ITR_GSO_MAX_SEGMENT) {
            while (i + k < n && gso_joins(dg, i, i + k, total)) {
                total += dg[i + k].len;
                k++;
                if (dg[i + k - 1].len < dg[i].len)
                    break; /* a shorter datagram can only be the last segment */
            }
        }
        for (size_t j = 0; j < k; j++) {
            /* sendmmsg takes non-const pointers but does not write through them. */
            iov[i + j].iov_base = (void *)(uintptr_t)dg[i + j].data;
            iov[i + j].iov_len = dg[i + j].len;
        }
        struct msghdr *h = &msgs[m].msg_hdr;
        memset(h, 0, sizeof(*h));
        h->msg_name = (void *)(uintptr_t)&dg[i].addr.u.sa;
        h->msg_namelen = itr_addr_len(&dg[i].addr);
        h->msg_iov = &iov[i];
        h->msg_iovlen = k;
        if (k > 1) {
            uint8_t *c = ctrl + m * ITR_GSO_CTRL_LEN;
            uint16_t seg = (uint16_t)dg[i].len;
            memset(c, 0, ITR_GSO_CTRL_LEN);
            h->msg_control = c;
            h->msg_controllen = CMSG_SPACE(sizeof(seg));
            struct cmsghdr *cm = CMSG_FIRSTHDR(h);
            cm->cmsg_level = SOL_UDP;
            cm->cmsg_type = UDP_SEGMENT;
            cm->cmsg_len = CMSG_LEN(sizeof(seg));
            memcpy(CMSG_DATA(cm), &seg, sizeof(seg));
        }
        msgs[m].msg_len = 0;
        counts[m] = (uint32_t)k;
        i += k;
    }
    return m;
}
