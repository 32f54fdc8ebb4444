#!/usr/bin/env python3
"""End-to-end tests of the Kafka sink with real processes: intentra-gateway, intentra-bench,
kafka-mock-broker, and kcat reading the results back. Usage: kafka_e2e.py CASE.

  exactly_once   100,000 Reliable messages from 50 peers arrive exactly once (distinct
                 intentra-peer + intentra-seq headers) and in order per peer
  broker_down    the broker goes down for 10 s mid-stream: every acknowledged message is in
                 Kafka, once
  sigkill_spool  disk buffer on; the broker goes down, the gateway is SIGKILLed during the
                 outage and restarted: nothing acknowledged is missing
  reverse        the reverse path delivers N records to N connected peers

Every case starts what it needs on free loopback ports, bounds every wait, and stops every
process it started (tests/lib/harness.py).
"""
import os
import re
import signal
import subprocess
import sys
import time
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness as H  # noqa: E402

TOPIC = "fleet.default.sim.tick"


def kcat():
    for d in os.environ.get("PATH", "/usr/bin").split(":") + ["/usr/bin"]:
        p = os.path.join(d, "kcat")
        if os.access(p, os.X_OK):
            return p
    print("SKIP: kcat is not installed")
    sys.exit(H.SKIP)


class Broker:
    """A kafka-mock-broker process: its bootstrap address and its command channel."""

    def __init__(self, h, *topics):
        argv = [H.binary("kafka-mock-broker")]
        for t in topics:
            argv += ["--topic", t]
        self.proc = h.start("kafka-mock-broker", argv, stdin=subprocess.PIPE)
        m = self.proc.wait_output(r"^(127\.0\.0\.1:\d+[^\s]*)", timeout=20)
        self.bootstrap = m.group(1)
        self.replies = 0

    def cmd(self, line):
        self.proc.p.stdin.write((line + "\n").encode())
        self.proc.p.stdin.flush()
        self.replies += 1
        want = self.replies

        def answered():
            got = re.findall(r"^(ok|error: .*)$", self.proc.output(), re.M)
            if len(got) >= want and got[want - 1] != "ok":
                H.fail("kafka-mock-broker: %s -> %s" % (line, got[want - 1]))
            return len(got) >= want
        H.wait_until(answered, 10, "kafka-mock-broker to answer %r" % line)


def read_topic(bootstrap, topic, timeout=60):
    """Every record of topic as (headers dict, payload bytes), per partition in offset order."""
    r = subprocess.run([kcat(), "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e",
                        "-q", "-f", "%p\t%o\t%h\t%s\n"], capture_output=True, timeout=timeout)
    if r.returncode != 0:
        H.fail("kcat failed (%d): %s" % (r.returncode, r.stderr.decode(errors="replace")[-2000:]))
    out = []
    first = {}
    for line in r.stdout.split(b"\n"):
        if not line:
            continue
        part, off, hdrs, payload = line.split(b"\t", 3)
        first.setdefault(int(part), int(off))
        h = {}
        for kv in hdrs.decode().split(","):
            if "=" in kv:
                k, v = kv.split("=", 1)
                h[k] = v
        out.append((int(part), h, payload))
    # The mock cluster keeps at most 5 MiB per partition and drops the oldest beyond: a
    # partition not starting at offset 0 would make this test wrong, not the gateway.
    evicted = {p: o for p, o in first.items() if o != 0}
    if evicted:
        H.fail("the mock broker evicted records (first offsets %r): use more partitions" % evicted)
    return out


def kafka_sink(bootstrap, **extra):
    s = {"type": "kafka", "required": True, "brokers": bootstrap}
    s.update(extra)
    return s


def kafka_config(h, bootstrap, **extra):
    return h.gateway_config(
        sinks={"kafka": kafka_sink(bootstrap, **extra)},
        routes=[{"name": "all", "match": {"shard": "*", "topic": "*"},
                 "sinks": [{"sink": "kafka", "destination": "fleet.{shard}.{topic}",
                            "key": "{peer}"}]}])


def check_records(recs, expect_peers=None):
    """(count of distinct (peer, seq), duplicates, per-peer order violations) from the
    headers; also checks every payload's checksum and that headers and payload agree."""
    by_peer_index = {}
    for part, h, payload in recs:
        got = H.bench_payload_ok(payload)
        if got is None:
            H.fail("payload fails its checksum: %r" % payload[:80])
        for k in ("intentra-peer", "intentra-seq", "intentra-shard", "intentra-topic",
                  "intentra-intent", "intentra-received-ns"):
            if k not in h:
                H.fail("record without header %s: %r" % (k, h))
        prev = by_peer_index.setdefault(h["intentra-peer"], got[0])
        if prev != got[0]:
            H.fail("peer %s carries bench peers %d and %d" % (h["intentra-peer"][:8], prev, got[0]))
    return H.check_exactly_once(((h["intentra-peer"], int(h["intentra-seq"])) for _, h, _ in recs),
                                expect_peers=expect_peers)


def bench_keys(recs):
    """(bench peer index, bench seq) of every record, with repeats."""
    return [H.bench_payload_ok(payload) for _, _, payload in recs]


def case_exactly_once():
    with H.Harness("kafka-e2e-once") as h:
        b = Broker(h, TOPIC + ":32")
        cfg, udp, _ = kafka_config(h, b.bootstrap)
        g = h.start_gateway(cfg)
        res = h.bench(udp, g.public_key, "--peers", 50, "--rate", 200, "--duration", 10,
                      "--size", 128, "--topic", "sim.tick", "--intent", "reliable",
                      "--linger", 30)
        if res["connected"] != 50:
            H.fail("only %d of 50 peers connected" % res["connected"])
        if res["acknowledged"] != res["offered"] or res["refused"] != 0:
            H.fail("offered %d, acknowledged %d, refused %d" %
                   (res["offered"], res["acknowledged"], res["refused"]))
        if res["offered"] < 100000:  # paced globally: may overshoot by a few
            H.fail("offered %d, expected 100000" % res["offered"])
        recs = read_topic(b.bootstrap, TOPIC)
        n, dups, order = check_records(recs, expect_peers=50)
        if dups or order:
            H.fail("kafka: %d duplicates, %d out of order" % (dups, order))
        if n != res["acknowledged"]:
            H.fail("kafka holds %d distinct messages, %d were acknowledged" % (n, res["acknowledged"]))
        # One partition per peer (key {peer}).
        parts = {}
        for part, hd, _ in recs:
            parts.setdefault(hd["intentra-peer"], set()).add(part)
        if any(len(p) != 1 for p in parts.values()):
            H.fail("a peer's records are spread over several partitions")
        # The partition of every librdkafka client with the default partitioner: crc32 of the
        # key modulo the partition count (the sink reuses a per-session hash: same result).
        wrong = [k for k, p in parts.items() if p != {zlib.crc32(k.encode()) % 32}]
        if wrong:
            H.fail("%d peers' records are not on partition crc32(key) %% 32 (first: %s on %r)"
                   % (len(wrong), wrong[0][:16], parts[wrong[0]]))
        print("ok: %d messages from 50 peers in Kafka exactly once, in order; p50/p99 send->ack "
              "%.2f/%.2f ms" % (n, res["latency_ms"]["p50"], res["latency_ms"]["p99"]))
        if g.stop() != 0:
            H.fail("gateway exit status %s" % g.p.returncode)


def case_broker_down():
    with H.Harness("kafka-e2e-down") as h:
        b = Broker(h, TOPIC + ":32")
        cfg, udp, adm = kafka_config(h, b.bootstrap)
        g = h.start_gateway(cfg)
        ack_log = h.path("acked.txt")
        bench = H.bench_async(udp, g.public_key, ack_log, "--peers", 50, "--rate", 100,
                                "--duration", 20, "--topic", "sim.tick", "--intent", "reliable",
                                "--linger", 40)
        time.sleep(4)
        b.cmd("down 1")
        t0 = time.monotonic()
        st = H.wait_sink_state(h, adm, "kafka", ("down",))
        if not re.search(r"brokers down|Connection refused|Disconnected", st["last_error"] or ""):
            H.fail("sink down without a clear error: %r" % st["last_error"])
        time.sleep(max(0, 10 - (time.monotonic() - t0)))
        b.cmd("up 1")
        H.wait_sink_state(h, adm, "kafka", ("up",), timeout=20)
        res = H.bench_result(bench)
        acked = H.acked_set(ack_log)
        if len(acked) != res["acknowledged"]:
            H.fail("ack log has %d entries, bench says %d" % (len(acked), res["acknowledged"]))
        recs = read_topic(b.bootstrap, TOPIC)
        keys = bench_keys(recs)
        present = set(keys)
        missing = acked - present
        if missing:
            H.fail("%d acknowledged messages are not in Kafka, e.g. %s" % (len(missing), sorted(missing)[:5]))
        dup = len(keys) - len(present)
        if dup:
            H.fail("%d duplicates in Kafka after the outage" % dup)
        n, _, order = check_records(recs)
        if order:
            H.fail("%d records out of per-peer order" % order)
        print("ok: broker down 10 s mid-stream: %d acknowledged messages all in Kafka once "
              "(offered %d, refused while throttled %d)" % (len(acked), res["offered"], res["refused"]))
        if g.stop() != 0:
            H.fail("gateway exit status %s" % g.p.returncode)


def case_sigkill_spool():
    with H.Harness("kafka-e2e-kill") as h:
        b = Broker(h, TOPIC + ":32")
        cfg, udp, adm = kafka_config(h, b.bootstrap, disk_buffer={"dir": h.path("spool")},
                                     dead_letter_file=h.path("dead.jsonl"))
        g = h.start_gateway(cfg)
        ack_log = h.path("acked.txt")
        bench = H.bench_async(udp, g.public_key, ack_log, "--peers", 20, "--rate", 200,
                                "--duration", 12, "--topic", "sim.tick", "--intent", "reliable",
                                "--linger", 5)
        time.sleep(3)
        b.cmd("down 1")
        H.wait_sink_state(h, adm, "kafka", ("degraded",))
        # Acknowledgements continue during the outage: the disk buffer takes the messages.
        n_before = sum(1 for _ in open(ack_log)) if os.path.exists(ack_log) else 0
        time.sleep(4)
        n_during = sum(1 for _ in open(ack_log))
        if n_during <= n_before:
            H.fail("no acknowledgements during the outage with the disk buffer on (%d -> %d)" % (n_before, n_during))
        g.kill(signal.SIGKILL)
        g.p.wait(10)
        res = H.bench_result(bench)
        acked = H.acked_set(ack_log)
        spool = os.listdir(h.path("spool"))
        if not any(f.startswith("spool-") for f in spool):
            H.fail("no disk buffer segments after the outage: %r" % spool)
        # Restart during the outage, then the broker comes back: the buffer is replayed.
        g2 = h.start_gateway(cfg, name="gateway2")
        time.sleep(1)
        b.cmd("up 1")

        def replayed():
            return not any(f.startswith("spool-") for f in os.listdir(h.path("spool")))
        H.wait_until(replayed, 90, "the disk buffer to be replayed and deleted", interval=0.5)
        recs = read_topic(b.bootstrap, TOPIC)
        present = set(bench_keys(recs))
        missing = acked - present
        if missing:
            H.fail("%d acknowledged messages missing after SIGKILL + restart, e.g. %s" %
                   (len(missing), sorted(missing)[:5]))
        check_records(recs)
        dups = len(recs) - len(present)
        print("ok: SIGKILL during an outage with the disk buffer: %d acknowledged (%d during the "
              "outage), all in Kafka after the restart (%d duplicates)" % (len(acked), n_during - n_before, dups))
        if g2.stop() != 0:
            H.fail("gateway exit status %s" % g2.p.returncode)


def case_reverse():
    n = 20
    with H.Harness("kafka-e2e-reverse") as h:
        b = Broker(h, TOPIC + ":2", "commands:2")
        seed = "ab" * 32
        keys = subprocess.run([H.binary("intentra-bench"), "--key-seed", seed, "--peers", str(n),
                               "--print-keys"], capture_output=True, timeout=30)
        peers = keys.stdout.decode().split()
        if len(peers) != n:
            H.fail("intentra-bench --print-keys gave %d keys" % len(peers))
        cfg, udp, _ = kafka_config(h, b.bootstrap, consumer={
            "group_id": "gw", "topics": ["commands"], "address": "key", "intent": "reliable",
            "topic": "cmd.{topic}", "properties": {"auto.offset.reset": "earliest"}})
        g = h.start_gateway(cfg)
        argv = [H.binary("intentra-bench"), "--gateway", "127.0.0.1:%d" % udp, "--gateway-key",
                g.public_key, "--key-seed", seed, "--peers", n, "--rate", 1, "--duration", 20,
                "--topic", "hello", "--json", "--linger", 2]
        bench = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        time.sleep(3)  # peers connected
        lines = "".join("peer:%s|command %d\n" % (p, i) for i, p in enumerate(peers))
        r = subprocess.run([kcat(), "-P", "-b", b.bootstrap, "-t", "commands", "-K", "|"],
                           input=lines.encode(), capture_output=True, timeout=30)
        if r.returncode != 0:
            H.fail("kcat -P failed: %s" % r.stderr.decode(errors="replace"))
        res = H.bench_result(bench)
        if res["received"] != n:
            H.fail("peers received %d of %d records" % (res["received"], n))
        print("ok: reverse path delivered %d Kafka records to %d peers" % (res["received"], n))
        if g.stop() != 0:
            H.fail("gateway exit status %s" % g.p.returncode)


CASES = {
    "exactly_once": case_exactly_once,
    "broker_down": case_broker_down,
    "sigkill_spool": case_sigkill_spool,
    "reverse": case_reverse,
}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print("usage: kafka_e2e.py %s" % "|".join(CASES), file=sys.stderr)
        sys.exit(2)
    CASES[sys.argv[1]]()
