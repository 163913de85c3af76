// The HTTP/1.1 layer of `brig serve`, on the daemon's EventLoop (Boost.Asio + Beast).
//
// The loop thread owns the listening socket and every connection: it accepts, waits on idle
// keep-alive connections (no thread and no buffer each: a pending wait and a timer), reads
// request heads and the bodies of `respond`/`stream` routes, and sends what of an answer the
// socket did not take at once. The router and the handlers run on the loop's blocking pool, since
// they may block (a sandbox create, a call to brig-init). A stream that waits for what it sends
// (a process's output) is a pull route: the loop writes it as its Source has bytes, and no
// thread is held meanwhile. A pool thread sends an answer, a Stream write or a BodyReader read
// straight on the socket while it can, and hands the wait to the loop when it cannot: a full
// send buffer (backpressure: the handler waits) or an empty receive buffer, each wait bounded
// by the read timeout. Every body has a size cap.
// A tunnel route (a sandbox's port) hands its connection to the loop as a byte tunnel to an
// upstream socket (see Tunnel).
//
// Thread safety: listen/run/stop from any thread but the loop's and the pool's; the Router and
// handlers run on pool threads, concurrently; a Stream or BodyReader belongs to the one handler
// call it was given to.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "base/event_loop.h"
#include "base/fd.h"
#include "base/result.h"

namespace brig::server {

// JSON as the server sends it: compact, invalid UTF-8 replaced rather than thrown on (strings
// from a sandbox are not trusted to be UTF-8).
std::string dump(const nlohmann::json& j);

struct Request {
  std::string method;
  std::string target;                         // as received (path + query)
  std::string path;                           // percent-decoded path
  std::multimap<std::string, std::string> query;  // percent-decoded
  std::map<std::string, std::string> headers;     // lower-case names
  std::string body;
  std::string remote;
  std::string request_id;

  std::string header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? "" : it->second;
  }
  std::string param(const std::string& name) const {
    auto it = query.find(name);
    return it == query.end() ? "" : it->second;
  }
  bool has_param(const std::string& name) const { return query.count(name) > 0; }
};

struct Response {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  static Response json(int status, std::string body);
  static Response error(int status, std::string_view message);  // {"code":status,"message":...}
  static Response empty(int status = 204);
};

// A response body being written: chunked, or exactly the Content-Length given to begin (a
// shorter body then ends the connection). Every write is on the wire (in the kernel's send
// buffer) when it returns; while the client does not read, write waits (up to the read timeout,
// then fails), so a slow client costs no memory. Not for the loop thread.
class Stream {
 public:
  virtual ~Stream() = default;
  // Sends status and headers (once, before the first write).
  virtual bool begin(int status, const std::vector<std::pair<std::string, std::string>>& headers) = 0;
  // false once the client is gone.
  virtual bool write(std::string_view data) = 0;
  virtual bool finish() = 0;
  // True if the peer closed its side (checked without blocking).
  virtual bool peer_gone() = 0;
};

// A response body that the loop pulls as the socket takes it (Route::pull): no thread waits
// while it has nothing to send, and nothing queues while the client reads slowly. Its methods
// are called one at a time, on the loop thread (or on the one thread serving a local request,
// see local_request.h), and must not block. The server lets go of a source on a pool thread
// (what it holds may block as it goes).
class Source {
 public:
  virtual ~Source() = default;
  struct Next {
    std::string bytes;  // to send now (empty: nothing now)
    bool end = false;   // nothing follows
  };
  // The next bytes. With nothing now and no end, the source calls `wake` (once, from any thread)
  // when it may have more; `idle` is true when nothing went out for idle_interval() (time for a
  // keep-alive ping, if the protocol has one).
  virtual Next next(bool idle, std::function<void()> wake) = 0;
  virtual std::chrono::milliseconds idle_interval() const { return std::chrono::hours(24); }
};

// What a pull route answers: the status and headers of a chunked stream from `source`; or of
// `file_bytes` of `file` from its offset (a Content-Length answer, moved by sendfile(2) from the
// file to the socket as the socket takes it: no thread, no copy in user space; a file that has
// shrunk meanwhile ends the connection, the length cannot be taken back); or, with neither,
// `head` as the whole answer (an error before the stream began).
struct Pull {
  Response head;
  std::shared_ptr<Source> source;
  Fd file;
  uint64_t file_bytes = 0;
};

// A request body read as the handler asks for it, so that it can go straight to an fd.
class BodyReader {
 public:
  virtual ~BodyReader() = default;
  // Up to `cap` bytes into `buf`; 0 at the end of the body. errc::limit_exceeded past the
  // route's body_limit; other errors when the client stalls (no byte within the read timeout)
  // or breaks the framing. Not for the loop thread.
  virtual Result<size_t> read(char* buf, size_t cap) = 0;
};

// What a tunnel route (Route::tunnel) hands the connection over to: an upstream socket (a
// sandbox's port). The request head goes upstream re-serialized (with `host` as its Host, if
// set), then whatever the client sent after it; from then on bytes flow both ways as they come,
// on the loop, by splice(2) through one bounded pipe per direction (no user-space copy), until
// both sides have closed (a half-close is passed on), either fails, or no byte moved either way
// for the idle timeout. Keep-alive, chunked bodies and WebSocket upgrades pass through
// untouched, and the router is not asked again for later requests on that connection: it
// belongs to the upstream. Logged once, when it ends, with the first response's status.
struct Tunnel {
  Fd upstream;                      // a connected stream socket; not valid: answer `refusal`
  Response refusal;
  std::optional<std::string> host;  // the Host header sent upstream instead of the client's
  // One request and its response only: the request goes with "Connection: close" (unless it
  // asks for an upgrade), the response's head gets "Connection: close" (unless it is a 101),
  // and the client's connection ends with the upstream's. For routes that a client's
  // connection pool cannot tell apart from others on this server (routing by headers): a
  // kept-alive connection must never carry a request meant for elsewhere into the tunnel.
  bool one_exchange = false;
  // What the client is told, instead of a bare close, when the upstream ends (or resets) before
  // sending a byte: its server went away between the connect and the request.
  std::optional<Response> unanswered;
};

// What a handler decides after seeing the request's headers: how big a body it accepts.
struct Route {
  size_t body_limit = 1 << 20;
  // Either answers with a Response once the body is in `Request::body`...
  std::function<Response(Request&)> respond;
  // ...or reads the body itself (Request::body stays empty) and then answers...
  std::function<Response(Request&, BodyReader&)> consume;
  // ...or streams (returns when the stream is over)...
  std::function<void(Request&, Stream&)> stream;
  // ...or sets up a stream the loop pulls (returns at once; the stream outlives the call: for
  // streams that wait, e.g. a process's output, which would otherwise hold a thread)...
  std::function<Pull(Request&)> pull;
  // ...or, before any of the body is read, takes the connection over as a byte tunnel (may
  // block, e.g. to connect; body_limit does not apply: the body streams through).
  std::function<Tunnel(Request&)> tunnel;
};

struct ServerOptions {
  std::string listen = "127.0.0.1:49982";
  // Open connections at most (idle ones included); one more is accepted and closed at once.
  size_t max_connections = 1024;
  // For a whole request head; for each read of a body; for each wait of a write.
  std::chrono::milliseconds read_timeout{60'000};
  std::chrono::milliseconds idle_timeout{75'000};  // between keep-alive requests
  std::chrono::milliseconds tunnel_idle_timeout{620'000};  // a tunnel with no byte either way
};

class HttpServer {
 public:
  // `route` picks a Route from the request line and headers (body not read yet).
  using Router = std::function<Route(const Request&)>;
  using Logger = std::function<void(const Request&, int status, double ms)>;

  // Binds and listens now; accepts from run(). SIGPIPE is ignored from then on, process-wide
  // (sendfile(2) to a socket the client closed has no MSG_NOSIGNAL). `loop` must outlive the server and keep running
  // until stop() has returned; its blocking pool bounds how many handlers run at once.
  static Result<std::unique_ptr<HttpServer>> listen(EventLoop& loop, const ServerOptions& options, Router router,
                                                    Logger logger);
  ~HttpServer();  // stop(0)

  const std::string& address() const;
  // Starts the loop (if it is not running) and accepting, then blocks until stop() is done.
  void run();
  // Stops accepting and closes idle connections; waits up to `grace` for requests in flight,
  // then shuts their sockets (a handler's next read or write fails) and waits for every handler
  // to return. Idempotent; concurrent calls all return once it is done.
  void stop(std::chrono::milliseconds grace = std::chrono::seconds(10));

  size_t connections() const;  // open now (for tests and /metrics)

  struct Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace brig::server
