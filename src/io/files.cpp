// Filesystem helpers (see include/ocl/io/files.h): POSIX calls, so that errors carry errno's
// message and a rename is the atomic replace POSIX guarantees.
#include "ocl/io/files.h"

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include <sys/stat.h>

namespace ocl::io {

void make_dirs(const std::string& path) {
  std::string partial;
  std::stringstream parts(path);
  std::string part;
  if (!path.empty() && path[0] == '/') partial = "/";
  while (std::getline(parts, part, '/')) {
    if (part.empty()) continue;
    partial += part + "/";
    if (::mkdir(partial.c_str(), 0777) != 0 && errno != EEXIST) {
      throw std::runtime_error("cannot create output folder '" + partial +
                               "': " + std::generic_category().message(errno));
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

std::string read_text_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    throw std::runtime_error("cannot read '" + path +
                             "': " + std::generic_category().message(errno));
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_text_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.flush();
    if (!out) throw std::runtime_error("cannot write '" + tmp + "'");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    throw std::runtime_error("cannot write '" + path +
                             "': " + std::generic_category().message(errno));
  }
}

}  // namespace ocl::io
