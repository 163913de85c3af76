#include "base/util.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "base/fd.h"

namespace brig {

std::string hex_encode(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) {
    auto b = static_cast<unsigned char>(c);
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return hex_encode({reinterpret_cast<const char*>(md), len});  // SAFETY: byte buffer
}

bool valid_env_name(std::string_view k) {
  if (k.empty() || k.size() > 256 || std::isdigit(static_cast<unsigned char>(k[0]))) return false;
  for (char c : k)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
  return true;
}

std::string random_hex(size_t bytes) {
  std::string raw(bytes, '\0');
  size_t got = 0;
  while (got < bytes) {
    ssize_t n = getrandom(raw.data() + got, bytes - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  return hex_encode(raw);
}

std::string new_sandbox_id() {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  unsigned char raw[20];
  size_t got = 0;
  while (got < sizeof raw) {
    ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
    if (n > 0) got += static_cast<size_t>(n);
  }
  std::string id(20, 'a');
  // 36 does not divide 256; reject the biased tail to keep ids uniform.
  for (size_t i = 0; i < id.size(); ++i) {
    unsigned char b = raw[i];
    while (b >= 252) {
      if (getrandom(&b, 1, 0) != 1) b = 0;
    }
    id[i] = kAlphabet[b % 36];
  }
  return id;
}

bool is_valid_sandbox_id(std::string_view id) {
  if (id.size() != 20) return false;
  for (char c : id)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) return false;
  return true;
}

namespace {
// Splits "12.5MiB" into 12.5 and "MiB"; false if there is no leading number.
bool split_number(std::string_view text, double* value, std::string_view* unit) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  if (i == 0 || text.size() > 32) return false;
  try {
    *value = std::stod(std::string(text.substr(0, i)));
  } catch (...) {
    return false;
  }
  *unit = text.substr(i);
  return true;
}
}  // namespace

Result<uint64_t> parse_size(std::string_view text) {
  auto bad = [&] {
    return Error::make(errc::invalid_argument,
                       "invalid size '" + std::string(text) + "' (want e.g. 512M, 2G, 1048576)");
  };
  text = trim(text);
  double value = 0;
  std::string_view unit_view;
  if (!split_number(text, &value, &unit_view)) return bad();
  std::string unit(unit_view);
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.ends_with("IB")) unit.erase(unit.size() - 2);
  else if (unit.size() == 2 && unit.ends_with("B")) unit.erase(unit.size() - 1);
  double mult = 1;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "K") mult = 1024.0;
  else if (unit == "M") mult = 1024.0 * 1024;
  else if (unit == "G") mult = 1024.0 * 1024 * 1024;
  else if (unit == "T") mult = 1024.0 * 1024 * 1024 * 1024;
  else return bad();
  double bytes = value * mult;
  if (!std::isfinite(bytes) || bytes > 1024.0 * 1024 * 1024 * 1024) return bad();
  return static_cast<uint64_t>(bytes);
}

Result<std::chrono::milliseconds> parse_duration(std::string_view text) {
  auto bad = [&] {
    return Error::make(errc::invalid_argument,
                       "invalid duration '" + std::string(text) + "' (want e.g. 30, 30s, 5m, 1500ms)");
  };
  text = trim(text);
  double value = 0;
  std::string_view unit;
  if (!split_number(text, &value, &unit)) return bad();
  double ms = 0;
  if (unit.empty() || unit == "s") ms = value * 1000;
  else if (unit == "ms") ms = value;
  else if (unit == "m") ms = value * 60'000;
  else if (unit == "h") ms = value * 3'600'000;
  else return bad();
  if (!std::isfinite(ms) || ms > 30.0 * 24 * 3'600'000) return bad();
  return std::chrono::milliseconds(static_cast<int64_t>(ms));
}

std::string format_size(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0) snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  else snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[u]);
  return buf;
}

namespace {
Result<std::string> read_fd_bounded(int fd, size_t limit, std::string_view what) {
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno(errno, "read(" + std::string(what) + ")");
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > limit) return Error::make(errc::limit_exceeded, std::string(what) + ": too large");
  }
  return out;
}
}  // namespace

Result<> write_fd_all(int fd, std::string_view content, std::string_view what) {
  while (!content.empty()) {
    ssize_t n = ::write(fd, content.data(), content.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno(errno, "write(" + std::string(what) + ")");
    }
    content.remove_prefix(static_cast<size_t>(n));
  }
  return ok();
}

std::string percent_encode(std::string_view s, std::string_view keep) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || keep.find(static_cast<char>(c)) != std::string_view::npos) {
      out += static_cast<char>(c);
    } else {
      char b[4];
      std::snprintf(b, sizeof b, "%%%02X", c);
      out += b;
    }
  }
  return out;
}

Result<std::string> read_small_file(const std::string& path, size_t limit) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) return Error::from_errno(errno, "open(" + path + ")");
  return read_fd_bounded(fd.get(), limit, path);
}

bool json_depth_within(std::string_view text, size_t max_depth) {
  size_t depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return false;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return true;
}

Result<std::string> read_untrusted_file(const std::string& path, size_t limit) {
  // O_NONBLOCK: a FIFO planted there must not block the open or the read.
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK));
  if (!fd) return Error::from_errno(errno, "open(" + path + ")");
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Error::from_errno(errno, "fstat(" + path + ")");
  if (!S_ISREG(st.st_mode)) return Error::make(errc::invalid_argument, path + " is not a regular file");
  return read_fd_bounded(fd.get(), limit, path);
}

Result<> write_small_file(const std::string& path, std::string_view content) {
  Fd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) return Error::from_errno(errno, "open(" + path + ")");
  return write_fd_all(fd.get(), content, path);
}

std::string base64_encode(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),  // SAFETY: byte buffers
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

Result<std::string> base64_decode(std::string_view in) {
  if (in.size() % 4) return Error::make(errc::invalid_argument, "malformed base64");
  std::string out(in.size() / 4 * 3 + 1, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),  // SAFETY: byte buffers
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (n < 0) return Error::make(errc::invalid_argument, "malformed base64");
  size_t len = static_cast<size_t>(n);
  for (size_t i = in.size(); i > 0 && in[i - 1] == '=' && len > 0; --i) --len;  // EVP counts padding as zeros
  out.resize(len);
  return out;
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    size_t pos = s.find(sep, start);
    out.emplace_back(s.substr(start, pos - start));
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace brig
