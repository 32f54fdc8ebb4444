#!/usr/bin/env python3
"""Admin API against the real daemon. Usage: admin_api.py CASE

  errors       every error class answered by the real validators; a failed request changes
               nothing; concurrent PUTs with the same ETag: exactly one wins, the rest get 412
  peers        GET /v1/peers (paginated) with live bench sessions, POST /v1/publish to one peer
               and to everyone (wait for acknowledgements), DELETE /v1/peers/{key}, /v1/sinks
  restart      shard and route edits persist (0600 state file) and survive a restart: same
               documents, same ETags, and routing follows them

Every case starts what it needs on free loopback ports, bounds every wait, and stops every
process it started.
"""
import os
import re
import socket
import stat
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from admin_common import H, SEED, bench_async, bench_keys, file_records, start  # noqa: E402


def expect(resp, status, code=None, field_part=None):
    st, hdrs, body = resp
    if st != status:
        H.fail("expected %d, got %d: %s" % (status, st, body))
    if code is not None:
        err = body.get("error") if isinstance(body, dict) else None
        if not err or err.get("code") != code or not err.get("message"):
            H.fail("expected error code %s, got %s" % (code, body))
        if field_part is not None and field_part not in (err.get("field") or ""):
            H.fail("expected field containing %r, got %r" % (field_part, err.get("field")))
    return hdrs, body


def raw_request(a, head):
    """Send only a request head; (status, response text) of whatever the server answers."""
    port = int(a.base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head.encode())
        data = b""
        while b"\r\n\r\n" not in data or len(data) < data.find(b"\r\n\r\n") + 4 + \
                int((re.search(rb"Content-Length: (\d+)", data) or [0, b"0"])[1]):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    text = data.decode(errors="replace")
    m = re.match(r"HTTP/1\.[01] (\d+)", text)
    return (int(m.group(1)) if m else 0), text


def case_errors():
    with H.Harness("admin-errors") as h:
        g, udp, a, _ = start(h)
        # Authentication.
        hdrs, _ = expect(a.req("GET", "/v1/shards", token=False), 401, "unauthorized")
        if "Bearer" not in hdrs.get("WWW-Authenticate", ""):
            H.fail("401 without WWW-Authenticate: %s" % hdrs)
        expect(H.http("GET", a.base + "/v1/shards", token="wrong"), 401, "unauthorized")
        expect(a.req("GET", "/healthz", token=False), 200)
        expect(a.req("GET", "/readyz", token=False), 200)
        # Methods, paths, media, size, syntax.
        hdrs, _ = expect(a.req("POST", "/v1/shards", body={}), 405, "method_not_allowed")
        if hdrs.get("Allow") != "GET, HEAD, PUT, PATCH, DELETE":
            H.fail("405 Allow: %r" % hdrs.get("Allow"))
        expect(a.req("GET", "/v1/nope"), 404, "not_found")
        expect(a.req("PUT", "/v1/routes", body="[]", headers={"Content-Type": "text/plain"}), 415,
               "unsupported_media_type")
        # An oversized body is refused from its Content-Length, before it is sent.
        status, text = raw_request(a, "PUT /v1/shards HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s"
                                   "\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                                   % (a.token, 2 << 20))
        if status != 413 or "body_too_large" not in text:
            H.fail("oversized body: %s %s" % (status, text))
        expect(a.req("PUT", "/v1/shards", body="{\"default\": {"), 400, "invalid_json")
        # Validation by the config module's builders: 422 with the JSON path.
        hdrs0, doc0 = expect(a.req("GET", "/v1/shards"), 200)
        etag0 = hdrs0["ETag"]
        expect(a.req("PUT", "/v1/shards", body={"default": {"peers": ["zz"]}}), 422,
               "validation_failed", "peers[0]")
        expect(a.req("PUT", "/v1/shards", body={"default": {"colour": "red"}}), 422,
               "validation_failed", "colour")
        # Unknown peers are admitted to "default": it cannot go away.
        expect(a.req("DELETE", "/v1/shards"), 422, "validation_failed")
        expect(a.req("DELETE", "/v1/shards/default"), 422, "validation_failed")
        expect(a.req("PUT", "/v1/routes", body=[{"name": "x", "match": {"shard": "*", "topic": "*"},
                                                 "sinks": [{"sink": "kafak"}]}]),
               422, "validation_failed", "sinks[0].sink")
        expect(a.req("PUT", "/v1/routes", body={"routes": []}), 422, "invalid_type")
        k = bench_keys(2)
        expect(a.req("PUT", "/v1/shards", body={"default": {"peers": [k[0]]}, "b": {"peers": [k[1], k[0]]}}),
               409, "duplicate_peer", "b.peers[1]")
        expect(a.req("GET", "/v1/shards/missing"), 404, "not_found")
        expect(a.req("DELETE", "/v1/peers/" + k[0]), 404, "not_found")
        expect(a.req("POST", "/v1/publish", body={"target": {"all": True}, "topic": "bad topic",
                                                  "payload": "x"}), 422, "invalid_value", "topic")
        # Nothing changed.
        hdrs1, doc1 = expect(a.req("GET", "/v1/shards"), 200)
        if doc1 != doc0 or hdrs1["ETag"] != etag0:
            H.fail("a failed request changed the shards: %s %s -> %s %s" % (etag0, doc0, hdrs1["ETag"], doc1))

        # Concurrent writers holding the same version: one wins, the others get 412.
        n = 8
        barrier = threading.Barrier(n)
        results = [None] * n

        def writer(i):
            body = {"default": {"labels": {"writer": str(i)}}}
            barrier.wait()
            results[i] = a.req("PUT", "/v1/shards", body=body, if_match=etag0)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        codes = sorted(r[0] for r in results)
        if codes != [200] + [412] * (n - 1):
            H.fail("concurrent PUTs with If-Match %s: %s" % (etag0, codes))
        winner = [r for r in results if r[0] == 200][0]
        for r in results:
            if r[0] == 412 and r[1].get("ETag") != winner[1]["ETag"]:
                H.fail("412 carries ETag %s, current is %s" % (r[1].get("ETag"), winner[1]["ETag"]))
        hdrs2, doc2 = expect(a.req("GET", "/v1/shards"), 200)
        if hdrs2["ETag"] != winner[1]["ETag"] or doc2 != winner[2]:
            H.fail("GET after the race: %s %s, winner wrote %s %s" % (hdrs2["ETag"], doc2, winner[1]["ETag"], winner[2]))
        print("ok: error classes, nothing changed by failures; 1 of %d concurrent PUTs won (%s)"
              % (n, winner[1]["ETag"]))
        if g.stop() != 0:
            H.fail("gateway exit status %s" % g.p.returncode)


def case_peers():
    with H.Harness("admin-peers") as h:
        g, udp, a, _ = start(h)
        keys = bench_keys(3)
        t, res = bench_async(h, udp, g.public_key, "--peers", 3, "--rate", 20, "--duration", 6,
                             "--key-seed", SEED, "--linger", 5)

        def all_connected():
            st, _, body = a.req("GET", "/v1/peers")
            return st == 200 and body["total"] == 3 and body
        body = H.wait_until(all_connected, 15, "3 live sessions in GET /v1/peers")
        got = sorted(p["key"] for p in body["peers"])
        if got != sorted(keys):
            H.fail("peers %s, expected %s" % (got, sorted(keys)))
        for p in body["peers"]:
            if p["shard"] != "default" or not p["address"].startswith("127.0.0.1:"):
                H.fail("peer row: %s" % p)
            for f in ("messages_in", "bytes_in", "last_seen", "idle_seconds", "rtt_ms", "drops"):
                if f not in p:
                    H.fail("peer row lacks %s: %s" % (f, p))
        _, page = expect(a.req("GET", "/v1/peers?offset=0&limit=2"), 200)
        if len(page["peers"]) != 2 or page["next_offset"] != 2:
            H.fail("page 1: %s" % page)
        _, page = expect(a.req("GET", "/v1/peers?offset=2&limit=2"), 200)
        if len(page["peers"]) != 1 or page["next_offset"] is not None:
            H.fail("page 2: %s" % page)
        expect(a.req("GET", "/v1/peers?limit=1001"), 400, "invalid_parameter", "limit")

        # Publish to one peer and to everyone, waiting for the acknowledgements.
        _, r1 = expect(a.req("POST", "/v1/publish", body={
            "target": {"peer": keys[0]}, "topic": "cmd.one", "payload": "hello",
            "intent": "reliable", "wait": True, "timeout_ms": 5000}), 200)
        if r1["targeted"] != 1 or r1["acked"] != 1 or r1["failed"] != 0:
            H.fail("publish to one: %s" % r1)
        _, r2 = expect(a.req("POST", "/v1/publish", body={
            "target": {"all": True}, "topic": "cmd.all", "payload_base64": "AAECAw==",
            "wait": True, "timeout_ms": 5000}), 200)
        if r2["targeted"] != 3 or r2["acked"] != 3:
            H.fail("publish to all: %s" % r2)
        st, _, r3 = a.req("POST", "/v1/publish", body={"target": {"shard": "default"},
                                                        "topic": "cmd.rt", "payload": "x",
                                                        "intent": "realtime"})
        if st != 202:
            H.fail("fire-and-forget publish: %d %s" % (st, r3))
        expect(a.req("POST", "/v1/publish", body={"target": {"peer": "ab" * 32}, "topic": "t",
                                                  "payload": "x", "wait": True}), 404, "not_found")

        _, sinks = expect(a.req("GET", "/v1/sinks"), 200)
        if [s["name"] for s in sinks["sinks"]] != ["archive"] or sinks["sinks"][0]["state"] != "up":
            H.fail("sinks: %s" % sinks)

        # Disconnect one peer: gone from the list (the bench does not reconnect it).
        expect(a.req("DELETE", "/v1/peers/" + keys[1]), 204)
        H.wait_until(lambda: keys[1] not in [p["key"] for p in a.req("GET", "/v1/peers")[2]["peers"]],
                     5, "the disconnected peer to leave GET /v1/peers")
        t.join(60)
        if res.get("received", 0) < 4:
            H.fail("bench peers received %s published messages, expected >= 4" % res.get("received"))
        print("ok: peers listed and paginated, publish acked by 1 and 3 peers, disconnect")
        if g.stop() != 0:
            H.fail("gateway exit status %s" % g.p.returncode)


def case_restart():
    with H.Harness("admin-restart") as h:
        g, udp, a, cfg = start(h, sinks={
            "archive": {"type": "file", "path": h.path("messages.jsonl")},
            "special": {"type": "file", "path": h.path("special.jsonl")}})
        key = bench_keys(1)[0]
        shards = {"default": {"peers": []}, "vip": {"peers": [key], "labels": {"tier": "gold"}}}
        hdrs, _ = expect(a.req("PUT", "/v1/shards", body=shards, if_match='"1"'), 200)
        etag_s = hdrs["ETag"]
        routes = [{"name": "vip", "match": {"shard": "vip", "topic": "*"},
                   "sinks": [{"sink": "special"}]},
                  {"name": "rest", "match": {"shard": "*", "topic": "*"},
                   "sinks": [{"sink": "archive"}]}]
        hdrs, _ = expect(a.req("PUT", "/v1/routes", body=routes, if_match='"1"'), 200)
        etag_r = hdrs["ETag"]
        _, shards_now = expect(a.req("GET", "/v1/shards"), 200)
        _, routes_now = expect(a.req("GET", "/v1/routes"), 200)
        st = os.stat(h.path("state.json"))
        if stat.S_IMODE(st.st_mode) != 0o600:
            H.fail("state file mode %o" % stat.S_IMODE(st.st_mode))
        if g.stop() != 0:
            H.fail("gateway exit status %s" % g.p.returncode)

        g2 = h.start_gateway(cfg, name="gateway2")
        hdrs, doc = expect(a.req("GET", "/v1/shards"), 200)
        if hdrs["ETag"] != etag_s or doc != shards_now:
            H.fail("shards after restart: %s %s, before %s %s" % (hdrs["ETag"], doc, etag_s, shards_now))
        hdrs, doc = expect(a.req("GET", "/v1/routes"), 200)
        if hdrs["ETag"] != etag_r or doc != routes_now:
            H.fail("routes after restart: %s %s, before %s %s" % (hdrs["ETag"], doc, etag_r, routes_now))
        # Routing follows the persisted documents: the vip peer lands in special.jsonl.
        res = h.bench(udp, g2.public_key, "--peers", 1, "--rate", 50, "--duration", 1,
                      "--key-seed", SEED, "--linger", 10)
        if res["acknowledged"] != res["offered"] or res["offered"] == 0:
            H.fail("bench: %s" % res)
        recs = file_records(h.path("special.jsonl"))
        if len(recs) != res["offered"] or any(r[4] != "vip" or r[0] != key for r in recs):
            H.fail("special.jsonl holds %d records (expected %d from shard vip)" % (len(recs), res["offered"]))
        if os.path.exists(h.path("messages.jsonl")) and H.read_jsonl(h.path("messages.jsonl")):
            H.fail("messages.jsonl got vip messages")
        print("ok: shards %s and routes %s survived a restart; %d messages routed by them"
              % (etag_s, etag_r, len(recs)))
        if g2.stop() != 0:
            H.fail("gateway exit status %s" % g2.p.returncode)


CASES = {"errors": case_errors, "peers": case_peers, "restart": case_restart}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print("usage: admin_api.py %s" % "|".join(CASES), file=sys.stderr)
        sys.exit(2)
    CASES[sys.argv[1]]()
