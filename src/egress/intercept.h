// A TLS connection to the domain of a header rule (network.rules), read and changed in brig
// egress: the only connections whose bytes the proxy does more than peek at.
//
//   sandbox --TLS (brig's leaf for the name)--> intercept --TLS (verified as the name)--> upstream
//
// The sandbox's ClientHello, already read by the peek, is replayed into the server side. ALPN is
// http/1.1 on both sides. Then, request by request (HTTP/1.1 with keep-alive, bodies streamed
// through a bounded buffer, never held whole):
//   - a request whose Host is not the TLS server name is answered 421 and the connection ends
//     (a secret goes only where the name it was meant for was verified);
//   - the rule as it is now (the policy may have changed) sets its headers, replacing any of the
//     same name; a broken rule (a secret that is gone) is answered 502 with why;
//   - the response, and any interim 1xx before it, go back as they came; a 101 turns the
//     connection into a plain relay of bytes.
// No byte of a header or body is logged.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "egress/control.h"
#include "egress/tls.h"

namespace brig::egress {

// The rule for `name` among `rules`: an exact domain first, then the longest "*.suffix" that
// matches (E2B: wildcards match subdomains at any depth, never the apex); null: none.
const HeaderRule* match_rule(const std::vector<HeaderRule>& rules, std::string_view name);

// The Host header's name: lower case, without a port or a trailing dot.
std::string host_name_of(std::string_view host);

struct Intercept {
  boost::asio::ip::tcp::socket& client;    // the sandbox's connection (owned by the caller)
  std::vector<uint8_t> hello;              // bytes already read from it: its ClientHello
  boost::asio::ip::tcp::socket& upstream;  // connected to an address of `name` (owned by the caller)
  std::string name;                        // the TLS server name, normalized
  std::shared_ptr<boost::asio::ssl::context> server;  // Minter::server(name)
  boost::asio::ssl::context& client_ctx;              // Minter::client()
  std::function<std::optional<HeaderRule>()> rule;    // the rule for `name` now; nullopt: none
  size_t header_bytes = 64 * 1024;                    // a request's or response's head, at most
};

// Runs the connection on `io` until either side ends, the caller closes one of the sockets, or
// something fails; then calls `done` once, with "" or a short reason (no payload in it).
void intercept(boost::asio::io_context& io, Intercept in, std::function<void(std::string)> done);

}  // namespace brig::egress
