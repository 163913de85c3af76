// The HTTP layer on the event loop, over real loopback sockets: keep-alive and its idle
// timeout, the head's read timeout, body limits (413), 1,000 idle connections held by no
// thread and no buffer each, a client that stops reading (the handler waits, memory stays
// flat), and a stop() that closes idle connections at once and ends active streams at its grace.
#include "server/http.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <mutex>
#include <fstream>
#include <optional>
#include <thread>

namespace brig::server {
namespace {

namespace http = boost::beast::http;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Sanitizers' shadow memory and quarantines make RSS say nothing about the code under test:
// memory bounds are checked in plain builds only (thread counts and byte counts always).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kMeasuresMemory = false;
#else
constexpr bool kMeasuresMemory = true;
#endif

size_t threads_in_process() {
  size_t n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

size_t rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.starts_with("VmRSS:")) return std::stoul(line.substr(6));
  return 0;
}

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds limit = 5s) {
  auto until = Clock::now() + limit;
  while (Clock::now() < until) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

// A test client's socket; every read waits at most `timeout`, so no test can hang on it.
class Client {
 public:
  explicit Client(int port, std::chrono::milliseconds timeout = 10s, int rcvbuf = 0) : timeout_(timeout) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (rcvbuf) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {  // SAFETY: sockaddr_in
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
  }
  Client(const Client&) = delete;
  bool ok() const { return fd_ >= 0; }
  int fd() const { return fd_; }

  bool send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  bool get(const std::string& path, const std::string& extra = "") {
    return send("GET " + path + " HTTP/1.1\r\nHost: localhost\r\n" + extra + "\r\n");
  }
  std::optional<http::response<http::string_body>> response(size_t body_limit = 1 << 20) {
    http::response_parser<http::string_body> p;
    p.body_limit(body_limit);
    boost::system::error_code ec;
    http::read(*this, buf_, p, ec);
    if (ec) return std::nullopt;
    return p.release();
  }
  // Raw bytes, as many as arrive within the timeout (at most `cap`).
  std::string read_raw(size_t cap) {
    std::string out(buf_.size() < cap ? buf_.size() : cap, '\0');
    boost::asio::buffer_copy(boost::asio::buffer(out), buf_.data());
    buf_.consume(out.size());
    char tmp[4096];
    boost::system::error_code ec;
    if (out.empty()) {
      size_t n = read_some(boost::asio::buffer(tmp, std::min(sizeof tmp, cap)), ec);
      out.append(tmp, n);
    }
    return out;
  }
  // True if the server closes the connection within `limit` with no further bytes.
  bool closed_within(std::chrono::milliseconds limit) {
    struct pollfd p = {fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(limit.count())) <= 0) return false;
    char c;
    ssize_t n = ::recv(fd_, &c, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }

  // SyncReadStream, for Beast's parser.
  template <class Buffers>
  size_t read_some(const Buffers& buffers, boost::system::error_code& ec) {
    struct pollfd p = {fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout_.count())) <= 0) {
      ec = boost::asio::error::timed_out;
      return 0;
    }
    boost::asio::mutable_buffer b = *boost::asio::buffer_sequence_begin(buffers);
    ssize_t n = ::recv(fd_, b.data(), b.size(), 0);
    if (n == 0) ec = boost::asio::error::eof;
    else if (n < 0) ec = boost::system::error_code(errno, boost::system::system_category());
    else ec = {};
    return n > 0 ? static_cast<size_t>(n) : 0;
  }
  template <class Buffers>
  size_t read_some(const Buffers& buffers) {
    boost::system::error_code ec;
    size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

 private:
  int fd_ = -1;
  std::chrono::milliseconds timeout_;
  boost::beast::flat_buffer buf_;
};

// A server on an ephemeral loopback port, run() on its own thread, with its own loop.
struct TestServer {
  EventLoop loop;
  std::unique_ptr<HttpServer> server;
  std::thread runner;
  int port = 0;

  explicit TestServer(HttpServer::Router router, ServerOptions options = {}, EventLoop::Options lo = {}) : loop(lo) {
    options.listen = "127.0.0.1:0";
    auto s = HttpServer::listen(loop, options, std::move(router), nullptr);
    EXPECT_TRUE(s) << s.error().message();
    if (!s) return;
    server = std::move(*s);
    port = std::stoi(server->address().substr(server->address().rfind(':') + 1));
    runner = std::thread([this] { server->run(); });
  }
  ~TestServer() {
    stop(0ms);
    loop.stop();
  }
  void stop(std::chrono::milliseconds grace) {
    if (server) server->stop(grace);
    if (runner.joinable()) runner.join();
  }
};

Route health_or_404(const Request& req) {
  Route r;
  if (req.path == "/health") r.respond = [](Request&) { return Response::json(200, "{\"status\":\"ok\"}"); };
  return r;
}

TEST(Http, KeepAliveServesRequestsInTurnAndPipelined) {
  TestServer ts(health_or_404);
  Client c(ts.port);
  ASSERT_TRUE(c.ok());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(c.get("/health"));
    auto res = c.response();
    ASSERT_TRUE(res);
    EXPECT_EQ(res->result_int(), 200);
    EXPECT_EQ(res->body(), "{\"status\":\"ok\"}");
    EXPECT_TRUE(res->keep_alive());
    EXPECT_FALSE((*res)["X-Request-Id"].empty());
  }
  // Two requests in one write: two answers, in order.
  ASSERT_TRUE(c.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n"));
  auto a = c.response(), b = c.response();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->result_int(), 200);
  EXPECT_EQ(b->result_int(), 404);
  // Connection: close is honoured.
  ASSERT_TRUE(c.get("/health", "Connection: close\r\n"));
  auto last = c.response();
  ASSERT_TRUE(last);
  EXPECT_FALSE(last->keep_alive());
  EXPECT_TRUE(c.closed_within(2s));
}

TEST(Http, IdleTimeoutClosesKeepAliveConnections) {
  ServerOptions o;
  o.idle_timeout = 300ms;
  TestServer ts(health_or_404, o);
  Client used(ts.port), silent(ts.port);
  ASSERT_TRUE(used.get("/health"));
  ASSERT_TRUE(used.response());
  auto t0 = Clock::now();
  EXPECT_TRUE(used.closed_within(5s));
  EXPECT_TRUE(silent.closed_within(5s));  // never sent a byte: the same idle timeout
  EXPECT_GE(Clock::now() - t0, 250ms);
  EXPECT_TRUE(eventually([&] { return ts.server->connections() == 0; }));
}

TEST(Http, RequestHeadMustArriveWithinTheReadTimeout) {
  ServerOptions o;
  o.read_timeout = 300ms;
  o.idle_timeout = 30s;
  TestServer ts(health_or_404, o);
  // Half a head, then silence: closed at the read timeout, long before the idle timeout.
  Client half(ts.port);
  auto t0 = Clock::now();
  ASSERT_TRUE(half.send("GET /health HTTP/1.1\r\nHost: loc"));
  EXPECT_TRUE(half.closed_within(5s));
  EXPECT_LT(Clock::now() - t0, 5s);
  // A byte every 50 ms does not keep a head alive: the timeout is for the whole head.
  Client dribble(ts.port);
  std::string head = "GET /health HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + std::string(200, 'a');
  bool closed = false;
  for (size_t i = 0; i < head.size() && !closed; ++i) {
    if (!dribble.send(head.substr(i, 1))) break;
    closed = dribble.closed_within(50ms);
  }
  EXPECT_TRUE(closed || dribble.closed_within(1s));
}

TEST(Http, BodiesOverTheRouteLimitAre413) {
  auto router = [](const Request& req) {
    Route r;
    r.body_limit = 1024;
    if (req.path == "/respond") {
      r.respond = [](Request& q) { return Response::json(200, std::to_string(q.body.size())); };
    } else if (req.path == "/consume") {
      r.consume = [](Request&, BodyReader& body) {
        char buf[256];
        size_t total = 0;
        for (;;) {
          auto n = body.read(buf, sizeof buf);
          if (!n) return Response::error(n.error().code() == errc::limit_exceeded ? 413 : 400, n.error().message());
          if (*n == 0) return Response::json(200, std::to_string(total));
          total += *n;
        }
      };
    }
    return r;
  };
  TestServer ts(router);
  auto post = [](const std::string& path, size_t size) {
    return "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(size) + "\r\n\r\n" +
           std::string(size, 'b');
  };
  auto chunked = [](const std::string& path, size_t chunks) {
    std::string s = "POST " + path + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (size_t i = 0; i < chunks; ++i) s += "200\r\n" + std::string(512, 'c') + "\r\n";
    return s + "0\r\n\r\n";
  };
  for (std::string path : {"/respond", "/consume"}) {
    SCOPED_TRACE(path);
    {  // within the limit, twice on one connection
      Client c(ts.port);
      for (int i = 0; i < 2; ++i) {
        ASSERT_TRUE(c.send(post(path, 1000)));
        auto res = c.response();
        ASSERT_TRUE(res);
        EXPECT_EQ(res->result_int(), 200);
        EXPECT_EQ(res->body(), "1000");
      }
      ASSERT_TRUE(c.send(chunked(path, 2)));
      auto res = c.response();
      ASSERT_TRUE(res);
      EXPECT_EQ(res->body(), "1024");
    }
    {  // a declared length over the limit: 413 before any body is read, then a lingering close
      Client c(ts.port);
      ASSERT_TRUE(c.send(post(path, 64 * 1024)));
      auto res = c.response();
      ASSERT_TRUE(res);
      EXPECT_EQ(res->result_int(), 413);
      EXPECT_NE(res->body().find("request body larger than"), std::string::npos) << res->body();
      EXPECT_FALSE(res->keep_alive());
      EXPECT_TRUE(c.closed_within(5s));
    }
    {  // a chunked body that grows past the limit
      Client c(ts.port);
      ASSERT_TRUE(c.send(chunked(path, 8)));
      auto res = c.response();
      ASSERT_TRUE(res);
      EXPECT_EQ(res->result_int(), 413);
      EXPECT_TRUE(c.closed_within(5s));
    }
  }
}

TEST(Http, BodiesThatComeAfterTheHeadAreReadWithAReadTimeout) {
  ServerOptions o;
  o.read_timeout = 300ms;
  TestServer ts(
      [](const Request&) {
        Route r;
        r.body_limit = 1024;
        r.respond = [](Request& q) { return Response::json(200, std::to_string(q.body.size())); };
        return r;
      },
      o);
  {  // in pieces, each within the read timeout: served
    Client c(ts.port);
    ASSERT_TRUE(c.send("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"));
    for (int i = 0; i < 10; ++i) {
      std::this_thread::sleep_for(50ms);
      ASSERT_TRUE(c.send(std::string(100, 'p')));
    }
    auto res = c.response();
    ASSERT_TRUE(res);
    EXPECT_EQ(res->result_int(), 200);
    EXPECT_EQ(res->body(), "1000");
  }
  {  // chunks that grow past the limit after the head: 413
    Client c(ts.port);
    ASSERT_TRUE(c.send("POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"));
    std::optional<http::response<http::string_body>> res;
    for (int i = 0; i < 8; ++i) {
      std::this_thread::sleep_for(20ms);
      if (!c.send("200\r\n" + std::string(512, 'c') + "\r\n")) break;
    }
    res = c.response();
    ASSERT_TRUE(res);
    EXPECT_EQ(res->result_int(), 413);
  }
  {  // a body that stops coming: 400 at the read timeout, and the connection ends
    Client c(ts.port);
    ASSERT_TRUE(c.send("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789"));
    auto t0 = Clock::now();
    auto res = c.response();
    ASSERT_TRUE(res);
    EXPECT_EQ(res->result_int(), 400);
    EXPECT_LT(Clock::now() - t0, 5s);
    EXPECT_TRUE(c.closed_within(2s));
  }
}

TEST(Http, ExpectContinueIsAnswered) {
  TestServer ts([](const Request&) {
    Route r;
    r.respond = [](Request& q) { return Response::json(200, q.body); };
    return r;
  });
  Client c(ts.port);
  ASSERT_TRUE(c.send("POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"));
  EXPECT_EQ(c.read_raw(25), "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(c.send("hello"));
  auto res = c.response();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->body(), "hello");
}

// `slow` asks for `path` and reads nothing, so the answer sticks in the sockets' buffers; then
// another client's /health must still be answered (on a one-thread pool: only if the stuck
// answer holds no thread).
::testing::AssertionResult stalled_yet_health_is_answered(int port, Client& slow, const std::string& path) {
  if (!slow.get(path)) return ::testing::AssertionFailure() << "could not send " << path;
  std::this_thread::sleep_for(300ms);
  Client quick(port);
  if (!quick.get("/health")) return ::testing::AssertionFailure() << "could not send /health";
  auto res = quick.response();
  if (!res || res->result_int() != 200) return ::testing::AssertionFailure() << "/health was not answered";
  return ::testing::AssertionSuccess();
}

TEST(Http, StreamsAreChunkedOrTheirDeclaredLength) {
  TestServer ts([](const Request& req) {
    Route r;
    std::string path = req.path;
    r.stream = [path](Request&, Stream& s) {
      if (path == "/chunks") {
        s.begin(200, {{"Content-Type", "text/plain"}});
        for (int i = 0; i < 3; ++i) s.write("part" + std::to_string(i) + ";");
      } else if (path == "/exact") {
        s.begin(200, {{"Content-Length", "10"}});
        s.write("0123456789");
      } else {  // declares 10, sends 5: only a close can tell the client
        s.begin(200, {{"Content-Length", "10"}});
        s.write("01234");
      }
    };
    return r;
  });
  Client c(ts.port);
  ASSERT_TRUE(c.get("/chunks"));
  auto a = c.response();
  ASSERT_TRUE(a);
  EXPECT_TRUE(a->chunked());
  EXPECT_EQ(a->body(), "part0;part1;part2;");
  ASSERT_TRUE(c.get("/exact"));
  auto b = c.response();
  ASSERT_TRUE(b);
  EXPECT_FALSE(b->chunked());
  EXPECT_EQ(b->body(), "0123456789");
  ASSERT_TRUE(c.get("/short"));
  EXPECT_FALSE(c.response());  // the connection ends before the body does
  EXPECT_TRUE(c.closed_within(2s));
}

TEST(Http, PeerGoneSeesTheClientLeave) {
  std::atomic<bool> saw_gone{false};
  TestServer ts([&](const Request&) {
    Route r;
    r.stream = [&](Request&, Stream& s) {
      s.begin(200, {});
      s.write("hi");
      for (int i = 0; i < 500 && !saw_gone; ++i) {  // 5 s at most
        if (s.peer_gone()) saw_gone = true;
        std::this_thread::sleep_for(10ms);
      }
    };
    return r;
  });
  {
    Client c(ts.port);
    ASSERT_TRUE(c.get("/"));
    EXPECT_FALSE(c.read_raw(64).empty());
  }
  EXPECT_TRUE(eventually([&] { return saw_gone.load(); }));
}

TEST(Http, ABlockedHandlerDoesNotHoldUpOthers) {
  std::atomic<bool> release{false}, slow_started{false};
  TestServer ts([&](const Request& req) {
    Route r;
    if (req.path == "/slow")
      r.respond = [&](Request&) {
        slow_started = true;
        eventually([&] { return release.load(); }, 10s);
        return Response::empty(204);
      };
    else
      r = health_or_404(req);
    return r;
  });
  Client slow(ts.port), quick(ts.port);
  ASSERT_TRUE(slow.get("/slow"));
  ASSERT_TRUE(eventually([&] { return slow_started.load(); }));
  ASSERT_TRUE(quick.get("/health"));
  auto res = quick.response();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 200);
  release = true;
  auto s = slow.response();
  ASSERT_TRUE(s);
  EXPECT_EQ(s->result_int(), 204);
}

TEST(Http, WhatTheRouterCapturedIsLetGoOfOnThePoolNeverOnTheLoop) {
  // A route may hold the last reference to something whose destructor blocks (a process hub
  // joins its thread): that must not happen on the loop thread.
  struct Sentinel {
    std::function<void(std::string)> report;
    ~Sentinel() {
      char name[32] = {};
      ::pthread_getname_np(::pthread_self(), name, sizeof name);
      report(name);
    }
  };
  std::mutex mu;
  std::vector<std::string> where;
  auto make = [&] {
    auto s = std::make_shared<Sentinel>();
    s->report = [&](std::string n) {
      std::lock_guard l(mu);
      where.push_back(n);
    };
    return s;
  };
  TestServer ts([&](const Request& req) {
    Route r;
    r.body_limit = 16;
    auto held = make();
    if (req.path == "/stream") {
      r.stream = [held](Request&, Stream& s) {
        s.begin(200, {});
        s.write("x");
      };
    } else {
      r.respond = [held](Request&) { return Response::empty(204); };
    }
    return r;
  });
  Client c(ts.port);
  ASSERT_TRUE(c.get("/respond"));
  ASSERT_TRUE(c.response());
  ASSERT_TRUE(c.get("/stream"));
  ASSERT_TRUE(c.response());
  // A body refused by the loop while it reads it (it came after the head).
  ASSERT_TRUE(c.send("POST /respond HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"));
  std::this_thread::sleep_for(50ms);
  ASSERT_TRUE(c.send("20\r\n" + std::string(32, 'z') + "\r\n"));
  auto res = c.response();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 413);
  ASSERT_TRUE(eventually([&] {
    std::lock_guard l(mu);
    return where.size() == 3;
  }));
  std::lock_guard l(mu);
  for (auto& w : where) EXPECT_TRUE(w.starts_with("brig-work-")) << w;
}

TEST(Http, ConnectionsPastTheBoundAreClosed) {
  ServerOptions o;
  o.max_connections = 2;
  TestServer ts(health_or_404, o);
  Client a(ts.port), b(ts.port);
  for (Client* c : {&a, &b}) {
    ASSERT_TRUE(c->get("/health"));
    ASSERT_TRUE(c->response());
  }
  Client third(ts.port);
  EXPECT_TRUE(third.closed_within(5s));
  ASSERT_TRUE(a.get("/health"));
  EXPECT_TRUE(a.response());
}

// What a test pushes into a pull route's source, from any thread.
struct Feed {
  std::mutex mu;
  std::deque<std::string> items;
  bool end = false;
  std::function<void()> wake;
  std::atomic<bool> gone{false};
  std::string gone_on;  // the thread that let go of the source (under mu)

  void push(std::string item, bool last = false) {
    std::function<void()> w;
    {
      std::lock_guard l(mu);
      items.push_back(std::move(item));
      end = last;
      w = std::move(wake);
      wake = nullptr;
    }
    if (w) w();
  }
};

class FeedSource final : public Source {
 public:
  FeedSource(std::shared_ptr<Feed> feed, std::chrono::milliseconds idle) : feed_(std::move(feed)), idle_(idle) {}
  ~FeedSource() override {
    char name[32] = {};
    ::pthread_getname_np(::pthread_self(), name, sizeof name);
    std::lock_guard l(feed_->mu);
    feed_->gone_on = name;
    feed_->gone = true;
  }
  Next next(bool idle, std::function<void()> wake) override {
    std::lock_guard l(feed_->mu);
    Next n;
    while (!feed_->items.empty()) {
      n.bytes += feed_->items.front();
      feed_->items.pop_front();
    }
    n.end = feed_->end;
    if (n.bytes.empty() && !n.end) {
      if (idle) n.bytes = "ping;";
      else feed_->wake = std::move(wake);
    }
    return n;
  }
  std::chrono::milliseconds idle_interval() const override { return idle_; }

 private:
  std::shared_ptr<Feed> feed_;
  std::chrono::milliseconds idle_;
};

// Reads a chunked body's bytes until `want` is in it (or the timeout).
bool read_until(Client& c, std::string& got, std::string_view want, std::chrono::milliseconds limit = 5s) {
  auto until = Clock::now() + limit;
  while (got.find(want) == std::string::npos && Clock::now() < until) {
    std::string part = c.read_raw(4096);
    if (part.empty()) return false;
    got += part;
  }
  return got.find(want) != std::string::npos;
}

TEST(Http, PullStreamsHoldNoThreadWhileTheyWait) {
  // One pool thread, 50 streams waiting at once: if a waiting stream held a thread, /health
  // could not be answered, and the streams could not all have begun.
  constexpr int kStreams = 50;
  std::mutex mu;
  std::vector<std::shared_ptr<Feed>> feeds;
  TestServer ts(
      [&](const Request& req) {
        if (req.path != "/events") return health_or_404(req);
        auto feed = std::make_shared<Feed>();
        {
          std::lock_guard l(mu);
          feeds.push_back(feed);
        }
        Route r;
        r.pull = [feed](Request&) {
          return Pull{Response{200, {{"Content-Type", "text/plain"}}, ""}, std::make_shared<FeedSource>(feed, 1h)};
        };
        return r;
      },
      {}, EventLoop::Options{.max_blocking_threads = 1});
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < kStreams; ++i) {
    clients.push_back(std::make_unique<Client>(ts.port));
    ASSERT_TRUE(clients.back()->get("/events"));
  }
  ASSERT_TRUE(eventually([&] {
    std::lock_guard l(mu);
    return feeds.size() == kStreams;
  }));
  Client quick(ts.port);
  ASSERT_TRUE(quick.get("/health"));
  auto res = quick.response();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 200);
  // Each stream gets what its feed is given, pushed from this thread, then its end; the
  // connection then serves the next request.
  for (int i = 0; i < kStreams; ++i) feeds[i]->push("hello " + std::to_string(i) + ";");
  for (int i = 0; i < kStreams; ++i) feeds[i]->push("bye;", /*last=*/true);
  for (int i = 0; i < kStreams; ++i) {
    auto r = clients[i]->response();
    ASSERT_TRUE(r) << "stream " << i;
    EXPECT_TRUE(r->chunked());
    EXPECT_EQ(r->body(), "hello " + std::to_string(i) + ";bye;");
  }
  ASSERT_TRUE(clients[0]->get("/health"));
  EXPECT_TRUE(clients[0]->response());
  for (auto& f : feeds) EXPECT_TRUE(eventually([&] { return f->gone.load(); }));
}

TEST(Http, APullStreamPingsWhenIdleAndItsSourceGoesWithTheClientOnThePool) {
  auto feed = std::make_shared<Feed>();
  TestServer ts([&](const Request&) {
    Route r;
    r.pull = [feed](Request&) { return Pull{Response{200, {}, ""}, std::make_shared<FeedSource>(feed, 100ms)}; };
    return r;
  });
  {
    Client c(ts.port);
    ASSERT_TRUE(c.get("/events"));
    std::string got;
    ASSERT_TRUE(read_until(c, got, "ping;"));  // nothing to say: a ping after the idle interval
    feed->push("data;");
    ASSERT_TRUE(read_until(c, got, "data;"));
    ASSERT_TRUE(read_until(c, got, "data;\r\n5\r\nping;"));  // and pings again
    EXPECT_FALSE(feed->gone);
  }
  // The client left while the stream waited: seen without a write, the source let go of on a
  // pool thread.
  ASSERT_TRUE(eventually([&] { return feed->gone.load(); }, 2s));
  std::lock_guard l(feed->mu);
  EXPECT_TRUE(feed->gone_on.starts_with("brig-work-")) << feed->gone_on;
  EXPECT_TRUE(eventually([&] { return ts.server->connections() == 0; }));
}

TEST(Http, APullStreamToAClientThatStopsReadingStopsPulling) {
  // The source always has 64 KiB more; the client reads nothing: the loop stops asking once
  // the sockets' buffers are full, and memory stays flat.
  struct Endless final : Source {
    std::atomic<uint64_t>* pulled;
    Next next(bool, std::function<void()>) override {
      *pulled += 64 * 1024;
      return Next{std::string(64 * 1024, 'x'), false};
    }
  };
  std::atomic<uint64_t> pulled{0};
  TestServer ts([&](const Request&) {
    Route r;
    r.pull = [&](Request&) {
      auto s = std::make_shared<Endless>();
      s->pulled = &pulled;
      return Pull{Response{200, {}, ""}, s};
    };
    return r;
  });
  const size_t rss_before = rss_kib();
  Client c(ts.port, 10s, 64 * 1024);
  ASSERT_TRUE(c.get("/endless"));
  std::this_thread::sleep_for(1s);
  const uint64_t stalled_at = pulled;
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(pulled.load(), stalled_at);
  EXPECT_LT(stalled_at, 32u << 20);
  if (kMeasuresMemory) EXPECT_LT(rss_kib() - rss_before, 16u * 1024) << "KiB";
  // Reading resumes it (within what the buffers held, and bounded in time).
  uint64_t read = 0;
  auto until = Clock::now() + 10s;
  while (pulled.load() == stalled_at && Clock::now() < until && read < stalled_at + (64u << 20)) {
    std::string part = c.read_raw(1 << 20);
    if (part.empty()) break;
    read += part.size();
  }
  EXPECT_GT(pulled.load(), stalled_at) << "after reading " << read << " bytes";
}

TEST(Http, AFileGoesBySendfileAsTheClientReadsHoldingNoThread) {
  // 16 MiB of a known pattern in a file; a client that stalls holds no pool thread (one only:
  // /health is answered meanwhile), then gets every byte; a file that shrank after the answer
  // was promised ends the connection instead of a wrong body.
  char tmpl[] = "/tmp/brig-http-file-XXXXXX";
  int fd = ::mkostemp(tmpl, O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ::unlink(tmpl);
  std::string data(16 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>('a' + (i * 7919) % 26);
  ASSERT_EQ(::pwrite(fd, data.data(), data.size(), 0), static_cast<ssize_t>(data.size()));
  TestServer ts(
      [&](const Request& req) {
        if (req.path != "/file" && req.path != "/short") return health_or_404(req);
        Route r;
        bool shrunk = req.path == "/short";
        r.pull = [&, shrunk](Request&) {
          Pull p;
          p.head = Response{200, {{"Content-Type", "application/octet-stream"}}, ""};
          p.file = Fd(::open(("/proc/self/fd/" + std::to_string(fd)).c_str(), O_RDONLY | O_CLOEXEC));
          p.file_bytes = shrunk ? data.size() + 4096 : data.size();  // the file is 4 KiB short
          return p;
        };
        return r;
      },
      {}, EventLoop::Options{.max_blocking_threads = 1});
  Client slow(ts.port, 10s, 64 * 1024);
  ASSERT_TRUE(stalled_yet_health_is_answered(ts.port, slow, "/file"));
  auto res = slow.response(64 << 20);
  ASSERT_TRUE(res);
  EXPECT_FALSE(res->chunked());
  EXPECT_EQ(res->body().size(), data.size());
  EXPECT_TRUE(res->body() == data);
  ASSERT_TRUE(slow.get("/health"));  // kept alive
  EXPECT_TRUE(slow.response());
  ASSERT_TRUE(slow.get("/short"));
  EXPECT_FALSE(slow.response(64 << 20));  // the body ends before its length: the connection ends
  ::close(fd);
}

TEST(Http, AThousandIdleConnectionsCostNoThreadAndLittleMemory) {
  constexpr int kIdle = 1000;
  struct rlimit rl;
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &rl), 0);
  if (rl.rlim_cur < 2 * kIdle + 100) {  // both ends live in this process
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, 4 * kIdle);
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur < 2 * kIdle + 100) GTEST_SKIP() << "RLIMIT_NOFILE " << rl.rlim_cur << " is too low";
  // A small pool: if connections needed threads, they could not all be served.
  TestServer ts(health_or_404, {}, EventLoop::Options{.max_blocking_threads = 4});
  {
    Client warm(ts.port);
    ASSERT_TRUE(warm.get("/health"));
    ASSERT_TRUE(warm.response());
  }
  ASSERT_TRUE(eventually([&] { return ts.server->connections() == 0; }));
  const size_t threads_before = threads_in_process();
  const size_t rss_before = rss_kib();
  std::vector<std::unique_ptr<Client>> idle;
  for (int batch = 0; batch < kIdle / 100; ++batch) {
    size_t first = idle.size();
    for (int i = 0; i < 100; ++i) {
      idle.push_back(std::make_unique<Client>(ts.port));
      ASSERT_TRUE(idle.back()->ok());
      ASSERT_TRUE(idle.back()->get("/health"));
    }
    for (size_t i = first; i < idle.size(); ++i) {
      auto res = idle[i]->response();
      ASSERT_TRUE(res) << "connection " << i;
      ASSERT_EQ(res->result_int(), 200);
    }
  }
  EXPECT_EQ(ts.server->connections(), static_cast<size_t>(kIdle));
  const size_t rss_held = rss_kib();
  // Pool threads are the only new ones; connections have none.
  EXPECT_LE(threads_in_process(), threads_before + 4);
  // Both ends' memory is counted here; the server's part is well under 1 KiB a connection.
  // A thread (or a 64 KiB buffer) per connection would be hundreds of MiB... or at least tens.
  if (kMeasuresMemory) EXPECT_LT(rss_held - rss_before, 16u * 1024) << "KiB for " << kIdle << " idle connections";
  // Still serving: a new connection, and an old one woken up.
  Client fresh(ts.port);
  ASSERT_TRUE(fresh.get("/health"));
  auto res = fresh.response();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 200);
  ASSERT_TRUE(idle[kIdle / 2]->get("/health"));
  EXPECT_TRUE(idle[kIdle / 2]->response());
}

TEST(Http, AClientThatStopsReadingMakesTheHandlerWaitNotTheDaemonGrow) {
  constexpr size_t kChunk = 64 * 1024;
  constexpr size_t kChunks = 2048;  // 128 MiB
  std::atomic<uint64_t> accepted{0};
  std::atomic<bool> done{false};
  TestServer ts([&](const Request&) {
    Route r;
    r.stream = [&](Request&, Stream& s) {
      s.begin(200, {{"Content-Type", "application/octet-stream"}});
      const std::string chunk(kChunk, 'x');
      for (size_t i = 0; i < kChunks; ++i) {
        if (!s.write(chunk)) break;
        accepted += kChunk;
      }
      done = true;
    };
    return r;
  });
  const size_t rss_before = rss_kib();
  Client c(ts.port, 10s, 64 * 1024);
  ASSERT_TRUE(c.get("/big"));
  // The client reads nothing: the handler gets as far as the sockets' buffers, then waits.
  std::this_thread::sleep_for(1s);
  uint64_t stalled_at = accepted;
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(accepted.load(), stalled_at);
  EXPECT_FALSE(done);
  EXPECT_LT(stalled_at, 32u << 20);
  if (kMeasuresMemory) EXPECT_LT(rss_kib() - rss_before, 16u * 1024) << "KiB";
  // Reading resumes the stream, which then completes.
  size_t got = 0;
  std::string tail;
  auto until = Clock::now() + 60s;
  while (Clock::now() < until) {
    std::string part = c.read_raw(1 << 20);
    if (part.empty()) break;
    got += part.size();
    tail = (tail + part).substr((tail + part).size() > 16 ? (tail + part).size() - 16 : 0);
    if (tail.ends_with("\r\n0\r\n\r\n")) break;
  }
  EXPECT_GT(got, kChunk * kChunks);
  EXPECT_TRUE(tail.ends_with("\r\n0\r\n\r\n"));
  EXPECT_TRUE(eventually([&] { return done.load(); }));
  EXPECT_EQ(accepted.load(), kChunk * kChunks);
}

TEST(Http, AnAnswerTooBigForTheSocketDoesNotHoldAPoolThread) {
  // One pool thread only: if it waited for the slow client, /health could not be answered.
  TestServer ts(
      [](const Request& req) {
        Route r;
        if (req.path != "/big") return health_or_404(req);
        r.respond = [](Request&) { return Response::json(200, std::string(32 << 20, 'y')); };
        return r;
      },
      {}, EventLoop::Options{.max_blocking_threads = 1});
  Client slow(ts.port, 10s, 64 * 1024);
  ASSERT_TRUE(stalled_yet_health_is_answered(ts.port, slow, "/big"));
  auto big = slow.response(64 << 20);
  ASSERT_TRUE(big);
  EXPECT_EQ(big->body().size(), 32u << 20);
  ASSERT_TRUE(slow.get("/health"));  // and the connection carries on
  EXPECT_TRUE(slow.response());
}

TEST(Http, StopClosesIdleConnectionsAndEndsActiveStreamsAtTheGrace) {
  std::atomic<bool> handler_returned{false};
  TestServer ts([&](const Request& req) {
    Route r;
    if (req.path != "/ticks") return health_or_404(req);
    r.stream = [&](Request&, Stream& s) {
      s.begin(200, {});
      for (int i = 0; i < 1000; ++i) {  // 20 s, far past the grace, unless a write fails
        if (!s.write("tick\n")) break;
        std::this_thread::sleep_for(20ms);
      }
      handler_returned = true;
    };
    return r;
  });
  Client idle(ts.port), streaming(ts.port);
  ASSERT_TRUE(idle.get("/health"));
  ASSERT_TRUE(idle.response());
  ASSERT_TRUE(streaming.get("/ticks"));
  ASSERT_FALSE(streaming.read_raw(64).empty());
  auto t0 = Clock::now();
  ts.stop(500ms);  // run() returned: joined
  auto took = Clock::now() - t0;
  EXPECT_TRUE(handler_returned);
  EXPECT_GE(took, 450ms);   // it waited for the stream...
  EXPECT_LT(took, 2500ms);  // ...no longer than the grace and one tick
  EXPECT_TRUE(idle.closed_within(0ms));
  EXPECT_EQ(ts.server->connections(), 0u);
  // New connections are refused.
  Client late(ts.port);
  EXPECT_TRUE(!late.ok() || late.closed_within(1s));
}

TEST(Http, StopLetsARequestInFlightFinish) {
  std::atomic<bool> started{false};
  TestServer ts([&](const Request&) {
    Route r;
    r.respond = [&](Request&) {
      started = true;
      std::this_thread::sleep_for(300ms);
      return Response::json(200, "\"done\"");
    };
    return r;
  });
  Client c(ts.port);
  ASSERT_TRUE(c.get("/"));
  ASSERT_TRUE(eventually([&] { return started.load(); }));
  auto t0 = Clock::now();
  std::thread stopper([&] { ts.stop(5s); });
  auto res = c.response();
  stopper.join();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 200);
  EXPECT_FALSE(res->keep_alive());  // told the server is closing
  EXPECT_LT(Clock::now() - t0, 3s);
}

TEST(Http, StopBeforeRunAndTwice) {
  EventLoop loop;
  auto s = HttpServer::listen(loop, ServerOptions{.listen = "127.0.0.1:0"}, health_or_404, nullptr);
  ASSERT_TRUE(s);
  (*s)->stop(1s);
  (*s)->stop(1s);
  (*s)->run();  // returns at once: already stopped
  EXPECT_FALSE(HttpServer::listen(loop, ServerOptions{.listen = "nope"}, health_or_404, nullptr));
}


// ---- tunnels (Route::tunnel): a sandbox port's connection, here a plain loopback server ----

// An upstream server on an ephemeral loopback port; the test drives each accepted connection
// with raw reads and writes, each bounded by a timeout.
struct Upstream {
  int lfd = -1;
  int port = 0;
  Upstream() {
    lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(lfd, reinterpret_cast<sockaddr*>(&a), sizeof a);  // SAFETY: sockaddr_in
    ::listen(lfd, 16);
    socklen_t len = sizeof a;
    ::getsockname(lfd, reinterpret_cast<sockaddr*>(&a), &len);  // SAFETY: sockaddr_in
    port = ntohs(a.sin_port);
  }
  ~Upstream() { ::close(lfd); }
  // The next connection, or -1 after `limit`.
  int accept(std::chrono::milliseconds limit = 5s) {
    struct pollfd p = {lfd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(limit.count())) <= 0) return -1;
    return ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
  }
};

// Connects to 127.0.0.1:port (blocking), as a tunnel route's upstream.
Fd connect_to(int port) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  struct sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return Fd();  // SAFETY: sockaddr_in
  return fd;
}

// Raw bytes from `fd` until `marker` has arrived (or `n` bytes, or EOF, or the timeout).
std::string recv_until(int fd, std::string_view marker, size_t n = SIZE_MAX, std::chrono::milliseconds limit = 5s) {
  std::string out;
  auto until = Clock::now() + limit;
  char buf[65536];
  while (Clock::now() < until && out.size() < n && (marker.empty() || out.find(marker) == std::string::npos)) {
    struct pollfd p = {fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    ssize_t r = ::recv(fd, buf, std::min(sizeof buf, n - out.size()), 0);
    if (r <= 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  return out;
}

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// True if `fd` reads EOF (or a reset) within `limit`, with no byte before it.
bool eof_within(int fd, std::chrono::milliseconds limit) {
  struct pollfd p = {fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(limit.count())) <= 0) return false;
  char c;
  ssize_t n = ::recv(fd, &c, 1, MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

HttpServer::Router tunnel_to(int port, std::optional<std::string> host = std::nullopt, bool one_exchange = false) {
  return [=](const Request& req) {
    Route r;
    if (req.path == "/refused") {
      r.tunnel = [](Request&) {
        Tunnel t;
        t.refusal = Response::json(502, "{\"message\":\"port is not open\"}");
        return t;
      };
      return r;
    }
    r.tunnel = [=](Request&) {
      Tunnel t;
      t.upstream = connect_to(port);
      t.host = host;
      t.one_exchange = one_exchange;
      t.unanswered = Response::json(502, "{\"message\":\"port is not open\"}");
      return t;
    };
    return r;
  };
}

TEST(Tunnel, AnUpstreamThatEndsBeforeItsFirstByteIsTheTunnelsAnswerNotABareClose) {
  // A server that accepts and closes (it was going away as the request came: a listener being
  // closed) has not answered: the client gets the route's answer for that, then the close.
  // One that said anything is passed on as it is.
  Upstream up;
  TestServer ts(tunnel_to(up.port));
  for (bool reset : {false, true}) {
    Client c(ts.port);
    ASSERT_TRUE(c.get("/going"));
    int u = up.accept();
    ASSERT_GE(u, 0);
    if (reset) {
      struct linger l = {1, 0};  // close with a reset
      ::setsockopt(u, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    ::close(u);
    auto res = c.response();
    ASSERT_TRUE(res) << (reset ? "reset" : "closed");
    EXPECT_EQ(res->result_int(), 502);
    EXPECT_EQ(res->body(), "{\"message\":\"port is not open\"}");
    EXPECT_FALSE(res->keep_alive());
    EXPECT_TRUE(eof_within(c.fd(), 2s));
  }
  Client c(ts.port);
  ASSERT_TRUE(c.get("/partial"));
  int u = up.accept();
  ASSERT_GE(u, 0);
  ASSERT_FALSE(recv_until(u, "\r\n\r\n").empty());
  ASSERT_TRUE(send_all(u, "HTTP/1.1 200"));
  ::close(u);
  EXPECT_EQ(recv_until(c.fd(), "", SIZE_MAX, 2s), "HTTP/1.1 200");
}

TEST(Tunnel, KeepAliveRequestsAndAChunkedBodyGoThroughAsTheyAre) {
  Upstream up;
  TestServer ts(tunnel_to(up.port, "masked:3000"));
  Client c(ts.port);
  // The head, and the first bytes of a body, in one write.
  ASSERT_TRUE(c.send("POST /a?x=1 HTTP/1.1\r\nHost: 3000-x.localhost\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"));
  int u = up.accept();
  ASSERT_GE(u, 0);
  std::string got = recv_until(u, "hello\r\n");
  EXPECT_TRUE(got.starts_with("POST /a?x=1 HTTP/1.1\r\n")) << got;
  EXPECT_NE(got.find("Host: masked:3000\r\n"), std::string::npos) << got;
  EXPECT_EQ(got.find("3000-x.localhost"), std::string::npos) << got;
  EXPECT_NE(got.find("Transfer-Encoding: chunked\r\n"), std::string::npos) << got;
  EXPECT_TRUE(got.ends_with("\r\n\r\n5\r\nhello\r\n")) << got;
  // The rest of the body comes later, untouched.
  ASSERT_TRUE(c.send("6\r\n world\r\n0\r\n\r\n"));
  EXPECT_EQ(recv_until(u, "0\r\n\r\n"), "6\r\n world\r\n0\r\n\r\n");
  ASSERT_TRUE(send_all(u, "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"));
  auto res = c.response();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 201);
  EXPECT_EQ(res->body(), "ok");
  EXPECT_TRUE(res->keep_alive());
  // The next request on the connection goes to the same upstream connection, as it was sent.
  ASSERT_TRUE(c.get("/b"));
  EXPECT_EQ(recv_until(u, "\r\n\r\n"), "GET /b HTTP/1.1\r\nHost: localhost\r\n\r\n");
  ASSERT_TRUE(send_all(u, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye"));
  auto second = c.response();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->body(), "bye");
  ::close(u);
}

TEST(Tunnel, APlainTunnelParsesNothingTheUpstreamSendsAndHoldsNothingBack) {
  Upstream up;
  TestServer ts(tunnel_to(up.port));
  Client c(ts.port);
  ASSERT_TRUE(c.get("/"));
  int u = up.accept();
  ASSERT_GE(u, 0);
  ASSERT_FALSE(recv_until(u, "\r\n\r\n").empty());
  // Half a head, then a byte at a time: each part reaches the client as it comes.
  ASSERT_TRUE(send_all(u, "HTTP/1.1 200 OK\r\nX-Slow: "));
  EXPECT_EQ(recv_until(c.fd(), "X-Slow: ", SIZE_MAX, 2s), "HTTP/1.1 200 OK\r\nX-Slow: ");
  ASSERT_TRUE(send_all(u, "1"));
  EXPECT_EQ(recv_until(c.fd(), "1", SIZE_MAX, 2s), "1");
  ::close(u);
}

TEST(Tunnel, AHalfCloseIsPassedOnAndTheOtherSideMayStillAnswer) {
  Upstream up;
  TestServer ts(tunnel_to(up.port));
  Client c(ts.port);
  ASSERT_TRUE(c.send("GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  int u = up.accept();
  ASSERT_GE(u, 0);
  ASSERT_FALSE(recv_until(u, "\r\n\r\n").empty());
  // The client is done sending: the upstream sees the end...
  ::shutdown(c.fd(), SHUT_WR);
  EXPECT_TRUE(eof_within(u, 5s));
  // ...and its answer still reaches the client, then its own end.
  ASSERT_TRUE(send_all(u, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nlate answer"));
  ::shutdown(u, SHUT_WR);
  std::string got = recv_until(c.fd(), "", SIZE_MAX, 2s);
  EXPECT_TRUE(got.ends_with("late answer")) << got;
  EXPECT_TRUE(eventually([&] { return ts.server->connections() == 0; }));
  ::close(u);
}

TEST(Tunnel, OneExchangeTellsBothSidesTheConnectionEnds) {
  Upstream up;
  TestServer ts(tunnel_to(up.port, std::nullopt, true));
  Client c(ts.port);
  ASSERT_TRUE(c.send("PUT /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"));
  int u = up.accept();
  ASSERT_GE(u, 0);
  std::string head = recv_until(u, "\r\n\r\n");
  EXPECT_NE(head.find("Connection: close\r\n"), std::string::npos) << head;
  // An interim answer goes on at once: the client waits for it to send the body.
  ASSERT_TRUE(send_all(u, "HTTP/1.1 100 Continue\r\n\r\n"));
  EXPECT_EQ(recv_until(c.fd(), "\r\n\r\n", SIZE_MAX, 2s), "HTTP/1.1 100 Continue\r\n\r\n");
  ASSERT_TRUE(c.send("body"));
  EXPECT_EQ(recv_until(u, "body"), "body");
  // The final answer is told the connection ends (the upstream did not say so).
  ASSERT_TRUE(send_all(u, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\n\r\nok"));
  auto res = c.response();
  ASSERT_TRUE(res);
  EXPECT_EQ(res->result_int(), 200);
  EXPECT_EQ(res->body(), "ok");
  EXPECT_FALSE(res->keep_alive());
  EXPECT_EQ((*res)[http::field::keep_alive], "");
  ::close(u);
  EXPECT_TRUE(c.closed_within(2s));
}

TEST(Tunnel, AnUpgradeBecomesARawStreamBothWays) {
  Upstream up;
  TestServer ts(tunnel_to(up.port, std::nullopt, true));
  Client c(ts.port);
  ASSERT_TRUE(c.send("GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"));
  int u = up.accept();
  ASSERT_GE(u, 0);
  std::string head = recv_until(u, "\r\n\r\n");
  EXPECT_NE(head.find("Connection: Upgrade\r\n"), std::string::npos) << head;  // left alone
  EXPECT_EQ(head.find("close"), std::string::npos) << head;
  std::string switching = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
  ASSERT_TRUE(send_all(u, switching + "server-first"));
  EXPECT_EQ(recv_until(c.fd(), "server-first", SIZE_MAX, 2s), switching + "server-first");
  for (int i = 0; i < 3; ++i) {
    std::string msg = "frame " + std::to_string(i);
    ASSERT_TRUE(c.send(msg));
    EXPECT_EQ(recv_until(u, msg), msg);
    ASSERT_TRUE(send_all(u, "echo " + msg));
    EXPECT_EQ(recv_until(c.fd(), "echo " + msg), "echo " + msg);
  }
  ::close(u);
  EXPECT_TRUE(eof_within(c.fd(), 2s));
}

TEST(Tunnel, ARefusalIsAnAnswerAndTheConnectionServesTheNextRequest) {
  Upstream up;
  std::vector<int> statuses;
  std::mutex mu;
  EventLoop loop;
  auto logged = [&](const Request&, int status, double) {
    std::lock_guard lock(mu);
    statuses.push_back(status);
  };
  auto s = HttpServer::listen(loop, ServerOptions{.listen = "127.0.0.1:0"}, tunnel_to(up.port), logged);
  ASSERT_TRUE(s);
  auto server = std::move(*s);
  std::thread runner([&] { server->run(); });
  int port = std::stoi(server->address().substr(server->address().rfind(':') + 1));
  {
    Client c(port);
    ASSERT_TRUE(c.get("/refused"));
    auto res = c.response();
    ASSERT_TRUE(res);
    EXPECT_EQ(res->result_int(), 502);
    EXPECT_TRUE(res->keep_alive());
    ASSERT_TRUE(c.get("/then"));
    int u = up.accept();
    ASSERT_GE(u, 0);
    EXPECT_EQ(recv_until(u, "\r\n\r\n"), "GET /then HTTP/1.1\r\nHost: localhost\r\n\r\n");
    ASSERT_TRUE(send_all(u, "HTTP/1.1 204 No Content\r\n\r\n"));
    auto second = c.response();
    ASSERT_TRUE(second);
    EXPECT_EQ(second->result_int(), 204);
    ::close(u);
    EXPECT_TRUE(eof_within(c.fd(), 2s));
  }
  // Each logged once: the refusal, and the tunnel (when it ended) with its first answer.
  // A head announcing a body larger than any Beast default still gives its status.
  {
    Client c(port);
    ASSERT_TRUE(c.get("/large"));
    int u = up.accept();
    ASSERT_GE(u, 0);
    ASSERT_FALSE(recv_until(u, "\r\n\r\n").empty());
    ASSERT_TRUE(send_all(u, "HTTP/1.0 200 OK\r\nContent-Length: 67108864\r\n\r\nfirst bytes"));
    EXPECT_EQ(recv_until(c.fd(), "first bytes", SIZE_MAX, 2s),
              "HTTP/1.0 200 OK\r\nContent-Length: 67108864\r\n\r\nfirst bytes");
    ::close(u);
  }
  EXPECT_TRUE(eventually([&] {
    std::lock_guard lock(mu);
    return statuses.size() == 3;
  }));
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(statuses, (std::vector<int>{502, 204, 200}));
  }
  server->stop(0ms);
  runner.join();
  loop.stop();
}

TEST(Tunnel, BytesStreamBothWaysThroughBoundedBuffers) {
  Upstream up;
  TestServer ts(tunnel_to(up.port));
  Client c(ts.port, 10s, 64 * 1024);
  ASSERT_TRUE(c.send("GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n"));
  int u = up.accept();
  ASSERT_GE(u, 0);
  ASSERT_FALSE(recv_until(u, "\r\n\r\n").empty());
  int small = 64 * 1024;
  ::setsockopt(u, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  // The upstream writes 128 MiB that the client does not read yet: the tunnel holds one
  // buffer, the kernel's socket buffers the rest, and the writer waits.
  constexpr size_t kTotal = 128u << 20;
  const size_t rss_before = rss_kib();
  std::atomic<size_t> written{0};
  std::thread writer([&] {
    std::string chunk(1 << 20, '\0');
    for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = static_cast<char>(i & 0xff);
    while (written < kTotal) {
      if (!send_all(u, chunk)) break;
      written += chunk.size();
    }
    ::shutdown(u, SHUT_WR);
  });
  std::this_thread::sleep_for(1s);
  size_t stalled = written;
  EXPECT_LT(stalled, 32u << 20);
  if (kMeasuresMemory) EXPECT_LT(rss_kib() - rss_before, 8u * 1024) << "KiB";
  // Reading lets it all through, byte for byte, then the end.
  size_t got = 0;
  bool exact = true;
  std::vector<char> buf(1 << 20);
  auto until = Clock::now() + 60s;
  while (Clock::now() < until) {
    struct pollfd p = {c.fd(), POLLIN, 0};
    if (::poll(&p, 1, 1000) <= 0) continue;
    ssize_t n = ::recv(c.fd(), buf.data(), buf.size(), 0);
    if (n <= 0) break;
    for (ssize_t i = 0; i < n; ++i) exact &= buf[i] == static_cast<char>((got + i) & 0xff);
    got += static_cast<size_t>(n);
  }
  writer.join();
  EXPECT_EQ(got, kTotal);
  EXPECT_TRUE(exact);
  ::close(u);
}

TEST(Tunnel, QuietTunnelsEndAtTheIdleTimeoutAndStopEndsTheRest) {
  Upstream up;
  ServerOptions o;
  o.tunnel_idle_timeout = 400ms;
  TestServer ts(tunnel_to(up.port), o);
  Client quiet(ts.port);
  ASSERT_TRUE(quiet.get("/"));
  int u = up.accept();
  ASSERT_GE(u, 0);
  ASSERT_FALSE(recv_until(u, "\r\n\r\n").empty());
  // Bytes keep it open past the timeout...
  for (int i = 0; i < 4; ++i) {
    std::this_thread::sleep_for(200ms);
    ASSERT_TRUE(send_all(u, "x"));
    EXPECT_EQ(recv_until(quiet.fd(), "x", 1, 2s), "x");
  }
  // ...silence ends it, on both sides.
  auto t0 = Clock::now();
  EXPECT_TRUE(eof_within(quiet.fd(), 3s));
  EXPECT_TRUE(eof_within(u, 3s));
  EXPECT_GE(Clock::now() - t0, 300ms);
  ::close(u);
  // A busy tunnel ends with stop() at its grace.
  Client busy(ts.port);
  ASSERT_TRUE(busy.get("/"));
  int u2 = up.accept();
  ASSERT_GE(u2, 0);
  ASSERT_FALSE(recv_until(u2, "\r\n\r\n").empty());
  t0 = Clock::now();
  ts.stop(100ms);
  EXPECT_LT(Clock::now() - t0, 3s);
  EXPECT_TRUE(eof_within(busy.fd(), 2s));
  EXPECT_TRUE(eof_within(u2, 2s));
  ::close(u2);
}

}  // namespace
}  // namespace brig::server
