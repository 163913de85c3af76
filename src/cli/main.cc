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
  app.add_option("--state-dir", globals.state_dir,
                 "State directory (default /var/lib/brig as root, else $XDG_STATE_HOME/brig)")
      ->envname("BRIG_STATE_DIR");
  app.add_option("--log-level", globals.log_level, "debug, info, warn, error or off")->envname("BRIG_LOG_LEVEL");

  std::vector<brig::cli::Runner> runners = {
      brig::cli::add_run(app, globals),
      brig::cli::add_doctor(app, globals),
      brig::cli::add_template(app, globals),
      brig::cli::add_serve(app, globals),
      brig::cli::add_key(app, globals),
      brig::cli::add_sandbox(app, globals),
      brig::cli::add_files(app, globals),
      brig::cli::add_mcp(app, globals),
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  brig::log::init(globals.log_level);
  // Each runner returns -1 unless its own subcommand was the one given.
  for (auto& run : runners)
    if (int code = run(); code >= 0) return code;
  return 2;
}
