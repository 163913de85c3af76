// One function per CLI verb; main.cc holds the dispatch table.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "client/api_client.h"
#include "config/config.h"

namespace brig::cli {

struct Globals {
  // The configuration, loaded by main() once the command line is parsed (load_config).
  config::Config config;
  // Where it comes from, as given on the command line.
  std::string config_path;        // --config
  std::vector<std::string> sets;  // --set section.key=VALUE
  std::vector<std::pair<const config::Field*, CLI::Option*>> config_flags;  // the schema's own flags
  std::map<std::string, std::string> flag_values;                          // their values, by field name
};

// Registers the schema's flags of `verb` ("" = the flags of every verb) on `app`.
void add_config_flags(CLI::App& app, const std::string& verb, Globals& g);
// The configuration from /etc/brig/brig.toml (or --config), the environment and the flags.
Result<config::Config> load_config(const Globals& g);
// A client of the configured daemon, with client.api_key or else the state directory's key.
Result<client::ApiClient> daemon_client(const config::Config& c);

// Registers the verb's subcommand; the returned function runs it and gives the exit code.
using Runner = std::function<int()>;  // -1 when its subcommand was not given
Runner add_run(CLI::App& app, Globals& globals);
Runner add_doctor(CLI::App& app, Globals& globals);
Runner add_template(CLI::App& app, Globals& globals);
Runner add_serve(CLI::App& app, Globals& globals);
Runner add_key(CLI::App& app, Globals& globals);
Runner add_sandbox(CLI::App& app, Globals& globals);
Runner add_files(CLI::App& app, Globals& globals);
Runner add_mcp(CLI::App& app, Globals& globals);
Runner add_egress(CLI::App& app, Globals& globals);

}  // namespace brig::cli
