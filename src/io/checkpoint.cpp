// Checkpoint folders: atomic writes, the checkpoint-last link, pruning.
#include "ocl/io/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <torch/torch.h>

#include "ocl/compat.h"
#include "ocl/io/files.h"

namespace ocl::io {
namespace {

using json = nlohmann::json;
constexpr int kStateVersion = 1;
constexpr const char* kLastLink = "checkpoint-last";
constexpr const char* kPrefix = "checkpoint-";
using Order = std::pair<int64_t, int64_t>;  // (epoch, step in epoch)

// An io helper's call, its errors rethrown as every error here: c10::Error, "checkpoint: ...".
template <typename Call>
auto checked(Call call) -> decltype(call()) {
  try {
    return call();
  } catch (const std::runtime_error& e) {
    TORCH_CHECK(false, "checkpoint: ", e.what());
  }
}

// CRC-32 (zlib's) of a file's bytes, read in 4 MiB pieces; throws naming it when unreadable.
uint32_t file_crc32(const std::string& path, uint64_t* bytes) {
  std::ifstream in(path, std::ios::binary);
  TORCH_CHECK(in.good(), "checkpoint: cannot read '", path, "'");
  std::vector<char> buf(4 << 20);
  uLong crc = crc32(0L, Z_NULL, 0);
  *bytes = 0;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto n = static_cast<size_t>(in.gcount());
    crc = crc32(crc, reinterpret_cast<const Bytef*>(buf.data()), static_cast<uInt>(n));
    *bytes += n;
  }
  TORCH_CHECK(in.eof(), "checkpoint: error reading '", path, "'");
  return static_cast<uint32_t>(crc);
}

// "checkpoint-0004" → (4, 0); "checkpoint-0004-000120" → (4, 120); anything else → false.
bool parse_name(const std::string& name, Order* order) {
  if (name.rfind(kPrefix, 0) != 0 || name == kLastLink) return false;
  const std::string rest = name.substr(std::strlen(kPrefix));
  long long epoch = 0, step = 0;
  int used_epoch = -1, used_step = -1;  // characters read up to each number's end
  const int got =
      std::sscanf(rest.c_str(), "%lld%n-%lld%n", &epoch, &used_epoch, &step, &used_step);
  if (got < 1 || (got == 2 ? used_step : used_epoch) != static_cast<int>(rest.size())) return false;
  *order = {epoch, got == 2 ? step : 0};
  return true;
}

// `path` less trailing slashes, a symbolic link (checkpoint-last) resolved: messages name it.
std::string resolve_link(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  char buf[4096];
  const ssize_t n = ::readlink(path.c_str(), buf, sizeof(buf) - 1);
  if (n <= 0) return path;
  const std::string target(buf, static_cast<size_t>(n));
  return target[0] == '/' ? target : join_path(path.substr(0, path.rfind('/') + 1), target);
}

// "dir/name" → {"dir", "name"}; "name" → {".", "name"}.
std::pair<std::string, std::string> split_path(const std::string& path) {
  const auto slash = path.rfind('/');
  if (slash == std::string::npos) return {".", path};
  return {path.substr(0, slash), path.substr(slash + 1)};
}

// The complete checkpoint folders of `output_dir` (with a state.json, written last), oldest first.
std::vector<std::pair<Order, std::string>> complete_checkpoints(const std::string& output_dir) {
  std::vector<std::pair<Order, std::string>> out;
  for (const auto& entry : list_dir(output_dir)) {
    Order order;
    if (parse_name(entry, &order) &&
        path_exists(join_path(join_path(output_dir, entry), "state.json")))
      out.emplace_back(order, entry);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Weights and optimiser state must be finite: one NaN in AdamW's moments makes every later step
// NaN, and a checkpoint of it would be taken for a good one. (The epoch's figures may be NaN.)
const std::vector<std::string> kMustBeFinite = {"optim.", "model.", "ema."};  // in trainer

void require_finite(const TensorMap& tensors, const std::string& what,
                    const std::vector<std::string>& prefixes) {
  for (const auto& [key, t] : tensors) {
    if (!t.is_floating_point() || t.numel() == 0) continue;
    // A named copy: lambdas capture structured bindings only from C++20 (the fuzz build is 17).
    const std::string& name = key;
    if (std::none_of(prefixes.begin(), prefixes.end(),
                     [&](const std::string& p) { return name.rfind(p, 0) == 0; }))
      continue;
    TORCH_CHECK(torch::isfinite(t).all().item<bool>(), "checkpoint: ", what, ": tensor '", name,
                "' holds NaN or infinity");
  }
}

// A checkpoint's files in `dir`, state.json last with the position and each file's size and CRC-32
// (checked on load: a flipped bit leaving the values finite would otherwise resume silently).
void write_checkpoint_files(const std::string& dir, const TrainingState& state,
                            const TensorMap& model, const TensorMap& trainer,
                            const std::string& config_yaml, const std::string& model_file,
                            const Metadata& model_metadata) {
  Metadata header = model_metadata;
  header["format"] = "pt";
  header["ocl"] = "model in timm VisionTransformer names";
  write_safetensors(join_path(dir, model_file), model, header);
  write_safetensors(join_path(dir, "trainer.safetensors"), trainer, {{"format", "pt"}});
  json j = {{"format_version", kStateVersion},
            {"epoch", state.epoch},
            {"step_in_epoch", state.step_in_epoch},
            {"global_step", state.global_step},
            {"nonfinite_skips", state.nonfinite_skips},
            {"world_size", state.world_size},
            {"seed", state.seed},
            {"torch_version", compat::torch_version()}};
  const auto write_synced = [](const std::string& path, const std::string& text) {
    checked([&] { write_file_synced(path, text); });
  };
  write_synced(join_path(dir, "config.yaml"), config_yaml);
  for (const std::string& file :
       std::vector<std::string>{model_file, "trainer.safetensors", "config.yaml"}) {
    uint64_t bytes = 0;
    const uint32_t crc = file_crc32(join_path(dir, file), &bytes);
    j["files"][file] = {{"bytes", bytes}, {"crc32", crc}};
  }
  write_synced(join_path(dir, "state.json"), j.dump(2) + "\n");
}

// The sizes and CRC-32s state.json records (checkpoints of earlier versions record none).
void verify_files(const std::string& folder, const json& state) {
  const auto files = state.find("files");
  if (files == state.end() || !files->is_object()) return;
  for (const auto& [name, want] : files->items()) {
    const std::string path = join_path(folder, name);
    const auto want_bytes = want.value("bytes", uint64_t{0});
    const auto want_crc = want.value("crc32", uint32_t{0});
    uint64_t bytes = 0;
    const uint32_t crc = file_crc32(path, &bytes);
    TORCH_CHECK(bytes == want_bytes, "checkpoint: '", path, "' has ", bytes,
                " bytes and state.json ", "recorded ", want_bytes, " (truncated or replaced)");
    TORCH_CHECK(crc == want_crc, "checkpoint: '", path, "' does not match the CRC-32 state.json ",
                "recorded (", crc, " instead of ", want_crc, "): the file is damaged");
  }
}

}  // namespace

std::string checkpoint_name(const TrainingState& state) {
  const std::string name = fmt::format("{}{:04}", kPrefix, state.epoch);
  return state.step_in_epoch == 0 ? name : fmt::format("{}-{:06}", name, state.step_in_epoch);
}

std::string save_checkpoint(const std::string& output_dir, const TrainingState& state,
                            const TensorMap& model, const TensorMap& trainer,
                            const std::string& config_yaml, int64_t keep_last,
                            const std::string& model_file, const Metadata& model_metadata) {
  TORCH_CHECK(keep_last >= 1, "checkpoint: keep_last must be >= 1, got ", keep_last);
  TORCH_CHECK(is_dir(output_dir), "checkpoint: output folder '", output_dir, "' does not exist");
  const std::string name = checkpoint_name(state);
  const std::string final_path = join_path(output_dir, name);
  // Never a checkpoint of a diverged model: it would be taken for the last good one, and
  // keep_last would prune the clean ones before it. The older checkpoints stay as they are.
  const std::string refused = "not writing " + final_path + " (the checkpoints before it are kept)";
  require_finite(model, refused, {""});
  require_finite(trainer, refused, kMustBeFinite);
  const std::string tmp = final_path + ".tmp-" + std::to_string(::getpid());
  remove_tree(tmp);
  TORCH_CHECK(::mkdir(tmp.c_str(), 0777) == 0, "checkpoint: cannot create '", tmp,
              "': ", os_error(errno));
  try {
    write_checkpoint_files(tmp, state, model, trainer, config_yaml, model_file, model_metadata);
    sync_dir(tmp);
    if (is_dir(final_path)) {
      // A checkpoint of the same name (a step redone after a resume) is replaced by swapping
      // the two folders in one atomic step, so checkpoint-last never names a missing folder.
      TORCH_CHECK(
          ::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, final_path.c_str(), RENAME_EXCHANGE) == 0,
          "checkpoint: cannot replace '", final_path, "': ", os_error(errno));
      remove_tree(tmp);  // now the old checkpoint
    } else {
      TORCH_CHECK(::rename(tmp.c_str(), final_path.c_str()) == 0, "checkpoint: cannot rename '",
                  tmp, "' to '", final_path, "': ", os_error(errno));
    }
  } catch (...) {
    remove_tree(tmp);
    throw;
  }
  // checkpoint-last: a new relative link renamed over the old one (atomic). A copy of the run
  // may hold a folder or a file of that name instead of the link: it is replaced.
  const std::string link = join_path(output_dir, kLastLink);
  struct stat link_stat {};
  if (::lstat(link.c_str(), &link_stat) == 0 && S_ISDIR(link_stat.st_mode)) remove_tree(link);
  const std::string link_tmp = link + ".tmp-" + std::to_string(::getpid());
  ::unlink(link_tmp.c_str());
  TORCH_CHECK(::symlink(name.c_str(), link_tmp.c_str()) == 0, "checkpoint: cannot create link '",
              link_tmp, "': ", os_error(errno));
  TORCH_CHECK(::rename(link_tmp.c_str(), link.c_str()) == 0, "checkpoint: cannot update '", link,
              "': ", os_error(errno));
  sync_dir(output_dir);

  // Prune: leftovers of killed writers, and complete checkpoints beyond the newest keep_last of
  // those up to this one (a newer one, which this run did not write, is never deleted).
  for (const auto& entry : list_dir(output_dir)) {
    if (entry.rfind(kPrefix, 0) == 0 && entry.find(".tmp-") != std::string::npos)
      remove_tree(join_path(output_dir, entry));
  }
  std::vector<std::string> older;
  const auto written = std::make_pair(state.epoch, state.step_in_epoch);
  for (const auto& [order, entry] : complete_checkpoints(output_dir))
    if (order <= written) older.push_back(entry);
  const auto excess = static_cast<int64_t>(older.size()) - keep_last;
  for (int64_t i = 0; i < excess; ++i) {
    if (older[i] != name) remove_tree(join_path(output_dir, older[i]));
  }
  return final_path;
}

std::string checkpoint_kind(const std::string& path) {
  const std::string encoder = join_path(path, kEncoderFile);
  if (!path_exists(encoder))
    return path_exists(join_path(path, "head.safetensors")) ? "linear probe" : "";
  const auto names = read_safetensors_header(encoder).names;
  const bool head = std::find(names.begin(), names.end(), "head.weight") != names.end();
  return head ? "fine-tuning" : "pre-training";
}

std::string older_readable_checkpoint(const std::string& checkpoint,
                                      const std::string& model_file) {
  const auto [folder, name] = split_path(resolve_link(checkpoint));
  Order damaged;
  if (!parse_name(name, &damaged)) return "";
  const auto all = complete_checkpoints(folder);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    if (it->first >= damaged) continue;
    const std::string path = join_path(folder, it->second);
    try {
      load_checkpoint(path, model_file);
      return path;
    } catch (const std::exception&) {
      // damaged too: try the one before
    }
  }
  return "";
}

void remove_checkpoints(const std::string& output_dir) {
  ::unlink(join_path(output_dir, kLastLink).c_str());
  for (const auto& entry : list_dir(output_dir)) {
    if (entry.rfind(kPrefix, 0) == 0) remove_tree(join_path(output_dir, entry));
  }
}

std::string latest_checkpoint(const std::string& output_dir) {
  const std::string link = join_path(output_dir, kLastLink);
  const std::string path = resolve_link(link);
  if (path != link && path_exists(join_path(path, "state.json"))) return path;
  // No link, a broken one, or one a copy turned into a folder (cp -rL): the newest complete one.
  const auto all = complete_checkpoints(output_dir);
  return all.empty() ? "" : join_path(output_dir, all.back().second);
}

TrainingState parse_training_state(const std::string& text, const std::string& source) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    TORCH_CHECK(false, "checkpoint: '", source, "' is damaged: ", e.what());
  }
  TORCH_CHECK(j.is_object(), "checkpoint: '", source, "' is damaged: not a JSON object");
  // Whole numbers in [min, max] only (nlohmann stores one >= 0 as unsigned): get<> would truncate
  // 1.5 to 1, wrap -1 into a huge seed, and leave a double beyond int64's range undefined.
  auto integer = [&](const char* key, int64_t min, uint64_t max = INT64_MAX) -> const json& {
    const auto it = j.find(key);
    const bool ok = it != j.end() && it->is_number_integer() &&
                    (it->is_number_unsigned()
                         ? it->get<uint64_t>() <= max && it->get<uint64_t>() >= uint64_t(min)
                         : it->get<int64_t>() >= min);
    TORCH_CHECK(ok, "checkpoint: '", source, "' is damaged: \"", key, "\" is ",
                it == j.end() ? std::string("missing") : it->dump(),
                ", expected a whole number >= ", min);
    return *it;
  };
  const auto version = j.find("format_version");
  TORCH_CHECK(version != j.end() && version->is_number_integer() &&
                  version->get<int64_t>() == kStateVersion,
              "checkpoint: '", source, "' has format_version ",
              version == j.end() ? std::string("(none)") : version->dump(), ", expected ",
              kStateVersion);
  TrainingState state;
  state.epoch = integer("epoch", 0).get<int64_t>();
  state.step_in_epoch = integer("step_in_epoch", 0).get<int64_t>();
  state.global_step = integer("global_step", 0).get<int64_t>();
  state.nonfinite_skips = integer("nonfinite_skips", 0).get<int64_t>();
  state.world_size = integer("world_size", 1).get<int64_t>();
  state.seed = integer("seed", 0, UINT64_MAX).get<uint64_t>();
  return state;
}

void verify_checkpoint_file(const std::string& path) {
  const auto [folder, name] = split_path(path);
  const std::string state_path = join_path(folder, "state.json");
  if (!path_exists(state_path)) return;
  json state;
  try {
    state = json::parse(read_text_file(state_path));
  } catch (const std::exception& e) {
    TORCH_CHECK(false, "checkpoint: '", state_path, "' beside '", path,
                "' cannot be read: ", e.what());
  }
  const auto files = state.find("files");
  if (files == state.end() || !files->is_object() || !files->contains(name)) return;
  verify_files(folder, json{{"files", {{name, (*files)[name]}}}});
}

Checkpoint load_checkpoint(const std::string& path_in, const std::string& model_file) {
  const std::string path = resolve_link(path_in);
  TORCH_CHECK(is_dir(path), "checkpoint: '", path_in, "' is not a checkpoint folder");
  Checkpoint c;
  c.path = path;
  const std::string state_path = join_path(path, "state.json");
  const std::string state_text = checked([&] { return read_text_file(state_path); });
  c.state = parse_training_state(state_text, state_path);
  verify_files(path, json::parse(state_text));
  c.model = read_safetensors(join_path(path, model_file)).tensors;
  c.trainer = read_safetensors(join_path(path, "trainer.safetensors")).tensors;
  c.config_yaml = checked([&] { return read_text_file(join_path(path, "config.yaml")); });
  const std::string diverged =
      " (the run had diverged when it was written, or the file is damaged)";
  require_finite(c.model, "'" + join_path(path, model_file) + "'" + diverged, {""});
  require_finite(c.trainer, "'" + join_path(path, "trainer.safetensors") + "'" + diverged,
                 kMustBeFinite);
  return c;
}

}  // namespace ocl::io
