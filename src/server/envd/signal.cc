// process.Process/SendSignal: SIGTERM or SIGKILL to a process's group.
#include <signal.h>

#include "server/envd/rpc.h"

namespace brig::server::envd {

Route send_signal(const Call& call) {
  return unary<process::SendSignalRequest, process::SendSignalResponse>(
      "process.SendSignal", [call](const process::SendSignalRequest& in) -> Result<process::SendSignalResponse> {
        int sig = in.signal() == process::SIGNAL_SIGTERM ? SIGTERM : in.signal() == process::SIGNAL_SIGKILL ? SIGKILL : 0;
        BRIG_TRY(call.core.send_signal(*call.live, selector(in.process()), sig));
        return process::SendSignalResponse{};
      });
}

}  // namespace brig::server::envd
