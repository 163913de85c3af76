// /files/archive (a brig extension): a directory as tar.gz or zip, out (GET) and in (POST),
// made and unpacked inside the sandbox as the user by brig-init's archive helper.
#include <fcntl.h>
#include <poll.h>

#include <nlohmann/json.hpp>

#include <spdlog/spdlog.h>

#include "server/envd/rpc.h"

namespace brig::server::envd {
namespace {

constexpr uint64_t kMaxArchiveExportBytes = 4ull << 30;
constexpr uint32_t kMaxArchiveEntries = 100'000;
constexpr uint64_t kMaxArchiveUploadBytes = 256ull << 20;
constexpr auto kArchiveStall = std::chrono::seconds(60);  // the helper made no progress this long

// Reads one line (the archive child's JSON status) from `fd`, waiting up to `timeout`.
Result<nlohmann::json> read_status_line(int fd, std::chrono::seconds timeout) {
  std::string line;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char c;
  while (line.size() < 8192) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    struct pollfd p = {fd, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) == 0)
      return Error::make(errc::timed_out, "the archive was not ready in time");
    ssize_t n = ::read(fd, &c, 1);  // byte by byte: what follows the line is the archive
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Error::make(errc::protocol, "the archive helper stopped before answering");
    if (c == '\n') break;
    line += c;
  }
  auto j = nlohmann::json::parse(line, nullptr, false);
  if (!j.is_object()) return Error::make(errc::protocol, "malformed answer from the archive helper");
  return j;
}

int status_of(const Error& e, std::string_view what) { return core::http_status(core::report(e, what)); }

// The archive helper's failure codes (init/archive.h); an unknown one is logged as a fault.
int archive_error_status(const nlohmann::json& j) {
  std::string code = j.value("code", "");
  if (code == "not_found") return 404;
  if (code == "too_large") return 413;
  if (code == "forbidden") return 403;
  if (code == "escape" || code == "unsupported" || code == "bad_archive") return 400;
  spdlog::error("archive helper failed ({}): {}", code.substr(0, 64), j.value("error", "").substr(0, 512));
  return 500;
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
  Route r;
  if (head.method == "GET") {
    r.stream = [live, user](Request& req, Stream& s) {
      auto fail = [&](int status, const std::string& msg) {
        s.begin(status, {{"Content-Type", "application/json"}});
        s.write(nlohmann::json{{"code", status}, {"message", msg}}.dump());
      };
      std::string path = req.param("path"), format = req.param("format").empty() ? "tar.gz" : req.param("format");
      if (path.empty()) return fail(400, "the path query parameter is required");
      if (format != "tar.gz" && format != "zip") return fail(400, "format must be tar.gz or zip");
      auto fd = live->sandbox->export_archive(path, user, format, bounded_param(req, "max_bytes", kMaxArchiveExportBytes),
                                              static_cast<uint32_t>(bounded_param(req, "max_entries", kMaxArchiveEntries)));
      if (!fd) return fail(status_of(fd.error(), "archive export"), fd.error().message());
      auto status = read_status_line(fd->get(), std::chrono::seconds(120));
      if (!status) return fail(status_of(status.error(), "archive export"), status.error().message());
      if (!status->value("ok", false)) return fail(archive_error_status(*status), status->value("error", "cannot archive"));
      std::string base = path.substr(path.find_last_of('/') + 1);
      if (base.empty()) base = "archive";
      std::string safe;
      for (char c : base) safe += std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' ? c : '_';
      if (!s.begin(200, {{"Content-Type", format == "zip" ? "application/zip" : "application/gzip"},
                         {"Content-Disposition", "attachment; filename=\"" + safe.substr(0, 100) + "." + format + "\""},
                         {"X-Archive-Entries", std::to_string(status->value("entries", 0))},
                         {"X-Archive-Bytes", std::to_string(status->value("bytes", 0))}}))
        return;
      // The helper runs as the sandbox user, who can stop it: never wait on it for long, and
      // notice a client that left.
      char buf[1 << 16];
      auto last = std::chrono::steady_clock::now();
      for (;;) {
        struct pollfd p = {fd->get(), POLLIN, 0};
        int ready = ::poll(&p, 1, 1000);
        if (ready < 0 && errno != EINTR) return;
        if (ready <= 0) {
          if (s.peer_gone() || std::chrono::steady_clock::now() - last > kArchiveStall) return;
          continue;
        }
        ssize_t n = ::read(fd->get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return;
        if (!s.write(std::string_view(buf, static_cast<size_t>(n)))) return;
        last = std::chrono::steady_clock::now();
      }
    };
    return r;
  }
  r.body_limit = kMaxArchiveUploadBytes;
  r.respond = [live, user](Request& req) -> Response {
    if (req.method != "POST") return Response::error(405, "use GET (download) or POST (upload)");
    std::string path = req.param("path");
    std::string format = req.param("format");
    if (format.empty()) format = req.header("content-type") == "application/zip" ? "zip" : "tar.gz";
    if (path.empty()) return Response::error(400, "the path query parameter (the directory to unpack into) is required");
    if (format != "tar.gz" && format != "zip") return Response::error(400, "format must be tar.gz or zip");
    auto pipes = live->sandbox->import_archive(path, user, format, kMaxArchiveUploadBytes, kMaxArchiveEntries);
    if (!pipes) return Response::error(status_of(pipes.error(), "archive import"), pipes.error().message());
    {
      Fd in = std::move(pipes->first);
      ::fcntl(in.get(), F_SETFL, ::fcntl(in.get(), F_GETFL) | O_NONBLOCK);
      std::string_view body = req.body;
      auto last = std::chrono::steady_clock::now();
      while (!body.empty()) {
        struct pollfd p = {in.get(), POLLOUT, 0};
        int ready = ::poll(&p, 1, 1000);
        if (ready < 0 && errno != EINTR) break;
        if (ready <= 0) {
          if (std::chrono::steady_clock::now() - last > kArchiveStall)
            return Response::error(504, "the archive helper stopped reading");
          continue;
        }
        ssize_t n = ::write(in.get(), body.data(), body.size());
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n <= 0) break;  // the helper gave up early: its answer says why
        body.remove_prefix(static_cast<size_t>(n));
        last = std::chrono::steady_clock::now();
      }
    }
    auto status = read_status_line(pipes->second.get(), std::chrono::seconds(300));
    if (!status) return Response::error(status_of(status.error(), "archive import"), status.error().message());
    if (!status->value("ok", false)) return Response::error(archive_error_status(*status), status->value("error", "cannot unpack"));
    return Response::json(200, nlohmann::json{{"path", status->value("path", path)},
                                              {"entries", status->value("entries", 0)},
                                              {"bytes", status->value("bytes", 0)}}
                                   .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  };
  return r;
}


}  // namespace brig::server::envd
