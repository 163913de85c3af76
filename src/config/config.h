// brig's configuration: one typed tree, brig::config::Config, with a section per concern
// (server, client, sandbox, limits, build, mcp). Every field is described once, in
// config/schema.def (type, default, bounds, unit, comment, environment and flag names); this
// header expands that table into the structs and into the descriptors returned by fields(),
// which drive parsing, validation, overrides and printing.
//
// Sources, lowest first, applied in load() and nowhere else:
//   the defaults < the file (/etc/brig/brig.toml if it exists, or --config PATH / BRIG_CONFIG,
//   which must exist) < the environment (BRIG_<SECTION>_<KEY>, and the established names such
//   as BRIG_URL) < command-line flags (the schema's flags and --set section.key=value).
// Unknown keys, wrong types and out-of-bound values are errc::invalid_argument errors that
// name the key, where it came from and the bound.
//
// Libraries take the sections they need as parameters; only the CLI calls load().
//
// Thread safety: Config is a plain value; the functions here share no state.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace brig::config {

enum class Unit { none, bytes, mib, ms, s, millicpu };

// The typed tree: struct Server { std::string listen{"127.0.0.1:49982"}; ... }; etc.
#define BRIG_SECTION_BEGIN(section, Type, doc) struct Type {
#define BRIG_FIELD(section, key, T, def, lo, hi, unit, doc, ...) T key{def};
#define BRIG_SECTION_END(section, Type) \
  bool operator==(const Type&) const = default; \
  };
#include "config/schema.def"
#undef BRIG_SECTION_BEGIN
#undef BRIG_FIELD
#undef BRIG_SECTION_END

struct Config {
#define BRIG_SECTION_BEGIN(section, Type, doc) Type section;
#define BRIG_FIELD(...)
#define BRIG_SECTION_END(section, Type)
#include "config/schema.def"
#undef BRIG_SECTION_BEGIN
#undef BRIG_FIELD
#undef BRIG_SECTION_END
  bool operator==(const Config&) const = default;
};

// Each field's bounds as constants, for the code that enforces them against requests
// (config::bounds::sandbox_memory_mib.max): the same numbers the file is checked against.
struct Bound {
  uint64_t min, max;
};
namespace bounds {
#define BRIG_SECTION_BEGIN(section, Type, doc)
#define BRIG_FIELD(section, key, T, def, lo, hi, ...) inline constexpr Bound section##_##key{lo, hi};
#define BRIG_SECTION_END(section, Type)
#include "config/schema.def"
#undef BRIG_SECTION_BEGIN
#undef BRIG_FIELD
#undef BRIG_SECTION_END
}  // namespace bounds

// The optional columns of a field (see schema.def).
struct Extra {
  std::string_view env;      // an established environment name, read before BRIG_<SECTION>_<KEY>
  std::string_view flag;     // "--state-dir" (every verb) or "serve --listen"
  std::string_view choices;  // "a|b|c": the only values a string may take
  bool secret = false;       // never printed
};

enum class Kind { integer, string };

// One field of the schema, with typed access to it in a Config.
struct Field {
  std::string_view section, key, doc;
  Kind kind;
  uint64_t min, max;  // integers: the value; strings: the length in bytes
  Unit unit;
  Extra extra;
  uint64_t (*get_int)(const Config&);
  void (*set_int)(Config&, uint64_t);
  const std::string& (*get_str)(const Config&);
  void (*set_str)(Config&, std::string);

  std::string name() const;      // "server.listen"
  std::string env_name() const;  // "BRIG_SERVER_LISTEN"
  std::string flag_name() const;  // "--listen" (without the verb), or ""
  std::string flag_verb() const;  // "serve", or "" for every verb
};

struct Section {
  std::string_view name, doc;
};

std::span<const Field> fields();
std::span<const Section> sections();
// By "section.key"; nullptr if there is no such field.
const Field* find(std::string_view name);

inline constexpr std::string_view kDefaultPath = "/etc/brig/brig.toml";

// A value given on the command line: `field` is "section.key", `spelling` how the user wrote
// the flag (for messages, e.g. "--pool").
struct FlagValue {
  std::string field;
  std::string value;
  std::string spelling;
};

struct Sources {
  std::string path;  // --config: must exist. Empty: BRIG_CONFIG, else default_path if it exists.
  std::string default_path = std::string(kDefaultPath);
  std::map<std::string, std::string> env;  // the process environment (environment())
  std::vector<FlagValue> flags;            // applied in order; the last one of a field wins
  uint32_t euid = 0;                       // the state directory's default depends on it
};

// The configuration from `sources`, validated, with server.state_dir resolved (never empty).
Result<Config> load(const Sources& sources);

// The fields of TOML `text` applied over `base` (no environment or flags); `origin` names the
// text in messages. Bounds are checked as each key is read.
Result<Config> parse_toml(std::string_view text, std::string_view origin, Config base = {});

// The bounds of every field and the checks between fields.
Result<> validate(const Config& config);

// `config` as commented TOML: parse_toml of it gives it back (secrets excepted: they are
// printed as a comment saying whether they are set).
std::string to_toml(const Config& config);

// brig's state directory when none is configured: /var/lib/brig as root, else
// $XDG_STATE_HOME/brig, ~/.local/state/brig, or /tmp/brig-<euid>.
std::string default_state_dir(const std::map<std::string, std::string>& env, uint32_t euid);

// Bytes in the largest binary unit that divides them ("512 MiB"), else rounded ("1.5 KiB").
std::string size_text(uint64_t bytes);

// This process's environment, as Sources::env wants it.
std::map<std::string, std::string> environment();

}  // namespace brig::config
