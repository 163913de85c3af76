// The Jupyter messaging protocol (v5.3) as the kernel host speaks it, and the translation of
// kernel output into the code interpreter's NDJSON lines (e2b-compat.md section 4). Pure
// functions over message frames, so they are tested without a kernel.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace brig::jupyter {

using json = nlohmann::json;

inline constexpr std::string_view kDelimiter = "<IDS|MSG>";

struct Message {
  json header, parent_header, metadata, content;
  std::string msg_type() const { return header.value("msg_type", ""); }
  std::string msg_id() const { return header.value("msg_id", ""); }
  std::string parent_id() const { return parent_header.is_object() ? parent_header.value("msg_id", "") : ""; }
};

// Builds a request from us: a fresh msg_id in `session`.
Message make_request(const std::string& session, const std::string& msg_type, json content);

// The wire frames of `msg` (delimiter, HMAC-SHA256 signature with `key`, four JSON parts).
std::vector<std::string> serialize(const Message& msg, std::string_view key);

// Parses frames received from a kernel: routing ids, the delimiter, the signature (checked in
// constant time against `key`), four JSON parts, then buffers (ignored).
Result<Message> parse(const std::vector<std::string>& frames, std::string_view key);

// Now as ISO 8601 UTC with microseconds ("2026-11-22T04:13:15.123456Z").
std::string iso_now();


// ---- the code interpreter's view -----------------------------------------------------------

// "Python " -> "python", "js" -> "javascript", "ts" -> "typescript"; empty stays empty.
std::string normalize_language(std::string_view language);

// One NDJSON `result` line from an execute_result (main) or display_data message's `data`:
// MIME types mapped to the E2B keys, everything else under `extra`.
json result_line(const json& data, bool is_main_result);

// An `error` line from an error message's content (traceback joined with newlines).
json error_line(const json& content);

// Code that sets the variables `set` for one execution and code that restores what they were,
// in the kernel's language: python, javascript/typescript (Deno), node (JavaScript on Node.js),
// bash, r (empty strings for anything else). Entries whose name is not a variable name or whose
// value is not a string are left out.
struct EnvCode {
  std::string apply, restore;
};
EnvCode env_code(const std::string& language, const json& set);

}  // namespace brig::jupyter
