#!/usr/bin/env python3
"""/metrics scraped by a real Prometheus server (Debian's prometheus package).

The gateway's /metrics is token-protected here (open_endpoints lists only the health
checks), so Prometheus scrapes with `authorization: {type: Bearer, credentials_file}`, as an
operator would. Checks: the live page passes `promtool check metrics` with no output; the
scrape target becomes "up"; known series are queryable through Prometheus' HTTP API and move
with traffic (messages delivered to the file sink, packets received).
"""
import json
import os
import subprocess
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from admin_common import H, start  # noqa: E402


def prom_query(base, q):
    st, _, body = H.http("GET", base + "/api/v1/query?query=" + urllib.parse.quote(q))
    if st != 200 or not isinstance(body, dict) or body.get("status") != "success":
        return None
    return body["data"]["result"]


def main():
    if not os.path.exists("/usr/bin/prometheus") and not any(
            os.path.exists(os.path.join(p, "prometheus")) for p in os.environ.get("PATH", "").split(":")):
        print("SKIP: prometheus is not installed")
        sys.exit(H.SKIP)
    with H.Harness("admin-prom") as h:
        g, udp, a, cfg = start(h)
        # Protect /metrics: rewrite the admin section and restart (the token stays the same).
        with open(cfg) as f:
            c = json.load(f)
        adm_cfg = c["admin"]
        adm_cfg["open_endpoints"] = ["/healthz", "/readyz"]
        with open(cfg, "w") as f:
            json.dump(c, f, indent=1)
        if g.stop() != 0:
            H.fail("gateway exit status %s" % g.p.returncode)
        g = h.start_gateway(cfg, name="gateway2")
        st, _, _ = a.req("GET", "/metrics", token=False)
        if st != 401:
            H.fail("/metrics without a token: %d (expected 401)" % st)

        # The live page is lint-clean.
        st, hdrs, page = a.req("GET", "/metrics")
        if st != 200 or not hdrs.get("Content-Type", "").startswith("text/plain; version=0.0.4"):
            H.fail("/metrics: %d %s" % (st, hdrs.get("Content-Type")))
        r = subprocess.run(["promtool", "check", "metrics"], input=page.encode(),
                           capture_output=True, timeout=30)
        if r.returncode != 0 or r.stdout.strip() or r.stderr.strip():
            H.fail("promtool check metrics (%d): %s %s" % (r.returncode, r.stdout.decode(), r.stderr.decode()))

        # Prometheus scraping it every second with the bearer token.
        prom_port = H.free_port(H.socket.SOCK_STREAM)
        admin_port = int(a.base.rsplit(":", 1)[1])
        with open(h.path("prometheus.yml"), "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n"
                    "scrape_configs:\n  - job_name: intentra\n"
                    "    authorization:\n      type: Bearer\n      credentials_file: %s\n"
                    "    static_configs:\n      - targets: ['127.0.0.1:%d']\n"
                    % (h.path("admin.token"), admin_port))
        h.start("prometheus", ["prometheus", "--config.file=" + h.path("prometheus.yml"),
                               "--web.listen-address=127.0.0.1:%d" % prom_port,
                               "--storage.tsdb.path=" + h.path("tsdb"),
                               "--storage.tsdb.retention.time=1h", "--log.level=warn"])
        base = "http://127.0.0.1:%d" % prom_port
        def ready():
            try:
                return H.http("GET", base + "/-/ready", timeout=2)[0] == 200
            except OSError:
                return False  # not listening yet
        H.wait_until(ready, 30, "Prometheus ready", interval=0.2)

        def target_up():
            st, _, body = H.http("GET", base + "/api/v1/targets")
            if st != 200:
                return None
            act = body["data"]["activeTargets"]
            if act and act[0]["health"] == "down" and act[0].get("lastError"):
                print("target down: %s" % act[0]["lastError"], file=sys.stderr)
            return act and act[0]["health"] == "up" and act[0]
        t = H.wait_until(target_up, 30, "the gateway target to be up in Prometheus", interval=0.5)

        # Traffic, then the series follow it.
        res = h.bench(udp, g.public_key, "--peers", 4, "--rate", 100, "--duration", 2, "--linger", 10)
        if res["acknowledged"] != res["offered"]:
            H.fail("bench: %s" % res)
        want = res["offered"]

        def delivered():
            r = prom_query(base, 'intentra_gateway_sink_delivered_total{sink="archive"}')
            return r and float(r[0]["value"][1]) >= want and r
        H.wait_until(delivered, 20, "intentra_gateway_sink_delivered_total >= %d in Prometheus" % want,
                     interval=0.5)
        for q in ("intentra_packets_received_total", "intentra_connections_active",
                  "intentra_gateway_sink_latency_seconds_bucket", "process_resident_memory_bytes",
                  'intentra_gateway_shard_messages_total{shard="default",intent="reliable"}'):
            r = prom_query(base, q)
            if not r:
                H.fail("no series for %s in Prometheus" % q)
        rec = prom_query(base, "intentra_packets_received_total")
        if float(rec[0]["value"][1]) < want:
            H.fail("intentra_packets_received_total %s < %d" % (rec[0]["value"][1], want))
        print("ok: promtool clean; Prometheus target up (%s); %d deliveries visible; scrape took %.1f ms"
              % (t["scrapeUrl"], want, t.get("lastScrapeDuration", 0) * 1000))
        if g.stop() != 0:
            H.fail("gateway exit status %s" % g.p.returncode)


if __name__ == "__main__":
    main()
