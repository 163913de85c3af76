// process.Process/List: the processes still running.
#include "server/envd/rpc.h"

namespace brig::server::envd {

Route list(const Call& call) {
  return unary<process::ListRequest, process::ListResponse>(
      "process.List", [call](const process::ListRequest&) -> Result<process::ListResponse> {
        process::ListResponse out;
        for (auto& hub : call.core.running_processes(*call.live)) {
          auto* p = out.add_processes();
          p->set_pid(static_cast<uint32_t>(hub->pid()));
          auto* c = p->mutable_config();
          const auto& spec = hub->spec();
          c->set_cmd(spec.cmd);
          for (auto& a : spec.args) c->add_args(a);
          for (auto& [k, v] : spec.env) (*c->mutable_envs())[k] = v;
          c->set_cwd(spec.cwd);
          if (!spec.tag.empty()) p->set_tag(spec.tag);
        }
        return out;
      });
}

}  // namespace brig::server::envd
