// Run configuration: one YAML file mapped onto typed structs, with `--set key.path=value`
// overrides, validation that names the key path and the allowed range, and derived values
// (effective batch, absolute lr, tokens per group) computed in one place.
//
//   auto cfg = ocl::io::load_config("configs/vitb16.yaml", {"optim.blr=1e-4", "train.epochs=10"});
//   std::cout << ocl::io::to_yaml(cfg);              // the resolved config, loadable again
//
// Every key has a default (the struct initialisers below), so a config file names only what it
// changes. Unknown keys, wrong types and out-of-range values throw ConfigError, whose message
// starts with the key path ("optim.blr: must be > 0, got -1"); from parse_config/load_config it
// is led by where the value came from: "configs/x.yaml:7: optim.blr: …" (file and line) or
// "override 'optim.blr=-1': optim.blr: …".
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace ocl::io {

/// A bad config: the message names the key path (and the file when there is one).
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ModelConfig {
  /// A ViT preset (nn::vit_preset names: vit_tiny_patch16 … vit_huge_patch14, vit_s16 …) or
  /// "custom" (then patch_size, embed_dim, depth, num_heads are required).
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
  /// none (the paper) | patch: every p×p patch of every channel is standardised over its own
  /// pixels before the patch embedding (nn::InputNorm), which takes away the flat colour a patch
  /// shares with its image: the option for data whose per-image colour is a shortcut
  /// (docs/shortcuts.md). Part of the model: the evaluation apps need the same value, and the
  /// weights file records it (a mismatch is refused when loading). Needs patch_size >= 2.
  std::string input_norm = "none";
  /// > 0, finite, in the units of the model's input (pixels on [0, 1] minus ImageNet's mean,
  /// over its std: one grey level is ~0.017): a patch whose variance is small against it (a
  /// smooth gradient, noise) stays faint instead of being scaled to unit variance.
  double input_norm_eps = 0.25;
  /// ocl::ops' fused operations in the encoder (residual add + LayerNorm, linear + GELU with a
  /// fused backward): their CUDA kernels on a GPU where the build has them, the same arithmetic
  /// as ATen composites elsewhere. Off until a GPU measurement shows it pays (docs/performance.md).
  bool fused = false;
};

struct MaskConfig {
  double ratio = 0.3;  // [0, 1); the model also checks that ≥ 2 tokens stay
  /// Where the two token groups take their patches from: shared (the paper: one image) |
  /// independent (two copies of the crop, each with its own draw of data.photometric; same
  /// geometry, so positions and disjointness are unchanged; one more patch embedding).
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
  /// imagefolder: the root holding train/ and val/ (ImageNet layout); packed: the folder
  /// ocl_pack wrote (train/ and val/ packs); webdataset: the training shards, a brace pattern
  /// (train-{000000..001023}.tar) or a file listing them (data/webdataset.h); cifar: the folder
  /// holding the binary batches. Unused (may be empty) for synthetic.
  std::string path;
  /// webdataset: the held-out shards (what the kNN monitor, fine-tuning's evaluation and the
  /// probe read), as data.path; required with webdataset, unused otherwise.
  std::string val_path;
  std::string augment = "rrc_flip";  // rrc_flip | none (none: Resize + CenterCrop)
  double crop_scale_min = 0.2;       // (0, crop_scale_max]
  double crop_scale_max = 1.0;       // (crop_scale_min, 1]
  double crop_ratio_min = 0.75;      // (0, crop_ratio_max]
  double crop_ratio_max = 4.0 / 3.0;
  std::string interpolation = "bicubic";  // bicubic | bilinear | area | nearest
  bool hflip = true;                      // with rrc_flip
  /// Pre-training's colour augmentation after the crop (data/photometric.h): none (the paper) |
  /// byol (BYOL / MoCo v3: colour jitter, grayscale, blur, solarisation, the blur scaled to
  /// model.img_size; with mask.group_views independent the two copies get BYOL's two views) |
  /// simclr (SimCLR's colour strength 1) | colour (jitter and grayscale only).
  std::string photometric = "none";
  /// Pre-training: an illumination gradient drawn for each copy of the crop, before
  /// data.photometric (data::illumination_gradient): each channel gains a linear ramp in a random
  /// direction of amplitude U[-v, v] levels; 0 = off, [0, 255].
  double illumination = 0;
  /// Pre-training: Gaussian pixel noise for each copy of the crop, after data.photometric
  /// (data::add_gaussian_noise): σ drawn U[0, v] levels per copy; 0 = off, [0, 255].
  double noise = 0;
  /// Pre-training: a Gaussian blur for each copy of the crop, with data.photometric none or
  /// colour (byol and simclr blur on their own): σ drawn U[min(0.1, v), v] pixels of the crop per
  /// copy, a kernel of 2·⌈3v⌉ + 1 taps; 0 = off, [0, 16].
  double blur = 0;
  /// What of a JPEG RandomResizedCrop decodes: reduced (the crop's region, at 1/2, 1/4 or 1/8
  /// scale when the crop is 2×, 4×, 8× the image size) | region (the crop's region at full
  /// scale: the same pixels as full) | full (the whole image). See data::RegionDecode.
  std::string decode = "reduced";
  int64_t workers = 4;   // [1, 1024] decode/augment threads
  int64_t prefetch = 4;  // ≥ 1 batches queued ahead
  /// Share of unreadable images tolerated before the run stops, [0, 1].
  double max_bad_fraction = 0.01;
  /// ≥ 1: a JPEG or PNG larger than this (height × width) is refused from its header, a bad
  /// sample (data::set_max_image_pixels; the default is Pillow's decompression-bomb limit).
  int64_t max_image_pixels = 178956970;
  /// Synthetic data set: images in the train and held-out splits, and classes (≥ 10).
  int64_t synthetic_train_size = 50000;
  int64_t synthetic_val_size = 10000;
  int64_t synthetic_classes = 10;
  /// Synthetic data set colours: palette (shared palettes: shape is what identifies an image) |
  /// random (per-image colours: colour identifies an image, the shortcut OCL alone falls for).
  std::string synthetic_colours = "palette";
  /// Synthetic per-image nuisances (data/synthetic.h), each off at 0: pixel noise of σ ~ U[0, v]
  /// levels ([0, 128]); a lighting gradient of amplitude U[-v, v] levels per channel ([0, 255]);
  /// v clutter strokes across the image ([0, 16]).
  double synthetic_noise = 0;
  double synthetic_gradient = 0;
  int64_t synthetic_strokes = 0;
  /// Folder of the ImageFolder file-list cache (.ocl-filelist-<split>.txt); empty = data.path
  /// when it is writable, else ocl_pretrain uses its output folder.
  std::string cache_dir;
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
  /// auto | on | off: the AdamW step of pre-training and fine-tuning through at::_fused_adamw_
  /// (one kernel per group; CUDA with LibTorch ≥ 2.0, CPU ≥ 2.6). auto = fused where available;
  /// on = error where not. The optimiser state and checkpoints are the same either way.
  std::string fused = "auto";
};

struct TrainConfig {
  int64_t epochs = 800;     // ≥ 1
  int64_t batch_size = 64;  // ≥ 2 per process and micro-batch
  /// Cap on the optimiser steps of every training epoch (0 = the whole data set): pre-training,
  /// fine-tuning and the linear probe (both its paths) alike. Short runs and tests.
  int64_t steps_per_epoch = 0;
  uint64_t seed = 0;
  std::string output_dir = "runs/default";
  int64_t save_every = 20;         // ≥ 1 epochs between checkpoints (and always at the end)
  int64_t keep_last = 2;           // ≥ 1 checkpoints kept
  std::string device = "auto";     // auto | cpu | cuda | cuda:N
  std::string precision = "auto";  // auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
  /// TF32 tensor cores for fp32 matmuls and convolutions on CUDA (what autocast leaves in fp32:
  /// the loss, LayerNorm, and every matmul under precision fp32). No effect on CPU.
  bool tf32 = true;
  int64_t threads = 0;                // ≥ 0 intra-op threads, 0 = one per core
  std::string on_nonfinite = "stop";  // stop | skip
  int64_t max_nonfinite_skips = 10;   // ≥ 0 with skip
  /// step: each step's figures are read on the host before its update (one wait a step);
  /// deferred: the non-finite check is made on the device (the fused AdamW skips the update) and
  /// the figures are read while the next step runs, so that no step waits for the host.
  std::string host_sync = "step";
};

/// Multi-process training (torchrun, srun, mpirun or ocl_pretrain --nproc-per-node).
struct DistConfig {
  std::string backend = "auto";  // auto (NCCL on CUDA, Gloo on CPU) | nccl | gloo
  /// > 0: rendezvous and collective timeout; a dead or hung rank ends the others within it.
  double timeout_s = 600;
  double bucket_mb = 25;       // > 0: gradient all-reduce bucket size (DDP's bucket_cap_mb)
  double first_bucket_mb = 1;  // > 0: the first bucket, small so communication starts early
  /// Start each bucket's all-reduce during backward (true), or all of them after backward
  /// (false: for CPU processes that have no core to spare for communication; see
  /// docs/pretraining.md).
  bool overlap = true;
  /// ≥ 0: every N optimiser steps (0 = never) the ranks compare checksums of their parameters
  /// and stop with an error naming the first parameter that differs.
  int64_t verify_every = 0;
};

struct EvalConfig {
  int64_t knn_every = 0;  // ≥ 0 epochs between kNN monitor runs (and one before training), 0 = off
  int64_t knn_k = 20;     // ≥ 1
  double knn_t = 0.07;    // > 0
  int64_t knn_train_size = 10000;  // ≥ 1: train images used as the kNN memory bank (a subset)
  int64_t knn_val_size = 2000;     // ≥ 1: held-out images scored
  /// The shortcut alarm (pre-training with the kNN monitor on): a warning when an epoch's mean
  /// contrastive accuracy is ≥ shortcut_accuracy while kNN top-1 has gained less than
  /// shortcut_knn_gain points since the first monitor run or over the last shortcut_window
  /// monitor runs (engine::shortcut_warning).
  bool shortcut_alarm = true;
  double shortcut_accuracy = 0.9;  // (0, 1]
  double shortcut_knn_gain = 2.0;  // ≥ 0, percentage points
  int64_t shortcut_window = 2;     // ≥ 1 monitor runs
};

/// The linear probe (ocl_linprobe; MAE's main_linprobe, PAPER.md "Linear probing"): a
/// BatchNorm + Linear head on the frozen encoder's CLS feature, trained with LARS. Data, model,
/// device, seed and logging come from the other sections.
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
  /// Extract the features once (train split through the eval transform, no augmentation) and
  /// train the head on them in memory: much faster, but not MAE's protocol.
  bool cached_features = false;
  int64_t save_every = 10;  // ≥ 1 epochs between checkpoints (and always at the end)
  int64_t keep_last = 2;    // ≥ 1 checkpoints kept
};

/// Full fine-tuning (ocl_finetune; MAE's main_finetune, PAPER.md "Fine-tuning"): the whole ViT
/// with a new head, layer-wise lr decay, AdamW, drop path, RandAugment, random erasing, mixup /
/// cutmix with label smoothing. Defaults are MAE's ViT-B recipe; data, model sizes, device,
/// seed and logging come from the other sections.
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
  /// TensorBoard event file in the output folder (rank 0), beside metrics.jsonl.
  bool tensorboard = true;
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

/// Parses YAML text onto the defaults, applies `overrides` ("a.b=v", v parsed as YAML: so
/// "optim.blr=1e-4", "data.augment=none", "model.freeze_patch_embed=false",
/// "optim.betas=[0.9, 0.999]"), in order, then validates. `source` leads messages about the text
/// (a file path, or "<string>"; "" for none); an error caused by an override names the override.
/// An empty text is a valid config of defaults.
Config parse_config(const std::string& yaml_text, const std::vector<std::string>& overrides = {},
                    const std::string& source = "<string>");
/// Reads `path` and calls parse_config; a missing or unreadable file is a ConfigError.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});
/// Throws ConfigError for the first invalid value (key path, value, allowed range).
void validate(const Config& config);
/// Derived values for `world_size` processes; validates first (ConfigError).
DerivedConfig derive(const Config& config, int64_t world_size = 1);
/// The peak learning rate of a recipe section (optim, linprobe, finetune): `lr` when it is set
/// (> 0), else MAE's scaling rule blr · effective_batch / 256.
double absolute_lr(double lr, double blr, int64_t effective_batch);
/// The whole config as YAML, every key, in the order above: parse_config(to_yaml(c)) == c.
std::string to_yaml(const Config& config);
/// to_yaml plus a commented block of derived values (for --print-config and the run folder).
std::string to_yaml_with_derived(const Config& config, const DerivedConfig& derived);

/// Field-wise equality (doubles compared with ==): tests, and the check that an output folder
/// holds this run's config and not another's.
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
/// config_changes as one line ("optim.blr: 0.00015 vs 1.0e-04; log.level: info vs warn");
/// empty when a == b.
std::string config_difference(const Config& a, const Config& b);

}  // namespace ocl::io
