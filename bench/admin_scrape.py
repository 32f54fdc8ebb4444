#!/usr/bin/env python3
"""admin_scrape.py: what a /metrics scrape costs the packet path.

Runs the gateway with a null sink (ingest without sink IO) and intentra-bench offering
Reliable traffic (default 20 peers x 5,000 msgs/s = 100k msgs/s) in three conditions: no
scraping, one scrape a second (already far more often than Prometheus' usual 15-60 s) and ten
a second. Conditions are interleaved over --rounds and the median is reported, with the spread
of the unscraped runs as the noise floor, plus the gateway's CPU use in each condition. Also
reports the gateway CPU time and wall time of one scrape (measured over 200 scrapes on an idle
gateway from /proc/<pid>/stat). About 45 s in all.

On a small shared machine the acknowledged rate moves with whatever else runs (the bench
process itself needs most of a core); compare the medians against the noise line.

Usage: INTENTRA_BUILD_DIR=build python3 bench/admin_scrape.py [--peers N --rate HZ --duration S --rounds N]
"""
import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from admin_common import H, start  # noqa: E402


def proc_cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scraper(a, interval, stop, count):
    while not stop.is_set():
        st, _, _ = a.req("GET", "/metrics")
        if st != 200:
            H.fail("/metrics: %d" % st)
        count[0] += 1
        if interval:
            stop.wait(interval)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", type=int, default=20)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--duration", type=float, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with H.Harness("admin-scrape") as h:
        g, udp, a, _ = start(h, sinks={"null": {"type": "null"}},
                             routes=[{"name": "all", "match": {"shard": "*", "topic": "*"},
                                      "sinks": [{"sink": "null"}]}])
        # Cost of one scrape on an idle gateway.
        n = 200
        cpu0, t0 = proc_cpu_seconds(g.p.pid), time.perf_counter()
        for _ in range(n):
            st, _, page = a.req("GET", "/metrics")
        wall = (time.perf_counter() - t0) / n
        cpu = (proc_cpu_seconds(g.p.pid) - cpu0) / n
        size = len(page.encode())
        print("one scrape: %d bytes, %.2f ms wall (client included), %.0f us gateway CPU"
              % (size, wall * 1e3, cpu * 1e6))

        # Conditions interleaved over rounds, median per condition: the machine's own noise
        # (other processes) then hits every condition alike.
        conditions = (("no scrape", None), ("1 scrape/s", 1.0), ("10 scrapes/s", 0.1))
        rates = {name: [] for name, _ in conditions}
        for rnd in range(args.rounds):
            for name, interval in conditions:
                stop, count = threading.Event(), [0]
                th = None
                if interval is not None:
                    th = threading.Thread(target=scraper, args=(a, interval, stop, count), daemon=True)
                    th.start()
                cpu0 = proc_cpu_seconds(g.p.pid)
                res = h.bench(udp, g.public_key, "--peers", args.peers, "--rate", args.rate,
                              "--duration", args.duration, "--intent", "reliable", "--linger", 20)
                gw_cpu = proc_cpu_seconds(g.p.pid) - cpu0
                stop.set()
                if th:
                    th.join(10)
                if res["acknowledged"] != res["sent"]:
                    H.fail("%s: sent %d, acknowledged %d" % (name, res["sent"], res["acknowledged"]))
                rate = res["acknowledged"] / res["duration_seconds"]
                rates[name].append(rate)
                print("round %d  %-14s %9.0f msgs/s acknowledged  (%d scrapes, p99 send->ack %.1f ms, "
                      "gateway CPU %.2f s)" % (rnd + 1, name, rate, count[0], res["latency_ms"]["p99"], gw_cpu))
        med = {k: sorted(v)[len(v) // 2] for k, v in rates.items()}
        base = med["no scrape"]
        spread = (max(rates["no scrape"]) - min(rates["no scrape"])) / base * 100
        for name, _ in conditions:
            print("median %-14s %9.0f msgs/s  %+.1f%% vs no scrape" % (name, med[name], (med[name] - base) / base * 100))
        print("noise: unscraped runs spread %.1f%% of their median" % spread)
        g.stop()


if __name__ == "__main__":
    main()
