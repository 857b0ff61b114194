#include "common/log/log.h"

#include <spdlog/sinks/stdout_sinks.h>
#include <unistd.h>

namespace pi::common {

void InitLogging(std::string_view program, std::string_view level) {
  auto logger = spdlog::stderr_logger_mt(std::string(program));
  // Under systemd the journal adds its own timestamp; keep lines short there.
  if (getenv("JOURNAL_STREAM") != nullptr) {
    logger->set_pattern("[%l] %v");
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %n [%l] %v");
  }
  logger->set_level(spdlog::level::from_str(std::string(level)));
  spdlog::set_default_logger(logger);
}

}  // namespace pi::common
