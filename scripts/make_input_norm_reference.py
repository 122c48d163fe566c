#!/usr/bin/env python3
"""Writes tests/fixtures/input_norm_reference.safetensors: the per-patch input standardisation of
model.input_norm: patch (ocl::nn::standardize_patches) and the patch embedding that reads it,
computed by PyTorch in float64, for tests/reference/test_input_norm.cpp.

Every p x p patch of every channel becomes (x - mean) / sqrt(var + eps) over its own pixels, var
the biased variance. PyTorch computes it here with Tensor.unfold (the patches as the last two
dimensions), not with the reshape the C++ side uses. The images, two 3 x 16 x 16 at patch 4, hold
the cases that matter: random pixels, a flat patch (standardises to exactly 0), a smooth ramp (a
small variance that eps keeps small) and a hard edge (a large one that becomes ~unit variance).
Two eps values: 0.25 (the default) and 1e-3. Then tokens = conv2d(standardised, weight, bias,
stride p) flattened to [B, N, D], with a random weight and bias.

Run with Debian's PyTorch (python3-torch):  /usr/bin/python3 scripts/make_input_norm_reference.py
Bump FORMAT_VERSION whenever the contents change; the C++ test checks it.
"""
import argparse
import os

import torch
import torch.nn.functional as F

from safetensors_writer import save_safetensors

FORMAT_VERSION = "1"
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "input_norm_reference.safetensors")
PATCH, SIZE, DIM = 4, 16, 8
EPS = {"default": 0.25, "small": 1e-3}


def images():
    g = torch.Generator().manual_seed(20261128)
    x = torch.randn(2, 3, SIZE, SIZE, generator=g, dtype=torch.float64)
    x[0, :, 0:4, 0:4] = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64).view(3, 1, 1)  # flat
    ramp = torch.arange(PATCH, dtype=torch.float64) * 0.02  # a gentle gradient along x
    x[0, :, 4:8, 8:12] = 0.5 + ramp.view(1, 1, PATCH)
    edge = torch.zeros(PATCH, PATCH, dtype=torch.float64)
    edge[:, 2:] = 3.0  # half dark, half bright
    x[1, :, 12:16, 4:8] = -1.0 + edge
    return x


def standardize(x, p, eps):
    # [B, C, h, w, p, p] by unfolding rows then columns: the patches' pixels last.
    u = x.unfold(2, p, p).unfold(3, p, p)
    mean = u.mean(dim=(-2, -1), keepdim=True)
    var = u.var(dim=(-2, -1), unbiased=False, keepdim=True)
    z = (u - mean) / torch.sqrt(var + eps)
    b, c, h, w = z.shape[:4]
    return z.permute(0, 1, 2, 4, 3, 5).reshape(b, c, h * p, w * p)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    torch.manual_seed(7)
    x = images()
    weight = torch.randn(DIM, 3, PATCH, PATCH, dtype=torch.float64) * 0.1
    bias = torch.randn(DIM, dtype=torch.float64) * 0.1
    tensors = {"images": x, "proj.weight": weight, "proj.bias": bias}
    for name, eps in EPS.items():
        z = standardize(x, PATCH, eps)
        tensors[f"standardized_{name}"] = z
        tensors[f"tokens_{name}"] = F.conv2d(z, weight, bias, stride=PATCH).flatten(2).transpose(1, 2)
    meta = {"format_version": FORMAT_VERSION, "patch_size": str(PATCH),
            "torch_version": torch.__version__}
    for name, eps in EPS.items():
        meta[f"eps_{name}"] = repr(eps)
    save_safetensors(args.out, tensors, meta)
    print(f"wrote {args.out}: {', '.join(sorted(tensors))}")


if __name__ == "__main__":
    main()
