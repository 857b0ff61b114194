#pragma once

#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "control-plane/release/release_types.h"

namespace pi::controlplane::release {

// Durable storage of releases, their files, logs and provisioning requests (DESIGN 4.2, 5.5).
// Every write is durable when it returns OK and all-or-nothing on error. The engine keeps
// unfinished releases in memory and serializes its writes; readers may call concurrently.
class ReleaseStore {
 public:
  virtual ~ReleaseStore() = default;

  // Every release that has not ended (QUEUED, ASSIGNED, RUNNING), oldest first; at start.
  virtual absl::StatusOr<std::vector<Release>> LoadUnfinished() = 0;
  // Inserts releases with their files and, when `provisioning` is given, the provisioning
  // request, in one transaction. ALREADY_EXISTS for a taken id.
  virtual absl::Status Insert(std::span<const ReleaseWithFiles> releases,
                              const Provisioning* provisioning) = 0;
  // Rewrites the stored release (state, runner, attempts, times, error, plan output, history,
  // token hash); NOT_FOUND for an unknown id. log_lines is not written (AppendLogs keeps it).
  virtual absl::Status Update(const Release& release) = 0;
  // Appends lines (sequences given by the engine) of several releases in one transaction and
  // adds them to each release's log_lines.
  virtual absl::Status AppendLogs(std::span<const std::pair<std::string, LogLine>> lines) = 0;

  virtual absl::StatusOr<Release> Get(const std::string& id) = 0;
  // Newest first (created_at, then id), at most filter.limit.
  virtual absl::StatusOr<std::vector<Release>> List(const ReleaseFilter& filter) = 0;
  // In the order they were given at creation. NOT_FOUND for an unknown release.
  virtual absl::StatusOr<std::vector<ReleaseFile>> Files(const std::string& id, FileKind kind) = 0;
  // Lines with sequence > after_sequence, in order, at most `limit`.
  virtual absl::StatusOr<std::vector<LogLine>> Logs(const std::string& id, int64_t after_sequence,
                                                    int limit) = 0;
  virtual absl::StatusOr<Provisioning> GetProvisioning(const std::string& id) = 0;
};

}  // namespace pi::controlplane::release
