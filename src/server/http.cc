#include "server/http.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <cstring>
#include <limits>
#include <optional>
#include <nlohmann/json.hpp>

#include "base/util.h"

namespace brig::server {
namespace http = boost::beast::http;
namespace net = boost::asio;

Response Response::json(int status, std::string body) {
  Response r;
  r.status = status;
  r.headers.emplace_back("Content-Type", "application/json");
  r.body = std::move(body);
  return r;
}

Response Response::error(int status, std::string_view message) {
  nlohmann::json j = {{"code", status}, {"message", message}};
  return json(status, j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

Response Response::empty(int status) {
  Response r;
  r.status = status;
  return r;
}

namespace {

// A blocking stream over a connected socket fd, for Beast's sync algorithms, with a timeout on
// every read (poll) and MSG_NOSIGNAL on every write.
class FdStream {
 public:
  using executor_type = net::any_io_executor;
  FdStream(int fd, std::chrono::milliseconds timeout) : fd_(fd), timeout_(timeout) {}
  void set_timeout(std::chrono::milliseconds t) { timeout_ = t; }

  template <class Buffers>
  size_t read_some(const Buffers& buffers, boost::system::error_code& ec) {
    struct pollfd p = {fd_, POLLIN, 0};
    int n;
    do n = ::poll(&p, 1, static_cast<int>(timeout_.count()));
    while (n < 0 && errno == EINTR);
    if (n == 0) {
      ec = net::error::timed_out;
      return 0;
    }
    iovec iov[16];
    int cnt = 0;
    for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers) && cnt < 16; ++it)
      iov[cnt++] = {net::mutable_buffer(*it).data(), net::mutable_buffer(*it).size()};
    ssize_t r;
    do r = ::readv(fd_, iov, cnt);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
      ec = boost::system::error_code(errno, boost::system::system_category());
      return 0;
    }
    if (r == 0) {
      ec = net::error::eof;
      return 0;
    }
    ec = {};
    return static_cast<size_t>(r);
  }
  template <class Buffers>
  size_t read_some(const Buffers& buffers) {
    boost::system::error_code ec;
    size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

  template <class Buffers>
  size_t write_some(const Buffers& buffers, boost::system::error_code& ec) {
    iovec iov[16];
    int cnt = 0;
    for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers) && cnt < 16; ++it)
      iov[cnt++] = {const_cast<void*>(net::const_buffer(*it).data()), net::const_buffer(*it).size()};
    struct msghdr msg = {};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(cnt);
    for (;;) {
      ssize_t r = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
      if (r >= 0) {
        ec = {};
        return static_cast<size_t>(r);
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct pollfd p = {fd_, POLLOUT, 0};
        if (::poll(&p, 1, static_cast<int>(timeout_.count())) > 0) continue;
        ec = net::error::timed_out;
        return 0;
      }
      ec = boost::system::error_code(errno, boost::system::system_category());
      return 0;
    }
  }
  template <class Buffers>
  size_t write_some(const Buffers& buffers) {
    boost::system::error_code ec;
    size_t n = write_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }
  int fd() const { return fd_; }

 private:
  int fd_;
  std::chrono::milliseconds timeout_;
};

class ChunkedStream final : public Stream {
 public:
  ChunkedStream(FdStream& s, unsigned version) : s_(s), version_(version) {}
  bool begin(int status, const std::vector<std::pair<std::string, std::string>>& headers) override {
    if (begun_) return ok_;
    begun_ = true;
    status_ = status;
    http::response<http::empty_body> res{static_cast<http::status>(status), version_};
    for (auto& [k, v] : headers) res.set(k, v);
    // A declared length (a file download) goes as is; anything else is chunked.
    if (auto it = res.find(http::field::content_length); it != res.end()) {
      length_ = std::strtoull(std::string(it->value()).c_str(), nullptr, 10);
    } else {
      res.chunked(true);
    }
    http::response_serializer<http::empty_body> sr{res};
    boost::system::error_code ec;
    http::write_header(s_, sr, ec);
    ok_ = !ec;
    return ok_;
  }
  bool write(std::string_view data) override {
    if (!ok_ || data.empty()) return ok_;
    boost::system::error_code ec;
    if (length_) {
      if (data.size() > *length_ - sent_) return ok_ = false;  // more than declared: a bug
      net::write(s_, net::const_buffer(data.data(), data.size()), ec);
      sent_ += data.size();
    } else {
      net::write(s_, http::make_chunk(net::const_buffer(data.data(), data.size())), ec);
    }
    ok_ = !ec;
    return ok_;
  }
  bool finish() override {
    if (!ok_) return false;
    if (length_) {
      // Fewer bytes than declared cannot be told to the client but by closing the connection.
      ok_ = sent_ == *length_;
      finished_ = true;
      return ok_;
    }
    boost::system::error_code ec;
    net::write(s_, http::make_chunk_last(), ec);
    ok_ = !ec;
    finished_ = true;
    return ok_;
  }
  bool ok() const { return ok_; }
  bool peer_gone() override {
    struct pollfd p = {s_.fd(), POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
    char c;
    return ::recv(s_.fd(), &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
  }
  int status() const { return status_; }
  bool begun() const { return begun_; }
  bool finished() const { return finished_; }

 private:
  FdStream& s_;
  unsigned version_;
  bool begun_ = false, ok_ = true, finished_ = false;
  std::optional<uint64_t> length_;  // the declared Content-Length, if any
  uint64_t sent_ = 0;
  int status_ = 0;
};

// BodyReader over Beast's buffer_body parser: each read fills the caller's buffer directly.
class PulledBody final : public BodyReader {
 public:
  PulledBody(FdStream& s, boost::beast::flat_buffer& buffer, http::request_parser<http::buffer_body>& p)
      : s_(s), buffer_(buffer), p_(p) {}
  Result<size_t> read(char* buf, size_t cap) override {
    while (!p_.is_done()) {
      p_.get().body().data = buf;
      p_.get().body().size = cap;
      boost::system::error_code ec;
      http::read_some(s_, buffer_, p_, ec);
      if (ec == http::error::need_buffer) ec = {};
      if (ec == http::error::body_limit) return Error::make(errc::limit_exceeded, "request body too large");
      if (ec) return Error::make(errc::protocol, "could not read the request body: " + ec.message());
      size_t n = cap - p_.get().body().size;
      if (n) return n;
    }
    return size_t{0};
  }

 private:
  FdStream& s_;
  boost::beast::flat_buffer& buffer_;
  http::request_parser<http::buffer_body>& p_;
};

std::string new_request_id() { return new_sandbox_id().substr(0, 12); }

bool parse_target(Request& req) {
  auto parsed = boost::urls::parse_origin_form(req.target);
  if (!parsed) return false;
  req.path = parsed->path();
  for (auto p : parsed->params()) req.query.emplace(std::string(p.key), std::string(p.value));
  return true;
}

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::listen(const ServerOptions& options, Router router, Logger logger) {
  auto colon = options.listen.rfind(':');
  if (colon == std::string::npos) return Error::make(errc::invalid_argument, "--listen wants HOST:PORT");
  std::string host = options.listen.substr(0, colon);
  int port = std::atoi(options.listen.c_str() + colon + 1);
  if (port <= 0 || port > 65535) return Error::make(errc::invalid_argument, "invalid port in --listen");
  struct sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (host == "localhost") host = "127.0.0.1";
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1)
    return Error::make(errc::invalid_argument, "--listen wants an IPv4 address, got '" + host + "'");
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Error::from_errno(errno, "socket");
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {  // SAFETY: sockaddr_in is a sockaddr
    int e = errno;
    ::close(fd);
    return Error::from_errno(e, "bind(" + options.listen + ")");
  }
  if (::listen(fd, 512) != 0) {
    int e = errno;
    ::close(fd);
    return Error::from_errno(e, "listen");
  }
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);  // SAFETY: as above
  char buf[64];
  ::inet_ntop(AF_INET, &addr.sin_addr, buf, sizeof buf);
  std::string address = std::string(buf) + ":" + std::to_string(ntohs(addr.sin_port));
  return std::unique_ptr<HttpServer>(new HttpServer(fd, address, options, std::move(router), std::move(logger)));
}

HttpServer::HttpServer(int fd, std::string address, ServerOptions options, Router router, Logger logger)
    : listen_fd_(fd), address_(std::move(address)), options_(std::move(options)), router_(std::move(router)),
      logger_(std::move(logger)) {}

HttpServer::~HttpServer() {
  stop(std::chrono::milliseconds(0));
  if (listen_fd_ >= 0) ::close(listen_fd_);
}

void HttpServer::run() {
  while (!stopping_) {
    struct pollfd p = {listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    struct sockaddr_in peer = {};
    socklen_t len = sizeof peer;
    int fd = ::accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);  // SAFETY: sockaddr_in
    if (fd < 0) continue;
    if (active_ >= options_.max_connections) {
      ::close(fd);  // over the bound: refuse rather than queue without limit
      continue;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char buf[64];
    ::inet_ntop(AF_INET, &peer.sin_addr, buf, sizeof buf);
    std::string remote = std::string(buf) + ":" + std::to_string(ntohs(peer.sin_port));
    {
      std::lock_guard lock(mu_);
      connections_.insert(fd);
    }
    ++active_;
    std::thread([this, fd, remote] {
      serve_connection(fd, remote);
      {
        std::lock_guard lock(mu_);
        connections_.erase(fd);
      }
      ::close(fd);
      --active_;
    }).detach();
  }
}

void HttpServer::stop(std::chrono::milliseconds grace) {
  stopping_ = true;
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (active_ > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  {
    std::lock_guard lock(mu_);
    for (int fd : connections_) ::shutdown(fd, SHUT_RDWR);  // wakes readers; streams fail their next write
  }
  // Connection threads use the router (and what it points to): they must be gone before the
  // caller destroys it. Streams notice a dead socket within a poll interval.
  auto hard = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (active_ > 0 && std::chrono::steady_clock::now() < hard)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

void HttpServer::serve_connection(int fd, std::string remote) {
  FdStream stream(fd, options_.idle_timeout);
  boost::beast::flat_buffer buffer;
  for (;;) {
    if (stopping_) return;
    stream.set_timeout(options_.idle_timeout);
    http::request_parser<http::string_body> parser;
    parser.header_limit(64 * 1024);
    // The route decides the real limit once the headers are in; Beast would otherwise refuse a
    // Content-Length above its 1 MiB default while still reading the headers.
    parser.body_limit(std::numeric_limits<std::uint64_t>::max());
    boost::system::error_code ec;
    http::read_header(stream, buffer, parser, ec);
    if (ec) return;  // timeout, EOF, garbage: close quietly
    auto started = std::chrono::steady_clock::now();
    Request req;
    req.remote = remote;
    req.request_id = new_request_id();
    const auto& h = parser.get();
    req.method = std::string(h.method_string());
    req.target = std::string(h.target());
    for (auto& f : h) {
      std::string name(f.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      req.headers[name] = std::string(f.value());
    }
    unsigned version = h.version();
    bool keep_alive = h.keep_alive();
    auto send = [&](const Response& r) {
      http::response<http::string_body> res{static_cast<http::status>(r.status), version};
      for (auto& [k, v] : r.headers) res.set(k, v);
      res.set("X-Request-Id", req.request_id);
      res.body() = r.body;
      res.keep_alive(keep_alive);
      if (r.status == 204 || r.status == 304) res.content_length(boost::none);
      else res.prepare_payload();
      boost::system::error_code wec;
      http::write(stream, res, wec);
      if (logger_) logger_(req, r.status, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count());
      return !wec;
    };
    if (!parse_target(req)) {
      send(Response::error(400, "malformed request target"));
      return;
    }
    Route route;
    try {
      route = router_(req);
    } catch (const std::exception&) {
      send(Response::error(500, "internal error"));
      return;
    }
    if (route.consume) {
      // The handler pulls the body (bounded by the route's limit, each read with the read
      // timeout); what it leaves unread closes the connection.
      stream.set_timeout(options_.read_timeout);
      auto declared = parser.content_length();
      if (declared && *declared > route.body_limit) {
        keep_alive = false;
        send(Response::error(413, "request body larger than " + format_size(route.body_limit)));
        return;
      }
      if (req.header("expect") == "100-continue") {
        static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
        net::write(stream, net::buffer(kContinue, sizeof kContinue - 1), ec);
        if (ec) return;
      }
      http::request_parser<http::buffer_body> body_parser{std::move(parser)};
      body_parser.body_limit(route.body_limit);
      PulledBody body(stream, buffer, body_parser);
      Response res;
      try {
        res = route.consume(req, body);
      } catch (const std::exception&) {
        res = Response::error(500, "internal error");
      }
      if (!body_parser.is_done()) keep_alive = false;
      if (!send(res) || !keep_alive) return;
      continue;
    }
    // The body, within the route's limit, each read with the read timeout.
    stream.set_timeout(options_.read_timeout);
    parser.body_limit(route.body_limit);
    auto declared = parser.content_length();
    if (declared && *declared > route.body_limit) ec = http::error::body_limit;
    else if (!parser.is_done()) {
      if (req.header("expect") == "100-continue") {
        static constexpr char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
        net::write(stream, net::buffer(kContinue, sizeof kContinue - 1), ec);
      }
      if (!ec) http::read(stream, buffer, parser, ec);
    }
    if (ec == http::error::body_limit) {
      keep_alive = false;
      send(Response::error(413, "request body larger than " + format_size(route.body_limit)));
      // Lingering close: let the client finish sending (bounded) so it reads our answer
      // instead of a connection reset.
      ::shutdown(fd, SHUT_WR);
      char sink[65536];
      auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      size_t drained = 0;
      while (drained < (64u << 20) && std::chrono::steady_clock::now() < until) {
        struct pollfd p = {fd, POLLIN, 0};
        if (::poll(&p, 1, 200) <= 0) continue;
        ssize_t n = ::read(fd, sink, sizeof sink);
        if (n <= 0) break;
        drained += static_cast<size_t>(n);
      }
      return;
    }
    if (ec) {
      send(Response::error(400, "could not read the request body: " + ec.message()));
      return;
    }
    req.body = std::move(parser.get().body());
    if (route.stream) {
      ChunkedStream out(stream, version);
      try {
        route.stream(req, out);
      } catch (const std::exception&) {
        if (!out.begun()) out.begin(500, {{"Content-Type", "application/json"}});
      }
      if (!out.finished()) out.finish();
      if (logger_)
        logger_(req, out.status(), std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count());
      if (!keep_alive || !out.ok()) return;
      continue;
    }
    Response res;
    try {
      res = route.respond ? route.respond(req) : Response::error(404, "not found");
    } catch (const std::exception&) {
      res = Response::error(500, "internal error");  // a bug: logged by the caller's logger
    }
    if (!send(res) || !keep_alive) return;
  }
}

}  // namespace brig::server
