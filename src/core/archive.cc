#include "core/archive.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

namespace brig::core {
namespace {

// Reads one line (the archive helper's JSON status) from `fd`, waiting up to `timeout`.
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

// The helper's refusal ({"ok":false,"code":…,"error":…}) as an error of the same meaning. An
// unknown code is the helper's own failure: EIO, which core/status calls internal.
Error refusal(const nlohmann::json& j, const char* fallback) {
  std::string code = j.value("code", "");
  std::string message = j.contains("error") && j["error"].is_string() ? j["error"].get<std::string>() : fallback;
  if (code == "not_found") return Error::make(errc::not_found, message);
  if (code == "too_large") return Error::make(errc::limit_exceeded, message);
  if (code == "forbidden") return Error(std::error_code(EACCES, std::generic_category()), message);
  if (code == "escape" || code == "unsupported" || code == "bad_archive") return Error::make(errc::invalid_argument, message);
  return Error(std::error_code(EIO, std::generic_category()), "the archive helper failed (" + code.substr(0, 64) + "): " + message);
}

Result<> check_format(const std::string& format) {
  if (format != "tar.gz" && format != "zip") return Error::make(errc::invalid_argument, "format must be tar.gz or zip");
  return ok();
}

uint64_t count(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_number_unsigned() ? j[key].get<uint64_t>() : 0;
}

}  // namespace

Result<ArchiveExport> export_archive(Live& live, const std::string& path, sandbox::User user, const std::string& format,
                                     uint64_t max_bytes, uint32_t max_entries) {
  if (path.empty()) return Error::make(errc::invalid_argument, "the path is required");
  BRIG_TRY(check_format(format));
  BRIG_TRY_ASSIGN(fd, live.sandbox->export_archive(path, user, format, max_bytes, max_entries));
  // The first pass over the tree (the caps) happens before the answer: a large tree takes a while.
  BRIG_TRY_ASSIGN(status, read_status_line(fd.get(), std::chrono::seconds(120)));
  if (!status.value("ok", false)) return refusal(status, "cannot archive");
  return ArchiveExport{std::move(fd), count(status, "entries"), count(status, "bytes")};
}

Result<ArchiveImport> import_archive(Live& live, const std::string& dir, sandbox::User user, const std::string& format,
                                     std::string_view archive, uint64_t max_bytes, uint32_t max_entries) {
  if (dir.empty()) return Error::make(errc::invalid_argument, "the directory to unpack into is required");
  BRIG_TRY(check_format(format));
  if (archive.size() > max_bytes) return Error::make(errc::limit_exceeded, "the archive is larger than its limit");
  BRIG_TRY_ASSIGN(pipes, live.sandbox->import_archive(dir, user, format, max_bytes, max_entries));
  {
    Fd in = std::move(pipes.first);  // closed at the end of this block: the helper then unpacks
    ::fcntl(in.get(), F_SETFL, ::fcntl(in.get(), F_GETFL) | O_NONBLOCK);
    auto last = std::chrono::steady_clock::now();
    while (!archive.empty()) {
      struct pollfd p = {in.get(), POLLOUT, 0};
      int ready = ::poll(&p, 1, 1000);
      if (ready < 0 && errno != EINTR) break;
      if (ready <= 0) {
        if (std::chrono::steady_clock::now() - last > kArchiveStall)
          return Error::make(errc::timed_out, "the archive helper stopped reading");
        continue;
      }
      ssize_t n = ::write(in.get(), archive.data(), archive.size());
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) break;  // the helper gave up early: its answer says why
      archive.remove_prefix(static_cast<size_t>(n));
      last = std::chrono::steady_clock::now();
    }
  }
  BRIG_TRY_ASSIGN(status, read_status_line(pipes.second.get(), std::chrono::seconds(300)));
  if (!status.value("ok", false)) return refusal(status, "cannot unpack");
  return ArchiveImport{status.contains("path") && status["path"].is_string() ? status["path"].get<std::string>() : dir,
                       count(status, "entries"), count(status, "bytes")};
}

}  // namespace brig::core
