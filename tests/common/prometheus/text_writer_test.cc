#include "common/prometheus/text_writer.h"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>

namespace pi::common {
namespace {

TEST_CASE("families and samples are written in exposition format", "[prometheus]") {
  PrometheusTextWriter writer;
  writer.Family("node_load1", "1m load average.", "gauge");
  writer.Sample("node_load1", 0.25);
  writer.Family("node_network_receive_bytes_total", "Bytes received.", "counter");
  writer.Sample("node_network_receive_bytes_total", {{"device", "eth0"}}, 1234);
  CHECK(writer.text() ==
        "# HELP node_load1 1m load average.\n"
        "# TYPE node_load1 gauge\n"
        "node_load1 0.25\n"
        "# HELP node_network_receive_bytes_total Bytes received.\n"
        "# TYPE node_network_receive_bytes_total counter\n"
        "node_network_receive_bytes_total{device=\"eth0\"} 1234\n");
}

TEST_CASE("label values and help text are escaped", "[prometheus]") {
  PrometheusTextWriter writer;
  writer.Family("m", "a\\b\nc \"q\"", "gauge");
  writer.Sample("m", {{"path", "C:\\x \"y\"\nz"}}, 1);
  CHECK(writer.text() ==
        "# HELP m a\\\\b\\nc \"q\"\n# TYPE m gauge\nm{path=\"C:\\\\x \\\"y\\\"\\nz\"} 1\n");
}

TEST_CASE("special values use Prometheus spellings", "[prometheus]") {
  CHECK(FormatPrometheusValue(std::nan("")) == "NaN");
  CHECK(FormatPrometheusValue(std::numeric_limits<double>::infinity()) == "+Inf");
  CHECK(FormatPrometheusValue(-std::numeric_limits<double>::infinity()) == "-Inf");
  CHECK(FormatPrometheusValue(1e18) == "1e+18");
  CHECK(FormatPrometheusValue(42) == "42");
  CHECK(FormatPrometheusValue(48.312) == "48.312");
  CHECK(FormatPrometheusValue(-0.5) == "-0.5");
}

}  // namespace
}  // namespace pi::common
