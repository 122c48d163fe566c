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
#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "app_common.h"
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <ocl/compat.h>
#include <ocl/data/factory.h>
#include <ocl/dist/communicator.h>
#include <ocl/dist/launch.h>
#include <ocl/engine/knn.h>
#include <ocl/engine/pretrain.h>
#include <ocl/engine/run.h>
#include <ocl/io/config.h>
#include <ocl/io/safetensors.h>
#include <ocl/nn/weights.h>

int main(int argc, char** argv) {
  CLI::App app{"ocl_knn: weighted kNN evaluation (DINO's protocol) of a pre-trained ViT encoder"};
  std::string config_path, weights, save_features;
  std::vector<std::string> overrides;
  std::vector<int64_t> ks;
  double temperature = 0;
  int64_t train_size = 0, val_size = 0, batch = 0, chunk = 1024, save_inputs = 0;
  bool half_bank = false;
  int nproc_per_node = 0;
  app.add_option("--config", config_path, "YAML config: model sizes, data, device")->required();
  app.add_option("--weights", weights,
                 "encoder weights: a checkpoint folder, an encoder.safetensors (timm names, or "
                 "converted by scripts/convert_checkpoint.py), or 'none' for the random baseline")
      ->required();
  app.add_option("--set", overrides, "override a config key (repeatable)");
  app.add_option("--k", ks, "neighbours; repeat for several (default: eval.knn_k)")
      ->check(ocl::apps::at_least(1));
  app.add_option("--temperature", temperature, "vote weight exp(sim / T) (default: eval.knn_t)")
      ->check(ocl::apps::positive());
  app.add_option("--train-size", train_size, "use the first N training images (0: all)")
      ->check(ocl::apps::at_least(0));
  app.add_option("--val-size", val_size, "classify the first N validation images (0: all)")
      ->check(ocl::apps::at_least(0));
  app.add_option("--batch", batch, "images per forward (default: train.batch_size)")
      ->check(ocl::apps::at_least(1));
  app.add_option("--chunk", chunk, "validation rows per similarity block (bounds memory)")
      ->check(ocl::apps::at_least(1));
  app.add_flag("--half-bank", half_bank, "keep the memory bank in fp16 (half the memory)");
  app.add_option("--save-features", save_features,
                 "write train_features, train_labels, val_features, val_labels (safetensors)");
  app.add_option("--save-inputs", save_inputs,
                 "with --save-features, also write val_inputs: the first N validation images as "
                 "the encoder saw them (normalised float32 [N, 3, H, W]), for cross-checks such "
                 "as scripts/timm_check.py")
      ->check(ocl::apps::at_least(0));
  app.add_option("--nproc-per-node", nproc_per_node, "start this many local processes")
      ->check(ocl::apps::at_least(1));
  if (auto code = ocl::apps::parse_command_line(app, argc, argv)) return *code;

  return ocl::apps::run_reporting_errors("ocl_knn", [&] {
    const auto launch = ocl::dist::launch_from_environment();
    if (auto code = ocl::apps::run_local_workers_if_asked(nproc_per_node, launch, argc, argv)) {
      return *code;
    }
    const auto config = ocl::io::load_config(config_path, overrides);
    const auto derived = ocl::io::derive(config, launch.world_size);
    const auto& e = config.eval;
    if (ks.empty()) ks = {e.knn_k};
    if (temperature <= 0) temperature = e.knn_t;
    if (batch <= 0) batch = config.train.batch_size;
    const auto device = ocl::engine::resolve_device(config.train.device, launch);
    const bool bf16 = ocl::engine::use_bf16(config, device);
    ocl::engine::set_process_threads(config, launch);
    std::unique_ptr<ocl::dist::Communicator> comm;
    if (launch.distributed()) {
      comm = std::make_unique<ocl::dist::Communicator>(
          launch, ocl::engine::communicator_options(config, device));
    }
    const bool writer = launch.rank == 0;

    // The encoder: the config's sizes, no head, CLS pooling; weights from the file (or none).
    torch::manual_seed(config.train.seed);
    ocl::nn::VisionTransformer encoder(ocl::nn::encoder_options(config, derived));
    const auto report = ocl::nn::load_encoder_weights(encoder, weights);
    encoder->to(device);
    if (writer) std::printf("%s\n", report.describe().c_str());

    const int img = static_cast<int>(config.model.img_size);
    auto train_set = ocl::data::make_dataset(config.data, img, /*train=*/true, config.train.seed);
    auto val_set = ocl::data::make_dataset(config.data, img, /*train=*/false, config.train.seed);
    for (const auto* set : {train_set.get(), val_set.get()}) {
      for (const auto& w : set->warnings())
        if (writer) std::fprintf(stderr, "ocl_knn: warning: %s\n", w.c_str());
    }
    const auto transform = ocl::data::make_transform(config.data, img, /*train=*/false);
    const auto t0 = std::chrono::steady_clock::now();
    auto train_f = ocl::engine::extract_features(encoder, *train_set, *transform, device, batch,
                                                 train_size, config.data.workers, bf16, comm.get());
    auto val_f = ocl::engine::extract_features(encoder, *val_set, *transform, device, batch,
                                               val_size, config.data.workers, bf16, comm.get());
    const double extract_s = ocl::engine::seconds_since(t0);
    if (save_inputs > 0 && save_features.empty()) {
      throw std::invalid_argument("--save-inputs needs --save-features (the file to write)");
    }
    if (!save_features.empty()) {
      ocl::io::TensorMap saved{{"train_features", train_f.features},
                               {"train_labels", train_f.labels},
                               {"val_features", val_f.features},
                               {"val_labels", val_f.labels}};
      if (save_inputs > 0) {
        // The same loader, transform and normalisation as the features above (every rank takes
        // part: the rows are gathered like the features).
        const int64_t n = std::min<int64_t>(save_inputs, val_f.labels.size(0));
        const auto identity = [](const torch::Tensor& images, const torch::Tensor&) {
          return images.flatten(1);
        };
        const auto inputs = ocl::engine::map_dataset(identity, *val_set, *transform, device, batch,
                                                     n, config.data.workers, comm.get());
        saved["val_inputs"] = inputs.features.to(torch::kFloat32).view({n, 3, img, img});
      }
      if (writer) ocl::io::write_safetensors(save_features, saved);
    }
    ocl::engine::KnnOptions ko;
    ko.ks = ks;
    ko.temperature = temperature;
    ko.chunk = chunk;
    ko.device = device;
    ko.half_bank = half_bank;
    const auto results =
        ocl::engine::knn_evaluate(train_f, val_f, train_set->num_classes(), ko, comm.get());
    if (writer) {
      std::printf("data: train %s; val %s\n", train_set->describe().c_str(),
                  val_set->describe().c_str());
      std::printf("features: %lld train, %lld val images, D %lld, extracted in %.1f s%s\n",
                  static_cast<long long>(train_f.labels.size(0)),
                  static_cast<long long>(val_f.labels.size(0)),
                  static_cast<long long>(train_f.features.size(1)), extract_s,
                  save_features.empty() ? "" : ("; saved to " + save_features).c_str());
      for (const auto& r : results) {
        std::printf("kNN k %lld, T %g: top-1 %.2f %%, top-5 %.2f %%\n", static_cast<long long>(r.k),
                    temperature, r.top1, r.top5);
      }
      std::fflush(stdout);
    }
    if (comm) comm->barrier("end of ocl_knn");
    return 0;
  });
}
