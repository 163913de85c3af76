// /files/archive (a brig extension): a directory as tar.gz or zip, out (GET) and in (POST),
// made and unpacked inside the sandbox as the user (core/archive.h).
#include <poll.h>

#include <nlohmann/json.hpp>

#include "core/archive.h"
#include "server/envd/rpc.h"

namespace brig::server::envd {
namespace {

// core's table, but a cap that was hit is 413 here (the body or the tree is too large).
int status_of(const Error& e, std::string_view what) {
  core::Status s = core::report(e, what);
  return e.is(errc::limit_exceeded) ? 413 : core::http_status(s);
}

uint64_t bounded_param(const Request& req, const std::string& name, uint64_t max) {
  std::string v = req.param(name);
  if (v.empty() || v.size() > 19 || v.find_first_not_of("0123456789") != std::string::npos) return max;
  return std::min<uint64_t>(std::stoull(v), max);
}

}  // namespace

Route archive(const Call& call, const Request& head) {
  auto live = call.live;
  auto user = call.user;
  const config::Limits& limits = call.core.config().limits;
  const uint64_t max_download = limits.archive_download_bytes, max_upload = limits.archive_upload_bytes;
  const uint32_t max_entries = limits.archive_entries;
  Route r;
  if (head.method == "GET") {
    r.stream = [live, user, max_download, max_entries](Request& req, Stream& s) {
      auto fail = [&](int status, const std::string& msg) {
        s.begin(status, {{"Content-Type", "application/json"}});
        s.write(nlohmann::json{{"code", status}, {"message", msg}}.dump());
      };
      std::string path = req.param("path"), format = req.param("format").empty() ? "tar.gz" : req.param("format");
      if (path.empty()) return fail(400, "the path query parameter is required");
      if (format != "tar.gz" && format != "zip") return fail(400, "format must be tar.gz or zip");
      auto out = core::export_archive(*live, path, user, format, bounded_param(req, "max_bytes", max_download),
                                      static_cast<uint32_t>(bounded_param(req, "max_entries", max_entries)));
      if (!out) return fail(status_of(out.error(), "archive export"), out.error().message());
      std::string base = path.substr(path.find_last_of('/') + 1);
      if (base.empty()) base = "archive";
      std::string safe;
      for (char c : base) safe += std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ? c : '_';
      if (!s.begin(200, {{"Content-Type", format == "zip" ? "application/zip" : "application/gzip"},
                         {"Content-Disposition", "attachment; filename=\"" + safe.substr(0, 100) + "." + format + "\""},
                         {"X-Archive-Entries", std::to_string(out->entries)},
                         {"X-Archive-Bytes", std::to_string(out->bytes)}}))
        return;
      // The helper runs as the sandbox user, who can stop it: never wait on it for long, and
      // notice a client that left.
      const int fd = out->fd.get();
      char buf[1 << 16];
      auto last = std::chrono::steady_clock::now();
      for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        int ready = ::poll(&p, 1, 1000);
        if (ready < 0 && errno != EINTR) return;
        if (ready <= 0) {
          if (s.peer_gone() || std::chrono::steady_clock::now() - last > core::kArchiveStall) return;
          continue;
        }
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        if (!s.write(std::string_view(buf, static_cast<size_t>(n)))) return;
        last = std::chrono::steady_clock::now();
      }
    };
    return r;
  }
  r.body_limit = max_upload;
  r.respond = [live, user, max_upload, max_entries](Request& req) -> Response {
    if (req.method != "POST") return Response::error(405, "use GET (download) or POST (upload)");
    std::string path = req.param("path");
    std::string format = req.param("format");
    if (format.empty()) format = req.header("content-type") == "application/zip" ? "zip" : "tar.gz";
    if (path.empty()) return Response::error(400, "the path query parameter (the directory to unpack into) is required");
    if (format != "tar.gz" && format != "zip") return Response::error(400, "format must be tar.gz or zip");
    auto in = core::import_archive(*live, path, user, format, req.body, max_upload, max_entries);
    if (!in) return Response::error(status_of(in.error(), "archive import"), in.error().message());
    return Response::json(200, nlohmann::json{{"path", in->path}, {"entries", in->entries}, {"bytes", in->bytes}}
                                   .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  };
  return r;
}


}  // namespace brig::server::envd
