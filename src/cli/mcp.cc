// brig mcp: the MCP server (mcp/server.h) on stdio, newline-delimited JSON-RPC 2.0.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "base/util.h"
#include "client/api_client.h"
#include "cli/commands.h"
#include "mcp/server.h"

namespace brig::cli {
namespace {

using client::ApiClient;
using nlohmann::json;
constexpr size_t kMaxLine = 16 << 20;

int serve_stdio(const Globals& g) {
  auto client = ApiClient::from_env(g.state_dir);
  if (!client) {
    std::cerr << "brig mcp: " << client.error().message() << "\n";
    return 1;
  }
  // Fail early, on stderr, if no daemon is reachable: an MCP host shows stderr to its user.
  if (auto probe = client->call("GET", "/health"); !probe)
    std::cerr << "brig mcp: " << probe.error().message() << "\n";
  mcp::Server server(std::move(*client), /*stateless=*/false, [](const json& note) {
    std::string out = note.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
  });
  std::string line;
  while (std::getline(std::cin, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    json reply;
    if (line.size() > kMaxLine) {
      reply = {{"jsonrpc", "2.0"}, {"id", nullptr}, {"error", {{"code", -32600}, {"message", "message too large"}}}};
    } else {
      auto msg = json::parse(line, nullptr, false);
      reply = msg.is_discarded()
                  ? json{{"jsonrpc", "2.0"}, {"id", nullptr}, {"error", {{"code", -32700}, {"message", "parse error"}}}}
                  : server.handle(msg);
    }
    if (!reply.is_null()) {
      std::string out = reply.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
      std::fwrite(out.data(), 1, out.size(), stdout);
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace

Runner add_mcp(CLI::App& app, Globals& globals) {
  auto* sub = app.add_subcommand("mcp", "Serve MCP on stdio: sandbox tools for AI agents, backed by a running `brig serve`.");
  sub->footer("Desktop MCP clients: {\"command\": \"brig\", \"args\": [\"mcp\"]}. The daemon is found through\n"
              "BRIG_URL (default http://127.0.0.1:49982) and BRIG_API_KEY (default: the state directory's key).");
  return [sub, &globals]() -> int { return sub->parsed() ? serve_stdio(globals) : -1; };
}

}  // namespace brig::cli
