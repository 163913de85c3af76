#include "server/http.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>
#include <array>
#include <cctype>
#include <condition_variable>
#include <cstring>
#include <limits>
#include <mutex>
#include <optional>
#include <sstream>
#include <unordered_map>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "base/util.h"

namespace brig::server {
namespace http = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;
using error_code = boost::system::error_code;
using Clock = std::chrono::steady_clock;

Response Response::json(int status, std::string body) {
  Response r;
  r.status = status;
  r.headers.emplace_back("Content-Type", "application/json");
  r.body = std::move(body);
  return r;
}

std::string dump(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

Response Response::error(int status, std::string_view message) {
  return json(status, dump(nlohmann::json{{"code", status}, {"message", message}}));
}

Response Response::empty(int status) {
  Response r;
  r.status = status;
  return r;
}

namespace {

constexpr size_t kHeaderLimit = 64 * 1024;
// A refused body is drained this long (and this much) before the close, so the client reads
// our answer instead of a connection reset.
constexpr auto kLingerTime = std::chrono::seconds(2);
constexpr size_t kLingerBytes = 64u << 20;
constexpr size_t kSinkSize = 16 * 1024;
constexpr size_t kMaxIov = 16;
// Connections taken per wake-up of the listening socket before the loop serves the others.
constexpr int kAcceptBatch = 64;
constexpr auto kAcceptBackoff = std::chrono::milliseconds(100);
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
// A tunnel's buffer, one per direction while bytes flow (none while that side is quiet). It
// also bounds the first response head a tunnel reads to learn its status.
constexpr size_t kRelayBuffer = 64 * 1024;
// The pipe a tunnel's direction splices through (kernel memory, while bytes flow).
constexpr int kRelayPipe = 256 * 1024;
// A file download's sendfile(2) calls: at most this much each, four of them per turn of the loop.
constexpr size_t kSendfileTurn = 1 << 20;

class Conn;

std::string new_request_id() { return new_sandbox_id().substr(0, 12); }

bool parse_target(Request& req) {
  auto parsed = boost::urls::parse_origin_form(req.target);
  if (!parsed) return false;
  req.path = parsed->path();
  for (auto p : parsed->params()) req.query.emplace(std::string(p.key), std::string(p.value));
  return true;
}

bool expects_continue(const Request& req) {
  std::string v = req.header("expect");
  for (auto& c : v) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return v == "100-continue";
}

// What the logger is told of a request that outlives its Exchange (a pull stream, a tunnel).
Request log_of(const Request& req) {
  Request log;
  log.method = req.method;
  log.path = req.path;
  log.request_id = req.request_id;
  log.remote = req.remote;
  return log;
}

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

template <class Buffers>
size_t to_iovec(const Buffers& buffers, iovec (&iov)[kMaxIov], size_t& total) {
  size_t n = 0;
  total = 0;
  for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers) && n < kMaxIov; ++it) {
    net::const_buffer b(*it);
    if (b.size() == 0) continue;
    iov[n++] = {const_cast<void*>(b.data()), b.size()};  // SAFETY: only written for mutable sequences
    total += b.size();
  }
  return n;
}

}  // namespace

struct HttpServer::Impl {
  enum class Phase { listening, running, stopping, stopped };

  Impl(EventLoop& l, ServerOptions o, Router r, Logger g, std::string a)
      : loop(l), options(std::move(o)), router(std::move(r)), logger(std::move(g)), acceptor(l.io()),
        backoff(l.io()), address(std::move(a)) {}

  // Loop thread.
  void start_accept();
  void on_listener_ready(error_code ec);
  void adopt(int fd, const sockaddr_in& peer);
  void end_accepting();
  void close_idle();
  void force_all();
  std::vector<std::shared_ptr<Conn>> snapshot();

  EventLoop& loop;
  const ServerOptions options;
  const Router router;
  const Logger logger;
  tcp::acceptor acceptor;  // the loop's once run() started
  net::steady_timer backoff;
  const std::string address;
  std::atomic<bool> stopping{false};

  std::mutex mu;
  std::condition_variable cv;
  Phase phase = Phase::listening;                        // under mu
  bool accepting = false;                                // under mu: an accept wait or backoff is pending
  std::unordered_map<Conn*, std::weak_ptr<Conn>> conns;  // under mu: every Conn alive
  int stop_tasks = 0;                                    // under mu: stop()'s tasks not yet run on the loop
};

namespace {

// One request in flight: its parser, what the router chose, the answer being written.
// Allocated when a request starts and freed when the next one is awaited, so an idle
// connection holds none of it.
struct Exchange {
  http::request_parser<http::string_body> parser;
  Request req;
  Route route;
  unsigned version = 11;
  bool keep_alive = false;
  Clock::time_point started = Clock::now();
  http::response<http::string_body> res;
  std::optional<http::response_serializer<http::string_body>> sr;  // over res, once it is answered
};

// What follows a written answer.
enum class After { keep, close, linger };

// A connection handed over to a tunnel (Route::tunnel): the upstream socket and the two
// directions of bytes. Loop thread only; it lives as long as its Conn, so the buffers of
// operations still pending when it closes stay valid until their handlers have run.
struct Relay {
  struct Direction {
    tcp::socket* from = nullptr;
    tcp::socket* to = nullptr;
    std::unique_ptr<char[]> buf;  // while bytes flow; let go of while `from` is quiet
    size_t len = 0;               // bytes in buf (the response head being read, downstream)
    std::string pending;          // written before anything else (the request head upstream)
    bool ended = false;           // `from` ended and the end was passed on
    // Once no head is being read, bytes move by splice(2) through a pipe, never through user
    // space; the pipe is made when the first bytes come and kept until the direction ends.
    Fd pipe_r, pipe_w;
    size_t in_pipe = 0;
    bool copy = false;            // splice refused (not a socket that supports it): copy instead
  };
  explicit Relay(net::io_context& io) : upstream(io), idle(io) {}

  tcp::socket upstream;
  Direction up;    // client -> upstream
  Direction down;  // upstream -> client
  net::steady_timer idle;
  Clock::time_point last = Clock::now();  // the last byte either way
  bool one_exchange = false;
  // one_exchange: the response heads downstream are parsed (Beast, up to kRelayBuffer) until
  // the first final one, to tell the client the connection ends with it. Otherwise nothing the
  // upstream sends is parsed: the status is read off the first bytes for the log, if there.
  bool watching = false;
  bool peeked = false;
  bool heard = false;       // the upstream has sent bytes
  bool silent_end = false;  // the upstream ended before its first byte
  std::optional<Response> unanswered;
  int status = 0;  // the first (final) response's status; 0 when unknown (or not HTTP)
  Request log;     // what the logger is told: method, path, id, remote
  Clock::time_point started;
};

// A pull route's stream (Route::pull), once its head is built: loop thread only.
struct Pulling {
  std::shared_ptr<Source> source;
  Fd file;                      // or a file's bytes, sendfile(2)
  uint64_t left = 0;            // of the file, still to send
  std::string head;             // the response head, then each chunk's size line
  std::string bytes;            // the chunk being written
  std::string_view tail;        // after it: CRLF, and the last chunk at the end
  bool ended = false;           // the source said end: the last chunk is in `tail`
  bool waiting = false;         // for the source: a wake or the idle timer
  bool watching = false;        // a wait on the socket for the client's close
  uint64_t gen = 0;             // a wake for an earlier wait does nothing
  Clock::time_point last = Clock::now();  // the last bytes sent
  bool keep = false;            // the connection is kept after the stream
  int status = 200;
  Request log;                  // what the logger is told: method, path, id, remote
  Clock::time_point started;
};

// A connection. The loop thread owns it while it is idle, reads a head or a body, writes an
// answer or lingers; a pool thread owns it from the hand-off to the router until it hands it
// back (a post each way, so each side sees what the other wrote). While a pool thread owns it
// the loop touches only the waits that thread asked for, and stop()'s `dead_`.
class Conn : public std::enable_shared_from_this<Conn> {
 public:
  enum class State { idle, head, busy, body, writing, lingering, tunneling, pulling, closed };

  Conn(HttpServer::Impl& srv, tcp::socket socket, std::string remote)
      : srv_(srv), socket_(std::move(socket)), timer_(srv.loop.io()), pull_timer_(srv.loop.io()), fd_(socket_.native_handle()),
        remote_(std::move(remote)) {}
  ~Conn();

  // Loop thread.
  void wait_request();
  void close();
  void force();
  State state() const { return state_; }

  // The owning pool thread: what Beast's sync algorithms need (SyncReadStream and
  // SyncWriteStream, through Bridge). Each call tries the socket without blocking and hands the
  // wait to the loop when it must, bounded by the read timeout.
  template <class Buffers>
  size_t read_some(const Buffers& buffers, error_code& ec);
  template <class Buffers>
  size_t write_some(const Buffers& buffers, error_code& ec);
  bool peer_gone();
  boost::beast::flat_buffer& buffer() { return buffer_; }

 private:
  // Loop thread.
  void read_head();
  void dispatch();
  void read_body();
  void read_body_some();
  void write_answer(After after);
  void after_answer(After after);
  void linger();
  void drain();
  void arm(std::chrono::milliseconds timeout);
  void disarm();
  void begin_relay(std::shared_ptr<Relay> relay);
  void relay_pump(Relay::Direction& d);
  void relay_splice(Relay::Direction& d);
  bool relay_peek_status();
  void relay_await(Relay::Direction& d);  // pump `d` again when its side can be read
  void relay_write(Relay::Direction& d, size_t n);
  void relay_watch(Relay::Direction& d);
  void relay_ended(Relay::Direction& d);
  void relay_idle();
  void relay_unanswered();
  void begin_pull(std::shared_ptr<Pulling> pulling);
  void pull_write();
  void pull_send_file();
  void pull_next(bool idle);
  void pull_woken(uint64_t gen, bool idle);
  void pull_watch();
  void end_pull();
  void let_go_of_source();
  // Pool thread.
  void route_request();
  void open_tunnel();
  void run_handler();
  void run_stream();
  void run_pull();
  void consume();
  // Either: builds the answer on the calling thread; a pool thread sends what the socket takes
  // at once, the loop the rest.
  void answer(const Response& r, After after);
  bool send_now();
  void release_handler_state();
  void to_loop(std::function<void()> f) { net::post(srv_.loop.io(), std::move(f)); }
  template <class Start>
  size_t await(Start start, error_code& ec);

  HttpServer::Impl& srv_;
  tcp::socket socket_;
  net::steady_timer timer_;
  net::steady_timer pull_timer_;   // a pull stream's idle interval (loop)
  const int fd_;                   // socket_'s, for the pool's direct calls (closed only while the loop owns it)
  uint64_t timer_gen_ = 0;         // loop: a timer that fired for an earlier wait does nothing
  bool timed_out_ = false;         // loop
  State state_ = State::idle;      // loop
  std::atomic<bool> dead_{false};  // stop() past its grace: every read and write fails
  boost::beast::flat_buffer buffer_;
  std::unique_ptr<Exchange> ex_;
  std::unique_ptr<char[]> sink_;  // while lingering
  size_t drained_ = 0;
  std::shared_ptr<Relay> relay_;  // once tunneling (loop)
  std::shared_ptr<Pulling> pull_;  // while pulling (loop)
  std::string remote_;
};

// Conn's pool-side calls as a Beast sync stream (with the throwing overloads Beast checks for).
class Bridge {
 public:
  explicit Bridge(Conn& c) : c_(c) {}
  template <class Buffers>
  size_t read_some(const Buffers& b, error_code& ec) {
    return c_.read_some(b, ec);
  }
  template <class Buffers>
  size_t read_some(const Buffers& b) {
    error_code ec;
    size_t n = c_.read_some(b, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }
  template <class Buffers>
  size_t write_some(const Buffers& b, error_code& ec) {
    return c_.write_some(b, ec);
  }
  template <class Buffers>
  size_t write_some(const Buffers& b) {
    error_code ec;
    size_t n = c_.write_some(b, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

 private:
  Conn& c_;
};

class ChunkedStream final : public Stream {
 public:
  ChunkedStream(Conn& c, unsigned version) : c_(c), s_(c), version_(version) {}
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
    error_code ec;
    http::write_header(s_, sr, ec);
    ok_ = !ec;
    return ok_;
  }
  bool write(std::string_view data) override {
    if (!begun_) begin(200, {});
    if (!ok_ || data.empty()) return ok_;
    error_code ec;
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
    if (!begun_) begin(500, {{"Content-Type", "application/json"}});
    if (!ok_ || finished_) return ok_;
    finished_ = true;
    if (length_) {
      // Fewer bytes than declared cannot be told to the client but by closing the connection.
      ok_ = sent_ == *length_;
      return ok_;
    }
    error_code ec;
    net::write(s_, http::make_chunk_last(), ec);
    ok_ = !ec;
    return ok_;
  }
  bool peer_gone() override { return c_.peer_gone(); }
  bool ok() const { return ok_; }
  int status() const { return status_; }
  bool begun() const { return begun_; }
  bool finished() const { return finished_; }

 private:
  Conn& c_;
  Bridge s_;
  unsigned version_;
  bool begun_ = false, ok_ = true, finished_ = false;
  std::optional<uint64_t> length_;  // the declared Content-Length, if any
  uint64_t sent_ = 0;
  int status_ = 0;
};

// BodyReader over Beast's buffer_body parser: each read fills the caller's buffer directly.
class PulledBody final : public BodyReader {
 public:
  // Room for Beast to read 64 KiB from the socket at a time (it reads what the buffer can take:
  // a fresh flat_buffer takes 512 bytes, half a million reads for a 256 MiB upload). The buffer
  // is the connection's and is let go of between requests.
  PulledBody(Conn& c, http::request_parser<http::buffer_body>& p) : c_(c), s_(c), p_(p) { c_.buffer().reserve(256 << 10); }
  Result<size_t> read(char* buf, size_t cap) override {
    while (!p_.is_done()) {
      p_.get().body().data = buf;
      p_.get().body().size = cap;
      error_code ec;
      http::read_some(s_, c_.buffer(), p_, ec);
      if (ec == http::error::need_buffer) ec = {};
      if (ec == http::error::body_limit) return Error::make(errc::limit_exceeded, "request body too large");
      if (ec) return Error::make(errc::protocol, "could not read the request body: " + ec.message());
      size_t n = cap - p_.get().body().size;
      if (n) return n;
    }
    return size_t{0};
  }

 private:
  Conn& c_;
  Bridge s_;
  http::request_parser<http::buffer_body>& p_;
};

// ---- Conn: the loop side ----

Conn::~Conn() {
  // The last reference: no operation is pending, whichever thread this is.
  error_code ignored;
  socket_.close(ignored);
  std::lock_guard lock(srv_.mu);
  srv_.conns.erase(this);
  if (srv_.conns.empty()) srv_.cv.notify_all();
}

void Conn::arm(std::chrono::milliseconds timeout) {
  uint64_t gen = ++timer_gen_;
  timed_out_ = false;
  timer_.expires_after(timeout);
  timer_.async_wait([self = shared_from_this(), gen](error_code ec) {
    if (ec || gen != self->timer_gen_) return;
    self->timed_out_ = true;
    error_code ignored;
    self->socket_.cancel(ignored);  // the wait in progress ends with operation_aborted
  });
}

void Conn::disarm() {
  ++timer_gen_;
  timer_.cancel();
}

void Conn::wait_request() {
  ex_.reset();
  if (srv_.stopping || dead_) return close();
  if (buffer_.size() > 0) return read_head();  // pipelined: the next head is here already
  // Idle: no buffer, no parser, no thread; one wait on the socket and a timer.
  buffer_.clear();
  buffer_.shrink_to_fit();
  state_ = State::idle;
  arm(srv_.options.idle_timeout);
  socket_.async_wait(tcp::socket::wait_read, [self = shared_from_this()](error_code ec) {
    self->disarm();
    if (ec || self->timed_out_ || self->state_ != State::idle) return self->close();
    self->read_head();
  });
}

void Conn::read_head() {
  state_ = State::head;
  ex_ = std::make_unique<Exchange>();
  ex_->parser.header_limit(kHeaderLimit);
  // The route decides the real limit once the headers are in; Beast would otherwise refuse a
  // Content-Length above its 1 MiB default while still reading the headers.
  ex_->parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  arm(srv_.options.read_timeout);  // for the whole head: a client cannot dribble it forever
  http::async_read_header(socket_, buffer_, ex_->parser, [self = shared_from_this()](error_code ec, size_t) {
    self->disarm();
    // A timeout, EOF or garbage: close quietly.
    if (ec || self->timed_out_ || self->state_ != State::head) return self->close();
    self->dispatch();
  });
}

void Conn::dispatch() {
  state_ = State::busy;
  ex_->started = Clock::now();
  if (!srv_.loop.blocking([self = shared_from_this()] { self->route_request(); })) close();
}

void Conn::read_body() {
  state_ = State::body;
  if (dead_) return close();
  if (!expects_continue(ex_->req)) return read_body_some();
  arm(srv_.options.read_timeout);
  net::async_write(socket_, net::buffer(kContinue.data(), kContinue.size()),
                   [self = shared_from_this()](error_code ec, size_t) {
                     self->disarm();
                     if (ec || self->timed_out_ || self->dead_) return self->close();
                     self->read_body_some();
                   });
}

void Conn::read_body_some() {
  // Each read with the read timeout, as much as the route's limit.
  arm(srv_.options.read_timeout);
  http::async_read_some(socket_, buffer_, ex_->parser, [self = shared_from_this()](error_code ec, size_t) {
    self->disarm();
    if (self->timed_out_) ec = net::error::timed_out;
    if (self->dead_) return self->close();
    if (ec) {
      // Answered from the pool, where the route is let go of (see release_handler_state).
      self->state_ = State::busy;
      auto res = ec == http::error::body_limit
                     ? Response::error(413, "request body larger than " + format_size(self->ex_->route.body_limit))
                     : Response::error(400, "could not read the request body: " + ec.message());
      auto after = ec == http::error::body_limit ? After::linger : After::close;
      if (!self->srv_.loop.blocking([self, res, after] { self->answer(res, after); })) self->close();
      return;
    }
    if (!self->ex_->parser.is_done()) return self->read_body_some();
    self->state_ = State::busy;
    if (!self->srv_.loop.blocking([self] { self->run_handler(); })) self->close();
  });
}

void Conn::write_answer(After after) {
  if (dead_) return close();
  state_ = State::writing;
  arm(srv_.options.read_timeout);
  http::async_write(socket_, *ex_->sr, [self = shared_from_this(), after](error_code ec, size_t) {
    self->disarm();
    if (ec == http::error::end_of_stream) ec = {};  // Beast's word for "sent, and it said close"
    if (ec || self->timed_out_) return self->close();
    self->after_answer(after);
  });
}

void Conn::after_answer(After after) {
  if (dead_) return close();
  if (after == After::linger) return linger();
  if (after == After::close) return close();
  wait_request();
}

void Conn::linger() {
  // Lingering close: let the client finish sending (bounded) so it reads our answer instead of
  // a connection reset.
  state_ = State::lingering;
  error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_send, ignored);
  buffer_.clear();
  buffer_.shrink_to_fit();
  sink_ = std::make_unique<char[]>(kSinkSize);
  drained_ = 0;
  arm(std::chrono::duration_cast<std::chrono::milliseconds>(kLingerTime));  // for the whole drain
  drain();
}

void Conn::drain() {
  socket_.async_read_some(net::buffer(sink_.get(), kSinkSize), [self = shared_from_this()](error_code ec, size_t n) {
    self->drained_ += n;
    if (ec || self->timed_out_ || self->dead_ || self->drained_ >= kLingerBytes) return self->close();
    self->drain();
  });
}

void Conn::close() {
  if (state_ == State::closed) return;
  state_ = State::closed;
  if (ex_ && (ex_->route.respond || ex_->route.consume || ex_->route.stream || ex_->route.pull)) {
    // Let go of what the router captured on the pool (see release_handler_state).
    srv_.loop.blocking([route = std::move(ex_->route)] {});
    ex_->route = Route{};
  }
  disarm();
  if (pull_) {
    pull_timer_.cancel();
    if (srv_.logger) srv_.logger(pull_->log, pull_->status, ms_since(pull_->started));
    let_go_of_source();
    pull_->file = Fd();
  }
  error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);  // pending waits end with operation_aborted; buffers they use live until ~Conn
  if (relay_) {
    relay_->upstream.close(ignored);
    relay_->idle.cancel();
    if (srv_.logger)
      srv_.logger(relay_->log, relay_->status, std::chrono::duration<double, std::milli>(Clock::now() - relay_->started).count());
  }
}

void Conn::force() {
  if (state_ == State::closed) return;
  dead_ = true;
  // A pool thread may be in a direct read or write: shut the socket (its calls fail now) but
  // keep the fd number until ~Conn, so it cannot be reused under that thread.
  ::shutdown(fd_, SHUT_RDWR);
  error_code ignored;
  socket_.cancel(ignored);
  disarm();
  if (state_ != State::busy) close();  // the loop's own: nothing else uses it
}

// ---- Conn: a tunnel (loop) ----

void Conn::begin_relay(std::shared_ptr<Relay> relay) {
  relay_ = std::move(relay);
  ex_.reset();
  if (dead_) return close();
  state_ = State::tunneling;
  buffer_.clear();
  buffer_.shrink_to_fit();
  Relay& r = *relay_;
  r.up.from = &socket_;
  r.up.to = &r.upstream;
  r.down.from = &r.upstream;
  r.down.to = &socket_;
  // Reads are tried at once and waited for only when there is nothing (Asio would otherwise
  // block in a synchronous read).
  error_code ec1, ec2;
  socket_.non_blocking(true, ec1);
  r.upstream.non_blocking(true, ec2);
  if (ec1 || ec2) return close();
  relay_idle();
  relay_pump(r.up);    // the request head first
  relay_pump(r.down);  // the upstream may answer before the request is all there
}

void Conn::relay_idle() {
  Relay& r = *relay_;
  auto due = r.last + srv_.options.tunnel_idle_timeout;
  if (Clock::now() >= due) return close();
  r.idle.expires_at(due);
  r.idle.async_wait([self = shared_from_this()](error_code ec) {
    if (ec || self->state_ != State::tunneling) return;
    self->relay_idle();
  });
}

void Conn::relay_pump(Relay::Direction& d) {
  if (state_ != State::tunneling) return;
  if (!d.pending.empty()) {
    net::async_write(*d.to, net::buffer(d.pending), [self = shared_from_this(), &d](error_code ec, size_t) {
      if (self->state_ != State::tunneling) return;
      if (ec) return self->close();
      self->relay_->last = Clock::now();
      d.pending.clear();
      d.pending.shrink_to_fit();
      self->relay_pump(d);
    });
    return;
  }
  if (!d.copy && d.len == 0 && !(&d == &relay_->down && relay_->watching)) return relay_splice(d);
  if (&d == &relay_->down && !relay_->watching && !relay_->peeked && !relay_peek_status()) return relay_await(d);
  if (&d == &relay_->down && relay_->silent_end && relay_->unanswered) return relay_unanswered();
  if (!d.buf) d.buf = std::make_unique<char[]>(kRelayBuffer);
  error_code ec;
  size_t n = d.from->read_some(net::buffer(d.buf.get() + d.len, kRelayBuffer - d.len), ec);
  if (ec == net::error::would_block || ec == net::error::try_again) {
    if (d.len == 0) d.buf.reset();  // a quiet side holds no buffer
    return relay_await(d);
  }
  if (ec == net::error::eof) {
    if (d.len > 0) {  // a response head that never completed: passed on as it is, then the end
      relay_->watching = false;
      return relay_write(d, d.len);
    }
    return relay_ended(d);
  }
  if (ec) return close();
  relay_->last = Clock::now();
  if (&d == &relay_->down) relay_->heard = true;
  d.len += n;
  if (&d == &relay_->down && relay_->watching) return relay_watch(d);
  relay_write(d, d.len);
}

void Conn::relay_splice(Relay::Direction& d) {
  const int from = d.from->native_handle(), to = d.to->native_handle();
  for (;;) {
    if (state_ != State::tunneling) return;
    if (&d == &relay_->down && !relay_->peeked && !relay_peek_status()) return relay_await(d);
    if (&d == &relay_->down && relay_->silent_end && relay_->unanswered) return relay_unanswered();
    // What is in the pipe goes out first.
    while (d.in_pipe > 0) {
      ssize_t n = ::splice(d.pipe_r.get(), nullptr, to, nullptr, d.in_pipe, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
      if (n > 0) {
        d.in_pipe -= static_cast<size_t>(n);
        relay_->last = Clock::now();
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {  // the receiver is slow: wait for room
        d.to->async_wait(tcp::socket::wait_write, [self = shared_from_this(), &d](error_code e) {
          if (self->state_ != State::tunneling) return;
          if (e) return self->close();
          self->relay_splice(d);
        });
        return;
      }
      return close();
    }
    if (!d.pipe_r) {
      int p[2];
      if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) return close();
      d.pipe_r.reset(p[0]);
      d.pipe_w.reset(p[1]);
      ::fcntl(p[1], F_SETPIPE_SZ, kRelayPipe);  // best effort: the default (64 KiB) works too
    }
    ssize_t n = ::splice(from, nullptr, d.pipe_w.get(), nullptr, kRelayPipe, SPLICE_F_NONBLOCK | SPLICE_F_MOVE);
    if (n > 0) {
      if (&d == &relay_->down) relay_->heard = true;
      d.in_pipe = static_cast<size_t>(n);
      relay_->last = Clock::now();
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // Nothing to read (the pipe is empty): wait. The pipe is kept, empty (no pages, a few
      // hundred bytes of kernel memory), since making one per burst costs four calls.
      d.from->async_wait(tcp::socket::wait_read, [self = shared_from_this(), &d](error_code e) {
        if (self->state_ != State::tunneling) return;
        if (e) return self->close();
        self->relay_splice(d);
      });
      return;
    }
    if (n < 0 && errno == EINVAL) {  // this pair cannot be spliced: copy through the buffer
      d.copy = true;
      return relay_pump(d);
    }
    if (n == 0) return relay_ended(d);
    return close();
  }
}

bool Conn::relay_peek_status() {
  // "HTTP/1.x NNN", if the first bytes the upstream sent (not taken off the socket) say so.
  // False while nothing has come: the caller waits instead of reading, or bytes arriving
  // between this look and its read would go by unseen.
  char b[12];
  ssize_t n = ::recv(relay_->upstream.native_handle(), b, sizeof b, MSG_PEEK | MSG_DONTWAIT);
  if (n < 0 && errno == EINTR) return relay_peek_status();
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
  relay_->peeked = true;  // bytes, the end, or an error the read will report
  if (n <= 0) {
    relay_->silent_end = !relay_->heard;
    return true;
  }
  relay_->heard = true;
  std::string_view v(b, static_cast<size_t>(n));
  if (n == 12 && v.starts_with("HTTP/1.") && v[8] == ' ' && std::isdigit(static_cast<unsigned char>(v[9])) &&
      std::isdigit(static_cast<unsigned char>(v[10])) && std::isdigit(static_cast<unsigned char>(v[11])))
    relay_->status = (v[9] - '0') * 100 + (v[10] - '0') * 10 + (v[11] - '0');
  return true;
}

void Conn::relay_unanswered() {
  // Nothing of the upstream's reached the client: it gets the tunnel's answer for this, and
  // the connection ends.
  Relay& r = *relay_;
  http::response<http::string_body> res{static_cast<http::status>(r.unanswered->status), 11};
  for (auto& [k, v] : r.unanswered->headers) res.set(k, v);
  res.set("X-Request-Id", r.log.request_id);
  res.body() = r.unanswered->body;
  res.keep_alive(false);
  res.prepare_payload();
  std::ostringstream os;
  os << res;
  r.status = r.unanswered->status;
  r.unanswered.reset();
  r.down.pending = std::move(os).str();
  // The tunnel's other waits, when they complete, find it no longer tunneling and do nothing.
  state_ = State::writing;
  arm(srv_.options.read_timeout);
  net::async_write(socket_, net::buffer(r.down.pending), [self = shared_from_this()](error_code, size_t) {
    self->disarm();
    self->close();
  });
}

void Conn::relay_await(Relay::Direction& d) {
  d.from->async_wait(tcp::socket::wait_read, [self = shared_from_this(), &d](error_code e) {
    if (self->state_ != State::tunneling) return;
    if (e) return self->close();
    self->relay_pump(d);
  });
}

void Conn::relay_write(Relay::Direction& d, size_t n) {
  net::async_write(*d.to, net::buffer(d.buf.get(), n), [self = shared_from_this(), &d](error_code ec, size_t) {
    if (self->state_ != State::tunneling) return;
    if (ec) return self->close();
    self->relay_->last = Clock::now();
    d.len = 0;
    self->relay_pump(d);
  });
}

void Conn::relay_watch(Relay::Direction& d) {
  Relay& r = *relay_;
  size_t at = 0;  // interim (1xx) heads already seen
  for (;;) {
    // Not a response head (a protocol that is not HTTP): nothing is held back to look for one.
    constexpr std::string_view kStart = "HTTP/";
    size_t seen = std::min(d.len - at, kStart.size());
    if (std::string_view(d.buf.get() + at, seen) != kStart.substr(0, seen)) {
      r.watching = false;
      return relay_write(d, d.len);
    }
    http::response_parser<http::empty_body> p;
    p.header_limit(kRelayBuffer);
    p.body_limit(boost::none);  // only the head is parsed; a body of any size follows as it is
    error_code ec;
    size_t used = p.put(net::buffer(d.buf.get() + at, d.len - at), ec);
    if (ec == http::error::need_more && d.len < kRelayBuffer) {
      if (at == 0) return relay_pump(d);  // read more of the head
      // Interim heads go on at once (a client may wait for its 100 Continue to send the body).
      d.pending.assign(d.buf.get(), at);
      std::memmove(d.buf.get(), d.buf.get() + at, d.len - at);
      d.len -= at;
      return relay_pump(d);
    }
    if (ec || !p.is_header_done()) {  // not HTTP, or a head too big to follow: bytes as they are
      r.watching = false;
      return relay_write(d, d.len);
    }
    const int status = static_cast<int>(p.get().result_int());
    if (status >= 100 && status < 200 && status != 101) {
      at += used;
      continue;
    }
    r.watching = false;
    r.status = status;
    if (!r.one_exchange || status == 101) return relay_write(d, d.len);
    // The client must not send another request on this connection: it is told so.
    http::response_header<> head = p.get().base();
    head.set(http::field::connection, "close");
    head.erase(http::field::keep_alive);
    std::ostringstream os;
    os << head;
    d.pending.assign(d.buf.get(), at);
    d.pending += std::move(os).str();
    d.pending.append(d.buf.get() + at + used, d.len - at - used);
    d.len = 0;
    return relay_pump(d);
  }
}

void Conn::relay_ended(Relay::Direction& d) {
  // One side finished sending: the other is told (a half-close), and may still answer.
  d.ended = true;
  d.buf.reset();
  d.pipe_r.reset();
  d.pipe_w.reset();
  error_code ignored;
  d.to->shutdown(tcp::socket::shutdown_send, ignored);
  if (relay_->up.ended && relay_->down.ended) close();
}

// ---- Conn: a pull stream (loop) ----

void Conn::begin_pull(std::shared_ptr<Pulling> pulling) {
  pull_ = std::move(pulling);
  ex_.reset();
  if (dead_) return close();
  state_ = State::pulling;
  pull_write();  // the head
}

void Conn::pull_write() {
  Pulling& p = *pull_;
  std::array<net::const_buffer, 3> bufs{net::buffer(p.head), net::buffer(p.bytes), net::buffer(p.tail.data(), p.tail.size())};
  arm(srv_.options.read_timeout);
  net::async_write(socket_, bufs, [self = shared_from_this()](error_code ec, size_t) {
    self->disarm();
    if (self->state_ != State::pulling) return;
    if (ec || self->timed_out_ || self->dead_) return self->close();
    Pulling& p = *self->pull_;
    p.head.clear();
    p.bytes.clear();
    p.tail = {};
    p.last = Clock::now();
    if (p.file) return self->pull_send_file();
    if (p.ended) return self->end_pull();
    self->pull_next(false);
  });
}

void Conn::pull_send_file() {
  Pulling& p = *pull_;
  size_t this_turn = 0;
  while (p.left > 0) {
    if (dead_) return close();
    ssize_t n = ::sendfile(fd_, p.file.get(), nullptr, static_cast<size_t>(std::min<uint64_t>(p.left, kSendfileTurn)));
    if (n > 0) {
      p.left -= static_cast<uint64_t>(n);
      this_turn += static_cast<size_t>(n);
      if (this_turn >= 4 * kSendfileTurn && p.left > 0) {
        // Others' turn on the loop; this download carries on right after.
        net::post(srv_.loop.io(), [self = shared_from_this()] {
          if (self->state_ == State::pulling) self->pull_send_file();
        });
        return;
      }
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      arm(srv_.options.read_timeout);
      socket_.async_wait(tcp::socket::wait_write, [self = shared_from_this()](error_code ec) {
        self->disarm();
        if (self->state_ != State::pulling) return;
        if (ec || self->timed_out_ || self->dead_) return self->close();
        self->pull_send_file();
      });
      return;
    }
    return close();  // 0: the file is shorter than it was; or the client is gone
  }
  end_pull();
}

void Conn::pull_next(bool idle) {
  Pulling& p = *pull_;
  p.waiting = false;
  const uint64_t gen = ++p.gen;
  std::weak_ptr<Conn> weak = weak_from_this();
  auto wake = [weak, gen, &io = srv_.loop.io()] {
    net::post(io, [weak, gen] {
      if (auto c = weak.lock()) c->pull_woken(gen, false);
    });
  };
  Source::Next next;
  try {
    next = p.source->next(idle, std::move(wake));
  } catch (const std::exception&) {
    return close();  // a bug in the source: the client sees the stream cut
  }
  if (!next.bytes.empty() || next.end) {
    if (!next.bytes.empty()) {
      char size[24];
      p.head.assign(size, static_cast<size_t>(std::snprintf(size, sizeof size, "%zx\r\n", next.bytes.size())));
      p.bytes = std::move(next.bytes);
    }
    p.ended = next.end;
    p.tail = next.end ? (p.bytes.empty() ? std::string_view("0\r\n\r\n") : std::string_view("\r\n0\r\n\r\n"))
                      : std::string_view("\r\n");
    return pull_write();
  }
  // Nothing now: wait for the source's wake or the idle interval, and for the client to leave.
  p.waiting = true;
  pull_timer_.expires_at(p.last + p.source->idle_interval());
  pull_timer_.async_wait([weak, gen](error_code ec) {
    if (ec) return;
    if (auto c = weak.lock()) c->pull_woken(gen, true);
  });
  pull_watch();
}

void Conn::pull_woken(uint64_t gen, bool idle) {
  if (state_ != State::pulling || !pull_->waiting || gen != pull_->gen) return;
  if (!idle) pull_timer_.cancel();
  pull_next(idle);
}

void Conn::pull_watch() {
  if (pull_->watching) return;
  pull_->watching = true;
  socket_.async_wait(tcp::socket::wait_read, [self = shared_from_this()](error_code ec) {
    if (self->state_ != State::pulling) return;
    self->pull_->watching = false;
    if (ec || self->peer_gone()) return self->close();
    // Bytes from the client (a pipelined request): read once the stream is over. A client
    // that leaves meanwhile is seen by the next write.
  });
}

void Conn::end_pull() {
  Pulling& p = *pull_;
  pull_timer_.cancel();
  if (srv_.logger) srv_.logger(p.log, p.status, ms_since(p.started));
  const bool keep = p.keep && !srv_.stopping;
  let_go_of_source();
  pull_.reset();
  // A wait on the socket for the client's close may be pending: wait_request's own wait then
  // goes beside it; the first to complete reads the next head, the other finds a changed state.
  keep ? wait_request() : close();
}

void Conn::let_go_of_source() {
  // What the source holds (a process hub, a sandbox) may be the last reference to something
  // whose destructor blocks: it goes on the pool, never on the loop.
  if (pull_ && pull_->source) srv_.loop.blocking([source = std::move(pull_->source)] {});
}

// ---- Conn: the pool side ----

template <class Start>
size_t Conn::await(Start start, error_code& ec) {
  if (srv_.loop.on_loop_thread()) {  // it would wait for itself
    ec = net::error::operation_not_supported;
    return 0;
  }
  struct Wait {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    error_code ec;
    size_t n = 0;
  };
  auto w = std::make_shared<Wait>();
  auto finish = [w](error_code e, size_t n) {
    std::lock_guard lock(w->mu);
    w->ec = e;
    w->n = n;
    w->done = true;
    w->cv.notify_one();
  };
  to_loop([self = shared_from_this(), start, finish] {
    if (self->dead_) return finish(net::error::operation_aborted, 0);
    self->arm(self->srv_.options.read_timeout);
    start(self->socket_, [self, finish](error_code e, size_t n) {
      self->disarm();
      if (self->timed_out_) e = net::error::timed_out;
      finish(e, n);
    });
  });
  std::unique_lock lock(w->mu);
  w->cv.wait(lock, [&] { return w->done; });
  ec = w->ec;
  return w->n;
}

template <class Buffers>
size_t Conn::read_some(const Buffers& buffers, error_code& ec) {
  iovec iov[kMaxIov];
  size_t total = 0;
  size_t cnt = to_iovec(buffers, iov, total);
  ec = {};
  if (total == 0) return 0;
  if (dead_) {
    ec = net::error::operation_aborted;
    return 0;
  }
  struct msghdr msg = {};
  msg.msg_iov = iov;
  msg.msg_iovlen = cnt;
  for (;;) {
    ssize_t r = ::recvmsg(fd_, &msg, MSG_DONTWAIT);
    if (r > 0) return static_cast<size_t>(r);
    if (r == 0) {
      ec = net::error::eof;
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      ec = error_code(errno, boost::system::system_category());
      return 0;
    }
    break;
  }
  // Nothing to read yet: the loop waits for it.
  std::vector<net::mutable_buffer> bufs;
  for (size_t i = 0; i < cnt; ++i) bufs.emplace_back(iov[i].iov_base, iov[i].iov_len);
  return await([&bufs](tcp::socket& s, auto handler) { s.async_read_some(bufs, std::move(handler)); }, ec);
}

template <class Buffers>
size_t Conn::write_some(const Buffers& buffers, error_code& ec) {
  iovec iov[kMaxIov];
  size_t total = 0;
  size_t cnt = to_iovec(buffers, iov, total);
  ec = {};
  if (total == 0) return 0;
  if (dead_) {
    ec = net::error::operation_aborted;
    return 0;
  }
  struct msghdr msg = {};
  msg.msg_iov = iov;
  msg.msg_iovlen = cnt;
  for (;;) {
    ssize_t r = ::sendmsg(fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (r >= 0) return static_cast<size_t>(r);
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      ec = error_code(errno, boost::system::system_category());
      return 0;
    }
    break;
  }
  // The send buffer is full (the client reads slower than we write): the handler waits while
  // the loop waits for room. Nothing queues in the daemon.
  std::vector<net::const_buffer> bufs;
  for (size_t i = 0; i < cnt; ++i) bufs.emplace_back(iov[i].iov_base, iov[i].iov_len);
  return await([&bufs](tcp::socket& s, auto handler) { s.async_write_some(bufs, std::move(handler)); }, ec);
}

bool Conn::peer_gone() {
  if (dead_) return true;
  struct pollfd p = {fd_, POLLIN | POLLRDHUP, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) return true;
  char c;
  return ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

void Conn::route_request() {
  if (dead_) return to_loop([self = shared_from_this()] { self->close(); });  // stop() gave up on it
  Exchange& ex = *ex_;
  Request& req = ex.req;
  req.remote = remote_;
  req.request_id = new_request_id();
  const auto& h = ex.parser.get();
  req.method = std::string(h.method_string());
  req.target = std::string(h.target());
  for (auto& f : h) {
    std::string name(f.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    req.headers[name] = std::string(f.value());
  }
  ex.version = h.version();
  ex.keep_alive = h.keep_alive();
  if (!parse_target(req)) return answer(Response::error(400, "malformed request target"), After::close);
  try {
    ex.route = srv_.router(req);
  } catch (const std::exception&) {
    return answer(Response::error(500, "internal error"), After::close);
  }
  if (ex.route.tunnel) return open_tunnel();
  auto declared = ex.parser.content_length();
  if (declared && *declared > ex.route.body_limit)
    return answer(Response::error(413, "request body larger than " + format_size(ex.route.body_limit)), After::linger);
  if (ex.route.consume) return consume();
  ex.parser.body_limit(ex.route.body_limit);
  // What came with the head (often the whole body of a small request) is parsed here, with no
  // round trip through the loop.
  ex.parser.eager(true);
  while (!ex.parser.is_done() && buffer_.size() > 0) {
    error_code ec;
    size_t n = ex.parser.put(buffer_.data(), ec);
    buffer_.consume(n);
    if (ec == http::error::need_more) break;
    if (ec == http::error::body_limit)
      return answer(Response::error(413, "request body larger than " + format_size(ex.route.body_limit)), After::linger);
    if (ec) return answer(Response::error(400, "could not read the request body: " + ec.message()), After::close);
    if (n == 0) break;
  }
  if (ex.parser.is_done()) return run_handler();
  // The body is still coming: the loop reads it (no thread waits on a slow client), then hands
  // the request back to the pool.
  to_loop([self = shared_from_this()] { self->read_body(); });
}

void Conn::run_handler() {
  Exchange& ex = *ex_;
  ex.req.body = std::move(ex.parser.get().body());
  if (ex.route.stream) return run_stream();
  if (ex.route.pull) return run_pull();
  Response res;
  try {
    res = ex.route.respond ? ex.route.respond(ex.req) : Response::error(404, "not found");
  } catch (const std::exception&) {
    res = Response::error(500, "internal error");  // a bug: logged by the caller's logger
  }
  answer(res, After::keep);
}

void Conn::run_stream() {
  Exchange& ex = *ex_;
  ChunkedStream out(*this, ex.version);
  try {
    ex.route.stream(ex.req, out);
  } catch (const std::exception&) {
    if (!out.begun()) out.begin(500, {{"Content-Type", "application/json"}});
  }
  if (!out.finished()) out.finish();
  if (srv_.logger) srv_.logger(ex.req, out.status(), ms_since(ex.started));
  release_handler_state();
  bool keep = ex.keep_alive && out.ok();
  to_loop([self = shared_from_this(), keep] { keep ? self->wait_request() : self->close(); });
}

void Conn::run_pull() {
  Exchange& ex = *ex_;
  Pull pull;
  try {
    pull = ex.route.pull(ex.req);
  } catch (const std::exception&) {
    pull = Pull{Response::error(500, "internal error"), nullptr};
  }
  if (!pull.source && !pull.file) return answer(pull.head, After::keep);
  auto p = std::make_shared<Pulling>();
  p->source = std::move(pull.source);
  p->file = std::move(pull.file);
  p->left = pull.file_bytes;
  p->keep = ex.keep_alive && !srv_.stopping;
  p->status = pull.head.status;
  p->log = log_of(ex.req);
  p->started = ex.started;
  http::response<http::empty_body> res{static_cast<http::status>(pull.head.status), ex.version};
  for (auto& [k, v] : pull.head.headers) res.set(k, v);
  res.set("X-Request-Id", ex.req.request_id);
  if (p->file) res.content_length(p->left);
  else res.chunked(true);
  res.keep_alive(p->keep);
  std::ostringstream os;
  os << res.base();
  p->head = std::move(os).str();
  release_handler_state();
  to_loop([self = shared_from_this(), p = std::move(p)]() mutable { self->begin_pull(std::move(p)); });
}

void Conn::consume() {
  // The handler pulls the body (bounded by the route's limit, each read with the read
  // timeout); what it leaves unread is drained before the close.
  Exchange& ex = *ex_;
  if (expects_continue(ex.req)) {
    Bridge s(*this);
    error_code ec;
    net::write(s, net::buffer(kContinue.data(), kContinue.size()), ec);
    if (ec) return to_loop([self = shared_from_this()] { self->close(); });
  }
  http::request_parser<http::buffer_body> body_parser{std::move(ex.parser)};
  body_parser.body_limit(ex.route.body_limit);
  PulledBody body(*this, body_parser);
  Response res;
  try {
    res = ex.route.consume(ex.req, body);
  } catch (const std::exception&) {
    res = Response::error(500, "internal error");
  }
  answer(res, body_parser.is_done() ? After::keep : After::linger);
}

void Conn::open_tunnel() {
  Exchange& ex = *ex_;
  Tunnel t;
  try {
    t = ex.route.tunnel(ex.req);
  } catch (const std::exception&) {
    t = Tunnel{};
    t.refusal = Response::error(500, "internal error");
  }
  // Refused: nothing of the body was read, so the connection is kept only if it has none.
  if (!t.upstream) return answer(t.refusal, ex.parser.is_done() ? After::keep : After::linger);
  auto relay = std::make_unique<Relay>(srv_.loop.io());
  relay->one_exchange = t.one_exchange;
  relay->unanswered = std::move(t.unanswered);
  relay->watching = t.one_exchange;
  relay->started = ex.started;
  relay->log = log_of(ex.req);
  // The head as Beast re-serializes it (the client's framing headers unchanged: the body
  // follows as the client sent it), then what came after the head.
  http::request_header<> head = ex.parser.get().base();
  if (t.host) head.set(http::field::host, *t.host);
  if (t.one_exchange && head.find(http::field::upgrade) == head.end()) {
    head.set(http::field::connection, "close");
    head.erase(http::field::keep_alive);
  }
  std::ostringstream os;
  os << head;
  relay->up.pending = std::move(os).str();
  relay->up.pending.append(static_cast<const char*>(buffer_.data().data()), buffer_.size());
  buffer_.clear();
  const int family = [&] {
    struct sockaddr_storage ss = {};
    socklen_t len = sizeof ss;
    ::getsockname(t.upstream.get(), reinterpret_cast<sockaddr*>(&ss), &len);  // SAFETY: sockaddr_storage
    return ss.ss_family;
  }();
  // A TCP socket, or the Unix end of a TLS bridge (server/tls_bridge.h): the relay only reads,
  // writes, splices and shuts down, which every connected stream socket does alike.
  error_code ec;
  relay->upstream.assign(family == AF_INET6 ? tcp::v6() : tcp::v4(), t.upstream.get(), ec);
  if (ec) return answer(Response::error(502, "could not take over the upstream connection"), After::close);
  (void)t.upstream.release();  // the socket is the relay's now
  int one = 1;
  ::setsockopt(relay->upstream.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  release_handler_state();
  to_loop([self = shared_from_this(), relay = std::shared_ptr<Relay>(std::move(relay))]() mutable {
    self->begin_relay(std::move(relay));
  });
}

void Conn::answer(const Response& r, After after) {
  Exchange& ex = *ex_;
  bool keep = after == After::keep && ex.keep_alive && !srv_.stopping;
  if (after == After::keep && !keep) after = After::close;
  auto& res = ex.res;
  res.result(static_cast<http::status>(r.status));
  res.version(ex.version);
  for (auto& [k, v] : r.headers) res.set(k, v);
  res.set("X-Request-Id", ex.req.request_id);
  res.body() = r.body;
  res.keep_alive(keep);
  if (r.status == 204 || r.status == 304) res.content_length(boost::none);
  else res.prepare_payload();
  ex.sr.emplace(res);
  if (srv_.logger) srv_.logger(ex.req, r.status, ms_since(ex.started));
  if (srv_.loop.on_loop_thread()) return write_answer(after);
  release_handler_state();
  // Most answers fit the socket's buffer: sent from here, the client has it without waiting for
  // a hand-off to the loop. What does not fit, the loop sends; no thread waits for a slow client.
  bool sent = send_now();
  to_loop([self = shared_from_this(), after, sent] { sent ? self->after_answer(after) : self->write_answer(after); });
}

void Conn::release_handler_state() {
  // What the router captured (a sandbox, a process hub) may be the last reference to something
  // whose destructor blocks: it goes here, on the pool, never on the loop.
  ex_->route = Route{};
  ex_->req = Request{};
}

bool Conn::send_now() {
  auto& sr = *ex_->sr;
  while (!dead_ && !sr.is_done()) {
    error_code ec;
    iovec iov[kMaxIov];
    size_t cnt = 0, total = 0;
    sr.next(ec, [&](error_code&, const auto& buffers) { cnt = to_iovec(buffers, iov, total); });
    if (ec || cnt == 0) return false;  // the loop carries on, and meets the same error
    struct msghdr msg = {};
    msg.msg_iov = iov;
    msg.msg_iovlen = cnt;
    ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;  // full (or broken): the loop waits for room (or sees why)
    sr.consume(static_cast<size_t>(n));
  }
  return sr.is_done();
}

}  // namespace

// ---- the listener ----

std::vector<std::shared_ptr<Conn>> HttpServer::Impl::snapshot() {
  std::vector<std::shared_ptr<Conn>> out;
  std::lock_guard lock(mu);
  out.reserve(conns.size());
  for (auto& [p, w] : conns)
    if (auto c = w.lock()) out.push_back(std::move(c));
  return out;
}

void HttpServer::Impl::start_accept() {
  if (stopping) return end_accepting();
  acceptor.async_wait(tcp::acceptor::wait_read, [this](error_code ec) { on_listener_ready(ec); });
}

void HttpServer::Impl::end_accepting() {
  std::lock_guard lock(mu);
  accepting = false;
  cv.notify_all();
}

void HttpServer::Impl::on_listener_ready(error_code ec) {
  if (ec || stopping) return end_accepting();
  for (int i = 0; i < kAcceptBatch; ++i) {
    struct sockaddr_in peer = {};
    socklen_t len = sizeof peer;
    // accept4 for CLOEXEC from the start (Asio's accept sets no flag on the new socket).
    int fd = ::accept4(acceptor.native_handle(), reinterpret_cast<sockaddr*>(&peer), &len,  // SAFETY: sockaddr_in
                       SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) {
      adopt(fd, peer);
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      // The connection stays in the backlog; try again shortly rather than spin on it.
      spdlog::warn("http: accept: {}; retrying in {} ms", std::strerror(errno), kAcceptBackoff.count());
      backoff.expires_after(kAcceptBackoff);
      backoff.async_wait([this](error_code e) {
        if (e) return end_accepting();
        start_accept();
      });
      return;
    }
    spdlog::warn("http: accept: {}", std::strerror(errno));
    break;
  }
  start_accept();
}

void HttpServer::Impl::adopt(int fd, const sockaddr_in& peer) {
  {
    std::lock_guard lock(mu);
    if (conns.size() >= options.max_connections) {
      ::close(fd);  // over the bound: refuse rather than queue without limit
      return;
    }
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  tcp::socket socket(loop.io());
  error_code ec;
  socket.assign(tcp::v4(), fd, ec);
  if (ec) {
    ::close(fd);
    return;
  }
  char buf[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &peer.sin_addr, buf, sizeof buf);
  auto c = std::make_shared<Conn>(*this, std::move(socket), std::string(buf) + ":" + std::to_string(ntohs(peer.sin_port)));
  {
    std::lock_guard lock(mu);
    conns.emplace(c.get(), c);
  }
  c->wait_request();
}

void HttpServer::Impl::close_idle() {
  error_code ignored;
  acceptor.close(ignored);
  backoff.cancel();
  for (auto& c : snapshot())
    if (c->state() == Conn::State::idle || c->state() == Conn::State::head) c->close();
}

void HttpServer::Impl::force_all() {
  for (auto& c : snapshot()) c->force();
}

Result<std::unique_ptr<HttpServer>> HttpServer::listen(EventLoop& loop, const ServerOptions& options, Router router,
                                                       Logger logger) {
  auto colon = options.listen.rfind(':');
  if (colon == std::string::npos) return Error::make(errc::invalid_argument, "--listen wants HOST:PORT");
  ::signal(SIGPIPE, SIG_IGN);
  std::string host = options.listen.substr(0, colon);
  int port = std::atoi(options.listen.c_str() + colon + 1);
  if (port < 0 || port > 65535 || (port == 0 && options.listen.substr(colon + 1) != "0"))
    return Error::make(errc::invalid_argument, "invalid port in --listen");
  struct sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (host == "localhost") host = "127.0.0.1";
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1)
    return Error::make(errc::invalid_argument, "--listen wants an IPv4 address, got '" + host + "'");
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
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
  char buf[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &addr.sin_addr, buf, sizeof buf);
  std::string address = std::string(buf) + ":" + std::to_string(ntohs(addr.sin_port));
  auto impl = std::make_unique<Impl>(loop, options, std::move(router), std::move(logger), address);
  error_code ec;
  impl->acceptor.assign(tcp::v4(), fd, ec);
  if (ec) {
    ::close(fd);
    return Error::from_errno(ec.value(), "listen");
  }
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { stop(std::chrono::milliseconds(0)); }

const std::string& HttpServer::address() const { return impl_->address; }

size_t HttpServer::connections() const {
  std::lock_guard lock(impl_->mu);
  return impl_->conns.size();
}

void HttpServer::run() {
  Impl& s = *impl_;
  std::unique_lock lock(s.mu);
  if (s.phase == Impl::Phase::listening) {
    s.phase = Impl::Phase::running;
    s.accepting = true;
    lock.unlock();
    s.loop.start();
    net::post(s.loop.io(), [&s] { s.start_accept(); });
    lock.lock();
  }
  s.cv.wait(lock, [&] { return s.phase == Impl::Phase::stopped; });
}

void HttpServer::stop(std::chrono::milliseconds grace) {
  Impl& s = *impl_;
  std::unique_lock lock(s.mu);
  if (s.phase == Impl::Phase::listening) {
    // Never ran: nothing of ours is on the loop; close the listener here.
    s.phase = Impl::Phase::stopped;
    s.stopping = true;
    error_code ignored;
    s.acceptor.close(ignored);
    s.cv.notify_all();
    return;
  }
  if (s.phase != Impl::Phase::running) {  // another stop() is at work, or done
    s.cv.wait(lock, [&] { return s.phase == Impl::Phase::stopped; });
    return;
  }
  if (s.loop.on_loop_thread()) {
    spdlog::error("http: stop() called on the loop thread; it cannot wait for itself");
    return;
  }
  s.phase = Impl::Phase::stopping;
  s.stopping = true;
  // A task of stop()'s on the loop uses `s`, which the caller destroys once stop() returns:
  // stop() waits for each to have run (mu held here; post never runs it inline).
  auto on_loop = [&s](void (Impl::*task)()) {
    ++s.stop_tasks;
    net::post(s.loop.io(), [&s, task] {
      (s.*task)();
      std::lock_guard done_lock(s.mu);
      --s.stop_tasks;
      s.cv.notify_all();
    });
  };
  auto done = [&] { return s.conns.empty() && !s.accepting && s.stop_tasks == 0; };
  on_loop(&Impl::close_idle);
  if (!s.cv.wait_for(lock, grace, done)) {
    // Past the grace: shut what is left; each handler's next read or write fails.
    on_loop(&Impl::force_all);
    // Handlers use the router (and what it points to): they must be gone before the caller
    // destroys it. Their I/O fails at once now; say who is slow rather than hang in silence.
    while (!s.cv.wait_for(lock, std::chrono::seconds(5), done))
      spdlog::warn("http: stop: {} connection(s) still in a handler", s.conns.size());
  }
  s.phase = Impl::Phase::stopped;
  s.cv.notify_all();
}

}  // namespace brig::server
