// Small filesystem helpers for run folders (pre-training, probes, fine-tuning): create a folder
// tree, test for files and folders, read a text file, and replace a text file atomically so that
// a crash leaves the old version or the new one, never half of either.
#pragma once

#include <string>

namespace ocl::io {

/// Creates `path` and its missing parents (mkdir -p). Throws std::runtime_error naming the part
/// that could not be made, or when `path` exists and is not a folder.
void make_dirs(const std::string& path);

/// True when something (file, folder, link target) exists at `path`.
bool path_exists(const std::string& path);

/// True when `path` is a folder (following links).
bool is_dir(const std::string& path);

/// The whole file as text; throws std::runtime_error naming the file when it cannot be read.
std::string read_text_file(const std::string& path);

/// Writes `text` to `path` + ".tmp" and renames it over `path`. Throws naming the file.
void write_text_atomic(const std::string& path, const std::string& text);

}  // namespace ocl::io
