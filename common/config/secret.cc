#include "common/config/secret.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "common/system/files.h"

namespace pi::common {
namespace {

constexpr size_t kMaxSecretBytes = 64 * 1024;

bool IsEnvName(std::string_view name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name) {
    const bool ok =
        (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::string> ResolveSecret(std::string_view reference) {
  if (reference.starts_with("env:")) {
    const std::string name(reference.substr(4));
    if (!IsEnvName(name)) {
      return absl::InvalidArgumentError(
          fmt::format("secret reference \"{}\": \"{}\" is not a valid environment variable name",
                      reference, name));
    }
    const char* value = std::getenv(name.c_str());
    if (value == nullptr || *value == '\0') {
      return absl::NotFoundError(fmt::format(
          "secret reference \"{}\": environment variable {} is not set or empty", reference, name));
    }
    return std::string(value);
  }
  if (reference.starts_with("file:")) {
    const std::string path(reference.substr(5));
    if (path.empty() || path[0] != '/') {
      return absl::InvalidArgumentError(
          fmt::format("secret reference \"{}\": the file path must be absolute", reference));
    }
    auto contents = ReadFileToString(path, kMaxSecretBytes);
    if (!contents.ok()) {
      return absl::Status(contents.status().code(),
                          fmt::format("secret reference \"{}\": {}", reference,
                                      std::string(contents.status().message())));
    }
    std::string value = *std::move(contents);
    if (value.ends_with("\r\n")) {
      value.resize(value.size() - 2);
    } else if (value.ends_with("\n")) {
      value.pop_back();
    }
    if (value.empty()) {
      return absl::InvalidArgumentError(
          fmt::format("secret reference \"{}\": file is empty", reference));
    }
    return value;
  }
  return absl::InvalidArgumentError(
      "a secret must be given as \"env:NAME\" or \"file:/absolute/path\", not inline");
}

}  // namespace pi::common
