#include "init/jupyter.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <time.h>

#include <cctype>

#include "base/util.h"

namespace brig::jupyter {
namespace {


std::string sign(std::string_view key, const std::string* parts[4]) {
  if (key.empty()) return "";
  static EVP_MAC* hmac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string("digest", digest, 0), OSSL_PARAM_construct_end()};
  unsigned char mac[EVP_MAX_MD_SIZE];
  size_t len = 0;
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(hmac);
  bool good = ctx && EVP_MAC_init(ctx, reinterpret_cast<const unsigned char*>(key.data()), key.size(), params);
  for (int i = 0; good && i < 4; ++i)
    good = EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(parts[i]->data()), parts[i]->size());
  good = good && EVP_MAC_final(ctx, mac, &len, sizeof mac);
  EVP_MAC_CTX_free(ctx);
  return good ? hex_encode({reinterpret_cast<const char*>(mac), len}) : "!";  // "!" never matches a kernel's signature; SAFETY: byte buffer
}


// A JSON string literal is also a valid literal in Python, JavaScript and R for any string
// (all three read \uXXXX and the other JSON escapes); bash gets single quotes instead.
std::string quote(const std::string& s) { return json(s).dump(); }

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

std::string iso_now() {
  struct timespec ts;
  ::clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  ::gmtime_r(&ts.tv_sec, &tm);
  char buf[64];
  size_t n = ::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%06ldZ", ts.tv_nsec / 1000);
  return buf;
}

Message make_request(const std::string& session, const std::string& msg_type, json content) {
  Message m;
  m.header = {{"msg_id", random_hex(16)}, {"session", session}, {"username", "brig"},
              {"date", iso_now()}, {"msg_type", msg_type}, {"version", "5.3"}};
  m.parent_header = json::object();
  m.metadata = json::object();
  m.content = std::move(content);
  return m;
}

std::vector<std::string> serialize(const Message& msg, std::string_view key) {
  std::string h = msg.header.dump(), p = msg.parent_header.dump(), md = msg.metadata.dump(), c = msg.content.dump();
  const std::string* parts[4] = {&h, &p, &md, &c};
  return {std::string(kDelimiter), sign(key, parts), h, p, md, c};
}

Result<Message> parse(const std::vector<std::string>& frames, std::string_view key) {
  size_t i = 0;
  while (i < frames.size() && frames[i] != kDelimiter) ++i;
  if (frames.size() < i + 6)
    return Error::make(errc::protocol, "jupyter message without its five parts");
  const std::string* parts[4] = {&frames[i + 2], &frames[i + 3], &frames[i + 4], &frames[i + 5]};
  const std::string want = sign(key, parts);
  const std::string& got = frames[i + 1];
  if (want.size() != got.size() || CRYPTO_memcmp(want.data(), got.data(), want.size()) != 0)
    return Error::make(errc::protocol, "jupyter message with a bad signature");
  for (auto* p : parts)
    if (!json_depth_within(*p, kMaxJsonDepth))  // copying or dumping it would recurse too deep
      return Error::make(errc::protocol, "jupyter message nested too deep");
  Message m;
  m.header = json::parse(frames[i + 2], nullptr, false);
  m.parent_header = json::parse(frames[i + 3], nullptr, false);
  m.metadata = json::parse(frames[i + 4], nullptr, false);
  m.content = json::parse(frames[i + 5], nullptr, false);
  if (!m.header.is_object() || !m.content.is_object())
    return Error::make(errc::protocol, "jupyter message with a malformed header or content");
  return m;
}

std::string normalize_language(std::string_view language) {
  std::string l(trim(language));
  for (char& c : l) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (l == "js") return "javascript";
  if (l == "ts") return "typescript";
  return l;
}

json result_line(const json& data, bool is_main_result) {
  static const std::pair<const char*, const char*> kKeys[] = {
      {"text/plain", "text"},          {"text/html", "html"},          {"text/markdown", "markdown"},
      {"image/svg+xml", "svg"},        {"image/png", "png"},           {"image/jpeg", "jpeg"},
      {"application/pdf", "pdf"},      {"text/latex", "latex"},        {"application/json", "json"},
      {"application/javascript", "javascript"}, {"e2b/data", "data"}, {"e2b/chart", "chart"}};
  json line = {{"type", "result"}, {"is_main_result", is_main_result}};
  json extra = json::object();
  if (!data.is_object()) return line;
  for (auto& [mime, value] : data.items()) {
    const char* key = nullptr;
    for (auto& [m, k] : kKeys)
      if (mime == m) key = k;
    if (!key) {
      extra[mime] = value;
      continue;
    }
    json v = value;
    if (v.is_string()) {
      std::string s = v.get<std::string>();
      if (mime == "image/png" || mime == "image/jpeg") {
        std::erase_if(s, [](char c) { return c == '\n' || c == '\r'; });
      } else if (mime == "text/plain" && s.size() >= 2 &&
                 ((s.front() == '\'' && s.back() == '\'') || (s.front() == '"' && s.back() == '"'))) {
        s = s.substr(1, s.size() - 2);  // repr() quotes, as upstream drops them
      }
      v = s;
    }
    line[key] = std::move(v);
  }
  if (!extra.empty()) line["extra"] = std::move(extra);
  return line;
}

json error_line(const json& content) {
  std::string traceback;
  if (auto it = content.find("traceback"); it != content.end() && it->is_array())
    for (auto& l : *it) {
      if (!l.is_string()) continue;
      if (!traceback.empty()) traceback += "\n";
      traceback += l.get<std::string>();
    }
  auto str = [&](const char* k) {
    auto it = content.find(k);
    return it != content.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  return {{"type", "error"}, {"name", str("ename")}, {"value", str("evalue")}, {"traceback", traceback}};
}

EnvCode env_code(const std::string& language, const json& in) {
  EnvCode c;
  if (!in.is_object() || in.empty()) return c;
  // Only variable names and string values: a name is pasted into code (bash above all).
  json set = json::object();
  for (auto& [k, v] : in.items())
    if (valid_env_name(k) && v.is_string()) set[k] = v;
  if (set.empty()) return c;
  if (language == "python") {
    std::string d = "{";
    for (auto& [k, v] : set.items()) d += quote(k) + ": " + quote(v.get<std::string>()) + ", ";
    d += "}";
    c.apply = "import os as _brig_os\n_brig_env = " + d +
              "\n_brig_saved = {k: _brig_os.environ.get(k) for k in _brig_env}\n_brig_os.environ.update(_brig_env)\n";
    c.restore = "for _brig_k, _brig_v in _brig_saved.items():\n"
                "    if _brig_v is None: _brig_os.environ.pop(_brig_k, None)\n"
                "    else: _brig_os.environ[_brig_k] = _brig_v\n"
                "del _brig_os, _brig_env, _brig_saved, _brig_k, _brig_v\n";
  } else if (language == "javascript" || language == "typescript") {
    std::string d = "{";
    for (auto& [k, v] : set.items()) d += quote(k) + ": " + quote(v.get<std::string>()) + ", ";
    d += "}";
    c.apply = "{ const e = " + d +
              "; (globalThis as any).__brigSaved = Object.fromEntries(Object.keys(e).map((k) => [k, Deno.env.get(k)]));"
              " for (const [k, v] of Object.entries(e)) Deno.env.set(k, v); }";
    c.restore = "{ for (const [k, v] of Object.entries((globalThis as any).__brigSaved ?? {}))"
                " { if (v === undefined) Deno.env.delete(k); else Deno.env.set(k, v as string); }"
                " delete (globalThis as any).__brigSaved; }";
  } else if (language == "node") {
    std::string d = "{";
    for (auto& [k, v] : set.items()) d += quote(k) + ": " + quote(v.get<std::string>()) + ", ";
    d += "}";
    c.apply = "{ const e = " + d +
              "; globalThis.__brigSaved = Object.fromEntries(Object.keys(e).map((k) => [k, process.env[k]]));"
              " Object.assign(process.env, e); }";
    c.restore = "{ for (const [k, v] of Object.entries(globalThis.__brigSaved ?? {}))"
                " { if (v === undefined) delete process.env[k]; else process.env[k] = v; }"
                " delete globalThis.__brigSaved; }";
  } else if (language == "bash") {
    for (auto& [k, v] : set.items()) {
      c.apply += "__brig_had_" + k + "=${" + k + "+1}; __brig_old_" + k + "=${" + k + "-}; export " + k + "=" +
                 shell_quote(v.get<std::string>()) + "\n";
      c.restore += "if [ -n \"$__brig_had_" + k + "\" ]; then export " + k + "=\"$__brig_old_" + k + "\"; else unset " +
                   k + "; fi; unset __brig_had_" + k + " __brig_old_" + k + "\n";
    }
  } else if (language == "r") {
    std::string names, assigns;
    for (auto& [k, v] : set.items()) {
      names += (names.empty() ? "" : ", ") + quote(k);
      assigns += (assigns.empty() ? "" : ", ") + quote(k) + " = " + quote(v.get<std::string>());
    }
    c.apply = ".brig_saved <- Sys.getenv(c(" + names + "), unset = NA, names = TRUE)\nSys.setenv(" + assigns + ")\n";
    c.restore = "for (.brig_k in names(.brig_saved)) { if (is.na(.brig_saved[[.brig_k]])) Sys.unsetenv(.brig_k) "
                "else do.call(Sys.setenv, setNames(list(.brig_saved[[.brig_k]]), .brig_k)) }\n"
                "rm(.brig_saved, .brig_k)\n";
  }
  return c;
}

}  // namespace brig::jupyter
