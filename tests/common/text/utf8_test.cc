#include "common/text/utf8.h"

#include <catch2/catch.hpp>

namespace pi::common {
namespace {

TEST_CASE("Utf8Prefix never splits a multi-byte sequence") {
  const std::string text = "ab\xc3\xa9\xe2\x82\xac";  // "abé€": 1 + 1 + 2 + 3 bytes
  CHECK(Utf8Prefix(text, 100) == text);
  CHECK(Utf8Prefix(text, 7) == text);
  CHECK(Utf8Prefix(text, 6) == "ab\xc3\xa9");
  CHECK(Utf8Prefix(text, 3) == "ab");
  CHECK(Utf8Prefix(text, 0).empty());
  CHECK(IsValidUtf8(Utf8Prefix(text, 5)));
}

}  // namespace
}  // namespace pi::common
