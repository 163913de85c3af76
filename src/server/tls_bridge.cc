#include "server/tls_bridge.h"

#include <sys/socket.h>

#include <array>
#include <future>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace brig::server {
namespace {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

constexpr size_t kChunk = 16 * 1024;  // one TLS record's worth each way

struct Bridge {
  Bridge(asio::io_context& io, std::shared_ptr<ssl::context> c, const TlsBridgeOptions& o)
      : ctx(std::move(c)), tls(io, *ctx), plain(io), timer(io), options(o) {}
  std::shared_ptr<ssl::context> ctx;  // outlives `tls`
  ssl::stream<tcp::socket> tls;       // to the sandbox's port
  asio::local::stream_protocol::socket plain;  // the bridge's end of the socketpair
  asio::steady_timer timer;  // the handshake's deadline, then the idle one
  TlsBridgeOptions options;
  Clock::time_point last = Clock::now();  // the last byte either way
  bool handshaking = true;
  bool timed_out = false;  // the handshake's deadline passed
  bool ended = false;

  void end() {
    if (ended) return;
    ended = true;
    error_code ignored;
    timer.cancel();
    tls.next_layer().close(ignored);
    plain.close(ignored);
  }
};

// Bytes from one side to the other until `from` ends. The tunnel's end (`half_close`) is passed
// on to the port as a TCP half-close, as the tunnel does for a plain port, and the port may
// still answer; the port's end, or any error, ends the bridge.
template <class From, class To>
asio::awaitable<void> pump(std::shared_ptr<Bridge> b, From& from, To& to, bool half_close) {
  std::array<char, kChunk> buf;
  for (;;) {
    error_code ec;
    size_t n = co_await from.async_read_some(asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
    if (b->ended) co_return;
    if (ec == asio::error::eof && half_close) {
      error_code ignored;
      b->tls.next_layer().shutdown(tcp::socket::shutdown_send, ignored);
      co_return;
    }
    if (ec) co_return b->end();
    b->last = Clock::now();
    co_await asio::async_write(to, asio::buffer(buf.data(), n), asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return b->end();
  }
}

asio::awaitable<void> idle(std::shared_ptr<Bridge> b) {
  while (!b->ended) {
    auto due = b->last + b->options.idle_timeout;
    if (Clock::now() >= due) co_return b->end();
    b->timer.expires_at(due);
    error_code ec;
    co_await b->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
}

asio::awaitable<void> run(std::shared_ptr<Bridge> b, std::shared_ptr<std::promise<Result<>>> handshaken) {
  b->timer.expires_after(b->options.handshake_timeout);
  b->timer.async_wait([b](error_code ec) {
    if (ec || !b->handshaking) return;
    b->timed_out = true;
    error_code ignored;
    b->tls.next_layer().cancel(ignored);
  });
  error_code ec;
  co_await b->tls.async_handshake(ssl::stream_base::client, asio::redirect_error(asio::use_awaitable, ec));
  b->handshaking = false;
  b->timer.cancel();
  const bool timed_out = b->timed_out;
  if (ec || timed_out) {
    std::string why = timed_out ? "no handshake within " + std::to_string(b->options.handshake_timeout.count()) + " ms"
                      : ec == asio::error::eof || ec == ssl::error::stream_truncated ? "the server closed the connection"
                                                                                     : ec.message();
    b->end();
    handshaken->set_value(Error::make(timed_out ? errc::timed_out : errc::protocol, why));
    co_return;
  }
  handshaken->set_value(ok());
  b->last = Clock::now();
  using namespace asio::experimental::awaitable_operators;
  co_await (pump(b, b->plain, b->tls, true) && pump(b, b->tls, b->plain, false) && idle(b));
}

}  // namespace

std::shared_ptr<ssl::context> tls_bridge_context() {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  ctx->set_verify_mode(ssl::verify_none);
  static const unsigned char kAlpn[] = "\x08http/1.1";
  SSL_CTX_set_alpn_protos(ctx->native_handle(), kAlpn, sizeof kAlpn - 1);
  return ctx;
}

Result<Fd> open_tls_bridge(EventLoop& loop, std::shared_ptr<ssl::context> ctx, Fd port, const TlsBridgeOptions& options) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return Error::from_errno(errno, "socketpair");
  Fd ours(pair[0]), theirs(pair[1]);
  auto b = std::make_shared<Bridge>(loop.io(), std::move(ctx), options);
  error_code ec;
  b->tls.next_layer().assign(tcp::v4(), port.get(), ec);  // the family does not matter to a connected socket
  if (ec) return Error::make(errc::protocol, "take over the port's socket: " + ec.message());
  (void)port.release();
  b->plain.assign(asio::local::stream_protocol(), ours.get(), ec);
  if (ec) return Error::make(errc::protocol, "take over the socketpair: " + ec.message());
  (void)ours.release();
  auto handshaken = std::make_shared<std::promise<Result<>>>();
  auto result = handshaken->get_future();
  loop.post([b, handshaken] { asio::co_spawn(b->tls.get_executor(), run(b, handshaken), asio::detached); });
  // The loop always settles the handshake by its deadline; a loop that is stopping may not run
  // it at all.
  if (result.wait_for(options.handshake_timeout + std::chrono::seconds(5)) != std::future_status::ready)
    return Error::make(errc::timed_out, "the event loop did not run the handshake");
  try {
    BRIG_TRY(result.get());
  } catch (const std::future_error&) {  // dropped unrun: the loop is stopping
    return Error::make(errc::unsupported, "the daemon is stopping");
  }
  return theirs;
}

}  // namespace brig::server
