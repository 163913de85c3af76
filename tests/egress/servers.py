#!/usr/bin/env python3
"""The tiny internet of the egress tests, run inside its own network namespace: HTTP on port 80
and HTTPS on port 443 of every address (each answer says which address served it and which Host
it was asked for), /stream (a line every 100 ms for 30 s, announced longer than that), and an authoritative DNS server for
the test names (UDP and TCP 53 on 203.0.113.53). Standard library only. Runs until stdin closes.

    servers.py CERT KEY
"""
import http.server
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time

# name -> A records; names under a "*." entry match it; anything else is NXDOMAIN.
ZONE = {
    "allowed.test": ["203.0.113.10"],
    "*.wild.test": ["203.0.113.11"],
    "wild.test": ["203.0.113.11"],
    "cidr.test": ["203.0.113.12"],
    "denied.test": ["198.51.100.10"],
    "rebind.test": ["10.1.2.3"],
    "loop.test": ["127.0.0.1"],
    "meta.test": ["169.254.169.254"],
    "mixed.test": ["10.99.0.10", "203.0.113.10"],
    "private.test": ["10.99.0.10"],
}


def lookup(name):
    name = name.lower().rstrip(".")
    if name in ZONE:
        return ZONE[name]
    parts = name.split(".")
    for i in range(1, len(parts)):
        wild = "*." + ".".join(parts[i:])
        if wild in ZONE:
            return ZONE[wild]
    return None


def dns_answer(query):
    if len(query) < 12:
        return None
    qid, flags, qd = struct.unpack(">HHH", query[:6])
    if qd != 1:
        return None
    i, labels = 12, []
    while i < len(query) and query[i] != 0:
        n = query[i]
        if n & 0xC0 or i + 1 + n > len(query):
            return None
        labels.append(query[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    i += 1
    if i + 4 > len(query):
        return None
    qtype, qclass = struct.unpack(">HH", query[i:i + 4])
    question = query[12:i + 4]
    addrs = lookup(".".join(labels))
    rcode = 3 if addrs is None else 0
    answers = b""
    count = 0
    if addrs and qtype == 1:
        for a in addrs:
            answers += b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + socket.inet_aton(a)
            count += 1
    header = struct.pack(">HHHHHH", qid, 0x8400 | (flags & 0x0100) | rcode, 1, count, 0, 0)
    return header + question + answers


class Udp(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        answer = dns_answer(data)
        if answer:
            sock.sendto(answer, self.client_address)


class Tcp(socketserver.BaseRequestHandler):
    def handle(self):
        head = self.request.recv(2)
        if len(head) < 2:
            return
        n = struct.unpack(">H", head)[0]
        data = b""
        while len(data) < n:
            chunk = self.request.recv(n - len(data))
            if not chunk:
                return
            data += chunk
        answer = dns_answer(data)
        if answer:
            self.request.sendall(struct.pack(">H", len(answer)) + answer)


class Web(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def do_GET(self):
        local = self.connection.getsockname()[0]
        tls = isinstance(self.connection, ssl.SSLSocket)
        body = f"server={local} host={self.headers.get('Host', '')} tls={int(tls)} path={self.path}\n"
        if self.path.startswith("/zero/"):  # /zero/N: N zero bytes (throughput)
            n = min(int(self.path[6:]), 1 << 31)
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            block = bytes(1 << 16)
            while n > 0:
                self.wfile.write(block[:min(n, len(block))])
                n -= min(n, len(block))
            return
        if self.path == "/stream":
            # A length the stream never reaches: a client cut short knows it was.
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            self.wfile.write(body.encode())
            for n in range(300):
                try:
                    self.wfile.write(f"tick {n}\n".encode())
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.1)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())


    def do_POST(self):
        left = int(self.headers.get("Content-Length", "0"))
        got = 0
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                break
            got += len(chunk)
            left -= len(chunk)
        local = self.connection.getsockname()[0]
        body = f"server={local} got={got}\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    cert, key = sys.argv[1], sys.argv[2]
    servers = [
        socketserver.ThreadingUDPServer(("203.0.113.53", 53), Udp),
        socketserver.ThreadingTCPServer(("203.0.113.53", 53), Tcp),
        Server(("0.0.0.0", 80), Web),
    ]
    https = Server(("0.0.0.0", 443), Web)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    https.socket = ctx.wrap_socket(https.socket, server_side=True)
    servers.append(https)
    for s in servers:
        s.daemon_threads = True
        threading.Thread(target=s.serve_forever, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
