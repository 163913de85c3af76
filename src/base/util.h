// Small helpers shared by every layer: ids, sizes, durations, files.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace brig {

// A sandbox id: 20 chars of [a-z0-9] from getrandom(2).
std::string new_sandbox_id();
bool is_valid_sandbox_id(std::string_view id);
// Two lowercase hex digits per byte.
std::string hex_encode(std::string_view bytes);
// Lowercase hex SHA-256 of `data` (OpenSSL).
std::string sha256_hex(std::string_view data);
// [A-Za-z_][A-Za-z0-9_]*, at most 256 characters: an environment variable name, safe to paste
// into code (python, javascript, r, bash) as an identifier.
bool valid_env_name(std::string_view name);
// `bytes` random bytes from getrandom(2), as 2 * `bytes` lowercase hex characters.
std::string random_hex(size_t bytes);

// "512M", "1G", "1.5GiB", "1048576" -> bytes (binary units). Bounded to 1 TiB.
Result<uint64_t> parse_size(std::string_view text);
// "30", "30s", "5m", "2h", "1500ms" -> milliseconds. Bounded to 30 days.
Result<std::chrono::milliseconds> parse_duration(std::string_view text);
std::string format_size(uint64_t bytes);

// Reads a whole small file (bounded by `limit`), e.g. a cgroup or /proc file.
Result<std::string> read_small_file(const std::string& path, size_t limit = 1 << 16);
// The same for a file someone else controls: no symlink as the last component, a regular file
// only (a FIFO or device is refused without blocking).
Result<std::string> read_untrusted_file(const std::string& path, size_t limit = 1 << 16);
Result<> write_small_file(const std::string& path, std::string_view content);
// Writes all of `content` to `fd` (retrying short writes and EINTR).
Result<> write_fd_all(int fd, std::string_view content, std::string_view what);

// RFC 3986 percent-encoding of everything but the unreserved characters and `keep`
// (e.g. "/" for a path in a query parameter).
std::string percent_encode(std::string_view s, std::string_view keep = "");

// Standard base64 with padding (RFC 4648); decoding rejects malformed input.
std::string base64_encode(std::string_view bytes);
Result<std::string> base64_decode(std::string_view text);

// Whether JSON `text` nests arrays and objects at most `max_depth` deep (strings skipped). For
// JSON from a sandbox: nlohmann's copy and dump recurse once per level.
inline constexpr size_t kMaxJsonDepth = 64;
bool json_depth_within(std::string_view text, size_t max_depth);

std::vector<std::string> split(std::string_view s, char sep);
std::string_view trim(std::string_view s);

int64_t now_unix_ms();

}  // namespace brig
