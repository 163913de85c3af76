// filesystem.Filesystem/MakeDir.
#include "server/envd/rpc.h"

namespace brig::server::envd {

Route make_dir(const Call& call) {
  return unary<filesystem::MakeDirRequest, filesystem::MakeDirResponse>(
      "filesystem.MakeDir", [call](const filesystem::MakeDirRequest& in) -> Result<filesystem::MakeDirResponse> {
        BRIG_TRY_ASSIGN(e, call.core.make_dir(*call.live, in.path(), call.user));
        filesystem::MakeDirResponse out;
        to_pb(e, out.mutable_entry());
        return out;
      });
}

}  // namespace brig::server::envd
