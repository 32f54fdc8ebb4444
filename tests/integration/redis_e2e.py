#!/usr/bin/env python3
"""End-to-end tests of the Redis sink with real processes: intentra-gateway, intentra-bench and
redis-server (started here on a free loopback port, --save "" --appendonly no), results read
back with a raw RESP client. Usage: redis_e2e.py CASE.

  stream        20 peers x 200 Hz x 5 s Reliable -> XADD: every acknowledged message is in
                the stream exactly once (distinct peer + seq), payload checksums hold, in
                order per peer
  publish       mode "publish": a SUBSCRIBE client receives every acknowledged message
  restart       redis-server is stopped for ~3 s mid-stream and restarted on the same port:
                every acknowledged message is in the stream (duplicates counted, none missing)
  dead_letter   WRONGTYPE replies go to the dead-letter file (acknowledged); a CLIENT PAUSE
                longer than command_timeout_ms makes the sink reconnect and resend
  auth          AUTH with an ACL user and SELECT of a database; a wrong password leaves the
                sink down with a clear error that never shows the password
  realtime      Realtime messages reach the stream while connected and are discarded
                (reason sink_down, counted in /metrics) while Redis is down
  check_config  every class of config error fails --check-config naming its JSON path
                (no redis-server needed)

Every case starts what it needs, bounds every wait, and stops every process it started.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness as H  # noqa: E402

STREAM = "fleet.default.sim.tick"


def redis_server_bin():
    p = shutil.which("redis-server")
    if not p:
        print("SKIP: redis-server is not installed")
        sys.exit(H.SKIP)
    return p


class Resp:
    """A minimal RESP2 client over one TCP connection (bounded by a socket timeout)."""

    def __init__(self, port, timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def send(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest
        if t == b"-":
            raise RuntimeError("redis error: %s" % rest.decode(errors="replace"))
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RuntimeError("bad RESP line %r" % line)

    def cmd(self, *args):
        self.send(*args)
        return self.reply()


class Redis:
    def __init__(self, h, port=None, name="redis-server", extra=()):
        self.h = h
        self.port = port or H.free_port()
        self.bin = redis_server_bin()
        self.extra = list(extra)
        self.auth = []  # AUTH arguments for our own clients
        self.db = 0
        self.start(name)

    def start(self, name="redis-server"):
        self.proc = self.h.start(name, [self.bin, "--port", str(self.port), "--bind", "127.0.0.1",
                                        "--save", "", "--appendonly", "no",
                                        "--dir", self.h.dir, "--protected-mode", "no"]
                                 + self.extra)
        self.proc.wait_output(r"Ready to accept connections", timeout=20)

    def stop(self):
        self.proc.stop()

    def shutdown_save(self):
        """SHUTDOWN SAVE: an RDB snapshot of everything Redis accepted, then exit (the
        server runs without save points; the restart loads the snapshot from --dir)."""
        c = self.client()
        try:
            c.cmd("SHUTDOWN", "SAVE")
        except (ConnectionError, OSError):
            pass  # the server exits without replying
        c.close()
        H.wait_until(lambda: not self.proc.alive(), 20, "redis-server to exit")
        self.proc.stop()

    def client(self):
        c = Resp(self.port)
        if self.auth:
            c.cmd("AUTH", *self.auth)
        if self.db:
            c.cmd("SELECT", self.db)
        return c


def read_stream(r, key):
    """Every entry of a stream as a dict of fields, in stream order (XRANGE in pages)."""
    c = r.client()
    out = []
    start = b"-"
    for _ in range(100000):
        page = c.cmd("XRANGE", key, start, "+", "COUNT", 10000)
        for eid, fields in page:
            out.append({fields[i].decode(): fields[i + 1] for i in range(0, len(fields), 2)})
        if len(page) < 10000:
            break
        ms, sq = page[-1][0].split(b"-")
        start = b"%s-%d" % (ms, int(sq) + 1)
    c.close()
    return out


def check_entries(entries, expect_peers=None):
    """(distinct, duplicates, order violations) of stream entries; checks the checksums and
    that the fields agree with the payload."""
    peer_of = {}
    for e in entries:
        for k in ("peer", "shard", "topic", "seq", "intent", "ts", "payload"):
            if k not in e:
                H.fail("stream entry without field %s: %r" % (k, list(e)))
        got = H.bench_payload_ok(e["payload"])
        if got is None:
            H.fail("payload fails its checksum: %r" % e["payload"][:80])
        if peer_of.setdefault(e["peer"], got[0]) != got[0]:
            H.fail("peer %s carries two bench peers" % e["peer"][:8])
        if e["intent"] != b"reliable" or e["topic"] != b"sim.tick" or e["shard"] != b"default":
            H.fail("unexpected fields %r" % {k: e[k] for k in ("intent", "topic", "shard")})
    return H.check_exactly_once(((e["peer"], int(e["seq"])) for e in entries),
                                expect_peers=expect_peers)


def redis_config(h, port, **extra):
    s = {"type": "redis", "required": True, "address": "127.0.0.1:%d" % port}
    s.update(extra)
    return h.gateway_config(
        sinks={"redis": s},
        routes=[{"name": "all", "match": {"shard": "*", "topic": "*"},
                 "sinks": [{"sink": "redis", "destination": "fleet.{shard}.{topic}"}]}])


def case_stream():
    with H.Harness("redis-e2e-stream") as h:
        r = Redis(h)
        cfg, udp, _ = redis_config(h, r.port, mode="stream")
        g = h.start_gateway(cfg)
        res = h.bench(udp, g.public_key, "--peers", 20, "--rate", 200, "--duration", 5,
                      "--size", 128, "--topic", "sim.tick", "--intent", "reliable",
                      "--linger", 20)
        if res["connected"] != 20:
            H.fail("only %d of 20 peers connected" % res["connected"])
        if res["acknowledged"] != res["offered"] or res["refused"] != 0:
            H.fail("offered %d, acknowledged %d, refused %d" %
                   (res["offered"], res["acknowledged"], res["refused"]))
        if res["offered"] < 20000:
            H.fail("offered %d, expected 20000" % res["offered"])
        entries = read_stream(r, STREAM)
        n, dups, order = check_entries(entries, expect_peers=20)
        if dups or order:
            H.fail("redis: %d duplicates, %d out of order" % (dups, order))
        if n != res["acknowledged"]:
            H.fail("the stream holds %d distinct messages, %d were acknowledged" %
                   (n, res["acknowledged"]))
        print("ok: %d messages from 20 peers in the Redis stream exactly once, in order; "
              "p50/p99 send->ack %.2f/%.2f ms" % (n, res["latency_ms"]["p50"],
                                                   res["latency_ms"]["p99"]))
        if g.stop() != 0:
            H.fail("gateway exit status %s" % g.p.returncode)


def case_publish():
    with H.Harness("redis-e2e-publish") as h:
        r = Redis(h)
        sub = r.client()
        sub.cmd("SUBSCRIBE", STREAM)  # ["subscribe", channel, 1]
        cfg, udp, _ = redis_config(h, r.port, mode="publish")
        g = h.start_gateway(cfg)
        res = h.bench(udp, g.public_key, "--peers", 10, "--rate", 100, "--duration", 3,
                      "--size", 128, "--topic", "sim.tick", "--intent", "reliable",
                      "--linger", 20)
        if res["acknowledged"] != res["offered"] or res["offered"] < 3000:
            H.fail("offered %d, acknowledged %d" % (res["offered"], res["acknowledged"]))
        got = []
        sub.sock.settimeout(5)
        deadline = time.monotonic() + 30
        while len(got) < res["acknowledged"] and time.monotonic() < deadline:
            try:
                m = sub.reply()
            except socket.timeout:
                break
            if m[0] != b"message" or m[1] != STREAM.encode():
                H.fail("unexpected pub/sub message %r" % m[:2])
            got.append(m[2])
        keys = [H.bench_payload_ok(p) for p in got]
        if None in keys:
            H.fail("a published payload fails its checksum")
        if len(set(keys)) != res["acknowledged"] or len(keys) != len(set(keys)):
            H.fail("subscriber got %d messages (%d distinct), %d acknowledged" %
                   (len(keys), len(set(keys)), res["acknowledged"]))
        sub.close()
        print("ok: a subscriber received all %d published messages once" % len(keys))
        if g.stop() != 0:
            H.fail("gateway exit status %s" % g.p.returncode)


def case_restart():
    with H.Harness("redis-e2e-restart") as h:
        r = Redis(h)
        cfg, udp, adm = redis_config(h, r.port, mode="stream")
        g = h.start_gateway(cfg)
        ack_log = h.path("acked.txt")
        bench = H.bench_async(udp, g.public_key, ack_log, "--peers", 20, "--rate", 100,
                                "--duration", 12, "--topic", "sim.tick", "--intent", "reliable",
                                "--linger", 40)
        time.sleep(3)
        r.shutdown_save()
        t0 = time.monotonic()
        st = H.wait_sink_state(h, adm, "redis", ("down",))
        if "127.0.0.1:%d" % r.port not in (st.get("last_error") or ""):
            H.fail("sink down without a clear error: %r" % st.get("last_error"))
        time.sleep(max(0, 3 - (time.monotonic() - t0)))
        r.start("redis-server-2")
        H.wait_sink_state(h, adm, "redis", ("up",), timeout=20)
        res = H.bench_result(bench)
        acked = H.acked_set(ack_log)
        if len(acked) != res["acknowledged"]:
            H.fail("ack log has %d entries, bench says %d" % (len(acked), res["acknowledged"]))
        entries = read_stream(r, STREAM)
        keys = [H.bench_payload_ok(e["payload"]) for e in entries]
        present = set(keys)
        missing = acked - present
        if missing:
            H.fail("%d acknowledged messages are not in Redis, e.g. %s" %
                   (len(missing), sorted(missing)[:5]))
        n, dups, order = check_entries(entries)
        print("ok: redis-server down ~3 s mid-stream: %d acknowledged messages all in Redis "
              "(%d entries, %d duplicates after the reconnect: at-least-once; offered %d, "
              "refused while throttled %d)" % (len(acked), len(entries), dups, res["offered"],
                                               res["refused"]))
        if g.stop() != 0:
            H.fail("gateway exit status %s" % g.p.returncode)


def case_dead_letter():
    with H.Harness("redis-e2e-dlq") as h:
        r = Redis(h)
        c = r.client()
        c.cmd("SET", "fleet.default.bad", "a string, not a stream")  # -> WRONGTYPE
        c.close()
        dl = h.path("dead.jsonl")
        cfg, udp, adm = redis_config(h, r.port, mode="stream", dead_letter_file=dl,
                                     command_timeout_ms=500)
        g = h.start_gateway(cfg)
        res = h.bench(udp, g.public_key, "--peers", 2, "--rate", 20, "--duration", 2,
                      "--topic", "bad", "--intent", "reliable", "--linger", 20)
        if res["acknowledged"] != res["offered"]:
            H.fail("offered %d, acknowledged %d" % (res["offered"], res["acknowledged"]))
        lines = H.read_jsonl(dl)
        if len(lines) != res["acknowledged"]:
            H.fail("%d dead letters, %d acknowledged" % (len(lines), res["acknowledged"]))
        for ln in lines:
            if (ln.get("reason") != "invalid_destination" or "WRONGTYPE" not in ln.get("error", "")
                    or ln.get("topic") != "fleet.default.bad"
                    or H.bench_payload_ok(ln.get("payload", "")) is None):
                H.fail("unexpected dead letter %r" % ln)
        # A paused server (CLIENT PAUSE) outlasts command_timeout_ms: the sink reconnects and
        # sends again; nothing acknowledged is missing.
        c = r.client()
        c.cmd("CLIENT", "PAUSE", 2500, "WRITE")
        c.close()
        res2 = h.bench(udp, g.public_key, "--peers", 2, "--rate", 50, "--duration", 4,
                       "--topic", "sim.tick", "--intent", "reliable", "--linger", 30)
        if res2["acknowledged"] != res2["offered"]:
            H.fail("after a pause: offered %d, acknowledged %d" %
                   (res2["offered"], res2["acknowledged"]))
        n, dups, _ = check_entries(read_stream(r, STREAM))
        if n != res2["acknowledged"]:
            H.fail("after a pause: %d distinct in the stream, %d acknowledged" %
                   (n, res2["acknowledged"]))
        if "no reply within 500 ms" not in g.output():
            H.fail("no command timeout was reported during CLIENT PAUSE")
        print("ok: %d WRONGTYPE messages dead-lettered and acknowledged; CLIENT PAUSE past the "
              "command timeout: %d messages, %d duplicates" % (len(lines), n, dups))
        if g.stop() != 0:
            H.fail("gateway exit status %s" % g.p.returncode)


def case_auth():
    pw = "s3cret-pw-4711"
    with H.Harness("redis-e2e-auth") as h:
        r = Redis(h, extra=["--requirepass", pw])
        r.auth = [pw]
        c = r.client()
        c.cmd("ACL", "SETUSER", "gw", "on", ">" + pw + "-gw", "~*", "+@all")
        c.close()
        cfg, udp, adm = redis_config(h, r.port, mode="stream", username="gw",
                                     password=pw + "-gw", database=3)
        g = h.start_gateway(cfg)
        H.wait_sink_state(h, adm, "redis", ("up",))
        res = h.bench(udp, g.public_key, "--peers", 2, "--rate", 50, "--duration", 2,
                      "--topic", "sim.tick", "--intent", "reliable", "--linger", 20)
        if res["acknowledged"] != res["offered"]:
            H.fail("offered %d, acknowledged %d" % (res["offered"], res["acknowledged"]))
        r.db = 3
        n, dups, _ = check_entries(read_stream(r, STREAM))
        if n != res["acknowledged"] or dups:
            H.fail("database 3 holds %d distinct (%d duplicates), %d acknowledged" %
                   (n, dups, res["acknowledged"]))
        g.stop()
        # A wrong password: the sink stays down with a clear error that does not show it.
        cfg2, udp2, adm2 = redis_config(h, r.port, mode="stream", password="wrong-" + pw)
        g2 = h.start_gateway(cfg2, name="gateway2")
        st = H.wait_until(lambda: (H.sink_state(h, adm2, "redis").get("last_error") or "") and
                          H.sink_state(h, adm2, "redis"), 15, "the AUTH failure to be reported")
        if st["state"] != "down" and st["state"] != "starting":
            H.fail("sink state %r with a wrong password" % st["state"])
        if "AUTH refused" not in st["last_error"]:
            H.fail("unclear AUTH error: %r" % st["last_error"])
        out = g.output() + g2.output() + json.dumps(st)
        if pw in out:
            H.fail("the password appears in the gateway's output or status")
        print("ok: AUTH (ACL user) + SELECT 3: %d messages; wrong password: %r" %
              (n, st["last_error"]))
        g2.stop()


def discarded_sink_down(h, adm):
    with open(h.path("admin.token")) as f:
        token = f.read().strip()
    st, _, text = H.http("GET", "http://127.0.0.1:%d/metrics" % adm, token=token)
    if st != 200:
        H.fail("GET /metrics: %s" % st)
    m = re.search(r'^intentra_gateway_sink_discarded_total\{[^}]*sink="redis"[^}]*'
                  r'reason="sink_down"[^}]*\} (\d+)', text, re.M)
    return int(m.group(1)) if m else 0


def case_realtime():
    with H.Harness("redis-e2e-realtime") as h:
        r = Redis(h)
        cfg, udp, adm = redis_config(h, r.port, mode="stream")
        g = h.start_gateway(cfg)
        H.wait_sink_state(h, adm, "redis", ("up",))
        res = h.bench(udp, g.public_key, "--peers", 2, "--rate", 50, "--duration", 2,
                      "--topic", "sim.tick", "--intent", "realtime", "--linger", 5)
        # Realtime over loopback UDP: allow the rare datagram the kernel drops.
        got = read_stream(r, STREAM)
        if not (0.95 * res["sent"] <= len(got) <= res["sent"]) or \
                any(e["intent"] != b"realtime" for e in got):
            H.fail("connected: %d Realtime entries for %d sent" % (len(got), res["sent"]))
        r.shutdown_save()
        H.wait_sink_state(h, adm, "redis", ("down",))
        res2 = h.bench(udp, g.public_key, "--peers", 2, "--rate", 50, "--duration", 2,
                       "--topic", "sim.tick", "--intent", "realtime", "--linger", 5)
        n = H.wait_until(lambda: discarded_sink_down(h, adm) >= 0.95 * res2["sent"] and
                         discarded_sink_down(h, adm), 15, "Realtime discards while down")
        time.sleep(0.5)
        n = discarded_sink_down(h, adm)
        if not (0.95 * res2["sent"] <= n <= res2["sent"]):
            H.fail("%d discarded (sink_down) for %d sent while down" % (n, res2["sent"]))
        print("ok: Realtime: %d delivered while connected; %d discarded (sink_down) while "
              "Redis was down" % (len(got), n))
        if g.stop() != 0:
            H.fail("gateway exit status %s" % g.p.returncode)


def check_config_error(h, sink, want):
    cfg, _, _ = h.gateway_config(
        sinks={"r": dict({"type": "redis"}, **sink)},
        routes=[{"match": {"topic": "*"}, "sinks": [{"sink": "r"}]}])
    p = subprocess.run([H.binary("intentra-gateway"), "-c", cfg, "--check-config"],
                       capture_output=True, timeout=30)
    text = (p.stdout + p.stderr).decode(errors="replace")
    if p.returncode == 0:
        H.fail("--check-config accepted %r" % sink)
    if want not in text:
        H.fail("--check-config for %r: expected %r in:\n%s" % (sink, want, text))
    if "s3cret" in text:
        H.fail("the password appears in the error: %s" % text)


def case_check_config():
    with H.Harness("redis-e2e-config") as h:
        bad = [
            ({"adress": "127.0.0.1:6379"}, "sinks.r.adress: unknown key"),
            ({"address": "127.0.0.1"}, "sinks.r.address: expected"),
            ({"address": "127.0.0.1:0"}, "sinks.r.address: expected"),
            ({"address": "127.0.0.1:99999"}, "sinks.r.address: expected"),
            ({"address": "::1:6379"}, "sinks.r.address: expected"),
            ({"address": "unix:"}, "sinks.r.address: expected"),
            ({"address": 6379}, "sinks.r.address: expected"),
            ({"mode": "queue"}, "sinks.r.mode: expected \"stream\" or \"publish\""),
            ({"maxlen": -1}, "sinks.r.maxlen: expected"),
            ({"mode": "publish", "maxlen": 10}, "sinks.r.maxlen: only valid"),
            ({"password": ""}, "sinks.r.password: expected a non-empty string"),
            ({"username": "u"}, "sinks.r.username: needs \"password\""),
            ({"database": 1.5}, "sinks.r.database: expected"),
            ({"connect_timeout_ms": 0}, "sinks.r.connect_timeout_ms: expected"),
            ({"command_timeout_ms": "5"}, "sinks.r.command_timeout_ms: expected"),
            ({"max_pipeline": 70000}, "sinks.r.max_pipeline: expected"),
            ({"dead_letter_file": ""}, "sinks.r.dead_letter_file: expected"),
            ({"tls": True}, "sinks.r.tls: not supported"),
            ({"password": "s3cret", "bogus": 1}, "sinks.r.bogus: unknown key"),
        ]
        for sink, want in bad:
            check_config_error(h, sink, want)
        # And a good one passes (nothing is contacted).
        cfg, _, _ = h.gateway_config(
            sinks={"r": {"type": "redis", "address": "[::1]:6380", "mode": "stream",
                         "maxlen": 1000, "username": "u", "password": "s3cret", "database": 2,
                         "connect_timeout_ms": 100, "command_timeout_ms": 100,
                         "max_pipeline": 10, "dead_letter_file": h.path("dl.jsonl")}},
            routes=[{"match": {"topic": "*"}, "sinks": [{"sink": "r"}]}])
        p = subprocess.run([H.binary("intentra-gateway"), "-c", cfg, "--check-config"],
                           capture_output=True, timeout=30)
        if p.returncode != 0:
            H.fail("--check-config refused a good redis sink: %s" % (p.stdout + p.stderr).decode())
        if os.path.exists(h.path("dl.jsonl")):
            H.fail("--check-config created the dead-letter file")
        print("ok: %d bad redis configs refused with their JSON path; a good one accepted" %
              len(bad))


CASES = {
    "stream": case_stream,
    "publish": case_publish,
    "restart": case_restart,
    "check_config": case_check_config,
    "dead_letter": case_dead_letter,
    "auth": case_auth,
    "realtime": case_realtime,
}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print("usage: redis_e2e.py %s" % "|".join(CASES), file=sys.stderr)
        sys.exit(2)
    CASES[sys.argv[1]]()
    sys.exit(0)
