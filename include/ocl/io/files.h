// Filesystem helpers for everything ocl writes (run folders, checkpoints, safetensors, packs,
// metrics), above all the one atomic writer every file goes through, so that a crash or a full
// disk leaves the old version of a file or the new one, never half of either, and no temporary;
// and an exclusive lock file (one run per folder).
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

/// Removes `path` whatever it is, and everything below a folder; a symbolic link is removed,
/// never followed. Best effort: what cannot be removed stays.
void remove_tree(const std::string& path);

/// The whole file as text; throws std::runtime_error naming the file when it cannot be read.
std::string read_text_file(const std::string& path);

/// Writes `bytes` to `path` (created or truncated) and fsyncs it: for files inside a folder that
/// is renamed into place afterwards (checkpoint folders). Throws naming the step that failed.
void write_file_synced(const std::string& path, std::string_view bytes);

/// The system's message for an errno value ("No space left on device").
std::string os_error(int err);

/// Replaces `path` atomically and durably: `bytes` go to a uniquely named temporary beside it,
/// fsynced and renamed over `path`, then the folder is fsynced. On any failure the temporary is
/// removed, `path` is unchanged, and std::runtime_error says "cannot write 'PATH': " with the step
/// and the system's reason. A path that is not a regular file (a device, a folder, a symbolic
/// link) is refused, naming what it is, before anything is written.
void write_file_atomic(const std::string& path, std::string_view bytes);

/// Appends `bytes` to the file open as `fd` (O_APPEND) whole or not at all: a write that fails
/// part-way (a full disk) cuts the file back to where it was, so that no record is torn or
/// spliced into the next. Returns "" on success, else the reason (strerror's text).
std::string append_whole(int fd, std::string_view bytes);

/// write_file_atomic for text.
void write_text_atomic(const std::string& path, const std::string& text);

/// fsyncs folder `dir`, making the renames and creations inside it durable. Best effort: some
/// file systems cannot sync a folder, and the files themselves are complete either way.
void sync_dir(const std::string& dir);

/// An exclusive advisory lock (flock) on a file, held until destruction or the process's end.
class FileLock {
 public:
  FileLock() = default;
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  /// Takes the lock on `path` (created if missing) and writes `note` into it (who holds it).
  /// Returns false when another holder has it, with that holder's note in `holder`. Throws
  /// std::runtime_error naming the path when it cannot be opened.
  bool acquire(const std::string& path, const std::string& note, std::string* holder);

 private:
  int fd_ = -1;
};

}  // namespace ocl::io
