// Reading a connection's first bytes (src/egress/peek.h): real ClientHellos made by OpenSSL's
// client (TLS 1.2 and 1.3, with and without SNI), HTTP/1.x heads, and hostile input: every
// truncation, oversized and malformed hellos and heads, protocols that are neither.
#include <gtest/gtest.h>

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <string>
#include <vector>

#include "egress/peek.h"

namespace brig::egress {
namespace {

using Bytes = std::vector<uint8_t>;

// The ClientHello OpenSSL's client sends for `sni` (none if empty).
Bytes client_hello(const std::string& sni, int max_version = TLS1_3_VERSION) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_max_proto_version(ctx, max_version);
  SSL* ssl = SSL_new(ctx);
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl, rbio, wbio);
  if (!sni.empty()) SSL_set_tlsext_host_name(ssl, sni.c_str());
  SSL_set_connect_state(ssl);
  (void)SSL_do_handshake(ssl);
  char* data = nullptr;
  long n = BIO_get_mem_data(wbio, &data);
  Bytes out(data, data + n);
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  return out;
}

Bytes bytes(std::string_view s) { return Bytes(s.begin(), s.end()); }

Peek run(const Bytes& b, size_t limit = 16384) { return peek(b, limit); }

TEST(EgressPeek, TlsServerName) {
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    Peek p = run(client_hello("API.Example.com", version));
    EXPECT_EQ(p.state, Peek::State::done);
    EXPECT_EQ(p.protocol, Peek::Protocol::tls);
    EXPECT_EQ(p.name, "api.example.com");
  }
}

TEST(EgressPeek, TlsWithoutServerName) {
  Peek p = run(client_hello(""));
  EXPECT_EQ(p.state, Peek::State::done);
  EXPECT_EQ(p.protocol, Peek::Protocol::tls);
  EXPECT_EQ(p.name, "");
  EXPECT_EQ(p.note, "no server_name");
}

TEST(EgressPeek, TlsServerNameThatIsAnAddressIsNoName) {
  Peek p = run(client_hello("1.2.3.4"));
  EXPECT_EQ(p.state, Peek::State::done);
  EXPECT_EQ(p.name, "");
}

TEST(EgressPeek, EveryTruncatedClientHelloNeedsMore) {
  Bytes hello = client_hello("example.com");
  ASSERT_GT(hello.size(), 100u);
  for (size_t n = 1; n < hello.size(); ++n) {
    Peek p = run(Bytes(hello.begin(), hello.begin() + n));
    ASSERT_EQ(p.state, Peek::State::need_more) << "at " << n << " of " << hello.size();
    ASSERT_EQ(p.name, "");
  }
  // And whole, with bytes after it (the client's next flight), it is done.
  Bytes more = hello;
  more.insert(more.end(), 50, 0x17);
  EXPECT_EQ(run(more).name, "example.com");
}

TEST(EgressPeek, ClientHelloSplitOverRecords) {
  // The same handshake message in two TLS records (legal, and used to dodge naive parsers).
  Bytes hello = client_hello("split.example.com");
  size_t body = hello.size() - 5;
  size_t first = body / 2;
  Bytes split;
  auto record = [&](size_t off, size_t len) {
    split.insert(split.end(), {0x16, hello[1], hello[2], static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len)});
    split.insert(split.end(), hello.begin() + 5 + off, hello.begin() + 5 + off + len);
  };
  record(0, first);
  record(first, body - first);
  EXPECT_EQ(run(split).name, "split.example.com");
}

TEST(EgressPeek, ClientHelloLargerThanTheLimit) {
  Bytes hello = client_hello("example.com");
  Peek p = run(Bytes(hello.begin(), hello.begin() + 100), 100);
  EXPECT_EQ(p.state, Peek::State::done);
  EXPECT_EQ(p.name, "");
  EXPECT_EQ(p.note, "ClientHello too large");
  // A record header announcing 16 KiB that never comes: need more until the limit, then done.
  Bytes huge = {0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x3f, 0xfc};
  EXPECT_EQ(run(huge).state, Peek::State::need_more);
  huge.resize(1024, 0x41);
  EXPECT_EQ(run(huge, 1024).state, Peek::State::done);
}

TEST(EgressPeek, MalformedClientHellos) {
  Bytes hello = client_hello("example.com");
  // Garbage after a handshake record header.
  Bytes garbage = {0x16, 0x03, 0x01, 0x00, 0x10};
  garbage.resize(5 + 16, 0xff);
  EXPECT_EQ(run(garbage).state, Peek::State::done);
  EXPECT_EQ(run(garbage).name, "");
  // A wrong record version byte.
  Bytes v = hello;
  v[1] = 0x02;
  EXPECT_EQ(run(v).state, Peek::State::done);
  EXPECT_EQ(run(v).protocol, Peek::Protocol::other);
  // Every single-byte corruption of the hello: never a crash, never a name other than the real one.
  for (size_t i = 5; i < hello.size(); ++i) {
    Bytes c = hello;
    c[i] ^= 0xff;
    Peek p = run(c);
    ASSERT_TRUE(p.name.empty() || p.name == "example.com") << "at " << i << ": " << p.name;
  }
  // The server_name extension's lengths lying: find the name in the hello and break the list length.
  std::string s(hello.begin(), hello.end());
  auto at = s.find("example.com");
  ASSERT_NE(at, std::string::npos);
  Bytes lie = hello;
  lie[at - 5] ^= 0x01;  // the server_name list length (2 bytes before type and name length)
  Peek p = run(lie);
  EXPECT_EQ(p.state, Peek::State::done);
  EXPECT_EQ(p.name, "");
  // A name with a byte no host name has.
  Bytes bad = hello;
  bad[at + 3] = ' ';
  p = run(bad);
  EXPECT_EQ(p.name, "");
  EXPECT_EQ(p.note, "server_name is not a host name");
}

TEST(EgressPeek, HttpHost) {
  Peek p = run(bytes("GET /x HTTP/1.1\r\nHost: Example.COM:8080\r\nUser-Agent: t\r\n\r\n"));
  EXPECT_EQ(p.state, Peek::State::done);
  EXPECT_EQ(p.protocol, Peek::Protocol::http);
  EXPECT_EQ(p.name, "example.com");
  EXPECT_EQ(run(bytes("POST / HTTP/1.0\r\nHost: a.b.\r\nContent-Length: 5\r\n\r\nhello")).name, "a.b");
  // Absolute form and CONNECT: the target must agree with Host.
  EXPECT_EQ(run(bytes("GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")).name, "example.com");
  EXPECT_EQ(run(bytes("GET http://evil.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n")).name, "");
  EXPECT_EQ(run(bytes("CONNECT evil.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n")).name, "");
  EXPECT_EQ(run(bytes("CONNECT a.com:443 HTTP/1.1\r\nHost: a.com:443\r\n\r\n")).name, "a.com");
  EXPECT_EQ(run(bytes("CONNECT a.com:443 HTTP/1.1\r\n\r\n")).name, "a.com");
}

TEST(EgressPeek, HttpWithoutAUsableHost) {
  EXPECT_EQ(run(bytes("GET / HTTP/1.0\r\n\r\n")).note, "no Host");
  EXPECT_EQ(run(bytes("GET / HTTP/1.1\r\nHost: 1.2.3.4\r\n\r\n")).note, "Host is an IP address");
  EXPECT_EQ(run(bytes("GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n")).note, "Host is an IP address");
  EXPECT_EQ(run(bytes("GET / HTTP/1.1\r\nHost: a.com\r\nHost: b.com\r\n\r\n")).note, "more than one Host");
  EXPECT_EQ(run(bytes("GET / HTTP/1.1\r\nHost: a b.com\r\n\r\n")).name, "");
  EXPECT_EQ(run(bytes("GET / HTTP/1.1\r\nHost: a.com\r\nBad Header\r\n\r\n")).note, "malformed request head");
  EXPECT_EQ(run(bytes("GET / HTTP/1.1\r\nHost : a.com\r\n\r\n")).name, "");
}

TEST(EgressPeek, HttpTruncatedAndOversized) {
  std::string head = "GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
  for (size_t n = 1; n < head.size(); ++n) {
    Peek p = run(bytes(head.substr(0, n)));
    ASSERT_EQ(p.state, Peek::State::need_more) << "at " << n;
  }
  EXPECT_EQ(run(bytes(head)).name, "example.com");
  std::string big = "GET / HTTP/1.1\r\nHost: example.com\r\nX: " + std::string(2000, 'a') + "\r\n\r\n";
  Peek p = run(bytes(big), 1024);
  EXPECT_EQ(p.state, Peek::State::done);
  EXPECT_EQ(p.name, "");
  EXPECT_EQ(p.note, "request head too large");
  // A request line that never ends.
  p = run(bytes("GET /" + std::string(1100, 'a')), 1024);
  EXPECT_EQ(p.state, Peek::State::done);
  EXPECT_EQ(p.name, "");
}

TEST(EgressPeek, OtherProtocolsAreDecidedAtOnce) {
  // SSH's banner is a line that is not a request line: no wait for a blank line.
  Peek p = run(bytes("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"));
  EXPECT_EQ(p.state, Peek::State::done);
  EXPECT_EQ(p.protocol, Peek::Protocol::other);
  EXPECT_EQ(run(Bytes{0x00, 0x01, 0x02}).protocol, Peek::Protocol::other);
  EXPECT_EQ(run(bytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")).protocol, Peek::Protocol::other);
  EXPECT_EQ(run(bytes("GET / HTTP/1.1 extra\r\n")).protocol, Peek::Protocol::other);
  EXPECT_EQ(run(bytes(std::string(40, 'A'))).protocol, Peek::Protocol::other);
  EXPECT_EQ(run(bytes("GET")).state, Peek::State::need_more);  // could still be a request
  EXPECT_EQ(run({}).state, Peek::State::need_more);
}

}  // namespace
}  // namespace brig::egress
