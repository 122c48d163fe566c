#!/usr/bin/env python3
"""ocl's encoder weights loaded into timm give ocl's features: a cross-check against timm.

Loads an ocl encoder.safetensors (timm VisionTransformer names) into timm.create_model(...)
strictly, runs the input images that `ocl_knn --save-features F --save-inputs N` saved
(val_inputs: normalised [N, 3, H, W], exactly what ocl's encoder saw) through it, and compares
timm's CLS output after the final norm, L2-normalised, with ocl's val_features rows. Run
ocl_knn in fp32 without TF32 (--set train.precision=fp32 --set train.tf32=false) for a tight
comparison; this script turns TF32 off on its side too.

    python3 scripts/timm_check.py --encoder runs/x/checkpoint-last/encoder.safetensors \
        --features feats.safetensors --arch vit_base_patch16_224
    python3 scripts/timm_check.py ... --arch custom:32,4,128,4,4   (img, patch, dim, depth, heads)

An encoder pre-trained with model.input_norm: patch records it in its file's metadata
("ocl.input_norm", "ocl.input_norm_eps"); timm's ViT has no such step, so the inputs go through
standardize_patches below first (the few lines a Python user of such weights needs too).

Exits 0 when every row agrees within --tolerance (max |difference| of unit vectors), 1 if not.
"""
import argparse
import sys

import torch
import torch.nn.functional as F
import timm
from safetensors import safe_open
from safetensors.torch import load_file


def standardize_patches(images, patch_size, eps):
    """model.input_norm: patch. Every patch_size x patch_size patch of every channel of images
    [B, C, H, W] (normalised as ocl and timm do) to (x - mean) / sqrt(var + eps) over its own
    pixels, var biased."""
    b, c, h, w = images.shape
    p = patch_size
    x = images.reshape(b, c, h // p, p, w // p, p)
    mean = x.mean(dim=(3, 5), keepdim=True)
    var = x.var(dim=(3, 5), unbiased=False, keepdim=True)
    return ((x - mean) / torch.sqrt(var + eps)).reshape(b, c, h, w)


def build(arch):
    if arch.startswith("custom:"):
        img, patch, dim, depth, heads = (int(v) for v in arch[len("custom:"):].split(","))
        from timm.models.vision_transformer import VisionTransformer
        return VisionTransformer(img_size=img, patch_size=patch, embed_dim=dim, depth=depth,
                                 num_heads=heads, num_classes=0, global_pool="token")
    return timm.create_model(arch, pretrained=False, num_classes=0, global_pool="token")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--encoder", required=True, help="ocl's encoder.safetensors")
    p.add_argument("--features", required=True, help="ocl_knn --save-features output")
    p.add_argument("--arch", default="vit_base_patch16_224",
                   help="a timm model name, or custom:img,patch,dim,depth,heads")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tolerance", type=float, default=1e-4)
    a = p.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = build(a.arch)
    weights = load_file(a.encoder)
    result = model.load_state_dict(weights, strict=False)
    if result.missing_keys or result.unexpected_keys:
        print(f"timm_check: {a.encoder} does not match timm's {a.arch}: missing "
              f"{result.missing_keys}, unexpected {result.unexpected_keys}")
        return 1
    saved = load_file(a.features)
    if "val_inputs" not in saved:
        print(f"timm_check: {a.features} has no val_inputs (run ocl_knn with --save-inputs N)")
        return 1
    inputs = saved["val_inputs"].float()
    with safe_open(a.encoder, framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("ocl.input_norm", "none") == "patch":
        eps = float(meta["ocl.input_norm_eps"])
        patch = model.patch_embed.patch_size[0]
        inputs = standardize_patches(inputs, patch, eps)
        print(f"timm_check: {a.encoder} reads standardised patches (model.input_norm: patch, "
              f"eps {eps:g}): inputs standardised per {patch}x{patch} patch")
    ocl_rows = saved["val_features"][: inputs.shape[0]].float()
    model = model.eval().to(a.device)
    with torch.no_grad():
        timm_rows = F.normalize(model.forward_features(inputs.to(a.device))[:, 0].float(), dim=-1)
    timm_rows = timm_rows.cpu()
    diff = (timm_rows - ocl_rows).abs().max().item()
    cosine = (timm_rows * ocl_rows).sum(-1).min().item()
    ok = diff <= a.tolerance
    print(f"timm {timm.__version__} {a.arch} on {a.device}: {inputs.shape[0]} images "
          f"{tuple(inputs.shape[1:])}, {len(weights)} tensors loaded strictly")
    print(f"{'agrees' if ok else 'DIFFERS'}: max |timm - ocl| {diff:.2e} (tolerance "
          f"{a.tolerance:.0e}), lowest cosine {cosine:.6f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
