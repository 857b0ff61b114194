#pragma once

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace pi::agent::metrics::testing {

// tests/fixtures/metrics/<name>.
inline std::filesystem::path Fixture(std::string_view name) {
  return std::filesystem::path(PI_FIXTURES_DIR) / "metrics" / name;
}

// A scratch root directory, removed with everything in it when the test ends.
class TempTree {
 public:
  TempTree() {
    std::string pattern = (std::filesystem::temp_directory_path() / "pi-metrics-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    root_ = pattern;
  }
  // A copy of a fixture tree, to break one part of it.
  explicit TempTree(std::string_view fixture) : TempTree() {
    std::filesystem::copy(Fixture(fixture), root_, std::filesystem::copy_options::recursive);
  }
  TempTree(const TempTree&) = delete;
  TempTree& operator=(const TempTree&) = delete;
  ~TempTree() {
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
  }

  const std::filesystem::path& root() const { return root_; }

  void Write(std::string_view relative, std::string_view content) const {
    const std::filesystem::path path = root_ / relative;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(content.data(), static_cast<std::streamsize>(content.size()));
    if (!out) throw std::runtime_error("cannot write " + path.string());
  }

  void Remove(std::string_view relative) const { std::filesystem::remove_all(root_ / relative); }

 private:
  std::filesystem::path root_;
};

}  // namespace pi::agent::metrics::testing
