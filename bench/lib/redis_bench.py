"""redis_bench.py: the measurements of scenario (c): the gateway's Redis sink (bench peers ->
gateway -> redis-server, Reliable, XADD or PUBLISH) and redis-benchmark sending the same
commands to the same server with a fixed pipeline. bench/run's scenario_redis alternates them
within each repetition.
"""
import os
import re
import shutil
import socket

import benchlib as bl
import measure as ms
from benchlib import harness, ScenarioError

PIPELINE = 64     # redis-benchmark -P: commands in flight per connection
CLIENTS = 1       # redis-benchmark -c: one connection, like the sink
MAX_PIPELINE = 1024  # the sink's max_pipeline (its default)


def available():
    return shutil.which("redis-server") and shutil.which("redis-benchmark")


class Server:
    """redis-server on a free loopback port without persistence (inside a bl.Harness)."""

    def __init__(self, h):
        self.port = harness.free_port(socket.SOCK_STREAM)
        self.proc = h.start("redis-server", [
            shutil.which("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", h.dir, "--protected-mode", "no"])
        self.proc.wait_output(r"Ready to accept connections", timeout=20)

    def cmd(self, *args):
        """One command over a fresh connection; returns the reply line (RESP2, simple)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        try:
            out = [b"*%d\r\n" % len(args)]
            for a in args:
                a = str(a).encode()
                out.append(b"$%d\r\n%s\r\n" % (len(a), a))
            s.sendall(b"".join(out))
            buf = b""
            while b"\r\n" not in buf:
                c = s.recv(4096)
                if not c:
                    break
                buf += c
            return buf.split(b"\r\n", 1)[0].decode()
        finally:
            s.close()

    def xlen(self, key):
        r = self.cmd("XLEN", key)
        if not r.startswith(":"):
            raise ScenarioError("XLEN %s: %s" % (key, r))
        return int(r[1:])

    def cpu_seconds(self):
        return bl.proc_cpu_seconds(self.proc.p.pid)


def sink(port, mode, dest):
    return ({"redis": {"type": "redis", "required": True, "address": "127.0.0.1:%d" % port,
                       "mode": mode, "max_pipeline": MAX_PIPELINE}},
            [{"name": "all", "match": {"shard": "*", "topic": "*"},
              "sinks": [{"sink": "redis", "destination": dest}]}])


def gateway_run(server, mode, key, peers, rate, duration, size):
    """bench peers -> gateway -> redis-server, Reliable. Stream mode checks XLEN against the
    acknowledged count (acknowledged but absent would be a loss: must be 0)."""
    sinks, routes = sink(server.port, mode, key)
    c0 = server.cpu_seconds()
    r = ms.gateway_run(peers, rate, duration, size, "reliable", sinks, routes,
                       sink_name="redis", linger=15)
    c1 = server.cpu_seconds()
    acked = r["bench"].get("acknowledged", 0)
    if mode == "stream":
        n = server.xlen(key)
        r["redis_entries"] = n
        r["acked_missing"] = max(0, acked - n)
    r["redis_cpu_per_M"] = bl.per_million(c1 - c0 if c0 is not None and c1 is not None else None,
                                          r.get("delivered_total"))
    return r


def benchmark_args(mode, key, size):
    """The command redis-benchmark repeats: the same XADD the sink sends (same fields, same
    payload size) or the same PUBLISH."""
    payload = "x" * size
    if mode == "publish":
        return ["PUBLISH", key, payload]
    return ["XADD", key, "*", "peer", "a" * 64, "shard", "default", "topic", ms.TOPIC,
            "seq", "__rand_int__", "intent", "reliable", "ts", "1795437276000000000",
            "payload", payload]


def benchmark_run(server, mode, key, count, size):
    """redis-benchmark -c 1 -P 64 -n count: the server's rate for the same commands."""
    with bl.Harness("bench-redis-benchmark") as h:
        w = bl.Watch()
        try:
            c0 = server.cpu_seconds()
            p = h.start("redis-benchmark", [
                shutil.which("redis-benchmark"), "-p", str(server.port), "-c", str(CLIENTS),
                "-P", str(PIPELINE), "-n", str(count), "-r", "1000000", "--csv"]
                + benchmark_args(mode, key, size))
            w.add("ref", p.p.pid)
            try:
                p.p.wait(600)
            except Exception:
                raise ScenarioError("redis-benchmark did not finish within 600 s")
            c1 = server.cpu_seconds()
            cpu = w.cpu("ref")
            rss = w.peak_rss_kib("ref")
        finally:
            w.close()
        out = p.output()
    rows = [ln for ln in out.splitlines() if ln.startswith('"') and not ln.startswith('"test"')]
    if p.p.returncode != 0 or not rows:
        raise ScenarioError("redis-benchmark failed (exit %s): %s" % (p.p.returncode, out[-500:]))
    cells = re.findall(r'"([^"]*)"', rows[-1])
    rps, p50, p99 = float(cells[1]), float(cells[4]), float(cells[6])
    res = {"achieved_per_s": rps, "p50_ms": p50, "p99_ms": p99, "count": count,
           "cpu_per_M": bl.per_million(cpu, count), "peak_rss_kib": rss,
           "redis_cpu_per_M": bl.per_million(c1 - c0 if c0 is not None and c1 is not None
                                             else None, count)}
    if mode == "stream":
        n = server.xlen(key)
        res["redis_entries"] = n
        res["delivery"] = n / count if count else None
    else:
        res["delivery"] = 1.0  # PUBLISH: every reply is a count; nothing to read back
    return res
