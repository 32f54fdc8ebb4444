/* metrics.c: the Prometheus text writer and the /metrics page of a running gateway.
 *
 * Called on an admin thread. Everything it reads is a relaxed atomic load (transport and
 * gateway counters) or a snapshot taken under the sink-set lock, which is held only while
 * copying the sinks' counters, never while formatting. Collect first, then write family by
 * family: the text format wants all samples of a family in one group.
 */
#define _POSIX_C_SOURCE 200809L /* strdup */
#include "metrics.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <intentra/error.h>

#include "control.h"
#include "sinks.h"

/* ---- buffer ---- */

void gw_metrics_buf_init(gw_metrics_buf *b)
{
    memset(b, 0, sizeof(*b));
}

void gw_metrics_buf_free(gw_metrics_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

static int buf_reserve(gw_metrics_buf *b, size_t extra)
{
    if (b->failed)
        return -1;
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 16384;
    while (cap < b->len + extra + 1) {
        if (cap > SIZE_MAX / 2) {
            b->failed = 1;
            return -1;
        }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p) {
        b->failed = 1;
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void gw_metrics_buf_append(gw_metrics_buf *b, const char *s, size_t n)
{
    if (buf_reserve(b, n) < 0)
        return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void gw_metrics_buf_printf(gw_metrics_buf *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if ((size_t)n < sizeof(small)) {
        gw_metrics_buf_append(b, small, (size_t)n);
        return;
    }
    if (buf_reserve(b, (size_t)n) < 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* ---- writer ---- */

/* HELP text escapes backslash and newline; label values also escape the double quote. */
static void append_escaped(gw_metrics_buf *b, const char *s, int quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *rep = NULL;
        if (*s == '\\')
            rep = "\\\\";
        else if (*s == '\n')
            rep = "\\n";
        else if (quote && *s == '"')
            rep = "\\\"";
        if (!rep)
            continue;
        gw_metrics_buf_append(b, run, (size_t)(s - run));
        gw_metrics_buf_append(b, rep, 2);
        run = s + 1;
    }
    gw_metrics_buf_append(b, run, (size_t)(s - run));
}

void gw_prom_family(gw_metrics_buf *b, const char *name, gw_prom_type type, const char *help)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    gw_metrics_buf_printf(b, "# HELP %s ", name);
    append_escaped(b, help, 0);
    gw_metrics_buf_printf(b, "\n# TYPE %s %s\n", name, types[type]);
}

static void write_series(gw_metrics_buf *b, const char *name, const char *suffix,
                         const gw_prom_label *labels, size_t nlabels, const char *le)
{
    gw_metrics_buf_append(b, name, strlen(name));
    if (suffix)
        gw_metrics_buf_append(b, suffix, strlen(suffix));
    if (nlabels == 0 && !le)
        return;
    gw_metrics_buf_append(b, "{", 1);
    for (size_t i = 0; i < nlabels; i++) {
        gw_metrics_buf_printf(b, "%s%s=\"", i ? "," : "", labels[i].name);
        append_escaped(b, labels[i].value ? labels[i].value : "", 1);
        gw_metrics_buf_append(b, "\"", 1);
    }
    if (le)
        gw_metrics_buf_printf(b, "%sle=\"%s\"", nlabels ? "," : "", le);
    gw_metrics_buf_append(b, "}", 1);
}

/* The shortest %g form that reads back as v ("0.0005", not "0.00050000000000000001"), as
 * Prometheus client libraries print; %.17g always round-trips. */
static void format_double(char *out, size_t cap, double v)
{
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, v);
        if (strtod(out, NULL) == v)
            return;
    }
}

static void write_f64(gw_metrics_buf *b, double v)
{
    char num[48];
    if (v != v)
        gw_metrics_buf_append(b, " NaN\n", 5);
    else if (v > 1.7976931348623157e308)
        gw_metrics_buf_append(b, " +Inf\n", 6);
    else if (v < -1.7976931348623157e308)
        gw_metrics_buf_append(b, " -Inf\n", 6);
    else {
        format_double(num, sizeof(num), v);
        gw_metrics_buf_printf(b, " %s\n", num);
    }
}

void gw_prom_u64(gw_metrics_buf *b, const char *name, const gw_prom_label *labels, size_t nlabels,
                 uint64_t v)
{
    write_series(b, name, NULL, labels, nlabels, NULL);
    gw_metrics_buf_printf(b, " %llu\n", (unsigned long long)v);
}

void gw_prom_f64(gw_metrics_buf *b, const char *name, const gw_prom_label *labels, size_t nlabels,
                 double v)
{
    write_series(b, name, NULL, labels, nlabels, NULL);
    write_f64(b, v);
}

void gw_prom_histogram(gw_metrics_buf *b, const char *name, const gw_prom_label *labels,
                       size_t nlabels, const double *bounds, const uint64_t *cumulative,
                       size_t nbounds, uint64_t count, double sum)
{
    char le[48];
    for (size_t i = 0; i < nbounds; i++) {
        format_double(le, sizeof(le), bounds[i]);
        write_series(b, name, "_bucket", labels, nlabels, le);
        gw_metrics_buf_printf(b, " %llu\n", (unsigned long long)cumulative[i]);
    }
    write_series(b, name, "_bucket", labels, nlabels, "+Inf");
    gw_metrics_buf_printf(b, " %llu\n", (unsigned long long)count);
    write_series(b, name, "_sum", labels, nlabels, NULL);
    write_f64(b, sum);
    write_series(b, name, "_count", labels, nlabels, NULL);
    gw_metrics_buf_printf(b, " %llu\n", (unsigned long long)count);
}

/* ---- process metrics (/proc) ---- */

static int read_small_file(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n ? 0 : -1;
}

static int boot_time_seconds(unsigned long long *out)
{
    char buf[16384];
    if (read_small_file("/proc/stat", buf, sizeof(buf)) < 0)
        return -1;
    const char *p = strstr(buf, "\nbtime ");
    if (!p)
        return -1;
    return sscanf(p + 7, "%llu", out) == 1 ? 0 : -1;
}

static long count_open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n > 0 ? n - 1 : 0; /* not the directory stream's own descriptor */
}

int gw_metrics_render_process(gw_metrics_buf *b)
{
    char stat[2048];
    long ticks = sysconf(_SC_CLK_TCK);
    long page = sysconf(_SC_PAGESIZE);
    if (ticks > 0 && page > 0 && read_small_file("/proc/self/stat", stat, sizeof(stat)) == 0) {
        /* The command name is in parentheses and may contain anything: parse after the last
         * ')'. Then fields 3.. of proc(5): state ppid pgrp session tty tpgid flags minflt
         * cminflt majflt cmajflt utime(14) stime(15) cutime cstime priority nice threads
         * itrealvalue starttime(22) vsize(23) rss(24). */
        const char *p = strrchr(stat, ')');
        unsigned long long utime, stime, start, vsize, rss;
        if (p && sscanf(p + 1,
                        " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d "
                        "%*d %*d %llu %llu %llu",
                        &utime, &stime, &start, &vsize, &rss) == 5) {
            gw_prom_family(b, "process_cpu_seconds_total", GW_PROM_COUNTER,
                           "Total user and system CPU time spent in seconds.");
            gw_prom_f64(b, "process_cpu_seconds_total", NULL, 0,
                        (double)(utime + stime) / (double)ticks);
            gw_prom_family(b, "process_resident_memory_bytes", GW_PROM_GAUGE,
                           "Resident memory size in bytes.");
            gw_prom_u64(b, "process_resident_memory_bytes", NULL, 0, rss * (uint64_t)page);
            gw_prom_family(b, "process_virtual_memory_bytes", GW_PROM_GAUGE,
                           "Virtual memory size in bytes.");
            gw_prom_u64(b, "process_virtual_memory_bytes", NULL, 0, vsize);
            unsigned long long btime;
            if (boot_time_seconds(&btime) == 0) {
                gw_prom_family(b, "process_start_time_seconds", GW_PROM_GAUGE,
                               "Start time of the process since unix epoch in seconds.");
                gw_prom_f64(b, "process_start_time_seconds", NULL, 0,
                            (double)btime + (double)start / (double)ticks);
            }
        }
    }
    long fds = count_open_fds();
    if (fds >= 0) {
        gw_prom_family(b, "process_open_fds", GW_PROM_GAUGE, "Number of open file descriptors.");
        gw_prom_u64(b, "process_open_fds", NULL, 0, (uint64_t)fds);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        gw_prom_family(b, "process_max_fds", GW_PROM_GAUGE,
                       "Maximum number of open file descriptors.");
        gw_prom_u64(b, "process_max_fds", NULL, 0,
                    rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur);
    }
    return b->failed ? ITR_ERR_NOMEM : ITR_OK;
}

/* ---- transport (summed over workers) ---- */

static void render_transport(struct gw_gateway *g, gw_metrics_buf *b)
{
    itr_stats sum;
    itr_driver_stats dsum;
    memset(&sum, 0, sizeof(sum));
    memset(&dsum, 0, sizeof(dsum));
    unsigned workers = gw_ctl_worker_count(g);
    for (unsigned w = 0; w < workers; w++) {
        itr_stats s;
        itr_driver_stats d;
        memset(&s, 0, sizeof(s));
        memset(&d, 0, sizeof(d));
        gw_ctl_worker_stats(g, w, &s, &d);
        sum.packets_received += s.packets_received;
        sum.packets_sent += s.packets_sent;
        sum.bytes_received += s.bytes_received;
        sum.bytes_sent += s.bytes_sent;
        for (int r = 0; r < ITR_DROP_REASON_COUNT; r++)
            sum.dropped[r] += s.dropped[r];
        for (int r = 0; r < ITR_CLOSE_REASON_COUNT; r++)
            sum.closes[r] += s.closes[r];
        sum.handshakes_completed += s.handshakes_completed;
        sum.handshakes_failed += s.handshakes_failed;
        sum.handshakes_initiated += s.handshakes_initiated;
        sum.cookies_sent += s.cookies_sent;
        sum.rekeys += s.rekeys;
        sum.retransmits += s.retransmits;
        sum.strike_events += s.strike_events;
        sum.messages_delivered += s.messages_delivered;
        sum.messages_sent += s.messages_sent;
        sum.handshakes_in_flight += s.handshakes_in_flight;
        sum.sessions_active += s.sessions_active;
        sum.reorder_bytes += s.reorder_bytes;
        sum.tx_pool_in_use += s.tx_pool_in_use;
        dsum.kernel_drops += d.kernel_drops;
        dsum.recv_batches += d.recv_batches;
        dsum.send_batches += d.send_batches;
        dsum.send_errors += d.send_errors;
        dsum.send_blocked += d.send_blocked;
        dsum.rx_coalesce_waits += d.rx_coalesce_waits;
        dsum.gro_datagrams += d.gro_datagrams;
        dsum.gso_datagrams += d.gso_datagrams;
    }

    /* The crate's nine names first (docs/METRICS.md has the mapping). */
    static const struct {
        const char *name, *help;
        gw_prom_type type;
        size_t off;
    } simple[] = {
        {"intentra_packets_received_total", "Datagrams received from the network.", GW_PROM_COUNTER,
         offsetof(itr_stats, packets_received)},
        {"intentra_packets_dropped_rate_limit_total",
         "Datagrams dropped by the per-peer rate limit, before decryption.", GW_PROM_COUNTER,
         offsetof(itr_stats, dropped) + sizeof(uint64_t) * ITR_DROP_RATE_LIMIT},
        {"intentra_packets_dropped_crypto_total",
         "Datagrams dropped because authentication (AEAD or handshake) failed.", GW_PROM_COUNTER,
         offsetof(itr_stats, dropped) + sizeof(uint64_t) * ITR_DROP_CRYPTO},
        {"intentra_replay_rejections_total",
         "Authenticated datagrams rejected by the 1,024-packet replay window.", GW_PROM_COUNTER,
         offsetof(itr_stats, dropped) + sizeof(uint64_t) * ITR_DROP_REPLAY},
        {"intentra_handshake_in_flight", "Handshakes started and not yet completed.", GW_PROM_GAUGE,
         offsetof(itr_stats, handshakes_in_flight)},
        {"intentra_connections_active", "Established sessions.", GW_PROM_GAUGE,
         offsetof(itr_stats, sessions_active)},
        {"intentra_strike_events_total", "Protocol violations by authenticated peers.",
         GW_PROM_COUNTER, offsetof(itr_stats, strike_events)},
        {"intentra_reorder_buffer_bytes", "Bytes held in Reliable reorder buffers, all peers.",
         GW_PROM_GAUGE, offsetof(itr_stats, reorder_bytes)},
        {"intentra_packets_sent_total", "Datagrams queued for sending.", GW_PROM_COUNTER,
         offsetof(itr_stats, packets_sent)},
        {"intentra_bytes_received_total", "Datagram bytes received.", GW_PROM_COUNTER,
         offsetof(itr_stats, bytes_received)},
        {"intentra_bytes_sent_total", "Datagram bytes sent.", GW_PROM_COUNTER,
         offsetof(itr_stats, bytes_sent)},
        {"intentra_handshakes_completed_total", "Handshakes that established a session.",
         GW_PROM_COUNTER, offsetof(itr_stats, handshakes_completed)},
        {"intentra_handshakes_failed_total", "Handshakes that failed or timed out.",
         GW_PROM_COUNTER, offsetof(itr_stats, handshakes_failed)},
        {"intentra_handshakes_initiated_total", "Handshakes this endpoint initiated.",
         GW_PROM_COUNTER, offsetof(itr_stats, handshakes_initiated)},
        {"intentra_cookies_sent_total", "Cookie replies sent to initiators under load.",
         GW_PROM_COUNTER, offsetof(itr_stats, cookies_sent)},
        {"intentra_rekeys_total", "Session key rotations.", GW_PROM_COUNTER,
         offsetof(itr_stats, rekeys)},
        {"intentra_retransmits_total", "Reliable messages retransmitted.", GW_PROM_COUNTER,
         offsetof(itr_stats, retransmits)},
        {"intentra_messages_delivered_total", "Messages delivered to the gateway by the transport.",
         GW_PROM_COUNTER, offsetof(itr_stats, messages_delivered)},
        {"intentra_messages_sent_total", "Messages sent to peers (reverse path).", GW_PROM_COUNTER,
         offsetof(itr_stats, messages_sent)},
        {"intentra_tx_pool_in_use", "Slots holding unacknowledged Reliable sends.", GW_PROM_GAUGE,
         offsetof(itr_stats, tx_pool_in_use)},
    };
    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
        uint64_t v;
        memcpy(&v, (const char *)&sum + simple[i].off, sizeof(v));
        gw_prom_family(b, simple[i].name, simple[i].type, simple[i].help);
        gw_prom_u64(b, simple[i].name, NULL, 0, v);
    }

    gw_prom_family(b, "intentra_connection_closes_total", GW_PROM_COUNTER,
                   "Sessions closed, by reason.");
    for (int r = 0; r < ITR_CLOSE_REASON_COUNT; r++) {
        gw_prom_label l = {"reason", itr_close_reason_name((itr_close_reason)r)};
        gw_prom_u64(b, "intentra_connection_closes_total", &l, 1, sum.closes[r]);
    }
    gw_prom_family(b, "intentra_packets_dropped_total", GW_PROM_COUNTER,
                   "Datagrams dropped, by reason (every drop counted under exactly one).");
    for (int r = 0; r < ITR_DROP_REASON_COUNT; r++) {
        gw_prom_label l = {"reason", itr_drop_reason_name((itr_drop_reason)r)};
        gw_prom_u64(b, "intentra_packets_dropped_total", &l, 1, sum.dropped[r]);
    }

    const struct {
        const char *name, *help;
        uint64_t v;
    } drv[] = {
        {"intentra_kernel_receive_drops_total",
         "Datagrams the kernel dropped because a socket receive buffer was full (SO_RXQ_OVFL).",
         dsum.kernel_drops},
        {"intentra_receive_batches_total", "recvmmsg calls that returned datagrams.",
         dsum.recv_batches},
        {"intentra_send_batches_total", "sendmmsg calls.", dsum.send_batches},
        {"intentra_send_errors_total", "sendmmsg failures other than a full socket buffer.",
         dsum.send_errors},
        {"intentra_send_blocked_total", "Times a socket send buffer was full (EAGAIN).",
         dsum.send_blocked},
        {"intentra_receive_coalesce_waits_total",
         "Waits after a short receive batch under steady load (transport.receive_coalesce_us).",
         dsum.rx_coalesce_waits},
        {"intentra_receive_gro_datagrams_total",
         "Datagrams the kernel delivered several to a buffer (transport.udp_gro).",
         dsum.gro_datagrams},
        {"intentra_send_gso_datagrams_total",
         "Datagrams sent several to a message (transport.udp_gso).", dsum.gso_datagrams},
    };
    for (size_t i = 0; i < sizeof(drv) / sizeof(drv[0]); i++) {
        gw_prom_family(b, drv[i].name, GW_PROM_COUNTER, drv[i].help);
        gw_prom_u64(b, drv[i].name, NULL, 0, drv[i].v);
    }
    gw_prom_family(b, "intentra_gateway_workers", GW_PROM_GAUGE, "Packet worker threads.");
    gw_prom_u64(b, "intentra_gateway_workers", NULL, 0, workers);
}

/* ---- gateway-wide ---- */

static void render_gateway(struct gw_gateway *g, gw_metrics_buf *b)
{
    gw_gateway_counters c;
    memset(&c, 0, sizeof(c));
    gw_ctl_counters(g, &c);

    gw_prom_family(b, "intentra_gateway_info", GW_PROM_GAUGE,
                   "Constant 1, labelled with the gateway version.");
    gw_prom_label vl = {"version", INTENTRA_VERSION};
    gw_prom_u64(b, "intentra_gateway_info", &vl, 1, 1);
    gw_prom_family(b, "intentra_gateway_start_time_seconds", GW_PROM_GAUGE,
                   "Wall-clock time the gateway started, seconds since the epoch.");
    gw_prom_f64(b, "intentra_gateway_start_time_seconds", NULL, 0, (double)c.start_wall_ns / 1e9);
    gw_prom_family(b, "intentra_gateway_reloads_total", GW_PROM_COUNTER,
                   "Configuration reloads (SIGHUP), by result.");
    gw_prom_label ok = {"result", "ok"}, failed = {"result", "failed"};
    gw_prom_u64(b, "intentra_gateway_reloads_total", &ok, 1, c.reloads_ok);
    gw_prom_u64(b, "intentra_gateway_reloads_total", &failed, 1, c.reloads_failed);
    gw_prom_family(b, "intentra_gateway_snapshots_published_total", GW_PROM_COUNTER,
                   "Routing snapshots published (start-up, reloads, admin writes).");
    gw_prom_u64(b, "intentra_gateway_snapshots_published_total", NULL, 0, c.snapshots_published);
    gw_prom_family(b, "intentra_gateway_message_pool_bytes", GW_PROM_GAUGE,
                   "Bytes of the message pools holding in-flight messages, all workers.");
    gw_prom_u64(b, "intentra_gateway_message_pool_bytes", NULL, 0, c.message_pool_bytes_in_use);
    gw_prom_family(b, "intentra_gateway_message_pool_capacity_bytes", GW_PROM_GAUGE,
                   "Capacity of the message pools, all workers (limits.message_pool_bytes).");
    gw_prom_u64(b, "intentra_gateway_message_pool_capacity_bytes", NULL, 0, c.message_pool_bytes);
    gw_prom_family(b, "intentra_gateway_publishes_total", GW_PROM_COUNTER,
                   "Reverse-path publish requests accepted (admin API, Kafka consumer).");
    gw_prom_u64(b, "intentra_gateway_publishes_total", NULL, 0, c.publishes);
    gw_prom_family(b, "intentra_gateway_publish_failures_total", GW_PROM_COUNTER,
                   "Reverse-path publishes that failed for at least one targeted peer.");
    gw_prom_u64(b, "intentra_gateway_publish_failures_total", NULL, 0, c.publish_failures);
    gw_prom_family(b, "intentra_gateway_security_events_total", GW_PROM_COUNTER,
                   "Security events reported by the transport, by event.");
    for (int e = 0; e < ITR_SEC_EVENT_COUNT; e++) {
        gw_prom_label l = {"event", itr_security_event_name((itr_security_event)e)};
        gw_prom_u64(b, "intentra_gateway_security_events_total", &l, 1, c.security_events[e]);
    }
}

/* ---- per shard ---- */

struct shard_row {
    char *name;
    gw_shard_counters c;
};

struct shard_rows {
    struct shard_row *rows;
    size_t n, cap;
    int failed;
};

static void collect_shard(void *arg, const char *shard, const gw_shard_counters *c)
{
    struct shard_rows *s = arg;
    if (s->failed)
        return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        struct shard_row *r = realloc(s->rows, cap * sizeof(*r));
        if (!r) {
            s->failed = 1;
            return;
        }
        s->rows = r;
        s->cap = cap;
    }
    char *name = strdup(shard ? shard : "");
    if (!name) {
        s->failed = 1;
        return;
    }
    s->rows[s->n].name = name;
    s->rows[s->n].c = *c;
    s->n++;
}

static void render_shards(struct gw_gateway *g, gw_metrics_buf *b)
{
    struct shard_rows s;
    memset(&s, 0, sizeof(s));
    gw_ctl_foreach_shard(g, collect_shard, &s);
    if (s.failed) {
        b->failed = 1;
        goto out;
    }
    static const char *const intents[2] = {"realtime", "reliable"};
    gw_prom_family(b, "intentra_gateway_shard_messages_total", GW_PROM_COUNTER,
                   "Messages received from the shard's peers, by intent.");
    for (size_t i = 0; i < s.n; i++) {
        for (int k = 0; k < 2; k++) {
            gw_prom_label l[2] = {{"shard", s.rows[i].name}, {"intent", intents[k]}};
            gw_prom_u64(b, "intentra_gateway_shard_messages_total", l, 2, s.rows[i].c.messages[k]);
        }
    }
    gw_prom_family(b, "intentra_gateway_shard_bytes_total", GW_PROM_COUNTER,
                   "Message body bytes received from the shard's peers, by intent.");
    for (size_t i = 0; i < s.n; i++) {
        for (int k = 0; k < 2; k++) {
            gw_prom_label l[2] = {{"shard", s.rows[i].name}, {"intent", intents[k]}};
            gw_prom_u64(b, "intentra_gateway_shard_bytes_total", l, 2, s.rows[i].c.bytes[k]);
        }
    }
    const struct {
        const char *name, *help;
        gw_prom_type type;
        size_t off;
    } fam[] = {
        {"intentra_gateway_shard_unrouted_total",
         "Messages no route matched (Reliable ones are acknowledged).", GW_PROM_COUNTER,
         offsetof(gw_shard_counters, unrouted)},
        {"intentra_gateway_shard_deferred_total",
         "Reliable messages refused because a sink was full (the sender is throttled).",
         GW_PROM_COUNTER, offsetof(gw_shard_counters, deferred)},
        {"intentra_gateway_shard_dropped_total",
         "Realtime messages dropped before reaching a sink (message pool full).", GW_PROM_COUNTER,
         offsetof(gw_shard_counters, dropped)},
        {"intentra_gateway_shard_peers", "Live sessions of the shard's peers.", GW_PROM_GAUGE,
         offsetof(gw_shard_counters, peers)},
    };
    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        gw_prom_family(b, fam[f].name, fam[f].type, fam[f].help);
        for (size_t i = 0; i < s.n; i++) {
            uint64_t v;
            memcpy(&v, (const char *)&s.rows[i].c + fam[f].off, sizeof(v));
            gw_prom_label l = {"shard", s.rows[i].name};
            gw_prom_u64(b, fam[f].name, &l, 1, v);
        }
    }
out:
    for (size_t i = 0; i < s.n; i++)
        free(s.rows[i].name);
    free(s.rows);
}

/* ---- per sink ---- */

struct sink_row {
    char *name;
    char *type;
    int required;
    gw_sink_status st;
    gw_sink_metrics m;
};

/* Copy every sink's counters under the sink-set lock (a reload swaps the set). */
static struct sink_row *collect_sinks(struct gw_gateway *g, size_t *n_out, int *failed)
{
    struct sink_row *rows = NULL;
    size_t n = 0;
    *failed = 0;
    struct gw_sinkset *set = gw_ctl_sinks_lock(g);
    if (!set)
        goto out;
    unsigned count = gw_sinkset_count(set);
    if (count == 0)
        goto out;
    rows = calloc(count, sizeof(*rows));
    if (!rows) {
        *failed = 1;
        goto out;
    }
    for (unsigned i = 0; i < count; i++) {
        const char *name = gw_sinkset_name(set, i);
        const char *type = gw_sinkset_type(set, i);
        rows[n].name = strdup(name ? name : "");
        rows[n].type = strdup(type ? type : "");
        if (!rows[n].name || !rows[n].type) {
            free(rows[n].name);
            free(rows[n].type);
            *failed = 1;
            break;
        }
        rows[n].required = gw_sinkset_required(set, i);
        gw_sinkset_status(set, i, &rows[n].st);
        gw_sinkset_metrics(set, i, &rows[n].m);
        n++;
    }
out:
    gw_ctl_sinks_unlock(g);
    *n_out = n;
    return rows;
}

static void render_sinks(struct gw_gateway *g, gw_metrics_buf *b)
{
    size_t n = 0;
    int failed = 0;
    struct sink_row *rows = collect_sinks(g, &n, &failed);
    if (failed)
        b->failed = 1;

    gw_prom_family(b, "intentra_gateway_sink_info", GW_PROM_GAUGE,
                   "Constant 1 per configured sink, labelled with its type and whether it is "
                   "required for readiness.");
    for (size_t i = 0; i < n; i++) {
        gw_prom_label l[3] = {{"sink", rows[i].name},
                              {"type", rows[i].type},
                              {"required", rows[i].required ? "true" : "false"}};
        gw_prom_u64(b, "intentra_gateway_sink_info", l, 3, 1);
    }
    gw_prom_family(b, "intentra_gateway_sink_up", GW_PROM_GAUGE,
                   "1 when the sink takes data (state up or degraded), else 0.");
    for (size_t i = 0; i < n; i++) {
        gw_prom_label l = {"sink", rows[i].name};
        int up = rows[i].st.state == GW_SINK_UP || rows[i].st.state == GW_SINK_DEGRADED;
        gw_prom_u64(b, "intentra_gateway_sink_up", &l, 1, (uint64_t)up);
    }
    gw_prom_family(b, "intentra_gateway_sink_state", GW_PROM_GAUGE,
                   "1 for the sink's current state, 0 for the others.");
    for (size_t i = 0; i < n; i++) {
        for (gw_sink_state s = GW_SINK_STARTING; s <= GW_SINK_CLOSED; s++) {
            gw_prom_label l[2] = {{"sink", rows[i].name}, {"state", gw_sink_state_name(s)}};
            gw_prom_u64(b, "intentra_gateway_sink_state", l, 2, (uint64_t)(rows[i].st.state == s));
        }
    }
    gw_prom_family(b, "intentra_gateway_sink_delivered_total", GW_PROM_COUNTER,
                   "Deliveries the sink completed durably.");
    for (size_t i = 0; i < n; i++) {
        gw_prom_label l = {"sink", rows[i].name};
        gw_prom_u64(b, "intentra_gateway_sink_delivered_total", &l, 1, rows[i].m.delivered_total);
    }
    gw_prom_family(b, "intentra_gateway_sink_discarded_total", GW_PROM_COUNTER,
                   "Deliveries discarded (Realtime drop policy, shutdown), by reason.");
    for (size_t i = 0; i < n; i++) {
        for (int r = 0; r < GW_REASON_COUNT; r++) {
            gw_prom_label l[2] = {{"sink", rows[i].name}, {"reason", gw_sink_reason_names[r]}};
            gw_prom_u64(b, "intentra_gateway_sink_discarded_total", l, 2,
                        rows[i].m.discarded_total[r]);
        }
    }
    gw_prom_family(b, "intentra_gateway_sink_dead_letter_total", GW_PROM_COUNTER,
                   "Deliveries that failed permanently and went to the dead-letter file, by "
                   "reason.");
    for (size_t i = 0; i < n; i++) {
        for (int r = 0; r < GW_REASON_COUNT; r++) {
            gw_prom_label l[2] = {{"sink", rows[i].name}, {"reason", gw_sink_reason_names[r]}};
            gw_prom_u64(b, "intentra_gateway_sink_dead_letter_total", l, 2,
                        rows[i].m.dead_letter_total[r]);
        }
    }
    gw_prom_family(b, "intentra_gateway_sink_errors_total", GW_PROM_COUNTER,
                   "Errors reported by the sink (each retried failure counts), by stage.");
    for (size_t i = 0; i < n; i++) {
        for (int s = 0; s < GW_STAGE_COUNT; s++) {
            gw_prom_label l[2] = {{"sink", rows[i].name}, {"stage", gw_sink_stage_names[s]}};
            gw_prom_u64(b, "intentra_gateway_sink_errors_total", l, 2, rows[i].m.errors_total[s]);
        }
    }
    gw_prom_family(b, "intentra_gateway_sink_queue_messages", GW_PROM_GAUGE,
                   "Deliveries queued for the sink and not yet submitted, by class.");
    for (size_t i = 0; i < n; i++) {
        gw_prom_label l[2] = {{"sink", rows[i].name}, {"class", "reliable"}};
        gw_prom_u64(b, "intentra_gateway_sink_queue_messages", l, 2, rows[i].m.queue_reliable);
        l[1].value = "realtime";
        gw_prom_u64(b, "intentra_gateway_sink_queue_messages", l, 2, rows[i].m.queue_realtime);
    }
    const struct {
        const char *name, *help;
        size_t off;
    } gauges[] = {
        {"intentra_gateway_sink_in_flight", "Deliveries submitted to the sink, not completed.",
         offsetof(gw_sink_metrics, in_flight)},
        {"intentra_gateway_sink_in_flight_bytes", "Bytes of the deliveries in flight.",
         offsetof(gw_sink_metrics, in_flight_bytes)},
        {"intentra_gateway_sink_reserved_messages",
         "Reliable messages admitted for the sink and not yet completed.",
         offsetof(gw_sink_metrics, reserved_messages)},
        {"intentra_gateway_sink_reserved_bytes",
         "Bytes of Reliable messages admitted and not yet completed (max_inflight_bytes bound).",
         offsetof(gw_sink_metrics, reserved_bytes)},
    };
    for (size_t f = 0; f < sizeof(gauges) / sizeof(gauges[0]); f++) {
        gw_prom_family(b, gauges[f].name, GW_PROM_GAUGE, gauges[f].help);
        for (size_t i = 0; i < n; i++) {
            uint64_t v;
            memcpy(&v, (const char *)&rows[i].m + gauges[f].off, sizeof(v));
            gw_prom_label l = {"sink", rows[i].name};
            gw_prom_u64(b, gauges[f].name, &l, 1, v);
        }
    }
    gw_prom_family(b, "intentra_gateway_sink_buffered_bytes", GW_PROM_GAUGE,
                   "Bytes the sink holds in a fallback buffer (e.g. a disk buffer).");
    for (size_t i = 0; i < n; i++) {
        gw_prom_label l = {"sink", rows[i].name};
        gw_prom_u64(b, "intentra_gateway_sink_buffered_bytes", &l, 1, rows[i].st.buffered_bytes);
    }
    gw_prom_family(b, "intentra_gateway_sink_open_attempts_total", GW_PROM_COUNTER,
                   "Connector open attempts (retries included).");
    for (size_t i = 0; i < n; i++) {
        gw_prom_label l = {"sink", rows[i].name};
        gw_prom_u64(b, "intentra_gateway_sink_open_attempts_total", &l, 1, rows[i].m.open_attempts);
    }
    gw_prom_family(b, "intentra_gateway_sink_latency_seconds", GW_PROM_HISTOGRAM,
                   "Time from receiving a message to the sink completing it durably.");
    for (size_t i = 0; i < n; i++) {
        gw_prom_label l = {"sink", rows[i].name};
        gw_prom_histogram(b, "intentra_gateway_sink_latency_seconds", &l, 1, gw_sink_latency_bounds,
                          rows[i].m.latency_bucket, GW_LATENCY_BUCKETS, rows[i].m.latency_count,
                          rows[i].m.latency_sum_seconds);
    }

    for (size_t i = 0; i < n; i++) {
        free(rows[i].name);
        free(rows[i].type);
    }
    free(rows);
}

int gw_metrics_render(struct gw_gateway *g, gw_metrics_buf *b)
{
    render_transport(g, b);
    render_gateway(g, b);
    render_shards(g, b);
    render_sinks(g, b);
    gw_metrics_render_process(b);
    return b->failed ? ITR_ERR_NOMEM : ITR_OK;
}
