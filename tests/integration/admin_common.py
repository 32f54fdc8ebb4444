"""admin_common.py: helpers shared by the admin API integration tests (admin_*.py).

Builds on tests/lib/harness.py: a gateway whose admin API is on a free loopback port, an
authenticated HTTP client for it, bench peer keys, and file-sink readers.
"""
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import harness as H  # noqa: E402,F401

SEED = "5eed" * 16  # --key-seed for intentra-bench: stable peer identities


class Admin:
    """The admin API of one running gateway."""

    def __init__(self, port, token):
        self.base = "http://127.0.0.1:%d" % port
        self.token = token

    def req(self, method, path, body=None, if_match=None, token=True, headers=None, timeout=10):
        h = dict(headers or {})
        if if_match is not None:
            h["If-Match"] = if_match
        return H.http(method, self.base + path, body=body, token=self.token if token else None,
                      headers=h, timeout=timeout)


def start(h, **cfg_kw):
    """Write a config (harness defaults + cfg_kw), start the gateway; returns (proc, udp, admin,
    config_path)."""
    cfg, udp, adm = h.gateway_config(**cfg_kw)
    g = h.start_gateway(cfg)
    tok_path = h.path("admin.token")
    H.wait_until(lambda: os.path.exists(tok_path), 10, "the admin token file")
    with open(tok_path) as f:
        token = f.read().strip()
    return g, udp, Admin(adm, token), cfg


def bench_keys(n, seed=SEED):
    """Public keys of intentra-bench peers 0..n-1 for --key-seed seed."""
    r = subprocess.run([H.binary("intentra-bench"), "--key-seed", seed, "--peers", str(n),
                        "--print-keys"], capture_output=True, timeout=30)
    keys = r.stdout.decode().split()
    if r.returncode != 0 or len(keys) != n:
        H.fail("intentra-bench --print-keys: %s" % r.stderr.decode(errors="replace"))
    return keys


def bench_async(h, udp, gateway_key, *args):
    """Run intentra-bench --json in a thread; returns (thread, result dict filled when done)."""
    out = {}

    def run():
        out.update(h.bench(udp, gateway_key, *args))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def file_records(path):
    """(peer_hex, bench_index, bench_seq, ts_string, shard) of every line of a file sink;
    fails on a corrupt payload."""
    recs = []
    for i, r in enumerate(H.read_jsonl(path)):
        got = H.bench_payload_ok(r["payload"])
        if got is None:
            H.fail("%s line %d: payload fails its checksum" % (path, i + 1))
        recs.append((r["peer"], got[0], got[1], r["ts"], r["shard"]))
    return recs


def ts_seconds(ts):
    """RFC 3339 UTC with nanoseconds ("2026-11-23T07:16:19.123456789Z") -> epoch seconds."""
    import calendar
    date, frac = ts.rstrip("Z").split(".") if "." in ts else (ts.rstrip("Z"), "0")
    base = calendar.timegm(time.strptime(date, "%Y-%m-%dT%H:%M:%S"))
    return base + float("0." + frac)


def percentile(values, q):
    if not values:
        return 0.0
    s = sorted(values)
    i = min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))
    return s[i]
