// ocl: OCL (occluded image contrastive learning) pre-training of Vision Transformers in LibTorch.
//
// One pre-training step, the whole method (paper Algorithm 1):
//
//   #include <ocl/ocl.h>
//   #include <ATen/CPUGeneratorImpl.h>
//
//   auto vit = ocl::nn::vit_small_patch16();                 // timm-named ViT-S/16, 224²
//   ocl::ssl::OCL model(vit, ocl::ssl::OCLOptions().mask_ratio(0.3).kappa(64));
//   torch::optim::AdamW opt(model->parameters(), torch::optim::AdamWOptions(1.5e-4));
//   auto gen = at::make_generator<at::CPUGeneratorImpl>(/*seed=*/0);
//
//   auto images = torch::randn({8, 3, 224, 224});             // normalised [B, 3, H, W]
//   auto noise = model->draw_noise(8, gen);                   // [B, N] uniform
//   auto out = model->forward(images, noise);                 // mask, split, encode, T-SP loss
//   out.loss.backward();
//   opt.step();
//   // out.figures: pos_cos, neg_cos, accuracy, temperature (0-d tensors)
//
//   // The encoder in timm names, for Python (safetensors.torch.load_file + load_state_dict):
//   ocl::io::write_safetensors("encoder.safetensors", ocl::io::state_dict(*model->encoder));
//
// Included here: nn (ViT modules), ssl (mask-and-split, T-SP loss, the OCL model), io
// (safetensors, state dicts), compat.h; data, optim, engine, distributed: their own headers.
#pragma once

#include "ocl/compat.h"
#include "ocl/io/safetensors.h"
#include "ocl/io/state_dict.h"
#include "ocl/nn/attention.h"
#include "ocl/nn/block.h"
#include "ocl/nn/linear_probe_head.h"
#include "ocl/nn/patch_embed.h"
#include "ocl/nn/pos_embed.h"
#include "ocl/nn/vision_transformer.h"
#include "ocl/nn/weights.h"
#include "ocl/ssl/mask.h"
#include "ocl/ssl/ocl_model.h"
#include "ocl/ssl/tsp_loss.h"
