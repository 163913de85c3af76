// The HTTP/1.1 layer of `brig serve`: one listening socket, one thread per connection
// (bounded), Beast's parser and serializer, a read timeout on every read and a size cap on
// every body. Handlers see a parsed Request and answer with a Response, or stream a chunked
// body through a Stream.
//
// Thread safety: handlers run on connection threads, concurrently.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/result.h"

namespace brig::server {

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
// shorter body then ends the connection). Every write is flushed at once.
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

// A request body read as the handler asks for it, so that it can go straight to an fd.
class BodyReader {
 public:
  virtual ~BodyReader() = default;
  // Up to `cap` bytes into `buf`; 0 at the end of the body. errc::limit_exceeded past the
  // route's body_limit; other errors when the client stalls or breaks the framing.
  virtual Result<size_t> read(char* buf, size_t cap) = 0;
};

// What a handler decides after seeing the request's headers: how big a body it accepts.
struct Route {
  size_t body_limit = 1 << 20;
  // Either answers with a Response once the body is in `Request::body`...
  std::function<Response(Request&)> respond;
  // ...or reads the body itself (Request::body stays empty) and then answers...
  std::function<Response(Request&, BodyReader&)> consume;
  // ...or streams (returns when the stream is over).
  std::function<void(Request&, Stream&)> stream;
};

struct ServerOptions {
  std::string listen = "127.0.0.1:49982";
  size_t max_connections = 1024;
  std::chrono::seconds read_timeout{60};       // per read of headers or body
  std::chrono::seconds idle_timeout{75};       // between keep-alive requests
};

class HttpServer {
 public:
  // `route` picks a Route from the request line and headers (body not read yet).
  using Router = std::function<Route(const Request&)>;
  using Logger = std::function<void(const Request&, int status, double ms)>;

  static Result<std::unique_ptr<HttpServer>> listen(const ServerOptions& options, Router router, Logger logger);
  ~HttpServer();

  const std::string& address() const { return address_; }
  // Blocks, accepting connections, until stop().
  void run();
  // Stops accepting, shuts down idle connections, waits up to `grace` for the rest.
  void stop(std::chrono::milliseconds grace = std::chrono::seconds(10));

 private:
  HttpServer(int fd, std::string address, ServerOptions options, Router router, Logger logger);
  void serve_connection(int fd, std::string remote);

  int listen_fd_;
  std::string address_;
  ServerOptions options_;
  Router router_;
  Logger logger_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::set<int> connections_;
  std::atomic<size_t> active_{0};
};

}  // namespace brig::server
