#!/usr/bin/env python3
"""brig-egress's cost, in the egress test's namespaces (tests/egress): a download and a small
request straight from the hub (the host: no proxy) beside the same through brig egress from a
client namespace, with no domain in the policy (nothing peeked) and with one (the Host peeked,
the name resolved by the proxy); then the same over HTTPS: direct, through the proxy end to end
(the SNI peeked), and intercepted by a header rule (network.rules: brig egress terminates TLS
with a leaf of brig's CA, sets the header on each request, and speaks TLS to the server, which it
verifies). Interleaved round-robin; prints p50 and the slowest run.

    bench/egress/run.py BRIG [RUNS]      (root; the same tools as the test)
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "egress"))
import egress_test as t  # noqa: E402

SIZE = 256 << 20


def curl(ns, url, *extra):
    r = subprocess.run(["ip", "netns", "exec", ns, "curl", "-sS", "--noproxy", "*", "-o", "/dev/null", "-w",
                        "%{speed_download} %{time_total}", *extra, url],
                       capture_output=True, text=True, timeout=120, env=t.ENV, check=True)
    speed, total = r.stdout.split()
    return float(speed), float(total)


def main():
    t.BRIG = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    net = t.Net()
    # brig's CA, as `brig serve` makes it (P-256), for the header rule's leaves; upstream servers
    # are verified against the test CA (made by net.up() at this path).
    brig_ca, brig_key = f"{net.tmp}/brig-ca.crt", f"{net.tmp}/brig-ca.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", "/CN=brig bench CA", "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", brig_key, "-out", brig_ca],
                   check=True, capture_output=True)
    net.proxy_args = ["--ca-cert", brig_ca, "--ca-key", brig_key, "--upstream-ca", f"{net.tmp}/ca.pem"]
    by_name = ["--resolve", f"denied.test:80:{t.DENIED}"]
    tls = ["--cacert", f"{net.tmp}/ca.pem"]
    allow_tls = (["allowed.test"], ["0.0.0.0/0"])
    rule = [{"domain": "allowed.test", "headers": [["Authorization", "Bearer bench-secret"]], "broken": ""}]
    cases = [
        ("direct (hub, no proxy)", None, t.HUB, f"http://{t.DENIED}", []),
        ("proxy, no domain in the policy", ([], []), t.CLI, f"http://{t.DENIED}", []),
        ("proxy, dialled by name", (["denied.test"], ["0.0.0.0/0"]), t.CLI, "http://denied.test", by_name),
        ("HTTPS direct (hub, no proxy)", None, t.HUB, "https://allowed.test",
         tls + ["--resolve", f"allowed.test:443:{t.ALLOWED}"]),
        ("HTTPS through the proxy, end to end", allow_tls, t.CLI, "https://allowed.test", tls),
        ("HTTPS intercepted by a header rule", allow_tls + (rule,), t.CLI, "https://allowed.test",
         ["--cacert", brig_ca]),
    ]
    rates = {c[0]: [] for c in cases}
    small = {c[0]: [] for c in cases}
    try:
        net.up()
        for _ in range(runs):
            for label, policy, ns, base, extra in cases:
                if policy:
                    net.policy(t.CLIENT_IP, "bench", *policy)
                rates[label].append(curl(ns, f"{base}/zero/{SIZE}", *extra)[0] / 1e6)
                for _ in range(5):
                    small[label].append(curl(ns, f"{base}/", *extra)[1] * 1000)
    finally:
        net.down()
    print(f"| path | {SIZE >> 20} MiB download p50 | slowest | small request p50 | slowest |")
    print("|---|---:|---:|---:|---:|")
    for label, *_ in cases:
        r, s = sorted(rates[label]), sorted(small[label])
        print(f"| {label} | {r[len(r) // 2]:.0f} MB/s | {r[0]:.0f} MB/s | {s[len(s) // 2]:.2f} ms | {s[-1]:.2f} ms |")


if __name__ == "__main__":
    main()
