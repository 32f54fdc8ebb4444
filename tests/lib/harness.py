"""harness.py: shared helpers for the integration tests (python3 stdlib only).

Starts real processes (the gateway, the Kafka mock broker, redis, Prometheus) on free loopback
ports, waits for them with bounded timeouts, and always stops what it started (use the
Harness object as a context manager). Also verifies outputs: bench payload checksums, exactly
once and per-peer order.

Environment: INTENTRA_BUILD_DIR (set by ctest) points at the build tree,
INTENTRA_SOURCE_DIR at the source tree.
"""
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib

SOURCE = os.environ.get("INTENTRA_SOURCE_DIR", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD = os.environ.get("INTENTRA_BUILD_DIR", os.path.join(SOURCE, "build"))

SKIP = 77  # ctest SKIP_RETURN_CODE used by our script tests


def binary(name):
    """Path of a program built in the tree (gateway/, tools/)."""
    for sub in ("gateway", "tools", "bench", "tests", "."):
        p = os.path.join(BUILD, sub, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError("%s not built under %s" % (name, BUILD))


def free_port(kind=socket.SOCK_DGRAM, host="127.0.0.1"):
    """A port free for both UDP and TCP right now (best effort, like every such helper)."""
    for _ in range(50):
        s = socket.socket(socket.AF_INET, kind)
        s.bind((host, 0))
        port = s.getsockname()[1]
        other = socket.socket(socket.AF_INET, socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM)
        try:
            other.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            other.close()
            s.close()
    raise RuntimeError("no free port")


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def wait_until(pred, timeout, what, interval=0.05):
    """Poll pred() until it returns a true value (returned) or fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            fail("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


def bench_payload_ok(payload):
    """Check an intentra-bench payload; returns (peer_index, seq) or None if corrupt."""
    if isinstance(payload, str):
        payload = payload.encode()
    i = payload.rfind(b"#")
    if i < 0 or len(payload) - i != 9:
        return None
    if "%08x" % zlib.crc32(payload[:i]) != payload[i + 1:].decode(errors="replace"):
        return None
    parts = payload[:i].split(b" ")
    if len(parts) < 4 or parts[0] != b"ib1":
        return None
    return int(parts[1]), int(parts[2])


def check_exactly_once(records, expect_peers=None):
    """records: iterable of (peer_key, seq). Returns (count, duplicates, order_violations)."""
    seen = set()
    last = {}
    dups = 0
    order = 0
    for peer, seq in records:
        k = (peer, seq)
        if k in seen:
            dups += 1
            continue
        seen.add(k)
        if peer in last and seq < last[peer]:
            order += 1
        last[peer] = max(seq, last.get(peer, -1))
    if expect_peers is not None and len(last) != expect_peers:
        fail("expected %d distinct peers, saw %d" % (expect_peers, len(last)))
    return len(seen), dups, order


def read_jsonl(path):
    out = []
    if not os.path.exists(path):
        return out
    with open(path, "rb") as f:
        for line in f:
            line = line.strip()
            if line:
                out.append(json.loads(line))
    return out


class Proc:
    """A started process with its output captured to a file."""

    def __init__(self, name, argv, env=None, cwd=None, stdin=None):
        self.name = name
        self.argv = argv
        self.log_path = tempfile.mktemp(prefix="itr-%s-" % name, suffix=".log")
        self.log = open(self.log_path, "wb")
        e = dict(os.environ)
        if env:
            e.update(env)
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=e,
                                  cwd=cwd, stdin=stdin, start_new_session=True)

    def output(self):
        if not self.log.closed:
            self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_output(self, pattern, timeout=10):
        rx = re.compile(pattern)
        def found():
            m = rx.search(self.output())
            if not m and self.p.poll() is not None:
                fail("%s exited (%s) before printing /%s/:\n%s" % (self.name, self.p.returncode, pattern, self.output()[-4000:]))
            return m
        return wait_until(found, timeout, "%s to print /%s/" % (self.name, pattern))

    def alive(self):
        return self.p.poll() is None

    def kill(self, sig):
        if self.alive():
            self.p.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Stop the process (and its process group); returns the exit status."""
        if self.alive():
            try:
                self.p.send_signal(sig)
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(5)
        self.log.close()
        return self.p.returncode


class Harness:
    """Owns a temp directory and every process started through it."""

    def __init__(self, name="itr"):
        self.dir = tempfile.mkdtemp(prefix=name + "-")
        self.procs = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for p in reversed(self.procs):
            p.stop(signal.SIGKILL if exc[0] else signal.SIGTERM, timeout=10)
        if exc[0] is not None:
            for p in self.procs:
                print("---- %s output (tail) ----\n%s" % (p.name, p.output()[-3000:]), file=sys.stderr)
        if exc[0] is None and not os.environ.get("INTENTRA_KEEP_TMP"):
            shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def start(self, name, argv, **kw):
        p = Proc(name, argv, **kw)
        self.procs.append(p)
        return p

    # ---- the gateway ----

    def gateway_config(self, sinks=None, routes=None, shards=None, unknown_peers="admit",
                       admin=None, transport=None, extra=None):
        """Write a gateway config into the temp dir; returns (path, udp_port, admin_port)."""
        udp = free_port()
        adm = free_port(socket.SOCK_STREAM)
        cfg = {
            "listen": ["127.0.0.1:%d" % udp],
            "key_file": self.path("gateway.key"),
            "unknown_peers": unknown_peers,
            "shards": shards if shards is not None else {"default": {"peers": []}},
            "sinks": sinks if sinks is not None else {
                "archive": {"type": "file", "path": self.path("messages.jsonl")}},
            "routes": routes if routes is not None else [
                {"name": "all", "match": {"shard": "*", "topic": "*"},
                 "sinks": [{"sink": "archive"}]}],
            "admin": admin if admin is not None else {
                "listen": "127.0.0.1:%d" % adm,
                "token_file": self.path("admin.token"), "token_create": True,
                "state_file": self.path("state.json")},
        }
        if unknown_peers == "admit":
            cfg["default_shard"] = "default"
        if transport:
            cfg["transport"] = transport
        if extra:
            cfg.update(extra)
        path = self.path("gateway.json")
        with open(path, "w") as f:
            json.dump(cfg, f, indent=1)
        return path, udp, adm

    def start_gateway(self, config, name="gateway", env=None):
        g = self.start(name, [binary("intentra-gateway"), "-c", config], env=env)
        m = g.wait_output(r"event=started .*public_key=([0-9a-f]{64})", timeout=20)
        g.public_key = m.group(1)
        return g

    def bench(self, udp_port, gateway_key, *args, timeout=600):
        """Run intentra-bench --json to completion; returns its JSON summary."""
        argv = [binary("intentra-bench"), "--gateway", "127.0.0.1:%d" % udp_port,
                "--gateway-key", gateway_key, "--json"] + [str(a) for a in args]
        r = subprocess.run(argv, capture_output=True, timeout=timeout)
        if not r.stdout.strip():
            fail("intentra-bench printed nothing (exit %d):\n%s" % (r.returncode, r.stderr.decode(errors="replace")[-3000:]))
        out = json.loads(r.stdout.decode().strip().splitlines()[-1])
        out["_exit"] = r.returncode
        out["_stderr"] = r.stderr.decode(errors="replace")
        return out

    def send(self, udp_port, gateway_key, *args, messages=(), stdin=None, timeout=60):
        argv = [binary("intentra-send"), "--gateway", "127.0.0.1:%d" % udp_port,
                "--gateway-key", gateway_key] + [str(a) for a in args] + list(messages)
        return subprocess.run(argv, capture_output=True, input=stdin, timeout=timeout)


def http(method, url, body=None, token=None, headers=None, timeout=10):
    """(status, headers, parsed JSON or text) of one HTTP request; never raises on 4xx/5xx."""
    data = None
    h = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        data = data.encode() if isinstance(data, str) else data
        h.setdefault("Content-Type", "application/json")
    if token:
        h["Authorization"] = "Bearer " + token
    req = urllib.request.Request(url, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, hdrs, raw = r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, raw = e.code, dict(e.headers), e.read()
    try:
        return status, hdrs, json.loads(raw)
    except ValueError:
        return status, hdrs, raw.decode(errors="replace")


# ---- shared by the sink end-to-end tests (kafka, redis, webhook) ----

def bench_async(udp_port, gateway_key, ack_log, *args):
    """intentra-bench in the background with --json and --ack-log; see bench_result()."""
    argv = [binary("intentra-bench"), "--gateway", "127.0.0.1:%d" % udp_port, "--gateway-key",
            gateway_key, "--json", "--ack-log", ack_log] + [str(a) for a in args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def bench_result(p, timeout=300):
    """The JSON summary of a bench_async() run, once it exits."""
    out, err = p.communicate(timeout=timeout)
    lines = out.decode().strip().splitlines()
    if not lines:
        fail("intentra-bench printed nothing:\n%s" % err.decode(errors="replace")[-3000:])
    return json.loads(lines[-1])


def acked_set(path):
    """{(bench peer index, bench seq)} of an intentra-bench --ack-log file."""
    acked = set()
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                p, s = line.split()
                acked.add((int(p), int(s)))
    return acked


def sink_state(h, admin_port, name):
    """The entry of sink NAME in GET /v1/sinks (the token from the harness' admin.token)."""
    with open(h.path("admin.token")) as f:
        token = f.read().strip()
    status, _, body = http("GET", "http://127.0.0.1:%d/v1/sinks" % admin_port, token=token)
    if status != 200:
        fail("GET /v1/sinks: %s %r" % (status, body))
    items = body if isinstance(body, list) else body.get("sinks", [])
    for s in items:
        if s.get("name") == name:
            return s
    fail("no %s sink in GET /v1/sinks: %r" % (name, body))


def wait_sink_state(h, admin_port, name, states, timeout=15, interval=0.1):
    """Wait until sink NAME is in one of STATES; returns its GET /v1/sinks entry."""
    def ready():
        s = sink_state(h, admin_port, name)
        return s["state"] in states and s
    return wait_until(ready, timeout, "the %s sink to be %s" % (name, "/".join(states)),
                      interval=interval)
