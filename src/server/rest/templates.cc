// GET /templates: the templates this daemon has built, in E2B's shape.
#include <algorithm>

#include <nlohmann/json.hpp>

#include "server/rest/rest.h"

namespace brig::server::rest {

Route templates(const Context& ctx, const Request& head) {
  Route r;
  if (head.method != "GET") {
    r.respond = [](Request& req) { return Response::error(405, "use GET for " + req.path.substr(0, 64)); };
    return r;
  }
  r.respond = [&core = ctx.core](Request&) {
    auto all = core.templates();
    if (!all) return error(all.error(), "list templates");
    const config::Sandbox& defaults = core.config().sandbox;
    nlohmann::json out = nlohmann::json::array();
    for (auto& t : *all)
      out.push_back({{"templateID", t.id},
                     {"buildID", t.layers.empty() ? "" : t.layers.front().substr(0, 20)},
                     {"aliases", nlohmann::json::array({t.name})},
                     {"names", nlohmann::json::array({t.name + ":" + t.tag})},
                     {"cpuCount", std::max(1, static_cast<int>(t.config.cpus > 0 ? t.config.cpus : defaults.cpu_millis / 1000.0))},
                     {"memoryMB", t.config.memory_bytes ? t.config.memory_bytes >> 20 : defaults.memory_mib},
                     {"diskSizeMB", t.config.disk_bytes ? t.config.disk_bytes >> 20 : defaults.disk_mib},
                     {"public", false},
                     {"createdAt", rfc3339(t.created_ms)},
                     {"updatedAt", rfc3339(t.created_ms)},
                     {"createdBy", nullptr},
                     {"buildStatus", "ready"},
                     {"envdVersion", kEnvdVersion},
                     {"sizeBytes", t.size_bytes}});
    return Response::json(200, out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  };
  return r;
}

}  // namespace brig::server::rest
