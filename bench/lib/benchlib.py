"""benchlib.py: the measuring instruments shared by bench/run's scenarios (python3 stdlib).

Processes are started and stopped through tests/lib/harness.py (free loopback ports, bounded
waits, cleanup); this module adds what a benchmark needs on top: CPU time and peak memory of
a process read from /proc while it runs, Prometheus scrapes of the gateway's /metrics with
histogram quantiles, Kafka topic offsets and exact counts through kcat, the live counters of
raw-udp-sink, medians, and the one result table.
"""
import json
import os
import re
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "lib"))
import harness  # noqa: E402  (shared process/port helpers of the integration tests)

CLK_TCK = os.sysconf("SC_CLK_TCK")


class ScenarioError(Exception):
    """A scenario could not produce its figures (a server did not start, a tool failed)."""


def _fail(msg):
    raise ScenarioError(msg)


# harness.fail() exits the interpreter, which suits a test; a benchmark run turns it into an
# exception so one scenario's failure becomes a row of the table and the others still run.
# (The harness looks fail() up at call time, so its own helpers raise too.)
harness.fail = _fail


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


class Harness(harness.Harness):
    """harness.Harness that also removes its processes' log files after a clean exit (a
    benchmark run starts hundreds of processes; keep them with INTENTRA_KEEP_TMP=1)."""

    def __exit__(self, *exc):
        r = super().__exit__(*exc)
        if exc[0] is None and not os.environ.get("INTENTRA_KEEP_TMP"):
            for p in self.procs:
                try:
                    os.unlink(p.log_path)
                except OSError:
                    pass
        return r


# ---- building ----

def build(build_dir, targets, jobs=2, build_type="Release"):
    """Configure (Release, no tests) and build each target; returns the set that built.

    Targets are built one by one so a target whose sources are mid-edit in someone's checkout
    only costs its own scenario, not the whole run."""
    os.makedirs(build_dir, exist_ok=True)
    cfg = ["cmake", "-S", SOURCE, "-B", build_dir, "-DCMAKE_BUILD_TYPE=" + build_type,
           "-DINTENTRA_TESTS=OFF", "-DINTENTRA_BENCH=ON"]
    r = subprocess.run(cfg, capture_output=True, text=True)
    if r.returncode != 0:
        raise ScenarioError("cmake configure failed:\n" + (r.stdout + r.stderr)[-3000:])
    built = set()
    for t in targets:
        r = subprocess.run(["cmake", "--build", build_dir, "-j%d" % jobs, "--target", t],
                           capture_output=True, text=True)
        if r.returncode == 0:
            built.add(t)
        else:
            tail = (r.stdout + r.stderr).strip().splitlines()[-8:]
            log("target %s did not build (its scenarios will say so):\n    %s"
                % (t, "\n    ".join(tail)))
    return built


def find_binary(name):
    """Path of a built program, or None."""
    try:
        return harness.binary(name)
    except FileNotFoundError:
        return None


# ---- /proc: CPU and memory of running processes ----

def proc_cpu_seconds(pid):
    """utime + stime of the whole process (all threads, including exited ones), or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except OSError:
        return None
    # Fields after the parenthesised command name (which may hold spaces).
    rest = data[data.rindex(")") + 2:].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def proc_status_kib(pid, field):
    """A 'kB' field of /proc/PID/status (VmRSS, VmHWM), in KiB, or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def machine_cpu_seconds():
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    return (sum(v) - idle) / CLK_TCK, sum(v) / CLK_TCK


def loadavg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


class Watch:
    """Samples the CPU time and peak RSS of a set of processes every `interval` seconds in a
    background thread, so the last values stay known after a process exits (an exited
    process's /proc entry is gone). cpu(name) is the latest sample; mark() takes an exact one
    now when the process is alive."""

    def __init__(self, interval=0.1):
        self.interval = interval
        self.pids = {}
        self.cpu_last = {}
        self.hwm = {}
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def add(self, name, pid):
        with self.lock:
            self.pids[name] = pid
        self._sample(name, pid)

    def _sample(self, name, pid):
        c = proc_cpu_seconds(pid)
        h = proc_status_kib(pid, "VmHWM")
        with self.lock:
            if c is not None:
                self.cpu_last[name] = c
            if h is not None:
                self.hwm[name] = max(h, self.hwm.get(name, 0))

    def _run(self):
        while not self.stop_ev.wait(self.interval):
            with self.lock:
                items = list(self.pids.items())
            for name, pid in items:
                self._sample(name, pid)

    def cpu(self, name):
        """CPU seconds of `name` now (exact if alive, else its last sample)."""
        with self.lock:
            pid = self.pids.get(name)
        if pid is not None:
            self._sample(name, pid)
        with self.lock:
            return self.cpu_last.get(name)

    def peak_rss_kib(self, name):
        with self.lock:
            return self.hwm.get(name)

    def close(self):
        self.stop_ev.set()
        self.thread.join(2)


# ---- Prometheus text format ----

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text):
    """{(name, ((label, value), ...sorted)): float} of every sample in a /metrics page."""
    out = {}
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        labels = tuple(sorted(_LABEL.findall(m.group(3) or "")))
        try:
            out[(m.group(1), labels)] = float(m.group(4))
        except ValueError:
            continue
    return out


def metric(samples, name, **labels):
    """Sum of the samples of `name` whose labels include `labels` (0 if none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def metric_by(samples, name, label, **labels):
    """{value of `label`: summed sample} for `name` (e.g. drops by reason)."""
    want = set(labels.items())
    out = {}
    for (n, ls), v in samples.items():
        if n != name or not want <= set(ls):
            continue
        key = dict(ls).get(label)
        out[key] = out.get(key, 0) + v
    return out


def histogram_quantile(before, after, name, q, **labels):
    """Quantile q of the observations a Prometheus histogram `name` gained between two
    scrapes, interpolated linearly inside the bucket like PromQL's histogram_quantile.
    Returns seconds, or None if nothing was observed."""
    def buckets(samples):
        want = set(labels.items())
        b = {}
        for (n, ls), v in samples.items():
            if n != name + "_bucket":
                continue
            d = dict(ls)
            le = d.pop("le", None)
            if le is None or not want <= set(d.items()):
                continue
            bound = float("inf") if le == "+Inf" else float(le)
            b[bound] = b.get(bound, 0) + v
        return b
    b1 = buckets(before) if before else {}
    b2 = buckets(after)
    bounds = sorted(b2)
    counts = [b2[x] - b1.get(x, 0) for x in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    prev_bound, prev_count = 0.0, 0.0
    for bound, c in zip(bounds, counts):
        if c >= rank:
            if bound == float("inf"):
                return prev_bound
            if c == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (c - prev_count)
        prev_bound, prev_count = bound, c
    return prev_bound


class Gateway:
    """A started intentra-gateway (through harness) with its /metrics endpoint."""

    def __init__(self, h, config_path, udp_port, admin_port, token_path, name="gateway"):
        self.proc = h.start_gateway(config_path, name=name)
        self.udp_port = udp_port
        self.admin = "http://127.0.0.1:%d" % admin_port
        self.key = self.proc.public_key
        self.token = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.path.exists(token_path) and os.path.getsize(token_path) > 0:
                with open(token_path) as f:
                    self.token = f.read().strip()
                break
            time.sleep(0.05)

    @property
    def pid(self):
        return self.proc.p.pid

    def scrape(self):
        status, _, body = harness.http("GET", self.admin + "/metrics", token=self.token)
        if status != 200:
            raise ScenarioError("GET /metrics: HTTP %s: %s" % (status, str(body)[:300]))
        return parse_prometheus(body if isinstance(body, str) else json.dumps(body))

    def wait_sessions(self, n, timeout, bench_proc=None):
        """Wait until n sessions are active; returns the scrape, or raises."""
        deadline = time.monotonic() + timeout
        while True:
            s = self.scrape()
            if metric(s, "intentra_connections_active") >= n:
                return s
            if bench_proc is not None and bench_proc.poll() is not None:
                raise ScenarioError("intentra-bench exited (%s) before %d sessions were up"
                                    % (bench_proc.returncode, n))
            if time.monotonic() > deadline:
                raise ScenarioError("only %d of %d sessions up after %.0f s"
                                    % (metric(s, "intentra_connections_active"), n, timeout))
            time.sleep(0.05)


def check_config(h, sinks, routes):
    """None if intentra-gateway --check-config accepts a config with these sinks, else its
    message (e.g. a sink type this build does not have)."""
    path, _, _, _ = gateway_config(h, sinks, routes)
    r = subprocess.run([harness.binary("intentra-gateway"), "-c", path, "--check-config"],
                       capture_output=True, text=True, timeout=30)
    return None if r.returncode == 0 else (r.stdout + r.stderr).strip()[-500:]


def gateway_config(h, sinks, routes, transport=None, extra=None):
    """A benchmark gateway config in h's temp dir: loopback, unknown peers admitted, an admin
    endpoint for /metrics. Returns (path, udp_port, admin_port, token_path)."""
    token = h.path("admin.token")
    admin = {"listen": "127.0.0.1:%d" % harness.free_port(socket.SOCK_STREAM),
             "token_file": token, "token_create": True}
    path, udp, adm = h.gateway_config(sinks=sinks, routes=routes, admin=admin,
                                      transport=transport, extra=extra)
    return path, udp, int(admin["listen"].rsplit(":", 1)[1]), token


def bench_argv(gw, peers, rate, duration, size, intent, topic="bench", extra=()):
    return [harness.binary("intentra-bench"), "--gateway", "127.0.0.1:%d" % gw.udp_port,
            "--gateway-key", gw.key, "--json", "--peers", str(peers), "--rate", str(rate),
            "--duration", str(duration), "--size", str(size), "--intent", intent,
            "--topic", topic] + [str(a) for a in extra]


def bench_result(proc, timeout):
    """Wait for a started intentra-bench (harness Proc) and parse its --json line."""
    try:
        proc.p.wait(timeout)
    except subprocess.TimeoutExpired:
        raise ScenarioError("intentra-bench did not finish within %.0f s" % timeout)
    check_sanitizers(proc, "intentra-bench")
    out = proc.output()
    for line in reversed(out.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            r["_exit"] = proc.p.returncode
            return r
    raise ScenarioError("intentra-bench printed no JSON (exit %s):\n%s"
                        % (proc.p.returncode, out[-2000:]))


_SANITIZER = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:")


def check_sanitizers(proc, what):
    """Raise if a process's output holds a sanitizer report (a build with INTENTRA_SANITIZE:
    the smoke test runs there; a report must fail the run, not hide behind a figure)."""
    m = _SANITIZER.search(proc.output())
    if m:
        raise ScenarioError("%s: %s report:\n%s" % (what, m.group(0), proc.output()[-3000:]))


def stop_gateway(gw):
    """SIGTERM the gateway and require a clean drain: exit status 0, no sanitizer report."""
    rc = gw.proc.stop()
    check_sanitizers(gw.proc, "intentra-gateway")
    if rc != 0:
        raise ScenarioError("intentra-gateway exited %s after SIGTERM:\n%s"
                            % (rc, gw.proc.output()[-2000:]))


def json_line(proc, timeout, what):
    """Wait for a started tool (harness Proc) and parse the last JSON line it printed."""
    try:
        proc.p.wait(timeout)
    except subprocess.TimeoutExpired:
        raise ScenarioError("%s did not finish within %.0f s" % (what, timeout))
    check_sanitizers(proc, what)
    out = proc.output()
    for line in reversed(out.strip().splitlines()):
        if line.strip().startswith("{"):
            return json.loads(line)
    raise ScenarioError("%s printed no JSON (exit %s):\n%s" % (what, proc.p.returncode, out[-2000:]))


# ---- raw-udp-sink live counters ----

def raw_sink_stats(path):
    """(packets, bytes, kernel_drops, first_ns, last_ns) from raw-udp-sink --stats-file."""
    try:
        with open(path, "rb") as f:
            data = f.read(40)
    except OSError:
        return (0, 0, 0, 0, 0)
    if len(data) < 40:
        return (0, 0, 0, 0, 0)
    return struct.unpack("=5Q", data)


# ---- Kafka through kcat ----

def _kafka_offsets(bootstrap, topic, partitions, which):
    argv = ["kcat", "-b", bootstrap, "-Q"]
    for p in range(partitions):
        argv += ["-t", "%s:%d:%d" % (topic, p, which)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    total = 0
    for m in re.finditer(r"\[\d+\] offset (-?\d+)", r.stdout):
        total += max(0, int(m.group(1)))
    return total


def kafka_end_offsets(bootstrap, topic, partitions):
    """Sum of the end offsets of a topic's partitions (messages appended so far)."""
    return _kafka_offsets(bootstrap, topic, partitions, -1)


def kafka_start_offsets(bootstrap, topic, partitions):
    """Sum of the start offsets: records the broker no longer holds. librdkafka's mock
    cluster keeps at most 5 MiB of record batches per partition and drops the oldest beyond
    that, so a count must check this before calling anything lost."""
    return _kafka_offsets(bootstrap, topic, partitions, -2)


def kafka_wait_stable(bootstrap, topic, partitions, quiet=1.0, timeout=60):
    """Wait until a topic's end offsets stop growing for `quiet` seconds; returns the total."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = kafka_end_offsets(bootstrap, topic, partitions)
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return n
        time.sleep(0.2)
    return last


class ExactlyOnce:
    """Distinct (peer, seq) pairs, duplicates and per-peer order, in a bitmap per peer (a few
    bytes per message instead of a Python set entry: topics hold millions of records and the
    runner's own memory must not grow with them)."""

    def __init__(self):
        self.bits = {}
        self.last = {}
        self.distinct = self.duplicates = self.order_violations = 0

    def add(self, peer, seq):
        b = self.bits.get(peer)
        if b is None:
            b = self.bits[peer] = bytearray()
        byte, bit = divmod(seq, 8)
        if byte >= len(b):
            b.extend(bytes(max(byte + 1 - len(b), len(b))))
        if b[byte] >> bit & 1:
            self.duplicates += 1
            return
        b[byte] |= 1 << bit
        self.distinct += 1
        if seq < self.last.get(peer, -1):
            self.order_violations += 1
        else:
            self.last[peer] = seq


def kafka_count(bootstrap, topic, partitions, timeout=300):
    """Consume a whole topic with kcat and check every record as a bench payload.

    Returns {records, distinct, duplicates, corrupt, order_violations, evicted}, where
    distinct counts (peer, seq) pairs, order is checked per peer in consumption order
    (meaningful when a peer's records share a partition) and evicted is what the broker
    dropped for its own size limit before the count. kcat's output is streamed, not kept."""
    argv = ["kcat", "-b", bootstrap, "-C", "-t", topic, "-e", "-o", "beginning", "-q",
            "-f", "%s\n"]
    eo = ExactlyOnce()
    records = corrupt = 0
    deadline = time.monotonic() + timeout
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        for line in p.stdout:
            line = line.rstrip(b"\n")
            if not line:
                continue
            records += 1
            ok = harness.bench_payload_ok(line)
            if ok is None:
                corrupt += 1
            else:
                eo.add(*ok)
            if time.monotonic() > deadline:
                p.kill()
                raise ScenarioError("kcat -C %s: no end after %d s" % (topic, timeout))
        err = p.stderr.read().decode(errors="replace")
        if p.wait() != 0:
            raise ScenarioError("kcat -C %s failed: %s" % (topic, err[-500:]))
    return {"records": records, "distinct": eo.distinct, "duplicates": eo.duplicates,
            "corrupt": corrupt, "order_violations": eo.order_violations,
            "evicted": kafka_start_offsets(bootstrap, topic, partitions)}


# ---- statistics and the table ----

def median(values):
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


def per_million(cpu_seconds, messages):
    if cpu_seconds is None or not messages:
        return None
    return cpu_seconds / messages * 1e6


def ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


class Row:
    """One line of the result table: our figure beside its reference measured in the same
    run. Fields left None print as '-'."""

    FIELDS = ("scenario", "figure", "ours", "ref_name", "ref", "ratio", "delivery", "ref_delivery",
              "p50_ms", "p99_ms", "cpu_ours", "cpu_gen", "cpu_ref", "cpu_ref_gen", "rss_ours_kib",
              "rss_ref_kib", "note")

    def __init__(self, scenario, figure, **kw):
        self.scenario = scenario
        self.figure = figure
        for f in self.FIELDS[2:]:
            setattr(self, f, kw.pop(f, None))
        if kw:
            raise TypeError("unknown Row fields: %s" % ", ".join(kw))
        if self.ratio is None and isinstance(self.ours, (int, float)) and isinstance(self.ref, (int, float)):
            self.ratio = ratio(self.ours, self.ref)

    def as_dict(self):
        return {f: getattr(self, f) for f in self.FIELDS}


def _num(v, digits=None):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if digits is None:
        a = abs(v)
        if a >= 1000:
            return "{:,.0f}".format(v)
        digits = 0 if a >= 100 else 1 if a >= 10 else 2 if a >= 1 else 3
    return "{:.{d}f}".format(v, d=digits)


def _mib(kib):
    return "-" if kib is None else "%.1f" % (kib / 1024.0)


def _pair(a, b, fmt):
    if a is None and b is None:
        return "-"
    return "%s / %s" % (fmt(a), fmt(b))


def table_cells(rows):
    head = ["scenario", "figure", "ours", "reference", "ref figure", "ratio",
            "delivery ours / ref", "p50 / p99 ms", "CPU s/M ours / gen", "CPU s/M ref / gen",
            "peak RSS MiB ours / ref", "note"]
    body = []
    for r in rows:
        body.append([
            r.scenario, r.figure, _num(r.ours), r.ref_name or "-", _num(r.ref),
            _num(r.ratio, 2) if r.ratio is not None else "-",
            _pair(r.delivery, r.ref_delivery, lambda x: _num(x, 4)),
            _pair(r.p50_ms, r.p99_ms, lambda x: _num(x)),
            _pair(r.cpu_ours, r.cpu_gen, lambda x: _num(x, 2)),
            _pair(r.cpu_ref, r.cpu_ref_gen, lambda x: _num(x, 2)),
            _pair(r.rss_ours_kib, r.rss_ref_kib, _mib),
            r.note or ""])
    return head, body


def format_table(rows):
    head, body = table_cells(rows)
    widths = [max(len(head[i]), *(len(b[i]) for b in body)) if body else len(head[i])
              for i in range(len(head))]
    sep = "  "
    lines = [sep.join(h.ljust(widths[i]) for i, h in enumerate(head)).rstrip(),
             sep.join("-" * w for w in widths)]
    for b in body:
        lines.append(sep.join(c.ljust(widths[i]) for i, c in enumerate(b)).rstrip())
    return "\n".join(lines)


def format_markdown(rows):
    head, body = table_cells(rows)
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for b in body:
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in b) + " |")
    return "\n".join(out)
