// A pre-training rank whose replica drifts, for Distributed.ReplicaCheckStopsRanksThatDiverged:
// ocl_pretrain's run (the launch from torchrun's variables, the config with --set overrides)
// with the loop's before_optimizer_step seam nudging the first trainable parameter of rank
// --diverge-rank by 1e-3 before its first update. Replicas of one config and build do not drift
// apart on a CPU by themselves, and the production loop carries no fault injection.
//
//   ocl_test_diverging_rank --diverge-rank 1 --config tiny.yaml [--set key=value ...]
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

#include <torch/torch.h>

#include <ocl/distributed/launch.h>
#include <ocl/engine/pretrain.h>
#include <ocl/io/config.h>

int main(int argc, char** argv) {
  std::string config_path;
  std::vector<std::string> overrides;
  int64_t diverge_rank = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--config") {
      config_path = value;
    } else if (flag == "--set") {
      overrides.push_back(value);
    } else if (flag == "--diverge-rank") {
      diverge_rank = std::atoll(value.c_str());
    } else {
      std::fprintf(stderr, "ocl_test_diverging_rank: unknown option %s\n", flag.c_str());
      return 2;
    }
  }
  try {
    ocl::engine::PretrainOptions options;
    options.launch = ocl::distributed::launch_from_environment();
    bool nudged = false;
    options.before_optimizer_step = [&](int64_t, const std::vector<torch::Tensor>& params) {
      if (nudged || options.launch.rank != diverge_rank || params.empty()) return;
      torch::NoGradGuard no_grad;
      params[0].add_(1e-3);
      nudged = true;
    };
    ocl::engine::Pretrainer trainer(ocl::io::load_config(config_path, overrides), options);
    trainer.run();
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ocl_test_diverging_rank: error: %s\n", e.what());
    return 1;
  }
}
