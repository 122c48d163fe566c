// ocl: OCL (occluded image contrastive learning) pre-training of Vision Transformers in LibTorch.
// Includes nn (ViT modules), ssl (mask-and-split, T-SP loss, the OCL model), io (safetensors,
// state dicts) and compat.h; data, optim, engine, distributed have their own headers. One OCL
// step as a program: tests/integration/find_package/main.cpp.
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
