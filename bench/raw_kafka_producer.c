/* raw_kafka_producer: the Kafka ceiling of bench/run's kafka scenario: a bare librdkafka
 * producer, no gateway in between, into the same broker with the producer settings the
 * gateway's Kafka sink uses by default (acks=all, enable.idempotence=true, lz4, linger 5 ms).
 *
 *   raw-kafka-producer --brokers HOST:PORT[,...] --topic NAME --count N [--size BYTES]
 *                      [--rate PPS] [--keys N] [--headers] [--property KEY=VALUE]...
 *                      [--timeout SECONDS]
 *
 * Payloads are intentra-bench payloads (tools/bench_payload.h) of exactly --size bytes with
 * peer index = key index and a per-key sequence, so a consumer counts them exactly like the
 * gateway's output. Keys are 64 hex digits like the gateway's {peer} key, --keys distinct ones
 * round-robin; --headers adds the sink's six headers with its names and value formats
 * (intentra-peer, -shard, -topic, -seq, -intent, -received-ns). Latency is produce() -> delivery
 * report. One JSON line with the totals goes to stdout at the end; the exit status is 0 only if
 * every message was delivered.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "bench_payload.h"
#include "histogram.h"

#ifdef INTENTRA_JEMALLOC_CONF
#include <jemalloc/jemalloc.h>
/* The gateway's jemalloc options (CMakeLists.txt), so the ceiling runs on the same allocator. */
const char *malloc_conf = INTENTRA_JEMALLOC_CONF;
#endif

#define MAX_PROPS 64
#define KEY_LEN   64

typedef struct producer_stats {
    uint64_t delivered, failed;
    uint64_t first_err; /* rd_kafka_resp_err_t of the first failure, for the message */
    uint64_t last_dr_ns;
    histogram lat;
} producer_stats;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* Peak resident memory of this process image (VmHWM). Not getrusage's ru_maxrss: that one
 * survives execve, so a child of a large parent (the benchmark runner) would report the
 * parent's size. Returns -1 if /proc cannot be read. */
static long peak_rss_kib(void)
{
    char line[256];
    long kib = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* Delivery report, on the thread calling rd_kafka_poll/flush (ours): no locking needed. The
 * message's opaque carries its produce time. */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    producer_stats *st = opaque;
    uint64_t now = now_ns();
    (void)rk;
    if (m->err) {
        if (!st->failed)
            st->first_err = (uint64_t)m->err;
        st->failed++;
    } else {
        st->delivered++;
        histogram_add(&st->lat, now - (uint64_t)(uintptr_t)m->_private);
    }
    st->last_dr_ns = now;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: raw-kafka-producer --brokers LIST --topic NAME --count N [--size BYTES]\n"
            "                          [--rate PPS] [--keys N] [--headers]\n"
            "                          [--property KEY=VALUE]... [--timeout SECONDS]\n"
            "Produces N bench payloads with librdkafka and reports msgs/s and the\n"
            "produce->delivery-report latency.\n"
            "  --brokers LIST         bootstrap.servers\n"
            "  --topic NAME           destination topic\n"
            "  --count N              messages to produce\n"
            "  --size BYTES           payload size, >= %d (default 128)\n"
            "  --rate PPS             pace at this rate (default 0: as fast as possible)\n"
            "  --keys N               distinct 64-hex-digit keys, round-robin (default 50)\n"
            "  --headers              add the gateway sink's six headers (same names, formats)\n"
            "  --property KEY=VALUE   any librdkafka property (after the defaults:\n"
            "                         acks=all enable.idempotence=true compression.type=lz4\n"
            "                         linger.ms=5)\n"
            "  --timeout SECONDS      give up waiting for delivery reports (default 60)\n",
            BENCH_PAYLOAD_MIN);
}

static int parse_num(const char *flag, const char *v, double lo, double hi, double *out)
{
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || !(d >= lo && d <= hi)) {
        fprintf(stderr, "raw-kafka-producer: %s %s: expected a number in [%g, %g]\n", flag, v, lo,
                hi);
        return -1;
    }
    *out = d;
    return 0;
}

static int conf_set(rd_kafka_conf_t *conf, const char *k, const char *v)
{
    char errstr[512];
    if (rd_kafka_conf_set(conf, k, v, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "raw-kafka-producer: property %s=%s: %s\n", k, v, errstr);
        return -1;
    }
    return 0;
}

/* Produce one message, waiting (serving delivery reports) while the local queue is full.
 * key is not const because RD_KAFKA_V_KEY casts it to void *.
 * Returns 0, or -1 on a non-retriable error or when asked to stop. */
static int produce_one(rd_kafka_t *rk, rd_kafka_topic_t *rkt, char *payload, size_t len, char *key,
                       int headers, uint64_t seq)
{
    for (;;) {
        uint64_t t = now_ns();
        rd_kafka_resp_err_t err;
        if (headers) {
            /* The sink's header names and values (connectors/kafka/kafka_sink.c render()):
             * the same bytes per record on both sides. */
            char seqs[24], ts[24];
            snprintf(seqs, sizeof(seqs), "%" PRIu64, seq);
            snprintf(ts, sizeof(ts), "%" PRIu64, t);
            rd_kafka_headers_t *h = rd_kafka_headers_new(6);
            rd_kafka_header_add(h, "intentra-peer", -1, key, KEY_LEN);
            rd_kafka_header_add(h, "intentra-shard", -1, "default", -1);
            rd_kafka_header_add(h, "intentra-topic", -1, "bench", -1);
            rd_kafka_header_add(h, "intentra-seq", -1, seqs, -1);
            rd_kafka_header_add(h, "intentra-intent", -1, "reliable", -1);
            rd_kafka_header_add(h, "intentra-received-ns", -1, ts, -1);
            err = rd_kafka_producev(
                rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_VALUE(payload, len), RD_KAFKA_V_KEY(key, KEY_LEN), RD_KAFKA_V_HEADERS(h),
                RD_KAFKA_V_OPAQUE((void *)(uintptr_t)t), RD_KAFKA_V_END);
            if (err)
                rd_kafka_headers_destroy(h); /* not taken over on failure */
        } else {
            err =
                rd_kafka_producev(rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_VALUE(payload, len), RD_KAFKA_V_KEY(key, KEY_LEN),
                                  RD_KAFKA_V_OPAQUE((void *)(uintptr_t)t), RD_KAFKA_V_END);
        }
        if (!err)
            return 0;
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "raw-kafka-producer: produce: %s\n", rd_kafka_err2str(err));
            return -1;
        }
        if (stop_requested)
            return -1;
        rd_kafka_poll(rk, 1); /* the queue drains as delivery reports are served */
    }
}

int main(int argc, char **argv)
{
    const char *brokers = NULL, *topic = NULL;
    const char *props[MAX_PROPS];
    size_t nprops = 0;
    double count_d = -1, size_d = 128, rate = 0, keys_d = 50, timeout = 60;
    int headers = 0, status = 1;
    char errstr[512];
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_t *rkt = NULL;
    producer_stats *st = NULL;
    char(*keys)[KEY_LEN + 1] = NULL;
    uint64_t *seqs = NULL;

    for (int i = 1; i < argc; i++) {
        const char *f = argv[i];
        if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(f, "--headers")) {
            headers = 1;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "raw-kafka-producer: unknown flag or missing value: %s\n", f);
            return 2;
        }
        const char *v = argv[++i];
        int bad = 0;
        if (!strcmp(f, "--brokers"))
            brokers = v;
        else if (!strcmp(f, "--topic"))
            topic = v;
        else if (!strcmp(f, "--count"))
            bad = parse_num(f, v, 1, 1e10, &count_d);
        else if (!strcmp(f, "--size"))
            bad = parse_num(f, v, BENCH_PAYLOAD_MIN, 1 << 20, &size_d);
        else if (!strcmp(f, "--rate"))
            bad = parse_num(f, v, 0, 1e8, &rate);
        else if (!strcmp(f, "--keys"))
            bad = parse_num(f, v, 1, 1e6, &keys_d);
        else if (!strcmp(f, "--timeout"))
            bad = parse_num(f, v, 1, 86400, &timeout);
        else if (!strcmp(f, "--property")) {
            if (nprops == MAX_PROPS || !strchr(v, '=')) {
                fprintf(stderr,
                        "raw-kafka-producer: --property %s: expected KEY=VALUE (at most "
                        "%d)\n",
                        v, MAX_PROPS);
                return 2;
            }
            props[nprops++] = v;
        } else {
            fprintf(stderr, "raw-kafka-producer: unknown flag %s (see --help)\n", f);
            return 2;
        }
        if (bad)
            return 2;
    }
    if (!brokers || !topic || count_d < 1) {
        fprintf(stderr, "raw-kafka-producer: --brokers, --topic and --count are required\n");
        return 2;
    }
    uint64_t count = (uint64_t)count_d;
    size_t size = (size_t)size_d, nkeys = (size_t)keys_d;

    st = calloc(1, sizeof(*st));
    keys = calloc(nkeys, sizeof(*keys));
    seqs = calloc(nkeys, sizeof(*seqs));
    char *payload = malloc(size);
    if (!st || !keys || !seqs || !payload) {
        fprintf(stderr, "raw-kafka-producer: out of memory\n");
        free(payload);
        goto out;
    }
    histogram_init(&st->lat);
    for (size_t k = 0; k < nkeys; k++)
        snprintf(keys[k], sizeof(keys[k]), "%064zx", k);

    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (conf_set(conf, "bootstrap.servers", brokers) || conf_set(conf, "acks", "all") ||
        conf_set(conf, "enable.idempotence", "true") || conf_set(conf, "compression.type", "lz4") ||
        conf_set(conf, "linger.ms", "5")) {
        rd_kafka_conf_destroy(conf);
        free(payload);
        goto out;
    }
    for (size_t p = 0; p < nprops; p++) {
        char kv[512];
        snprintf(kv, sizeof(kv), "%s", props[p]);
        char *eq = strchr(kv, '=');
        *eq = 0;
        if (conf_set(conf, kv, eq + 1)) {
            rd_kafka_conf_destroy(conf);
            free(payload);
            goto out;
        }
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, st);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "raw-kafka-producer: rd_kafka_new: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        free(payload);
        goto out;
    }
    rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt) {
        fprintf(stderr, "raw-kafka-producer: topic %s: %s\n", topic,
                rd_kafka_err2str(rd_kafka_last_error()));
        free(payload);
        goto out;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    uint64_t produced = 0, t0 = now_ns();
    while (produced < count && !stop_requested) {
        if (rate > 0) {
            uint64_t due = (uint64_t)((double)(now_ns() - t0) / 1e9 * rate);
            if (produced >= due) {
                rd_kafka_poll(rk, 1); /* serve reports while waiting for the next tick */
                continue;
            }
        }
        uint32_t k = (uint32_t)(produced % nkeys);
        bench_payload_make(payload, size, k, seqs[k], now_ns());
        if (produce_one(rk, rkt, payload, size, keys[k], headers, seqs[k]) != 0)
            break;
        seqs[k]++;
        produced++;
        if ((produced & 1023) == 0)
            rd_kafka_poll(rk, 0);
    }
    uint64_t t_produced = now_ns();
    free(payload);
    /* Wait for every delivery report, bounded by --timeout. */
    uint64_t deadline = t_produced + (uint64_t)(timeout * 1e9);
    while (st->delivered + st->failed < produced && now_ns() < deadline && !stop_requested)
        rd_kafka_poll(rk, 50);
    double secs = st->last_dr_ns > t0 ? (double)(st->last_dr_ns - t0) / 1e9 : 0;
    double cpu = cpu_seconds();
    printf("{\"count\":%" PRIu64 ",\"produced\":%" PRIu64 ",\"delivered\":%" PRIu64
           ",\"failed\":%" PRIu64 ",\"first_error\":\"%s\",\"size\":%zu,\"seconds\":%.6f,"
           "\"produce_seconds\":%.6f,\"msgs_per_second\":%.1f,"
           "\"latency_ms\":{\"p50\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f},"
           "\"cpu_seconds\":%.3f,\"peak_rss_kib\":%ld}\n",
           count, produced, st->delivered, st->failed,
           st->failed ? rd_kafka_err2name((rd_kafka_resp_err_t)st->first_err) : "", size, secs,
           (double)(t_produced - t0) / 1e9, secs > 0 ? (double)st->delivered / secs : 0,
           (double)histogram_quantile(&st->lat, 0.50) / 1e6,
           (double)histogram_quantile(&st->lat, 0.99) / 1e6,
           (double)histogram_quantile(&st->lat, 0.999) / 1e6, (double)histogram_max(&st->lat) / 1e6,
           cpu, peak_rss_kib());
    fflush(stdout);
    status = st->delivered == count ? 0 : 1;
out:
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    if (rk) {
        rd_kafka_flush(rk, 1000);
        rd_kafka_destroy(rk);
    }
    free(st);
    free(keys);
    free(seqs);
    return status;
}
