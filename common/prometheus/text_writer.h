#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pi::common {

using PrometheusLabels = std::vector<std::pair<std::string, std::string>>;

// Builds a Prometheus text exposition (format 0.0.4). Families are written in call order;
// every sample must follow the Family() it belongs to.
class PrometheusTextWriter {
 public:
  // Writes the # HELP and # TYPE lines. type is counter, gauge or untyped.
  void Family(std::string_view name, std::string_view help, std::string_view type);
  void Sample(std::string_view name, const PrometheusLabels& labels, double value);
  void Sample(std::string_view name, double value) { Sample(name, {}, value); }

  const std::string& text() const { return out_; }

 private:
  std::string out_;
};

// The value as Prometheus prints it: integers without exponent, NaN, +Inf, -Inf.
std::string FormatPrometheusValue(double value);

}  // namespace pi::common
