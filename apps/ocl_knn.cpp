// ocl_knn: DINO's weighted k-nearest-neighbour evaluation of a pre-trained encoder.
//
//   ocl_knn --config configs/vitb16.yaml --weights runs/b16/checkpoint-last --set data.path=...
//   ocl_knn --config configs/quickstart.yaml --weights none          (the random baseline)
//   ocl_knn --nproc-per-node 4 --config ... --weights ... --k 10 --k 20 --k 100
//
// The training split is the memory bank and the validation split is classified, both through
// Resize + CenterCrop; features are the L2-normalised CLS outputs after the final norm. With
// several processes (torchrun, srun, --nproc-per-node) each extracts and classifies every W-th
// image. Prints one line per k; exits 0, 1 on an error, 2 on a bad command line.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "app_common.h"
#include "app_training.h"
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <ocl/compat.h>
#include <ocl/data/factory.h>
#include <ocl/distributed/communicator.h>
#include <ocl/distributed/launch.h>
#include <ocl/distributed/process.h>
#include <ocl/engine/knn.h>
#include <ocl/engine/pretrain.h>
#include <ocl/io/config.h>
#include <ocl/io/files.h>
#include <ocl/io/safetensors.h>
#include <ocl/nn/weights.h>

namespace {

struct KnnArgs {
  std::string config_path, weights, save_features;
  std::vector<std::string> overrides;
  std::vector<int64_t> ks;
  double temperature = 0;
  int64_t train_size = 0, val_size = 0, batch = 0, chunk = 1024, save_inputs = 0;
  bool half_bank = false, print_config = false;
  int nproc_per_node = 0;
};

void add_flags(CLI::App& app, KnnArgs& a) {
  app.add_option("--config", a.config_path, "YAML config: model sizes, data, device")->required();
  app.add_option("--weights", a.weights,
                 "encoder weights: a checkpoint folder, an encoder.safetensors (timm names, or "
                 "converted by scripts/convert_checkpoint.py), or 'none' for the random baseline")
      ->required();
  app.add_option("--set", a.overrides, "override a config key (repeatable)");
  app.add_option("--k", a.ks, "neighbours; repeat for several (default: eval.knn_k)")
      ->check(ocl::apps::at_least(1));
  app.add_option("--temperature", a.temperature, "vote weight exp(sim / T) (default: eval.knn_t)")
      ->check(ocl::apps::positive());
  app.add_option("--train-size", a.train_size, "use the first N training images (0: all)")
      ->check(ocl::apps::at_least(0));
  app.add_option("--val-size", a.val_size, "classify the first N validation images (0: all)")
      ->check(ocl::apps::at_least(0));
  app.add_option("--batch", a.batch, "images per forward (default: train.batch_size)")
      ->check(ocl::apps::at_least(1));
  app.add_option("--chunk", a.chunk, "validation rows per similarity block (bounds memory)")
      ->check(ocl::apps::at_least(1));
  app.add_flag("--half-bank", a.half_bank, "keep the memory bank in fp16 (half the memory)");
  app.add_option("--save-features", a.save_features,
                 "write train_features, train_labels, val_features, val_labels (safetensors)");
  app.add_option("--save-inputs", a.save_inputs,
                 "with --save-features, also write val_inputs: the first N validation images as "
                 "the encoder saw them (normalised float32 [N, 3, H, W]), for cross-checks such "
                 "as scripts/timm_check.py")
      ->check(ocl::apps::at_least(0));
  app.add_option("--nproc-per-node", a.nproc_per_node, "start this many local processes")
      ->check(ocl::apps::at_least(1));
  ocl::apps::add_print_config_flag(app, a.print_config);
}

// The features and labels of both splits, saved for cross-checks; with --save-inputs, the
// first validation images as the encoder saw them (the same loader, transform and
// normalisation; every rank takes part, the rows are gathered like the features).
void save_features(const KnnArgs& a, const ocl::engine::Features& train_f,
                   const ocl::engine::Features& val_f, const ocl::data::Dataset& val_set,
                   const ocl::data::Transform& transform, int img, const torch::Device& device,
                   int64_t batch, int64_t workers, ocl::distributed::Communicator* comm,
                   bool writer) {
  ocl::io::TensorMap saved{{"train_features", train_f.features},
                           {"train_labels", train_f.labels},
                           {"val_features", val_f.features},
                           {"val_labels", val_f.labels}};
  if (a.save_inputs > 0) {
    const int64_t n = std::min<int64_t>(a.save_inputs, val_f.labels.size(0));
    const auto identity = [](const torch::Tensor& images, const torch::Tensor&) {
      return images.flatten(1);
    };
    const auto inputs =
        ocl::engine::map_dataset(identity, val_set, transform, device, batch, n, workers, comm);
    saved["val_inputs"] = inputs.features.to(torch::kFloat32).view({n, 3, img, img});
  }
  if (writer) ocl::io::write_safetensors(a.save_features, saved);
}

// --save-features' folder must exist and be writable before minutes of extraction, not after.
void check_destination(const std::string& file) {
  const auto slash = file.rfind('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : file.substr(0, slash);
  if (!ocl::io::is_dir(dir)) {
    throw std::invalid_argument("--save-features " + file + ": there is no folder '" + dir +
                                "' (make it first); nothing was extracted");
  }
  if (::access(dir.c_str(), W_OK) != 0) {
    throw std::invalid_argument("--save-features " + file + ": cannot write into '" + dir + "' (" +
                                std::strerror(errno) + "); nothing was extracted");
  }
}

int run_knn(KnnArgs& a, const ocl::distributed::LaunchInfo& launch) {
  const auto config = ocl::io::load_config(a.config_path, a.overrides);
  const auto derived = ocl::io::derive(config, launch.world_size);
  if (a.ks.empty()) a.ks = {config.eval.knn_k};
  if (a.temperature <= 0) a.temperature = config.eval.knn_t;
  const int64_t batch = a.batch > 0 ? a.batch : config.train.batch_size;
  if (a.save_inputs > 0 && a.save_features.empty()) {
    throw std::invalid_argument("--save-inputs needs --save-features (the file to write)");
  }
  if (!a.save_features.empty() && launch.rank == 0) check_destination(a.save_features);
  const auto device = ocl::distributed::resolve_device(config.train.device, launch);
  const bool bf16 = ocl::distributed::use_bf16(config, device);
  ocl::distributed::set_process_threads(config, launch);
  std::unique_ptr<ocl::distributed::Communicator> comm;
  if (launch.distributed()) {
    comm = std::make_unique<ocl::distributed::Communicator>(
        launch, ocl::distributed::communicator_options(config, device));
  }
  const bool writer = launch.rank == 0;

  // The encoder: the config's sizes, no head, CLS pooling; weights from the file (or none).
  torch::manual_seed(config.train.seed);
  ocl::nn::VisionTransformer encoder(ocl::nn::encoder_options(config, derived));
  const auto report = ocl::nn::load_encoder_weights(encoder, a.weights);
  encoder->to(device);
  if (writer) std::printf("%s\n", report.describe().c_str());

  const int img = static_cast<int>(config.model.img_size);
  auto train_set = ocl::data::make_dataset(config.data, img, /*train=*/true, config.train.seed);
  auto val_set = ocl::data::make_dataset(config.data, img, /*train=*/false, config.train.seed);
  ocl::data::require_same_classes(*train_set, *val_set);
  for (const auto* set : {train_set.get(), val_set.get()}) {
    for (const auto& w : set->warnings())
      if (writer) std::fprintf(stderr, "ocl_knn: warning: %s\n", w.c_str());
  }
  const auto transform = ocl::data::make_transform(config.data, img, /*train=*/false);
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t workers = config.data.workers;
  auto train_f = ocl::engine::extract_features(encoder, *train_set, *transform, device, batch,
                                               a.train_size, workers, bf16, comm.get());
  auto val_f = ocl::engine::extract_features(encoder, *val_set, *transform, device, batch,
                                             a.val_size, workers, bf16, comm.get());
  const double extract_s = ocl::engine::seconds_since(t0);
  ocl::engine::KnnOptions ko;
  ko.ks = a.ks;
  ko.temperature = a.temperature;
  ko.chunk = a.chunk;
  ko.device = device;
  ko.half_bank = a.half_bank;
  const auto results =
      ocl::engine::knn_evaluate(train_f, val_f, train_set->num_classes(), ko, comm.get());
  if (writer) {
    std::printf("data: train %s; val %s\n", train_set->describe().c_str(),
                val_set->describe().c_str());
    std::printf("features: %lld train, %lld val images, D %lld, extracted in %.1f s%s\n",
                static_cast<long long>(train_f.labels.size(0)),
                static_cast<long long>(val_f.labels.size(0)),
                static_cast<long long>(train_f.features.size(1)), extract_s,
                a.save_features.empty() ? "" : ("; saving to " + a.save_features).c_str());
    for (const auto& r : results) {
      std::printf("kNN k %lld, T %g: top-1 %.2f %%, top-5 %.2f %%\n", static_cast<long long>(r.k),
                  a.temperature, r.top1, r.top5);
    }
    std::fflush(stdout);
  }
  // After the figures, so that a write that fails (a full disk) loses nothing already computed.
  if (!a.save_features.empty()) {
    save_features(a, train_f, val_f, *val_set, *transform, img, device, batch, workers, comm.get(),
                  writer);
  }
  if (comm) comm->barrier("end of ocl_knn");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ocl_knn: weighted kNN evaluation (DINO's protocol) of a pre-trained ViT encoder"};
  KnnArgs args;
  add_flags(app, args);
  if (auto code = ocl::apps::parse_command_line(app, argc, argv)) return *code;
  return ocl::apps::run_reporting_errors("ocl_knn", [&] {
    const auto launch = ocl::distributed::launch_from_environment();
    if (args.print_config) {
      ocl::apps::print_config(ocl::io::load_config(args.config_path, args.overrides),
                              args.nproc_per_node > 0 ? args.nproc_per_node : launch.world_size,
                              "");
      return 0;
    }
    if (auto code =
            ocl::apps::run_local_workers_if_asked(args.nproc_per_node, launch, argc, argv)) {
      return *code;
    }
    return run_knn(args, launch);
  });
}
