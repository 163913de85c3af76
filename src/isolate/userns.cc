#include "isolate/userns.h"

#include <string>

#include "base/util.h"

namespace brig::isolate {

Result<> write_id_maps(pid_t pid, uint32_t base) {
  const std::string map = "0 " + std::to_string(base) + " " + std::to_string(kIdsPerSandbox);
  const std::string proc = "/proc/" + std::to_string(pid);
  BRIG_TRY(wrap(write_small_file(proc + "/uid_map", map), "uid_map"));
  BRIG_TRY(wrap(write_small_file(proc + "/gid_map", map), "gid_map"));
  return ok();
}

}  // namespace brig::isolate
