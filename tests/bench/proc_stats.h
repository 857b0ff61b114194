#pragma once

#include <sys/types.h>

#include <string>

// What the benchmarks read about the daemons they measure, from /proc.
namespace pi::bench {

// The whole file, or "" when it cannot be read.
std::string ReadWholeFile(const std::string& path);

// User plus system CPU seconds a process has used, from /proc/<pid>/stat (fields 14 and 15).
double ProcessCpuSeconds(pid_t pid);

}  // namespace pi::bench
