// Header rules in brig egress (egress/tls.h, egress/intercept.h), in one process on one loop:
// a client that trusts only brig's CA, the interception (its first bytes already read, as the
// peek does), and an upstream HTTPS server with a certificate from another CA that the
// interception verifies. What the upstream receives is the evidence.
#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <fstream>
#include <iterator>

#include "egress/intercept.h"
#include "egress/tls.h"
#include "temp_dir.h"

namespace brig {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

// Two CAs: brig's (the interception's leaves) and the "internet's" (the upstream's certificate,
// minted by a second Minter), each in a directory of its own.
struct Cas {
  test::TempDir dir{"brig-intercept"};
  std::string brig_crt = dir.path + "/brig.crt", brig_key = dir.path + "/brig.key";
  std::string net_crt = dir.path + "/net.crt", net_key = dir.path + "/net.key";
  Cas() {
    EXPECT_TRUE(egress::ensure_ca(brig_crt, brig_key));
    EXPECT_TRUE(egress::ensure_ca(net_crt, net_key));
  }
};

TEST(EgressTls, TheCaIsMadeOnceAndItsKeyIsRootsAlone) {
  test::TempDir dir("brig-ca");
  auto first = egress::ensure_ca(dir.path + "/ca.crt", dir.path + "/ca.key");
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_NE(first->find("-----BEGIN CERTIFICATE-----"), std::string::npos);
  struct stat st;
  ASSERT_EQ(::stat((dir.path + "/ca.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto again = egress::ensure_ca(dir.path + "/ca.crt", dir.path + "/ca.key");
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *first) << "an existing CA is kept";
}

// A TLS client that trusts `ca` only and checks the server's name, against a Minter's leaf.
TEST(EgressTls, ALeafVerifiesForItsNameOnly) {
  Cas cas;
  auto minter = egress::Minter::open(cas.brig_crt, cas.brig_key, cas.net_crt);
  ASSERT_TRUE(minter) << minter.error().message();
  for (const auto& [asked, ok] : {std::pair{std::string("api.rules.test"), true}, {std::string("other.test"), false}}) {
    asio::io_context io;
    tcp::acceptor acc(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    auto server_ctx = (*minter)->server("api.rules.test");
    ASSERT_TRUE(server_ctx);
    ssl::context client_ctx(ssl::context::tls_client);
    client_ctx.load_verify_file(cas.brig_crt);
    client_ctx.set_verify_mode(ssl::verify_peer);
    bool client_ok = false;
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
      auto s = co_await acc.async_accept(asio::use_awaitable);
      ssl::stream<tcp::socket> tls(std::move(s), **server_ctx);
      boost::system::error_code ec;
      co_await tls.async_handshake(ssl::stream_base::server, asio::redirect_error(asio::use_awaitable, ec));
    }, asio::detached);
    asio::co_spawn(io, [&, asked = asked]() -> asio::awaitable<void> {
      ssl::stream<tcp::socket> tls(io, client_ctx);
      co_await tls.next_layer().async_connect(acc.local_endpoint(), asio::use_awaitable);
      SSL_set_tlsext_host_name(tls.native_handle(), asked.c_str());
      SSL_set1_host(tls.native_handle(), asked.c_str());
      boost::system::error_code ec;
      co_await tls.async_handshake(ssl::stream_base::client, asio::redirect_error(asio::use_awaitable, ec));
      client_ok = !ec;
    }, asio::detached);
    io.run_for(std::chrono::seconds(10));
    EXPECT_EQ(client_ok, ok) << asked;
  }
}

TEST(EgressIntercept, RulesMatchExactNamesFirstThenTheLongestWildcard) {
  std::vector<egress::HeaderRule> rules = {{"*.example.com", {}, ""}, {"*.api.example.com", {}, ""}, {"api.example.com", {}, ""}};
  EXPECT_EQ(egress::match_rule(rules, "api.example.com")->domain, "api.example.com");
  EXPECT_EQ(egress::match_rule(rules, "v1.api.example.com")->domain, "*.api.example.com");
  EXPECT_EQ(egress::match_rule(rules, "www.example.com")->domain, "*.example.com");
  EXPECT_EQ(egress::match_rule(rules, "example.com"), nullptr) << "a wildcard never matches its apex";
  EXPECT_EQ(egress::match_rule(rules, "example.org"), nullptr);
  EXPECT_EQ(egress::host_name_of("API.Example.com:443"), "api.example.com");
  EXPECT_EQ(egress::host_name_of("api.example.com."), "api.example.com");
}

// The whole path: client -> interception -> upstream, over loopback, on one loop.
struct Exchange {
  Cas cas;
  std::unique_ptr<egress::Minter> minter;   // brig's: leaves for the client, verifies the upstream
  std::unique_ptr<egress::Minter> net;      // the upstream's certificate
  std::vector<std::string> upstream_saw;    // each request's Authorization header, "-" if none
  std::optional<egress::HeaderRule> rule = egress::HeaderRule{"api.rules.test", {{"Authorization", "Bearer s3cret"}}, ""};

  Exchange() {
    auto m = egress::Minter::open(cas.brig_crt, cas.brig_key, cas.net_crt);
    EXPECT_TRUE(m);
    minter = std::move(*m);
    auto n = egress::Minter::open(cas.net_crt, cas.net_key, cas.net_crt);
    EXPECT_TRUE(n);
    net = std::move(*n);
  }

  // Sends `requests` (raw HTTP/1.1, one after another on one connection, as `sni`) and returns
  // the responses' status codes and bodies, "status body" each.
  std::vector<std::string> run(const std::string& sni, const std::vector<std::string>& requests) {
    asio::io_context io;
    auto any = asio::ip::make_address("127.0.0.1");
    tcp::acceptor front(io, tcp::endpoint(any, 0)), back(io, tcp::endpoint(any, 0));
    tcp::socket client_side(io), upstream_side(io);
    std::vector<std::string> answers;
    auto upstream_ctx = net->server("api.rules.test");
    EXPECT_TRUE(upstream_ctx);
    // The upstream: answers each request with its Authorization header.
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
      ssl::stream<tcp::socket> tls(co_await back.async_accept(asio::use_awaitable), **upstream_ctx);
      co_await tls.async_handshake(ssl::stream_base::server, asio::use_awaitable);
      boost::beast::flat_buffer buf;
      for (;;) {
        http::request<http::string_body> req;
        boost::system::error_code ec;
        co_await http::async_read(tls, buf, req, asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return;
        std::string auth(req[http::field::authorization]);
        upstream_saw.push_back(auth.empty() ? "-" : auth);
        http::response<http::string_body> res{http::status::ok, 11};
        res.body() = "saw " + (auth.empty() ? std::string("-") : auth) + " and " + std::to_string(req.body().size()) + " bytes";
        res.keep_alive(req.keep_alive());
        res.prepare_payload();
        co_await http::async_write(tls, res, asio::use_awaitable);
      }
    }, asio::detached);
    // The client: trusts brig's CA alone.
    ssl::context client_ctx(ssl::context::tls_client);
    client_ctx.load_verify_file(cas.brig_crt);
    client_ctx.set_verify_mode(ssl::verify_peer);
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
      ssl::stream<tcp::socket> tls(io, client_ctx);
      co_await tls.next_layer().async_connect(front.local_endpoint(), asio::use_awaitable);
      SSL_set_tlsext_host_name(tls.native_handle(), sni.c_str());
      SSL_set1_host(tls.native_handle(), sni.c_str());
      co_await tls.async_handshake(ssl::stream_base::client, asio::use_awaitable);
      boost::beast::flat_buffer buf;
      for (const auto& r : requests) {
        co_await asio::async_write(tls, asio::buffer(r), asio::use_awaitable);
        http::response<http::string_body> res;
        boost::system::error_code ec;
        co_await http::async_read(tls, buf, res, asio::redirect_error(asio::use_awaitable, ec));
        if (ec) co_return;
        answers.push_back(std::to_string(res.result_int()) + " " + res.body());
      }
    }, asio::detached);
    // The interception: accepts, reads the ClientHello's first bytes as the peek would, dials.
    std::string why = "not run";
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
      client_side = co_await front.async_accept(asio::use_awaitable);
      std::vector<uint8_t> hello(5);
      co_await asio::async_read(client_side, asio::buffer(hello), asio::use_awaitable);
      co_await upstream_side.async_connect(back.local_endpoint(), asio::use_awaitable);
      auto server = minter->server(sni);
      egress::Intercept in{client_side, std::move(hello), upstream_side, sni, std::move(*server), minter->client(),
                           [this] { return rule; }};
      egress::intercept(io, std::move(in), [&](std::string w) {
        why = w;
        boost::system::error_code ec;
        client_side.close(ec);
        upstream_side.close(ec);
      });
    }, asio::detached);
    io.run_for(std::chrono::seconds(20));
    return answers;
  }
};

std::string get(const std::string& host, const std::string& extra = "") {
  return "GET / HTTP/1.1\r\nHost: " + host + "\r\n" + extra + "\r\n";
}

TEST(EgressIntercept, TheRuleSetsItsHeaderOnEveryRequestOfAConnection) {
  Exchange x;
  std::string body(100000, 'x');  // streamed through, in pieces
  auto answers = x.run("api.rules.test", {get("api.rules.test", "Authorization: Bearer mine\r\n"),
                                           "POST /up HTTP/1.1\r\nHost: api.rules.test:443\r\nContent-Length: " +
                                               std::to_string(body.size()) + "\r\n\r\n" + body,
                                           get("API.rules.test")});
  ASSERT_EQ(answers.size(), 3u);
  EXPECT_EQ(answers[0], "200 saw Bearer s3cret and 0 bytes") << "the rule replaces the sandbox's own header";
  EXPECT_EQ(answers[1], "200 saw Bearer s3cret and 100000 bytes");
  EXPECT_EQ(answers[2], "200 saw Bearer s3cret and 0 bytes");
}

TEST(EgressIntercept, AHostOtherThanTheServerNameIsRefusedAndNothingGoesUpstream) {
  Exchange x;
  auto answers = x.run("api.rules.test", {get("evil.test")});
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_TRUE(answers[0].starts_with("421 ")) << answers[0];
  EXPECT_TRUE(x.upstream_saw.empty());
}

TEST(EgressIntercept, ABrokenRuleIsRefusedAndNoRuleSendsTheRequestAsItCame) {
  Exchange broken;
  broken.rule->broken = "the secret 'gone' of this domain's header rule is not set";
  auto answers = broken.run("api.rules.test", {get("api.rules.test")});
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_TRUE(answers[0].starts_with("502 ")) << answers[0];
  EXPECT_NE(answers[0].find("'gone'"), std::string::npos) << answers[0];
  EXPECT_TRUE(broken.upstream_saw.empty());

  Exchange none;
  none.rule.reset();  // the policy changed under the connection: no rule now
  answers = none.run("api.rules.test", {get("api.rules.test", "Authorization: Bearer mine\r\n")});
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0], "200 saw Bearer mine and 0 bytes");
}

TEST(EgressIntercept, AnUpstreamThatCannotBeVerifiedGetsNothing) {
  Exchange x;
  // The upstream presents a certificate for api.rules.test; the interception verifies it as the
  // client's server name, which is another: the handshake fails, the client gets a 502.
  auto answers = x.run("other.rules.test", {get("other.rules.test")});
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_TRUE(answers[0].starts_with("502 ")) << answers[0];
  EXPECT_TRUE(x.upstream_saw.empty());
}

}  // namespace
}  // namespace brig
