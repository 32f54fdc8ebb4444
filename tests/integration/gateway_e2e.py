#!/usr/bin/env python3
"""End-to-end tests of the daemon with real processes: intentra-gateway, intentra-bench,
intentra-send, and the file sink. Usage: gateway_e2e.py CASE (see CASES below).

Every case starts what it needs on free loopback ports, bounds every wait, and stops every
process it started (tests/lib/harness.py).
"""
import json
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness as H  # noqa: E402


def run(argv, **kw):
    return subprocess.run([str(a) for a in argv], **kw)


def popen(argv, **kw):
    return subprocess.Popen([str(a) for a in argv], **kw)


def file_records(path):
    """(peer_hex, bench_peer_index, bench_seq, transport_seq) of every line; fails on a
    corrupt payload."""
    out = []
    for i, r in enumerate(H.read_jsonl(path)):
        got = H.bench_payload_ok(r["payload"])
        if got is None:
            H.fail("%s line %d: payload fails its checksum: %r" % (path, i + 1, r["payload"][:80]))
        out.append((r["peer"], got[0], got[1], r["seq"]))
    return out


def case_reliable_file():
    """50 peers x 200 Hz x 10 s Reliable -> the file holds every message exactly once and in
    per-peer order, and every one was acknowledged."""
    with H.Harness("e2e-file") as h:
        cfg, udp, _ = h.gateway_config()
        g = h.start_gateway(cfg)
        res = h.bench(udp, g.public_key, "--peers", 50, "--rate", 200, "--duration", 10,
                      "--topic", "sim.tick", "--intent", "reliable", "--linger", 20)
        if res["connected"] != 50:
            H.fail("only %d of 50 peers connected" % res["connected"])
        if res["acknowledged"] != res["offered"] or res["refused"] != 0:
            H.fail("offered %d, acknowledged %d, refused %d" % (res["offered"], res["acknowledged"], res["refused"]))
        recs = file_records(h.path("messages.jsonl"))
        n, dups, order = H.check_exactly_once(((r[0], r[2]) for r in recs), expect_peers=50)
        if dups or order:
            H.fail("file: %d duplicates, %d out-of-order" % (dups, order))
        if n != res["offered"]:
            H.fail("file holds %d distinct messages, %d were acknowledged" % (n, res["acknowledged"]))
        # The transport sequence (the file's "seq") is per-peer, dense and in order too.
        last = {}
        for peer, _, _, seq in recs:
            if seq != last.get(peer, -1) + 1:
                H.fail("peer %s: seq %d after %d" % (peer[:8], seq, last.get(peer, -1)))
            last[peer] = seq
        print("ok: %d messages from 50 peers, exactly once, in order; p99 send->ack %.2f ms"
              % (n, res["latency_ms"]["p99"]))
        if g.stop() != 0:
            H.fail("gateway exit status %s" % g.p.returncode)


def case_two_workers():
    """Two workers on SO_REUSEPORT sockets with conn_id steering: 40 peers x 200 Hz x 5 s
    Reliable -> every message exactly once and in order. (All bench peers share one source
    socket, so the kernel's hash puts their handshakes on one worker; the steering program
    itself is tested with two sockets in tests/unit/test_udp.c.)"""
    with H.Harness("e2e-workers") as h:
        cfg, udp, adm = h.gateway_config(extra={"workers": 2})
        g = h.start_gateway(cfg)
        res = h.bench(udp, g.public_key, "--peers", 40, "--rate", 200, "--duration", 5,
                      "--topic", "w", "--linger", 20)
        if res["connected"] != 40 or res["acknowledged"] != res["offered"]:
            H.fail("two workers: %s" % res)
        recs = file_records(h.path("messages.jsonl"))
        n, dups, order = H.check_exactly_once(((r[0], r[2]) for r in recs), expect_peers=40)
        if dups or order or n != res["offered"]:
            H.fail("file: %d distinct of %d, %d duplicates, %d out of order" % (n, res["offered"], dups, order))
        st, _, page = H.http("GET", "http://127.0.0.1:%d/metrics" % adm)
        if st != 200 or "intentra_gateway_workers 2" not in page:
            H.fail("/metrics does not show two workers")
        print("ok: 2 workers, %d messages from 40 peers exactly once and in order" % n)


def case_sighup():
    """SIGHUP with a broken config is refused and the old one keeps serving; a good one adds a
    sink and a route without dropping sessions."""
    with H.Harness("e2e-hup") as h:
        cfg, udp, _ = h.gateway_config()
        g = h.start_gateway(cfg)
        with open(cfg) as f:
            good = json.load(f)
        broken = json.loads(json.dumps(good))
        broken["routes"][0]["sinks"][0]["sink"] = "archiv"
        with open(cfg, "w") as f:
            json.dump(broken, f)
        g.kill(signal.SIGHUP)
        g.wait_output(r'event=reload_refused .*unknown sink \\?"archiv\\?"', timeout=10)
        r = h.send(udp, g.public_key, "--topic", "after.broken", messages=["m1"])
        if r.returncode != 0:
            H.fail("send after a refused reload failed: %s" % r.stderr.decode())
        # A good config: a second file sink for topic "audit.*", checked first.
        good["sinks"]["audit"] = {"type": "file", "path": h.path("audit.jsonl")}
        good["routes"].insert(0, {"name": "audit", "match": {"shard": "*", "topic": "audit.*"},
                                  "sinks": [{"sink": "audit"}]})
        with open(cfg, "w") as f:
            json.dump(good, f)
        # A session that stays open across the reload: a slow bench run.
        bench = popen([H.binary("intentra-bench"), "--gateway", "127.0.0.1:%d" % udp,
                                  "--gateway-key", g.public_key, "--peers", 5, "--rate", 50,
                                  "--duration", 4, "--topic", "steady", "--json"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(1.5)
        g.kill(signal.SIGHUP)
        g.wait_output(r"event=reloaded ", timeout=10)
        r = h.send(udp, g.public_key, "--topic", "audit.login", messages=["a1"])
        if r.returncode != 0:
            H.fail("send after reload failed: %s" % r.stderr.decode())
        out, _ = bench.communicate(timeout=60)
        res = json.loads(out.decode().strip().splitlines()[-1])
        if res["acknowledged"] != res["offered"] or res["sessions_closed"]:
            H.fail("sessions across the reload: %s" % res)
        audit = H.read_jsonl(h.path("audit.jsonl"))
        if [r["payload"] for r in audit] != ["a1"]:
            H.fail("audit sink after reload holds %r" % audit)
        main = [r["topic"] for r in H.read_jsonl(h.path("messages.jsonl"))]
        if "after.broken" not in main or "audit.login" in main:
            H.fail("archive topics after reload: %r" % sorted(set(main)))
        print("ok: broken config refused, old one kept; good config applied live, %d bench messages across it" % res["acknowledged"])


def case_sigterm_under_load():
    """SIGTERM while 20 peers send Reliable at full speed: the gateway exits 0 and every
    message a peer saw acknowledged is in the file, once."""
    with H.Harness("e2e-term") as h:
        cfg, udp, _ = h.gateway_config()
        g = h.start_gateway(cfg)
        ack_log = h.path("acked.txt")
        bench = popen([H.binary("intentra-bench"), "--gateway", "127.0.0.1:%d" % udp,
                                  "--gateway-key", g.public_key, "--peers", 20, "--rate", 1000,
                                  "--duration", 8, "--linger", 2, "--topic", "load", "--json",
                                  "--ack-log", ack_log],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(3)
        g.kill(signal.SIGTERM)
        try:
            g.p.wait(30)
        except subprocess.TimeoutExpired:
            H.fail("gateway did not exit within 30 s of SIGTERM")
        if g.p.returncode != 0:
            H.fail("gateway exit status %d after SIGTERM" % g.p.returncode)
        out, _ = bench.communicate(timeout=60)
        res = json.loads(out.decode().strip().splitlines()[-1])
        acked = set()
        with open(ack_log) as f:
            for line in f:
                p, s = line.split()
                acked.add((int(p), int(s)))
        stored = {}
        for _, pi, s, _ in file_records(h.path("messages.jsonl")):
            stored[(pi, s)] = stored.get((pi, s), 0) + 1
        missing = [k for k in acked if k not in stored]
        dups = [k for k, c in stored.items() if c > 1]
        if missing:
            H.fail("%d acknowledged messages missing from the file, e.g. %r" % (len(missing), missing[:5]))
        if dups:
            H.fail("%d messages stored twice, e.g. %r" % (len(dups), dups[:5]))
        if len(acked) < 1000:
            H.fail("only %d messages acknowledged before SIGTERM: the test did not load the gateway" % len(acked))
        print("ok: %d acknowledged before SIGTERM, all stored once (%d stored, bench offered %d)"
              % (len(acked), len(stored), res["offered"]))


def case_reject_unknown():
    """unknown_peers: reject admits only keys in the shard table; refusals are logged once
    per peer per interval, not per packet."""
    seed = "11" * 32
    with H.Harness("e2e-reject") as h:
        keys = run([H.binary("intentra-bench"), "--print-keys", "--peers", 3,
                               "--key-seed", seed], capture_output=True, check=True).stdout.decode().split()
        cfg, udp, _ = h.gateway_config(unknown_peers="reject",
                                       shards={"fleet": {"peers": keys[:2]}})
        g = h.start_gateway(cfg)
        res = h.bench(udp, g.public_key, "--peers", 2, "--key-seed", seed, "--rate", 10,
                      "--duration", 1, "--topic", "ok")
        if res["connected"] != 2 or res["acknowledged"] != res["offered"]:
            H.fail("allowlisted peers: %s" % res)
        # Peer index 2 is not in the table: a fresh identity outside it is refused too.
        r = h.send(udp, g.public_key, "--topic", "nope", "--timeout", "3", messages=["x"])
        if r.returncode == 0:
            H.fail("an unknown key was admitted under unknown_peers=reject")
        r2 = h.send(udp, g.public_key, "--topic", "nope", "--timeout", "2", messages=["x"])
        if r2.returncode == 0:
            H.fail("an unknown key was admitted under unknown_peers=reject (2nd)")
        g.wait_output(r"event=security kind=refused_key", timeout=5)
        stored = {r["peer"] for r in H.read_jsonl(h.path("messages.jsonl"))}
        if not stored <= set(keys[:2]) or len(stored) != 2:
            H.fail("file holds messages from %r" % stored)
        print("ok: 2 allowlisted peers delivered, unknown keys refused")


def case_disk_full():
    """A file sink on a read-only, then full, filesystem stops acknowledging (the senders are
    throttled, nothing is lost), reports the error on /v1/sinks, and resumes when the disk is
    writable again. Runs the gateway in a private mount namespace with a tiny tmpfs."""
    if run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        print("SKIP: unshare -m is not permitted here")
        sys.exit(H.SKIP)
    with H.Harness("e2e-disk") as h:
        mnt = h.path("disk")
        os.mkdir(mnt)
        cfg, udp, adm = h.gateway_config(sinks={"archive": {"type": "file", "path": os.path.join(mnt, "m.jsonl"),
                                                            "required": False}})
        # A 64 KiB tmpfs, read-only at first (a read-only bind mount over it).
        script = ("mount -t tmpfs -o size=64k tmpfs {m} && mount --bind {m} {m} && "
                  "mount -o remount,bind,ro {m} && exec {g} -c {c}").format(
                      m=mnt, g=H.binary("intentra-gateway"), c=cfg)
        g = h.start("gateway", ["unshare", "-m", "--propagation", "private", "sh", "-c", script])
        key = g.wait_output(r"event=started .*public_key=([0-9a-f]{64})", timeout=20).group(1)
        pid = g.p.pid  # sh exec'd the gateway: same pid, inside the namespace
        token = open(h.path("admin.token")).read().strip()

        def sink():
            st, _, body = H.http("GET", "http://127.0.0.1:%d/v1/sinks" % adm, token=token)
            if st != 200:
                H.fail("/v1/sinks: %s %s" % (st, body))
            return body["sinks"][0]

        def inside(*argv):
            return run(["nsenter", "-t", pid, "-m"] + list(argv), capture_output=True, check=True)

        ack_log = h.path("acked")
        res1 = h.bench(udp, key, "--peers", 2, "--rate", 50, "--duration", 2, "--linger", 1,
                       "--topic", "ro", "--ack-log", ack_log + ".ro")
        if res1["acknowledged"] != 0:
            H.fail("a read-only disk acknowledged %d messages" % res1["acknowledged"])
        s = sink()
        if s["state"] != "down" or "Read-only" not in (s.get("last_error") or ""):
            H.fail("/v1/sinks on a read-only disk: %s" % s)
        # Writable again: the sink reopens (retry with backoff) and the same peers' messages flow.
        inside("umount", mnt)
        H.wait_until(lambda: sink()["state"] == "up", 75, "the file sink to reopen")
        # ~64 KiB holds a few hundred lines: this run fills the disk.
        res2 = h.bench(udp, key, "--peers", 5, "--rate", 100, "--duration", 4, "--linger", 1,
                       "--topic", "fill", "--ack-log", ack_log + ".fill")
        if res2["acknowledged"] == 0 or res2["acknowledged"] >= res2["offered"]:
            H.fail("a filling disk: %s" % res2)
        s = sink()
        if "No space" not in (s.get("last_error") or ""):
            H.fail("/v1/sinks does not report the full disk: %s" % s)
        # Grow the filesystem: acknowledgements resume.
        inside("mount", "-o", "remount,size=16m", mnt)
        res3 = h.bench(udp, key, "--peers", 5, "--rate", 100, "--duration", 2, "--linger", 10,
                       "--topic", "after", "--ack-log", ack_log + ".after")
        if res3["acknowledged"] != res3["offered"]:
            H.fail("after freeing space: %s" % res3)
        # Everything acknowledged is in the file, once, intact.
        data = inside("cat", os.path.join(mnt, "m.jsonl")).stdout.decode()
        stored = {}
        for line in data.splitlines():
            r = json.loads(line)
            got = H.bench_payload_ok(r["payload"])
            if got is None:
                H.fail("corrupt line after disk errors: %r" % line[:100])
            k = (r["topic"], got[0], got[1])
            stored[k] = stored.get(k, 0) + 1
        for topic in ("fill", "after"):
            with open(ack_log + "." + topic) as f:
                for line in f:
                    p, q = line.split()
                    if (topic, int(p), int(q)) not in stored:
                        H.fail("acknowledged %s/%s/%s missing from the file" % (topic, p, q))
        if any(c > 1 for c in stored.values()):
            H.fail("duplicates in the file after disk errors")
        print("ok: read-only disk: 0/%d acknowledged; full disk: %d/%d acknowledged; both recovered, "
              "nothing acknowledged lost" % (res1["offered"], res2["acknowledged"], res2["offered"]))


def case_port_in_use():
    """A listen port another socket holds: the gateway exits with a clear error naming the
    address, cleanly (no crash or sanitizer report while tearing the half-built worker
    down)."""
    import socket
    with H.Harness("e2e-port") as h:
        cfg, udp, _ = h.gateway_config()
        holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            holder.bind(("127.0.0.1", udp))
            r = run([H.binary("intentra-gateway"), "-c", cfg], capture_output=True, timeout=60)
        finally:
            holder.close()
        err = (r.stdout + r.stderr).decode(errors="replace")
        if r.returncode <= 0:
            H.fail("expected a failure exit, got %d:\n%s" % (r.returncode, err[-2000:]))
        if "cannot bind" not in err or ("127.0.0.1:%d" % udp) not in err:
            H.fail("no error naming the address:\n%s" % err[-2000:])
        for bad in ("runtime error", "AddressSanitizer", "LeakSanitizer"):
            if bad in err:
                H.fail("%s while failing to start:\n%s" % (bad, err[-3000:]))
        print("ok: port in use: exit %d, %s" % (r.returncode,
                                                 [l for l in err.splitlines() if "cannot bind" in l][0][-160:]))


CASES = {
    "reliable_file": case_reliable_file,
    "two_workers": case_two_workers,
    "sighup": case_sighup,
    "sigterm_under_load": case_sigterm_under_load,
    "reject_unknown": case_reject_unknown,
    "disk_full": case_disk_full,
    "port_in_use": case_port_in_use,
}

if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in CASES:
        print("usage: gateway_e2e.py {%s}" % "|".join(CASES), file=sys.stderr)
        sys.exit(2)
    CASES[sys.argv[1]]()
