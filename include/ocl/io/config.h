// Run configuration: one YAML file mapped onto typed structs, `--set key.path=value` overrides,
// and derived values (effective batch, absolute lr, tokens per group) computed in one place.
// Every key has a default (the initialisers below), so a file names only what it changes. A bad
// value throws ConfigError led by where it came from and its key path:
// "configs/x.yaml:7: optim.blr: must be > 0, got -1", "override 'optim.blr=-1': optim.blr: …".
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace ocl::io {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ModelConfig {
  /// A ViT preset (io::vit_preset_names) or "custom" (then the four sizes below are required).
  std::string arch = "vit_base_patch16";
  int64_t img_size = 224;
  /// 0 = the preset's value; with "custom" they must be set. embed_dim % num_heads == 0,
  /// embed_dim % 4 == 0, img_size % patch_size == 0.
  int64_t patch_size = 0;
  int64_t embed_dim = 0;
  int64_t depth = 0;
  int64_t num_heads = 0;
  double mlp_ratio = 4.0;          // > 0
  double drop_path = 0.0;          // [0, 1)
  bool freeze_patch_embed = true;  // paper §2.1
  /// none (the paper) | patch: each p×p patch of each channel standardised before the embedding
  /// (nn::InputNorm; docs/shortcuts.md), recorded in the weights file. patch_size >= 2.
  std::string input_norm = "none";
  /// > 0, in standardised pixels (one grey level is ~0.017): a patch of small variance (a smooth
  /// gradient, noise) stays faint instead of being scaled to unit variance.
  double input_norm_eps = 0.25;
  /// ocl::ops' fused encoder operations (residual add + LayerNorm, linear + GELU); off until a
  /// GPU measurement shows it pays (docs/performance.md).
  bool fused = false;
  /// auto | fp32: the residual stream between blocks in the patch embedding's dtype (bf16 under
  /// bf16 precision; parameters and AdamW's state stay fp32) or in float32 as timm keeps it
  /// under autocast (nn::VisionTransformerOptions::float32_residual).
  std::string residual = "auto";
  /// auto (SDPA chooses) | flash | efficient | cudnn | math: the one kernel family SDPA may use
  /// in this process (LibTorch >= 2.6; engine::start_process).
  std::string attention = "auto";
};

struct MaskConfig {
  double ratio = 0.3;  // [0, 1); the model also checks that ≥ 2 tokens stay
  /// shared (the paper: both token groups from one image) | independent (two copies of the crop,
  /// each with its own draw of data.photometric; same geometry, one more patch embedding).
  std::string group_views = "shared";
};

struct LossConfig {
  double kappa = 64.0;        // > 0, finite
  double temperature = 0.07;  // > 0: initial (or fixed) T
  bool learnable_temperature = true;
  double max_logit_scale = 100.0;    // ≥ 1/temperature
  std::string negatives = "global";  // global | local (same thing in a single process)
};

struct DataConfig {
  /// synthetic | imagefolder | packed | webdataset | cifar10 | cifar100
  std::string dataset = "synthetic";
  /// imagefolder: the root of train/ and val/; packed: ocl_pack's folder; webdataset: the training
  /// shards (train-{000000..001023}.tar or a list file); cifar: the binary batches' folder.
  std::string path;
  /// webdataset: the held-out shards, as data.path, for whatever evaluates (the kNN monitor,
  /// fine-tuning, the probe); required with eval.knn_every > 0, else where the set is opened.
  std::string val_path;
  std::string augment = "rrc_flip";  // rrc_flip | none (none: Resize + CenterCrop)
  double crop_scale_min = 0.2;       // (0, crop_scale_max]
  double crop_scale_max = 1.0;       // (crop_scale_min, 1]
  double crop_ratio_min = 0.75;      // (0, crop_ratio_max]
  double crop_ratio_max = 4.0 / 3.0;
  std::string interpolation = "bicubic";  // bicubic | bilinear | area | nearest
  bool hflip = true;                      // with rrc_flip
  /// Pre-training's colour augmentation after the crop (data/photometric.h): none (the paper) |
  /// byol (BYOL / MoCo v3's two views with mask.group_views independent) | simclr (colour
  /// strength 1) | colour (jitter and grayscale only).
  std::string photometric = "none";
  /// Pre-training, per copy of the crop, 0 = off: a lighting ramp of U[-v, v] levels per channel
  /// before data.photometric ([0, 255]); noise of σ ~ U[0, v] levels after it ([0, 255]); a blur
  /// of σ ~ U[min(0.1, v), v] pixels with photometric none or colour ([0, 16]).
  double illumination = 0;
  double noise = 0;
  double blur = 0;
  /// What of a JPEG RandomResizedCrop decodes (data::RegionDecode): reduced (the crop's region
  /// at 1/2, 1/4 or 1/8 scale when that is enough) | region (full scale) | full (whole image).
  std::string decode = "reduced";
  int64_t workers = 4;             // [1, 1024] decode/augment threads
  int64_t prefetch = 4;            // ≥ 1 batches queued ahead
  double max_bad_fraction = 0.01;  // [0, 1] unreadable images tolerated before the run stops
  /// ≥ 1: a JPEG or PNG of more pixels is a bad sample (Pillow's decompression-bomb limit).
  int64_t max_image_pixels = 178956970;
  /// Synthetic data set: images in the train and held-out splits, and classes (≥ 10).
  int64_t synthetic_train_size = 50000;
  int64_t synthetic_val_size = 10000;
  int64_t synthetic_classes = 10;
  /// palette (shape identifies an image) | random (per-image colours: the shortcut OCL falls for).
  std::string synthetic_colours = "palette";
  /// Per-image nuisances (data/synthetic.h), each off at 0: noise of σ ~ U[0, v] levels
  /// ([0, 128]), a lighting gradient of U[-v, v] levels per channel ([0, 255]), v strokes (≤ 16).
  double synthetic_noise = 0;
  double synthetic_gradient = 0;
  int64_t synthetic_strokes = 0;
  /// Folder of the ImageFolder file-list cache; empty = data.path (or the output folder).
  std::string cache_dir;
  /// webdataset: index (each shard read in place through its cached index) | stream (each shard
  /// read front to back, data/streaming.h; http(s) and pipe: shards are always streamed).
  std::string read = "index";
  int64_t shuffle_buffer = 1000;  // [1, 1000000] streamed: samples each data worker shuffles in
  /// ≥ 0 streamed: the epoch's samples (all ranks); 0 = from the sizes.json beside the shards.
  int64_t samples_per_epoch = 0;
  int64_t stream_retries = 3;    // [0, 100] new tries of a failed shard before it counts as bad
  double stream_timeout_s = 60;  // > 0: a connection or a stalled shard stream gives up after it
};

struct OptimConfig {
  std::string name = "adamw";  // adamw
  double blr = 1.5e-4;         // > 0: lr = blr · effective_batch / 256
  double lr = 0.0;             // ≥ 0: absolute lr; > 0 overrides blr
  double min_lr = 0.0;         // ≥ 0, ≤ lr
  double weight_decay = 0.05;  // ≥ 0
  double beta1 = 0.9;          // [0, 1)
  double beta2 = 0.95;         // [0, 1)
  // Input also accepts `betas: [beta1, beta2]` (PyTorch's spelling); to_yaml writes beta1, beta2.
  double eps = 1e-8;          // > 0
  double warmup_epochs = 40;  // ≥ 0, may be fractional
  int64_t accum_iter = 1;     // ≥ 1 micro-batches per optimiser step
  double clip_grad = 0.0;     // ≥ 0, 0 = no clipping (norm is still logged)
  /// auto | on | off: the AdamW step through at::_fused_adamw_ (optim::resolve_fused_adamw);
  /// the optimiser state and checkpoints are the same either way.
  std::string fused = "auto";
};

struct TrainConfig {
  int64_t epochs = 800;     // ≥ 1
  int64_t batch_size = 64;  // ≥ 2 per process and micro-batch
  /// Cap on the optimiser steps of every training epoch of every app (0 = the whole data set).
  int64_t steps_per_epoch = 0;
  uint64_t seed = 0;
  std::string output_dir = "runs/default";
  int64_t save_every = 20;         // ≥ 1 epochs between checkpoints (and always at the end)
  int64_t keep_last = 2;           // ≥ 1 checkpoints kept
  std::string device = "auto";     // auto | cpu | cuda | cuda:N
  std::string precision = "auto";  // auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
  /// TF32 tensor cores for what stays fp32 on CUDA (the loss, LayerNorm, matmuls under fp32).
  bool tf32 = true;
  int64_t threads = 0;                // ≥ 0 intra-op threads, 0 = one per core
  std::string on_nonfinite = "stop";  // stop | skip
  int64_t max_nonfinite_skips = 10;   // ≥ 0 with skip
  /// step: each step's figures read on the host before its update (one wait a step) | deferred:
  /// the non-finite check on the device (optim::DeviceSkip), figures read during the next step.
  std::string host_sync = "step";
  /// off | on: the pre-training step captured as one CUDA graph and replayed (needs host_sync
  /// deferred and a CUDA device) | staged: the step the graph would capture, run uncaptured
  /// every step (what a captured run is checked against). Off until a GPU measures it.
  std::string cuda_graph = "off";
};

/// Multi-process training (torchrun, srun, mpirun or ocl_pretrain --nproc-per-node).
struct DistConfig {
  std::string backend = "auto";  // auto (NCCL on CUDA, Gloo on CPU) | nccl | gloo
  /// > 0: rendezvous and collective timeout; a dead or hung rank ends the others within it.
  double timeout_s = 600;
  double bucket_mb = 25;       // > 0: gradient all-reduce bucket size (DDP's bucket_cap_mb)
  double first_bucket_mb = 1;  // > 0: the first bucket, small so communication starts early
  /// Each bucket's all-reduce during backward (true), or all after it (false: CPU processes with
  /// no core to spare for communication; docs/pretraining.md).
  bool overlap = true;
  /// ≥ 0: every N steps (0 = never) the ranks compare parameter checksums and stop on a difference.
  int64_t verify_every = 0;
};

struct EvalConfig {
  int64_t knn_every = 0;  // ≥ 0 epochs between kNN monitor runs (and one before training), 0 = off
  int64_t knn_k = 20;     // ≥ 1
  double knn_t = 0.07;    // > 0
  int64_t knn_train_size = 10000;  // ≥ 1: train images used as the kNN memory bank (a subset)
  int64_t knn_val_size = 2000;     // ≥ 1: held-out images scored
  /// engine::shortcut_warning: contrastive accuracy ≥ shortcut_accuracy while kNN top-1 gained
  /// < shortcut_knn_gain points since the first monitor run or the last shortcut_window runs.
  bool shortcut_alarm = true;
  double shortcut_accuracy = 0.9;  // (0, 1]
  double shortcut_knn_gain = 2.0;  // ≥ 0, percentage points
  int64_t shortcut_window = 2;     // ≥ 1 monitor runs
};

/// The linear probe (ocl_linprobe; MAE's main_linprobe, docs/method.md "Linear probing"): a
/// BatchNorm + Linear head on the frozen encoder's CLS feature, trained with LARS.
struct LinprobeConfig {
  int64_t epochs = 90;        // ≥ 1
  int64_t batch_size = 512;   // ≥ 2 per process and micro-batch
  int64_t accum_iter = 1;     // ≥ 1 micro-batches per LARS step
  double blr = 0.1;           // > 0: lr = blr · (batch_size · accum_iter · processes) / 256
  double lr = 0.0;            // ≥ 0: absolute lr; > 0 overrides blr
  double min_lr = 0.0;        // ≥ 0, ≤ lr
  double warmup_epochs = 10;  // ≥ 0, may be fractional
  double weight_decay = 0.0;  // ≥ 0, on the Linear weight only (MAE's probe uses 0)
  /// Output folder; empty = <train.output_dir>/linprobe.
  std::string output_dir;
  /// Features extracted once (no augmentation), the head trained in memory: faster, not MAE's.
  bool cached_features = false;
  int64_t save_every = 10;  // ≥ 1 epochs between checkpoints (and always at the end)
  int64_t keep_last = 2;    // ≥ 1 checkpoints kept
};

/// Full fine-tuning (ocl_finetune; MAE's main_finetune, docs/method.md "Fine-tuning"), with
/// MAE's ViT-B recipe as defaults.
struct FinetuneConfig {
  int64_t epochs = 100;        // ≥ 1
  int64_t batch_size = 32;     // ≥ 2 per process and micro-batch (even with mixup / cutmix)
  int64_t accum_iter = 1;      // ≥ 1 micro-batches per AdamW step
  double blr = 5e-4;           // > 0: lr = blr · (batch_size · accum_iter · processes) / 256
  double lr = 0.0;             // ≥ 0: absolute lr; > 0 overrides blr
  double min_lr = 1e-6;        // ≥ 0, ≤ lr
  double warmup_epochs = 5;    // ≥ 0, may be fractional
  double weight_decay = 0.05;  // ≥ 0; never on 1-D parameters, cls_token or pos_embed
  double layer_decay = 0.65;   // (0, 1]: lr scale decay^(depth + 1 − layer id)
  double beta1 = 0.9;          // [0, 1)
  double beta2 = 0.999;        // [0, 1) (MAE's fine-tuning; the paper's Table 10 says 0.95)
  double clip_grad = 0.0;      // ≥ 0, 0 = no clipping
  double drop_path = 0.1;      // [0, 1): stochastic depth rate of the last block
  std::string global_pool = "avg";  // avg (mean of patch tokens + fc_norm) | token (CLS + norm)
  double crop_scale_min = 0.08;     // (0, 1]: RandomResizedCrop's smallest area (timm's 0.08)
  /// RandAugment in timm's spelling (rand-m9-mstd0.5-inc1), or "none".
  std::string auto_augment = "rand-m9-mstd0.5-inc1";
  double reprob = 0.25;             // [0, 1] random erasing probability (per image)
  double mixup = 0.8;               // ≥ 0 mixup α (0 = off)
  double cutmix = 1.0;              // ≥ 0 cutmix α (0 = off)
  double mixup_prob = 1.0;          // [0, 1] probability of mixing a batch at all
  double mixup_switch_prob = 0.5;   // [0, 1] cutmix instead of mixup when both are on
  double smoothing = 0.1;           // [0, 1) label smoothing
  bool model_ema = false;           // keep an EMA of the weights and evaluate it too
  double model_ema_decay = 0.9999;  // [0, 1)
  /// Output folder; empty = <train.output_dir>/finetune.
  std::string output_dir;
  int64_t save_every = 10;  // ≥ 1 epochs between checkpoints (and always at the end)
  int64_t keep_last = 2;    // ≥ 1 checkpoints kept
};

struct LogConfig {
  int64_t every = 20;             // ≥ 1 steps between log lines / metrics records
  std::string level = "info";     // trace | debug | info | warn | error
  std::string progress = "auto";  // auto (status line on a terminal) | bar | lines
  bool tensorboard = true;        // a TensorBoard event file beside metrics.jsonl (rank 0)
};

struct Config {
  ModelConfig model;
  MaskConfig mask;
  LossConfig loss;
  DataConfig data;
  OptimConfig optim;
  TrainConfig train;
  DistConfig dist;
  EvalConfig eval;
  LinprobeConfig linprobe;
  FinetuneConfig finetune;
  LogConfig log;
};

/// Values computed from a config and the number of processes (world size).
struct DerivedConfig {
  int64_t patch_size = 0, embed_dim = 0, depth = 0, num_heads = 0;  // preset resolved
  int64_t num_patches = 0;                                          // (img_size / patch_size)²
  int64_t tokens_per_group = 0;                                     // floor(N(1−r)/2)
  int64_t effective_batch = 0;  // batch_size · accum_iter · world_size
  double lr = 0.0;              // optim.lr if > 0, else blr · effective_batch / 256
};

/// Parses YAML text onto the defaults, applies `overrides` ("a.b=v", v parsed as YAML) in order,
/// then validates. `source` leads messages about the text ("" for none); "" is all defaults.
Config parse_config(const std::string& yaml_text, const std::vector<std::string>& overrides = {},
                    const std::string& source = "<string>");
/// Reads `path` and calls parse_config; a missing, unreadable or empty file is a ConfigError.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});
/// Throws ConfigError for the first invalid value (key path, value, allowed range).
void validate(const Config& config);
/// Derived values for `world_size` processes; validates first (ConfigError).
DerivedConfig derive(const Config& config, int64_t world_size = 1);
/// The peak lr of a recipe section: `lr` when > 0, else MAE's rule blr · effective_batch / 256.
double absolute_lr(double lr, double blr, int64_t effective_batch);
/// The whole config as YAML, every key, in the order above: parse_config(to_yaml(c)) == c.
std::string to_yaml(const Config& config);
/// to_yaml plus a commented block of derived values (for --print-config and the run folder).
std::string to_yaml_with_derived(const Config& config, const DerivedConfig& derived);

/// Field-wise equality (doubles compared with ==).
bool operator==(const Config& a, const Config& b);
bool operator!=(const Config& a, const Config& b);
/// A key whose value differs between two configs, both values as to_yaml writes them.
struct ConfigChange {
  std::string key;  // "optim.blr"
  std::string a, b;
};
/// Every key path of the config ("model.arch", ...), in to_yaml order.
std::vector<std::string> config_keys();
/// Every key path whose values differ, in to_yaml order.
std::vector<ConfigChange> config_changes(const Config& a, const Config& b);
/// config_changes as one line ("optim.blr: 0.00015 vs 1.0e-04; log.level: info vs warn").
std::string config_difference(const Config& a, const Config& b);

}  // namespace ocl::io
