// The configuration on the command line: the schema's flags, --config and --set, and the one
// call to config::load that every verb goes through.
#include <unistd.h>

#include "base/util.h"
#include "cli/commands.h"

namespace brig::cli {

void add_config_flags(CLI::App& app, const std::string& verb, Globals& g) {
  for (auto& f : config::fields()) {
    if (f.extra.flag.empty() || f.flag_verb() != verb) continue;
    std::string dflt = f.kind == config::Kind::integer ? std::to_string(f.get_int(config::Config{}))
                                                       : f.get_str(config::Config{});
    std::string help = std::string(f.doc) + " (" + f.name() + (dflt.empty() ? "" : "; default " + dflt) + ")";
    CLI::Option* opt = app.add_option(f.flag_name(), g.flag_values[f.name()], help);
    opt->type_name(f.kind == config::Kind::integer ? "INT" : "TEXT");
    if (!f.extra.choices.empty()) {
      std::vector<std::string> choices;
      for (auto& c : split(f.extra.choices, '|')) choices.push_back(c);
      opt->check(CLI::IsMember(choices));
    }
    g.config_flags.emplace_back(&f, opt);
  }
}

Result<config::Config> load_config(const Globals& g) {
  config::Sources sources;
  sources.path = g.config_path;
  sources.env = config::environment();
  sources.euid = ::geteuid();
  for (auto& [field, opt] : g.config_flags)
    if (opt->count() > 0) sources.flags.push_back({field->name(), g.flag_values.at(field->name()), field->flag_name()});
  // --set comes last: it names the field itself.
  for (auto& kv : g.sets) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      return Error::make(errc::invalid_argument, "--set wants section.key=VALUE, got '" + kv.substr(0, 64) + "'");
    sources.flags.push_back({kv.substr(0, eq), kv.substr(eq + 1), "--set " + kv.substr(0, eq)});
  }
  return config::load(sources);
}

Result<client::ApiClient> daemon_client(const config::Config& c) {
  std::string key = c.client.api_key;
  if (key.empty())
    if (auto k = read_small_file(c.server.state_dir + "/api-key", 1024)) key = std::string(trim(*k));
  return client::ApiClient::connect(c.client.url, key);
}

}  // namespace brig::cli
