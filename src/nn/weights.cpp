// Pre-trained encoder weights into a ViT (see include/ocl/nn/weights.h).
#include "ocl/nn/weights.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>
#include <system_error>

#include <c10/util/Exception.h>
#include <torch/torch.h>

#include "ocl/io/checkpoint.h"
#include "ocl/io/number_text.h"
#include "ocl/io/safetensors.h"
#include "ocl/nn/pos_embed.h"

namespace ocl::nn {
namespace {

namespace fs = std::filesystem;

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

// "ckpt" → "ckpt/encoder.safetensors" for a checkpoint folder; a file is taken as it is.
std::string resolve_file(const std::string& path) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  TORCH_CHECK(!ec && fs::exists(status), "encoder weights: no file or folder at '", path,
              "' (give a safetensors file, a checkpoint folder, or 'none')");
  if (!fs::is_directory(status)) return path;
  const std::string file = (fs::path(path) / "encoder.safetensors").string();
  TORCH_CHECK(fs::is_regular_file(file, ec), "encoder weights: the folder '", path,
              "' holds no encoder.safetensors (expected a pre-training checkpoint folder)");
  return file;
}

// The rows g² of a position table [1, 1 + g², D] → g, or -1 when 1 + g² does not fit.
int64_t square_grid(const torch::Tensor& pos_embed) {
  if (pos_embed.dim() != 3 || pos_embed.size(0) != 1 || pos_embed.size(1) < 2) return -1;
  const int64_t n = pos_embed.size(1) - 1;
  const auto g = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
  return g * g == n ? g : -1;
}

// "width 384, patch 16, depth 12" from timm names, for the error a wrong preset gives.
std::string vit_sizes(const io::TensorMap& t) {
  std::ostringstream s;
  const auto proj = t.find("patch_embed.proj.weight");
  if (proj != t.end() && proj->second.dim() == 4)
    s << "width " << proj->second.size(0) << ", patch " << proj->second.size(2) << ", ";
  int64_t depth = 0;
  for (const auto& kv : t) {
    if (!starts_with(kv.first, "blocks.")) continue;
    const auto rest = kv.first.substr(7);
    const auto dot = rest.find('.');
    try {
      depth = std::max<int64_t>(depth, std::stoll(rest.substr(0, dot)) + 1);
    } catch (const std::exception&) {  // not a timm block name: leave it to the key report
    }
  }
  s << "depth " << depth;
  return s.str();
}

// ["head.bias", "head.weight", "norm.bias"] → "head.* (2), norm.* (1)".
std::string by_prefix(const std::vector<std::string>& names) {
  std::map<std::string, int> counts;
  for (const auto& n : names) ++counts[n.substr(0, n.find('.'))];
  std::string out;
  for (const auto& [prefix, count] : counts) {
    out += (out.empty() ? "" : ", ") + prefix + ".* (" + std::to_string(count) + ")";
  }
  return out;
}

// The file's input standardisation must be the model's, or the features are silently wrong. A
// file without the key (timm, MAE, converted, older ocl) was trained on plain pixels.
void check_input_norm(const io::Metadata& metadata, const VisionTransformerOptions& model,
                      const std::string& path) {
  const auto it = metadata.find(kInputNormKey);
  const bool recorded = it != metadata.end();
  const std::string file_norm = recorded ? it->second : "none";
  TORCH_CHECK(file_norm == "none" || file_norm == "patch", "encoder weights '", path,
              "' have a damaged header: ", kInputNormKey, " is '", file_norm,
              "', which is no input normalisation ocl knows (none, patch)");
  const std::string model_norm = input_norm_name(model.input_norm());
  TORCH_CHECK(file_norm == model_norm, "encoder weights '", path, "' ",
              recorded ? "were trained with model.input_norm: " + file_norm
                       : std::string("record no ") + kInputNormKey +
                             " (taken as none: timm, MAE and converted weights)",
              ", but the model is configured with model.input_norm: ", model_norm,
              " (set the config's model.input_norm to ", file_norm,
              ": the encoder's features depend on it)");
  if (model.input_norm() == InputNorm::None) return;
  const auto eps = metadata.find(kInputNormEpsKey);
  TORCH_CHECK(eps != metadata.end(), "encoder weights '", path,
              "' record model.input_norm: ", file_norm, " without its ", kInputNormEpsKey,
              " (a damaged or hand-made header)");
  // A value that is no positive number is damage, not a setting to copy into the config.
  const std::string& text = eps->second;
  char* end = nullptr;
  const double file_eps = std::strtod(text.c_str(), &end);
  TORCH_CHECK(
      !text.empty() && end == text.c_str() + text.size() && std::isfinite(file_eps) && file_eps > 0,
      "encoder weights '", path, "' have a damaged header: ", kInputNormEpsKey, " is '",
      text.substr(0, 64), text.size() > 64 ? "...'" : "'",
      ", not a number > 0 (a damaged or hand-made file)");
  const std::string model_eps = io::shortest_number(model.input_norm_eps());
  TORCH_CHECK(eps->second == model_eps, "encoder weights '", path,
              "' were trained with model.input_norm_eps: ", eps->second,
              ", but the model is configured with model.input_norm_eps: ", model_eps,
              " (set the config's value to the file's)");
}

// Positions of another grid: resampled in float64, keeping CLS (another width: the strict load
// reports it).
void resample_positions_if_needed(io::TensorMap& tensors, const io::TensorMap& module,
                                  const EncoderLoadOptions& options, EncoderLoadReport& report) {
  const auto file_pos = tensors.find("pos_embed");
  const auto module_pos = module.find("pos_embed");
  if (file_pos == tensors.end() || module_pos == module.end() ||
      file_pos->second.sizes() == module_pos->second.sizes())
    return;
  const auto& src = file_pos->second;
  const auto& dst = module_pos->second;
  const int64_t old_g = square_grid(src), new_g = square_grid(dst);
  if (old_g <= 0 || new_g <= 0 || src.size(2) != dst.size(2)) return;
  TORCH_CHECK(options.resample_pos_embed, "encoder weights '", report.path,
              "': pos_embed is for a ", old_g, "x", old_g, " patch grid, the model's for ", new_g,
              "x", new_g, ", and resampling is off");
  file_pos->second = nn::resample_pos_embed(src.to(torch::kFloat64), old_g, old_g, new_g, new_g);
  report.pos_embed_resampled = std::to_string(old_g) + "x" + std::to_string(old_g) + " -> " +
                               std::to_string(new_g) + "x" + std::to_string(new_g);
}

}  // namespace

std::string EncoderLoadReport::describe() const {
  if (!loaded) return "encoder weights: none (random initialisation kept)";
  std::ostringstream s;
  s << "encoder weights: " << tensors_loaded << " tensors from " << path;
  if (!source.empty()) s << " (converted from " << source << ")";
  std::vector<std::string> notes;
  if (!dropped.empty()) notes.push_back("dropped " + by_prefix(dropped));
  if (!left_at_init.empty()) notes.push_back("left at init " + by_prefix(left_at_init));
  if (!pos_embed_resampled.empty())
    notes.push_back("pos_embed resampled bicubically " + pos_embed_resampled);
  for (size_t i = 0; i < notes.size(); ++i) s << (i == 0 ? "\n  " : "; ") << notes[i];
  return s.str();
}

EncoderLoadReport load_encoder_weights(nn::VisionTransformer& encoder, const std::string& path,
                                       const EncoderLoadOptions& options) {
  EncoderLoadReport report;
  if (path == "none") return report;
  report.path = resolve_file(path);
  io::verify_checkpoint_file(report.path);
  auto file = io::read_safetensors(report.path);
  if (auto it = file.metadata.find("source"); it != file.metadata.end()) report.source = it->second;
  check_input_norm(file.metadata, encoder->options, report.path);

  const bool avg_pool = !encoder->norm && encoder->fc_norm;
  // A new head is trained; with mean pooling a fresh `fc_norm` replaces `norm` (MAE's rules).
  io::TensorMap tensors;
  for (auto& [name, tensor] : file.tensors) {
    if (starts_with(name, "head.") || (avg_pool && starts_with(name, "norm."))) {
      report.dropped.push_back(name);
    } else {
      tensors.emplace(name, tensor);
    }
  }

  const io::TensorMap module = io::state_dict(*encoder);
  std::vector<std::string> allowed_missing = {"head."};
  if (avg_pool) allowed_missing.push_back("fc_norm.");
  for (const auto& [name, tensor] : module) {
    if (!tensors.count(name) &&
        (starts_with(name, "head.") || (avg_pool && starts_with(name, "fc_norm."))))
      report.left_at_init.push_back(name);
  }

  resample_positions_if_needed(tensors, module, options, report);
  io::LoadOptions load;
  load.strict = true;
  load.ignore_missing = allowed_missing;
  io::LoadReport loaded;
  try {
    loaded = io::load_state_dict(*encoder, tensors, load);
  } catch (const c10::Error& e) {
    // Keep load_state_dict's key lists, not its hint about LoadOptions (no option of the apps).
    std::string keys = e.what_without_backtrace();
    if (const auto at = keys.find("state dict:"); at != std::string::npos) keys = keys.substr(at);
    if (const auto at = keys.find("\n(nothing was loaded"); at != std::string::npos)
      keys.resize(at);
    // The sizes first: for a wrong preset they say more than the long key list after them.
    const std::string file_sizes = vit_sizes(file.tensors), model_sizes = vit_sizes(module);
    std::string hint;
    if (file_sizes != model_sizes) {
      hint = "; the file holds a ViT of " + file_sizes + ", the model is " + model_sizes +
             " (is the model preset right?)";
    }
    TORCH_CHECK(false, "encoder weights '", report.path,
                "' do not fit the model, which is left unchanged", hint, "\n", keys);
  }
  static_cast<io::LoadReport&>(report) = loaded;
  report.loaded = true;
  report.tensors_loaded = static_cast<int64_t>(module.size() - report.left_at_init.size());
  return report;
}

nn::VisionTransformerOptions encoder_options(const io::Config& config,
                                             const io::DerivedConfig& derived) {
  const auto& m = config.model;
  return nn::VisionTransformerOptions(m.img_size, derived.patch_size, derived.embed_dim,
                                      derived.depth, derived.num_heads)
      .mlp_ratio(m.mlp_ratio)
      .drop_path_rate(m.drop_path)
      .freeze_patch_embed(m.freeze_patch_embed)
      .input_norm(parse_input_norm(m.input_norm))
      .input_norm_eps(m.input_norm_eps)
      .fused(m.fused)
      .float32_residual(m.residual == "fp32");
}

io::Metadata encoder_metadata(const VisionTransformerOptions& options) {
  io::Metadata metadata = {{kInputNormKey, input_norm_name(options.input_norm())}};
  if (options.input_norm() != InputNorm::None)
    metadata[kInputNormEpsKey] = io::shortest_number(options.input_norm_eps());
  return metadata;
}

}  // namespace ocl::nn
