#pragma once

#include <string_view>

namespace pi::common {

// True when a path has a ".." component ("/a/../b", "../x", "/a/.."), which every place that
// accepts a path from config or a client refuses rather than resolves.
bool HasDotDotComponent(std::string_view path);

}  // namespace pi::common
