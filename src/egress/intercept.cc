#include "egress/intercept.h"

#include <openssl/ssl.h>

#include <boost/asio/append.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include <cctype>

#include "egress/policy.h"

namespace brig::egress {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

constexpr size_t kChunk = 16 * 1024;  // body bytes per read: what one connection buffers

// A socket the caller owns, whose first reads return bytes already taken from it (the peeked
// ClientHello), then what the socket has. The next layer of an ssl::stream.
class Replayed {
 public:
  using executor_type = tcp::socket::executor_type;
  using lowest_layer_type = tcp::socket::lowest_layer_type;

  Replayed(tcp::socket& s, std::vector<uint8_t> first) : s_(&s), first_(std::move(first)) {}
  executor_type get_executor() { return s_->get_executor(); }
  lowest_layer_type& lowest_layer() { return s_->lowest_layer(); }
  const lowest_layer_type& lowest_layer() const { return s_->lowest_layer(); }

  template <class Buffers, class Token>
  auto async_read_some(const Buffers& buffers, Token&& token) {
    if (used_ < first_.size()) {
      const size_t n = asio::buffer_copy(buffers, asio::buffer(first_.data() + used_, first_.size() - used_));
      used_ += n;
      if (used_ == first_.size()) std::vector<uint8_t>().swap(first_), used_ = 0;
      return asio::async_initiate<Token, void(error_code, size_t)>(
          [](auto handler, executor_type ex, size_t n) { asio::post(ex, asio::append(std::move(handler), error_code(), n)); },
          token, get_executor(), n);
    }
    return s_->async_read_some(buffers, std::forward<Token>(token));
  }
  template <class Buffers, class Token>
  auto async_write_some(const Buffers& buffers, Token&& token) {
    return s_->async_write_some(buffers, std::forward<Token>(token));
  }

 private:
  tcp::socket* s_;
  std::vector<uint8_t> first_;
  size_t used_ = 0;
};

using Tls = asio::ssl::stream<Replayed>;

struct Session {
  Session(Intercept&& in)
      : down(Replayed(in.client, std::move(in.hello)), *in.server),
        up(Replayed(in.upstream, {}), in.client_ctx),
        name(std::move(in.name)),
        server(std::move(in.server)),
        rule(std::move(in.rule)),
        header_bytes(in.header_bytes) {}
  Tls down;  // the sandbox's side: brig egress is the server
  Tls up;    // the upstream's side: brig egress is the client
  std::string name;
  std::shared_ptr<asio::ssl::context> server;
  std::function<std::optional<HeaderRule>()> rule;
  size_t header_bytes;
  beast::flat_buffer down_buf, up_buf;
};

[[noreturn]] void fail(error_code ec, const char* where) { throw boost::system::system_error(ec, where); }

// One message (its head already read into `p`) from `in` to `out`, the body in kChunk pieces:
// Beast's buffer_body relay, with the parser's framing kept (chunked stays chunked).
template <bool isRequest, class In, class Out>
asio::awaitable<void> relay(http::parser<isRequest, http::buffer_body>& p, In& in, beast::flat_buffer& buf, Out& out) {
  http::serializer<isRequest, http::buffer_body> sr{p.get()};
  std::vector<char> chunk(kChunk);
  do {
    if (!p.is_done()) {
      p.get().body().data = chunk.data();
      p.get().body().size = chunk.size();
      error_code ec;
      co_await http::async_read(in, buf, p, asio::redirect_error(asio::use_awaitable, ec));
      if (ec == http::error::need_buffer) ec = {};
      // A body that ends with the connection, from a server that sends no close_notify.
      if (ec == asio::ssl::error::stream_truncated && p.need_eof()) p.put_eof(ec);
      if (ec) fail(ec, "reading a body");
      p.get().body().size = chunk.size() - p.get().body().size;
      p.get().body().data = chunk.data();
      p.get().body().more = !p.is_done();
    } else {  // the whole message is read: what is left to write is its head (or its last chunk)
      p.get().body().data = nullptr;
      p.get().body().size = 0;
      p.get().body().more = false;
    }
    error_code ec;
    co_await http::async_write(out, sr, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == http::error::need_buffer) ec = {};
    if (ec) fail(ec, "writing a message");
  } while (!p.is_done() && !sr.is_done());
}

// Answers the sandbox with `status` and a line of text, and ends the exchange.
asio::awaitable<void> refuse(Session& s, http::status status, std::string text) {
  http::response<http::string_body> r{status, 11};
  r.set(http::field::content_type, "text/plain; charset=utf-8");
  r.set(http::field::server, "brig-egress");
  r.body() = "brig egress: " + std::move(text) + "\n";
  r.keep_alive(false);
  r.prepare_payload();
  error_code ec;
  co_await http::async_write(s.down, r, asio::redirect_error(asio::use_awaitable, ec));
}

// After a 101: bytes both ways until either side ends.
asio::awaitable<void> pump(Tls& from, beast::flat_buffer& left, Tls& to) {
  if (left.size()) {
    co_await asio::async_write(to, left.data(), asio::use_awaitable);
    left.consume(left.size());
  }
  std::vector<char> chunk(kChunk);
  for (;;) {
    size_t n = co_await from.async_read_some(asio::buffer(chunk), asio::use_awaitable);
    co_await asio::async_write(to, asio::buffer(chunk.data(), n), asio::use_awaitable);
  }
}

bool ended(const error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::ssl::error::stream_truncated;
}

asio::awaitable<void> run(Session& s) {
  co_await s.down.async_handshake(asio::ssl::stream_base::server, asio::use_awaitable);
  SSL* u = s.up.native_handle();
  static const unsigned char kHttp11[] = "\x08http/1.1";
  if (!SSL_set_tlsext_host_name(u, s.name.c_str()) || !SSL_set1_host(u, s.name.c_str()) ||
      SSL_set_alpn_protos(u, kHttp11, sizeof kHttp11 - 1) != 0)
    throw std::runtime_error("setting up the upstream TLS");
  error_code ec, upstream_ec;
  co_await s.up.async_handshake(asio::ssl::stream_base::client, asio::redirect_error(asio::use_awaitable, upstream_ec));
  for (;;) {
    http::request_parser<http::buffer_body> req;
    req.header_limit(static_cast<uint32_t>(s.header_bytes));
    req.body_limit(boost::none);  // streamed, never held
    co_await http::async_read_header(s.down, s.down_buf, req, asio::redirect_error(asio::use_awaitable, ec));
    if (ended(ec)) co_return;
    if (ec) {
      co_await refuse(s, http::status::bad_request, "a request brig egress cannot read: " + ec.message());
      fail(ec, "reading a request");
    }
    if (upstream_ec) {  // answered once the request is read, so the sandbox sees the answer, not a reset
      co_await refuse(s, http::status::bad_gateway, "TLS with " + s.name + " failed: " + upstream_ec.message());
      fail(upstream_ec, "upstream TLS handshake");
    }
    auto& head = req.get();
    const std::string host = host_name_of(head[http::field::host]);
    if (host != s.name) {
      co_await refuse(s, http::status::misdirected_request,
                      "the request's Host (" + host.substr(0, 253) + ") is not the TLS server name (" + s.name + ")");
      co_return;
    }
    if (auto rule = s.rule()) {
      if (!rule->broken.empty()) {
        co_await refuse(s, http::status::bad_gateway, rule->broken);
        co_return;
      }
      for (const auto& [name, value] : rule->headers) head.set(name, value);
    }
    const bool head_request = head.method() == http::verb::head;
    co_await relay(req, s.down, s.down_buf, s.up);
    bool keep_alive = false;
    for (;;) {
      http::response_parser<http::buffer_body> res;
      res.header_limit(static_cast<uint32_t>(s.header_bytes));
      res.body_limit(boost::none);
      if (head_request) res.skip(true);
      co_await http::async_read_header(s.up, s.up_buf, res, asio::use_awaitable);
      const unsigned status = res.get().result_int();
      co_await relay(res, s.up, s.up_buf, s.down);
      if (status == 101) {
        using namespace asio::experimental::awaitable_operators;
        co_await (pump(s.down, s.down_buf, s.up) || pump(s.up, s.up_buf, s.down));
        co_return;
      }
      if (status >= 200) {
        keep_alive = res.keep_alive();
        break;
      }
    }
    if (!keep_alive || !req.keep_alive()) break;
  }
  co_await s.down.async_shutdown(asio::redirect_error(asio::use_awaitable, ec));
}

}  // namespace

const HeaderRule* match_rule(const std::vector<HeaderRule>& rules, std::string_view name) {
  const HeaderRule* best = nullptr;
  for (const auto& r : rules) {
    if (r.domain == name) return &r;
    if (r.domain.starts_with("*.") && domain_matches(r.domain, name) && (!best || r.domain.size() > best->domain.size()))
      best = &r;
  }
  return best;
}

std::string host_name_of(std::string_view host) {
  if (auto colon = host.rfind(':'); colon != std::string_view::npos && host.find(']') == std::string_view::npos)
    host = host.substr(0, colon);
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  std::string out(host);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

void intercept(asio::io_context& io, Intercept in, std::function<void(std::string)> done) {
  auto s = std::make_shared<Session>(std::move(in));
  asio::co_spawn(io, run(*s), [s, done = std::move(done)](std::exception_ptr e) {
    std::string why;
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        why = x.what();
      }
    }
    done(why);
  });
}

}  // namespace brig::egress
