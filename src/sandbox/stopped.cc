#include "sandbox/stopped.h"

namespace brig::sandbox {

Result<> StoppedSandbox::destroy() {
  if (destroyed_.exchange(true)) return ok();
  return release_ ? release_() : ok();
}

}  // namespace brig::sandbox
