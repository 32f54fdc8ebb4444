#!/usr/bin/env python3
"""End-to-end tests of the webhook sink with real processes: intentra-gateway, intentra-bench
and a real HTTP server (http.server.ThreadingHTTPServer, in this process, on a free loopback
port) that checks every Standard Webhooks signature and records every request. Usage:
webhook_e2e.py CASE.

  exactly_once  20 peers x 200 Hz x 5 s Reliable: every acknowledged message was received
                (2xx) by distinct peer+seq, payload checksums hold, every signature is valid;
                repeats are allowed only under the same webhook-id (reported)
  outage_503    the server answers 503 for 3 s mid-stream: nothing acknowledged is missing,
                the failed batches are retried with the same webhook-id
  retry_after   a 429 with Retry-After: 1 is honoured (same webhook-id, >= 1 s later)
  dead_letter   a 400 puts the batch in the dead-letter file with its reason; later
                batches keep flowing
  realtime_discard  503 for 6 s with Realtime traffic: each batch is tried 1 +
                realtime_max_retries times, then discarded (reason sink_down in /metrics);
                the sink recovers afterwards
  routing       the shard attribute webhook_endpoint overrides url; a destination template
                rendering to an http:// URL is the whole URL
  bad_destination  a URL template rendering too long (> 2047 bytes) or malformed ("http://"
                with an empty attribute): Reliable messages go to the dead-letter file
                (invalid_destination) without a request; other routes keep flowing
  batch_limits  batch_max_messages 1 sends one JSON object per POST; batch_max_bytes 1024
                bounds every body
  mixed         half Reliable, half Realtime during a 503 outage: batches drop their Realtime
                messages after realtime_max_retries and keep their webhook-id; every
                acknowledged (Reliable) message arrives
  sigterm       SIGTERM under load: the gateway drains (exit 0) and every acknowledged
                message was received
  tls           HTTPS with a self-signed certificate: delivered with ca_file; refused
                (nothing acknowledged, stage tls in last_error) without it; tls_verify false
  check_config  --check-config names the bad key for a bad url, an unknown key, a bad secret

The server is told what to answer through POST /_control (JSON {"status": 503,
"seconds": 3} or {"status": 429, "count": 1, "retry_after": "1"}); the HTTPS server of the
tls case is told in-process.
"""
import base64
import hashlib
import hmac
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness as H  # noqa: E402

SECRET = "whsec_" + base64.b64encode(b"intentra webhook e2e test secret").decode()
KEY = base64.b64decode(SECRET[6:])


class Recorder:
    """What the server saw, and what it was told to answer."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []  # dicts: t, id, ts, status, msgs [(peer, seq, bench_key)], conn
        self.bad_sigs = []
        self.rules = []  # {"status", "until" (monotonic) or "count", "retry_after"}

    def answer(self):
        with self.lock:
            now = time.monotonic()
            while self.rules:
                r = self.rules[0]
                if "until" in r and now >= r["until"]:
                    self.rules.pop(0)
                    continue
                if "count" in r:
                    r["count"] -= 1
                    if r["count"] <= 0:
                        self.rules.pop(0)
                return r["status"], r.get("retry_after")
            return 200, None

    def control(self, rule):
        with self.lock:
            if "seconds" in rule:
                rule["until"] = time.monotonic() + float(rule.pop("seconds"))
            self.rules.append(rule)

    def ok_requests(self):
        with self.lock:
            return [r for r in self.requests if 200 <= r["status"] < 300]


def make_handler(rec):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive
        # One write per response and no Nagle: otherwise delayed ACKs add ~40 ms per POST.
        wbufsize = 65536
        disable_nagle_algorithm = True

        def log_message(self, *a):
            pass

        def reply(self, status, body=b"", headers=()):
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self):
            t = time.monotonic()
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
            if self.path == "/_control":
                rec.control(json.loads(body))
                return self.reply(204)
            wid = self.headers.get("webhook-id", "")
            wts = self.headers.get("webhook-timestamp", "")
            sig = self.headers.get("webhook-signature", "")
            want = "v1," + base64.b64encode(hmac.new(KEY, ("%s.%s." % (wid, wts)).encode() + body,
                                                     hashlib.sha256).digest()).decode()
            problems = []
            if not hmac.compare_digest(want, sig):
                problems.append("bad signature %r for id %r" % (sig, wid))
            if not wts.isdigit() or abs(int(wts) - time.time()) > 300:
                problems.append("bad webhook-timestamp %r" % wts)
            if self.headers.get("Content-Type") != "application/json":
                problems.append("Content-Type %r" % self.headers.get("Content-Type"))
            if self.headers.get("X-Test") != "e2e":
                problems.append("static header X-Test missing")
            msgs = []
            try:
                doc = json.loads(body)
                for m in (doc if isinstance(doc, list) else [doc]):
                    p = m["payload"]
                    if m.get("payload_encoding") == "base64":
                        p = base64.b64decode(p)
                    key = H.bench_payload_ok(p)
                    if key is None:
                        problems.append("payload fails its checksum: %r" % p[:60])
                    for k in ("ts", "shard", "peer", "topic", "seq", "intent"):
                        if k not in m:
                            problems.append("message without %s" % k)
                    msgs.append((m.get("peer"), m.get("seq"), key, m.get("shard"),
                                 m.get("topic"), m.get("intent")))
            except (ValueError, KeyError, TypeError) as e:
                problems.append("body is not the expected JSON (%s): %r" % (e, body[:100]))
            status, retry_after = rec.answer()
            with rec.lock:
                if problems:
                    rec.bad_sigs.extend(problems)
                rec.requests.append({"t": t, "id": wid, "ts": wts, "status": status,
                                     "path": self.path, "len": len(body),
                                     "array": body[:1] == b"[",
                                     "msgs": msgs, "conn": self.client_address[1]})
            if status == 429 and retry_after is not None:
                return self.reply(429, b"slow down", [("Retry-After", retry_after)])
            self.reply(status, b"{}" if status < 300 else b"test server says %d" % status,
                       [("Content-Type", "application/json")])

    return Handler


class Server:
    def __init__(self, tls=None):
        """tls: (cert_file, key_file) to serve HTTPS."""
        self.rec = Recorder()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(self.rec))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        scheme = "http"
        if tls:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
            scheme = "https"
        self.url = "%s://127.0.0.1:%d/hook" % (scheme, self.port)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def control(self, **rule):
        if self.url.startswith("https:"):
            return self.rec.control(rule)
        status, _, body = H.http("POST", "http://127.0.0.1:%d/_control" % self.port, body=rule)
        if status != 204:
            H.fail("control request: %s %r" % (status, body))

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def webhook_config(h, srv, **extra):
    sink = {"type": "webhook", "required": True, "url": srv.url, "secret": SECRET,
            "headers": {"X-Test": "e2e"}, "retry_initial_ms": 50, "retry_max_ms": 1000,
            "linger_ms": 5, "batch_max_messages": 100}
    sink.update(extra)
    return h.gateway_config(
        sinks={"hooks": sink},
        routes=[{"name": "all", "match": {"shard": "*", "topic": "*"},
                 "sinks": [{"sink": "hooks"}]}])


def analyse(srv, acked):
    """Check what arrived with a 2xx against the acknowledged set; returns a summary dict."""
    rec = srv.rec
    if rec.bad_sigs:
        H.fail("%d bad requests, e.g. %s" % (len(rec.bad_sigs), rec.bad_sigs[:3]))
    ok = rec.ok_requests()
    seen = {}  # (peer, seq, intent) -> webhook-id of its first 2xx
    dups = dups_other_id = 0
    keys = set()
    for r in ok:
        for peer, seq, key, _, _, intent in r["msgs"]:
            k = (peer, seq, intent)  # Reliable and Realtime sequences are separate
            if k in seen:
                dups += 1
                if seen[k] != r["id"]:
                    dups_other_id += 1
                continue
            seen[k] = r["id"]
            keys.add(key)
    if dups_other_id:
        H.fail("%d messages received twice under different webhook-ids" % dups_other_id)
    missing = acked - keys
    if missing:
        H.fail("%d acknowledged messages never received with a 2xx, e.g. %s" %
               (len(missing), sorted(missing)[:5]))
    with rec.lock:
        conns = len({r["conn"] for r in rec.requests})
        total = len(rec.requests)
    return {"distinct": len(seen), "dups_same_id": dups, "requests_2xx": len(ok),
            "requests": total, "connections": conns}


def case_exactly_once():
    srv = Server()
    try:
        with H.Harness("webhook-e2e-once") as h:
            cfg, udp, _ = webhook_config(h, srv)
            g = h.start_gateway(cfg)
            ack_log = h.path("acked.txt")
            b = H.bench_async(udp, g.public_key, ack_log, "--peers", 20, "--rate", 200,
                                "--duration", 5, "--size", 128, "--topic", "sim.tick",
                                "--intent", "reliable", "--linger", 20)
            res = H.bench_result(b)
            if res["connected"] != 20:
                H.fail("only %d of 20 peers connected" % res["connected"])
            acked = H.acked_set(ack_log)
            if len(acked) != res["acknowledged"]:
                H.fail("ack log has %d entries, bench says %d" % (len(acked), res["acknowledged"]))
            if res["acknowledged"] != res["offered"] or res["offered"] < 20000:
                H.fail("offered %d, acknowledged %d, refused %d" %
                       (res["offered"], res["acknowledged"], res["refused"]))
            a = analyse(srv, acked)
            if a["distinct"] != len(acked):
                H.fail("server holds %d distinct messages, %d were acknowledged" %
                       (a["distinct"], len(acked)))
            if a["connections"] > 4:  # max_concurrent_requests: connections are reused
                H.fail("%d connections for %d POSTs: keep-alive not used" %
                       (a["connections"], a["requests"]))
            print("ok: %d Reliable messages from 20 peers received once each (%d repeats under "
                  "the same webhook-id), %d POSTs (%.1f messages each) over %d connections, all "
                  "signatures valid; p50/p99 send->ack %.2f/%.2f ms" %
                  (a["distinct"], a["dups_same_id"], a["requests_2xx"],
                   a["distinct"] / max(1, a["requests_2xx"]), a["connections"],
                   res["latency_ms"]["p50"], res["latency_ms"]["p99"]))
            if g.stop() != 0:
                H.fail("gateway exit status %s" % g.p.returncode)
    finally:
        srv.close()


def case_outage_503():
    srv = Server()
    try:
        with H.Harness("webhook-e2e-503") as h:
            cfg, udp, adm = webhook_config(h, srv)
            g = h.start_gateway(cfg)
            ack_log = h.path("acked.txt")
            b = H.bench_async(udp, g.public_key, ack_log, "--peers", 20, "--rate", 100,
                                "--duration", 8, "--topic", "sim.tick", "--intent", "reliable",
                                "--linger", 30)
            time.sleep(2)
            srv.control(status=503, seconds=3)
            st = H.wait_sink_state(h, adm, "hooks", ("degraded",), timeout=3)
            if "503" not in (st.get("last_error") or ""):
                H.fail("degraded without the 503 in last_error: %r" % st.get("last_error"))
            res = H.bench_result(b)
            H.wait_sink_state(h, adm, "hooks", ("up",), timeout=20)
            acked = H.acked_set(ack_log)
            a = analyse(srv, acked)
            with srv.rec.lock:
                failed_ids = {r["id"] for r in srv.rec.requests if r["status"] == 503}
                ok_ids = {r["id"] for r in srv.rec.requests if r["status"] == 200}
            retried = failed_ids & ok_ids
            if not failed_ids:
                H.fail("the server never answered 503")
            if failed_ids - ok_ids:
                H.fail("%d batches answered 503 never succeeded under the same webhook-id" %
                       len(failed_ids - ok_ids))
            print("ok: 503 for 3 s: %d acknowledged messages all received (%d repeats under the "
                  "same webhook-id); %d batches failed with 503 and were retried with their "
                  "webhook-id (%d POSTs in all); refused while throttled %d" %
                  (len(acked), a["dups_same_id"], len(retried), a["requests"], res["refused"]))
            if g.stop() != 0:
                H.fail("gateway exit status %s" % g.p.returncode)
    finally:
        srv.close()


def case_retry_after():
    srv = Server()
    try:
        with H.Harness("webhook-e2e-429") as h:
            # retry_max_ms 100: without Retry-After the retry would come within 0.1 s
            cfg, udp, _ = webhook_config(h, srv, retry_initial_ms=20, retry_max_ms=100)
            g = h.start_gateway(cfg)
            srv.control(status=429, count=1, retry_after="1")
            ack_log = h.path("acked.txt")
            res = H.bench_result(H.bench_async(udp, g.public_key, ack_log, "--peers", 2, "--rate",
                                               20, "--duration", 2, "--topic", "t",
                                               "--intent", "reliable", "--linger", 15))
            acked = H.acked_set(ack_log)
            a = analyse(srv, acked)
            with srv.rec.lock:
                reqs = list(srv.rec.requests)
            first = [r for r in reqs if r["status"] == 429]
            if len(first) != 1:
                H.fail("expected one 429, saw %d" % len(first))
            later = [r for r in reqs if r["id"] == first[0]["id"] and r["t"] > first[0]["t"]]
            if not later:
                H.fail("the batch answered 429 was not retried with its webhook-id")
            gap = later[0]["t"] - first[0]["t"]
            if gap < 1.0:
                H.fail("retried %.3f s after a 429 with Retry-After: 1" % gap)
            if gap > 3.0:
                H.fail("retried only %.3f s after a 429 with Retry-After: 1" % gap)
            print("ok: 429 with Retry-After: 1: same webhook-id retried %.3f s later; %d "
                  "acknowledged messages all received" % (gap, len(acked)))
            if g.stop() != 0 or res["acknowledged"] != res["offered"]:
                H.fail("gateway exit %s, offered %d acknowledged %d" %
                       (g.p.returncode, res["offered"], res["acknowledged"]))
    finally:
        srv.close()


def case_dead_letter():
    srv = Server()
    try:
        with H.Harness("webhook-e2e-dlq") as h:
            dlq = h.path("dead", "webhook.jsonl")
            # credentials in the URL are never shown (logs, last_error, dead letters)
            url = srv.url.replace("://", "://user:pw-s3cret@") + "?token=tok-s3cret"
            cfg, udp, _ = webhook_config(h, srv, dead_letter_file=dlq, url=url)
            g = h.start_gateway(cfg)
            srv.control(status=400, count=1)
            ack_log = h.path("acked.txt")
            res = H.bench_result(H.bench_async(udp, g.public_key, ack_log, "--peers", 4, "--rate",
                                               50, "--duration", 3, "--topic", "t",
                                               "--intent", "reliable", "--linger", 15))
            acked = H.acked_set(ack_log)
            lines = H.read_jsonl(dlq)
            if len(lines) != 1:
                H.fail("dead-letter file holds %d lines, expected 1" % len(lines))
            d = lines[0]
            with srv.rec.lock:
                bad = [r for r in srv.rec.requests if r["status"] == 400]
            if d.get("reason") != "rejected" or d.get("status") != 400 or \
                    "HTTP 400" not in d.get("error", "") or d.get("webhook_id") != bad[0]["id"]:
                H.fail("dead-letter line without the reason/status/id: %r" %
                       {k: v for k, v in d.items() if k != "messages"})
            dead = set()
            for m in d["messages"]:
                key = H.bench_payload_ok(m["payload"])
                if key is None:
                    H.fail("dead-lettered payload fails its checksum")
                dead.add(key)
            if len(dead) != len(bad[0]["msgs"]):
                H.fail("dead letter holds %d messages, the rejected POST had %d" %
                       (len(dead), len(bad[0]["msgs"])))
            # Everything else was delivered afterwards.
            srv.rec.requests = [r for r in srv.rec.requests if r["status"] != 400]
            a = analyse(srv, acked - dead)
            if a["requests_2xx"] < 2:
                H.fail("the sink stopped after the 400 (%d POSTs accepted)" % a["requests_2xx"])
            print("ok: 400 -> %d messages in the dead-letter file (reason %s, webhook-id kept); "
                  "%d further acknowledged messages delivered in %d POSTs" %
                  (len(dead), d["reason"], len(acked - dead), a["requests_2xx"]))
            if g.stop() != 0 or res["acknowledged"] != res["offered"]:
                H.fail("gateway exit %s, offered %d acknowledged %d" %
                       (g.p.returncode, res["offered"], res["acknowledged"]))
            with open(dlq) as f:
                shown = g.output() + f.read()
            if "s3cret" in shown or d.get("url") != srv.url:
                H.fail("URL credentials shown: dead letter url %r" % d.get("url"))
    finally:
        srv.close()


def metric(h, adm, name, **labels):
    with open(h.path("admin.token")) as f:
        token = f.read().strip()
    status, _, body = H.http("GET", "http://127.0.0.1:%d/metrics" % adm, token=token)
    if status != 200:
        H.fail("GET /metrics: %s" % status)
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in body.splitlines():
        if line.startswith(name + "{"):
            lab = line[len(name) + 1:line.index("}")]
            if ",".join(sorted(lab.split(","))) == want:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def case_realtime_discard():
    srv = Server()
    try:
        with H.Harness("webhook-e2e-rt") as h:
            cfg, udp, adm = webhook_config(h, srv, retry_initial_ms=50, retry_max_ms=200,
                                           realtime_max_retries=2)
            g = h.start_gateway(cfg)
            srv.control(status=503, seconds=6)
            t_end = time.monotonic() + 6
            res = H.bench_result(H.bench_async(udp, g.public_key, h.path("acked.txt"), "--peers",
                                               5, "--rate", 50, "--duration", 3, "--topic", "rt",
                                               "--intent", "realtime", "--linger", 2))
            H.wait_until(lambda: metric(h, adm, "intentra_gateway_sink_discarded_total",
                                        sink="hooks", reason="sink_down") > 0, 10,
                         "Realtime discards with reason sink_down")
            with srv.rec.lock:
                tries = {}
                for r in srv.rec.requests:
                    if r["status"] == 503:
                        tries[r["id"]] = tries.get(r["id"], 0) + 1
            if not tries or max(tries.values()) > 3:
                H.fail("attempts per Realtime batch during the outage: %r (expected <= 3)" %
                       sorted(set(tries.values())))
            # After the outage new Realtime messages get through.
            time.sleep(max(0, t_end + 0.5 - time.monotonic()))  # the outage is over
            srv.rec.requests = []
            H.bench_result(H.bench_async(udp, g.public_key, h.path("acked2.txt"), "--peers", 2,
                                         "--rate", 20, "--duration", 1, "--topic", "rt",
                                         "--intent", "realtime", "--linger", 2))
            H.wait_until(lambda: srv.rec.ok_requests(), 10, "POSTs accepted after the outage")
            discarded = metric(h, adm, "intentra_gateway_sink_discarded_total", sink="hooks",
                               reason="sink_down")
            print("ok: Realtime during a 6 s outage: %d batches tried at most %d times, %d "
                  "messages discarded (sink_down) of %d offered; delivering again afterwards" %
                  (len(tries), max(tries.values()), discarded, res["offered"]))
            if g.stop() != 0:
                H.fail("gateway exit status %s" % g.p.returncode)
    finally:
        srv.close()


def case_routing():
    srv = Server()
    try:
        with H.Harness("webhook-e2e-routing") as h:
            seed = "cd" * 32
            keys = subprocess.run([H.binary("intentra-bench"), "--key-seed", seed, "--peers", "3",
                                   "--print-keys"], capture_output=True, timeout=30)
            peers = keys.stdout.decode().split()
            base = "http://127.0.0.1:%d" % srv.port
            sink = {"type": "webhook", "required": True, "url": srv.url, "secret": SECRET,
                    "headers": {"X-Test": "e2e"}, "linger_ms": 5}
            cfg, udp, _ = h.gateway_config(
                shards={"default": {},
                        "b": {"peers": [peers[0]],
                              "attributes": {"webhook_endpoint": base + "/shard-b"}}},
                sinks={"hooks": sink},
                routes=[{"name": "tpl", "match": {"topic": "tpl.*"},
                         "sinks": [{"sink": "hooks",
                                    "destination": base + "/tpl/{shard}/{topic}"}]},
                        {"name": "rest", "match": {"topic": "*"}, "sinks": [{"sink": "hooks"}]}])
            g = h.start_gateway(cfg)
            for topic in ("plain", "tpl.x"):
                res = h.bench(udp, g.public_key, "--key-seed", seed, "--peers", 3, "--rate", 20,
                              "--duration", 1, "--topic", topic, "--intent", "reliable",
                              "--linger", 10)
                if res["acknowledged"] != res["offered"] or not res["offered"]:
                    H.fail("%s: offered %d acknowledged %d" %
                           (topic, res["offered"], res["acknowledged"]))
            if srv.rec.bad_sigs:  # (peer, seq) repeat across the two runs: no analyse()
                H.fail("bad requests: %s" % srv.rec.bad_sigs[:3])
            want = {("plain", "b"): "/shard-b", ("plain", "default"): "/hook",
                    ("tpl.x", "b"): "/tpl/b/tpl.x", ("tpl.x", "default"): "/tpl/default/tpl.x"}
            seen = {}
            for r in srv.rec.ok_requests():
                for _, _, _, shard, topic, _ in r["msgs"]:
                    if want.get((topic, shard)) != r["path"]:
                        H.fail("shard %s topic %s POSTed to %s, expected %s" %
                               (shard, topic, r["path"], want.get((topic, shard))))
                    seen[(topic, shard)] = seen.get((topic, shard), 0) + 1
            if set(seen) != set(want):
                H.fail("not every (topic, shard) seen: %r" % seen)
            print("ok: webhook_endpoint and URL destination templates route to their URLs: %s" %
                  ", ".join("%s/%s -> %s (%d)" % (t, sh, want[(t, sh)], n)
                            for (t, sh), n in sorted(seen.items())))
            if g.stop() != 0:
                H.fail("gateway exit status %s" % g.p.returncode)
    finally:
        srv.close()


def case_bad_destination():
    srv = Server()
    try:
        with H.Harness("webhook-e2e-baddest") as h:
            dlq = h.path("dead.jsonl")
            base = "http://127.0.0.1:%d" % srv.port
            sink = {"type": "webhook", "required": True, "url": srv.url, "secret": SECRET,
                    "headers": {"X-Test": "e2e"}, "dead_letter_file": dlq}
            cfg, udp, _ = h.gateway_config(
                shards={"default": {"labels": {"long": "x" * 1000}}},
                sinks={"hooks": sink},
                routes=[{"name": "long", "match": {"topic": "long"},
                         "sinks": [{"sink": "hooks", "destination":
                                    base + "/{label:long}{label:long}{label:long}"}]},
                        {"name": "empty", "match": {"topic": "empty"},
                         "sinks": [{"sink": "hooks", "destination": "http://{attr:redis_prefix}"}]},
                        {"name": "rest", "match": {"topic": "*"}, "sinks": [{"sink": "hooks"}]}])
            g = h.start_gateway(cfg)
            counts = {}
            for topic in ("long", "empty", "fine"):
                res = h.bench(udp, g.public_key, "--peers", 2, "--rate", 10, "--duration", 1,
                              "--topic", topic, "--intent", "reliable", "--linger", 10)
                if res["acknowledged"] != res["offered"] or not res["offered"]:
                    H.fail("%s: offered %d acknowledged %d" % (topic, res["offered"],
                                                                res["acknowledged"]))
                counts[topic] = res["acknowledged"]
            lines = H.read_jsonl(dlq)
            by_topic = {}
            for d in lines:
                if d.get("reason") != "invalid_destination":
                    H.fail("dead letter with reason %r" % d.get("reason"))
                for m in d["messages"]:
                    by_topic[m["topic"]] = by_topic.get(m["topic"], 0) + 1
            if by_topic != {"long": counts["long"], "empty": counts["empty"]}:
                H.fail("dead letters per topic %r, expected long %d, empty %d" %
                       (by_topic, counts["long"], counts["empty"]))
            paths = {r["path"] for r in srv.rec.requests}
            got = sum(len(r["msgs"]) for r in srv.rec.ok_requests())
            if paths != {"/hook"} or got != counts["fine"]:
                H.fail("requests to %r with %d messages (expected /hook, %d)" %
                       (paths, got, counts["fine"]))
            print("ok: bad URL templates dead-lettered without a request (%s); %d messages of "
                  "the other route delivered" % (by_topic, got))
            if g.stop() != 0:
                H.fail("gateway exit status %s" % g.p.returncode)
    finally:
        srv.close()


def case_batch_limits():
    srv = Server()
    try:
        with H.Harness("webhook-e2e-batch") as h:
            out = []
            for extra in ({"batch_max_messages": 1}, {"batch_max_bytes": 1024, "linger_ms": 50}):
                srv.rec.requests = []
                cfg, udp, _ = webhook_config(h, srv, **extra)
                g = h.start_gateway(cfg, name="gateway-%s" % "-".join(extra))
                ack_log = h.path("acked-%d.txt" % len(out))
                res = H.bench_result(H.bench_async(udp, g.public_key, ack_log, "--peers", 4,
                                                   "--rate", 50, "--duration", 2, "--size", 300,
                                                   "--topic", "t", "--intent", "reliable",
                                                   "--linger", 10))
                acked = H.acked_set(ack_log)
                a = analyse(srv, acked)
                reqs = srv.rec.ok_requests()
                if "batch_max_messages" in extra:
                    if any(r["array"] or len(r["msgs"]) != 1 for r in reqs):
                        H.fail("batch_max_messages 1: a body that is not one object")
                    out.append("batch_max_messages 1: %d POSTs of one object" % len(reqs))
                else:
                    big = max(r["len"] for r in reqs)
                    if big > 1024 or not all(r["array"] for r in reqs):
                        H.fail("batch_max_bytes 1024: a body of %d bytes" % big)
                    out.append("batch_max_bytes 1024: %d POSTs, largest %d bytes, %.1f "
                               "messages each" % (len(reqs), big, a["distinct"] / len(reqs)))
                if a["distinct"] != len(acked) or len(acked) != res["offered"]:
                    H.fail("%r: offered %d acknowledged %d received %d" %
                           (extra, res["offered"], len(acked), a["distinct"]))
                if g.stop() != 0:
                    H.fail("gateway exit status %s" % g.p.returncode)
            print("ok: " + "; ".join(out))
    finally:
        srv.close()


def case_mixed():
    srv = Server()
    try:
        with H.Harness("webhook-e2e-mixed") as h:
            cfg, udp, _ = webhook_config(h, srv, realtime_max_retries=1, retry_initial_ms=100,
                                         retry_max_ms=300)
            g = h.start_gateway(cfg)
            ack_log = h.path("acked.txt")
            b = H.bench_async(udp, g.public_key, ack_log, "--peers", 4, "--rate", 100,
                                "--duration", 4, "--mix", 0.5, "--topic", "m", "--linger", 20)
            time.sleep(1)
            srv.control(status=503, seconds=2)
            res = H.bench_result(b)
            acked = H.acked_set(ack_log)
            a = analyse(srv, acked)
            with srv.rec.lock:
                by_id = {}
                for r in srv.rec.requests:
                    by_id.setdefault(r["id"], []).append(r)
            shrunk = 0
            for rs in by_id.values():
                kinds = [len(r["msgs"]) for r in rs]
                if len(kinds) > 1 and kinds[-1] < kinds[0]:
                    shrunk += 1
                    first = {(m[0], m[1], m[5]) for m in rs[0]["msgs"]}
                    if not {(m[0], m[1], m[5]) for m in rs[-1]["msgs"]} <= first:
                        H.fail("a retried batch holds messages its first attempt did not")
                    if any(m[5] != "reliable" for m in rs[-1]["msgs"]):
                        H.fail("a batch kept Realtime messages past realtime_max_retries")
            if not shrunk:
                H.fail("no retried batch dropped its Realtime messages")
            print("ok: mixed classes through a 503 outage: %d Reliable messages acknowledged and "
                  "received; %d batches dropped their Realtime messages and kept their "
                  "webhook-id (offered %d)" % (len(acked), shrunk, res["offered"]))
            if g.stop() != 0:
                H.fail("gateway exit status %s" % g.p.returncode)
    finally:
        srv.close()


def case_sigterm():
    srv = Server()
    try:
        with H.Harness("webhook-e2e-sigterm") as h:
            cfg, udp, _ = webhook_config(h, srv, linger_ms=20)
            g = h.start_gateway(cfg)
            ack_log = h.path("acked.txt")
            b = H.bench_async(udp, g.public_key, ack_log, "--peers", 10, "--rate", 200,
                                "--duration", 5, "--topic", "t", "--intent", "reliable",
                                "--linger", 5, "--timeout", 3)
            time.sleep(2.5)
            rc = g.stop()
            H.bench_result(b)
            if rc != 0:
                H.fail("gateway exit status %s after SIGTERM" % rc)
            acked = H.acked_set(ack_log)
            a = analyse(srv, acked)
            if not acked:
                H.fail("nothing acknowledged before SIGTERM")
            print("ok: SIGTERM under load: exit 0, %d acknowledged messages all received "
                  "(%d received in all)" % (len(acked), a["distinct"]))
    finally:
        srv.close()


def case_tls():
    if not shutil.which("openssl"):
        print("SKIP: the openssl command is not installed")
        sys.exit(H.SKIP)
    with H.Harness("webhook-e2e-tls") as h:
        cert, key = h.path("cert.pem"), h.path("key.pem")
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                            "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                            "subjectAltName=IP:127.0.0.1"], capture_output=True, timeout=60)
        if r.returncode != 0:
            H.fail("openssl req: %s" % r.stderr.decode(errors="replace"))
        srv = Server(tls=(cert, key))
        try:
            results = {}
            for name, extra in (("ca_file", {"ca_file": cert}), ("untrusted", {}),
                                ("no_verify", {"tls_verify": False})):
                srv.rec.requests = []
                cfg, udp, adm = webhook_config(h, srv, **extra)
                g = h.start_gateway(cfg, name="gateway-" + name)
                ack_log = h.path("acked-%s.txt" % name)
                res = H.bench_result(H.bench_async(udp, g.public_key, ack_log, "--peers", 2,
                                                   "--rate", 20, "--duration", 1, "--topic", "t",
                                                   "--intent", "reliable", "--linger", 3,
                                                   "--timeout", 3))
                acked = H.acked_set(ack_log)
                if name == "untrusted":
                    st = H.sink_state(h, adm, "hooks")
                    if acked or srv.rec.requests:
                        H.fail("untrusted certificate: %d acknowledged, %d requests" %
                               (len(acked), len(srv.rec.requests)))
                    if "certificate" not in (st.get("last_error") or "").lower():
                        H.fail("untrusted certificate without a clear error: %r" % st)
                    results[name] = "refused (%s)" % st["last_error"][-60:]
                else:
                    a = analyse(srv, acked)
                    if not acked or len(acked) != res["offered"]:
                        H.fail("%s: offered %d, acknowledged %d" % (name, res["offered"],
                                                                    len(acked)))
                    results[name] = "%d delivered" % a["distinct"]
                g.stop()
            srv.control(status=200, count=1)  # in-process control for the HTTPS server
            print("ok: HTTPS: %s" % "; ".join("%s: %s" % kv for kv in results.items()))
        finally:
            srv.close()


def case_check_config():
    with H.Harness("webhook-e2e-conf") as h:
        base = {"type": "webhook", "url": "http://127.0.0.1:9/x", "secret": SECRET}
        bad = [
            ({"url": "ftp://example.com/x"}, "sinks.hooks.url: scheme must be http or https"),
            ({"url": "not a url"}, "sinks.hooks.url:"),
            ({"lnger_ms": 5}, "sinks.hooks.lnger_ms: unknown key (did you mean \"linger_ms\""),
            ({"secret": "hunter2"}, "sinks.hooks.secret: not a Standard Webhooks secret"),
            ({"retry_initial_ms": 500, "retry_max_ms": 100}, "sinks.hooks.retry_max_ms:"),
            ({"headers": {"webhook-id": "x"}}, "sinks.hooks.headers.webhook-id:"),
        ]
        for extra, want in bad:
            sink = dict(base)
            sink.update(extra)
            cfg, _, _ = h.gateway_config(sinks={"hooks": sink}, routes=[
                {"name": "all", "match": {"topic": "*"}, "sinks": [{"sink": "hooks"}]}])
            r = subprocess.run([H.binary("intentra-gateway"), "-c", cfg, "--check-config"],
                               capture_output=True, timeout=30)
            out = (r.stdout + r.stderr).decode(errors="replace")
            if r.returncode == 0 or want not in out:
                H.fail("--check-config with %r: exit %d, expected %r in:\n%s" %
                       (extra, r.returncode, want, out))
            if "hunter2" in out:
                H.fail("the secret was echoed in an error message")
        ex = os.path.join(H.SOURCE, "conf", "examples", "webhook.json")
        r = subprocess.run([H.binary("intentra-gateway"), "-c", ex, "--check-config"],
                           capture_output=True, timeout=30)
        if r.returncode != 0:
            H.fail("conf/examples/webhook.json fails --check-config: %s" % (r.stdout + r.stderr))
        print("ok: %d bad webhook configs rejected naming the key; conf/examples/webhook.json "
              "valid" % len(bad))


CASES = {
    "exactly_once": case_exactly_once,
    "outage_503": case_outage_503,
    "retry_after": case_retry_after,
    "dead_letter": case_dead_letter,
    "realtime_discard": case_realtime_discard,
    "routing": case_routing,
    "bad_destination": case_bad_destination,
    "batch_limits": case_batch_limits,
    "mixed": case_mixed,
    "sigterm": case_sigterm,
    "tls": case_tls,
    "check_config": case_check_config,
}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print("usage: webhook_e2e.py %s" % "|".join(CASES), file=sys.stderr)
        sys.exit(2)
    CASES[sys.argv[1]]()
