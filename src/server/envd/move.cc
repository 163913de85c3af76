// filesystem.Filesystem/Move.
#include "server/envd/rpc.h"

namespace brig::server::envd {

Route move(const Call& call) {
  return unary<filesystem::MoveRequest, filesystem::MoveResponse>(
      "filesystem.Move", [call](const filesystem::MoveRequest& in) -> Result<filesystem::MoveResponse> {
        BRIG_TRY_ASSIGN(e, call.core.move(*call.live, in.source(), in.destination(), call.user));
        filesystem::MoveResponse out;
        to_pb(e, out.mutable_entry());
        return out;
      });
}

}  // namespace brig::server::envd
