#include "common/system/paths.h"

#include <filesystem>

namespace pi::common {

bool HasDotDotComponent(std::string_view path) {
  for (const auto& part : std::filesystem::path(path)) {
    if (part == "..") return true;
  }
  return false;
}

}  // namespace pi::common
