// Run configuration (see include/ocl/io/config.h): one key table drives parsing, overrides,
// printing and comparison, so a new key is added in one place; validation names path and range.
#include "ocl/io/config.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <variant>
#include <vector>

#include <c10/util/Exception.h>
#include <sys/stat.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include "ocl/io/number_text.h"
#include "ocl/io/spec.h"

namespace ocl::io {

std::string shortest_number(double v) {
  if (std::isnan(v)) return ".nan";
  if (std::isinf(v)) return v > 0 ? ".inf" : "-.inf";
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}

// Config files above this are refused before reading (a 50 MB YAML list takes seconds and GBs).
constexpr int64_t kMaxConfigBytes = 1 << 20;
namespace {

// The key table (schema()): every section and key in header order, each a typed reference.
using Ref = std::variant<std::string*, int64_t*, uint64_t*, double*, bool*>;

// What a key's value must be on its own; checks that involve several keys are validate()'s.
struct Rule {
  enum Kind { kAny, kAtLeast, kAbove, kClosed, kHalfOpen, kUnit, kOneOf } kind = kAny;
  double lo = 0, hi = 0;
  std::vector<const char*> words;
};
Rule any() { return {}; }
Rule ge(double lo) { return {Rule::kAtLeast, lo, 0, {}}; }                  // >= lo
Rule gt(double lo, double hi = 0) { return {Rule::kAbove, lo, hi, {}}; }    // > lo (<= hi)
Rule in(double lo, double hi) { return {Rule::kClosed, lo, hi, {}}; }       // [lo, hi]
Rule below(double lo, double hi) { return {Rule::kHalfOpen, lo, hi, {}}; }  // [lo, hi)
Rule unit() { return {Rule::kUnit, 0, 1, {}}; }                             // (0, 1]
Rule words(std::vector<const char*> allowed) { return {Rule::kOneOf, 0, 0, std::move(allowed)}; }

// Upper bounds of sizes whose products the run computes (see validate_model_and_mask).
constexpr int64_t kMaxImageSide = 65535;
constexpr int64_t kMaxBatchSize = int64_t{1} << 24;
constexpr int64_t kMaxAccumIter = int64_t{1} << 16;
// Bounds past which a value passes no real run and fails later without naming its key: threads
// the system refuses, a synthetic set exhausting memory, an lr no float32 holds, a huge model.
constexpr int64_t kMaxWorkers = 1024;
constexpr int64_t kMaxSyntheticImages = 100'000'000;
constexpr double kMaxLr = std::numeric_limits<float>::max();  // the optimiser's type
constexpr int64_t kMaxDepth = 1024, kMaxEmbedDim = 65536, kMaxHeads = 4096;

struct Key {
  const char* name;
  Ref (*get)(Config&);
  Rule rule;
};

struct Section {
  const char* name;
  std::vector<Key> keys;
};

#define OCL_KEY(section, field, rule)                                \
  Key {                                                              \
#field, [](Config & c) -> Ref { return &c.section.field; }, rule \
  }

const std::vector<Section>& schema() {
  static const std::vector<Section> sections = {
      {"model",
       {OCL_KEY(model, arch, any()), OCL_KEY(model, img_size, in(1, kMaxImageSide)),
        OCL_KEY(model, patch_size, any()), OCL_KEY(model, embed_dim, any()),
        OCL_KEY(model, depth, any()), OCL_KEY(model, num_heads, any()),
        OCL_KEY(model, mlp_ratio, gt(0)), OCL_KEY(model, drop_path, below(0, 1)),
        OCL_KEY(model, freeze_patch_embed, any()),
        OCL_KEY(model, input_norm, words({"none", "patch"})), OCL_KEY(model, input_norm_eps, gt(0)),
        OCL_KEY(model, fused, any()),
        OCL_KEY(model, attention, words({"auto", "flash", "efficient", "cudnn", "math"})),
        OCL_KEY(model, residual, words({"auto", "fp32"}))}},
      {"mask",
       {OCL_KEY(mask, ratio, below(0, 1)),
        OCL_KEY(mask, group_views, words({"shared", "independent"}))}},
      {"loss",
       {OCL_KEY(loss, kappa, gt(0)), OCL_KEY(loss, temperature, gt(0)),
        OCL_KEY(loss, learnable_temperature, any()), OCL_KEY(loss, max_logit_scale, any()),
        OCL_KEY(loss, negatives, words({"global", "local"}))}},
      {"data",
       {OCL_KEY(data, dataset,
                words({"synthetic", "imagefolder", "packed", "webdataset", "cifar10", "cifar100"})),
        OCL_KEY(data, path, any()),
        OCL_KEY(data, val_path, any()),
        OCL_KEY(data, augment, words({"rrc_flip", "none"})),
        OCL_KEY(data, crop_scale_min, unit()),
        OCL_KEY(data, crop_scale_max, unit()),
        OCL_KEY(data, crop_ratio_min, gt(0)),
        OCL_KEY(data, crop_ratio_max, gt(0)),
        OCL_KEY(data, interpolation, words({"bicubic", "bilinear", "area", "nearest"})),
        OCL_KEY(data, hflip, any()),
        OCL_KEY(data, photometric, words({"none", "byol", "colour", "simclr"})),
        OCL_KEY(data, illumination, in(0, 255)),
        OCL_KEY(data, noise, in(0, 255)),
        OCL_KEY(data, blur, in(0, 16)),
        OCL_KEY(data, decode, words({"reduced", "region", "full"})),
        OCL_KEY(data, workers, in(1, kMaxWorkers)),
        OCL_KEY(data, prefetch, ge(1)),
        OCL_KEY(data, max_bad_fraction, in(0, 1)),
        OCL_KEY(data, max_image_pixels, ge(1)),
        OCL_KEY(data, synthetic_train_size, in(1, kMaxSyntheticImages)),
        OCL_KEY(data, synthetic_val_size, in(1, kMaxSyntheticImages)),
        OCL_KEY(data, synthetic_classes, in(10, 64)),
        OCL_KEY(data, synthetic_colours, words({"palette", "random"})),
        OCL_KEY(data, synthetic_noise, in(0, 128)),
        OCL_KEY(data, synthetic_gradient, in(0, 255)),
        OCL_KEY(data, synthetic_strokes, in(0, 16)),
        OCL_KEY(data, cache_dir, any()),
        OCL_KEY(data, read, words({"index", "stream"})),
        OCL_KEY(data, shuffle_buffer, in(1, 1000000)),
        OCL_KEY(data, samples_per_epoch, ge(0)),
        OCL_KEY(data, stream_retries, in(0, 100)),
        OCL_KEY(data, stream_timeout_s, gt(0))}},
      {"optim",
       {OCL_KEY(optim, name, words({"adamw"})), OCL_KEY(optim, blr, gt(0, kMaxLr)),
        OCL_KEY(optim, lr, in(0, kMaxLr)), OCL_KEY(optim, min_lr, in(0, kMaxLr)),
        OCL_KEY(optim, weight_decay, ge(0)), OCL_KEY(optim, beta1, below(0, 1)),
        OCL_KEY(optim, beta2, below(0, 1)), OCL_KEY(optim, eps, gt(0)),
        OCL_KEY(optim, warmup_epochs, ge(0)), OCL_KEY(optim, accum_iter, in(1, kMaxAccumIter)),
        OCL_KEY(optim, clip_grad, ge(0)), OCL_KEY(optim, fused, words({"auto", "on", "off"}))}},
      {"train",
       {OCL_KEY(train, epochs, ge(1)), OCL_KEY(train, batch_size, in(2, kMaxBatchSize)),
        OCL_KEY(train, steps_per_epoch, ge(0)), OCL_KEY(train, seed, any()),
        OCL_KEY(train, output_dir, any()), OCL_KEY(train, save_every, ge(1)),
        OCL_KEY(train, keep_last, ge(1)), OCL_KEY(train, device, any()),
        OCL_KEY(train, precision, words({"auto", "fp32", "bf16"})), OCL_KEY(train, tf32, any()),
        OCL_KEY(train, threads, ge(0)), OCL_KEY(train, on_nonfinite, words({"stop", "skip"})),
        OCL_KEY(train, max_nonfinite_skips, ge(0)),
        OCL_KEY(train, host_sync, words({"step", "deferred"})),
        OCL_KEY(train, cuda_graph, words({"off", "on", "staged"}))}},
      {"dist",
       {OCL_KEY(dist, backend, words({"auto", "nccl", "gloo"})), OCL_KEY(dist, timeout_s, gt(0)),
        OCL_KEY(dist, bucket_mb, gt(0)), OCL_KEY(dist, first_bucket_mb, gt(0)),
        OCL_KEY(dist, overlap, any()), OCL_KEY(dist, verify_every, ge(0))}},
      {"eval",
       {OCL_KEY(eval, knn_every, ge(0)), OCL_KEY(eval, knn_k, ge(1)), OCL_KEY(eval, knn_t, gt(0)),
        OCL_KEY(eval, knn_train_size, ge(1)), OCL_KEY(eval, knn_val_size, ge(1)),
        OCL_KEY(eval, shortcut_alarm, any()), OCL_KEY(eval, shortcut_accuracy, unit()),
        OCL_KEY(eval, shortcut_knn_gain, ge(0)), OCL_KEY(eval, shortcut_window, ge(1))}},
      {"linprobe",
       {OCL_KEY(linprobe, epochs, ge(1)), OCL_KEY(linprobe, batch_size, in(2, kMaxBatchSize)),
        OCL_KEY(linprobe, accum_iter, in(1, kMaxAccumIter)), OCL_KEY(linprobe, blr, gt(0, kMaxLr)),
        OCL_KEY(linprobe, lr, in(0, kMaxLr)), OCL_KEY(linprobe, min_lr, in(0, kMaxLr)),
        OCL_KEY(linprobe, warmup_epochs, ge(0)), OCL_KEY(linprobe, weight_decay, ge(0)),
        OCL_KEY(linprobe, output_dir, any()), OCL_KEY(linprobe, cached_features, any()),
        OCL_KEY(linprobe, save_every, ge(1)), OCL_KEY(linprobe, keep_last, ge(1))}},
      {"finetune",
       {OCL_KEY(finetune, epochs, ge(1)),
        OCL_KEY(finetune, batch_size, in(2, kMaxBatchSize)),
        OCL_KEY(finetune, accum_iter, in(1, kMaxAccumIter)),
        OCL_KEY(finetune, blr, gt(0, kMaxLr)),
        OCL_KEY(finetune, lr, in(0, kMaxLr)),
        OCL_KEY(finetune, min_lr, in(0, kMaxLr)),
        OCL_KEY(finetune, warmup_epochs, ge(0)),
        OCL_KEY(finetune, weight_decay, ge(0)),
        OCL_KEY(finetune, layer_decay, unit()),
        OCL_KEY(finetune, beta1, below(0, 1)),
        OCL_KEY(finetune, beta2, below(0, 1)),
        OCL_KEY(finetune, clip_grad, ge(0)),
        OCL_KEY(finetune, drop_path, below(0, 1)),
        OCL_KEY(finetune, global_pool, words({"avg", "token"})),
        OCL_KEY(finetune, crop_scale_min, unit()),
        OCL_KEY(finetune, auto_augment, any()),
        OCL_KEY(finetune, reprob, in(0, 1)),
        OCL_KEY(finetune, mixup, ge(0)),
        OCL_KEY(finetune, cutmix, ge(0)),
        OCL_KEY(finetune, mixup_prob, in(0, 1)),
        OCL_KEY(finetune, mixup_switch_prob, in(0, 1)),
        OCL_KEY(finetune, smoothing, below(0, 1)),
        OCL_KEY(finetune, model_ema, any()),
        OCL_KEY(finetune, model_ema_decay, below(0, 1)),
        OCL_KEY(finetune, output_dir, any()),
        OCL_KEY(finetune, save_every, ge(1)),
        OCL_KEY(finetune, keep_last, ge(1))}},
      {"log",
       {OCL_KEY(log, every, ge(1)),
        OCL_KEY(log, level, words({"trace", "debug", "info", "warn", "error"})),
        OCL_KEY(log, progress, words({"auto", "bar", "lines"})), OCL_KEY(log, tensorboard, any())}},
  };
  return sections;
}

#undef OCL_KEY

// `optim.betas: [b1, b2]` is accepted on input as PyTorch's spelling of beta1 and beta2.
constexpr const char* kBetas = "betas";

// Readers only look through the reference, so the const_cast never writes to a const Config.
Ref ref_of(const Key& key, const Config& config) { return key.get(const_cast<Config&>(config)); }

std::string section_names() {
  std::string out;
  for (const auto& s : schema()) out += (out.empty() ? "" : ", ") + std::string(s.name);
  return out;
}

// The section `name`; an unknown one is a ConfigError led by `lead`.
const Section& find_section(const std::string& name, const std::string& lead) {
  for (const auto& s : schema())
    if (name == s.name) return s;
  throw ConfigError(lead + name + ": unknown key (valid: " + section_names() + ")");
}

std::string key_names(const Section& section) {
  std::string out;
  for (const auto& k : section.keys) {
    out += (out.empty() ? "" : ", ") + std::string(k.name);
    if (std::string(section.name) == "optim" && std::string(k.name) == "beta2")
      out += std::string(", ") + kBetas;
  }
  return out;
}

// As shortest_number(), but always with a '.', so YAML 1.1 readers such as PyYAML also see a float
// ("1e-05" and "64" would be a string and an int there).
std::string yaml_double(double v) {
  std::string s = shortest_number(v);
  if (!std::isfinite(v) || s.find('.') != std::string::npos) return s;
  const auto e = s.find('e');
  if (e == std::string::npos) return s + ".0";
  s.insert(e, ".0");
  return s;
}

bool plain_string_is_safe(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return false;
  const auto ok_first = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '/';
  };
  if (!ok_first(s.front()) || s.back() == ':') return false;
  for (char c : s)
    if (!ok_first(c) && c != '-' && c != '+' && c != ':') return false;
  return true;
}

std::string yaml_string(const std::string& s) {
  if (plain_string_is_safe(s)) return s;
  YAML::Emitter out;
  out << YAML::DoubleQuoted << s;
  return out.c_str();
}

std::string format_value(const Ref& ref) {
  return std::visit(
      [](auto* p) -> std::string {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, std::string>) return yaml_string(*p);
        if constexpr (std::is_same_v<T, double>) return yaml_double(*p);
        if constexpr (std::is_same_v<T, bool>) return *p ? "true" : "false";
        if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, uint64_t>)
          return std::to_string(*p);
      },
      ref);
}

bool same_value(const Ref& a, const Ref& b) {
  return std::visit(
      [&b](auto* pa) {
        using P = decltype(pa);
        return *pa == *std::get<P>(b);
      },
      a);
}

// YAML nodes onto typed fields. Numbers and bools must be plain (unquoted) scalars: "64" in
// quotes is a string, and accepting it would hide a config written by a confused generator.

std::string describe(const YAML::Node& node) {
  if (node.IsMap()) return "a map";
  if (node.IsSequence())
    return "a list of " + std::to_string(node.size()) + (node.size() == 1 ? " item" : " items");
  if (node.IsNull()) return "nothing (null)";
  if (node.Tag() == "!") return "the quoted string \"" + node.Scalar() + "\"";
  return "'" + node.Scalar() + "'";
}

bool is_plain_scalar(const YAML::Node& node, const char* core_tag) {
  return node.IsScalar() &&
         (node.Tag() == "?" || node.Tag() == std::string("tag:yaml.org,2002:") + core_tag);
}

[[noreturn]] void type_error(const std::string& path, const YAML::Node& node,
                             const std::string& expected) {
  throw ConfigError(path + ": expected " + expected + ", got " + describe(node));
}

// The whole text in base 10 (an integer type) or the general format (double), with YAML's
// optional '+'. Out-of-range text (1e999) is an error too: it is not the number that was written.
template <typename T>
bool parse_number(std::string text, T& out) {
  if (!text.empty() && text.front() == '+') text.erase(0, 1);
  if (text.empty() || text.front() == '+') return false;
  const char* end = text.data() + text.size();
  const auto res = std::from_chars(text.data(), end, out);
  return res.ec == std::errc() && res.ptr == end;
}

bool parse_double(const std::string& text, double& out) {
  // YAML's spellings of the non-finite values; validation then reports them as out of range.
  static const std::map<std::string, double> special = {
      {".inf", HUGE_VAL},   {".Inf", HUGE_VAL},     {".INF", HUGE_VAL},     {"+.inf", HUGE_VAL},
      {"+.Inf", HUGE_VAL},  {"+.INF", HUGE_VAL},    {"-.inf", -HUGE_VAL},   {"-.Inf", -HUGE_VAL},
      {"-.INF", -HUGE_VAL}, {".nan", std::nan("")}, {".NaN", std::nan("")}, {".NAN", std::nan("")}};
  if (const auto it = special.find(text); it != special.end()) {
    out = it->second;
    return true;
  }
  return parse_number(text, out);
}

double read_double(const YAML::Node& node, const std::string& path) {
  double v = 0;
  if ((!is_plain_scalar(node, "float") && !is_plain_scalar(node, "int")) ||
      !parse_double(node.Scalar(), v))
    type_error(path, node, "a number");
  return v;
}

// Well-formed UTF-8 (RFC 3629: no overlong forms, surrogates or code points above U+10FFFF).
bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    // The lead byte 110xxxxx, 1110xxxx or 11110xxx: n continuation bytes, 6 - n bits of its own.
    const size_t n = (c & 0xE0) == 0xC0 ? 1 : (c & 0xF0) == 0xE0 ? 2 : (c & 0xF8) == 0xF0 ? 3 : 0;
    if (n == 0 || s.size() - i <= n) return false;
    uint32_t cp = c & (0x3Fu >> n);
    for (size_t k = 1; k <= n; ++k) {
      const auto t = static_cast<unsigned char>(s[i + k]);
      if ((t & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (t & 0x3F);
    }
    const uint32_t least[] = {0, 0x80, 0x800, 0x10000};
    if (cp < least[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

void assign(const Ref& ref, const YAML::Node& node, const std::string& path) {
  if (auto* s = std::get_if<std::string*>(&ref)) {
    // An empty value (`path:`) is the empty string, as the defaults of path and cache_dir are.
    if (node.IsNull()) {
      **s = "";
      return;
    }
    if (!node.IsScalar()) type_error(path, node, "a string");
    // yaml-cpp reads any bytes but writes back only UTF-8: another encoding's bytes (a Latin-1
    // folder name) would come back changed from the run's config.yaml.
    if (!valid_utf8(node.Scalar()))
      throw ConfigError(path +
                        ": not UTF-8 text (a config is UTF-8; rename the file or folder, "
                        "or link to it from a UTF-8 name)");
    **s = node.Scalar();
  } else if (auto* i = std::get_if<int64_t*>(&ref)) {
    int64_t v = 0;
    if (!is_plain_scalar(node, "int") || !parse_number(node.Scalar(), v))
      type_error(path, node, "an integer");
    **i = v;
  } else if (auto* u = std::get_if<uint64_t*>(&ref)) {
    uint64_t v = 0;
    const bool negative = node.IsScalar() && !node.Scalar().empty() && node.Scalar()[0] == '-';
    if (!is_plain_scalar(node, "int") || negative || !parse_number(node.Scalar(), v))
      type_error(path, node, "a non-negative integer (at most 18446744073709551615)");
    **u = v;
  } else if (auto* d = std::get_if<double*>(&ref)) {
    **d = read_double(node, path);
  } else if (auto* b = std::get_if<bool*>(&ref)) {
    const std::string text = node.IsScalar() ? node.Scalar() : "";
    if (!is_plain_scalar(node, "bool") || (text != "true" && text != "false"))
      type_error(path, node, "true or false");
    **b = text == "true";
  }
}

// Where each key's value came from, so a validation error points at the line or the override.
struct Origin {
  int line = 0;           // 1-based line in the source text; 0 = not from the text
  std::string override_;  // the override text, when an override set it last
};
using Origins = std::map<std::string, Origin>;

// Sets `section.key` from `node`; returns the key paths it set.
std::vector<std::string> assign_key(Config& config, const Section& section, const std::string& key,
                                    const YAML::Node& node) {
  const std::string path = std::string(section.name) + "." + key;
  if (std::string(section.name) == "optim" && key == kBetas) {
    if (!node.IsSequence() || node.size() != 2) type_error(path, node, "a list [beta1, beta2]");
    config.optim.beta1 = read_double(node[0], path + "[0]");
    config.optim.beta2 = read_double(node[1], path + "[1]");
    return {"optim.beta1", "optim.beta2"};
  }
  for (const auto& k : section.keys) {
    if (key != k.name) continue;
    assign(k.get(config), node, path);
    return {path};
  }
  throw ConfigError(path + ": unknown key (valid: " + key_names(section) + ")");
}

std::string at_line(const std::string& source, int line) {
  if (source.empty()) return line > 0 ? "line " + std::to_string(line) + ": " : "";
  return source + (line > 0 ? ":" + std::to_string(line) : "") + ": ";
}

int line_of(const YAML::Node& node) { return node.Mark().line + 1; }

// Where each YAML document of a text starts (its first node's mark). Not YAML::LoadAll: in
// yaml-cpp 0.7 a stray ',' outside brackets ("," or "\0,") yields empty documents at one place
// forever, so a document starting where the previous one did is a syntax error.
class DocumentStarts : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> starts;
  void OnDocumentStart(const YAML::Mark&) override { first_node_ = true; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { node(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { node(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    node(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    node(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    node(mark);
  }
  void OnMapEnd() override {}

 private:
  void node(const YAML::Mark& mark) {
    if (first_node_) starts.push_back(mark);
    first_node_ = false;
  }
  bool first_node_ = false;
};

std::vector<YAML::Mark> yaml_documents(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentStarts documents;
  while (parser.HandleNextDocument(documents)) {
    const auto& s = documents.starts;
    if (s.size() >= 2 && s[s.size() - 1].pos == s[s.size() - 2].pos) {
      const auto at = static_cast<size_t>(s.back().pos);
      const std::string what =
          at < text.size() && std::isprint(static_cast<unsigned char>(text[at]))
              ? "'" + std::string(1, text[at]) + "'"
              : "byte " +
                    std::to_string(static_cast<unsigned char>(at < text.size() ? text[at] : 0));
      throw YAML::ParserException(s.back(), "unexpected " + what + " (a ',' outside [ ] or { }?)");
    }
  }
  return documents.starts;
}

void apply_document(Config& config, const YAML::Node& root, const std::string& source,
                    Origins& origins) {
  if (root.IsNull()) return;  // an empty file: all defaults
  if (!root.IsMap())
    throw ConfigError(at_line(source, line_of(root)) + "expected a map of sections (" +
                      section_names() + "), got " + describe(root));
  std::map<std::string, int> seen_sections;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const YAML::Node name_node = it->first;
    const YAML::Node body = it->second;
    const int line = line_of(name_node);
    const std::string name = name_node.IsScalar() ? name_node.Scalar() : describe(name_node);
    const std::string where = at_line(source, line);  // named: GCC 14 warns on a temporary
    const Section& section = find_section(name, where);
    if (!seen_sections.emplace(name, line).second)
      throw ConfigError(at_line(source, line) + name + ": appears twice (first on line " +
                        std::to_string(seen_sections[name]) + ")");
    if (body.IsNull()) continue;  // `model:` with nothing under it
    if (!body.IsMap())
      throw ConfigError(at_line(source, line) + name + ": expected a map of keys (" +
                        key_names(section) + "), got " + describe(body));
    std::map<std::string, int> seen_keys;
    for (auto kv = body.begin(); kv != body.end(); ++kv) {
      const int key_line = line_of(kv->first);
      const std::string key = kv->first.IsScalar() ? kv->first.Scalar() : describe(kv->first);
      const std::string path = name + "." + key;
      if (!seen_keys.emplace(key, key_line).second)
        throw ConfigError(at_line(source, key_line) + path + ": appears twice (first on line " +
                          std::to_string(seen_keys[key]) + ")");
      try {
        for (const auto& set : assign_key(config, section, key, kv->second))
          origins[set] = Origin{key_line, ""};
      } catch (const ConfigError& e) {
        throw ConfigError(at_line(source, key_line) + e.what());
      }
    }
    if (seen_keys.count(kBetas) && (seen_keys.count("beta1") || seen_keys.count("beta2")))
      throw ConfigError(at_line(source, seen_keys[kBetas]) +
                        "optim.betas: conflicts with optim.beta1/beta2 in the same file; set one "
                        "or the other");
  }
}

std::string trim(const std::string& s) {
  const auto first = s.find_first_not_of(" \t");
  if (first == std::string::npos) return "";
  return s.substr(first, s.find_last_not_of(" \t") - first + 1);
}

void apply_override(Config& config, const std::string& text, Origins& origins) {
  const std::string lead = "override '" + text + "': ";
  const auto eq = text.find('=');
  if (eq == std::string::npos)
    throw ConfigError(lead + "expected key.path=value (e.g. optim.blr=1e-4)");
  const std::string path = trim(text.substr(0, eq));
  const auto dot = path.find('.');
  if (dot == std::string::npos || path.find('.', dot + 1) != std::string::npos)
    throw ConfigError(lead + "'" + path +
                      "' is not a key path section.key (sections: " + section_names() + ")");
  const std::string section_name = path.substr(0, dot);  // named: GCC 14 warns on a temporary
  const Section& section = find_section(section_name, lead);
  YAML::Node value;
  try {
    value = YAML::Load(text.substr(eq + 1));
  } catch (const YAML::Exception& e) {
    throw ConfigError(lead + "the value is not valid YAML: " + e.msg);
  }
  try {
    for (const auto& set : assign_key(config, section, path.substr(dot + 1), value))
      origins[set] = Origin{0, text};
  } catch (const ConfigError& e) {
    throw ConfigError(lead + e.what());
  }
}

// Validation. Each failure names the keys involved (the first one leads the message), so that
// parse_config can point at the line or the override that set them.

struct Invalid : ConfigError {
  Invalid(std::vector<std::string> keys_, const std::string& message)
      : ConfigError(keys_.front() + ": " + message), keys(std::move(keys_)) {}
  std::vector<std::string> keys;
};

void require(bool ok, std::initializer_list<std::string> keys, const std::string& message) {
  if (!ok) throw Invalid(keys, message);
}

void one_of(const std::string& path, const std::string& v,
            const std::vector<const char*>& allowed) {
  std::string list;
  for (const char* a : allowed) {
    if (v == a) return;
    list += (list.empty() ? "" : " | ") + std::string(a);
  }
  throw Invalid({path}, "must be one of " + list + ", got '" + v + "'");
}

// Zeros take the preset's value; call after model.arch has been checked.
VitSizes resolve_sizes(const ModelConfig& m) {
  VitSizes s{m.patch_size, m.embed_dim, m.depth, m.num_heads};
  if (m.arch == "custom") return s;
  const VitSizes& p = *find_vit_preset(m.arch);
  if (s.patch_size == 0) s.patch_size = p.patch_size;
  if (s.embed_dim == 0) s.embed_dim = p.embed_dim;
  if (s.depth == 0) s.depth = p.depth;
  if (s.num_heads == 0) s.num_heads = p.num_heads;
  return s;
}

void validate_model_and_mask(const Config& c) {
  const auto& m = c.model;
  if (m.arch != "custom" && find_vit_preset(m.arch) == nullptr) {
    std::string list;
    for (const auto& name : vit_preset_names()) list += name + " | ";
    throw Invalid({"model.arch"}, "must be one of " + list + "custom, got '" + m.arch + "'");
  }
  const bool custom = m.arch == "custom";
  const std::tuple<const char*, int64_t, int64_t> sizes[] = {
      {"model.patch_size", m.patch_size, kMaxImageSide},
      {"model.embed_dim", m.embed_dim, kMaxEmbedDim},
      {"model.depth", m.depth, kMaxDepth},
      {"model.num_heads", m.num_heads, kMaxHeads}};
  for (const auto& [path, v, most] : sizes) {
    require(v <= most, {path}, "must be <= " + std::to_string(most) + ", got " + std::to_string(v));
    if (custom)
      require(v > 0, {path, "model.arch"},
              "must be > 0 with model.arch custom (there is no preset to take it from), got " +
                  std::to_string(v));
    else
      require(v >= 0, {path}, "must be >= 0 (0 = the preset's value), got " + std::to_string(v));
  }
  const VitSizes s = resolve_sizes(m);
  const std::string from_preset = custom ? "" : " (model.arch " + m.arch + ")";
  require(m.img_size % s.patch_size == 0, {"model.img_size", "model.patch_size", "model.arch"},
          "must be divisible by the patch size " + std::to_string(s.patch_size) + from_preset +
              ", got " + std::to_string(m.img_size));
  require(s.embed_dim % s.num_heads == 0, {"model.embed_dim", "model.num_heads", "model.arch"},
          "must be divisible by the number of heads " + std::to_string(s.num_heads) + from_preset +
              ", got " + std::to_string(s.embed_dim));
  require(s.embed_dim % 4 == 0, {"model.embed_dim", "model.arch"},
          "must be divisible by 4 (the 2-D sin-cos positions use D/4 frequencies per axis and "
          "function), got " +
              std::to_string(s.embed_dim));
  require(m.input_norm == "none" || s.patch_size >= 2, {"model.input_norm", "model.patch_size"},
          "patch needs patches of at least 2x2 pixels (a 1x1 patch standardises to 0), got "
          "patch size " +
              std::to_string(s.patch_size) + from_preset);
  const int64_t grid = m.img_size / s.patch_size;
  const int64_t n = grid * grid;
  // mask.ratio is in [0, 1) (its rule) and n >= 1 (img_size is a multiple of the patch size).
  require(kept_token_count(n, c.mask.ratio) / 2 >= 1, {"mask.ratio", "model.img_size"},
          shortest_number(c.mask.ratio) + " leaves no token for each of the two groups of the " +
              std::to_string(n) +
              " patches (floor(N*(1-r)/2) must be >= 1): lower mask.ratio "
              "or the patch size");
}

std::string number(int64_t v) { return std::to_string(v); }
std::string number(double v) { return shortest_number(v); }

// A key's own rule (Rule) on its value. Integers print whole: shortest_number(1e8) is "1e+08".
void check_rule(const std::string& path, const Rule& r, const Ref& ref) {
  std::visit(
      [&](auto* p) {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, std::string>) {
          if (r.kind == Rule::kOneOf) one_of(path, *p, r.words);
        } else if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, double>) {
          const T v = *p, lo = static_cast<T>(r.lo), hi = static_cast<T>(r.hi);
          const bool finite = std::isfinite(static_cast<double>(v));
          const std::string got = ", got " + number(v);
          const std::string range = "must be in [" + number(lo) + ", " + number(hi);
          if (r.kind == Rule::kAtLeast)
            require(finite && v >= lo, {path}, "must be >= " + number(lo) + got);
          if (r.kind == Rule::kAbove)
            require(finite && v > lo, {path}, "must be > " + number(lo) + got);
          if (r.kind == Rule::kAbove && hi > lo)
            require(v <= hi, {path}, "must be <= " + number(hi) + got);
          if (r.kind == Rule::kClosed)
            require(finite && v >= lo && v <= hi, {path}, range + "]" + got);
          if (r.kind == Rule::kHalfOpen)
            require(finite && v >= lo && v < hi, {path}, range + ")" + got);
          if (r.kind == Rule::kUnit)
            require(finite && v > 0 && v <= 1, {path}, "must be in (0, 1]" + got);
        }
      },
      ref);
}

void min_lr_at_most_lr(const std::string& section, double lr, double min_lr) {
  require(lr == 0.0 || min_lr <= lr, {section + ".min_lr", section + ".lr"},
          "must be <= " + section + ".lr (" + shortest_number(lr) + "), got " +
              shortest_number(min_lr));
}

}  // namespace

// Every key's own rule (the schema table), then what involves several keys.
void validate(const Config& c) {
  for (const auto& section : schema()) {
    for (const auto& key : section.keys)
      check_rule(std::string(section.name) + "." + key.name, key.rule, ref_of(key, c));
  }
  validate_model_and_mask(c);
  const auto& l = c.loss;
  require(std::isfinite(l.max_logit_scale) && l.max_logit_scale >= 1.0 / l.temperature,
          {"loss.max_logit_scale", "loss.temperature"},
          "must be >= 1/loss.temperature = " + shortest_number(1.0 / l.temperature) +
              " (the clamp would move the initial scale), got " +
              shortest_number(l.max_logit_scale));
  const auto& d = c.data;
  require(d.dataset == "synthetic" || !d.path.empty(), {"data.path", "data.dataset"},
          "required with data.dataset " + d.dataset +
              (d.dataset == "imagefolder"  ? " (the folder holding train/ and val/)"
               : d.dataset == "webdataset" ? " (the training shards: a pattern or a list file)"
                                           : " (the folder holding the binary batches)"));
  // The kNN monitor may first open them an epoch into a resumed run; the apps that always
  // evaluate open them at set-up, where data::make_dataset names data.val_path.
  require(d.dataset != "webdataset" || c.eval.knn_every == 0 || !d.val_path.empty(),
          {"data.val_path", "data.dataset", "eval.knn_every"},
          "required with data.dataset webdataset and eval.knn_every > 0: the held-out shards the "
          "kNN monitor reads (give the training shards again if there are none)");
  require(d.read == "index" || d.dataset == "webdataset", {"data.read", "data.dataset"},
          "stream reads WebDataset shards only, got data.dataset " + d.dataset);
  require(d.blur == 0 || d.photometric == "none" || d.photometric == "colour",
          {"data.blur", "data.photometric"},
          "must be 0 with data.photometric " + d.photometric +
              ", which blurs on its own (data.blur is for none or colour)");
  require(d.crop_scale_min <= d.crop_scale_max, {"data.crop_scale_min", "data.crop_scale_max"},
          "must be <= data.crop_scale_max (" + shortest_number(d.crop_scale_max) + "), got " +
              shortest_number(d.crop_scale_min));
  require(d.crop_ratio_min <= d.crop_ratio_max, {"data.crop_ratio_min", "data.crop_ratio_max"},
          "must be <= data.crop_ratio_max (" + shortest_number(d.crop_ratio_max) + "), got " +
              shortest_number(d.crop_ratio_min));
  min_lr_at_most_lr("optim", c.optim.lr, c.optim.min_lr);
  min_lr_at_most_lr("linprobe", c.linprobe.lr, c.linprobe.min_lr);
  min_lr_at_most_lr("finetune", c.finetune.lr, c.finetune.min_lr);
  const auto& t = c.train;
  require(!t.output_dir.empty(), {"train.output_dir"}, "must not be empty");
  const bool cuda_n = t.device.rfind("cuda:", 0) == 0 && t.device.size() > 5 &&
                      t.device.find_first_not_of("0123456789", 5) == std::string::npos;
  if (!cuda_n) one_of("train.device", t.device, {"auto", "cpu", "cuda", "cuda:N"});
  const auto& f = c.finetune;
  if (f.auto_augment != "none") {
    try {
      parse_rand_augment_spec(f.auto_augment);
    } catch (const std::invalid_argument& e) {
      require(
          false, {"finetune.auto_augment"},
          std::string(e.what()) + " (a RandAugment spec such as rand-m9-mstd0.5-inc1, or none)");
    }
  }
}

Config parse_config(const std::string& yaml_text, const std::vector<std::string>& overrides,
                    const std::string& source) {
  Config config;
  Origins origins;
  YAML::Node root;
  try {
    // A stray `---` would otherwise drop everything after it without a word.
    const auto documents = yaml_documents(yaml_text);
    if (documents.size() > 1)
      throw ConfigError(at_line(source, documents[1].line + 1) + "holds " +
                        std::to_string(documents.size()) +
                        " YAML documents (separated by ---); a config is one");
    if (!documents.empty()) root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    std::string where = source;
    if (e.mark.line >= 0)
      where += (where.empty() ? "line " : ":") + std::to_string(e.mark.line + 1) +
               (where.empty() ? ", column " : ":") + std::to_string(e.mark.column + 1);
    throw ConfigError(where + (where.empty() ? "" : ": ") + "YAML syntax error: " + e.msg);
  }
  apply_document(config, root, source, origins);
  for (const auto& text : overrides) apply_override(config, text, origins);
  try {
    validate(config);
  } catch (const Invalid& e) {
    // The first involved key an override set, else the line of the first one the text set
    // (data.path may be unset while the data.dataset that requires it is on line 12).
    int line = 0;
    for (const auto& key : e.keys) {
      const auto it = origins.find(key);
      if (it == origins.end()) continue;
      if (!it->second.override_.empty())
        throw ConfigError("override '" + it->second.override_ + "': " + e.what());
      if (line == 0) line = it->second.line;
    }
    throw ConfigError(at_line(source, line) + e.what());
  }
  return config;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  // Checked before opening: a folder reads as an empty stream (an all-default run), and a FIFO
  // or device would block the open or never end.
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw ConfigError(path + ": cannot open the config file");
  if (S_ISDIR(st.st_mode)) throw ConfigError(path + ": is a folder, not a config file");
  if (!S_ISREG(st.st_mode)) throw ConfigError(path + ": is not a regular file");
  if (st.st_size > kMaxConfigBytes)
    throw ConfigError(path + ": " + std::to_string(st.st_size) +
                      " bytes is not a config file (a config is a few KB; the limit is " +
                      std::to_string(kMaxConfigBytes) + " bytes)");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot open the config file");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw ConfigError(path + ": cannot read the config file");
  // A file without keys (empty, comments only) is a mistake: the defaults are ViT-B/16, synthetic.
  bool empty = true;
  try {
    empty = YAML::Load(text.str()).IsNull();
  } catch (const YAML::Exception&) {
    empty = false;  // parse_config reports the syntax error with its line
  }
  if (empty)
    throw ConfigError(path + ": the config file is empty (no keys); start from one in configs/");
  return parse_config(text.str(), overrides, path);
}

DerivedConfig derive(const Config& config, int64_t world_size) {
  if (world_size < 1)
    throw ConfigError("world size must be >= 1, got " + std::to_string(world_size));
  validate(config);
  const VitSizes s = resolve_sizes(config.model);
  DerivedConfig d{s.patch_size, s.embed_dim, s.depth, s.num_heads};
  const int64_t grid = config.model.img_size / s.patch_size;
  d.num_patches = grid * grid;
  d.tokens_per_group = kept_token_count(d.num_patches, config.mask.ratio) / 2;
  // batch_size · accum_iter is at most 2^40 (validated); the world size is what could overflow.
  if (__builtin_mul_overflow(config.train.batch_size * config.optim.accum_iter, world_size,
                             &d.effective_batch))
    throw ConfigError("train.batch_size " + std::to_string(config.train.batch_size) +
                      " x optim.accum_iter " + std::to_string(config.optim.accum_iter) + " x " +
                      std::to_string(world_size) + " processes overflows a 64-bit batch size");
  d.lr = absolute_lr(config.optim.lr, config.optim.blr, d.effective_batch);
  return d;
}

double absolute_lr(double lr, double blr, int64_t effective_batch) {
  return lr > 0.0 ? lr : blr * static_cast<double>(effective_batch) / 256.0;
}

std::string to_yaml(const Config& config) {
  std::string out;
  for (const auto& section : schema()) {
    out += std::string(section.name) + ":\n";
    for (const auto& key : section.keys)
      out += "  " + std::string(key.name) + ": " + format_value(ref_of(key, config)) + "\n";
  }
  return out;
}

std::string to_yaml_with_derived(const Config& config, const DerivedConfig& derived) {
  std::ostringstream out;
  out << to_yaml(config) << "# derived:\n"
      << "#   effective_batch: " << derived.effective_batch
      << "  # train.batch_size · optim.accum_iter · processes\n"
      << "#   lr: " << yaml_double(derived.lr)
      << (config.optim.lr > 0.0 ? "  # optim.lr\n" : "  # optim.blr · effective_batch / 256\n")
      << "#   num_patches: " << derived.num_patches << "\n"
      << "#   tokens_per_group: " << derived.tokens_per_group << "  # floor(N·(1−r)/2)\n"
      << "#   patch_size: " << derived.patch_size << "\n"
      << "#   embed_dim: " << derived.embed_dim << "\n"
      << "#   depth: " << derived.depth << "\n"
      << "#   num_heads: " << derived.num_heads << "\n";
  return out.str();
}

bool operator==(const Config& a, const Config& b) { return config_difference(a, b).empty(); }
bool operator!=(const Config& a, const Config& b) { return !(a == b); }

std::vector<std::string> config_keys() {
  std::vector<std::string> keys;
  for (const auto& section : schema())
    for (const auto& key : section.keys) keys.push_back(std::string(section.name) + "." + key.name);
  return keys;
}

std::vector<ConfigChange> config_changes(const Config& a, const Config& b) {
  std::vector<ConfigChange> changes;
  for (const auto& section : schema())
    for (const auto& key : section.keys) {
      const Ref ra = ref_of(key, a), rb = ref_of(key, b);
      if (!same_value(ra, rb))
        changes.push_back(
            {std::string(section.name) + "." + key.name, format_value(ra), format_value(rb)});
    }
  return changes;
}

std::string config_difference(const Config& a, const Config& b) {
  std::string text;
  for (const auto& c : config_changes(a, b))
    text += (text.empty() ? "" : "; ") + c.key + ": " + c.a + " vs " + c.b;
  return text;
}

}  // namespace ocl::io
