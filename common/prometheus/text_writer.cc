#include "common/prometheus/text_writer.h"

#include <charconv>
#include <cmath>

namespace pi::common {
namespace {

void AppendEscaped(std::string& out, std::string_view text, bool escape_quotes) {
  for (char c : text) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '"':
        out += escape_quotes ? "\\\"" : "\"";
        break;
      default:
        out += c;
    }
  }
}

}  // namespace

std::string FormatPrometheusValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  // Whole numbers (byte counts) in full; anything else in the shortest form that reads back
  // exactly: 48.312, not 48.311999999999998.
  char buf[64];
  const bool whole = value == std::floor(value) && std::fabs(value) < 1e15;
  const auto result = whole ? std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::fixed)
                            : std::to_chars(buf, buf + sizeof(buf), value);
  return std::string(buf, result.ptr);
}

void PrometheusTextWriter::Family(std::string_view name, std::string_view help,
                                  std::string_view type) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  AppendEscaped(out_, help, false);
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void PrometheusTextWriter::Sample(std::string_view name, const PrometheusLabels& labels,
                                  double value) {
  out_ += name;
  if (!labels.empty()) {
    out_ += '{';
    bool first = true;
    for (const auto& [key, val] : labels) {
      if (!first) out_ += ',';
      first = false;
      out_ += key;
      out_ += "=\"";
      AppendEscaped(out_, val, true);
      out_ += '"';
    }
    out_ += '}';
  }
  out_ += ' ';
  out_ += FormatPrometheusValue(value);
  out_ += '\n';
}

}  // namespace pi::common
