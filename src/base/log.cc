#include "base/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

namespace brig::log {

void init(std::string_view level) {
  auto logger = spdlog::stderr_color_st("brig");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  logger->set_level(spdlog::level::from_str(std::string(level)));
  spdlog::set_default_logger(logger);
}

}  // namespace brig::log
