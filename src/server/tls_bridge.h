// The data plane's way to a sandbox port listed in network.httpsPorts (E2B: its proxy
// re-encrypts to those ports and does not verify their certificate):
//
//   client --HTTP--> tunnel (http.cc) --socketpair--> bridge --TLS--> the sandbox's port
//
// The bridge is a TLS client on the event loop. What the tunnel writes into its end of the
// socketpair is encrypted to the port, and what the port sends is decrypted back, so the tunnel
// relays that end like any port's socket: Host masking, one-exchange tunnels, WebSockets and
// the status in the log work unchanged. The client's end of the tunnel ending is passed on as a
// TCP half-close to the port; the port's end (or an error, or idle_timeout without a byte
// either way) ends the bridge.
#pragma once

#include <chrono>
#include <memory>

#include <boost/asio/ssl/context.hpp>

#include "base/event_loop.h"
#include "base/fd.h"
#include "base/result.h"

namespace brig::server {

struct TlsBridgeOptions {
  std::chrono::milliseconds handshake_timeout{10'000};
  std::chrono::milliseconds idle_timeout{620'000};
};

// A client context for bridges: TLS 1.2 or later, HTTP/1.1 offered by ALPN, and no
// verification (the sandbox's certificate is its own, usually self-signed).
std::shared_ptr<boost::asio::ssl::context> tls_bridge_context();

// Makes the TLS handshake on `loop` over `port` (a socket connected to the sandbox's port) and
// returns the bridge's plaintext end. Blocks the calling thread, which must not be the loop's,
// until the handshake has ended; its error says why it failed.
Result<Fd> open_tls_bridge(EventLoop& loop, std::shared_ptr<boost::asio::ssl::context> ctx, Fd port,
                           const TlsBridgeOptions& options);

}  // namespace brig::server
