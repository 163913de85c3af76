// One function per CLI verb; main.cc holds the dispatch table.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace brig::cli {

struct Globals {
  std::string state_dir;
  std::string log_level = "warn";
};

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

}  // namespace brig::cli
