/* histogram.h: a fixed-size log-linear latency histogram (HdrHistogram-like, ~3% precision),
 * 1 ns .. ~10^11 ns, no allocation. Single-threaded. */
#ifndef HISTOGRAM_H
#define HISTOGRAM_H

#include <stdint.h>
#include <string.h>

#define HIST_SUB 32 /* sub-buckets per power of two */
#define HIST_POW 40

typedef struct histogram {
    uint64_t counts[HIST_POW * HIST_SUB];
    uint64_t total, max;
} histogram;

static inline void histogram_init(histogram *h)
{
    memset(h, 0, sizeof(*h));
}

static inline unsigned histogram_bucket(uint64_t v)
{
    if (v < HIST_SUB)
        return (unsigned)v;
    unsigned p = 63u - (unsigned)__builtin_clzll(v); /* v in [2^p, 2^(p+1)) */
    unsigned shift = p - 5;                          /* 5 = log2(HIST_SUB) */
    unsigned b = (p - 4) * HIST_SUB + (unsigned)((v >> shift) - HIST_SUB);
    return b < HIST_POW * HIST_SUB ? b : HIST_POW * HIST_SUB - 1;
}

/* Upper edge of a bucket (what quantiles report). */
static inline uint64_t histogram_bucket_value(unsigned b)
{
    if (b < HIST_SUB)
        return b;
    unsigned p = b / HIST_SUB + 4, sub = b % HIST_SUB;
    unsigned shift = p - 5;
    return ((uint64_t)(HIST_SUB + sub + 1) << shift) - 1;
}

static inline void histogram_add(histogram *h, uint64_t v)
{
    h->counts[histogram_bucket(v)]++;
    h->total++;
    if (v > h->max)
        h->max = v;
}

static inline uint64_t histogram_quantile(const histogram *h, double q)
{
    if (!h->total)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->total);
    if (rank >= h->total)
        rank = h->total - 1;
    uint64_t seen = 0;
    for (unsigned b = 0; b < HIST_POW * HIST_SUB; b++) {
        seen += h->counts[b];
        if (seen > rank) {
            uint64_t v = histogram_bucket_value(b);
            return v < h->max ? v : h->max;
        }
    }
    return h->max;
}

static inline uint64_t histogram_max(const histogram *h)
{
    return h->max;
}

#endif
