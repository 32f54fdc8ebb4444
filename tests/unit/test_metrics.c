/* test_metrics.c: the Prometheus text writer (gateway/metrics.c): exact output of families,
 * label escaping and histograms, the whole /metrics page rendered from the fake gateway, and
 * `promtool check metrics` on both (any lint output fails the test).
 */
#define _GNU_SOURCE /* mkstemp, popen */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <intentra/error.h>

#include "fake_control.h"
#include "log.h"
#include "metrics.h"

/* Run promtool on text; returns its combined output (caller frees) and exit status. */
static char *promtool_check(const char *text, size_t len, int *status)
{
    char path[] = "/tmp/test-metrics-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "promtool check metrics < '%s' 2>&1", path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 65536, n = 0;
    char *out = calloc(1, cap);
    assert_non_null(out);
    size_t k;
    while ((k = fread(out + n, 1, cap - 1 - n, p)) > 0)
        n += k;
    *status = pclose(p);
    unlink(path);
    return out;
}

static void assert_promtool_clean(const char *text, size_t len)
{
    int status = -1;
    char *out = promtool_check(text, len, &status);
    if (status != 0 || out[0]) {
        fprintf(stderr, "promtool (status %d):\n%s\n--- input ---\n%.*s\n", status, out,
                (int)(len > 8000 ? 8000 : len), text);
    }
    assert_int_equal(status, 0);
    assert_string_equal(out, "");
    free(out);
}

static void test_writer_exact_output(void **state)
{
    (void)state;
    gw_metrics_buf b;
    gw_metrics_buf_init(&b);
    gw_prom_family(&b, "demo_events_total", GW_PROM_COUNTER, "Events seen.\nSecond \\ line.");
    gw_prom_label l[2] = {{"sink", "a\"b\\c\nd"}, {"reason", "x"}};
    gw_prom_u64(&b, "demo_events_total", l, 2, 18446744073709551615ull);
    gw_prom_u64(&b, "demo_events_total", NULL, 0, 0);
    gw_prom_family(&b, "demo_level", GW_PROM_GAUGE, "A level.");
    gw_prom_f64(&b, "demo_level", NULL, 0, 0.25);
    gw_prom_f64(&b, "demo_level", l + 1, 1, 1.0 / 0.0);
    double bounds[2] = {0.005, 1};
    uint64_t cum[2] = {3, 7};
    gw_prom_family(&b, "demo_latency_seconds", GW_PROM_HISTOGRAM, "Latency.");
    gw_prom_histogram(&b, "demo_latency_seconds", l + 1, 1, bounds, cum, 2, 9, 2.5);
    gw_prom_histogram(&b, "demo_latency_seconds", NULL, 0, bounds, cum, 2, 9, 2.5);
    const char *want =
        "# HELP demo_events_total Events seen.\\nSecond \\\\ line.\n"
        "# TYPE demo_events_total counter\n"
        "demo_events_total{sink=\"a\\\"b\\\\c\\nd\",reason=\"x\"} 18446744073709551615\n"
        "demo_events_total 0\n"
        "# HELP demo_level A level.\n"
        "# TYPE demo_level gauge\n"
        "demo_level 0.25\n"
        "demo_level{reason=\"x\"} +Inf\n"
        "# HELP demo_latency_seconds Latency.\n"
        "# TYPE demo_latency_seconds histogram\n"
        "demo_latency_seconds_bucket{reason=\"x\",le=\"0.005\"} 3\n"
        "demo_latency_seconds_bucket{reason=\"x\",le=\"1\"} 7\n"
        "demo_latency_seconds_bucket{reason=\"x\",le=\"+Inf\"} 9\n"
        "demo_latency_seconds_sum{reason=\"x\"} 2.5\n"
        "demo_latency_seconds_count{reason=\"x\"} 9\n"
        "demo_latency_seconds_bucket{le=\"0.005\"} 3\n"
        "demo_latency_seconds_bucket{le=\"1\"} 7\n"
        "demo_latency_seconds_bucket{le=\"+Inf\"} 9\n"
        "demo_latency_seconds_sum 2.5\n"
        "demo_latency_seconds_count 9\n";
    assert_false(b.failed);
    assert_string_equal(b.data, want);
    assert_promtool_clean(b.data, b.len);
    gw_metrics_buf_free(&b);
}

static void test_buffer_growth(void **state)
{
    (void)state;
    gw_metrics_buf b;
    gw_metrics_buf_init(&b);
    char big[1000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    for (int i = 0; i < 200; i++)
        gw_metrics_buf_printf(&b, "%s%d\n", big, i);
    assert_false(b.failed);
    assert_int_equal(b.len, 200 * 999 + 10 * 2 + 90 * 3 + 100 * 4);
    assert_int_equal(strlen(b.data), b.len);
    assert_non_null(strstr(b.data, "x199\n"));
    gw_metrics_buf_free(&b);
}

static void test_process_metrics(void **state)
{
    (void)state;
    gw_metrics_buf b;
    gw_metrics_buf_init(&b);
    assert_int_equal(gw_metrics_render_process(&b), ITR_OK);
    static const char *const names[] = {"\nprocess_cpu_seconds_total ",
                                        "\nprocess_resident_memory_bytes ",
                                        "\nprocess_virtual_memory_bytes ",
                                        "\nprocess_open_fds ",
                                        "\nprocess_max_fds ",
                                        "\nprocess_start_time_seconds "};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *p = strstr(b.data, names[i]);
        if (!p)
            fprintf(stderr, "missing %s in\n%s", names[i] + 1, b.data);
        assert_non_null(p);
        /* CPU time may still round to 0 this early; the others are positive. */
        double v = strtod(p + strlen(names[i]), NULL);
        assert_true(i == 0 ? v >= 0 : v > 0);
    }
    /* Start time is in the past, after 2020. */
    double start = strtod(strstr(b.data, "\nprocess_start_time_seconds ") + 28, NULL);
    assert_true(start > 1577836800.0);
    assert_true(start <= (double)time(NULL) + 1);
    assert_promtool_clean(b.data, b.len);
    gw_metrics_buf_free(&b);
}

static void test_gateway_page(void **state)
{
    (void)state;
    gw_gateway *g = fake_gateway_new(NULL);
    gw_metrics_buf b;
    gw_metrics_buf_init(&b);
    assert_int_equal(gw_metrics_render(g, &b), ITR_OK);
    const char *page = b.data;
    /* The crate's nine names, summed over the two fake workers. */
    static const char *const expect[] = {
        "\nintentra_packets_received_total 3000\n",
        "\nintentra_packets_dropped_rate_limit_total 18\n", /* reason 6 x (1+2) */
        "\nintentra_packets_dropped_crypto_total 21\n",     /* reason 7 */
        "\nintentra_replay_rejections_total 24\n",          /* reason 8 */
        "\nintentra_handshake_in_flight 3\n",
        "\nintentra_connections_active 15\n",
        "\nintentra_strike_events_total 3\n",
        "\nintentra_connection_closes_total{reason=\"idle\"} 7\n", /* reason 2: (2+1)+(2+2) */
        "\nintentra_reorder_buffer_bytes 192\n",
        "\nintentra_packets_dropped_total{reason=\"rate_limit\"} 18\n",
        "\nintentra_kernel_receive_drops_total 21\n",
        "\nintentra_gateway_workers 2\n",
        "\nintentra_gateway_reloads_total{result=\"failed\"} 1\n",
        "\nintentra_gateway_security_events_total{event=\"bad_mac1\"} 5\n",
        "\nintentra_gateway_shard_messages_total{shard=\"default\",intent=\"reliable\"} 40\n",
        "\nintentra_gateway_shard_deferred_total{shard=\"odd\\\"shard\\\\with\\nnewline\"} 9\n",
        "\nintentra_gateway_shard_peers{shard=\"default\"} 3\n",
        "\nintentra_gateway_sink_up{sink=\"archive\"} 1\n",
        "\nintentra_gateway_sink_up{sink=\"kafka\"} 0\n",
        "\nintentra_gateway_sink_state{sink=\"kafka\",state=\"down\"} 1\n",
        "\nintentra_gateway_sink_info{sink=\"archive\",type=\"file\",required=\"true\"} 1\n",
        "\nintentra_gateway_sink_discarded_total{sink=\"kafka\",reason=\"queue_full\"} 1\n",
        "\nintentra_gateway_sink_errors_total{sink=\"kafka\",stage=\"connect\"} 4\n",
        "\nintentra_gateway_sink_queue_messages{sink=\"kafka\",class=\"reliable\"} 3\n",
        "\nintentra_gateway_sink_latency_seconds_bucket{sink=\"kafka\",le=\"+Inf\"} 93\n",
        "\nintentra_gateway_sink_latency_seconds_count{sink=\"kafka\"} 93\n",
        "\nprocess_resident_memory_bytes ",
    };
    for (size_t i = 0; i < sizeof(expect) / sizeof(expect[0]); i++) {
        if (!strstr(page, expect[i]))
            fprintf(stderr, "missing: %s", expect[i] + 1);
        assert_non_null(strstr(page, expect[i]));
    }
    /* Every sample line's family has HELP and TYPE before it, and no per-peer label. */
    assert_null(strstr(page, "peer="));
    assert_promtool_clean(b.data, b.len);
    gw_metrics_buf_free(&b);
    fake_gateway_free(g);
}

int main(void)
{
    gw_log_options lo;
    gw_log_options_default(&lo);
    lo.level = GW_LOG_ERROR;
    gw_log_configure(&lo);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer_exact_output),
        cmocka_unit_test(test_buffer_growth),
        cmocka_unit_test(test_process_metrics),
        cmocka_unit_test(test_gateway_page),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
