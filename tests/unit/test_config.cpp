// Run configuration: defaults, every section, error messages (key path, value, allowed range or
// values, file and line, override text), overrides, exact round trips, derived values and the
// shipped configs/ files.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <ocl/io/config.h>

using ocl::io::Config;
using ocl::io::ConfigError;
using ocl::io::derive;
using ocl::io::parse_config;

namespace {

// The message of the ConfigError that parse_config throws, or "" when it accepts the text.
std::string config_error_of(const std::string& yaml,
                            const std::vector<std::string>& overrides = {}) {
  try {
    parse_config(yaml, overrides, "");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

#define EXPECT_ERROR(yaml, expected_substring)                                     \
  do {                                                                             \
    const std::string message_ = config_error_of(yaml);                            \
    EXPECT_NE(message_.find(expected_substring), std::string::npos)                \
        << "YAML: " << (yaml) << "\nexpected: " << (expected_substring)            \
        << "\ngot: " << (message_.empty() ? std::string("(accepted)") : message_); \
  } while (0)

std::filesystem::path repo_root() {
  // This file is <root>/tests/unit/test_config.cpp.
  return std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();
}

// A file in a per-process temporary folder, removed with the folder at the end of the test.
class TempFile {
 public:
  TempFile(const std::string& name, const std::string& text)
      : dir_(std::filesystem::temp_directory_path() /
             ("ocl_test_config_" + std::to_string(::getpid()))) {
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / name).string();
    std::ofstream(path_) << text;
  }
  ~TempFile() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::filesystem::path dir_;
  std::string path_;
};

}  // namespace

TEST(Config, DefaultsAreTheHeaderInitialisersAndValid) {
  const Config c = parse_config("");
  EXPECT_EQ(c, Config{});
  EXPECT_EQ(parse_config("# only a comment\n"), Config{});
  EXPECT_EQ(c.model.arch, "vit_base_patch16");
  EXPECT_EQ(c.model.img_size, 224);
  EXPECT_TRUE(c.model.freeze_patch_embed);
  EXPECT_EQ(c.mask.ratio, 0.3);
  EXPECT_EQ(c.loss.kappa, 64.0);
  EXPECT_EQ(c.data.crop_ratio_max, 4.0 / 3.0);
  EXPECT_EQ(c.optim.blr, 1.5e-4);
  EXPECT_EQ(c.train.epochs, 800);
  EXPECT_EQ(c.train.seed, 0u);
  EXPECT_NO_THROW(ocl::io::validate(c));
  // Sections present but empty are defaults too.
  EXPECT_EQ(parse_config("model:\noptim:\n"), Config{});
}

TEST(Config, ParsesEverySection) {
  const Config c = parse_config(R"(
model: {arch: vit_large_patch16, img_size: 192, drop_path: 0.1, mlp_ratio: 4, freeze_patch_embed: false}
mask: {ratio: 0.4}
loss: {kappa: 32, temperature: 0.1, learnable_temperature: false, max_logit_scale: 50, negatives: local}
data:
  dataset: imagefolder
  path: /data/in1k
  augment: none
  crop_scale_min: 0.3
  crop_scale_max: 0.9
  crop_ratio_min: 0.5
  crop_ratio_max: 2
  interpolation: bilinear
  hflip: false
  workers: 6
  prefetch: 3
  max_bad_fraction: 0
  synthetic_train_size: 100
  synthetic_val_size: 50
  synthetic_classes: 20
  cache_dir: /tmp/cache
optim: {name: adamw, blr: 1e-4, lr: 2e-3, min_lr: 1e-6, weight_decay: 0.1, beta1: 0.8,
        beta2: 0.999, eps: 1e-6, warmup_epochs: 2.5, accum_iter: 3, clip_grad: 1.0, fused: off}
train: {epochs: 10, batch_size: 32, steps_per_epoch: 7, seed: 18446744073709551615,
        output_dir: runs/x, save_every: 5, keep_last: 3, device: "cuda:1", precision: bf16,
        tf32: false, threads: 8, on_nonfinite: skip, max_nonfinite_skips: 0}
dist: {backend: gloo, timeout_s: 30, bucket_mb: 50}
eval: {knn_every: 1, knn_k: 10, knn_t: 0.1, knn_train_size: 500, knn_val_size: 100}
log: {every: 5, level: debug, progress: lines}
)");
  EXPECT_EQ(c.model.arch, "vit_large_patch16");
  EXPECT_EQ(c.model.img_size, 192);
  EXPECT_EQ(c.model.drop_path, 0.1);
  EXPECT_FALSE(c.model.freeze_patch_embed);
  EXPECT_EQ(c.mask.ratio, 0.4);
  EXPECT_EQ(c.loss.kappa, 32.0);
  EXPECT_FALSE(c.loss.learnable_temperature);
  EXPECT_EQ(c.loss.negatives, "local");
  EXPECT_EQ(c.data.dataset, "imagefolder");
  EXPECT_EQ(c.data.path, "/data/in1k");
  EXPECT_EQ(c.data.augment, "none");
  EXPECT_EQ(c.data.crop_ratio_max, 2.0);  // an integer is accepted for a double
  EXPECT_EQ(c.data.interpolation, "bilinear");
  EXPECT_FALSE(c.data.hflip);
  EXPECT_EQ(c.data.workers, 6);
  EXPECT_EQ(c.data.synthetic_classes, 20);
  EXPECT_EQ(c.data.cache_dir, "/tmp/cache");
  EXPECT_EQ(c.optim.blr, 1e-4);
  EXPECT_EQ(c.optim.lr, 2e-3);
  EXPECT_EQ(c.optim.beta2, 0.999);
  EXPECT_EQ(c.optim.warmup_epochs, 2.5);
  EXPECT_EQ(c.optim.accum_iter, 3);
  EXPECT_EQ(c.train.seed, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(c.train.device, "cuda:1");
  EXPECT_EQ(c.optim.fused, "off");
  EXPECT_FALSE(c.train.tf32);
  EXPECT_EQ(c.train.on_nonfinite, "skip");
  EXPECT_EQ(c.dist.backend, "gloo");
  EXPECT_EQ(c.dist.bucket_mb, 50.0);
  EXPECT_EQ(c.eval.knn_k, 10);
  EXPECT_EQ(c.log.level, "debug");
  EXPECT_EQ(c.log.progress, "lines");
  // PyTorch's spelling of the betas.
  const Config b = parse_config("optim:\n  betas: [0.85, 0.99]\n");
  EXPECT_EQ(b.optim.beta1, 0.85);
  EXPECT_EQ(b.optim.beta2, 0.99);
}

TEST(Config, UnknownKeysNameThePathAndListTheValidKeys) {
  EXPECT_ERROR("optimizer: {blr: 1}", "optimizer: unknown key (valid: model, mask, loss, data, ");
  EXPECT_ERROR("optim:\n  blrr: 1\n", "optim.blrr: unknown key (valid: name, blr, lr, min_lr, ");
  EXPECT_ERROR("model: {arch: vit_b16, dim: 3}", "model.dim: unknown key (valid: arch, img_size");
  EXPECT_ERROR("optim: {blr: 1e-4, blr: 2e-4}", "optim.blr: appears twice");
  EXPECT_ERROR("optim: {betas: [0.9, 0.9], beta1: 0.9}", "optim.betas: conflicts");
  EXPECT_ERROR("- model\n- optim\n", "expected a map of sections");
}

TEST(Config, WrongTypesNameThePathTheValueAndTheType) {
  EXPECT_ERROR("optim: {blr: fast}", "optim.blr: expected a number, got 'fast'");
  EXPECT_ERROR("optim: {blr: \"1e-4\"}", "optim.blr: expected a number, got the quoted string");
  EXPECT_ERROR("model: {img_size: {a: 1}}", "model.img_size: expected an integer, got a map");
  EXPECT_ERROR("train: {batch_size: 8.5}", "train.batch_size: expected an integer, got '8.5'");
  EXPECT_ERROR("train: {batch_size: [8]}", "train.batch_size: expected an integer, got a list");
  EXPECT_ERROR("train: {seed: -1}", "train.seed: expected a non-negative integer");
  EXPECT_ERROR("train: {seed: 18446744073709551616}", "train.seed: expected a non-negative");
  EXPECT_ERROR("model: {freeze_patch_embed: yes}",
               "model.freeze_patch_embed: expected true or "
               "false, got 'yes'");
  EXPECT_ERROR("data: {path: [a, b]}", "data.path: expected a string, got a list");
  // Bytes of another encoding would not survive config.yaml (found by fuzz/config_fuzz.cpp);
  // UTF-8, multi-byte included, does.
  EXPECT_ERROR("data: {path: \"/data/caf\xe9\"}", "data.path: not UTF-8 text");
  EXPECT_ERROR("data: {path: /data/\xed\xa0\x80}", "data.path: not UTF-8 text");  // a surrogate
  EXPECT_ERROR("data: {path: /data/\xc0\xaf}", "data.path: not UTF-8 text");      // overlong '/'
  {
    const Config c = parse_config("data: {path: \"/data/caf\xc3\xa9/\xf0\x9f\x90\x88\"}");
    EXPECT_EQ(parse_config(ocl::io::to_yaml(c)).data.path, "/data/caf\xc3\xa9/\xf0\x9f\x90\x88");
  }
  EXPECT_ERROR("model: 3", "model: expected a map of keys (arch, img_size");
  EXPECT_ERROR("optim: {betas: [0.9]}",
               "optim.betas: expected a list [beta1, beta2], got a list of 1 item");
  EXPECT_ERROR("optim: {betas: [0.9, 0.9, 0.9]}", "got a list of 3 items");
  EXPECT_ERROR("mask: {ratio: }", "mask.ratio: expected a number, got nothing (null)");
}

TEST(Config, OutOfRangeValuesNameThePathTheValueAndTheRange) {
  EXPECT_ERROR("mask: {ratio: 1.2}", "mask.ratio: must be in [0, 1), got 1.2");
  EXPECT_ERROR("mask: {ratio: -0.1}", "mask.ratio: must be in [0, 1), got -0.1");
  EXPECT_ERROR("optim: {blr: -1}", "optim.blr: must be > 0, got -1");
  EXPECT_ERROR("optim: {blr: 0}", "optim.blr: must be > 0, got 0");
  EXPECT_ERROR("train: {batch_size: 1}", "train.batch_size: must be in [2, 16777216], got 1");
  // Sizes whose products the run computes are bounded: batch_size · accum_iter · processes
  // overflowed int64 (found by fuzz/config_fuzz.cpp), as did (img_size / patch_size)².
  EXPECT_ERROR("train: {batch_size: 810403490757053660}",
               "train.batch_size: must be in [2, 16777216], got 810403490757053660");
  EXPECT_ERROR("optim: {accum_iter: 65537}", "optim.accum_iter: must be in [1, 65536], got 65537");
  EXPECT_ERROR("finetune: {accum_iter: 0}", "finetune.accum_iter: must be in [1, 65536], got 0");
  EXPECT_ERROR("linprobe: {batch_size: 16777217}", "linprobe.batch_size: must be in [2, 16777216]");
  EXPECT_ERROR(
      "model: {img_size: 1099511627776, patch_size: 1, arch: custom, embed_dim: 64, "
      "depth: 1, num_heads: 1}",
      "model.img_size: must be in [1, 65535], got 1099511627776");
  EXPECT_ERROR("data: {workers: 0}", "data.workers: must be in [1, 1024], got 0");
  // Values that used to pass and then fail far from their key (issue 30): a million loader
  // threads ("Resource temporarily unavailable"), 7 GB of blocks, a synthetic set whose labels
  // exhaust memory, a learning rate that is no float32.
  EXPECT_ERROR("data: {workers: 1000000}", "data.workers: must be in [1, 1024], got 1000000");
  EXPECT_ERROR("model: {depth: 100000}", "model.depth: must be <= 1024, got 100000");
  EXPECT_ERROR("model: {embed_dim: 1048576}", "model.embed_dim: must be <= 65536, got 1048576");
  EXPECT_ERROR("data: {synthetic_train_size: 1.0e14}", "data.synthetic_train_size: ");
  EXPECT_ERROR("data: {synthetic_train_size: 100000000000000}",
               "data.synthetic_train_size: must be in [1, 100000000], got 100000000000000");
  EXPECT_ERROR("optim: {lr: 1.0e39}",
               "optim.lr: must be in [0, 3.4028234663852886e+38], got 1e+39");
  EXPECT_ERROR("finetune: {blr: 1.0e39}", "finetune.blr: must be <= 3.4028234663852886e+38");
  EXPECT_ERROR("loss: {kappa: 0}", "loss.kappa: must be > 0, got 0");
  EXPECT_ERROR("loss: {kappa: .inf}", "loss.kappa: must be > 0, got .inf");
  EXPECT_ERROR("optim: {beta2: 1}", "optim.beta2: must be in [0, 1), got 1");
  EXPECT_ERROR("data: {max_bad_fraction: 1.5}", "data.max_bad_fraction: must be in [0, 1], got");
  EXPECT_ERROR("data: {read: mmap}", "data.read: must be one of index | stream, got 'mmap'");
  EXPECT_ERROR("data: {read: stream}", "data.read: stream reads WebDataset shards only");
  EXPECT_ERROR("data: {shuffle_buffer: 0}", "data.shuffle_buffer: must be in [1, 1000000], got 0");
  EXPECT_ERROR("data: {samples_per_epoch: -1}", "data.samples_per_epoch: must be >= 0, got -1");
  EXPECT_ERROR("data: {stream_retries: 101}", "data.stream_retries: must be in [0, 100], got 101");
  EXPECT_ERROR("data: {stream_timeout_s: 0}", "data.stream_timeout_s: must be > 0, got 0");
  EXPECT_ERROR("model: {drop_path: 1}", "model.drop_path: must be in [0, 1), got 1");
  EXPECT_ERROR("train: {epochs: 0}", "train.epochs: must be >= 1, got 0");
  EXPECT_ERROR("eval: {knn_k: 0}", "eval.knn_k: must be >= 1, got 0");
  EXPECT_ERROR("log: {every: 0}", "log.every: must be >= 1, got 0");
  EXPECT_ERROR("finetune: {layer_decay: 0}", "finetune.layer_decay: must be in (0, 1], got 0");
  EXPECT_ERROR("finetune: {layer_decay: 1.5}", "finetune.layer_decay: must be in (0, 1], got 1.5");
  EXPECT_ERROR("finetune: {smoothing: 1}", "finetune.smoothing: must be in [0, 1), got 1");
  EXPECT_ERROR("finetune: {reprob: 2}", "finetune.reprob: must be in [0, 1], got 2");
  EXPECT_ERROR("finetune: {mixup: -0.1}", "finetune.mixup: must be >= 0, got -0.1");
  EXPECT_ERROR("finetune: {lr: 1.0e-3, min_lr: 1.0e-2}", "finetune.min_lr: must be <= finetune.lr");
  EXPECT_ERROR("finetune: {crop_scale_min: 0}", "finetune.crop_scale_min: must be in (0, 1]");
  // The RandAugment string is parsed at load time, so a typo names the key (and its line).
  EXPECT_ERROR("finetune: {auto_augment: rand-m9-mstdx}", "finetune.auto_augment: ");
  EXPECT_ERROR("finetune: {auto_augment: autoaug}", "finetune.auto_augment: ");
  EXPECT_EQ(config_error_of("finetune: {auto_augment: none}"), "");
  EXPECT_EQ(config_error_of("finetune: {auto_augment: rand-m7-n3-mstd1.0-inc1}"), "");
  // The whole message of the public validate() leads with the key path.
  Config c;
  c.optim.blr = -1;
  try {
    ocl::io::validate(c);
    ADD_FAILURE() << "validate accepted optim.blr -1";
  } catch (const ConfigError& e) {
    EXPECT_STREQ(e.what(), "optim.blr: must be > 0, got -1");
  }
}

TEST(Config, EnumerationsListTheAllowedValues) {
  EXPECT_ERROR("model: {arch: vit_giant}", "model.arch: must be one of vit_tiny_patch16 | ");
  EXPECT_ERROR("model: {arch: vit_giant}", "vit_h14 | custom, got 'vit_giant'");
  EXPECT_ERROR(
      "data: {dataset: imagenet}",
      "data.dataset: must be one of synthetic | imagefolder | packed | webdataset | cifar10 | "
      "cifar100");
  EXPECT_ERROR("data: {augment: randaug}", "data.augment: must be one of rrc_flip | none");
  EXPECT_ERROR("data: {interpolation: lanczos}", "bicubic | bilinear | area | nearest");
  EXPECT_ERROR("data: {decode: partial}", "reduced | region | full");
  EXPECT_ERROR("loss: {negatives: all}", "loss.negatives: must be one of global | local");
  EXPECT_ERROR("train: {device: gpu}", "train.device: must be one of auto | cpu | cuda | cuda:N");
  EXPECT_ERROR("train: {device: \"cuda:x\"}", "train.device: must be one of");
  EXPECT_ERROR("train: {device: \"cuda:\"}", "train.device: must be one of");
  EXPECT_EQ(config_error_of("train: {device: \"cuda:12\"}"), "");
  EXPECT_EQ(config_error_of("train: {device: cuda}"), "");
  EXPECT_ERROR("train: {precision: fp16}", "train.precision: must be one of auto | fp32 | bf16");
  EXPECT_ERROR("train: {on_nonfinite: ignore}", "train.on_nonfinite: must be one of stop | skip");
  EXPECT_ERROR("dist: {backend: mpi}", "dist.backend: must be one of auto | nccl | gloo");
  EXPECT_ERROR("log: {level: verbose}", "log.level: must be one of trace | debug | info | warn");
  EXPECT_ERROR("log: {progress: fancy}", "log.progress: must be one of auto | bar | lines");
  EXPECT_ERROR("optim: {name: sgd}", "optim.name: must be one of adamw, got 'sgd'");
  EXPECT_ERROR("optim: {fused: yes}", "optim.fused: must be one of auto | on | off, got 'yes'");
  EXPECT_EQ(config_error_of("optim: {fused: on}"), "");
  EXPECT_EQ(config_error_of("optim: {fused: off}"), "");
  EXPECT_ERROR("finetune: {global_pool: max}", "finetune.global_pool: must be one of avg | token");
  EXPECT_ERROR("mask: {group_views: split}",
               "mask.group_views: must be one of shared | independent, got 'split'");
  EXPECT_ERROR("model: {input_norm: layer}",
               "model.input_norm: must be one of none | patch, got 'layer'");
  EXPECT_ERROR("model: {input_norm: patch, input_norm_eps: 0}",
               "model.input_norm_eps: must be > 0, got 0");
  EXPECT_ERROR("model: {input_norm_eps: .nan}", "model.input_norm_eps: must be > 0");
  EXPECT_ERROR(
      "model: {arch: custom, img_size: 8, patch_size: 1, embed_dim: 8, depth: 1, "
      "num_heads: 1, input_norm: patch}\nmask: {ratio: 0.3}",
      "patch needs patches of at least 2x2 pixels (a 1x1 patch standardises to 0), got "
      "patch size 1");
  EXPECT_EQ(
      config_error_of("model: {arch: custom, img_size: 8, patch_size: 1, embed_dim: 8, depth: 1, "
                      "num_heads: 1}"),
      "");
  EXPECT_EQ(config_error_of("model: {input_norm: patch, input_norm_eps: 1.0e-3}"), "");
  EXPECT_ERROR("data: {photometric: strong}",
               "data.photometric: must be one of none | byol | colour | simclr, got 'strong'");
  EXPECT_ERROR("data: {illumination: -1}", "data.illumination: must be in [0, 255], got -1");
  EXPECT_ERROR("data: {illumination: 256}", "data.illumination: must be in [0, 255], got 256");
  EXPECT_EQ(config_error_of("data: {illumination: 255}"), "");
  EXPECT_ERROR("data: {synthetic_colours: rainbow}",
               "data.synthetic_colours: must be one of palette | random");
  EXPECT_ERROR("data: {noise: -1}", "data.noise: must be in [0, 255], got -1");
  EXPECT_ERROR("data: {blur: 17}", "data.blur: must be in [0, 16], got 17");
  EXPECT_ERROR("data: {blur: 1, photometric: simclr}",
               "data.blur: must be 0 with data.photometric simclr, which blurs on its own");
  EXPECT_EQ(config_error_of("data: {blur: 1, photometric: colour}"), "");
  EXPECT_ERROR("data: {synthetic_noise: 129}",
               "data.synthetic_noise: must be in [0, 128], got 129");
  EXPECT_ERROR("data: {synthetic_gradient: 300}",
               "data.synthetic_gradient: must be in [0, 255], got 300");
  EXPECT_ERROR("data: {synthetic_strokes: 17}",
               "data.synthetic_strokes: must be in [0, 16], got 17");
  EXPECT_ERROR("data: {synthetic_strokes: 1.5}", "data.synthetic_strokes");
  EXPECT_EQ(config_error_of("data: {noise: 32, synthetic_noise: 128, synthetic_gradient: 255, "
                            "synthetic_strokes: 16}"),
            "");
  EXPECT_ERROR("eval: {shortcut_accuracy: 0}", "eval.shortcut_accuracy: must be in (0, 1], got 0");
  EXPECT_ERROR("eval: {shortcut_accuracy: 1.5}", "eval.shortcut_accuracy: must be in (0, 1]");
  EXPECT_ERROR("eval: {shortcut_knn_gain: -1}", "eval.shortcut_knn_gain: must be >= 0");
  EXPECT_ERROR("eval: {shortcut_window: 0}", "eval.shortcut_window: must be >= 1, got 0");
  EXPECT_EQ(config_error_of("mask: {group_views: independent}\ndata: {photometric: byol, "
                            "synthetic_colours: random}\neval: {shortcut_alarm: false}"),
            "");
  for (const char* arch : {"vit_tiny_patch16", "vit_s16", "vit_b16", "vit_l16", "vit_h14"})
    EXPECT_EQ(config_error_of(std::string("model: {arch: ") + arch + "}"), "") << arch;
}

TEST(Config, CrossFieldChecks) {
  EXPECT_ERROR("data: {crop_scale_min: 0.8, crop_scale_max: 0.5}",
               "data.crop_scale_min: must be <= data.crop_scale_max (0.5), got 0.8");
  EXPECT_EQ(config_error_of("data: {crop_scale_min: 0.5, crop_scale_max: 0.5}"), "");
  EXPECT_ERROR("data: {crop_ratio_min: 2, crop_ratio_max: 1}",
               "data.crop_ratio_min: must be <= data.crop_ratio_max (1), got 2");
  EXPECT_ERROR("optim: {lr: 1e-3, min_lr: 1e-2}", "optim.min_lr: must be <= optim.lr (0.001)");
  EXPECT_EQ(config_error_of("optim: {lr: 0, min_lr: 1e-2}"),
            "");  // lr from blr: checked at run time
  EXPECT_ERROR("loss: {temperature: 0.07, max_logit_scale: 10}",
               "loss.max_logit_scale: must be >= 1/loss.temperature = 14.28");
  EXPECT_ERROR("model: {img_size: 200}",
               "model.img_size: must be divisible by the patch size 16 (model.arch "
               "vit_base_patch16), got 200");
  EXPECT_ERROR("model: {patch_size: 15}", "model.img_size: must be divisible by the patch size 15");
  EXPECT_ERROR("model: {num_heads: 7}",
               "model.embed_dim: must be divisible by the number of heads");
  EXPECT_ERROR(
      "model: {arch: custom, img_size: 32, patch_size: 4, embed_dim: 6, depth: 1, "
      "num_heads: 3}",
      "model.embed_dim: must be divisible by 4");
  EXPECT_ERROR("model: {arch: custom, img_size: 32, patch_size: 4, embed_dim: 64, num_heads: 4}",
               "model.depth: must be > 0 with model.arch custom");
  EXPECT_ERROR("model: {arch: custom}", "model.patch_size: must be > 0 with model.arch custom");
  EXPECT_ERROR("model: {depth: -1}", "model.depth: must be >= 0 (0 = the preset's value), got -1");
  EXPECT_ERROR("data: {dataset: imagefolder}", "data.path: required with data.dataset imagefolder");
  EXPECT_ERROR("data: {dataset: cifar10, path: \"\"}", "data.path: required with data.dataset");
  EXPECT_ERROR("data: {dataset: webdataset, path: \"/d/t-{0..3}.tar\"}\neval: {knn_every: 1}",
               "data.val_path: required with data.dataset webdataset and eval.knn_every > 0");
  EXPECT_EQ(config_error_of("data: {dataset: cifar100, path: data/cifar}"), "");
  EXPECT_ERROR("data: {synthetic_classes: 9}",
               "data.synthetic_classes: must be in [10, 64], got 9");
  EXPECT_ERROR("data: {synthetic_classes: 65}", "data.synthetic_classes: must be in [10, 64]");
  // 2x2 patches: floor(4·0.4/2) = 0 tokens per group.
  EXPECT_ERROR(
      "model: {arch: custom, img_size: 8, patch_size: 4, embed_dim: 8, depth: 1, "
      "num_heads: 2}\nmask: {ratio: 0.6}",
      "mask.ratio: 0.6 leaves no token for each of the two groups of the 4 patches");
  EXPECT_EQ(
      config_error_of("model: {arch: custom, img_size: 8, patch_size: 4, embed_dim: 8, depth: 1, "
                      "num_heads: 2}\nmask: {ratio: 0.5}"),
      "");
}

// Only the kNN monitor's need for the held-out shards is known from the config: a run that reads
// no held-out set (pre-training without the monitor, ocl_preview) is not refused for lacking them.
TEST(Config, WebDatasetNeedsValPathOnlyWhereTheConfigEvaluates) {
  const std::string shards = "data: {dataset: webdataset, path: \"/d/t-{0..3}.tar\"}\n";
  EXPECT_EQ(config_error_of(shards), "");
  EXPECT_EQ(config_error_of(shards + "eval: {knn_every: 0}"), "");
  EXPECT_EQ(config_error_of(shards + "eval: {knn_every: 5}", {"data.val_path=/d/v-{0..1}.tar"}),
            "");
  EXPECT_NE(config_error_of(shards, {"eval.knn_every=5"})
                .find("override 'eval.knn_every=5': data.val_path: required with data.dataset "
                      "webdataset and eval.knn_every > 0"),
            std::string::npos);
}

TEST(Config, OverridesApplyAfterTheFileInOrder) {
  const Config c =
      parse_config("optim: {blr: 1e-3}\n",
                   {"optim.blr=1e-4", "model.freeze_patch_embed=false", "data.augment=none",
                    "optim.betas=[0.9, 0.999]", "train.seed=42", "train.device=cuda:3",
                    "train.epochs=5", "train.epochs = 6", "data.cache_dir="});
  EXPECT_EQ(c.optim.blr, 1e-4);
  EXPECT_FALSE(c.model.freeze_patch_embed);
  EXPECT_EQ(c.data.augment, "none");
  EXPECT_EQ(c.optim.beta1, 0.9);
  EXPECT_EQ(c.optim.beta2, 0.999);
  EXPECT_EQ(c.train.seed, 42u);
  EXPECT_EQ(c.train.device, "cuda:3");
  EXPECT_EQ(c.train.epochs, 6);  // the later override wins
  EXPECT_EQ(c.data.cache_dir, "");
  // An override may repair what the file alone gets wrong: validation runs after all of them.
  EXPECT_EQ(parse_config("data: {dataset: imagefolder}", {"data.path=/data/in1k"}).data.path,
            "/data/in1k");
}

TEST(Config, BadOverridesNameTheOverride) {
  EXPECT_EQ(config_error_of("", {"optim.blr"}),
            "override 'optim.blr': expected key.path=value (e.g. optim.blr=1e-4)");
  const auto has = [](const std::string& message, const std::string& part) {
    return message.find(part) != std::string::npos;
  };
  std::string m = config_error_of("", {"optim.blrr=1"});
  EXPECT_TRUE(has(m, "override 'optim.blrr=1': optim.blrr: unknown key (valid: name, blr,")) << m;
  m = config_error_of("", {"optimizer.blr=1"});
  EXPECT_TRUE(has(m, "override 'optimizer.blr=1': optimizer: unknown key (valid: model,")) << m;
  m = config_error_of("", {"blr=1"});
  EXPECT_TRUE(has(m, "override 'blr=1': 'blr' is not a key path section.key")) << m;
  m = config_error_of("", {"optim.blr=fast"});
  EXPECT_TRUE(has(m, "override 'optim.blr=fast': optim.blr: expected a number, got 'fast'")) << m;
  m = config_error_of("", {"train.epochs=[1, 2]"});
  EXPECT_TRUE(has(m,
                  "override 'train.epochs=[1, 2]': train.epochs: expected an integer, got a "
                  "list"))
      << m;
  m = config_error_of("", {"optim.blr=[1"});
  EXPECT_TRUE(has(m, "override 'optim.blr=[1': the value is not valid YAML")) << m;
  // Out of range after all overrides: the override that set the value is named, not the file.
  m = config_error_of("mask: {ratio: 0.3}", {"mask.ratio=1.2"});
  EXPECT_EQ(m, "override 'mask.ratio=1.2': mask.ratio: must be in [0, 1), got 1.2");
}

TEST(Config, FileErrorsLeadWithTheFileNameAndLine) {
  TempFile bad("bad_blr.yaml", "# a config\nmodel:\n  arch: vit_b16\noptim:\n  blr: -1\n");
  try {
    ocl::io::load_config(bad.path());
    ADD_FAILURE() << "accepted optim.blr -1";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), bad.path() + ":5: optim.blr: must be > 0, got -1");
  }
  TempFile unknown("unknown.yaml", "optim:\n  blr: 1e-4\n  blrr: 1\n");
  try {
    ocl::io::load_config(unknown.path());
    ADD_FAILURE() << "accepted optim.blrr";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(unknown.path() + ":3: optim.blrr: unknown key", 0), 0u)
        << e.what();
  }
  try {
    ocl::io::load_config("/nonexistent/ocl/config.yaml");
    ADD_FAILURE() << "accepted a missing file";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), "/nonexistent/ocl/config.yaml: cannot open the config file");
  }
  // A key left at its default is reported at the line of the key that makes it required.
  TempFile needs_path("needs_path.yaml", "model:\n  arch: vit_b16\ndata:\n  dataset: cifar10\n");
  try {
    ocl::io::load_config(needs_path.path());
    ADD_FAILURE() << "accepted cifar10 without data.path";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(needs_path.path() + ":4: data.path: required", 0), 0u)
        << e.what();
  }
  // Not a config: an empty or comments-only file, a folder, a FIFO, an oversized file. Each is
  // named; none is read as the all-default config.
  auto load_error = [](const std::string& path) {
    try {
      ocl::io::load_config(path);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("<accepted>");
  };
  TempFile empty("empty.yaml", "");
  EXPECT_EQ(load_error(empty.path()),
            empty.path() + ": the config file is empty (no keys); start from one in configs/");
  TempFile comments("comments.yaml", "# only a comment\n\n");
  EXPECT_NE(load_error(comments.path()).find("the config file is empty"), std::string::npos);
  const auto folder = std::filesystem::path(empty.path()).parent_path().string();
  EXPECT_EQ(load_error(folder), folder + ": is a folder, not a config file");
  const std::string fifo = empty.path() + ".fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  EXPECT_EQ(load_error(fifo), fifo + ": is not a regular file");  // returns: no blocking open
  ::unlink(fifo.c_str());
  TempFile huge("huge.yaml", "optim:\n  betas: [" + std::string(2 << 20, '1') + "]\n");
  EXPECT_NE(load_error(huge.path()).find(" bytes is not a config file"), std::string::npos);
}

TEST(Config, YamlSyntaxErrorNamesFileAndLine) {
  TempFile broken("broken.yaml", "model:\n  arch: vit_b16\noptim:\n  blr: [1e-4\n  lr: 0\n");
  try {
    ocl::io::load_config(broken.path());
    ADD_FAILURE() << "accepted broken YAML";
  } catch (const ConfigError& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.rfind(broken.path() + ":", 0), 0u) << m;
    EXPECT_NE(m.find("YAML syntax error"), std::string::npos) << m;
    // yaml-cpp reports the unclosed flow list where it gives up: on line 4 or later.
    const int line = std::stoi(m.substr(broken.path().size() + 1));
    EXPECT_GE(line, 4) << m;
  }
  EXPECT_ERROR("model: {arch: vit_b16}\n---\noptim: {blr: 1}\n", "holds 2 YAML documents");
  // yaml-cpp 0.7's LoadAll never returned on these (found by fuzz/config_fuzz.cpp).
  EXPECT_ERROR(",", "line 1, column 1: YAML syntax error: unexpected ','");
  EXPECT_ERROR(std::string("\0,", 2), "YAML syntax error: unexpected byte 0");
  EXPECT_ERROR("model: {arch: vit_b16}\n---\n,",
               "line 3, column 1: YAML syntax error: unexpected ','");
}

TEST(Config, RoundTripsEveryFieldExactly) {
  Config c;
  c.model.arch = "custom";
  c.model.img_size = 96;
  c.model.patch_size = 8;
  c.model.embed_dim = 96;
  c.model.depth = 3;
  c.model.num_heads = 6;
  c.model.mlp_ratio = 8.0 / 3.0;
  c.model.drop_path = 0.1;
  c.model.freeze_patch_embed = false;
  c.model.input_norm = "patch";
  c.model.input_norm_eps = 0.1 + 0.2;
  c.mask.ratio = 1.0 / 3.0;
  c.mask.group_views = "independent";
  c.loss.kappa = 1e-3;
  c.loss.temperature = 0.2;
  c.loss.learnable_temperature = false;
  c.loss.max_logit_scale = 1e6;
  c.loss.negatives = "local";
  c.data.dataset = "webdataset";        // data.read stream needs it
  c.data.path = "/data/my images: #1";  // needs quoting
  c.data.val_path = "/data/val-{0..1}.tar";
  c.data.augment = "none";
  c.data.crop_scale_min = 0.1 + 0.2;  // 0.30000000000000004
  c.data.crop_scale_max = 0.9;
  c.data.crop_ratio_min = 3.0 / 4.0;
  c.data.crop_ratio_max = 4.0 / 3.0 + 1e-15;
  c.data.interpolation = "area";
  c.data.hflip = false;
  c.data.workers = 3;
  c.data.prefetch = 7;
  c.data.max_bad_fraction = 1e-300;
  c.data.max_image_pixels = 4096;
  c.data.synthetic_train_size = 123;
  c.data.synthetic_val_size = 45;
  c.data.synthetic_classes = 64;
  c.data.synthetic_colours = "random";
  c.data.photometric = "colour";
  c.data.illumination = 40.5;
  c.data.noise = 7.25;
  c.data.blur = 1.5;
  c.data.synthetic_noise = 12.5;
  c.data.synthetic_gradient = 33;
  c.data.synthetic_strokes = 4;
  c.data.cache_dir = "null";  // a string, not YAML's null
  c.data.read = "stream";
  c.data.shuffle_buffer = 77;
  c.data.samples_per_epoch = 5000;
  c.data.stream_retries = 0;
  c.data.stream_timeout_s = 2.5;
  c.optim.blr = 1e-4;
  c.optim.lr = 2.4e-3;
  c.optim.min_lr = 1e-6;
  c.optim.weight_decay = 0.0;
  c.optim.beta1 = 0.85;
  c.optim.beta2 = 0.999;
  c.optim.eps = 1e-12;
  c.optim.warmup_epochs = 0.5;
  c.optim.accum_iter = 5;
  c.optim.clip_grad = 3.0;
  c.train.epochs = 3;
  c.train.batch_size = 2;
  c.train.steps_per_epoch = 11;
  c.train.seed = std::numeric_limits<uint64_t>::max();
  c.train.output_dir = "-runs/x";
  c.train.save_every = 4;
  c.train.keep_last = 9;
  c.train.device = "cuda:7";
  c.train.precision = "bf16";
  c.train.threads = 2;
  c.train.on_nonfinite = "skip";
  c.train.max_nonfinite_skips = 0;
  c.dist.backend = "nccl";
  c.dist.timeout_s = 1800.5;
  c.dist.bucket_mb = 0.25;
  c.dist.first_bucket_mb = 0.5;
  c.dist.verify_every = 7;
  c.linprobe.epochs = 3;
  c.linprobe.batch_size = 48;
  c.linprobe.accum_iter = 2;
  c.linprobe.blr = 0.2;
  c.linprobe.lr = 0.5;
  c.linprobe.min_lr = 1e-4;
  c.linprobe.warmup_epochs = 0.5;
  c.linprobe.weight_decay = 1e-3;
  c.linprobe.output_dir = "/tmp/probe dir";
  c.linprobe.cached_features = true;
  c.linprobe.save_every = 2;
  c.finetune.epochs = 7;
  c.finetune.batch_size = 6;
  c.finetune.accum_iter = 3;
  c.finetune.blr = 1e-3;
  c.finetune.lr = 2e-3;
  c.finetune.min_lr = 1e-7;
  c.finetune.warmup_epochs = 0.25;
  c.finetune.weight_decay = 0.3;
  c.finetune.layer_decay = 0.75;
  c.finetune.beta1 = 0.8;
  c.finetune.beta2 = 0.95;
  c.finetune.clip_grad = 5.0;
  c.finetune.drop_path = 0.2;
  c.finetune.global_pool = "token";
  c.finetune.crop_scale_min = 0.5;
  c.finetune.auto_augment = "rand-m7-n3-mstd1.0-inc1";
  c.finetune.reprob = 0.0;
  c.finetune.mixup = 0.0;
  c.finetune.cutmix = 0.5;
  c.finetune.mixup_prob = 0.75;
  c.finetune.mixup_switch_prob = 1.0;
  c.finetune.smoothing = 0.0;
  c.finetune.model_ema = true;
  c.finetune.model_ema_decay = 0.999;
  c.finetune.output_dir = "ft";
  c.finetune.save_every = 3;
  c.finetune.keep_last = 4;
  c.dist.overlap = false;
  c.eval.knn_every = 3;
  c.eval.knn_k = 5;
  c.eval.knn_t = 0.05;
  c.eval.knn_train_size = 77;
  c.eval.knn_val_size = 33;
  c.eval.shortcut_alarm = false;
  c.eval.shortcut_accuracy = 0.95;
  c.eval.shortcut_knn_gain = 0.5;
  c.eval.shortcut_window = 3;
  c.log.every = 1;
  c.log.level = "trace";
  c.log.progress = "bar";
  ocl::io::validate(c);
  const std::string text = ocl::io::to_yaml(c);
  const Config back = parse_config(text);
  EXPECT_EQ(back, c) << ocl::io::config_difference(back, c) << "\n" << text;
  EXPECT_EQ(back.data.crop_ratio_max, c.data.crop_ratio_max);
  EXPECT_EQ(parse_config(ocl::io::to_yaml(Config{})), Config{});
  // Every key is written, in header order.
  EXPECT_EQ(text.rfind("model:\n  arch: custom\n  img_size: 96\n", 0), 0u) << text;
  EXPECT_NE(text.find("log:\n  every: 1\n  level: trace\n  progress: bar\n"), std::string::npos);
  // Shortest round-trip digits, always with a '.' so YAML 1.1 readers (PyYAML) see floats too.
  EXPECT_NE(text.find("  blr: 1.0e-04\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  crop_scale_min: 0.30000000000000004\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  kappa: 0.001\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  clip_grad: 3.0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  cache_dir: \"null\"\n"), std::string::npos) << text;
  EXPECT_NE(text.find("  seed: 18446744073709551615\n"), std::string::npos) << text;
}

TEST(Config, DifferenceNamesEveryDifferingKey) {
  Config a, b;
  EXPECT_EQ(ocl::io::config_difference(a, b), "");
  EXPECT_TRUE(a == b);
  b.optim.blr = 1e-4;
  b.log.level = "warn";
  EXPECT_FALSE(a == b);
  EXPECT_TRUE(a != b);
  EXPECT_EQ(ocl::io::config_difference(a, b),
            "optim.blr: 0.00015 vs 1.0e-04; log.level: info vs warn");
  const auto changes = ocl::io::config_changes(a, b);
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[1].key, "log.level");
  EXPECT_EQ(changes[1].b, "warn");
  const auto keys = ocl::io::config_keys();
  EXPECT_EQ(keys.front(), "model.arch");
  EXPECT_NE(std::find(keys.begin(), keys.end(), "optim.blr"), keys.end());
  b.optim.blr = a.optim.blr;
  EXPECT_EQ(ocl::io::config_difference(a, b), "log.level: info vs warn");
}

TEST(Config, DeriveViTB16AndViTL16) {
  const auto b = derive(parse_config("model: {arch: vit_base_patch16}\nmask: {ratio: 0.3}"));
  EXPECT_EQ(b.patch_size, 16);
  EXPECT_EQ(b.embed_dim, 768);
  EXPECT_EQ(b.depth, 12);
  EXPECT_EQ(b.num_heads, 12);
  EXPECT_EQ(b.num_patches, 196);
  EXPECT_EQ(b.tokens_per_group, 68);
  const auto l = derive(parse_config("model: {arch: vit_l16}\nmask: {ratio: 0.4}"));
  EXPECT_EQ(l.embed_dim, 1024);
  EXPECT_EQ(l.depth, 24);
  EXPECT_EQ(l.num_heads, 16);
  EXPECT_EQ(l.tokens_per_group, 58);
  EXPECT_EQ(derive(parse_config("mask: {ratio: 0.35}")).tokens_per_group, 63);
  // A nonzero size overrides the preset's.
  const auto p8 = derive(parse_config("model: {arch: vit_b16, patch_size: 8, depth: 6}"));
  EXPECT_EQ(p8.patch_size, 8);
  EXPECT_EQ(p8.num_patches, 784);
  EXPECT_EQ(p8.depth, 6);
  EXPECT_EQ(p8.embed_dim, 768);
  const auto h = derive(parse_config("model: {arch: vit_huge_patch14}\nmask: {ratio: 0.4}"));
  EXPECT_EQ(h.num_patches, 256);
  EXPECT_EQ(h.tokens_per_group, 76);
}

TEST(Config, DeriveEffectiveBatchAndLr) {
  const Config c = parse_config("train: {batch_size: 128}\noptim: {accum_iter: 4, blr: 1.5e-4}");
  const auto d = derive(c, 8);
  EXPECT_EQ(d.effective_batch, 4096);
  EXPECT_DOUBLE_EQ(d.lr, 2.4e-3);
  EXPECT_EQ(derive(c, 1).effective_batch, 512);
  const auto absolute = derive(parse_config("optim: {lr: 1e-3, blr: 1}"), 8);
  EXPECT_EQ(absolute.lr, 1e-3);
  EXPECT_THROW(derive(c, 0), ConfigError);
  // The largest batch and accumulation validation allows, over 2^23 processes, overflows.
  const Config huge = parse_config("train: {batch_size: 16777216}\noptim: {accum_iter: 65536}");
  EXPECT_EQ(derive(huge, 1 << 22).effective_batch, int64_t{1} << 62);
  try {
    derive(huge, 1 << 23);
    ADD_FAILURE() << "an effective batch of 2^63 was accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("overflows"), std::string::npos) << e.what();
  }
  Config bad;
  bad.mask.ratio = 1.5;
  EXPECT_THROW(derive(bad), ConfigError);
}

TEST(Config, ToYamlWithDerivedAppendsACommentedBlock) {
  const Config c = parse_config("train: {batch_size: 128}\noptim: {accum_iter: 4}");
  const std::string text = ocl::io::to_yaml_with_derived(c, derive(c, 8));
  EXPECT_NE(text.find("# derived:\n"), std::string::npos) << text;
  EXPECT_NE(text.find("#   effective_batch: 4096"), std::string::npos) << text;
  EXPECT_NE(text.find("#   lr: 0.0024"), std::string::npos) << text;
  EXPECT_NE(text.find("#   num_patches: 196\n"), std::string::npos) << text;
  EXPECT_NE(text.find("#   tokens_per_group: 68"), std::string::npos) << text;
  EXPECT_NE(text.find("#   embed_dim: 768\n"), std::string::npos) << text;
  EXPECT_EQ(parse_config(text), c);  // the block is comments only
}

TEST(Config, EveryShippedConfigLoadsAndValidates) {
  const auto dir = repo_root() / "configs";
  ASSERT_TRUE(std::filesystem::is_directory(dir)) << dir;
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().extension() != ".yaml") continue;
    SCOPED_TRACE(entry.path().string());
    ++count;
    Config c;
    ASSERT_NO_THROW(c = ocl::io::load_config(entry.path().string()));
    EXPECT_NO_THROW(derive(c, 4));
    EXPECT_EQ(parse_config(ocl::io::to_yaml(c)), c);
    std::ifstream in(entry.path());
    std::string first_line;
    std::getline(in, first_line);
    EXPECT_EQ(first_line.rfind("# ", 0), 0u) << "opens with a comment saying what it is for";
  }
  EXPECT_GE(count, 5);
  // The paper's recipes on its 4 GPUs (docs/method.md "Recipes").
  const auto b = ocl::io::load_config((dir / "vitb16.yaml").string());
  EXPECT_EQ(derive(b, 4).effective_batch, 9600);
  EXPECT_EQ(derive(b, 4).tokens_per_group, 68);
  EXPECT_EQ(b.optim.blr, 1.5e-4);
  EXPECT_EQ(b.train.epochs, 800);
  EXPECT_EQ(b.optim.warmup_epochs, 40.0);
  const auto l = ocl::io::load_config((dir / "vitl16.yaml").string());
  EXPECT_EQ(derive(l, 4).effective_batch, 2048);
  EXPECT_EQ(derive(l, 4).tokens_per_group, 58);
  EXPECT_EQ(l.loss.kappa, 64.0);
  const auto q = ocl::io::load_config((dir / "quickstart.yaml").string());
  EXPECT_EQ(q.train.device, "cpu");
  EXPECT_EQ(q.data.dataset, "synthetic");
}
