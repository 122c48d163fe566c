// Uses an installed ocl through find_package(ocl): a tiny ViT, one OCL step on random images.
// Prints the loss; exits 0 only when the loss is finite and the step produced gradients.
#include <cmath>
#include <exception>
#include <iostream>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <ocl/ocl.h>

int main() {
  try {
    torch::manual_seed(0);
    auto enc = ocl::nn::VisionTransformerOptions(/*img_size=*/32, /*patch_size=*/8,
                                                 /*embed_dim=*/32, /*depth=*/1, /*num_heads=*/2);
    ocl::ssl::OCL model(enc, ocl::ssl::OCLOptions().mask_ratio(0.25));
    auto images = torch::rand({4, 3, 32, 32});
    auto gen = at::make_generator<at::CPUGeneratorImpl>(0);
    auto out = model->forward(images, model->draw_noise(4, gen));
    out.loss.backward();

    const double loss = out.loss.item<double>();
    int64_t with_grad = 0;
    for (const auto& p : model->parameters()) {
      if (p.grad().defined()) ++with_grad;
    }
    std::cout << "ocl_consumer: loss " << loss << ", " << with_grad << " of "
              << model->parameters().size() << " parameters have gradients" << std::endl;
    if (!std::isfinite(loss)) {
      std::cerr << "ocl_consumer: loss is not finite" << std::endl;
      return 1;
    }
    if (with_grad == 0) {
      std::cerr << "ocl_consumer: backward produced no gradients" << std::endl;
      return 1;
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "ocl_consumer: " << e.what() << std::endl;
    return 1;
  }
}
