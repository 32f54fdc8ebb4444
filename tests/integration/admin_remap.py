#!/usr/bin/env python3
"""A shard remap through the admin API moves a peer's next messages to the new destination
within 1 s, with no loss.

Two file sinks: shard "sa" routes to a.jsonl, shard "sb" to b.jsonl. Four bench peers (stable
keys) stream Reliable messages into "sa"; mid-run one PATCH moves them to "sb". Afterwards:
every acknowledged message is in exactly one file, per peer the messages before the switch
are all in a.jsonl and those after all in b.jsonl (no interleaving), the first b.jsonl message
was received within 1 s of the PATCH being answered and no a.jsonl message later than that,
and no session was dropped.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from admin_common import H, SEED, bench_async, bench_keys, file_records, start, ts_seconds  # noqa: E402

PEERS, RATE, DURATION = 4, 500, 6


def main():
    with H.Harness("admin-remap") as h:
        keys = bench_keys(PEERS)
        sinks = {"a": {"type": "file", "path": h.path("a.jsonl"), "rotate_bytes": 0},
                 "b": {"type": "file", "path": h.path("b.jsonl"), "rotate_bytes": 0}}
        shards = {"default": {}, "sa": {"peers": keys}, "sb": {"peers": []}}
        routes = [{"name": "sa", "match": {"shard": "sa", "topic": "*"}, "sinks": [{"sink": "a"}]},
                  {"name": "sb", "match": {"shard": "sb", "topic": "*"}, "sinks": [{"sink": "b"}]}]
        g, udp, a, _ = start(h, sinks=sinks, shards=shards, routes=routes)
        t, res = bench_async(h, udp, g.public_key, "--peers", PEERS, "--rate", RATE,
                             "--duration", DURATION, "--key-seed", SEED, "--intent", "reliable",
                             "--linger", 20)
        # Remap once traffic is flowing into a.jsonl.
        H.wait_until(lambda: len(H.read_jsonl(h.path("a.jsonl"))) > PEERS * RATE, 20,
                     "one second of traffic in a.jsonl", interval=0.1)
        t_sent = time.time()
        st, hdrs, body = a.req("PATCH", "/v1/shards", body={"sa": {"peers": []}, "sb": {"peers": keys}})
        t_answered = time.time()
        if st != 200:
            H.fail("PATCH /v1/shards: %d %s" % (st, body))
        _, _, peers = a.req("GET", "/v1/peers")
        t.join(DURATION + 60)
        if t.is_alive() or not res:
            H.fail("bench did not finish")
        if res["connected"] != PEERS or res["acknowledged"] != res["offered"] or res["sessions_closed"]:
            H.fail("bench: %s" % res)

        ra = file_records(h.path("a.jsonl"))
        rb = file_records(h.path("b.jsonl"))
        n, dups, order = H.check_exactly_once([(r[0], r[2]) for r in ra + rb])
        if dups or n != res["offered"]:
            H.fail("a+b hold %d distinct messages (%d duplicates); %d were acknowledged"
                   % (n, dups, res["offered"]))
        if any(r[4] != "sa" for r in ra) or any(r[4] != "sb" for r in rb):
            H.fail("a record carries the wrong shard name")
        worst_first_b, worst_last_a, switch = -1e9, -1e9, 0.0
        for k in keys:
            sa = [r[2] for r in ra if r[0] == k]
            sb = [r[2] for r in rb if r[0] == k]
            if not sa or not sb:
                H.fail("peer %s: %d messages before and %d after the remap" % (k[:8], len(sa), len(sb)))
            if max(sa) >= min(sb):
                H.fail("peer %s: messages interleave across the remap (a up to %d, b from %d)"
                       % (k[:8], max(sa), min(sb)))
            first_b = min(ts_seconds(r[3]) for r in rb if r[0] == k)
            last_a = max(ts_seconds(r[3]) for r in ra if r[0] == k)
            worst_first_b = max(worst_first_b, first_b - t_answered)
            worst_last_a = max(worst_last_a, last_a - t_answered)
            switch = max(switch, first_b - t_sent)
        if worst_first_b > 1.0 or worst_last_a > 1.0:
            H.fail("remap took effect too late: first b.jsonl message %.3f s, last a.jsonl message "
                   "%.3f s after the PATCH was answered" % (worst_first_b, worst_last_a))
        if peers["total"] != PEERS or any(p["shard"] != "sb" for p in peers["peers"]):
            H.fail("GET /v1/peers after the remap: %s" % peers)
        print("ok: %d messages, none lost or duplicated; %d before / %d after the remap; PATCH "
              "answered in %.1f ms; every peer's first message in the new destination at most "
              "%.1f ms after the PATCH was sent" % (n, len(ra), len(rb), (t_answered - t_sent) * 1000,
                                                   switch * 1000))
        if g.stop() != 0:
            H.fail("gateway exit status %s" % g.p.returncode)


if __name__ == "__main__":
    main()
