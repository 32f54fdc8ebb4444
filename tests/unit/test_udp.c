/* test_udp.c: address parse/format (a table of good and bad inputs), equality, sockets bound
 * to port 0 on 127.0.0.1 and ::1, buffer sizes, and the SO_REUSEPORT steering program with
 * two sockets: conn_id 2k lands on socket 0, 2k+1 on socket 1, conn_id 0 by source hash. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include <intentra/driver.h>

#define MS 1000000ull

/* ---- parse / format ---- */

struct good_case {
    const char *in;
    int family;
    const char *formatted;
};

static const struct good_case good[] = {
    {"127.0.0.1:7400", AF_INET, "127.0.0.1:7400"},
    {"0.0.0.0:0", AF_INET, "0.0.0.0:0"},
    {"255.255.255.255:65535", AF_INET, "255.255.255.255:65535"},
    {"10.1.2.3:00080", AF_INET, "10.1.2.3:80"},
    {"localhost:7400", AF_INET, "127.0.0.1:7400"},
    {"[::1]:7400", AF_INET6, "[::1]:7400"},
    {"[::]:7400", AF_INET6, "[::]:7400"},
    {"[::ffff:1.2.3.4]:5", AF_INET6, "[::ffff:1.2.3.4]:5"},
    {"[2001:DB8::1]:443", AF_INET6, "[2001:db8::1]:443"},
    {"[fe80:0:0:0:0:0:0:1]:1", AF_INET6, "[fe80::1]:1"},
};

static const char *const bad[] = {
    "",
    "127.0.0.1",
    "127.0.0.1:",
    ":7400",
    "127.0.0.1:65536",
    "127.0.0.1:123456",
    "127.0.0.1:-1",
    "127.0.0.1:+1",
    "127.0.0.1:74a0",
    "127.0.0.1: 80",
    " 127.0.0.1:80",
    "::1:7400",
    "::1",
    "[::1]7400",
    "[::1",
    "[::1]:",
    "[::1]:x",
    "[]:80",
    "[1.2.3.4]:80",
    "[localhost]:80",
    "[::1%lo]:80",
    "example.com:80",
    "1.2.3:80",
    "256.1.1.1:80",
    "1.2.3.4.5:80",
    "[:::1]:80",
    "[0123456789012345678901234567890123456789012345678]:1",
};

static void test_parse_format_table(void **state)
{
    (void)state;
    char err[160], buf[64];
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        itr_addr a;
        memset(&a, 0xA5, sizeof(a));
        err[0] = '\0';
        int rc = itr_addr_parse(&a, good[i].in, err, sizeof(err));
        if (rc != ITR_OK)
            fail_msg("case %zu \"%s\": %s", i, good[i].in, err);
        assert_int_equal(a.u.sa.sa_family, good[i].family);
        assert_int_equal(a.local, 0);
        size_t n = itr_addr_format(&a, buf, sizeof(buf));
        assert_string_equal(buf, good[i].formatted);
        assert_int_equal(n, strlen(good[i].formatted));
        /* Formatting then parsing gives the same address. */
        itr_addr b;
        assert_int_equal(itr_addr_parse(&b, buf, err, sizeof(err)), ITR_OK);
        assert_true(itr_addr_equal(&a, &b));
        assert_int_equal(itr_addr_len(&a), good[i].family == AF_INET ? sizeof(struct sockaddr_in)
                                                                     : sizeof(struct sockaddr_in6));
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        itr_addr a;
        err[0] = '\0';
        int rc = itr_addr_parse(&a, bad[i], err, sizeof(err));
        if (rc != ITR_ERR_INVALID)
            fail_msg("bad case %zu \"%s\" was accepted", i, bad[i]);
        /* The message names the input and says why. */
        assert_true(strlen(err) > 0);
        assert_non_null(strstr(err, "address \""));
    }
    /* NULL input and a NULL error buffer are handled. */
    itr_addr a;
    assert_int_equal(itr_addr_parse(&a, NULL, err, sizeof(err)), ITR_ERR_INVALID);
    assert_int_equal(itr_addr_parse(&a, "bad", NULL, 0), ITR_ERR_INVALID);
}

static void test_format_truncates(void **state)
{
    (void)state;
    itr_addr a;
    char buf[8];
    assert_int_equal(itr_addr_parse(&a, "[2001:db8::1]:443", NULL, 0), ITR_OK);
    memset(buf, 'Z', sizeof(buf));
    size_t n = itr_addr_format(&a, buf, 5);
    assert_int_equal(n, 4);
    assert_string_equal(buf, "[200");
    assert_int_equal(buf[5], 'Z'); /* nothing written past len */
    assert_int_equal(itr_addr_format(&a, buf, 0), 0);
    itr_addr none;
    memset(&none, 0, sizeof(none));
    assert_true(itr_addr_format(&none, buf, sizeof(buf)) > 0);
    assert_int_equal(itr_addr_len(&none), 0);
}

static void test_addr_equal(void **state)
{
    (void)state;
    itr_addr a, b;
    assert_int_equal(itr_addr_parse(&a, "127.0.0.1:7400", NULL, 0), ITR_OK);
    assert_int_equal(itr_addr_parse(&b, "localhost:7400", NULL, 0), ITR_OK);
    assert_true(itr_addr_equal(&a, &b));
    b.local = 3; /* the socket index is not part of the address */
    assert_true(itr_addr_equal(&a, &b));
    assert_int_equal(itr_addr_parse(&b, "127.0.0.1:7401", NULL, 0), ITR_OK);
    assert_false(itr_addr_equal(&a, &b));
    assert_int_equal(itr_addr_parse(&b, "127.0.0.2:7400", NULL, 0), ITR_OK);
    assert_false(itr_addr_equal(&a, &b));
    assert_int_equal(itr_addr_parse(&b, "[::ffff:127.0.0.1]:7400", NULL, 0), ITR_OK);
    assert_false(itr_addr_equal(&a, &b));
    assert_int_equal(itr_addr_parse(&a, "[::1]:7400", NULL, 0), ITR_OK);
    assert_int_equal(itr_addr_parse(&b, "[0::1]:7400", NULL, 0), ITR_OK);
    assert_true(itr_addr_equal(&a, &b));
}

/* ---- sockets ---- */

static int recv_wait(int fd, void *buf, size_t len, int timeout_ms, itr_addr *from)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) != 1)
        return -1;
    socklen_t alen = (socklen_t)sizeof(from->u);
    return (int)recvfrom(fd, buf, len, 0, &from->u.sa, &alen);
}

static void ping(const char *bind_str, int expect_family)
{
    itr_addr bind_addr, la, lb, from;
    int a, b;
    char err[128], buf[64];
    assert_int_equal(itr_addr_parse(&bind_addr, bind_str, err, sizeof(err)), ITR_OK);
    itr_udp_options o = {.rcvbuf_bytes = 1 << 20, .sndbuf_bytes = 1 << 20};
    assert_int_equal(itr_udp_open(&bind_addr, &o, &a), ITR_OK);
    assert_int_equal(itr_udp_open(&bind_addr, NULL, &b), ITR_OK);
    assert_int_equal(itr_udp_local_addr(a, &la), ITR_OK);
    assert_int_equal(itr_udp_local_addr(b, &lb), ITR_OK);
    assert_int_equal(la.u.sa.sa_family, expect_family);
    /* Port 0 was resolved to a real port; the host part is what was asked for. */
    if (expect_family == AF_INET) {
        assert_int_not_equal(la.u.in.sin_port, 0);
        assert_int_equal(la.u.in.sin_addr.s_addr, htonl(INADDR_LOOPBACK));
    } else {
        assert_int_not_equal(la.u.in6.sin6_port, 0);
        assert_true(IN6_IS_ADDR_LOOPBACK(&la.u.in6.sin6_addr));
    }
    assert_false(itr_addr_equal(&la, &lb));

    /* Non-blocking: nothing queued means EAGAIN, not a hang. */
    assert_int_equal(recv(a, buf, sizeof(buf), 0), -1);
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);

    assert_int_equal(sendto(b, "ping", 4, 0, &la.u.sa, itr_addr_len(&la)), 4);
    assert_int_equal(recv_wait(a, buf, sizeof(buf), 2000, &from), 4);
    assert_memory_equal(buf, "ping", 4);
    assert_true(itr_addr_equal(&from, &lb));

    /* Buffer sizes: as root the FORCE variant grants the full size even above rmem_max; the
     * kernel reports twice what it granted. */
    int rcv = 0, snd = 0;
    assert_int_equal(itr_udp_buffer_sizes(a, &rcv, &snd), ITR_OK);
    assert_true(rcv > 0 && snd > 0);
    if (geteuid() == 0) {
        assert_true(rcv >= 2 << 20);
        assert_true(snd >= 2 << 20);
    }
    assert_int_equal(itr_udp_buffer_sizes(a, NULL, NULL), ITR_OK);
    close(a);
    close(b);
}

static void test_bind_v4(void **state)
{
    (void)state;
    ping("127.0.0.1:0", AF_INET);
}

static void test_bind_v6(void **state)
{
    (void)state;
    itr_addr a;
    int fd;
    assert_int_equal(itr_addr_parse(&a, "[::1]:0", NULL, 0), ITR_OK);
    if (itr_udp_open(&a, NULL, &fd) != ITR_OK) {
        if (errno == EADDRNOTAVAIL || errno == EAFNOSUPPORT) {
            print_message("no IPv6 loopback on this host: skipping\n");
            skip();
        }
        fail_msg("itr_udp_open [::1]:0: %s", strerror(errno));
    }
    close(fd);
    ping("[::1]:0", AF_INET6);
}

static void test_v6only(void **state)
{
    (void)state;
    itr_addr any6, l6, v4;
    int fd, cli;
    char buf[16];
    assert_int_equal(itr_addr_parse(&any6, "[::]:0", NULL, 0), ITR_OK);
    itr_udp_options o = {.v6only = 0};
    if (itr_udp_open(&any6, &o, &fd) != ITR_OK)
        skip();
    /* Dual-stack: an IPv4 datagram reaches a "[::]" socket unless v6only is set. */
    assert_int_equal(itr_udp_local_addr(fd, &l6), ITR_OK);
    assert_int_equal(itr_addr_parse(&v4, "127.0.0.1:0", NULL, 0), ITR_OK);
    v4.u.in.sin_port = l6.u.in6.sin6_port;
    cli = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(cli >= 0);
    assert_int_equal(sendto(cli, "v4", 2, 0, &v4.u.sa, itr_addr_len(&v4)), 2);
    itr_addr from;
    assert_int_equal(recv_wait(fd, buf, sizeof(buf), 2000, &from), 2);
    assert_int_equal(from.u.sa.sa_family, AF_INET6);
    assert_true(IN6_IS_ADDR_V4MAPPED(&from.u.in6.sin6_addr));
    close(fd);

    o.v6only = 1;
    assert_int_equal(itr_udp_open(&any6, &o, &fd), ITR_OK);
    int v = 0;
    socklen_t vl = sizeof(v);
    assert_int_equal(getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v, &vl), 0);
    assert_int_equal(v, 1);
    close(fd);
    close(cli);
}

static void test_open_errors(void **state)
{
    (void)state;
    itr_addr a, la;
    int fd, fd2;
    memset(&a, 0, sizeof(a));
    assert_int_equal(itr_udp_open(&a, NULL, &fd), ITR_ERR_IO); /* no family */
    assert_int_equal(itr_udp_open(NULL, NULL, &fd), ITR_ERR_IO);
    /* The same port twice without SO_REUSEPORT: EADDRINUSE. */
    assert_int_equal(itr_addr_parse(&a, "127.0.0.1:0", NULL, 0), ITR_OK);
    assert_int_equal(itr_udp_open(&a, NULL, &fd), ITR_OK);
    assert_int_equal(itr_udp_local_addr(fd, &la), ITR_OK);
    assert_int_equal(itr_udp_open(&la, NULL, &fd2), ITR_ERR_IO);
    assert_int_equal(errno, EADDRINUSE);
    /* SO_RXQ_OVFL is on. */
    int v = 0;
    socklen_t vl = sizeof(v);
    assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &v, &vl), 0);
    assert_int_equal(v, 1);
    close(fd);
    assert_int_equal(itr_udp_local_addr(-1, &la), ITR_ERR_IO);
    assert_int_equal(itr_udp_attach_steering(-1, 2), ITR_ERR_IO);
    assert_int_equal(itr_udp_attach_steering(-1, 0), ITR_ERR_INVALID);
}

/* ---- steering ---- */

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

struct group {
    int s[2];
    itr_addr addr;
};

static void group_open(struct group *g)
{
    itr_addr a;
    assert_int_equal(itr_addr_parse(&a, "127.0.0.1:0", NULL, 0), ITR_OK);
    itr_udp_options o = {.reuseport = 1};
    assert_int_equal(itr_udp_open(&a, &o, &g->s[0]), ITR_OK);
    assert_int_equal(itr_udp_local_addr(g->s[0], &g->addr), ITR_OK);
    /* Bound in worker order: socket 0 first, then socket 1 on the same port. */
    assert_int_equal(itr_udp_open(&g->addr, &o, &g->s[1]), ITR_OK);
    assert_int_equal(itr_udp_attach_steering(g->s[1], 2), ITR_OK);
}

/* Receive everything that arrives within the deadline; where[tag] = socket index. */
static int collect(struct group *g, int *where, int expect, size_t tag_off)
{
    int got = 0;
    uint64_t end = itr_now_ns() + 3000 * MS;
    while (got < expect && itr_now_ns() < end) {
        struct pollfd p[2] = {{.fd = g->s[0], .events = POLLIN}, {.fd = g->s[1], .events = POLLIN}};
        if (poll(p, 2, 100) <= 0)
            continue;
        for (int i = 0; i < 2; i++) {
            uint8_t buf[64];
            ssize_t n;
            while ((n = recv(g->s[i], buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
                uint32_t tag = n >= (ssize_t)(tag_off + 4) ? get_u32(buf + tag_off) : 0;
                if (tag < 4096) {
                    where[tag] = i;
                    got++;
                }
            }
        }
    }
    return got;
}

static void test_steering_conn_id(void **state)
{
    (void)state;
    struct group g;
    group_open(&g);
    int cli = socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(cli >= 0);
    static int where[4096];
    enum { N = 400 };
    for (int i = 0; i < N; i++)
        where[i] = -1;
    /* A 16-byte header: conn_id at bytes 4-7 (big-endian), a tag in bytes 8-11. */
    uint32_t x = 7;
    for (int i = 0; i < N; i++) {
        uint8_t pkt[16] = {0x10};
        x = x * 1664525u + 1013904223u;
        uint32_t k = (x >> 1) | 1; /* random nonzero k */
        uint32_t conn_id = (i % 2 == 0) ? 2 * k : 2 * k + 1;
        if (conn_id == 0)
            conn_id = 2;
        put_u32(pkt + 4, conn_id);
        put_u32(pkt + 8, (uint32_t)i);
        assert_int_equal(sendto(cli, pkt, sizeof(pkt), 0, &g.addr.u.sa, itr_addr_len(&g.addr)),
                         sizeof(pkt));
    }
    assert_int_equal(collect(&g, where, N, 8), N);
    for (int i = 0; i < N; i++)
        if (where[i] != i % 2)
            fail_msg("datagram %d (conn_id %s) landed on socket %d", i, i % 2 ? "odd" : "even",
                     where[i]);
    close(cli);
    close(g.s[0]);
    close(g.s[1]);
}

static void test_steering_handshake_hash(void **state)
{
    (void)state;
    struct group g;
    group_open(&g);
    static int where[4096];
    enum { CLIENTS = 32, PER = 8 };
    int cli[CLIENTS];
    for (int i = 0; i < CLIENTS * PER; i++)
        where[i] = -1;
    for (int c = 0; c < CLIENTS; c++) {
        cli[c] = socket(AF_INET, SOCK_DGRAM, 0);
        assert_true(cli[c] >= 0);
        for (int j = 0; j < PER; j++) {
            uint8_t pkt[16] = {0x12}; /* handshake message 1: conn_id 0 */
            put_u32(pkt + 8, (uint32_t)(c * PER + j));
            assert_int_equal(
                sendto(cli[c], pkt, sizeof(pkt), 0, &g.addr.u.sa, itr_addr_len(&g.addr)),
                sizeof(pkt));
        }
    }
    assert_int_equal(collect(&g, where, CLIENTS * PER, 8), CLIENTS * PER);
    /* Each source sticks to one socket (its retransmissions and cookie echo too)... */
    int on[2] = {0, 0};
    for (int c = 0; c < CLIENTS; c++) {
        for (int j = 1; j < PER; j++)
            assert_int_equal(where[c * PER + j], where[c * PER]);
        on[where[c * PER]]++;
    }
    /* ...and sources spread over both (all 32 on one: probability 2^-31). */
    assert_true(on[0] > 0 && on[1] > 0);
    /* Datagrams too short to hold a conn_id are delivered too (to be counted as drops). */
    uint8_t tiny[3] = {1, 2, 3};
    assert_int_equal(sendto(cli[0], tiny, sizeof(tiny), 0, &g.addr.u.sa, itr_addr_len(&g.addr)), 3);
    int arrived = 0;
    uint64_t end = itr_now_ns() + 3000 * MS;
    while (!arrived && itr_now_ns() < end) {
        struct pollfd p[2] = {{.fd = g.s[0], .events = POLLIN}, {.fd = g.s[1], .events = POLLIN}};
        if (poll(p, 2, 100) > 0)
            arrived = (p[0].revents | p[1].revents) & POLLIN;
    }
    assert_true(arrived);
    for (int c = 0; c < CLIENTS; c++)
        close(cli[c]);
    close(g.s[0]);
    close(g.s[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_format_table),
        cmocka_unit_test(test_format_truncates),
        cmocka_unit_test(test_addr_equal),
        cmocka_unit_test(test_bind_v4),
        cmocka_unit_test(test_bind_v6),
        cmocka_unit_test(test_v6only),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_steering_conn_id),
        cmocka_unit_test(test_steering_handshake_hash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
