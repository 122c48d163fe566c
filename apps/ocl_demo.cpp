// ocl_demo: runs OCL pre-training steps on a small fixed set of random images on the CPU and
// prints the loss and figures of each step. It shows the library end to end until the real
// pre-training app (ocl_pretrain) exists; with a fixed image set the loss must fall, because
// the encoder learns to tell the images apart from two disjoint occluded views of each.
#include <chrono>
#include <cmath>
#include <cstdio>

#include "app_common.h"
#include <ATen/CPUGeneratorImpl.h>
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <ocl/ocl.h>

int main(int argc, char** argv) {
  CLI::App app{"ocl_demo: OCL pre-training steps on random images (CPU)"};
  int64_t steps = 30, batch = 32, images = 64, img_size = 32, patch = 4, dim = 96, depth = 4,
          heads = 3, threads = 0, seed = 0;
  double mask_ratio = 0.3, lr = 1e-3, kappa = 64.0;
  app.add_option("--steps", steps, "optimisation steps")->check(ocl::apps::at_least(1));
  app.add_option("--batch", batch, "images per step")->check(CLI::Range(2, 4096));
  app.add_option("--images", images, "size of the fixed random image set")
      ->check(ocl::apps::at_least(1));
  app.add_option("--img-size", img_size, "image side in pixels")->check(ocl::apps::at_least(1));
  app.add_option("--patch", patch, "patch side in pixels")->check(ocl::apps::at_least(1));
  app.add_option("--dim", dim, "ViT width")->check(ocl::apps::at_least(1));
  app.add_option("--depth", depth, "ViT blocks")->check(ocl::apps::at_least(1));
  app.add_option("--heads", heads, "attention heads")->check(ocl::apps::at_least(1));
  app.add_option("--mask-ratio", mask_ratio, "global mask ratio r")->check(CLI::Range(0.0, 0.99));
  app.add_option("--kappa", kappa, "T-SP concentration")->check(ocl::apps::positive());
  app.add_option("--lr", lr, "AdamW learning rate")->check(ocl::apps::positive());
  app.add_option("--threads", threads, "intra-op threads (0: LibTorch's default)");
  app.add_option("--seed", seed, "seed of images, weights and masks");
  if (auto code = ocl::apps::parse_command_line(app, argc, argv)) return *code;

  try {
    torch::manual_seed(static_cast<uint64_t>(seed));
    if (threads > 0) torch::set_num_threads(static_cast<int>(threads));
    auto vit = ocl::nn::VisionTransformerOptions(img_size, patch, dim, depth, heads);
    ocl::ssl::OCL model(vit, ocl::ssl::OCLOptions().mask_ratio(mask_ratio).kappa(kappa));
    std::vector<torch::Tensor> trainable;
    for (const auto& p : model->parameters())
      if (p.requires_grad()) trainable.push_back(p);
    torch::optim::AdamW opt(trainable,
                            torch::optim::AdamWOptions(lr).betas({0.9, 0.95}).weight_decay(0.05));
    auto gen = at::make_generator<at::CPUGeneratorImpl>(static_cast<uint64_t>(seed));
    auto data = torch::randn({images, 3, img_size, img_size}, gen);

    std::printf(
        "ocl_demo: LibTorch %s, %d threads, ViT %lldx%lld/%lld D%lld depth %lld, r %.2f "
        "(%lld tokens per group), batch %lld of %lld fixed random images\n",
        ocl::compat::torch_version().c_str(), torch::get_num_threads(), (long long)img_size,
        (long long)img_size, (long long)patch, (long long)dim, (long long)depth, mask_ratio,
        (long long)model->tokens_per_group(), (long long)batch, (long long)images);
    double first = 0, last = 0;
    const auto start = std::chrono::steady_clock::now();
    for (int64_t step = 0; step < steps; ++step) {
      auto idx = torch::randperm(images, gen).narrow(0, 0, std::min(batch, images));
      auto out = model->forward(data.index_select(0, idx), model->draw_noise(idx.size(0), gen));
      ocl::compat::zero_grad(trainable);
      out.loss.backward();
      opt.step();
      last = out.loss.item<double>();
      if (step == 0) first = last;
      TORCH_CHECK(std::isfinite(last), "non-finite loss ", last, " at step ", step);
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf("step %3lld  loss %.4f  acc %.3f  pos_cos %.3f  neg_cos %.3f  T %.4f  %.1f s\n",
                  (long long)step, last, out.figures.accuracy.item<double>(),
                  out.figures.pos_cos.item<double>(), out.figures.neg_cos.item<double>(),
                  out.figures.temperature.item<double>(), secs);
    }
    std::printf("loss: first %.4f, last %.4f\n", first, last);
    return 0;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "ocl_demo: error: %s\n", e.what_without_backtrace());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ocl_demo: error: %s\n", e.what());
  }
  return 1;
}
