#include "control-plane/pictl/config.h"

#include <fmt/format.h>

#include <filesystem>
#include <system_error>

#include "common/config/json_config.h"

namespace pi::controlplane::pictl {
namespace {

constexpr char kCreateHint[] =
    "create one on the controller host with `pi-controller issue-admin NAME --out ~/.config/pictl`";

std::string RelativeTo(const std::filesystem::path& dir, const std::string& path) {
  if (path.empty() || std::filesystem::path(path).is_absolute()) return path;
  return (dir / path).lexically_normal().string();
}

}  // namespace

std::string DefaultConfigPath(const Environment& env) {
  if (!env.xdg_config_home.empty()) {
    return (std::filesystem::path(env.xdg_config_home) / "pictl" / "config.json").string();
  }
  if (!env.home.empty()) {
    return (std::filesystem::path(env.home) / ".config" / "pictl" / "config.json").string();
  }
  return "";
}

absl::StatusOr<PictlConfig> LoadConfigFile(const std::string& path) {
  auto doc = common::ParseJsonConfigFile(path);
  if (!doc.ok()) {
    if (doc.status().code() == absl::StatusCode::kNotFound) {
      return absl::NotFoundError(
          fmt::format("{}; {}", std::string(doc.status().message()), kCreateHint));
    }
    return doc.status();
  }
  PictlConfig config;
  common::ConfigReader reader(*doc, "");
  reader.Read("controller", &config.controller);
  reader.Read("ca_file", &config.ca_file);
  reader.Read("cert_file", &config.cert_file);
  reader.Read("key_file", &config.key_file);
  if (auto status = reader.Finish(); !status.ok()) {
    return absl::InvalidArgumentError(
        fmt::format("{}: {} (allowed keys: controller, ca_file, cert_file, key_file)", path,
                    std::string(status.message())));
  }
  std::error_code error;
  const auto absolute = std::filesystem::absolute(path, error);
  const auto dir = (error ? std::filesystem::path(path) : absolute).parent_path();
  config.ca_file = RelativeTo(dir, config.ca_file);
  config.cert_file = RelativeTo(dir, config.cert_file);
  config.key_file = RelativeTo(dir, config.key_file);
  config.source = path;
  return config;
}

absl::StatusOr<PictlConfig> ResolveConfig(const ConnectionFlags& flags, const Environment& env) {
  const bool flags_complete = !flags.controller.empty() && !flags.ca_file.empty() &&
                              !flags.cert_file.empty() && !flags.key_file.empty();
  std::string path = !flags.config_path.empty() ? flags.config_path : env.pictl_config;
  const bool explicit_path = !path.empty();
  if (!explicit_path) path = DefaultConfigPath(env);

  PictlConfig config;
  std::error_code error;
  const bool default_absent =
      !explicit_path && (path.empty() || !std::filesystem::exists(path, error));
  if (default_absent && !flags_complete) {
    return absl::NotFoundError(fmt::format(
        "no pictl config: {} does not exist and --controller, --ca, --cert and --key were not all "
        "given; {}",
        path.empty() ? std::string("~/.config/pictl/config.json") : path, kCreateHint));
  }
  if (!default_absent) {
    auto loaded = LoadConfigFile(path);
    if (!loaded.ok()) return loaded.status();
    config = *std::move(loaded);
  }
  if (!flags.controller.empty()) config.controller = flags.controller;
  if (!flags.ca_file.empty()) config.ca_file = flags.ca_file;
  if (!flags.cert_file.empty()) config.cert_file = flags.cert_file;
  if (!flags.key_file.empty()) config.key_file = flags.key_file;

  const struct {
    const std::string& value;
    const char* key;
    const char* flag;
  } required[] = {{config.controller, "controller", "--controller"},
                  {config.ca_file, "ca_file", "--ca"},
                  {config.cert_file, "cert_file", "--cert"},
                  {config.key_file, "key_file", "--key"}};
  for (const auto& field : required) {
    if (field.value.empty()) {
      return absl::InvalidArgumentError(fmt::format("{}: \"{}\" is not set; add it or pass {} ({})",
                                                    config.source, field.key, field.flag,
                                                    kCreateHint));
    }
  }
  return config;
}

}  // namespace pi::controlplane::pictl
