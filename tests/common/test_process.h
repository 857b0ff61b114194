#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>

namespace pi::testing {

// Polls `condition` every few milliseconds until it holds (true) or `limit` passes (false), so
// tests wait on what they expect rather than sleep for a guessed time.
bool WaitUntil(const std::function<bool()>& condition, std::chrono::milliseconds limit);

// True once the process is reaped, or is a zombie waiting for its new parent to reap it.
bool ProcessDead(pid_t pid);

}  // namespace pi::testing
