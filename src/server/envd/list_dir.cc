// filesystem.Filesystem/ListDir.
#include "server/envd/rpc.h"

namespace brig::server::envd {

Route list_dir(const Call& call) {
  return unary<filesystem::ListDirRequest, filesystem::ListDirResponse>(
      "filesystem.ListDir", [call](const filesystem::ListDirRequest& in) -> Result<filesystem::ListDirResponse> {
        BRIG_TRY_ASSIGN(entries, call.core.list_dir(*call.live, in.path(), in.depth(), call.user));
        filesystem::ListDirResponse out;
        for (auto& e : entries) to_pb(e, out.add_entries());
        return out;
      });
}

}  // namespace brig::server::envd
