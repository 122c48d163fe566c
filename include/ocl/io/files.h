// Filesystem helpers for everything ocl writes, above all the one atomic writer every file goes
// through (a crash or a full disk leaves the old file or the new one, never half of either, and no
// temporary); and an exclusive lock file (one run per folder).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ocl::io {

/// Creates `path` and its missing parents (mkdir -p). Throws std::runtime_error naming the part
/// that could not be made, or when `path` exists and is not a folder.
void make_dirs(const std::string& path);

/// True when something (file, folder, link target) exists at `path`.
bool path_exists(const std::string& path);

/// True when `path` is a folder (following links).
bool is_dir(const std::string& path);

/// "dir/name" (no doubled slash; `name` alone when `dir` is empty).
std::string join_path(const std::string& dir, const std::string& name);

/// The names in folder `path` other than "." and "..", sorted; empty when it cannot be read.
std::vector<std::string> list_dir(const std::string& path);

/// Removes `path` and everything below it, never following a symbolic link. Best effort.
void remove_tree(const std::string& path);

/// The whole file as text; throws std::runtime_error naming the file when it cannot be read.
std::string read_text_file(const std::string& path);

/// Writes `bytes` to `path` (created or truncated) and fsyncs it: for files inside a folder that
/// is renamed into place afterwards (checkpoint folders). Throws naming the step that failed.
void write_file_synced(const std::string& path, std::string_view bytes);

/// The system's message for an errno value ("No space left on device").
std::string os_error(int err);

/// Replaces `path` atomically and durably (a unique temporary beside it, fsynced, renamed over it,
/// the folder fsynced); refuses a path that is not a regular file, naming what it is. On failure
/// `path` is unchanged and std::runtime_error says "cannot write 'PATH': ", the step and reason.
void write_file_atomic(const std::string& path, std::string_view bytes);

/// Appends `bytes` to the file open as `fd` (O_APPEND) whole or not at all: a write that fails
/// part-way is cut back, so no record is torn. Returns "" on success, else strerror's text.
std::string append_whole(int fd, std::string_view bytes);

/// write_file_atomic for text.
inline void write_text_atomic(const std::string& path, const std::string& text) {
  write_file_atomic(path, text);
}

/// fsyncs folder `dir`, making the renames and creations inside it durable. Best effort.
void sync_dir(const std::string& dir);

/// An exclusive advisory lock (flock) on a file, held until destruction or the process's end.
class FileLock {
 public:
  FileLock() = default;
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  /// Takes the lock on `path` (created if missing), writing `note` (who holds it) into it; false
  /// with the holder's note in `holder` when taken. Throws naming the path it cannot open.
  bool acquire(const std::string& path, const std::string& note, std::string* holder);

 private:
  int fd_ = -1;
};

}  // namespace ocl::io
