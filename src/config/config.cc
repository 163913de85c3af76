#include "config/config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <sstream>
#include <type_traits>

#include <toml++/toml.h>

#include "base/cidr.h"
#include "base/util.h"

extern char** environ;

namespace brig::config {
namespace {

// A descriptor with typed access to Config::*S.*M; the kind follows the member's type.
template <auto S, auto M>
constexpr Field make_field(std::string_view section, std::string_view key, uint64_t lo, uint64_t hi, Unit unit,
                           std::string_view doc, Extra extra) {
  using T = std::remove_cvref_t<decltype(std::declval<Config&>().*S.*M)>;
  Field f{section, key, doc, Kind::integer, lo, hi, unit, extra, nullptr, nullptr, nullptr, nullptr};
  if constexpr (std::is_same_v<T, std::string>) {
    f.kind = Kind::string;
    f.get_str = [](const Config& c) -> const std::string& { return c.*S.*M; };
    f.set_str = [](Config& c, std::string v) { c.*S.*M = std::move(v); };
  } else {
    static_assert(std::is_same_v<T, uint32_t> || std::is_same_v<T, uint64_t>, "schema.def: unsupported field type");
    f.get_int = [](const Config& c) -> uint64_t { return c.*S.*M; };
    f.set_int = [](Config& c, uint64_t v) { c.*S.*M = static_cast<T>(v); };
  }
  return f;
}

const Field kFields[] = {
#define BRIG_SECTION_BEGIN(section, Type, doc)
#define BRIG_FIELD(section, key, T, def, lo, hi, unit, doc, ...)                                                     \
  make_field<&Config::section, &decltype(Config::section)::key>(#section, #key, lo, hi, Unit::unit, doc,            \
                                                                Extra{__VA_ARGS__}),
#define BRIG_SECTION_END(section, Type)
#include "config/schema.def"
#undef BRIG_SECTION_BEGIN
#undef BRIG_FIELD
#undef BRIG_SECTION_END
};

const Section kSections[] = {
#define BRIG_SECTION_BEGIN(section, Type, doc) {#section, doc},
#define BRIG_FIELD(...)
#define BRIG_SECTION_END(section, Type)
#include "config/schema.def"
#undef BRIG_SECTION_BEGIN
#undef BRIG_FIELD
#undef BRIG_SECTION_END
};

Error bad(std::string message) { return Error::make(errc::invalid_argument, std::move(message)); }

std::string upper(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// "1 MiB" beside a byte count, "512 MiB" beside a MiB count, "30 s" beside seconds...
std::string with_unit(uint64_t v, Unit unit) {
  switch (unit) {
    case Unit::bytes: return size_text(v);
    case Unit::mib: return v < (1ull << 44) ? size_text(v << 20) : std::to_string(v) + " MiB";
    case Unit::ms: return std::to_string(v) + " ms";
    case Unit::s: return std::to_string(v) + " s";
    case Unit::millicpu: {
      std::string frac = std::to_string(1000 + v % 1000).substr(1);  // "010"
      while (!frac.empty() && frac.back() == '0') frac.pop_back();
      return std::to_string(v / 1000) + (frac.empty() ? "" : "." + frac) + (v == 1000 ? " CPU" : " CPUs");
    }
    case Unit::none: break;
  }
  return std::to_string(v);
}

std::string bound_text(const Field& f) {
  if (f.kind == Kind::string) {
    if (!f.extra.choices.empty()) return "one of " + std::string(f.extra.choices);
    return f.min ? std::to_string(f.min) + " to " + std::to_string(f.max) + " bytes long"
                 : "at most " + std::to_string(f.max) + " bytes long";
  }
  auto one = [&](uint64_t v) {
    std::string u = with_unit(v, f.unit);
    bool plain = f.unit == Unit::none || f.unit == Unit::s || f.unit == Unit::ms || (f.unit == Unit::bytes && v < 1024);
    return plain ? std::to_string(v) + (f.unit == Unit::s ? " s" : f.unit == Unit::ms ? " ms" : "")
                 : std::to_string(v) + " (" + u + ")";
  };
  return "from " + one(f.min) + " to " + one(f.max);
}

// Checks and stores an integer; `where` says where it came from ("brig.toml:3:1", "--pool").
Result<> set_integer(Config& c, const Field& f, int64_t v, const std::string& where) {
  if (v < 0 || static_cast<uint64_t>(v) < f.min || static_cast<uint64_t>(v) > f.max)
    return bad(where + ": " + f.name() + " = " + std::to_string(v) + " is out of bounds: it must be " + bound_text(f));
  f.set_int(c, static_cast<uint64_t>(v));
  return ok();
}

Result<> set_string(Config& c, const Field& f, std::string v, const std::string& where) {
  if (!f.extra.choices.empty()) {
    auto options = split(f.extra.choices, '|');
    if (std::find(options.begin(), options.end(), v) == options.end())
      return bad(where + ": " + f.name() + " = \"" + v.substr(0, 64) + "\" is not " + bound_text(f));
  } else if (v.size() < f.min || v.size() > f.max) {
    return bad(where + ": " + f.name() + " is " + std::to_string(v.size()) + " bytes long; it must be " + bound_text(f));
  }
  if (v.find('\0') != std::string::npos) return bad(where + ": " + f.name() + " holds a NUL byte");
  f.set_str(c, std::move(v));
  return ok();
}

// A value written as text (environment, flags): an integer is plain decimal digits.
Result<> set_text(Config& c, const Field& f, const std::string& text, const std::string& where) {
  if (f.kind == Kind::string) return set_string(c, f, text, where);
  if (text.empty() || text.size() > 19 || text.find_first_not_of("0123456789") != std::string::npos)
    return bad(where + ": " + f.name() + " wants a whole number " + bound_text(f) + ", not \"" + text.substr(0, 64) + "\"");
  return set_integer(c, f, std::stoll(text), where);
}

std::string keys_of(std::string_view section) {
  std::string out;
  for (auto& f : kFields)
    if (f.section == section) out += (out.empty() ? "" : ", ") + std::string(f.key);
  return out;
}

std::string section_names() {
  std::string out;
  for (auto& s : kSections) out += (out.empty() ? "[" : ", [") + std::string(s.name) + "]";
  return out;
}

const Section* find_section(std::string_view name) {
  for (auto& s : kSections)
    if (s.name == name) return &s;
  return nullptr;
}

std::string at(std::string_view origin, const toml::source_region& src) {
  return std::string(origin) + ":" + std::to_string(src.begin.line) + ":" + std::to_string(src.begin.column);
}

std::string type_name(const toml::node& n) {
  std::ostringstream out;
  out << n.type();
  return out.str();
}

Result<> apply_section(Config& c, std::string_view origin, std::string_view section, const toml::table& table) {
  for (auto&& [k, node] : table) {
    const std::string key(k.str().substr(0, 64));
    const Field* f = find(std::string(section) + "." + key);
    std::string where = at(origin, node.source());
    if (!f)
      return bad(at(origin, k.source()) + ": unknown key " + std::string(section) + "." + key + " (the keys of [" + std::string(section) +
                 "] are " + keys_of(section) + ")");
    if (f->kind == Kind::integer) {
      if (!node.is_integer())
        return bad(where + ": " + f->name() + " wants an integer " + bound_text(*f) + ", not a " + type_name(node));
      BRIG_TRY(set_integer(c, *f, node.as_integer()->get(), where));
    } else {
      if (!node.is_string()) return bad(where + ": " + f->name() + " wants a string, not a " + type_name(node));
      BRIG_TRY(set_string(c, *f, node.as_string()->get(), where));
    }
  }
  return ok();
}

// An environment name of a section (BRIG_LIMITS_...) that is no field's: a typo, refused.
Result<> check_unknown_env(const std::map<std::string, std::string>& env) {
  for (auto& [name, _] : env) {
    for (auto& s : kSections) {
      std::string prefix = "BRIG_" + upper(s.name) + "_";
      if (!name.starts_with(prefix)) continue;
      bool known = false;
      for (auto& f : kFields) known |= f.env_name() == name || f.extra.env == name;
      // A longer section name may share this prefix (none does today); only a name that no
      // section claims is refused.
      for (auto& other : kSections)
        known |= other.name.size() > s.name.size() && name.starts_with("BRIG_" + upper(other.name) + "_");
      if (!known)
        return bad("environment: " + name + " is not a setting (the keys of [" + std::string(s.name) + "] are " +
                   keys_of(s.name) + ")");
    }
  }
  return ok();
}

Result<> apply_env(Config& c, const std::map<std::string, std::string>& env) {
  BRIG_TRY(check_unknown_env(env));
  for (auto& f : kFields) {
    // The established name first, so the generic one (more specific) wins when both are set.
    for (std::string name : {std::string(f.extra.env), f.env_name()}) {
      if (name.empty()) continue;
      auto it = env.find(name);
      if (it == env.end()) continue;
      // An empty variable counts as unset, as it always has (BRIG_URL= means the default).
      if (it->second.empty()) continue;
      BRIG_TRY(set_text(c, f, it->second, "environment " + name));
    }
  }
  return ok();
}

Result<std::string> read_config_file(const std::string& path) {
  auto text = read_small_file(path, 1 << 20);
  if (!text) return text.error().wrap("read the configuration file " + path);
  return text;
}

// Word-wraps `text` into "# " comment lines of at most `width` columns.
std::string comment(std::string_view text, size_t width = 100) {
  std::string out, line;
  for (auto& word : split(text, ' ')) {
    if (word.empty()) continue;
    if (!line.empty() && line.size() + 1 + word.size() + 2 > width) {
      out += "# " + line + "\n";
      line.clear();
    }
    line += (line.empty() ? "" : " ") + word;
  }
  if (!line.empty()) out += "# " + line + "\n";
  return out;
}

// A TOML basic string: quotes, backslashes and control characters escaped.
std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += static_cast<char>(ch);
    } else if (ch < 0x20 || ch == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", ch);
      out += buf;
    } else {
      out += static_cast<char>(ch);
    }
  }
  return out + "\"";
}

}  // namespace

std::string Field::name() const { return std::string(section) + "." + std::string(key); }
std::string Field::env_name() const { return "BRIG_" + upper(section) + "_" + upper(key); }

std::string Field::flag_name() const {
  auto space = extra.flag.rfind(' ');
  return std::string(space == std::string_view::npos ? extra.flag : extra.flag.substr(space + 1));
}

std::string Field::flag_verb() const {
  auto space = extra.flag.rfind(' ');
  return space == std::string_view::npos ? "" : std::string(extra.flag.substr(0, space));
}

std::span<const Field> fields() { return kFields; }
std::span<const Section> sections() { return kSections; }

const Field* find(std::string_view name) {
  for (auto& f : kFields)
    if (name.size() == f.section.size() + 1 + f.key.size() && name.starts_with(f.section) &&
        name[f.section.size()] == '.' && name.ends_with(f.key))
      return &f;
  return nullptr;
}

Result<Config> parse_toml(std::string_view text, std::string_view origin, Config base) {
  toml::table doc;
  try {
    doc = toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    return bad(at(origin, e.source()) + ": " + std::string(e.description()));
  }
  for (auto&& [k, node] : doc) {
    const std::string name(k.str().substr(0, 64));
    std::string where = at(origin, k.source());
    if (!find_section(name)) {
      if (node.is_table()) return bad(where + ": unknown section [" + name + "] (the sections are " + section_names() + ")");
      return bad(where + ": " + name + " is outside any section (the sections are " + section_names() + ")");
    }
    if (!node.is_table()) return bad(where + ": " + name + " must be a section ([" + name + "]), not a " + type_name(node));
    BRIG_TRY(apply_section(base, origin, name, *node.as_table()));
  }
  return base;
}

Result<> validate(const Config& c) {
  for (auto& f : kFields) {
    if (f.kind == Kind::integer) {
      uint64_t v = f.get_int(c);
      if (v < f.min || v > f.max)
        return bad(f.name() + " = " + std::to_string(v) + " is out of bounds: it must be " + bound_text(f));
    } else {
      Config scratch;
      BRIG_TRY(set_string(scratch, f, f.get_str(c), "configuration"));
    }
  }
  if (c.sandbox.lifetime_s > c.sandbox.max_lifetime_s)
    return bad("sandbox.lifetime_s = " + std::to_string(c.sandbox.lifetime_s) +
               " is longer than sandbox.max_lifetime_s = " + std::to_string(c.sandbox.max_lifetime_s));
  if (uint64_t{c.limits.metadata_key_bytes} + c.limits.metadata_value_bytes > c.limits.metadata_total_bytes)
    return bad("limits.metadata_key_bytes + limits.metadata_value_bytes (" +
               std::to_string(c.limits.metadata_key_bytes + c.limits.metadata_value_bytes) +
               ") is more than limits.metadata_total_bytes (" + std::to_string(c.limits.metadata_total_bytes) +
               "): one entry of the largest size could never be stored");
  auto subnet = parse_ipv4_cidr(c.network.subnet);
  if (!subnet || subnet->prefix > 28 || cidr_text(*subnet) != c.network.subnet)
    return bad("network.subnet = \"" + c.network.subnet + "\" must be an IPv4 range a.b.c.d/n with n at most 28 and no host bits "
               "(e.g. 10.200.0.0/16)");
  if (!c.network.dns_upstream.empty() && c.network.dns_upstream != "off" && !parse_ipv4(c.network.dns_upstream))
    return bad("network.dns_upstream = \"" + c.network.dns_upstream + "\" must be an IPv4 address, \"off\" or empty");
  if (!c.client.url.starts_with("http://"))
    return bad("client.url = \"" + c.client.url.substr(0, 64) + "\" must be http://HOST:PORT");
  return ok();
}

Result<Config> load(const Sources& sources) {
  Config c;
  std::string path = sources.path;
  if (path.empty())
    if (auto it = sources.env.find("BRIG_CONFIG"); it != sources.env.end()) path = it->second;
  if (!path.empty()) {
    // Named explicitly: it must exist.
    BRIG_TRY_ASSIGN(text, read_config_file(path));
    BRIG_TRY_ASSIGN(parsed, parse_toml(text, path, c));
    c = std::move(parsed);
  } else if (struct stat st; !sources.default_path.empty() && ::stat(sources.default_path.c_str(), &st) == 0) {
    BRIG_TRY_ASSIGN(text, read_config_file(sources.default_path));
    BRIG_TRY_ASSIGN(parsed, parse_toml(text, sources.default_path, c));
    c = std::move(parsed);
  }
  BRIG_TRY(apply_env(c, sources.env));
  for (auto& flag : sources.flags) {
    const Field* f = find(flag.field);
    std::string where = flag.spelling.empty() ? "--set " + flag.field : flag.spelling;
    if (!f) return bad(where + ": unknown setting " + flag.field.substr(0, 64) + " (settings are section.key, e.g. limits.watchers)");
    BRIG_TRY(set_text(c, *f, flag.value, where));
  }
  if (c.server.state_dir.empty()) c.server.state_dir = default_state_dir(sources.env, sources.euid);
  BRIG_TRY(validate(c));
  return c;
}

std::string to_toml(const Config& c) {
  std::string out =
      "# brig configuration: the effective settings. Put what you change in /etc/brig/brig.toml (or pass\n"
      "# --config PATH). The environment overrides the file (BRIG_<SECTION>_<KEY>, e.g. BRIG_LIMITS_WATCHERS),\n"
      "# and command-line flags override both (brig --set section.key=VALUE, and the flags named below).\n";
  for (auto& s : kSections) {
    out += "\n" + comment(s.doc) + "[" + std::string(s.name) + "]\n";
    for (auto& f : kFields) {
      if (f.section != s.name) continue;
      std::string notes = bound_text(f) + ".";
      if (!f.extra.env.empty()) notes += " Environment: " + std::string(f.extra.env) + ".";
      if (!f.extra.flag.empty()) notes += " Flag: " + std::string(f.extra.flag) + ".";
      out += comment(std::string(f.doc) + " " + std::string(1, static_cast<char>(std::toupper(notes[0]))) + notes.substr(1));
      if (f.kind == Kind::string && f.extra.secret) {
        out += "# " + std::string(f.key) + " = " + (f.get_str(c).empty() ? "\"\"  (not set)" : "(set; not printed)") + "\n";
      } else if (f.kind == Kind::string) {
        out += std::string(f.key) + " = " + quoted(f.get_str(c)) + "\n";
      } else {
        uint64_t v = f.get_int(c);
        out += std::string(f.key) + " = " + std::to_string(v);
        if ((f.unit == Unit::bytes && v >= 1024) || f.unit == Unit::mib || f.unit == Unit::millicpu)
          out += "  # " + with_unit(v, f.unit);
        out += "\n";
      }
    }
  }
  return out;
}

std::string size_text(uint64_t v) {
  for (auto [shift, name] : {std::pair{40, " TiB"}, {30, " GiB"}, {20, " MiB"}, {10, " KiB"}})
    if (v >= (1ull << shift) && v % (1ull << shift) == 0) return std::to_string(v >> shift) + name;
  return v < 1024 ? std::to_string(v) + " bytes" : format_size(v);
}

std::string default_state_dir(const std::map<std::string, std::string>& env, uint32_t euid) {
  if (euid == 0) return "/var/lib/brig";
  if (auto it = env.find("XDG_STATE_HOME"); it != env.end() && !it->second.empty()) return it->second + "/brig";
  if (auto it = env.find("HOME"); it != env.end() && !it->second.empty()) return it->second + "/.local/state/brig";
  return "/tmp/brig-" + std::to_string(euid);
}

std::map<std::string, std::string> environment() {
  std::map<std::string, std::string> out;
  for (char** e = environ; e && *e; ++e) {
    std::string_view kv(*e);
    auto eq = kv.find('=');
    if (eq != std::string_view::npos) out.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return out;
}

}  // namespace brig::config
