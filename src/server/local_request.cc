#include "server/local_request.h"

#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>

#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#include "base/util.h"

namespace brig::server {
namespace {

// A response body collected in memory, up to a cap (a write past it fails, as a closed
// connection's would, and the route stops).
class MemoryStream final : public Stream {
 public:
  explicit MemoryStream(size_t cap) : cap_(cap) {}
  bool begin(int status, const std::vector<std::pair<std::string, std::string>>& headers) override {
    if (begun_) return !over_;
    begun_ = true;
    out.status = status;
    out.headers = headers;
    return true;
  }
  bool write(std::string_view data) override {
    if (!begun_) begin(200, {});
    if (over_ || out.body.size() + data.size() > cap_) {
      over_ = true;
      return false;
    }
    out.body.append(data);
    return true;
  }
  bool finish() override { return !over_; }
  bool peer_gone() override { return over_; }
  bool begun() const { return begun_; }
  bool over() const { return over_; }

  LocalResponse out;

 private:
  size_t cap_;
  bool begun_ = false, over_ = false;
};

// A request body already in memory, handed out as a consuming route asks for it.
class MemoryBody final : public BodyReader {
 public:
  explicit MemoryBody(std::string_view body) : rest_(body) {}
  Result<size_t> read(char* buf, size_t cap) override {
    size_t n = std::min(cap, rest_.size());
    std::memcpy(buf, rest_.data(), n);
    rest_.remove_prefix(n);
    return n;
  }

 private:
  std::string_view rest_;
};

LocalResponse from(const Response& r) { return {r.status, r.headers, r.body}; }

// A pull route's stream, on this thread: it waits here for the source's wake (or its idle
// interval) where the server's loop would wait on a timer. false past `cap`.
bool pull_all(Source& source, std::string& body, size_t cap) {
  struct Wake {
    std::mutex mu;
    std::condition_variable cv;
    bool woken = false;
  };
  auto w = std::make_shared<Wake>();
  bool idle = false;
  for (;;) {
    {
      std::lock_guard lock(w->mu);
      w->woken = false;
    }
    auto next = source.next(idle, [w] {
      std::lock_guard lock(w->mu);
      w->woken = true;
      w->cv.notify_all();
    });
    if (body.size() + next.bytes.size() > cap) return false;
    body += next.bytes;
    if (next.end) return true;
    idle = false;
    if (next.bytes.empty()) {
      std::unique_lock lock(w->mu);
      idle = !w->cv.wait_for(lock, source.idle_interval(), [&] { return w->woken; });
    }
  }
}

}  // namespace

Result<LocalResponse> serve_locally(const HttpServer::Router& router, Request req, size_t max_response) {
  auto parsed = boost::urls::parse_origin_form(req.target);
  if (!parsed) return Error::make(errc::invalid_argument, "malformed request target");
  req.path = parsed->path();
  req.query.clear();
  for (auto p : parsed->params()) req.query.emplace(std::string(p.key), std::string(p.value));
  if (req.request_id.empty()) req.request_id = new_sandbox_id().substr(0, 12);
  LocalResponse out;
  try {
    Route route = router(req);
    if (req.body.size() > route.body_limit) {
      out = from(Response::error(413, "request body larger than " + format_size(route.body_limit)));
    } else if (route.consume) {
      std::string body = std::move(req.body);
      req.body.clear();
      MemoryBody reader(body);
      out = from(route.consume(req, reader));
    } else if (route.stream) {
      MemoryStream s(max_response);
      route.stream(req, s);
      if (s.over()) return Error::make(errc::limit_exceeded, "the response is larger than " + format_size(max_response));
      if (!s.begun()) s.begin(200, {});
      out = std::move(s.out);
    } else if (route.pull) {
      Pull pull = route.pull(req);
      out = from(pull.head);
      if (pull.source && !pull_all(*pull.source, out.body, max_response))
        return Error::make(errc::limit_exceeded, "the response is larger than " + format_size(max_response));
    } else if (route.respond) {
      out = from(route.respond(req));
    } else {
      out = from(Response::error(404, "not found"));
    }
  } catch (const std::exception&) {
    out = from(Response::error(500, "internal error"));
  }
  if (out.body.size() > max_response)
    return Error::make(errc::limit_exceeded, "the response is larger than " + format_size(max_response));
  return out;
}

}  // namespace brig::server
