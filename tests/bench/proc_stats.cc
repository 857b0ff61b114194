#include "tests/bench/proc_stats.h"

#include <unistd.h>

#include <fstream>
#include <sstream>

namespace pi::bench {

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

double ProcessCpuSeconds(pid_t pid) {
  const std::string stat = ReadWholeFile("/proc/" + std::to_string(pid) + "/stat");
  // The command name may contain spaces and parentheses; the fields start after its last ')'.
  const size_t name_end = stat.rfind(')');
  if (name_end == std::string::npos || name_end + 2 > stat.size()) return 0;
  std::istringstream fields(stat.substr(name_end + 2));
  std::string field;
  unsigned long utime = 0;
  unsigned long stime = 0;
  for (int index = 3; index <= 15 && fields >> field; ++index) {
    if (index == 14) utime = std::stoul(field);
    if (index == 15) stime = std::stoul(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace pi::bench
