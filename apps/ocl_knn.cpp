// ocl_knn: DINO's weighted k-nearest-neighbour evaluation of a pre-trained encoder: the training
// split is the memory bank, the validation split is classified (engine/knn.h); one line per k.
//
//   ocl_knn --config configs/vitb16.yaml --weights runs/b16/checkpoint-last --k 10 --k 20
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "app_common.h"
#include "app_training.h"
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <ocl/distributed/launch.h>
#include <ocl/engine/knn.h>
#include <ocl/engine/run_setup.h>
#include <ocl/io/config.h>
#include <ocl/io/console.h>
#include <ocl/io/safetensors.h>
#include <ocl/nn/weights.h>

namespace {

struct KnnArgs {
  ocl::apps::ConfigCommand command;
  std::string weights, save_features;
  int64_t save_inputs = 0;
  ocl::engine::KnnSettings settings{.batch = 0, .workers = 0, .vote = {.ks = {}, .temperature = 0}};
};

void add_flags(CLI::App& app, KnnArgs& a) {
  auto& s = a.settings;
  ocl::apps::add_config_flags(app, a.command, "YAML config: model sizes, data, device",
                              "data.path=...");
  ocl::apps::add_weights_flag(app, a.weights);
  app.get_option("--weights")->required();
  app.add_option("--k", s.vote.ks, "neighbours; repeat for several (default: eval.knn_k)")
      ->check(ocl::apps::at_least(1));
  app.add_option("--temperature", s.vote.temperature,
                 "vote weight exp(sim / T) (default: eval.knn_t)")
      ->check(ocl::apps::positive());
  app.add_option("--train-size", s.bank_size, "use the first N training images (0: all)")
      ->check(ocl::apps::at_least(0));
  app.add_option("--val-size", s.held_out_size, "classify the first N validation images (0: all)")
      ->check(ocl::apps::at_least(0));
  app.add_option("--batch", s.batch, "images per forward (default: train.batch_size)")
      ->check(ocl::apps::at_least(1));
  app.add_option("--chunk", s.vote.chunk, "validation rows per similarity block (bounds memory)")
      ->check(ocl::apps::at_least(1));
  app.add_flag("--half-bank", s.vote.half_bank, "keep the memory bank in fp16 (half the memory)");
  app.add_option("--save-features", a.save_features,
                 "write train_features, train_labels, val_features, val_labels (safetensors)");
  app.add_option("--save-inputs", a.save_inputs,
                 "with --save-features, also write val_inputs: the first N validation images as "
                 "the encoder saw them (normalised float32 [N, 3, H, W]), for cross-checks such "
                 "as scripts/timm_check.py")
      ->check(ocl::apps::at_least(0));
}

// Both splits' features and labels for cross-checks; with --save-inputs, the first validation
// images as the encoder saw them.
void save_features(const KnnArgs& a, const ocl::engine::KnnEvaluation& knn,
                   const ocl::engine::KnnData& data, int img, const ocl::engine::Process& process) {
  const auto& settings = a.settings;
  ocl::io::TensorMap saved{{"train_features", knn.bank.features},
                           {"train_labels", knn.bank.labels},
                           {"val_features", knn.held_out.features},
                           {"val_labels", knn.held_out.labels}};
  if (a.save_inputs > 0) {
    const int64_t n = std::min<int64_t>(a.save_inputs, knn.held_out.labels.size(0));
    const auto identity = [](const torch::Tensor& images, const torch::Tensor&) {
      return images.flatten(1);
    };
    const auto inputs =
        ocl::engine::map_dataset(identity, *data.splits.val, *data.transform, process.device,
                                 settings.batch, n, settings.workers, process.comm.get());
    saved["val_inputs"] = inputs.features.to(torch::kFloat32).view({n, 3, img, img});
  }
  if (process.launch.rank == 0) ocl::io::write_safetensors(a.save_features, saved);
}

int run_knn(KnnArgs& a, const ocl::io::Config& config, const ocl::distributed::LaunchInfo& launch) {
  if (a.save_inputs > 0 && a.save_features.empty())
    throw std::invalid_argument("--save-inputs needs --save-features (the file to write)");
  if (!a.save_features.empty() && launch.rank == 0)
    ocl::apps::check_output_folder("--save-features", a.save_features);
  const auto console = std::make_shared<ocl::io::ConsoleSink>(stdout, false);
  const auto process = ocl::engine::start_process(
      config, launch, ocl::engine::rank_logger(console, "", config, launch.rank));
  ocl::engine::log_startup(process, "ocl_knn");
  auto& log = *process.log;

  // The encoder: the config's sizes, no head, CLS pooling; weights from the file (or none).
  torch::manual_seed(config.train.seed);
  ocl::nn::VisionTransformer encoder(
      ocl::nn::encoder_options(config, ocl::io::derive(config, launch.world_size)));
  log.info("{}", ocl::nn::load_encoder_weights(encoder, a.weights).describe());
  encoder->to(process.device);

  const int img = static_cast<int>(config.model.img_size);
  const auto data = ocl::engine::open_knn_data(process, config.data, img, config.train.seed);
  auto& settings = a.settings;
  if (settings.batch == 0) settings.batch = config.train.batch_size;
  settings.workers = config.data.workers;
  if (settings.vote.ks.empty()) settings.vote.ks = {config.eval.knn_k};
  if (settings.vote.temperature == 0) settings.vote.temperature = config.eval.knn_t;
  const auto knn = ocl::engine::evaluate_knn(encoder, data, process, settings);
  log.info("data: train {}; val {}", data.splits.train->describe(), data.splits.val->describe());
  log.info("features: {} train, {} val images, D {}, {:.1f} s{}", knn.bank.labels.size(0),
           knn.held_out.labels.size(0), knn.bank.features.size(1), knn.seconds,
           a.save_features.empty() ? "" : "; saving to " + a.save_features);
  for (const auto& r : knn.results) {
    log.info("kNN k {}, T {}: top-1 {:.2f} %, top-5 {:.2f} %", r.k, settings.vote.temperature,
             r.top1, r.top5);
  }
  // After the figures, so that a write that fails (a full disk) loses nothing already computed.
  if (!a.save_features.empty()) save_features(a, knn, data, img, process);
  if (process.comm) process.comm->barrier("end of ocl_knn");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ocl_knn: weighted kNN evaluation (DINO's protocol) of a pre-trained ViT encoder"};
  KnnArgs args;
  add_flags(app, args);
  if (auto code = ocl::apps::parse_command_line(app, argc, argv)) return *code;
  return ocl::apps::run_reporting_errors("ocl_knn", [&] {
    ocl::io::Config config;
    ocl::distributed::LaunchInfo launch;
    if (auto code = ocl::apps::load_or_delegate(args.command, "", argc, argv, config, launch))
      return *code;
    return run_knn(args, config, launch);
  });
}
