// Filesystem helpers: POSIX calls, so that errors carry errno's message and a rename is the
// atomic replace POSIX guarantees.
#include "ocl/io/files.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

namespace ocl::io {

std::string os_error(int err) { return std::generic_category().message(err); }

namespace {

// Writes all of `bytes` (retrying short writes, EINTR); 0 or an errno (ENOSPC if none is written).
int write_all(int fd, std::string_view bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return n < 0 ? errno : ENOSPC;
    done += static_cast<size_t>(n);
  }
  return 0;
}

// Writes `bytes` to `fd`, fsyncs and closes it; "" or the step that failed on file `name`.
std::string write_sync_close(int fd, std::string_view bytes, const std::string& name) {
  std::string failure;
  if (const int err = write_all(fd, bytes)) {
    failure = "writing '" + name + "' failed: " + os_error(err);
  } else if (::fsync(fd) != 0) {
    failure = "syncing '" + name + "' failed: " + os_error(errno);
  }
  if (::close(fd) != 0 && failure.empty())
    failure = "closing '" + name + "' failed: " + os_error(errno);
  return failure;
}

std::string parent_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

// What a path that is not a regular file is, for a message.
const char* file_kind(mode_t mode) {
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISDIR(mode)) return "a folder";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a pipe";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

// The pid holding a flock on the file open as `fd`, from /proc/locks (Linux); -1 if unknown.
pid_t flock_holder(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return -1;
  std::ifstream locks("/proc/locks");
  char file[96];
  std::snprintf(file, sizeof(file), "%02x:%02x:%llu", major(st.st_dev), minor(st.st_dev),
                static_cast<unsigned long long>(st.st_ino));
  for (std::string line; std::getline(locks, line);) {
    std::istringstream fields(line);
    std::string id, kind, advisory, mode, pid, where;
    fields >> id >> kind;
    if (kind == "->") fields >> kind;  // a waiter, listed under the holder
    fields >> advisory >> mode >> pid >> where;
    if (kind == "FLOCK" && where == file) {
      try {
        return static_cast<pid_t>(std::stol(pid));
      } catch (const std::exception&) {
        return -1;
      }
    }
  }
  return -1;
}

// "pid 123 (ocl_pretrain)": the holder as the kernel names it.
std::string process_name(pid_t pid) {
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  std::getline(comm, name);
  return "pid " + std::to_string(pid) + (name.empty() ? "" : " (" + name + ")");
}

// The first line of a lock file's note, printable characters only: it goes into a message.
std::string printable_first_line(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (c == '\n' || c == '\r') break;
    out += std::isprint(static_cast<unsigned char>(c)) ? c : '?';
  }
  return out;
}

}  // namespace

void make_dirs(const std::string& path) {
  std::string partial = path.rfind('/', 0) == 0 ? "/" : "";
  std::stringstream parts(path);
  for (std::string part; std::getline(parts, part, '/');) {
    if (part.empty()) continue;
    partial += part + "/";
    if (::mkdir(partial.c_str(), 0777) != 0 && errno != EEXIST) {
      throw std::runtime_error("cannot create output folder '" + partial + "': " + os_error(errno));
    }
  }
  if (!is_dir(path)) throw std::runtime_error("output folder '" + path + "' is not a folder");
}

bool path_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

bool is_dir(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string join_path(const std::string& dir, const std::string& name) {
  return dir.empty() || dir.back() == '/' ? dir + name : dir + "/" + name;
}

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> names;
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return names;
  while (const dirent* e = ::readdir(dir)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

void remove_tree(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return;
  if (!S_ISDIR(st.st_mode)) {
    ::unlink(path.c_str());
    return;
  }
  for (const auto& name : list_dir(path)) remove_tree(join_path(path, name));
  ::rmdir(path.c_str());
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read '" + path + "': " + os_error(errno));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_file_synced(const std::string& path, std::string_view bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) throw std::runtime_error("cannot create '" + path + "': " + os_error(errno));
  const std::string failure = write_sync_close(fd, bytes, path);
  if (!failure.empty()) throw std::runtime_error(failure);
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  // The rename would replace whatever holds the name: a device (/dev/null, as root), a link.
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    throw std::runtime_error("cannot write '" + path + "': it exists and is " +
                             file_kind(st.st_mode) +
                             ", not a regular file; give the name of a new or regular file");
  // A unique sibling: the rename stays on one file system, and no two writers share a temporary.
  static std::atomic<uint64_t> counter{0};
  const auto stamp = std::chrono::steady_clock::now().time_since_epoch().count();
  std::string tmp;
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(stamp) + "." +
          std::to_string(counter++);
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  const std::string head = "cannot write '" + path + "': ";
  if (fd < 0)
    throw std::runtime_error(head + "cannot create temporary file '" + tmp +
                             "': " + os_error(errno));
  std::string failure = write_sync_close(fd, bytes, tmp);
  if (failure.empty() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    failure = "renaming '" + tmp + "' over it failed: " + os_error(errno);
  }
  if (!failure.empty()) {
    ::unlink(tmp.c_str());
    throw std::runtime_error(head + failure);
  }
  sync_dir(parent_of(path));
}

void sync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);
}
// O_NOFOLLOW: a lock file that is a symbolic link is refused. The holder is named from the kernel's
// lock table, by its note only when that names the same pid (another program may hold an old note).
bool FileLock::acquire(const std::string& path, const std::string& note, std::string* holder) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0 && errno == ELOOP) {
    throw std::runtime_error("the lock file '" + path +
                             "' is a symbolic link; ocl does not write through one: remove it");
  }
  if (fd < 0) {
    throw std::runtime_error("cannot open the lock file '" + path + "': " + os_error(errno));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    if (holder != nullptr) {
      char text[512];
      const ssize_t n = ::pread(fd, text, sizeof(text) - 1, 0);
      const std::string written =
          printable_first_line(std::string(text, n > 0 ? static_cast<size_t>(n) : 0));
      const pid_t pid = flock_holder(fd);
      const bool note_is_holders =
          pid <= 0 || written.find("pid " + std::to_string(pid) + " ") != std::string::npos;
      *holder = note_is_holders ? written : "held by " + process_name(pid);
    }
    ::close(fd);
    return false;
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  // The note only helps the message of the next process that tries; the lock holds without it.
  if (::ftruncate(fd_, 0) == 0) (void)!::pwrite(fd_, note.data(), note.size(), 0);
  return true;
}

std::string append_whole(int fd, std::string_view bytes) {
  const off_t before = ::lseek(fd, 0, SEEK_END);
  const int err = write_all(fd, bytes);
  if (err != 0 && before >= 0) (void)!::ftruncate(fd, before);
  return err == 0 ? "" : os_error(err);
}

}  // namespace ocl::io
