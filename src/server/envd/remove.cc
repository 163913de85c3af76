// filesystem.Filesystem/Remove.
#include "server/envd/rpc.h"

namespace brig::server::envd {

Route remove(const Call& call) {
  return unary<filesystem::RemoveRequest, filesystem::RemoveResponse>(
      "filesystem.Remove", [call](const filesystem::RemoveRequest& in) -> Result<filesystem::RemoveResponse> {
        BRIG_TRY(call.core.remove(*call.live, in.path(), call.user));
        return filesystem::RemoveResponse{};
      });
}

}  // namespace brig::server::envd
