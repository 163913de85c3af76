// Logging goes through spdlog; one logger, configured once by main. Never log secrets.
#pragma once

#include <spdlog/spdlog.h>

namespace brig::log {

// Sends logs to stderr with `level` ("debug", "info", "warn", "error", "off").
void init(std::string_view level);

}  // namespace brig::log
