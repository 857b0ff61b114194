#pragma once

#include <string>

#include "tests/common/test_dir.h"

namespace pi::testing {

// A cluster CA in a directory of its own, made with the project's deploy/pki.sh (so the script
// is exercised too). Failing to run pki.sh fails the test.
class TestPki {
 public:
  TestPki();

  // Issues NAME.crt and NAME.key for `identity` with extra pki.sh options ("--dns localhost");
  // returns the certificate's path.
  std::string Issue(const std::string& name, const std::string& identity,
                    const std::string& options = "") const;
  std::string File(const std::string& name) const { return (dir_.path() / name).string(); }
  const TempDir& dir() const { return dir_; }

 private:
  TempDir dir_;
};

}  // namespace pi::testing
