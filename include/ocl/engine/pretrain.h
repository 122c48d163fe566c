// OCL pre-training on one or many processes: Pretrainer::forward is OCL's step on a micro-batch
// (masks, the forward under bf16 autocast when asked); the shared loop does the rest.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/optim/adamw.h>

#include "ocl/data/dataset.h"
#include "ocl/data/transforms.h"
#include "ocl/distributed/communicator.h"
#include "ocl/engine/knn.h"
#include "ocl/engine/loop.h"
#include "ocl/engine/run.h"
#include "ocl/engine/shortcut_alarm.h"
#include "ocl/io/config.h"
#include "ocl/optim/param_groups.h"
#include "ocl/ssl/ocl_model.h"

namespace ocl::engine {

using PretrainOptions = RunOptions;

struct PretrainResult {
  io::TrainingState state;          // where the run stopped
  bool interrupted = false;         // stopped by a signal (or stop_after_steps) before the end
  std::string last_checkpoint;      // "" if none was written
  std::vector<double> step_losses;  // loss of every optimiser step taken by this run() call
  double knn_top1 = -1;             // the last kNN monitor top-1 (%), −1 if none ran
  int64_t shortcut_alarms = 0;      // epochs of this run() call the shortcut alarm fired at
};

/// The OCL model a config describes (encoder sizes from `derived`), initialised from train.seed.
ssl::OCL build_ocl_model(const io::Config& config, const io::DerivedConfig& derived);

/// Uniform mask noise [B, N] of micro-batch `micro` of step `global_step` for this rank's rows:
/// row i seeded by (seed, global_step, micro, i·world_size + rank), its place in the global
/// batch, so a resumed run, or W processes of batch B, draw each image the same mask.
torch::Tensor step_mask_noise(uint64_t seed, int64_t global_step, int64_t micro, int64_t batch,
                              int64_t num_patches, int64_t rank = 0, int64_t world_size = 1);

class Pretrainer : private TrainingEngine {
 public:
  /// Sets the run up, builds data, model and optimiser, and loads the checkpoint to resume from.
  Pretrainer(io::Config config, PretrainOptions options);
  ~Pretrainer() override;

  PretrainResult run();

  ssl::OCL& model() { return model_; }
  const io::TrainingState& state() const { return run_.state(); }
  TrainingLoop& loop() { return *loop_; }
  const RunContext& context() const { return run_; }

 private:
  torch::nn::Module& trained_module() override { return *model_; }
  const std::vector<torch::Tensor>& trainable() override { return trainable_; }
  std::vector<Figure> figures() const override;
  void set_lr(double lr) override;
  MicroStep forward(const data::Batch& batch, const StepContext& at) override;
  void update() override;
  bool can_skip_on_device() const override { return fused_adamw_; }
  void update_or_skip(const optim::DeviceSkip& skip) override;
  void forget_skipped_update() override;
  bool can_stage() const override { return true; }
  void stage(const data::Batch& batch, const StepContext& at) override;
  MicroStep forward_staged(int64_t micro) override;
  void update_staged(const torch::Tensor& found_inf) override;
  struct StepInputs {
    torch::Tensor images, images_b, noise;  // images_b: independent group views only
  };
  StepInputs step_inputs(const data::Batch& batch, const StepContext& at);
  MicroStep compute(const StepInputs& in);
  EpochReport end_of_epoch(const io::TrainingState& state) override;
  CheckpointTensors checkpoint_tensors() override;
  double run_knn_monitor();
  void log_setup() const;

  io::Config config_;
  io::DerivedConfig derived_;
  RunContext run_;
  io::DataConfig data_config_;    // config_.data with the file-list cache folder resolved
  std::string data_description_;  // the training data, for the log
  ssl::FeatureGather gather_;     // global negatives across ranks; null in one process or local
  ssl::OCL model_{nullptr};
  std::vector<optim::ParamGroup> groups_;
  std::vector<torch::Tensor> trainable_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  bool fused_adamw_ = false;  // optim.fused resolved for the device (optim::adamw_step)
  // train.cuda_graph: each micro-batch's staged inputs (device buffers that keep their
  // addresses: the images normalised, the mask noise) and the AdamW whose learning rate and
  // step counts live on the device, made at the first staged update.
  std::vector<StepInputs> staged_;
  std::unique_ptr<optim::CapturableAdamW> capturable_;
  std::shared_ptr<const data::Dataset> train_set_;
  std::unique_ptr<TrainingLoop> loop_;  // declared after run_: destroyed before its communicator
  double knn_top1_ = -1;                // the last kNN monitor figure
  std::vector<double> knn_history_;     // every kNN monitor figure, the first at initialisation
  int64_t shortcut_alarms_ = 0;
  std::unique_ptr<KnnData> knn_data_;  // the kNN monitor's, opened on first use
};

}  // namespace ocl::engine
