// filesystem.Filesystem/Stat.
#include "server/envd/rpc.h"

namespace brig::server::envd {

Route stat(const Call& call) {
  return unary<filesystem::StatRequest, filesystem::StatResponse>(
      "filesystem.Stat", [call](const filesystem::StatRequest& in) -> Result<filesystem::StatResponse> {
        BRIG_TRY_ASSIGN(e, call.core.stat(*call.live, in.path(), call.user));
        filesystem::StatResponse out;
        to_pb(e, out.mutable_entry());
        return out;
      });
}

}  // namespace brig::server::envd
