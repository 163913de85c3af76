// /files: one file down (GET) or up (POST: octet-stream, maybe gzip, or multipart), moved
// between the socket and an fd brig-init opened inside the sandbox as the user, a piece at a
// time, so the daemon's memory does not grow with the file.
#include <fcntl.h>
#include <zlib.h>

#include <cstring>

#include <nlohmann/json.hpp>

#include "base/util.h"
#include "server/envd/router.h"
#include "server/envd/rpc.h"

namespace brig::server::envd {
namespace {

constexpr size_t kStreamChunk = 256 << 10;  // one read of an upload

// multipart/form-data (RFC 7578), read as it arrives: parts separated by "--boundary", each
// with headers, a blank line and a body. The reader keeps one buffer of at most kStreamChunk
// plus a delimiter's length; a part's body goes to the caller piece by piece.
class MultipartReader {
 public:
  static Result<MultipartReader> open(BodyReader& body, const std::string& content_type) {
    auto b = content_type.find("boundary=");
    if (b == std::string::npos) return Error::make(errc::invalid_argument, "multipart body without a boundary");
    std::string boundary = content_type.substr(b + 9);
    if (auto semi = boundary.find(';'); semi != std::string::npos) boundary.resize(semi);
    if (boundary.size() >= 2 && boundary.front() == '"') boundary = boundary.substr(1, boundary.size() - 2);
    if (boundary.empty() || boundary.size() > 200) return Error::make(errc::invalid_argument, "bad multipart boundary");
    return MultipartReader(body, "--" + boundary);
  }

  struct Part {
    std::string name, filename;
  };

  // The next part's headers; nullopt after the closing delimiter.
  Result<std::optional<Part>> next() {
    // Skip what is left of the current part (or the preamble) up to the next delimiter.
    for (;;) {
      BRIG_TRY(fill(delim_.size() + 4));
      if (auto at = buf_.find(delim_); at != std::string::npos) {
        buf_.erase(0, at + delim_.size());
        break;
      }
      if (eof_) return Error::make(errc::invalid_argument, "multipart body without its delimiter");
      buf_.erase(0, buf_.size() - delim_.size());
    }
    BRIG_TRY(fill(2));
    if (buf_.compare(0, 2, "--") == 0) return std::optional<Part>();  // the closing delimiter
    if (buf_.compare(0, 2, "\r\n") != 0) return Error::make(errc::invalid_argument, "malformed multipart delimiter");
    size_t end;
    while ((end = buf_.find("\r\n\r\n")) == std::string::npos) {
      if (buf_.size() > kMaxPartHeaders) return Error::make(errc::limit_exceeded, "multipart headers too large");
      if (eof_) return Error::make(errc::invalid_argument, "malformed multipart headers");
      BRIG_TRY(fill(buf_.size() + 1));
    }
    if (++parts_ > kMaxParts) return Error::make(errc::limit_exceeded, "more than 1000 parts");
    Part part = disposition(end >= 2 ? buf_.substr(2, end - 2) : std::string());
    buf_.erase(0, end + 4);
    in_body_ = true;
    return std::optional<Part>(std::move(part));
  }

  // Up to `cap` bytes of the current part's body; 0 at its end.
  Result<size_t> read(char* out, size_t cap) {
    if (!in_body_) return size_t{0};
    const std::string end = "\r\n" + delim_;
    BRIG_TRY(fill(end.size() + 1));
    size_t at = buf_.find(end);
    size_t avail = at != std::string::npos ? at : (eof_ ? 0 : buf_.size() - std::min(buf_.size(), end.size() - 1));
    if (at == std::string::npos && eof_) return Error::make(errc::invalid_argument, "unterminated multipart part");
    if (at == 0) {
      buf_.erase(0, 2);  // the CRLF before the delimiter; next() finds the delimiter
      in_body_ = false;
      return size_t{0};
    }
    size_t n = std::min(avail, cap);
    std::memcpy(out, buf_.data(), n);
    buf_.erase(0, n);
    return n;
  }

 private:
  static constexpr size_t kMaxPartHeaders = 16 << 10;
  static constexpr size_t kMaxParts = 1000;

  MultipartReader(BodyReader& body, std::string delim) : body_(&body), delim_(std::move(delim)) {}

  // Reads until the buffer holds at least `want` bytes (or the body ends).
  Result<> fill(size_t want) {
    char chunk[65536];
    while (buf_.size() < want && !eof_) {
      BRIG_TRY_ASSIGN(n, body_->read(chunk, std::min(sizeof chunk, kStreamChunk)));
      if (n == 0) eof_ = true;
      buf_.append(chunk, n);
    }
    return ok();
  }

  static Part disposition(const std::string& headers) {
    Part part;
    for (auto& line : split(headers, '\n')) {
      std::string l(trim(line)), lower = l;
      for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (!lower.starts_with("content-disposition:")) continue;
      auto param = [&](const std::string& key) -> std::string {
        auto k = lower.find(" " + key + "=\"");
        if (k == std::string::npos) k = lower.find(";" + key + "=\"");
        if (k == std::string::npos) return "";
        size_t start = k + key.size() + 3;
        size_t end = l.find('"', start);
        return end == std::string::npos ? "" : l.substr(start, end - start);
      };
      part.name = param("name");
      part.filename = param("filename");
    }
    return part;
  }

  BodyReader* body_;
  std::string delim_, buf_;
  bool eof_ = false, in_body_ = false;
  size_t parts_ = 0;
};

bool signature_ok(const Request& req, const core::Live& live, const std::string& path, const std::string& op,
                  const std::string& user) {
  if (!req.header("x-access-token").empty()) return same_secret(req.header("x-access-token"), live.access_token);
  std::string sig = req.param("signature");
  if (sig.empty()) return false;
  std::string exp = req.param("signature_expiration");
  if (!exp.empty()) {
    if (exp.size() > 12 || exp.find_first_not_of("0123456789") != std::string::npos) return false;
    if (std::stoll(exp) < now_unix_ms() / 1000) return false;
  }
  return same_secret(sig, file_signature(path, op, user, live.access_token, exp));
}

// A failed /files operation, as E2B's envd answers it (downloads and uploads alike): core's
// table, with envd's two departures for this route (a permission error is 401, a full disk
// 507) and a limit 413.
Response file_error(const Error& e, const std::string& path) {
  core::Status s = core::report(e, "/files " + path.substr(0, 256));
  if (s == core::Status::not_found) return Response::error(404, "file not found: " + path);
  if (e.sys_errno() == ENOSPC) return Response::error(507, "not enough space: " + e.message());
  if (s == core::Status::permission_denied) return Response::error(401, e.message());
  if (e.is(errc::limit_exceeded)) return Response::error(413, e.message());
  return Response::error(core::http_status(s), e.message());
}

// GET /files: the file's bytes go from the fd brig-init opened (as the user, inside the
// sandbox) to the socket by sendfile(2), on the loop as the client reads, so the daemon neither
// copies them nor holds a thread or memory for them. At most the size the file had when it was
// opened is sent (a file the sandbox keeps appending to does not stream forever).
Pull download(const core::Live& live, sandbox::User user, Request& req) {
  auto fail = [](const Response& r) { return Pull{r, nullptr, Fd(), 0}; };
  std::string path = req.param("path");
  if (path.empty()) return fail(Response::error(400, "the path query parameter is required"));
  if (!signature_ok(req, live, path, "read", req.param("username")))
    return fail(Response::error(401, "invalid access token or signature"));
  sandbox::EntryInfo info;
  auto fd = live.sandbox->open_read(path, user, &info);
  if (!fd) return fail(file_error(fd.error(), path));
  Pull p;
  p.head.status = 200;
  p.head.headers = {{"Content-Type", "application/octet-stream"}};
  if (info.size == 0) return p;  // an empty body, answered as is
  p.file = std::move(*fd);
  p.file_bytes = info.size;
  return p;
}

// An octet-stream body (gzip-encoded or not) from the socket into the fd brig-init opened, a
// piece at a time: the daemon holds one read buffer and one inflate window, whatever the size.
Result<> body_to_fd(BodyReader& body, int fd, bool gzip, uint64_t max_bytes) {
  std::string in(kStreamChunk, '\0'), out(gzip ? kStreamChunk : 0, '\0');
  z_stream zs = {};
  if (gzip && inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return Error::make(errc::protocol, "inflateInit2");
  struct End {
    z_stream* zs;
    ~End() {
      if (zs) inflateEnd(zs);
    }
  } end{gzip ? &zs : nullptr};
  uint64_t written = 0;
  bool stream_end = false;
  for (;;) {
    BRIG_TRY_ASSIGN(n, body.read(in.data(), in.size()));
    if (n == 0) break;
    if (!gzip) {
      BRIG_TRY(write_fd_all(fd, std::string_view(in.data(), n), "the uploaded file"));
      continue;
    }
    if (stream_end) return Error::make(errc::invalid_argument, "data after the end of the gzip stream");
    zs.next_in = reinterpret_cast<Bytef*>(in.data());  // SAFETY: byte buffer
    zs.avail_in = static_cast<uInt>(n);
    while (zs.avail_in > 0 && !stream_end) {
      zs.next_out = reinterpret_cast<Bytef*>(out.data());  // SAFETY: byte buffer
      zs.avail_out = static_cast<uInt>(out.size());
      int rc = inflate(&zs, Z_NO_FLUSH);
      if (rc != Z_OK && rc != Z_STREAM_END) return Error::make(errc::invalid_argument, "body is not valid gzip");
      stream_end = rc == Z_STREAM_END;
      size_t got = out.size() - zs.avail_out;
      written += got;
      if (written > max_bytes)
        return Error::make(errc::limit_exceeded, "decompressed body larger than " + format_size(max_bytes) + " (limits.upload_bytes)");
      BRIG_TRY(write_fd_all(fd, std::string_view(out.data(), got), "the uploaded file"));
    }
  }
  if (gzip && !stream_end) return Error::make(errc::invalid_argument, "body is not valid gzip (truncated)");
  return ok();
}

// POST /files: the body streams into the files (octet-stream: one file, maybe gzip-encoded;
// multipart: one file per "file" part), each opened by brig-init as the user.
Response upload(const core::Live& live, sandbox::User user, Request& req, BodyReader& body, uint64_t max_bytes) {
  std::string path = req.param("path");
  if (!signature_ok(req, live, path, "write", req.param("username")))
    return Response::error(401, "invalid access token or signature");
  std::vector<std::string> written;  // destinations, in order
  std::string ct = req.header("content-type");
  if (ct.starts_with("multipart/form-data")) {
    auto mp = MultipartReader::open(body, ct);
    if (!mp) return Response::error(400, mp.error().message());
    auto body_error = [](const Error& e) {
      return e.is(errc::limit_exceeded) ? Response::error(413, e.message()) : Response::error(400, e.message());
    };
    std::string buf(kStreamChunk, '\0');
    for (;;) {
      auto part = mp->next();
      if (!part) return body_error(part.error());
      if (!*part) break;
      if ((*part)->name != "file") continue;  // its body is skipped by the next next()
      std::string dest = !path.empty() ? path : (*part)->filename;
      if (dest.empty()) return Response::error(400, "a file part without a path");
      auto fd = live.sandbox->open_write(dest, user, 0644);
      if (!fd) return file_error(fd.error(), dest);
      for (;;) {
        auto n = mp->read(buf.data(), buf.size());
        if (!n) return body_error(n.error());
        if (*n == 0) break;
        if (auto w = write_fd_all(fd->get(), std::string_view(buf.data(), *n), dest); !w) return file_error(w.error(), dest);
      }
      written.push_back(dest);
    }
  } else {
    if (path.empty()) return Response::error(400, "the path query parameter is required");
    auto fd = live.sandbox->open_write(path, user, 0644);
    if (!fd) return file_error(fd.error(), path);
    if (auto w = body_to_fd(body, fd->get(), req.header("content-encoding") == "gzip", max_bytes); !w) {
      if (w.error().is(errc::protocol)) return Response::error(400, w.error().message());
      return file_error(w.error(), path);
    }
    written.push_back(path);
  }
  if (written.empty()) return Response::error(400, "no file in the request");
  // X-Metadata-<key>: value headers replace the files' metadata (keys lower-cased).
  std::map<std::string, std::string> metadata;
  bool has_metadata = false;
  for (auto& [name, value] : req.headers)
    if (name.starts_with("x-metadata-")) {
      has_metadata = true;
      metadata[name.substr(11)] = value;
    }
  nlohmann::json out = nlohmann::json::array();
  for (auto& dest : written) {
    if (has_metadata)
      if (auto m = live.sandbox->set_metadata(dest, user, metadata); !m) return Response::error(400, m.error().message());
    auto st = live.sandbox->stat(dest, user);
    std::string full = st ? st->path : dest;
    nlohmann::json item = {{"path", full}, {"name", full.substr(full.find_last_of('/') + 1)}, {"type", "file"}};
    if (has_metadata) item["metadata"] = metadata;
    out.push_back(item);
  }
  return Response::json(200, out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace

Route files(const Call& call, const Request& head) {
  auto live = call.live;
  auto user = call.user;
  Route r;
  const uint64_t max_bytes = call.core.config().limits.upload_bytes;
  r.body_limit = max_bytes;
  std::string method = head.method;
  if (method == "GET") {
    r.pull = [live, user](Request& req) { return download(*live, user, req); };
    return r;
  }
  if (method != "POST") {
    r.respond = [](Request&) { return Response::error(405, "use GET or POST"); };
    return r;
  }
  r.consume = [live, user, max_bytes](Request& req, BodyReader& body) { return upload(*live, user, req, body, max_bytes); };
  return r;
}


}  // namespace brig::server::envd
