// brig mcp: the MCP server (mcp/server.h) on stdio, newline-delimited JSON-RPC 2.0.
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "base/util.h"
#include "client/api_client.h"
#include "cli/commands.h"
#include "mcp/code_mode.h"
#include "mcp/remote_backend.h"
#include "mcp/server.h"

namespace brig::cli {
namespace {

using client::ApiClient;
using nlohmann::json;
// One JSON-RPC message per line on stdout, whole lines only (calls answer from several threads).
void write_line(const json& msg) {
  static std::mutex mu;
  std::string out = msg.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  std::lock_guard lock(mu);
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
}

int serve_stdio(const Globals& g, const std::string& mode_name) {
  const mcp::Mode mode = mode_name == "code" ? mcp::Mode::code : mcp::Mode::tools;
  const config::Mcp& limits = g.config.mcp;
  mcp::code_mode::set_process_limits(mcp::code_mode::Limits::from(limits));
  auto client = daemon_client(g.config);
  if (!client) {
    std::cerr << "brig mcp: " << client.error().message() << "\n";
    return 1;
  }
  // Fail early, on stderr, if no daemon is reachable: an MCP host shows stderr to its user.
  if (auto probe = client->call("GET", "/health"); !probe)
    std::cerr << "brig mcp: " << probe.error().message() << "\n";
  // The tools are a client of that daemon, acting with this key.
  auto backend = std::make_shared<mcp::RemoteBackend>(std::move(*client));
  mcp::Server server(
      backend, /*stateless=*/false, [](const json& note) { write_line(note); }, nullptr, "", mode);
  // Tool calls run on their own threads, so the reader keeps reading: a notifications/cancelled
  // for a running call is seen while it runs.
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;
  std::string line;
  while (std::getline(std::cin, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (line.size() > limits.message_bytes) {
      write_line({{"jsonrpc", "2.0"}, {"id", nullptr}, {"error", {{"code", -32600}, {"message", "message too large"}}}});
      continue;
    }
    auto msg = json::parse(line, nullptr, false);
    if (msg.is_discarded()) {
      write_line({{"jsonrpc", "2.0"}, {"id", nullptr}, {"error", {{"code", -32700}, {"message", "parse error"}}}});
      continue;
    }
    bool tool_call = msg.is_object() && msg.value("method", "") == "tools/call" && msg.contains("id");
    if (tool_call) {
      // At most mcp.stdio_calls at once; the reader never blocks (it must hear cancellations),
      // so one call more is answered with an error at once.
      std::unique_lock lock(mu);
      if (in_flight >= static_cast<int>(limits.stdio_calls)) {
        lock.unlock();
        write_line({{"jsonrpc", "2.0"}, {"id", msg["id"]},
                    {"error", {{"code", -32000},
                               {"message", "too many tool calls in progress (" + std::to_string(limits.stdio_calls) +
                                               "); retry when one has finished"}}}});
        continue;
      }
      ++in_flight;
      lock.unlock();
      std::thread([&server, &mu, &cv, &in_flight, msg] {
        json reply = server.handle(msg);
        if (!reply.is_null()) write_line(reply);
        std::lock_guard done(mu);
        --in_flight;
        cv.notify_all();
      }).detach();
      continue;
    }
    json reply = server.handle(msg);
    if (!reply.is_null()) write_line(reply);
  }
  // stdin closed: finish what was asked, then exit.
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return in_flight == 0; });
  if (mode == mcp::Mode::code) mcp::code_mode::release_ready_executor(*backend);
  return 0;
}

}  // namespace

Runner add_mcp(CLI::App& app, Globals& globals) {
  auto* sub = app.add_subcommand("mcp", "Serve MCP on stdio: sandbox tools for AI agents, backed by a running `brig serve`.");
  sub->footer("Desktop MCP clients: {\"command\": \"brig\", \"args\": [\"mcp\"]}. The daemon is found through\n"
              "client.url / BRIG_URL (default http://127.0.0.1:49982) and client.api_key / BRIG_API_KEY (default: the\n"
              "state directory's key).");
  auto mode = std::make_shared<std::string>("tools");
  sub->add_option("--mode", *mode,
                  "tools: one tool per operation (default); code: search / execute_read / execute_write, which run "
                  "the agent's JavaScript against brig's API in a fresh sandbox")
      ->check(CLI::IsMember({"tools", "code"}))
      ->capture_default_str();
  return [sub, mode, &globals]() -> int { return sub->parsed() ? serve_stdio(globals, *mode) : -1; };
}

}  // namespace brig::cli
