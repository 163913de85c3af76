// Result<T> and Error: expected failures are values, created at the failing call and given
// context on the way up; logged once, at a boundary (CLI main, request handler).
#pragma once

#include <boost/system/result.hpp>

#include <cerrno>
#include <string>
#include <string_view>
#include <system_error>

namespace brig {

// brig's own error conditions beside errno values.
enum class errc {
  ok = 0,
  invalid_argument = 1,   // a client mistake: bad size, bad id, bad path
  not_found = 2,          // unknown sandbox, template, process
  limit_exceeded = 3,     // a bound was hit (message size, entries, output)
  unsupported = 4,        // the host lacks something brig needs
  protocol = 5,           // a peer sent something malformed
  timed_out = 6,
  conflict = 7,           // e.g. deleting something in use
  unavailable = 8,        // brig cannot take it now (a capacity bound); the same may work later
};

const std::error_category& brig_category() noexcept;
inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), brig_category()};
}

// An error code plus a short context chain, outermost first once rendered:
// "create sandbox: mount overlay: fsconfig(lowerdir): EINVAL".
class Error {
 public:
  Error() = default;
  Error(std::error_code code, std::string message) : code_(code), message_(std::move(message)) {}

  // An errno failure of `call` (e.g. "pivot_root(\".\", \".\")").
  static Error from_errno(int err, std::string_view call);
  static Error make(errc code, std::string message) { return {make_error_code(code), std::move(message)}; }

  const std::error_code& code() const noexcept { return code_; }
  // errno value when the code is generic/system, else 0.
  int sys_errno() const noexcept;
  bool is(errc e) const noexcept { return code_ == make_error_code(e); }
  const std::string& message() const noexcept { return message_; }

  // Returns a copy with `context` prepended ("context: message").
  Error wrap(std::string_view context) const&;
  Error wrap(std::string_view context) &&;

 private:
  std::error_code code_;
  std::string message_;
};

[[noreturn]] void throw_exception_from_error(const Error& e, const boost::source_location& loc);

template <class T = void>
using Result = boost::system::result<T, Error>;

// Wraps the error of `r` (if any) with context; passes values through.
template <class T>
[[nodiscard]] Result<T> wrap(Result<T> r, std::string_view context) {
  if (!r) return std::move(r).error().wrap(context);
  return r;
}

inline Result<> ok() { return {}; }

}  // namespace brig

template <>
struct std::is_error_code_enum<brig::errc> : std::true_type {};

// Propagates the error of a Result expression, binding nothing.
#define BRIG_TRY(expr)                                   \
  do {                                                   \
    auto brig_try_r_ = (expr);                           \
    if (!brig_try_r_) return std::move(brig_try_r_).error(); \
  } while (0)

// Evaluates a Result expression, propagating its error or binding its value to `var`.
#define BRIG_TRY_ASSIGN(var, expr)                       \
  auto var##_result_ = (expr);                           \
  if (!var##_result_) return std::move(var##_result_).error(); \
  auto var = std::move(*var##_result_)
