/* main.c: the intentra-gateway daemon: arguments, signals, lifecycle. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#ifdef INTENTRA_WITH_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif
#include <intentra/intentra.h>

#include "config.h"
#include "gateway.h"
#include "log.h"
#include "router.h"
#include "shards.h"

/* conf/gateway.json, compiled in (cmake/EmbedFile.cmake). */
extern const char gw_default_config[];
extern const size_t gw_default_config_len;

#define GW_DEFAULT_ORIGIN "embedded default (conf/gateway.json)"

#ifdef INTENTRA_WITH_JEMALLOC
/* Read by jemalloc before its first allocation (INTENTRA_JEMALLOC_CONF, CMakeLists.txt; empty
 * by default); MALLOC_CONF in the environment is read after it and wins. */
const char *malloc_conf = INTENTRA_JEMALLOC_CONF;
#endif

/* The allocator serving this process's malloc, for --version and the start-up line: "jemalloc
 * 5.3.0 thp:always" (its huge-page mode last) only if jemalloc counted an allocation made
 * through plain malloc (so a build linked with it, but whose malloc resolved elsewhere, says
 * so), else "glibc". */
static const char *allocator_name(void)
{
#ifdef INTENTRA_WITH_JEMALLOC
    static char name[48];
    const char *version = NULL;
    uint64_t before = 0, after = 0;
    size_t vlen = sizeof(version), len = sizeof(before);
    if (mallctl("version", &version, &vlen, NULL, 0) == 0 && version &&
        mallctl("thread.allocated", &before, &len, NULL, 0) == 0) {
        void *volatile p = malloc(4096);
        len = sizeof(after);
        int rc = mallctl("thread.allocated", &after, &len, NULL, 0);
        free(p);
        if (rc == 0 && after > before) {
            const char *thp = NULL;
            size_t tlen = sizeof(thp);
            if (mallctl("opt.thp", &thp, &tlen, NULL, 0) != 0 || !thp)
                thp = "?";
            snprintf(name, sizeof(name), "jemalloc %.*s thp:%s", (int)strcspn(version, "-"),
                     version, thp);
            return name;
        }
        return "glibc (jemalloc linked but not serving malloc)";
    }
#endif
    return "glibc";
}

static void usage(FILE *f)
{
    fprintf(f, "usage: intentra-gateway [-c FILE] [--check-config]\n"
               "       intentra-gateway --print-default-config | --version | --help\n\n"
               "Terminates intentra sessions from a fleet and routes their messages to sinks.\n\n"
               "  -c, --config FILE   configuration (JSON; see docs/CONFIG.md). Without -c the\n"
               "                      embedded default runs: conf/gateway.json, for local use\n"
               "                      (loopback only, file sink, any peer admitted)\n"
               "  --print-default-config  print the embedded default and exit\n"
               "  --check-config      validate FILE (and every sink's settings) and exit:\n"
               "                      0 valid, 1 invalid\n"
               "  --version           print the version\n"
               "  --help              this text\n\n"
               "Signals: SIGHUP reloads shards, routes and sinks (a bad config is refused and\n"
               "the running one kept); SIGTERM/SIGINT drain (stop reading, flush sinks,\n"
               "acknowledge what became durable) and exit 0.\n");
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int check = 0;
    char err[1024];
    gw_config *cfg = NULL;
    gw_gateway *g = NULL;
    sigset_t sigs;
    int sfd = -1, status = 1;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "intentra-gateway: %s needs a FILE\n", argv[i]);
                return 2;
            }
            path = argv[++i];
        } else if (!strcmp(argv[i], "--check-config")) {
            check = 1;
        } else if (!strcmp(argv[i], "--print-default-config")) {
            fwrite(gw_default_config, 1, gw_default_config_len, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("intentra-gateway %s\nallocator %s\n", INTENTRA_VERSION, allocator_name());
            return 0;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "intentra-gateway: unknown argument %s (see --help)\n", argv[i]);
            return 2;
        }
    }
    const char *file = path; /* NULL: the embedded default (nothing to reload) */
    int rc = path ? gw_config_load(path, &cfg, err, sizeof(err))
                  : gw_config_parse_text(gw_default_config, gw_default_config_len,
                                         GW_DEFAULT_ORIGIN, &cfg, err, sizeof(err));
    if (!path)
        path = GW_DEFAULT_ORIGIN;
    if (rc != ITR_OK) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (check) {
        /* Loading validated everything, every sink's keys included (connector validate). */
        printf("%s: valid (%zu listen address%s, %zu sink%s, %zu shard%s, %zu route%s)\n", path,
               gw_config_listen_count(cfg), gw_config_listen_count(cfg) == 1 ? "" : "es",
               gw_config_sink_count(cfg), gw_config_sink_count(cfg) == 1 ? "" : "s",
               gw_shards_count(gw_config_shards(cfg)),
               gw_shards_count(gw_config_shards(cfg)) == 1 ? "" : "s",
               gw_router_route_count(gw_config_router(cfg)),
               gw_router_route_count(gw_config_router(cfg)) == 1 ? "" : "s");
        gw_config_free(cfg);
        return 0;
    }
    {
        gw_log_options lo;
        gw_log_options_default(&lo);
        lo.format = gw_config_log(cfg)->format;
        lo.level = gw_config_log(cfg)->level;
        gw_log_configure(&lo);
    }

    /* Signals are taken synchronously by this thread; every thread inherits the mask. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGHUP);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
    if (sfd < 0) {
        GW_LOG(GW_LOG_ERROR, "start_failed", GW_F_STR("error", strerror(errno)));
        gw_config_free(cfg);
        return 1;
    }

    uint64_t drain_ns = gw_config_drain_timeout_ns(cfg);
    if (gw_gateway_new(&g, cfg, file, err, sizeof(err)) != ITR_OK) {
        GW_LOG(GW_LOG_ERROR, "start_failed", GW_F_STR("error", err));
        goto out;
    }
    if (gw_gateway_start(g, err, sizeof(err)) != ITR_OK) {
        GW_LOG(GW_LOG_ERROR, "start_failed", GW_F_STR("error", err));
        goto out;
    }
    {
        uint8_t pub[ITR_KEY_LEN];
        char hex[2 * ITR_KEY_LEN + 1], addr[64] = "";
        gw_gateway_public_key(g, pub);
        itr_hex_encode(hex, pub, ITR_KEY_LEN);
        gw_gateway_listen_addr(g, 0, addr, sizeof(addr));
        GW_LOG(GW_LOG_INFO, "started", GW_F_STR("version", INTENTRA_VERSION),
               GW_F_STR("public_key", hex), GW_F_STR("listen", addr), GW_F_STR("config", path),
               GW_F_STR("allocator", allocator_name()));
    }

    for (;;) {
        struct signalfd_siginfo si;
        ssize_t n = read(sfd, &si, sizeof(si));
        if (n != (ssize_t)sizeof(si)) {
            if (n < 0 && errno == EINTR)
                continue;
            GW_LOG(GW_LOG_ERROR, "signal_read_failed", GW_F_STR("error", strerror(errno)));
            break;
        }
        if (si.ssi_signo == SIGHUP) {
            if (gw_gateway_reload(g, err, sizeof(err)) != ITR_OK)
                GW_LOG(GW_LOG_ERROR, "reload_refused", GW_F_STR("error", err),
                       GW_F_STR("note", "the running configuration is kept"));
            continue;
        }
        GW_LOG(GW_LOG_INFO, "draining",
               GW_F_STR("signal", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT"),
               GW_F_U64("timeout_ms", drain_ns / 1000000));
        rc = gw_gateway_drain(g, itr_now_ns() + drain_ns);
        if (rc != ITR_OK)
            GW_LOG(GW_LOG_WARN, "drain_incomplete",
                   GW_F_STR("note", "messages still in flight were never acknowledged; their "
                                    "senders retransmit them"));
        status = 0;
        break;
    }
    GW_LOG(GW_LOG_INFO, "stopped", GW_F_I64("status", status));
out:
    gw_gateway_free(g);
    if (sfd >= 0)
        close(sfd);
    return status;
}
