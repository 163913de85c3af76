// process.Process/Update: resizes a process's PTY.
#include "server/envd/rpc.h"

namespace brig::server::envd {

Route update(const Call& call) {
  return unary<process::UpdateRequest, process::UpdateResponse>(
      "process.Update", [call](const process::UpdateRequest& in) -> Result<process::UpdateResponse> {
        auto sel = selector(in.process());
        if (!in.has_pty()) {
          BRIG_TRY(call.core.find_process(*call.live, sel));
          return process::UpdateResponse{};
        }
        BRIG_TRY(call.core.resize_pty(*call.live, sel, static_cast<uint16_t>(in.pty().size().rows()),
                                      static_cast<uint16_t>(in.pty().size().cols())));
        return process::UpdateResponse{};
      });
}

}  // namespace brig::server::envd
