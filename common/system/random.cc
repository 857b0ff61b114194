#include "common/system/random.h"

#include <sys/random.h>

#include <cerrno>
#include <vector>

namespace pi::common {

absl::StatusOr<std::string> RandomHex(size_t bytes) {
  std::vector<unsigned char> buffer(bytes);
  size_t filled = 0;
  while (filled < buffer.size()) {
    const ssize_t got = getrandom(buffer.data() + filled, buffer.size() - filled, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError("cannot read random bytes from the kernel");
    }
    filled += static_cast<size_t>(got);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text;
  text.reserve(buffer.size() * 2);
  for (const unsigned char byte : buffer) {
    text.push_back(kHex[byte >> 4]);
    text.push_back(kHex[byte & 0xf]);
  }
  return text;
}

}  // namespace pi::common
