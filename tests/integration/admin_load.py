#!/usr/bin/env python3
"""1,000 admin requests during a 100k msgs/s Reliable run leave delivery intact; measures the
admin request latency (idle and under packet load).

20 bench peers x 5,000 msgs/s for 5 s into a file sink. While they run, 4 clients send 1,000
admin requests paced over the run: reads (/metrics, /v1/peers, /v1/shards, /v1/routes,
/v1/sinks, /readyz) and writes that publish new routing snapshots (PATCH /v1/shards label
changes, PUT /v1/routes with the same routes). Afterwards every acknowledged message is in the
file exactly once and in per-peer order, every admin request succeeded, and the latencies are
printed (p50/p99/max). Usage: admin_load.py [--peers N --rate HZ --duration S --requests N]
"""
import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from admin_common import H, bench_async, file_records, percentile, start  # noqa: E402


def one_request(a, i, routes):
    """The i-th request of the mix; returns (ok, seconds)."""
    kind = i % 10
    t0 = time.perf_counter()
    if kind in (0, 5):
        st, _, _ = a.req("GET", "/metrics")
        ok = st == 200
    elif kind == 1:
        st, _, b = a.req("GET", "/v1/peers?limit=100")
        ok = st == 200 and "peers" in b
    elif kind == 2:
        st, _, _ = a.req("GET", "/v1/shards")
        ok = st == 200
    elif kind == 3:
        st, _, _ = a.req("GET", "/v1/sinks")
        ok = st == 200
    elif kind == 4:
        st, _, _ = a.req("GET", "/readyz", token=False)
        ok = st == 200
    elif kind == 6:
        st, _, _ = a.req("PATCH", "/v1/shards", body={"default": {"labels": {"rev": str(i)}}})
        ok = st == 200
    elif kind == 7:
        st, _, _ = a.req("PUT", "/v1/routes", body=routes)
        ok = st == 200
    elif kind == 8:
        st, _, _ = a.req("GET", "/v1/routes")
        ok = st == 200
    else:
        st, _, _ = a.req("GET", "/healthz", token=False)
        ok = st == 200
    return ok, time.perf_counter() - t0, st


def run_clients(a, total, clients, spread_s, routes):
    lat, failures = [], []
    lock = threading.Lock()
    start_t = time.monotonic()

    def client(c):
        for j in range(total // clients):
            i = j * clients + c
            due = start_t + spread_s * i / total  # paced over the run
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ok, dt, st = one_request(a, i, routes)
            with lock:
                lat.append((i % 10 in (6, 7), dt))
                if not ok:
                    failures.append((i, st))

    ts = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(spread_s + 120)
    return lat, failures, time.monotonic() - start_t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", type=int, default=20)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--duration", type=float, default=5)
    ap.add_argument("--requests", type=int, default=1000)
    args = ap.parse_args()
    with H.Harness("admin-load") as h:
        sinks = {"archive": {"type": "file", "path": h.path("messages.jsonl"), "rotate_bytes": 0}}
        g, udp, a, _ = start(h, sinks=sinks)
        _, _, routes = a.req("GET", "/v1/routes")

        idle, idle_fail, _ = run_clients(a, 200, 4, 1.0, routes)
        if idle_fail:
            H.fail("idle admin requests failed: %s" % idle_fail[:5])

        t, res = bench_async(h, udp, g.public_key, "--peers", args.peers, "--rate", args.rate,
                             "--duration", args.duration, "--intent", "reliable", "--linger", 30)
        H.wait_until(lambda: os.path.exists(h.path("messages.jsonl")) and
                     os.path.getsize(h.path("messages.jsonl")) > 0, 20, "traffic in the file",
                     interval=0.05)
        lat, failures, took = run_clients(a, args.requests, 4, max(1.0, args.duration - 1.5), routes)
        t.join(args.duration + 120)
        if t.is_alive() or not res:
            H.fail("bench did not finish")
        if failures:
            H.fail("%d admin requests failed under load, e.g. %s" % (len(failures), failures[:5]))
        if len(lat) != args.requests:
            H.fail("%d of %d admin requests ran" % (len(lat), args.requests))
        # Intact: everything sent was acknowledged, and everything acknowledged is in the file
        # exactly once, in order. ("refused" counts sends the bench skipped because the peer's
        # Reliable window was full: the gateway throttling its senders, never a loss.)
        if res["connected"] != args.peers or res["acknowledged"] != res["sent"] or \
                res["unacknowledged"] or res["sessions_closed"]:
            H.fail("bench: %s" % {k: v for k, v in res.items() if not k.startswith("_")})
        recs = file_records(h.path("messages.jsonl"))
        n, dups, order = H.check_exactly_once([(r[0], r[2]) for r in recs], expect_peers=args.peers)
        if dups or order or n != res["acknowledged"]:
            H.fail("file: %d distinct of %d acknowledged, %d duplicates, %d out of order"
                   % (n, res["acknowledged"], dups, order))
        print("ok: %d msgs at %.0f msgs/s (Reliable, file sink; %d sends throttled by full windows) "
              "with %d admin requests in %.1f s: delivery intact (exactly once, in order)"
              % (n, res["sent_per_second"], res["refused"], len(lat), took))
        for name, sample in (("idle", idle), ("under load", lat)):
            for what, sel in (("all", None), ("reads", False), ("writes (fsync'd)", True)):
                v = [dt for w, dt in sample if sel is None or w == sel]
                if not v:
                    continue
                print("admin latency %-10s %-16s n=%4d  p50 %6.2f ms  p99 %6.2f ms  max %6.2f ms"
                      % (name, what, len(v), percentile(v, 0.5) * 1e3, percentile(v, 0.99) * 1e3,
                         max(v) * 1e3))
        print("bench send->ack: p50 %.2f ms  p99 %.2f ms" % (res["latency_ms"]["p50"], res["latency_ms"]["p99"]))
        if g.stop() != 0:
            H.fail("gateway exit status %s" % g.p.returncode)


if __name__ == "__main__":
    main()
