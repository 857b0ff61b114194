#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace pi::controlplane::pictl {

// Where pictl finds the controller and its admin credentials. Paths are absolute or relative to
// the working directory once resolved.
struct PictlConfig {
  std::string controller;
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
  // The config file the values came from; empty when flags alone supplied them.
  std::string source;
};

// The process environment pictl consults, injected so tests do not depend on the caller's.
struct Environment {
  std::string pictl_config;     // $PICTL_CONFIG
  std::string home;             // $HOME
  std::string xdg_config_home;  // $XDG_CONFIG_HOME
};

// Global flags; an empty value was not given.
struct ConnectionFlags {
  std::string config_path;
  std::string controller;
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
};

// $XDG_CONFIG_HOME/pictl/config.json, else ~/.config/pictl/config.json; empty when neither
// variable is set.
std::string DefaultConfigPath(const Environment& env);

// Reads {"controller", "ca_file", "cert_file", "key_file"} (all optional, nothing else allowed);
// relative paths are taken relative to the file's directory. Errors name the file and key.
absl::StatusOr<PictlConfig> LoadConfigFile(const std::string& path);

// The config file named by --config, else $PICTL_CONFIG, else the default path (which may be
// absent when the flags give everything), overridden by the flags. INVALID_ARGUMENT or NOT_FOUND
// with a message saying how to create a config when something required is missing.
absl::StatusOr<PictlConfig> ResolveConfig(const ConnectionFlags& flags, const Environment& env);

}  // namespace pi::controlplane::pictl
