/* metrics.h: Prometheus text exposition format 0.0.4: a small writer (families with HELP and
 * TYPE, escaped label values, counters, gauges, histograms) and the renderer of a running
 * gateway's /metrics page (transport, gateway, per-shard, per-sink and process metrics).
 *
 * Every family is written as one group (HELP, TYPE, then all its samples), which is what the
 * format requires and what `promtool check metrics` verifies. Labels are bounded: shard,
 * sink, intent, reason, stage, event, state. There are no per-peer labels. docs/METRICS.md
 * lists every family.
 */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stddef.h>
#include <stdint.h>

/* A growing text buffer. After an allocation failure `failed` is set, later writes are
 * ignored, and the render functions return ITR_ERR_NOMEM. */
typedef struct gw_metrics_buf {
    char *data; /* NUL-terminated when len > 0; owned (free with gw_metrics_buf_free) */
    size_t len, cap;
    int failed;
} gw_metrics_buf;

void gw_metrics_buf_init(gw_metrics_buf *b);
void gw_metrics_buf_free(gw_metrics_buf *b);
void gw_metrics_buf_append(gw_metrics_buf *b, const char *s, size_t n);
void gw_metrics_buf_printf(gw_metrics_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

typedef enum gw_prom_type {
    GW_PROM_COUNTER = 0,
    GW_PROM_GAUGE,
    GW_PROM_HISTOGRAM,
} gw_prom_type;

/* One label. Names are [a-zA-Z_][a-zA-Z0-9_]* (constants in our code); values are escaped
 * (backslash, double quote, newline). */
typedef struct gw_prom_label {
    const char *name;
    const char *value;
} gw_prom_label;

/* Start a family: "# HELP name help" (help escaped) and "# TYPE name type". Counter names
 * end in _total by our convention; the writer does not add suffixes. */
void gw_prom_family(gw_metrics_buf *b, const char *name, gw_prom_type type, const char *help);
/* One sample "name{labels} value". nlabels may be 0 (labels NULL). */
void gw_prom_u64(gw_metrics_buf *b, const char *name, const gw_prom_label *labels, size_t nlabels,
                 uint64_t v);
void gw_prom_f64(gw_metrics_buf *b, const char *name, const gw_prom_label *labels, size_t nlabels,
                 double v);
/* The samples of one histogram series: name_bucket{labels,le="bound"} for each bound (counts
 * cumulative, ascending bounds), name_bucket{le="+Inf"} = count, name_sum, name_count. */
void gw_prom_histogram(gw_metrics_buf *b, const char *name, const gw_prom_label *labels,
                       size_t nlabels, const double *bounds, const uint64_t *cumulative,
                       size_t nbounds, uint64_t count, double sum);

/* Process metrics from /proc/self: process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds,
 * process_start_time_seconds. A /proc file that cannot be read leaves its families out.
 * Returns ITR_OK or ITR_ERR_NOMEM. */
int gw_metrics_render_process(gw_metrics_buf *b);

struct gw_gateway;
/* The whole /metrics page of g (appended to b): transport counters summed over the workers
 * (the crate's nine names and the rest), gateway, per-shard and per-sink families, process
 * metrics. Reads relaxed atomics only; takes the sink-set lock (gw_ctl_sinks_lock) briefly.
 * Returns ITR_OK or ITR_ERR_NOMEM. */
int gw_metrics_render(struct gw_gateway *g, gw_metrics_buf *b);

#endif
