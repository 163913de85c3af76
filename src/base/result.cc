#include "base/result.h"

#include <cstring>
#include <stdexcept>

namespace brig {
namespace {

class BrigCategory final : public std::error_category {
 public:
  const char* name() const noexcept override { return "brig"; }
  std::string message(int c) const override {
    switch (static_cast<errc>(c)) {
      case errc::ok: return "ok";
      case errc::invalid_argument: return "invalid argument";
      case errc::not_found: return "not found";
      case errc::limit_exceeded: return "limit exceeded";
      case errc::unsupported: return "unsupported";
      case errc::protocol: return "protocol error";
      case errc::timed_out: return "timed out";
      case errc::conflict: return "conflict";
      case errc::unavailable: return "unavailable";
    }
    return "unknown";
  }
};

}  // namespace

const std::error_category& brig_category() noexcept {
  static const BrigCategory category;
  return category;
}

Error Error::from_errno(int err, std::string_view call) {
  std::string msg(call);
  msg += ": ";
  msg += strerrorname_np(err) ? strerrorname_np(err) : "E?";
  msg += " (";
  msg += std::strerror(err);
  msg += ")";
  return {std::error_code(err, std::generic_category()), std::move(msg)};
}

int Error::sys_errno() const noexcept {
  if (code_.category() == std::generic_category() || code_.category() == std::system_category())
    return code_.value();
  return 0;
}

Error Error::wrap(std::string_view context) const& {
  Error copy = *this;
  return std::move(copy).wrap(context);
}

Error Error::wrap(std::string_view context) && {
  std::string msg(context);
  msg += ": ";
  msg += message_;
  message_ = std::move(msg);
  return std::move(*this);
}

void throw_exception_from_error(const Error& e, const boost::source_location&) {
  throw std::runtime_error(e.message());
}

}  // namespace brig
