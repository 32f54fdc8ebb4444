"""measure.py: one measurement each: the gateway under intentra-bench load, the raw UDP
ceiling, the Kafka paths (gateway, raw librdkafka producer, rsyslog imudp -> omkafka), and the
microbenchmark programs. bench/run's scenarios combine them, alternating ours and the
reference within each repetition.

Every measurement starts its own servers on free loopback ports through a harness.Harness
(which stops them on the way out, also on errors), reads rates in a steady window that leaves
out connection set-up and the tail, and returns a plain dict (kept in the raw JSON results).
"""
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import benchlib as bl
from benchlib import harness, ScenarioError

TOPIC = "bench"          # intentra topic of the generated messages
TAG_LEN = 16             # AEAD tag
HEADER_LEN = 16          # intentra header
MSEQ_LEN = 4             # DATA plaintext: mseq || topic_len || topic || body


def wire_size(body_size, topic=TOPIC):
    """Bytes of one intentra DATA datagram carrying body_size bytes on `topic`: the size the
    raw blaster sends so both receivers see the same packets."""
    return HEADER_LEN + MSEQ_LEN + 1 + len(topic) + body_size + TAG_LEN


def window_edges(duration):
    """(warm-up, tail) in seconds for a sending phase of `duration` seconds."""
    edge = min(1.0, max(0.2, 0.15 * duration))
    return edge, edge


def sleep_until(t):
    d = t - time.monotonic()
    if d > 0:
        time.sleep(d)


def connect_timeout(peers):
    return 30.0 + peers / 200.0


def null_sink():
    return ({"null": {"type": "null"}},
            [{"name": "all", "match": {"shard": "*", "topic": "*"}, "sinks": [{"sink": "null"}]}])


def _delivered(samples, sink):
    return bl.metric(samples, "intentra_gateway_sink_delivered_total", sink=sink)


class Sampler:
    """Polls a gauge of the gateway's /metrics in the background; keeps its peak."""

    def __init__(self, gw, name, interval=0.1):
        self.gw, self.name, self.interval = gw, name, interval
        self.peak = 0.0
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop_ev.wait(self.interval):
            try:
                self.peak = max(self.peak, bl.metric(self.gw.scrape(), self.name))
            except Exception:  # the gateway may be stopping; the peak so far stands
                return

    def close(self):
        self.stop_ev.set()
        self.thread.join(5)
        return self.peak


# ---- the gateway under intentra-bench ----

def gateway_run(peers, rate, duration, size=128, intent="realtime", sinks=None, routes=None,
                sink_name="null", transport=None, linger=5, during=None, bench_extra=()):
    """Start a gateway, drive it with intentra-bench, measure the steady window.

    during(h, gw, t_up) may start more load once the sessions are up and returns a callable
    collecting its results (a dict) after the window."""
    if sinks is None:
        sinks, routes = null_sink()
    with bl.Harness("bench-gw") as h:
        path, udp, adm, tok = bl.gateway_config(h, sinks, routes, transport)
        gw = bl.Gateway(h, path, udp, adm, tok)
        w = bl.Watch()
        try:
            w.add("gateway", gw.pid)
            s0 = gw.scrape()
            b = h.start("intentra-bench", bl.bench_argv(
                gw, peers, rate, duration, size, intent,
                extra=["--linger", linger] + list(bench_extra)))
            w.add("gen", b.p.pid)
            gw.wait_sessions(peers, connect_timeout(peers), bench_proc=b.p)
            t_up = time.monotonic()
            collect = during(h, gw, t_up) if during else None
            warm, tail = window_edges(duration)
            sleep_until(t_up + warm)
            s1, g1, b1, t1 = gw.scrape(), w.cpu("gateway"), w.cpu("gen"), time.monotonic()
            sleep_until(t_up + duration - tail)
            s2, g2, b2, t2 = gw.scrape(), w.cpu("gateway"), w.cpu("gen"), time.monotonic()
            res = bl.bench_result(b, duration + linger + connect_timeout(peers) + 30)
            s3 = gw.scrape()
            extra = collect() if collect else {}
            rss = w.peak_rss_kib("gateway")
            bl.stop_gateway(gw)
        finally:
            w.close()
    win = t2 - t1
    d_win = _delivered(s2, sink_name) - _delivered(s1, sink_name)
    d_all = _delivered(s3, sink_name) - _delivered(s0, sink_name)
    sent = res.get("sent", 0)
    gen_rate = sent / res["duration_seconds"] if res.get("duration_seconds") else 0
    hist = "intentra_gateway_sink_latency_seconds"
    p50 = bl.histogram_quantile(s1, s2, hist, 0.50, sink=sink_name)
    p99 = bl.histogram_quantile(s1, s2, hist, 0.99, sink=sink_name)
    drops = {k: v for k, v in (
        (r, bl.metric_by(s3, "intentra_packets_dropped_total", "reason").get(r, 0)
         - bl.metric_by(s0, "intentra_packets_dropped_total", "reason").get(r, 0))
        for r in bl.metric_by(s3, "intentra_packets_dropped_total", "reason")) if v}
    out = {
        "peers": peers, "rate_per_peer": rate, "size": size, "intent": intent,
        "offered_per_s": peers * rate, "bench": res,
        "window_s": win, "delivered_window": d_win,
        "achieved_per_s": d_win / win if win > 0 else None,
        "delivered_total": d_all,
        "delivery": d_all / sent if sent else None,
        "generator_sent_per_s": gen_rate,
        "gw_cpu_window": g2 - g1, "gen_cpu_window": b2 - b1,
        "gw_cpu_util": (g2 - g1) / win if win > 0 else None,
        "gen_cpu_util": (b2 - b1) / win if win > 0 else None,
        "cpu_per_M": bl.per_million(g2 - g1, d_win),
        "gen_cpu_per_M": bl.per_million(b2 - b1, gen_rate * win),
        "p50_ms": p50 * 1e3 if p50 is not None else None,
        "p99_ms": p99 * 1e3 if p99 is not None else None,
        "kernel_drops": bl.metric(s3, "intentra_kernel_receive_drops_total")
        - bl.metric(s0, "intentra_kernel_receive_drops_total"),
        "drops": drops, "peak_rss_kib": rss,
    }
    out.update(extra)
    return out


# ---- the raw UDP ceiling ----

def raw_udp_run(rate_total, duration, wire, sources, coalesce_us=0, gso=1):
    """raw-udp-sink fed by udp-blast at the same offered rate and datagram size; coalesce_us:
    the gateway's receive coalescing (transport.receive_coalesce_us), 0 for none; gso > 1:
    udp-blast sends up to gso datagrams per UDP GSO message and the sink reads with UDP_GRO
    (as intentra-bench and the gateway do by default)."""
    with bl.Harness("bench-raw") as h:
        stats = h.path("raw.stats")
        sink = h.start("raw-udp-sink", [harness.binary("raw-udp-sink"), "--stats-file", stats,
                                        "--coalesce-us", str(coalesce_us)]
                       + (["--gro"] if gso > 1 else []))
        port = int(sink.wait_output(r"listening 127\.0\.0\.1:(\d+)").group(1))
        w = bl.Watch()
        try:
            w.add("ref", sink.p.pid)
            blast = h.start("udp-blast", [
                harness.binary("udp-blast"), "--target", "127.0.0.1:%d" % port,
                "--rate", str(rate_total), "--size", str(wire), "--duration", str(duration),
                "--sources", str(max(1, min(sources, 1024))), "--gso", str(gso)])
            w.add("gen", blast.p.pid)
            t0 = time.monotonic()
            warm, tail = window_edges(duration)
            sleep_until(t0 + warm)
            k1, c1, b1, t1 = bl.raw_sink_stats(stats), w.cpu("ref"), w.cpu("gen"), time.monotonic()
            sleep_until(t0 + duration - tail)
            k2, c2, b2, t2 = bl.raw_sink_stats(stats), w.cpu("ref"), w.cpu("gen"), time.monotonic()
            br = bl.json_line(blast, duration + 30, "udp-blast")
            # Let the sink take what is still queued in its socket.
            last, deadline = -1, time.monotonic() + 5
            while time.monotonic() < deadline:
                n = bl.raw_sink_stats(stats)[0]
                if n == last:
                    break
                last = n
                time.sleep(0.2)
            k3 = bl.raw_sink_stats(stats)
            sink.p.send_signal(signal.SIGTERM)
            final = bl.json_line(sink, 10, "raw-udp-sink")
            rss = w.peak_rss_kib("ref")
        finally:
            w.close()
    win = t2 - t1
    d_win = k2[0] - k1[0]
    gen_rate = br["sent"] / br["seconds"] if br.get("seconds") else 0
    return {
        "offered_per_s": rate_total, "wire_size": wire, "blast": br, "sink": final,
        "window_s": win, "delivered_window": d_win,
        "achieved_per_s": d_win / win if win > 0 else None,
        "delivered_total": k3[0], "delivery": k3[0] / br["sent"] if br.get("sent") else None,
        "kernel_drops": k3[2], "generator_sent_per_s": gen_rate,
        "ref_cpu_window": c2 - c1, "gen_cpu_window": b2 - b1,
        "cpu_per_M": bl.per_million(c2 - c1, d_win),
        "gen_cpu_per_M": bl.per_million(b2 - b1, gen_rate * win),
        "gen_cpu_util": (b2 - b1) / win if win > 0 else None,
        "peak_rss_kib": rss or final.get("peak_rss_kib"),
    }


# ---- Kafka ----

class Broker:
    """kafka-mock-broker for a whole scenario: topics are created per measurement.

    32 partitions per topic: the mock cluster keeps at most 5 MiB of batches per partition
    (the oldest are dropped beyond that), and a run's records must all still be there when
    they are counted. kafka_count reports any eviction."""

    def __init__(self, h, partitions=32):
        self.partitions = partitions
        self.proc = h.start("kafka-mock-broker",
                            [harness.binary("kafka-mock-broker"), "--partitions", str(partitions)],
                            stdin=subprocess.PIPE)
        self.bootstrap = self.proc.wait_output(r"(127\.0\.0\.1:\d+)").group(1)
        self.acks = 0

    def create_topic(self, name):
        self.proc.p.stdin.write(("topic %s %d\n" % (name, self.partitions)).encode())
        self.proc.p.stdin.flush()
        self.acks += 1
        # The broker answers every command with one line: ok / error.
        want = self.acks

        def answered():
            lines = self.proc.output().splitlines()[1:]
            return len([x for x in lines if x.startswith(("ok", "error"))]) >= want
        harness.wait_until(answered, 10, "the broker to create topic " + name)
        last = [x for x in self.proc.output().splitlines()[1:] if x.startswith(("ok", "error"))][-1]
        if last.startswith("error"):
            raise ScenarioError("broker: topic %s: %s" % (name, last))

    def wait_stable(self, topic):
        return bl.kafka_wait_stable(self.bootstrap, topic, self.partitions)

    def offsets(self, topic):
        return bl.kafka_end_offsets(self.bootstrap, topic, self.partitions)


def _kafka_delivery(count, sent):
    """Distinct records found / records sent. When the mock broker evicted old batches for
    its size limit, the evicted ones count as delivered (they were appended: the offsets say
    so) and the ratio is flagged in the table."""
    if not sent:
        return None
    return (count["distinct"] + count["evicted"]) / sent


# Record shapes: "default" is the Kafka sink's defaults; the others are the records rsyslog's
# omkafka writes: "plain" the payload alone, "keyed" the payload keyed by its peer (no headers:
# omkafka has none).
KAFKA_SHAPES = ("default", "plain", "keyed")


def kafka_sink(bootstrap, topic, shape="default"):
    """(sinks, routes) of a gateway writing every message to `topic` with the Kafka sink's
    defaults (acks=all, idempotence, lz4, linger 5 ms), records of the given shape: "default"
    keyed by peer with the six headers, "plain" payload only (no key, no headers), "keyed"
    keyed by peer without headers."""
    assert shape in KAFKA_SHAPES
    sink = {"type": "kafka", "brokers": bootstrap}
    if shape != "default":
        sink["headers"] = False
    return ({"kafka": sink},
            [{"name": "all", "match": {"shard": "*", "topic": "*"},
              "sinks": [{"sink": "kafka", "destination": topic,
                         "key": "" if shape == "plain" else "{peer}"}]}])


def kafka_gateway_run(broker, topic, peers, rate, duration, size, shape="default"):
    """bench peers -> gateway -> mock broker, Reliable; counted back with kcat."""
    sinks, routes = kafka_sink(broker.bootstrap, topic, shape)
    r = gateway_run(peers, rate, duration, size, "reliable", sinks, routes, sink_name="kafka",
                    linger=15)
    broker.wait_stable(topic)
    c = bl.kafka_count(broker.bootstrap, topic, broker.partitions)
    sent = r["bench"].get("sent", 0)
    acked = r["bench"].get("acknowledged", 0)
    r["kafka"] = c
    r["delivery"] = _kafka_delivery(c, sent)
    # Acknowledged to the peer but absent from the topic would be a loss; must be 0. Records
    # the mock broker evicted for its own size limit cannot be told apart, so they are
    # reported, not counted as lost.
    r["acked_missing"] = max(0, acked - c["distinct"] - c["evicted"])
    return r


def kafka_raw_run(broker, topic, count, size, keys, rate=None):
    """raw-kafka-producer: the same count and size as fast as librdkafka goes, or paced at
    `rate` messages/s."""
    with bl.Harness("bench-rawkafka") as h:
        w = bl.Watch()
        try:
            p = h.start("raw-kafka-producer", [
                harness.binary("raw-kafka-producer"), "--brokers", broker.bootstrap,
                "--topic", topic, "--count", str(count), "--size", str(size),
                "--keys", str(keys), "--headers"] + (["--rate", str(rate)] if rate else []))
            w.add("ref", p.p.pid)
            res = bl.json_line(p, 600, "raw-kafka-producer")
            rss = w.peak_rss_kib("ref")
        finally:
            w.close()
    broker.wait_stable(topic)
    c = bl.kafka_count(broker.bootstrap, topic, broker.partitions)
    return {"producer": res, "kafka": c, "achieved_per_s": res.get("msgs_per_second"),
            "delivery": _kafka_delivery(c, count),
            "cpu_per_M": bl.per_million(res.get("cpu_seconds"), res.get("delivered")),
            "p50_ms": res["latency_ms"]["p50"], "p99_ms": res["latency_ms"]["p99"],
            "peak_rss_kib": rss or res.get("peak_rss_kib")}


RSYSLOG_CONF = """# Generated by bench/run: imudp -> omkafka with the gateway's producer settings.
global(workDirectory="{work}")
module(load="imudp" threads="1" batchSize="128")
module(load="omkafka")
template(name="bench_raw" type="string" string="%rawmsg%")
{key_template}
ruleset(name="bench_kafka" queue.type="FixedArray" queue.size="{queue}"
        queue.dequeueBatchSize="1024") {{
  action(type="omkafka" broker=["{bootstrap}"] topic="{topic}" template="bench_raw"
         partitions.auto="on"{key}
         confParam=["acks=all", "enable.idempotence=true", "compression.type=lz4",
                    "linger.ms=5"]
         resubmitOnFailure="on" closeTimeout="10000")
}}
input(type="imudp" address="127.0.0.1" port="{port}" ruleset="bench_kafka"
      rcvbufSize="{rcvbuf}")
"""


def rsyslog_available():
    return os.path.exists("/usr/sbin/rsyslogd") and any(
        os.path.exists(os.path.join(d, "omkafka.so"))
        for d in ("/usr/lib/x86_64-linux-gnu/rsyslog", "/usr/lib/rsyslog",
                  "/usr/lib/aarch64-linux-gnu/rsyslog"))


def _udp_port_bound(port):
    """True once someone holds 127.0.0.1:port/udp (rsyslog's imudp is listening)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        s.close()


# keyed: omkafka's dynaKey with the bench payload's peer index ("ib1 <peer> <seq> ...",
# field 2) behind 56 zeros, so rsyslog hashes and copies keys of 57-64 bytes like our 64-hex
# peer keys; partitions.auto then partitions by key with librdkafka's default partitioner.
RSYSLOG_KEY_TEMPLATE = ('template(name="bench_key" type="string" string="' + "0" * 56
                        + '%rawmsg:F,32:2%")')


def kafka_rsyslog_run(broker, topic, rate_total, count, duration, size, sources, gso=1,
                      keyed=False):
    """udp-blast -> rsyslogd (imudp -> omkafka) -> the same broker, counted with kcat. gso:
    datagrams per UDP GSO message from the generator, like the bench peers' bursts (rsyslog's
    socket has no UDP_GRO: the kernel cuts them apart, on the generator's CPU). keyed: records
    keyed by peer (RSYSLOG_KEY_TEMPLATE)."""
    with bl.Harness("bench-rsyslog") as h:
        work = h.path("rsyslog-work")
        os.makedirs(work)
        port = harness.free_port()
        conf = h.path("rsyslog.conf")
        with open(conf, "w") as f:
            f.write(RSYSLOG_CONF.format(
                work=work, bootstrap=broker.bootstrap, topic=topic, port=port,
                queue=max(100000, count), rcvbuf="4m",
                key_template=RSYSLOG_KEY_TEMPLATE if keyed else "",
                key='\n         dynaKey="on" key="bench_key"' if keyed else ""))
        chk = subprocess.run(["/usr/sbin/rsyslogd", "-N1", "-f", conf], capture_output=True,
                             text=True)
        if chk.returncode != 0:
            raise ScenarioError("rsyslogd -N1 rejected the generated config:\n"
                                + (chk.stdout + chk.stderr)[-2000:])
        rs = h.start("rsyslogd", ["/usr/sbin/rsyslogd", "-n", "-f", conf,
                                  "-i", h.path("rsyslogd.pid")])
        harness.wait_until(lambda: _udp_port_bound(port) or not rs.alive(), 15,
                           "rsyslogd to listen on udp port %d" % port)
        if not rs.alive():
            raise ScenarioError("rsyslogd exited: " + rs.output()[-2000:])
        w = bl.Watch()
        try:
            w.add("ref", rs.p.pid)
            blast = h.start("udp-blast", [
                harness.binary("udp-blast"), "--target", "127.0.0.1:%d" % port,
                "--rate", str(rate_total), "--count", str(count), "--size", str(size),
                "--duration", str(duration + 5), "--sources", str(max(1, min(sources, 1024))),
                "--gso", str(gso)])
            w.add("gen", blast.p.pid)
            t0 = time.monotonic()
            warm, tail = window_edges(duration)
            sleep_until(t0 + warm)
            o1, c1, b1, t1 = broker.offsets(topic), w.cpu("ref"), w.cpu("gen"), time.monotonic()
            sleep_until(t0 + duration - tail)
            o2, c2, b2, t2 = broker.offsets(topic), w.cpu("ref"), w.cpu("gen"), time.monotonic()
            br = bl.json_line(blast, duration + 60, "udp-blast")
            broker.wait_stable(topic)
            rss = w.peak_rss_kib("ref")
        finally:
            w.close()
    c = bl.kafka_count(broker.bootstrap, topic, broker.partitions)
    win = t2 - t1
    gen_rate = br["sent"] / br["seconds"] if br.get("seconds") else 0
    return {"blast": br, "kafka": c, "window_s": win, "delivered_window": o2 - o1,
            "achieved_per_s": (o2 - o1) / win if win > 0 else None,
            "delivery": _kafka_delivery(c, br.get("sent")),
            "cpu_per_M": bl.per_million(c2 - c1, o2 - o1),
            "gen_cpu_per_M": bl.per_million(b2 - b1, gen_rate * win),
            "peak_rss_kib": rss}


# ---- microbenchmarks (programs written with the core and the router) ----

def _run_tool(name, args, timeout=600):
    path = bl.find_binary(name)
    if not path:
        return None
    r = subprocess.run([path] + args, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise ScenarioError("%s failed (%d): %s" % (name, r.returncode, (r.stdout + r.stderr)[-1000:]))
    return r.stdout


def micro(quick):
    """Run aead-bench, endpoint-bench and router_bench (whichever exist); parse their output."""
    q = ["--quick"] if quick else []
    out = {}
    text = _run_tool("aead-bench", q)
    if text is not None:
        a = {"text": text}
        for line in text.splitlines():
            m = re.match(r"\s+(.+?)\s{2,}([\d.]+) (ns|/s)$", line)
            if m:
                a[m.group(1).strip()] = float(m.group(2))
        out["aead"] = a
    text = _run_tool("endpoint-bench", q)
    if text is not None:
        e = {"text": text}
        for m in re.finditer(r"handshake (\w+)\s+both roles\s+([\d.]+) us \(\s*(\d+)/s\)\s+"
                             r"responder\s+([\d.]+) us \(\s*(\d+)/s\)", text):
            e["handshake_" + m.group(1)] = {"both_us": float(m.group(2)), "both_per_s": float(m.group(3)),
                                            "responder_us": float(m.group(4)),
                                            "responder_per_s": float(m.group(5))}
        for m in re.finditer(r"(Realtime|Reliable)\s+(\w+)\s+(\d+) B body\s+send\s+(\d+) ns\s+"
                             r"recv\s+(\d+) ns\s+per message\s+(\d+) ns", text):
            e["%s_%s_%s" % (m.group(1), m.group(2), m.group(3))] = {
                "send_ns": float(m.group(4)), "recv_ns": float(m.group(5)),
                "per_message_ns": float(m.group(6))}
        m = re.search(r"incl\. hash tables.*?:\s*(\d+) B", text)
        if m:
            e["session_bytes"] = float(m.group(1))
        m = re.search(r"heap in use grew [\d.]+ MiB = (\d+) B per session", text)
        if m:
            e["session_heap_bytes"] = float(m.group(1))
        out["endpoint"] = e
    text = _run_tool("router_bench", ["--json"] + q) or _run_tool("router-bench", ["--json"] + q)
    if text is not None:
        out["router"] = [json.loads(x) for x in text.splitlines()
                         if x.startswith("{")]
    return out
