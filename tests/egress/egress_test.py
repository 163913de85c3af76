#!/usr/bin/env python3
"""brig-egress against a tiny internet of network namespaces, all on this machine:

    client ns (a sandbox: 10.250.0.1) ──veth── hub ns (brig egress, nftables redirect)
    client2 ns (another: 10.250.0.3) ──veth──┘        │ veth, routes to the test nets
                                                 ext ns: HTTP/HTTPS on every address, DNS for *.test

The hub stands in for the host: its nftables redirect the clients' TCP to brig egress and their
DNS (to the hub's address, port 53) to its stub. Nothing is forwarded, so whatever a client
reaches, it reached through the proxy. The ext namespace serves 203.0.113.10 (allowed.test),
.11 (*.wild.test), .12 (cidr.test), 198.51.100.10 (denied.test) and 10.99.0.10 (a private
service), each answer saying which address served it and for which Host; its DNS server
(203.0.113.53) answers the test names, some with private addresses (rebinding).

Needs root, ip, nft, curl, openssl; exits 77 (skipped) otherwise. Run: egress_test.py BRIG.
Every wait is bounded; every namespace and file is removed at the end.
"""
import json
import os
import queue
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
BRIG = os.environ.get("BRIG_BIN", "")
TAG = secrets.token_hex(3)
HUB, CLI, CLI2, EXT = f"bge{TAG}h", f"bge{TAG}c", f"bge{TAG}d", f"bge{TAG}x"
CLIENT_IP, CLIENT2_IP, HUB_IP, HUB2_IP = "10.250.0.1", "10.250.0.3", "10.250.0.0", "10.250.0.2"
PROXY_PORT, DNS_PORT = 15001, 5353
ALLOWED, WILD, CIDR, DENIED, PRIVATE = "203.0.113.10", "203.0.113.11", "203.0.113.12", "198.51.100.10", "10.99.0.10"
HOST_PUBLIC = "192.0.2.1"  # an address of the hub ("the host") itself, with a web server
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}  # no proxy variables reach curl
# A sanitizer build's options (the asan-ubsan and tsan stages) still reach brig egress.
ENV.update({k: v for k, v in os.environ.items() if k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "TSAN_OPTIONS")})


def sh(*args, check=True, timeout=30, **kw):
    return subprocess.run(list(args), check=check, timeout=timeout, capture_output=True, text=True, env=ENV, **kw)


def in_ns(ns, *args, **kw):
    return sh("ip", "netns", "exec", ns, *args, **kw)


class Net:
    """The namespaces, the servers and brig egress with its control channel."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix="brig-egress-test-")
        self.events = queue.Queue()
        self.acks = {}
        self.ack_cv = threading.Condition()
        self.next_id = 1
        self.procs = []
        self.proxy_args = []  # more arguments for brig egress (the benchmark's header rules)

    # ---- setup ---------------------------------------------------------------------------------
    def up(self):
        self.make_certs()
        for ns in (HUB, CLI, CLI2, EXT):
            sh("ip", "netns", "add", ns)
            in_ns(ns, "ip", "link", "set", "lo", "up")
        # The clients' DNS is the hub's address (as a sandbox's /etc/resolv.conf would say).
        for ns, hub_ip in ((CLI, HUB_IP), (CLI2, HUB2_IP)):
            os.makedirs(f"/etc/netns/{ns}", exist_ok=True)
            with open(f"/etc/netns/{ns}/resolv.conf", "w") as f:
                f.write(f"nameserver {hub_ip}\noptions timeout:2 attempts:1\n")
        self.link(HUB, f"bgc{TAG}", HUB_IP + "/31", CLI, CLIENT_IP + "/31", HUB_IP)
        self.link(HUB, f"bgd{TAG}", HUB2_IP + "/31", CLI2, CLIENT2_IP + "/31", HUB2_IP)
        self.link(HUB, f"bgx{TAG}", "172.31.250.1/30", EXT, "172.31.250.2/30", "172.31.250.1")
        for net in ("203.0.113.0/24", "198.51.100.0/24", "10.99.0.0/24"):
            in_ns(HUB, "ip", "route", "add", net, "via", "172.31.250.2")
        for addr in (ALLOWED, WILD, CIDR, DENIED, PRIVATE, "203.0.113.53"):
            in_ns(EXT, "ip", "addr", "add", addr + "/32", "dev", "lo")
        ifaces = f'{{ "bgc{TAG}", "bgd{TAG}" }}'
        rules = f"""
table ip brigtest {{
  chain pre {{
    type nat hook prerouting priority dstnat; policy accept;
    iifname {ifaces} ip daddr {{ {HUB_IP}, {HUB2_IP} }} udp dport 53 redirect to :{DNS_PORT}
    iifname {ifaces} ip daddr {{ {HUB_IP}, {HUB2_IP} }} tcp dport 53 redirect to :{DNS_PORT}
    iifname {ifaces} meta l4proto tcp redirect to :{PROXY_PORT}
  }}
}}
"""
        in_ns(HUB, "nft", "-f", "-", input=rules)
        srv = subprocess.Popen(["ip", "netns", "exec", EXT, "python3", os.path.join(HERE, "servers.py"),
                                self.cert, self.key], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=ENV)
        self.procs.append(srv)
        line = self.readline_within(srv.stdout, 10)
        assert line.strip() == "ready", f"servers did not start: {line}"
        in_ns(HUB, "ip", "addr", "add", HOST_PUBLIC + "/32", "dev", "lo")
        web = subprocess.Popen(["ip", "netns", "exec", HUB, "python3", "-c",
                                "import http.server,socket,sys\n"
                                "class H(http.server.BaseHTTPRequestHandler):\n"
                                "  def do_GET(s):\n"
                                "    b=('server=%s\\n'%s.connection.getsockname()[0]).encode()\n"
                                "    s.send_response(200); s.send_header('Content-Length',str(len(b))); s.end_headers(); s.wfile.write(b)\n"
                                "  def log_message(s,*a): pass\n"
                                f"srv=http.server.HTTPServer(('{HOST_PUBLIC}',80),H); print('ready',flush=True); srv.serve_forever()\n"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
        self.procs.append(web)
        assert self.readline_within(web.stdout, 10).strip() == "ready"
        self.start_proxy()

    def link(self, ns_a, name, addr_a, ns_b, addr_b, gw_b):
        in_ns(ns_a, "ip", "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", ns_b)
        in_ns(ns_a, "ip", "addr", "add", addr_a, "dev", name)
        in_ns(ns_a, "ip", "link", "set", name, "up")
        in_ns(ns_b, "ip", "addr", "add", addr_b, "dev", "eth0")
        in_ns(ns_b, "ip", "link", "set", "eth0", "up")
        in_ns(ns_b, "ip", "route", "add", "default", "via", gw_b)

    def make_certs(self):
        t = self.tmp
        self.ca, self.cert, self.key = f"{t}/ca.pem", f"{t}/server.pem", f"{t}/server.key"
        sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=brig egress test CA",
           "-keyout", f"{t}/ca.key", "-out", self.ca)
        sh("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=allowed.test", "-keyout", self.key,
           "-out", f"{t}/server.csr")
        with open(f"{t}/ext.cnf", "w") as f:
            f.write("subjectAltName=DNS:allowed.test,DNS:*.wild.test,DNS:wild.test,DNS:cidr.test,DNS:denied.test,"
                    "DNS:rebind.test,DNS:mixed.test,DNS:loop.test,DNS:private.test\n")
        sh("openssl", "x509", "-req", "-in", f"{t}/server.csr", "-CA", self.ca, "-CAkey", f"{t}/ca.key",
           "-CAcreateserial", "-days", "2", "-extfile", f"{t}/ext.cnf", "-out", self.cert)

    def start_proxy(self):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.control = ours
        self.proxy = subprocess.Popen(
            ["ip", "netns", "exec", HUB, BRIG, "egress", "--listen", f"0.0.0.0:{PROXY_PORT}", "--dns-listen",
             f"0.0.0.0:{DNS_PORT}", "--dns-upstream", "203.0.113.53", "--control-fd", str(theirs.fileno()),
             "--deny", "172.31.250.1", "--deny", HOST_PUBLIC, "--log-level", "debug", *self.proxy_args],
            pass_fds=[theirs.fileno()], stdout=subprocess.DEVNULL, stderr=open(f"{self.tmp}/egress.log", "w"), env=ENV)
        theirs.close()
        self.procs.append(self.proxy)
        threading.Thread(target=self.reader, daemon=True).start()
        ready = self.events.get(timeout=10)
        assert ready["op"] == "ready", ready
        self.ready = ready

    def reader(self):
        buf = b""
        while True:
            try:
                chunk = self.control.recv(65536)
            except OSError:
                return
            if not chunk:
                self.events.put({"op": "eof"})
                return
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                msg = json.loads(line)
                if msg["op"] in ("ack", "error"):
                    with self.ack_cv:
                        self.acks[msg.get("id", 0)] = msg
                        self.ack_cv.notify_all()
                else:
                    self.events.put(msg)

    @staticmethod
    def readline_within(stream, seconds):
        out = []
        t = threading.Thread(target=lambda: out.append(stream.readline()), daemon=True)
        t.start()
        t.join(seconds)
        return out[0] if out else ""

    # ---- control -------------------------------------------------------------------------------
    def request(self, msg):
        msg = dict(msg, id=self.next_id)
        self.next_id += 1
        self.control.sendall((json.dumps(msg) + "\n").encode())
        deadline = time.monotonic() + 10
        with self.ack_cv:
            while msg["id"] not in self.acks:
                left = deadline - time.monotonic()
                assert left > 0, f"no answer to {msg}"
                self.ack_cv.wait(left)
            return self.acks.pop(msg["id"])

    def policy(self, source, sandbox, allow=(), deny=(), rules=()):
        ack = self.request({"op": "set", "source": source, "sandbox": sandbox, "allowOut": list(allow),
                            "denyOut": list(deny), "rules": list(rules)})
        assert ack["op"] == "ack", ack
        self.drain()

    def drain(self):
        while True:
            try:
                self.events.get_nowait()
            except queue.Empty:
                return

    def decision(self, pred, seconds=10):
        """The first decision (after the last drain) that `pred` accepts."""
        deadline = time.monotonic() + seconds
        seen = []
        while time.monotonic() < deadline:
            try:
                e = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if e.get("op") == "decision":
                seen.append(e)
                if pred(e):
                    return e
        raise AssertionError(f"no such decision; saw {seen}")

    # ---- clients -------------------------------------------------------------------------------
    def curl(self, url, *extra, ns=CLI, timeout=10):
        r = in_ns(ns, "curl", "-sS", "--noproxy", "*", "--max-time", str(timeout), "--cacert", self.ca, *extra, url,
                  check=False, timeout=timeout + 10)
        return r.returncode, r.stdout, r.stderr

    def dns(self, name, ns=CLI, server=HUB_IP, tcp=False, qtype=1):
        """Sends one query from `ns`; returns (rcode, [A addresses])."""
        code = (
            "import socket,struct,sys,random\n"
            "name,server,tcp,qtype=sys.argv[1],sys.argv[2],sys.argv[3]=='1',int(sys.argv[4])\n"
            "qid=random.randrange(65536)\n"
            "q=struct.pack('>HHHHHH',qid,0x0100,1,0,0,0)+b''.join(bytes([len(l)])+l.encode() for l in name.split('.'))"
            "+b'\\0'+struct.pack('>HH',qtype,1)\n"
            "if tcp:\n"
            "  s=socket.create_connection((server,53),timeout=5); s.sendall(struct.pack('>H',len(q))+q)\n"
            "  n=struct.unpack('>H',s.recv(2))[0]; a=b''\n"
            "  while len(a)<n: a+=s.recv(n-len(a))\n"
            "else:\n"
            "  s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(5); s.sendto(q,(server,53)); a=s.recv(4096)\n"
            "assert struct.unpack('>H',a[:2])[0]==qid\n"
            "rcode=a[3]&15; an=struct.unpack('>H',a[6:8])[0]\n"
            "i=len(q); out=[]\n"
            "for _ in range(an):\n"
            "  i+=2; t,c,ttl,l=struct.unpack('>HHIH',a[i:i+10]); i+=10\n"
            "  if t==1: out.append(socket.inet_ntoa(a[i:i+4]))\n"
            "  i+=l\n"
            "print(rcode, ','.join(out))\n")
        r = in_ns(ns, "python3", "-c", code, name, server, "1" if tcp else "0", str(qtype), check=False)
        assert r.returncode == 0, r.stderr
        rcode, _, addrs = r.stdout.strip().partition(" ")
        return int(rcode), [a for a in addrs.split(",") if a]

    def down(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for ns in (CLI, CLI2, EXT, HUB):
            sh("ip", "netns", "del", ns, check=False)
            shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def net():
    n = Net()
    try:
        n.up()
        yield n
    finally:
        log = os.path.join(n.tmp, "egress.log")
        if os.path.exists(log):
            with open(log) as f:
                tail = f.read()[-4000:]
            if tail:
                print("--- brig egress log (tail) ---\n" + tail)
        n.down()


STRICT = ["0.0.0.0/0"]


# ---- negative cases first ----------------------------------------------------------------------

def test_denied_domain_is_refused(net):
    net.policy(CLIENT_IP, "sbx1", ["allowed.test"], STRICT)
    # By name through the stub: the name does not even resolve (strict mode).
    rc, _, err = net.curl("https://denied.test/")
    assert rc != 0
    assert net.dns("denied.test") == (3, [])
    # With the address given (as /etc/hosts would): TLS SNI says denied.test, refused.
    net.drain()
    rc, out, _ = net.curl("https://denied.test/", "--resolve", f"denied.test:443:{DENIED}")
    assert rc != 0 and out == ""
    d = net.decision(lambda e: e["kind"] == "tcp" and e["name"] == "denied.test")
    assert d["verdict"] == "deny" and d["reason"] == "denyOut 0.0.0.0/0" and d["protocol"] == "tls"
    assert d["sandbox"] == "sbx1" and d["source"] == CLIENT_IP
    # Plain HTTP: the Host says denied.test, refused.
    rc, out, _ = net.curl("http://denied.test/", "--resolve", f"denied.test:80:{DENIED}")
    assert rc != 0 and out == ""
    d = net.decision(lambda e: e["kind"] == "tcp" and e["protocol"] == "http")
    assert d["verdict"] == "deny" and d["name"] == "denied.test"


def test_raw_ip_is_refused(net):
    net.policy(CLIENT_IP, "sbx1", ["allowed.test"], STRICT)
    rc, out, _ = net.curl(f"http://{DENIED}/")
    assert rc != 0 and out == ""
    d = net.decision(lambda e: e["kind"] == "tcp")
    assert d["verdict"] == "deny" and d["name"] == "" and "Host is an IP address" in d["reason"]
    # HTTPS to a bare address: no server_name at all.
    rc, out, _ = net.curl(f"https://{DENIED}/", "-k")
    assert rc != 0 and out == ""
    d = net.decision(lambda e: e["kind"] == "tcp" and e["protocol"] == "tls")
    assert d["verdict"] == "deny" and "no server_name" in d["reason"]
    # Even to the address of an allowed name: allowed names are names, not addresses.
    rc, out, _ = net.curl(f"http://{ALLOWED}/")
    assert rc != 0 and out == ""


def test_tls_name_is_pinned_to_its_own_address(net):
    """An allowed SNI aimed at a denied host's address goes to the allowed name's address."""
    net.policy(CLIENT_IP, "sbx1", ["allowed.test"], STRICT)
    rc, out, err = net.curl("https://allowed.test/", "--resolve", f"allowed.test:443:{DENIED}")
    assert rc == 0, err
    assert out.startswith(f"server={ALLOWED} host=allowed.test tls=1"), out
    d = net.decision(lambda e: e["kind"] == "tcp" and e["verdict"] == "allow")
    assert d["dest"] == f"{ALLOWED}:443" and f"the sandbox asked for {DENIED}:443" in d["reason"]


def test_host_header_spoof_reaches_only_the_allowed_server(net):
    net.policy(CLIENT_IP, "sbx1", ["allowed.test"], STRICT)
    rc, out, err = net.curl(f"http://{DENIED}/", "-H", "Host: allowed.test")
    assert rc == 0, err
    # The request went to allowed.test's address, never to the denied host the sandbox dialled.
    assert out.startswith(f"server={ALLOWED} host=allowed.test tls=0"), out
    # A Host and an absolute target that disagree are no name at all.
    rc, out, _ = net.curl(f"http://{DENIED}/", "--request-target", "http://denied.test/", "-H", "Host: allowed.test")
    assert rc != 0 and out == ""


def test_dns_rebinding_answers_are_refused(net):
    net.policy(CLIENT_IP, "sbx1", ["rebind.test", "loop.test", "mixed.test", "allowed.test"], STRICT)
    for name in ("rebind.test", "loop.test", "mixed.test"):
        assert net.dns(name) == (5, []), name  # REFUSED
    # The proxy resolves the name itself and will not dial a private answer either, whatever
    # address the sandbox used.
    net.drain()
    for name in ("rebind.test", "loop.test"):
        rc, out, _ = net.curl(f"http://{name}/", "--resolve", f"{name}:80:{ALLOWED}")
        assert rc != 0 and out == "", name
        d = net.decision(lambda e: e["kind"] == "tcp" and e["name"] == name)
        assert d["verdict"] == "deny" and "resolves only to always-denied addresses" in d["reason"], d
    # A name with a private and a public answer (the private one first): only the public one is
    # ever dialled, whatever address the sandbox used.
    rc, out, err = net.curl("http://mixed.test/", "--resolve", f"mixed.test:80:{DENIED}")
    assert rc == 0, err
    assert out.startswith(f"server={ALLOWED} host=mixed.test"), out


def test_private_destinations_and_answers_are_refused_without_a_policy(net):
    # The private service exists (the hub reaches it directly)...
    r = in_ns(HUB, "curl", "-sS", "--max-time", "5", f"http://{PRIVATE}/", check=False)
    assert r.stdout.startswith(f"server={PRIVATE}"), r.stderr
    # ...but a sandbox with no policy at all reaches neither it nor a private answer's address.
    net.policy(CLIENT_IP, "sbx1")
    rc, out, _ = net.curl(f"http://{PRIVATE}/")
    assert rc != 0 and out == ""
    d = net.decision(lambda e: e["kind"] == "tcp")
    assert d["verdict"] == "deny" and d["reason"] == "always denied (10.0.0.0/8)"
    assert net.dns("private.test") == (5, [])
    assert net.dns("meta.test") == (5, [])
    # The host's own public address (--deny), which serves HTTP.
    r = in_ns(HUB, "curl", "-sS", "--max-time", "5", f"http://{HOST_PUBLIC}/", check=False)
    assert r.stdout.startswith(f"server={HOST_PUBLIC}"), r.stderr
    rc, out, _ = net.curl(f"http://{HOST_PUBLIC}/")
    assert rc != 0 and out == ""
    d = net.decision(lambda e: e["kind"] == "tcp")
    assert d["reason"] == f"always denied ({HOST_PUBLIC}/32)"


def test_narrowed_policy_cuts_open_connections(net):
    net.policy(CLIENT_IP, "sbx1", ["allowed.test", "cidr.test"], STRICT)
    stream = subprocess.Popen(["ip", "netns", "exec", CLI, "curl", "-sS", "-N", "--noproxy", "*", "--max-time", "40",
                               "http://allowed.test/stream"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=ENV)
    try:
        first = Net.readline_within(stream.stdout, 10)
        assert first.startswith(f"server={ALLOWED}"), first
        assert Net.readline_within(stream.stdout, 5).startswith("tick")
        # A widening keeps it.
        net.policy(CLIENT_IP, "sbx1", ["allowed.test", "cidr.test", "wild.test"], STRICT)
        time.sleep(0.5)
        assert stream.poll() is None
        assert Net.readline_within(stream.stdout, 5).startswith("tick")
        # A narrowing that drops allowed.test cuts it within moments, not after 30 s of stream.
        start = time.monotonic()
        ack = net.request({"op": "set", "source": CLIENT_IP, "sandbox": "sbx1", "allowOut": ["cidr.test"],
                           "denyOut": STRICT})
        assert ack["op"] == "ack"
        stream.wait(timeout=10)
        assert time.monotonic() - start < 5
        assert stream.returncode == 18, stream.stderr.read()  # CURLE_PARTIAL_FILE: cut mid-body
        d = net.decision(lambda e: e["kind"] == "tcp" and e["reason"].startswith("cut:"))
        assert d["verdict"] == "deny" and d["name"] == "allowed.test"
    finally:
        if stream.poll() is None:
            stream.kill()
        stream.wait(timeout=5)


def test_removed_sandbox_and_unknown_sources_are_refused(net):
    net.policy(CLIENT_IP, "sbx1")
    rc, out, err = net.curl(f"http://{DENIED}/")
    assert rc == 0, err
    ack = net.request({"op": "remove", "source": CLIENT_IP})
    assert ack["op"] == "ack"
    rc, out, _ = net.curl(f"http://{DENIED}/")
    assert rc != 0 and out == ""
    assert net.dns("allowed.test")[0] == 5


def test_bad_control_requests_are_answered_with_errors(net):
    for msg in ({"op": "set", "source": "nope", "sandbox": "x"},
                {"op": "set", "source": CLIENT_IP, "sandbox": "x", "allowOut": ["10.0.0.0/33"]},
                {"op": "set", "source": CLIENT_IP, "sandbox": "x", "denyOut": ["example.com"]},
                {"op": "frobnicate"}):
        ack = net.request(msg)
        assert ack["op"] == "error" and ack["message"], ack
    # The proxy is still serving.
    net.policy(CLIENT_IP, "sbx1")
    assert net.curl(f"http://{DENIED}/")[0] == 0


def test_the_proxy_runs_unprivileged_under_seccomp(net):
    pid = net.proxy.pid  # `ip netns exec` execs brig in place
    with open(f"/proc/{pid}/status") as f:
        status = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
    assert status["Uid"].split()[0] == "65534" and status["Gid"].split()[0] == "65534", status["Uid"]
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0
    assert status["Groups"].strip() == ""
    # Every descriptor it holds is close-on-exec.
    for fd in os.listdir(f"/proc/{pid}/fd"):
        if int(fd) <= 2:
            continue  # its standard streams, inherited
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                flags = int(next(line.split()[1] for line in f if line.startswith("flags:")), 8)
        except FileNotFoundError:
            continue  # closed since it was listed (a connection that ended)
        assert flags & 0o2000000, f"fd {fd} of brig egress is not CLOEXEC"


# ---- positive cases ----------------------------------------------------------------------------

def test_allowed_domain_works_end_to_end(net):
    net.policy(CLIENT_IP, "sbx1", ["allowed.test"], STRICT)
    assert net.dns("allowed.test") == (0, [ALLOWED])
    assert net.dns("allowed.test", tcp=True) == (0, [ALLOWED])
    assert net.dns("ALLOWED.test.".rstrip(".")) == (0, [ALLOWED])
    rc, out, err = net.curl("https://allowed.test/x")
    assert rc == 0, err
    assert out.startswith(f"server={ALLOWED} host=allowed.test tls=1 path=/x"), out
    d = net.decision(lambda e: e["kind"] == "tcp")
    assert d["verdict"] == "allow" and d["reason"].startswith("allowOut allowed.test; dialled by name")
    rc, out, err = net.curl("http://allowed.test/y")
    assert rc == 0 and out.startswith(f"server={ALLOWED} host=allowed.test tls=0 path=/y"), err


def test_wildcard_domain(net):
    net.policy(CLIENT_IP, "sbx1", ["*.wild.test"], STRICT)
    rc, out, err = net.curl("https://a.wild.test/")
    assert rc == 0 and out.startswith(f"server={WILD} host=a.wild.test tls=1"), err
    # (the test certificate's *.wild.test covers one label: -k, the body says who answered)
    rc, out, err = net.curl("https://deep.er.wild.test/", "-k")
    assert rc == 0 and out.startswith(f"server={WILD}"), err
    # The apex is not below itself (E2B's matchDomain).
    assert net.dns("wild.test") == (3, [])
    rc, out, _ = net.curl("https://wild.test/", "--resolve", f"wild.test:443:{WILD}")
    assert rc != 0 and out == ""


def test_cidr_allow(net):
    net.policy(CLIENT_IP, "sbx1", [CIDR], STRICT)
    rc, out, err = net.curl(f"http://{CIDR}/")
    assert rc == 0 and out.startswith(f"server={CIDR}"), err
    d = net.decision(lambda e: e["kind"] == "tcp")
    assert d["verdict"] == "allow" and d["reason"] == f"allowOut {CIDR}" and d["dest"] == f"{CIDR}:80"
    rc, out, _ = net.curl(f"http://{DENIED}/")
    assert rc != 0 and out == ""
    # Without domains there is no strict DNS: names resolve, and only addresses decide.
    assert net.dns("cidr.test") == (0, [CIDR])
    rc, out, err = net.curl("https://cidr.test/")
    assert rc == 0 and out.startswith(f"server={CIDR} host=cidr.test tls=1"), err


def test_default_policy_and_sandboxes_are_separate(net):
    net.policy(CLIENT_IP, "sbx1", ["allowed.test"], STRICT)
    net.policy(CLIENT2_IP, "sbx2")
    rc, out, err = net.curl("https://denied.test/", ns=CLI2)
    assert rc == 0 and out.startswith(f"server={DENIED} host=denied.test tls=1"), err
    d = net.decision(lambda e: e["kind"] == "tcp")
    assert d["sandbox"] == "sbx2" and d["verdict"] == "allow"
    rc, out, _ = net.curl("https://denied.test/", "--resolve", f"denied.test:443:{DENIED}")
    assert rc != 0 and out == ""
    # Bytes both ways: a 4 MiB upload and its answer through the relay.
    blob = os.path.join(net.tmp, "blob")
    with open(blob, "wb") as f:
        f.write(os.urandom(4 << 20))
    rc, out, err = net.curl(f"http://{DENIED}/up", "--data-binary", f"@{blob}", "-H", "Expect:", ns=CLI2)
    assert rc == 0 and out.startswith(f"server={DENIED} got={4 << 20}"), (out, err)
    assert net.proxy.poll() is None


if __name__ == "__main__":
    if os.geteuid() != 0 or not all(shutil.which(t) for t in ("ip", "nft", "curl", "openssl")):
        print("egress_test: needs root, ip, nft, curl and openssl; skipped")
        sys.exit(77)
    if len(sys.argv) > 1:
        BRIG = os.environ["BRIG_BIN"] = sys.argv[1]
    sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", __file__] + sys.argv[2:]))
