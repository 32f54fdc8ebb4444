/* memnet.c: an in-memory network with a scripted clock (see memnet.h). */
#include "memnet.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#define MEMNET_MAX_NODES 64

typedef struct memnet_dgram {
    uint64_t at;    /* delivery time */
    uint64_t order; /* FIFO among equal times */
    int to;
    itr_addr from;
    size_t len;
    uint8_t *data;
} memnet_dgram;

typedef struct memnet_node {
    itr_endpoint *ep;
    itr_addr addr;
} memnet_node;

struct memnet {
    memnet_config cfg;
    uint64_t now, order, rng[2];
    memnet_node nodes[MEMNET_MAX_NODES];
    int nnodes;
    memnet_dgram *heap;
    size_t n, cap;
    memnet_filter filter;
    void *filter_arg;
    memnet_stats stats;
};

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t memnet_rand(memnet *n)
{
    /* xorshift128+ */
    uint64_t s1 = n->rng[0];
    const uint64_t s0 = n->rng[1];
    n->rng[0] = s0;
    s1 ^= s1 << 23;
    n->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    return n->rng[1] + s0;
}

static double rand_unit(memnet *n)
{
    return (double)(memnet_rand(n) >> 11) / 9007199254740992.0;
}

void memnet_config_default(memnet_config *c)
{
    memset(c, 0, sizeof(*c));
    c->seed = 1;
    c->latency_ns = 1000000;
    c->max_inflight = 1000000;
}

int memnet_new(memnet **out, const memnet_config *c, uint64_t start_ns)
{
    memnet *n = calloc(1, sizeof(*n));
    if (!n)
        return -1;
    n->cfg = *c;
    n->now = start_ns;
    uint64_t x = c->seed;
    n->rng[0] = splitmix(&x);
    n->rng[1] = splitmix(&x);
    *out = n;
    return 0;
}

void memnet_free(memnet *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->n; i++)
        free(n->heap[i].data);
    free(n->heap);
    free(n);
}

int memnet_attach(memnet *n, itr_endpoint *ep, const itr_addr *addr)
{
    if (n->nnodes == MEMNET_MAX_NODES)
        return -1;
    n->nodes[n->nnodes].ep = ep;
    n->nodes[n->nnodes].addr = *addr;
    return n->nnodes++;
}

void memnet_set_endpoint(memnet *n, int node, itr_endpoint *ep)
{
    n->nodes[node].ep = ep;
}

void memnet_set_addr(memnet *n, int node, const itr_addr *addr)
{
    n->nodes[node].addr = *addr;
}

const itr_addr *memnet_addr(const memnet *n, int node)
{
    return &n->nodes[node].addr;
}

void memnet_set_filter(memnet *n, memnet_filter f, void *arg)
{
    n->filter = f;
    n->filter_arg = arg;
}

void memnet_set_impairments(memnet *n, double loss, double reorder, double dup)
{
    n->cfg.loss = loss;
    n->cfg.reorder = reorder;
    n->cfg.dup = dup;
}

uint64_t memnet_now(const memnet *n)
{
    return n->now;
}

size_t memnet_inflight(const memnet *n)
{
    return n->n;
}

void memnet_stats_get(const memnet *n, memnet_stats *out)
{
    *out = n->stats;
}

static int addr_same(const itr_addr *a, const itr_addr *b)
{
    if (a->u.sa.sa_family != b->u.sa.sa_family)
        return 0;
    if (a->u.sa.sa_family == AF_INET)
        return a->u.in.sin_port == b->u.in.sin_port &&
               a->u.in.sin_addr.s_addr == b->u.in.sin_addr.s_addr;
    if (a->u.sa.sa_family == AF_INET6)
        return a->u.in6.sin6_port == b->u.in6.sin6_port &&
               memcmp(&a->u.in6.sin6_addr, &b->u.in6.sin6_addr, 16) == 0;
    return 0;
}

static int find_node(const memnet *n, const itr_addr *a)
{
    for (int i = 0; i < n->nnodes; i++)
        if (addr_same(&n->nodes[i].addr, a))
            return i;
    return -1;
}

static int dgram_before(const memnet_dgram *a, const memnet_dgram *b)
{
    return a->at < b->at || (a->at == b->at && a->order < b->order);
}

static void heap_push(memnet *n, memnet_dgram d)
{
    if (n->n == n->cap) {
        size_t cap = n->cap ? n->cap * 2 : 1024;
        memnet_dgram *h = realloc(n->heap, cap * sizeof(*h));
        if (!h) {
            free(d.data);
            n->stats.overflow++;
            return;
        }
        n->heap = h;
        n->cap = cap;
    }
    size_t i = n->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!dgram_before(&d, &n->heap[p]))
            break;
        n->heap[i] = n->heap[p];
        i = p;
    }
    n->heap[i] = d;
}

static memnet_dgram heap_pop(memnet *n)
{
    memnet_dgram top = n->heap[0];
    memnet_dgram last = n->heap[--n->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n->n)
            break;
        if (c + 1 < n->n && dgram_before(&n->heap[c + 1], &n->heap[c]))
            c++;
        if (!dgram_before(&n->heap[c], &last))
            break;
        n->heap[i] = n->heap[c];
        i = c;
    }
    if (n->n)
        n->heap[i] = last;
    return top;
}

static void enqueue(memnet *n, int from, int to, const uint8_t *pkt, size_t len, uint64_t extra)
{
    if (n->n >= n->cfg.max_inflight) {
        n->stats.overflow++;
        return;
    }
    memnet_dgram d;
    d.data = malloc(len ? len : 1);
    if (!d.data) {
        n->stats.overflow++;
        return;
    }
    memcpy(d.data, pkt, len);
    d.len = len;
    d.to = to;
    d.from = n->nodes[from].addr;
    d.order = n->order++;
    uint64_t jitter = n->cfg.jitter_ns ? memnet_rand(n) % (n->cfg.jitter_ns + 1) : 0;
    d.at = n->now + n->cfg.latency_ns + jitter + extra;
    heap_push(n, d);
}

static void send_one(memnet *n, int from, const itr_datagram *dg)
{
    uint8_t buf[ITR_MAX_PACKET];
    size_t len = dg->len;
    n->stats.sent++;
    int to = find_node(n, &dg->addr);
    if (to < 0) {
        n->stats.unroutable++;
        return;
    }
    if (len > sizeof(buf))
        len = sizeof(buf);
    memcpy(buf, dg->data, len);
    if (n->filter && !n->filter(n->filter_arg, from, to, buf, &len)) {
        n->stats.filtered++;
        return;
    }
    if (n->cfg.loss > 0 && rand_unit(n) < n->cfg.loss) {
        n->stats.lost++;
        return;
    }
    uint64_t extra = 0;
    if (n->cfg.reorder > 0 && rand_unit(n) < n->cfg.reorder) {
        extra = n->cfg.reorder_delay_ns;
        n->stats.reordered++;
    }
    enqueue(n, from, to, buf, len, extra);
    if (n->cfg.dup > 0 && rand_unit(n) < n->cfg.dup) {
        n->stats.duplicated++;
        enqueue(n, from, to, buf, len, extra + n->cfg.latency_ns / 2 + 1);
    }
}

void memnet_collect(memnet *n)
{
    itr_datagram dg[64];
    for (int i = 0; i < n->nnodes; i++) {
        itr_endpoint *ep = n->nodes[i].ep;
        if (!ep)
            continue;
        size_t k;
        while ((k = itr_endpoint_tx_peek(ep, dg, 64)) > 0) {
            for (size_t j = 0; j < k; j++)
                send_one(n, i, &dg[j]);
            itr_endpoint_tx_consume(ep, k);
        }
    }
}

static uint64_t next_event(const memnet *n)
{
    uint64_t t = n->n ? n->heap[0].at : UINT64_MAX;
    for (int i = 0; i < n->nnodes; i++) {
        if (!n->nodes[i].ep)
            continue;
        uint64_t e = itr_endpoint_expiry(n->nodes[i].ep);
        if (e < t)
            t = e;
    }
    return t;
}

/* One event time: deliver everything due, flush receivers, run expiries, collect. */
static void step(memnet *n)
{
    int touched[MEMNET_MAX_NODES] = {0};
    while (n->n && n->heap[0].at <= n->now) {
        memnet_dgram d = heap_pop(n);
        itr_endpoint *ep = n->nodes[d.to].ep;
        if (ep) {
            n->stats.delivered++;
            if (itr_endpoint_recv(ep, &d.from, d.data, d.len, n->now) == ITR_OK)
                n->stats.accepted++;
            touched[d.to] = 1;
        }
        free(d.data);
    }
    for (int i = 0; i < n->nnodes; i++) {
        itr_endpoint *ep = n->nodes[i].ep;
        if (!ep)
            continue;
        if (touched[i])
            itr_endpoint_flush(ep, n->now);
        if (itr_endpoint_expiry(ep) <= n->now)
            itr_endpoint_on_expiry(ep, n->now);
    }
    memnet_collect(n);
}

void memnet_advance(memnet *n, uint64_t until)
{
    memnet_collect(n);
    for (;;) {
        uint64_t t = next_event(n);
        if (t > until)
            break;
        if (t > n->now)
            n->now = t;
        step(n);
    }
    if (until > n->now)
        n->now = until;
}

int memnet_run(memnet *n, uint64_t max_ns, uint64_t max_events, int (*done)(void *arg), void *arg)
{
    uint64_t until = n->now + max_ns;
    memnet_collect(n);
    for (uint64_t ev = 0; ev < max_events; ev++) {
        if (done && done(arg))
            return 1;
        uint64_t t = next_event(n);
        if (t > until)
            break;
        if (t > n->now)
            n->now = t;
        step(n);
    }
    if (done && done(arg))
        return 1;
    return 0;
}

int memnet_inject(memnet *n, int to, const itr_addr *from, const uint8_t *pkt, size_t len)
{
    itr_endpoint *ep = n->nodes[to].ep;
    if (!ep)
        return ITR_ERR_NOT_FOUND;
    int rc = itr_endpoint_recv(ep, from, pkt, len, n->now);
    itr_endpoint_flush(ep, n->now);
    memnet_collect(n);
    return rc;
}

itr_addr memnet_addr_v4(uint16_t port)
{
    itr_addr a;
    memset(&a, 0, sizeof(a));
    a.u.in.sin_family = AF_INET;
    a.u.in.sin_port = htons(port);
    a.u.in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return a;
}

itr_addr memnet_addr_v6(uint16_t port)
{
    itr_addr a;
    memset(&a, 0, sizeof(a));
    a.u.in6.sin6_family = AF_INET6;
    a.u.in6.sin6_port = htons(port);
    a.u.in6.sin6_addr = in6addr_loopback;
    return a;
}
