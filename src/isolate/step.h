// The outcome of a setup step that runs in a freshly cloned child: no allocation, no logging.
// The child reports {step, errno} to its parent, which turns it into a brig::Error.
#pragma once

#include <cerrno>

namespace brig::isolate {

struct StepResult {
  const char* step = nullptr;  // nullptr on success; a static string naming the failed call
  int err = 0;

  explicit operator bool() const { return step == nullptr; }
  static StepResult ok() { return {}; }
  static StepResult fail(const char* step) { return {step, errno}; }
};

#define BRIG_STEP(call, name)                                     \
  do {                                                            \
    if ((call) < 0) return ::brig::isolate::StepResult::fail(name); \
  } while (0)

#define BRIG_TRY_STEP(expr)                     \
  do {                                          \
    auto brig_step_ = (expr);                   \
    if (!brig_step_) return brig_step_;         \
  } while (0)

}  // namespace brig::isolate
