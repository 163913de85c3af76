// brig: sandboxes for AI agents. Dispatches to one file per verb.
#include <unistd.h>

#include <iostream>

#include "base/log.h"
#include "cli/commands.h"
#include "sandbox/engine.h"

int main(int argc, char** argv) {
  brig::sandbox::run_zygote_if_requested(argc, argv);
  CLI::App app{"brig: disposable, isolated Linux sandboxes for AI agents.\n"
               "Run `brig <command> --help` for the options of a command."};
  app.require_subcommand(1);
  // Global options are accepted after the verb too (`brig serve --state-dir D`): a subcommand
  // hands what it does not know to its parent.
  app.fallthrough();
  brig::cli::Globals globals;
  // The configuration: defaults < the file < the environment < these flags (config/config.h).
  app.add_option("--config", globals.config_path,
                 "Configuration file (TOML); default: /etc/brig/brig.toml if it exists (also BRIG_CONFIG)");
  app.add_option("--set", globals.sets,
                 "Set a configuration value, section.key=VALUE (repeatable); `brig serve --print-config` lists them")
      ->allow_extra_args(false);
  brig::cli::add_config_flags(app, "", globals);

  std::vector<brig::cli::Runner> runners = {
      brig::cli::add_run(app, globals),
      brig::cli::add_doctor(app, globals),
      brig::cli::add_template(app, globals),
      brig::cli::add_serve(app, globals),
      brig::cli::add_key(app, globals),
      brig::cli::add_sandbox(app, globals),
      brig::cli::add_files(app, globals),
      brig::cli::add_mcp(app, globals),
      brig::cli::add_egress(app, globals),
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  auto config = brig::cli::load_config(globals);
  if (!config) {
    std::cerr << "brig: configuration: " << config.error().message() << "\n";
    return 2;
  }
  globals.config = std::move(*config);
  brig::log::init(globals.config.server.log_level);
  // Each runner returns -1 unless its own subcommand was the one given.
  for (auto& run : runners)
    if (int code = run(); code >= 0) return code;
  return 2;
}
