#include "node-agent/logs/file_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "node-agent/logs/line_parser.h"

namespace pi::agent::logs {
namespace {

using std::chrono::system_clock;
using LineFn = std::function<bool(std::string_view)>;

constexpr size_t kChunk = 64 * 1024;

system_clock::time_point ModificationTime(const struct stat& st) {
  return system_clock::time_point(std::chrono::duration_cast<system_clock::duration>(
      std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
}

// Splits a byte stream into lines, holding a partial last line until its newline arrives.
class LineSplitter {
 public:
  // Returns false as soon as `on_line` does.
  bool Feed(std::string_view data, const LineFn& on_line) {
    while (!data.empty()) {
      const size_t newline = data.find('\n');
      const std::string_view piece = data.substr(0, newline);
      if (!skipping_) {
        const size_t room = kMaxFileLineBytes - pending_.size();
        pending_.append(piece.substr(0, room));
        if (piece.size() > room) {
          skipping_ = true;
          if (!on_line(std::exchange(pending_, {}))) return false;
        }
      }
      if (newline == std::string_view::npos) return true;
      data.remove_prefix(newline + 1);
      if (skipping_) {
        skipping_ = false;
      } else if (!on_line(std::exchange(pending_, {}))) {
        return false;
      }
    }
    return true;
  }

  // Hands over the partial last line of a file that will not grow any more.
  bool Flush(const LineFn& on_line) {
    std::string partial = std::exchange(pending_, {});
    skipping_ = false;
    return partial.empty() || on_line(partial);
  }

  void Reset() {
    pending_.clear();
    skipping_ = false;
  }

 private:
  std::string pending_;
  // The current line was already handed over cut at kMaxFileLineBytes; its rest is dropped.
  bool skipping_ = false;
};

class FileFollower {
 public:
  FileFollower(const FileStreamOptions& options, const EntryMatcher& matcher, const EmitFn& emit,
               common::CancelToken& cancel)
      : options_(options), matcher_(matcher), emit_(emit), cancel_(cancel) {}

  FileFollower(const FileFollower&) = delete;
  FileFollower& operator=(const FileFollower&) = delete;

  ~FileFollower() {
    if (fd_ >= 0) close(fd_);
  }

  absl::Status Run() {
    if (absl::Status opened = Open(); !opened.ok()) return opened;
    if (!(options_.limit > 0 ? TailBacklog() : ReadNew())) return Finish();
    if (!options_.follow) return absl::OkStatus();
    while (true) {
      if (cancel_.WaitFor(options_.poll_interval)) return Cancelled();
      if (!FollowRotation() || !CheckTruncation() || !ReadNew()) return Finish();
    }
  }

 private:
  absl::Status Open() {
    int fd = open(options_.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return OpenError(errno);
    struct stat st {};
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      close(fd);
      return absl::FailedPreconditionError(absl::StrCat("log source ", options_.source, ": ",
                                                        options_.path, " is not a regular file"));
    }
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
    dev_ = st.st_dev;
    ino_ = st.st_ino;
    offset_ = 0;
    splitter_.Reset();
    return absl::OkStatus();
  }

  absl::Status OpenError(int error) const {
    if (error == ENOENT) {
      return absl::NotFoundError(
          absl::StrCat("log source ", options_.source, ": ", options_.path, " does not exist"));
    }
    if (error == EACCES || error == EPERM) {
      return absl::FailedPreconditionError(
          absl::StrCat("log source ", options_.source, ": pi-agent may not read ", options_.path,
                       " (", std::strerror(error), "); add its user to the file's group"));
    }
    return absl::UnavailableError(absl::StrCat("log source ", options_.source, ": cannot open ",
                                               options_.path, ": ", std::strerror(error)));
  }

  absl::Status ReadError(int error) const {
    return absl::UnavailableError(absl::StrCat("log source ", options_.source, ": reading ",
                                               options_.path, " failed: ", std::strerror(error)));
  }

  absl::Status Cancelled() const {
    return absl::CancelledError(
        absl::StrCat("stream of log source ", options_.source, " was cancelled"));
  }

  // What Run() returns once a step asked to stop.
  absl::Status Finish() const {
    if (!status_.ok()) return status_;
    if (cancel_.cancelled()) return Cancelled();
    return absl::OkStatus();
  }

  // The entry for `line` when it passes the filter; nullopt otherwise.
  std::optional<LogEntry> ToEntry(std::string_view line, system_clock::time_point fallback) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    LineHeader header = ParseLineHeader(line, options_.clock->WallNow());
    LogEntry entry;
    entry.timestamp = header.timestamp.value_or(fallback);
    entry.source = options_.source;
    entry.message = ToValidUtf8(line);
    entry.hostname = std::move(header.hostname);
    entry.identifier = std::move(header.identifier);
    entry.pid = header.pid;
    if (!matcher_.Matches(entry)) return std::nullopt;
    return entry;
  }

  // Emits matching lines; false when the stream must stop.
  LineFn EmitLines(system_clock::time_point fallback) {
    return [this, fallback](std::string_view line) {
      std::optional<LogEntry> entry = ToEntry(line, fallback);
      return !entry || emit_(*entry);
    };
  }

  bool PreadFully(char* buffer, size_t size, off_t at) {
    size_t done = 0;
    while (done < size) {
      ssize_t n = pread(fd_, buffer + done, size - done, at + static_cast<off_t>(done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        status_ = ReadError(errno);
        return false;
      }
      if (n == 0) {
        status_ = ReadError(EIO);
        return false;
      }
      done += static_cast<size_t>(n);
    }
    return true;
  }

  // Finds the last `limit` matching complete lines by reading backwards from the end, so a large
  // file costs only as much as its tail. Afterwards offset_ is just past the last complete line.
  bool TailBacklog() {
    struct stat st {};
    if (fstat(fd_, &st) != 0) {
      status_ = ReadError(errno);
      return false;
    }
    const system_clock::time_point fallback = ModificationTime(st);
    std::vector<LogEntry> newest_first;
    std::string fragment;  // the first bytes of the line being assembled, at most the line cap
    std::vector<char> buffer(kChunk);
    std::optional<off_t> complete_end;
    off_t pos = st.st_size;
    bool more = true;
    while (pos > 0 && more) {
      if (cancel_.cancelled()) return false;
      const size_t n = static_cast<size_t>(std::min<off_t>(pos, kChunk));
      pos -= static_cast<off_t>(n);
      if (!PreadFully(buffer.data(), n, pos)) return false;
      size_t stop = n;
      for (size_t i = n; i-- > 0 && more;) {
        if (buffer[i] != '\n') continue;
        if (!complete_end) {
          // Bytes after the last newline are a line still being written.
          complete_end = pos + static_cast<off_t>(i) + 1;
        } else {
          fragment.insert(0, buffer.data() + i + 1, stop - i - 1);
          fragment.resize(std::min(fragment.size(), kMaxFileLineBytes));
          std::optional<LogEntry> entry = ToEntry(fragment, fallback);
          if (!status_.ok()) return false;
          if (entry) newest_first.push_back(std::move(*entry));
          more = newest_first.size() < static_cast<size_t>(options_.limit);
          fragment.clear();
        }
        stop = i;
      }
      if (complete_end) {
        fragment.insert(0, buffer.data(), stop);
        fragment.resize(std::min(fragment.size(), kMaxFileLineBytes));
      }
    }
    if (more && complete_end) {
      std::optional<LogEntry> entry = ToEntry(fragment, fallback);
      if (!status_.ok()) return false;
      if (entry) newest_first.push_back(std::move(*entry));
    }
    offset_ = complete_end.value_or(0);
    for (auto it = newest_first.rbegin(); it != newest_first.rend(); ++it) {
      if (!emit_(*it)) return false;
    }
    return true;
  }

  // Reads from offset_ to the current end of the file.
  bool ReadNew() {
    struct stat st {};
    if (fstat(fd_, &st) != 0) {
      status_ = ReadError(errno);
      return false;
    }
    const LineFn on_line = EmitLines(ModificationTime(st));
    std::vector<char> buffer(kChunk);
    while (true) {
      if (cancel_.cancelled()) return false;
      ssize_t n = pread(fd_, buffer.data(), buffer.size(), offset_);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        status_ = ReadError(errno);
        return false;
      }
      if (n == 0) return true;
      offset_ += n;
      if (!splitter_.Feed(std::string_view(buffer.data(), static_cast<size_t>(n)), on_line)) {
        return false;
      }
    }
  }

  // When the path names a new file, finishes the old one and switches to the new one.
  bool FollowRotation() {
    struct stat st {};
    // A missing path is the gap between a rename and the new file's creation: keep reading the
    // old file until a new one shows up.
    if (stat(options_.path.c_str(), &st) != 0) return true;
    if (st.st_dev == dev_ && st.st_ino == ino_) return true;
    if (!ReadNew()) return false;
    struct stat old_st {};
    fstat(fd_, &old_st);
    if (!splitter_.Flush(EmitLines(ModificationTime(old_st)))) return false;
    if (absl::Status opened = Open(); !opened.ok()) {
      // Replaced again, or unreadable for now: retry at the next poll, from the old file's end.
      dev_ = 0;
      ino_ = 0;
      return true;
    }
    return ReadNew();
  }

  bool CheckTruncation() {
    struct stat st {};
    if (fstat(fd_, &st) != 0) {
      status_ = ReadError(errno);
      return false;
    }
    if (st.st_size < offset_) {
      offset_ = 0;
      splitter_.Reset();
    }
    return true;
  }

  const FileStreamOptions& options_;
  const EntryMatcher& matcher_;
  const EmitFn& emit_;
  common::CancelToken& cancel_;
  absl::Status status_;
  int fd_ = -1;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  off_t offset_ = 0;
  LineSplitter splitter_;
};

}  // namespace

absl::Status StreamFile(const FileStreamOptions& options, const EntryMatcher& matcher,
                        const EmitFn& emit, common::CancelToken& cancel) {
  FileFollower follower(options, matcher, emit, cancel);
  return follower.Run();
}

}  // namespace pi::agent::logs
