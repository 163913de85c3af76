#include "mcp/backend.h"

#include <algorithm>

namespace brig::mcp {
namespace {

// One condition of its own, so a missing sandbox is told apart from a missing file (both
// would be not_found otherwise).
class GoneCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "brig.mcp"; }
  std::string message(int) const override { return "sandbox not found"; }
};
const GoneCategory& gone_category() {
  static const GoneCategory c;
  return c;
}

}  // namespace

void CancelToken::cancel() {
  std::lock_guard lock(mu_);
  if (cancelled_) return;
  cancelled_ = true;
  for (auto* hook : hooks_) (*hook)();
}

bool CancelToken::cancelled() {
  std::lock_guard lock(mu_);
  return cancelled_;
}

OnCancel::OnCancel(CancelToken* token, std::function<void()> hook) : token_(token), hook_(std::move(hook)) {
  if (!token_) return;
  std::lock_guard lock(token_->mu_);
  if (token_->cancelled_) hook_();
  else token_->hooks_.push_back(&hook_);
}

OnCancel::~OnCancel() {
  if (!token_) return;
  std::lock_guard lock(token_->mu_);
  std::erase(token_->hooks_, &hook_);
}

Error sandbox_gone(std::string message) { return Error(std::error_code(1, gone_category()), std::move(message)); }

bool is_sandbox_gone(const Error& e) { return e.code() == std::error_code(1, gone_category()); }

}  // namespace brig::mcp
