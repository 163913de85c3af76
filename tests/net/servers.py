#!/usr/bin/env python3
"""The services of the test "internet" (tests/net/test-internet.sh), run inside its network
namespace, on every address it has:
  TCP 8080  HTTP: answers "brig-test-internet <the address it was reached at>"
  TCP 7007  echo
  UDP 5353  echo ("pong:" + what came)
  UDP 53    DNS: any A question gets 203.0.113.10 (one answer, TTL 5); anything else REFUSED
  TCP 8443  HTTPS (with $TLS_DIR/server.crt and .key): answers "brig-test-internet-tls HOST
            AUTH" where AUTH is the SHA-256 of the request's Authorization header ("-" if none),
            so a test can check what arrived without the value in any output
UDP sockets are bound to each address (given as arguments), so a reply leaves from the address
the request went to (conntrack on the host matches it to the NATed request).
Stops when stdin closes (the script keeps a pipe to it) or after 1 hour."""
import hashlib
import http.server
import os
import socket
import ssl
import socketserver
import struct
import sys
import threading


class Handler(http.server.BaseHTTPRequestHandler):
    """Answers every GET with one line of text."""

    def line(self):
        raise NotImplementedError

    def do_GET(self):
        body = (self.line() + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Http(Handler):
    def line(self):
        return "brig-test-internet %s" % self.connection.getsockname()[0]


class Https(Handler):
    protocol_version = "HTTP/1.1"

    def line(self):
        auth = self.headers.get("Authorization")
        digest = hashlib.sha256(auth.encode()).hexdigest() if auth is not None else "-"
        return "brig-test-internet-tls %s %s" % (self.headers.get("Host", "-"), digest)


class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(60)
        try:
            while True:
                data = self.request.recv(4096)
                if not data:
                    return
                self.request.sendall(data)
        except OSError:
            return


class Threaded(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = True


class ThreadedHttp(socketserver.ThreadingMixIn, http.server.HTTPServer):
    allow_reuse_address = True
    daemon_threads = True


def udp_echo(addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 5353))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(b"pong:" + data[:64], peer)


def dns(addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 53))
    while True:
        q, peer = s.recvfrom(2048)
        if len(q) < 12:
            continue
        qid, flags, qdcount = struct.unpack("!HHH", q[:6])
        # The question: labels up to the zero byte, then type and class.
        i = 12
        while i < len(q) and q[i] != 0:
            i += 1 + q[i]
        if qdcount != 1 or i + 5 > len(q):
            continue
        question = q[12:i + 5]
        qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
        if qtype == 1:
            header = struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0)
            answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 5, 4) + socket.inet_aton("203.0.113.10")
        else:  # no AAAA or others: an empty NOERROR answer
            header = struct.pack("!HHHHHH", qid, 0x8180, 1, 0, 0, 0)
            answer = b""
        s.sendto(header + question + answer, peer)


def main():
    for addr in sys.argv[1:]:
        for target in (udp_echo, dns):
            threading.Thread(target=target, args=(addr,), daemon=True).start()
    servers = [ThreadedHttp(("0.0.0.0", 8080), Http), Threaded(("0.0.0.0", 7007), Echo)]
    tls = os.environ.get("TLS_DIR")
    if tls:
        https = ThreadedHttp(("0.0.0.0", 8443), Https)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(tls, "server.crt"), os.path.join(tls, "server.key"))
        https.socket = ctx.wrap_socket(https.socket, server_side=True)
        servers.append(https)
    for srv in servers:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    print("ready", flush=True)
    t = threading.Thread(target=sys.stdin.read, daemon=True)
    t.start()
    t.join(3600)


main()
