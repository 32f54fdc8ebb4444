/* kafka-mock-broker: a Kafka test cluster in its own process, built from librdkafka's mock
 * cluster (rdkafka_mock.h), for the Kafka connector's tests and benchmarks.
 *
 *   kafka-mock-broker [--brokers N] [--topic NAME:PARTITIONS]... [--partitions N]
 *
 * The first stdout line is the bootstrap address ("127.0.0.1:PORT,..."). Commands are read
 * from stdin, one per line, each answered with one line, "ok" or "error: <why>":
 *
 *   down <broker_id>          disconnect the broker and refuse new connections (-1: all)
 *   up <broker_id>            accept connections again (-1: all)
 *   rtt <broker_id> <ms>      delay every response of the broker
 *   topic <name> <partitions> create a topic
 *   error <api> <count> <err> the next <count> requests of <api> fail with <err>
 *                             (api: produce, fetch, metadata, init_producer_id, offset_commit,
 *                             or a number; err: a Kafka error name such as
 *                             TOPIC_AUTHORIZATION_FAILED, or a number)
 *   topic-error <name> <err>  metadata for the topic reports <err> (NO_ERROR clears it)
 *   quit                      exit
 *
 * SIGTERM, SIGINT and end of input also exit cleanly. Brokers listen on 127.0.0.1 only.
 */
#define _GNU_SOURCE /* strtok_r, signalfd */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_TOPICS   64
#define LINE_MAX_LEN 1024

static const char usage[] =
    "usage: kafka-mock-broker [--brokers N] [--topic NAME:PARTITIONS]... [--partitions N]\n"
    "  --brokers N          brokers in the cluster (default 1), ids 1..N\n"
    "  --topic NAME:PARTS   create a topic before printing the address (repeatable)\n"
    "  --partitions N       partitions of auto-created topics (default 4)\n"
    "Prints the bootstrap address on the first line, then reads commands on stdin:\n"
    "  down ID | up ID | rtt ID MS | topic NAME PARTS | error API COUNT ERR |\n"
    "  topic-error NAME ERR | quit\n";

struct api_name {
    const char *name;
    int16_t key;
};

/* Kafka protocol ApiKeys the tests inject errors into. */
static const struct api_name api_names[] = {
    {"produce", 0},       {"fetch", 1},        {"list_offsets", 2},      {"metadata", 3},
    {"offset_commit", 8}, {"offset_fetch", 9}, {"find_coordinator", 10}, {"join_group", 11},
    {"heartbeat", 12},    {"sync_group", 14},  {"init_producer_id", 22},
};

static int parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static int parse_api(const char *s, int16_t *out)
{
    for (size_t i = 0; i < sizeof(api_names) / sizeof(api_names[0]); i++) {
        if (!strcmp(api_names[i].name, s)) {
            *out = api_names[i].key;
            return 0;
        }
    }
    long v;
    if (parse_long(s, 0, 1000, &v))
        return -1;
    *out = (int16_t)v;
    return 0;
}

/* A Kafka error by name ("TOPIC_AUTHORIZATION_FAILED", "_TRANSPORT") or number. */
static int parse_err(const char *s, rd_kafka_resp_err_t *out)
{
    const struct rd_kafka_err_desc *descs;
    size_t n;
    rd_kafka_get_err_descs(&descs, &n);
    for (size_t i = 0; i < n; i++) {
        if (descs[i].name && !strcmp(descs[i].name, s)) {
            *out = descs[i].code;
            return 0;
        }
    }
    long v;
    if (parse_long(s, -200, 1000, &v))
        return -1;
    *out = (rd_kafka_resp_err_t)v;
    return 0;
}

static void reply(rd_kafka_resp_err_t err)
{
    if (err)
        printf("error: %s\n", rd_kafka_err2str(err));
    else
        printf("ok\n");
    fflush(stdout);
}

static void reply_usage(const char *what)
{
    printf("error: usage: %s\n", what);
    fflush(stdout);
}

/* Run one command line. Returns 1 for quit, else 0. */
static int run_command(rd_kafka_mock_cluster_t *mc, char *line)
{
    char *save = NULL;
    char *cmd = strtok_r(line, " \t\r\n", &save);
    char *a1 = cmd ? strtok_r(NULL, " \t\r\n", &save) : NULL;
    char *a2 = a1 ? strtok_r(NULL, " \t\r\n", &save) : NULL;
    char *a3 = a2 ? strtok_r(NULL, " \t\r\n", &save) : NULL;
    long id, v;
    if (!cmd)
        return 0;
    if (!strcmp(cmd, "quit")) {
        printf("ok\n");
        fflush(stdout);
        return 1;
    }
    if (!strcmp(cmd, "down") || !strcmp(cmd, "up")) {
        if (!a1 || parse_long(a1, -1, 1000000, &id)) {
            reply_usage("down|up BROKER_ID");
            return 0;
        }
        reply(!strcmp(cmd, "down") ? rd_kafka_mock_broker_set_down(mc, (int32_t)id)
                                   : rd_kafka_mock_broker_set_up(mc, (int32_t)id));
    } else if (!strcmp(cmd, "rtt")) {
        if (!a2 || parse_long(a1, -1, 1000000, &id) || parse_long(a2, 0, 3600000, &v)) {
            reply_usage("rtt BROKER_ID MS");
            return 0;
        }
        reply(rd_kafka_mock_broker_set_rtt(mc, (int32_t)id, (int)v));
    } else if (!strcmp(cmd, "topic")) {
        if (!a2 || parse_long(a2, 1, 100000, &v)) {
            reply_usage("topic NAME PARTITIONS");
            return 0;
        }
        reply(rd_kafka_mock_topic_create(mc, a1, (int)v, 1));
    } else if (!strcmp(cmd, "error")) {
        int16_t api;
        rd_kafka_resp_err_t err;
        if (!a3 || parse_api(a1, &api) || parse_long(a2, 1, 1000000, &v) || parse_err(a3, &err)) {
            reply_usage("error API COUNT ERR");
            return 0;
        }
        rd_kafka_resp_err_t *errs = malloc((size_t)v * sizeof(*errs));
        if (!errs) {
            reply(RD_KAFKA_RESP_ERR__FAIL);
            return 0;
        }
        for (long i = 0; i < v; i++)
            errs[i] = err;
        rd_kafka_mock_push_request_errors_array(mc, api, (size_t)v, errs);
        free(errs);
        reply(RD_KAFKA_RESP_ERR_NO_ERROR);
    } else if (!strcmp(cmd, "topic-error")) {
        rd_kafka_resp_err_t err;
        if (!a2 || parse_err(a2, &err)) {
            reply_usage("topic-error NAME ERR");
            return 0;
        }
        rd_kafka_mock_topic_set_error(mc, a1, err);
        reply(RD_KAFKA_RESP_ERR_NO_ERROR);
    } else {
        printf("error: unknown command \"%s\"\n", cmd);
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv)
{
    long brokers = 1, partitions = 4;
    const char *topics[MAX_TOPICS];
    long topic_parts[MAX_TOPICS];
    size_t ntopics = 0;
    int rc = 1;
    rd_kafka_t *rk = NULL;
    rd_kafka_mock_cluster_t *mc = NULL;
    int sfd = -1;
    char errstr[512];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(a, "--brokers") && val) {
            if (parse_long(val, 1, 64, &brokers)) {
                fprintf(stderr, "kafka-mock-broker: --brokers: expected 1..64, got %s\n", val);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--partitions") && val) {
            if (parse_long(val, 1, 100000, &partitions)) {
                fprintf(stderr, "kafka-mock-broker: --partitions: expected 1..100000, got %s\n",
                        val);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--topic") && val) {
            const char *colon = strrchr(val, ':');
            long p = 1;
            if (!colon || colon == val || parse_long(colon + 1, 1, 100000, &p) ||
                ntopics == MAX_TOPICS) {
                fprintf(stderr, "kafka-mock-broker: --topic: expected NAME:PARTITIONS, got %s\n",
                        val);
                return 2;
            }
            argv[i + 1][colon - val] = 0; /* NAME ends at the colon */
            topics[ntopics] = val;
            topic_parts[ntopics++] = p;
            i++;
        } else {
            fprintf(stderr, "kafka-mock-broker: unknown argument %s\n%s", a, usage);
            return 2;
        }
    }

    /* SIGTERM/SIGINT arrive through a signalfd so the main loop exits cleanly. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0) {
        fprintf(stderr, "kafka-mock-broker: sigprocmask failed\n");
        return 1;
    }
    sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (sfd < 0) {
        fprintf(stderr, "kafka-mock-broker: signalfd: %s\n", strerror(errno));
        return 1;
    }
    /* A reader that went away must not kill us with SIGPIPE mid-reply. */
    signal(SIGPIPE, SIG_IGN);

    /* The mock cluster needs an rd_kafka_t for its bookkeeping (threads, timers). */
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char parts[32];
    snprintf(parts, sizeof(parts), "%ld", partitions);
    if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "client.id", "kafka-mock-broker", errstr, sizeof(errstr)) !=
            RD_KAFKA_CONF_OK) {
        fprintf(stderr, "kafka-mock-broker: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (!rk) {
        fprintf(stderr, "kafka-mock-broker: rd_kafka_new: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    mc = rd_kafka_mock_cluster_new(rk, (int)brokers);
    if (!mc) {
        fprintf(stderr, "kafka-mock-broker: could not create the mock cluster\n");
        goto out;
    }
    for (size_t i = 0; i < ntopics; i++) {
        rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(mc, topics[i], (int)topic_parts[i], 1);
        if (err) {
            fprintf(stderr, "kafka-mock-broker: topic %s: %s\n", topics[i], rd_kafka_err2str(err));
            goto out;
        }
    }
    printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);

    char line[LINE_MAX_LEN];
    size_t len = 0;
    for (;;) {
        struct pollfd pfd[2] = {{.fd = STDIN_FILENO, .events = POLLIN},
                                {.fd = sfd, .events = POLLIN}};
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "kafka-mock-broker: poll: %s\n", strerror(errno));
            goto out;
        }
        if (pfd[1].revents & POLLIN)
            break; /* SIGTERM / SIGINT / SIGHUP */
        if (!(pfd[0].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        ssize_t r = read(STDIN_FILENO, line + len, sizeof(line) - 1 - len);
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            break;
        }
        if (r == 0)
            break; /* EOF: the harness went away */
        len += (size_t)r;
        line[len] = 0;
        char *nl;
        int quit = 0;
        while (!quit && (nl = memchr(line, '\n', len))) {
            size_t one = (size_t)(nl - line) + 1;
            *nl = 0;
            quit = run_command(mc, line);
            memmove(line, line + one, len - one);
            len -= one;
            line[len] = 0;
        }
        if (quit)
            break;
        if (len == sizeof(line) - 1) {
            printf("error: line too long\n");
            fflush(stdout);
            len = 0;
        }
    }
    rc = 0;
out:
    if (mc)
        rd_kafka_mock_cluster_destroy(mc);
    if (rk)
        rd_kafka_destroy(rk);
    if (sfd >= 0)
        close(sfd);
    return rc;
}
