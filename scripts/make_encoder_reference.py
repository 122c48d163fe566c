#!/usr/bin/env python3
"""Writes tests/fixtures/encoder_reference.safetensors: pre-trained weights of a tiny ViT that went
through scripts/convert_checkpoint.py, and the CLS features PyTorch computes with them in float64,
for tests/reference/test_encoder_weights.cpp (ocl::nn::load_encoder_weights).

The weights are saved as an MAE pre-training checkpoint ({'model': encoder + decoder keys +
mask_token, 'epoch', 'args'}) in float32, as real checkpoints are, and converted by the script
under test. The model then runs in float64 on the float32 values (exact), so the C++ side, which
loads the float32 file into a float64 model, must agree to rounding. Two cases:
  - img 32 (4x4 grid, the checkpoint's own): the CLS output after the final norm;
  - img 24 (3x3 grid): pos_embed resampled bicubically (MAE's interpolate_pos_embed:
    F.interpolate on [1, D, 4, 4], align_corners=False, CLS row kept), then the same output.
pos_embed is random, not sin-cos, as a learned one (DINO, MoCo v3) is: a load that skipped it, or
rebuilt it, would show.

Run with Debian's PyTorch (python3-torch):  /usr/bin/python3 scripts/make_encoder_reference.py
Bump FORMAT_VERSION whenever the contents change; the C++ test checks it.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_reference as ref  # noqa: E402  (the timm-layout ViT and the safetensors writer)

FORMAT_VERSION = "1"
OUT = os.path.join(HERE, "..", "tests", "fixtures", "encoder_reference.safetensors")
CFG = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, images=3,
           resampled_img_size=24)


def read_safetensors(path):
    """The converted file back as {name: tensor} and its metadata (a reader as small as the
    writer: the converter is what is under test here, not this)."""
    kinds = {"F64": np.float64, "F32": np.float32, "I64": np.int64, "F16": np.float16}
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data, out = raw[8 + n:], {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        if e["dtype"] == "BF16":
            t = torch.from_numpy(np.frombuffer(data[begin:end], np.int16).copy()).view(torch.bfloat16)
        else:
            t = torch.from_numpy(np.frombuffer(data[begin:end], kinds[e["dtype"]]).copy())
        out[name] = t.reshape(e["shape"])
    return out, meta


def cls_features(model, images):
    """CLS output after the final norm: [B, 3, H, W] -> [B, D] (timm forward_features[:, 0])."""
    tokens = model.patch_embed(images) + model.pos_embed[:, 1:]
    return model.encode(tokens)[:, 0]


def resample(pos_embed, new_grid):
    """MAE's interpolate_pos_embed: [1, 1 + g*g, D] -> [1, 1 + n*n, D], CLS row kept."""
    _, rows, dim = pos_embed.shape
    g = int(round(math.sqrt(rows - 1)))
    grid = pos_embed[:, 1:].reshape(1, g, g, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new_grid, new_grid), mode="bicubic", align_corners=False)
    return torch.cat([pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, dim)], 1)


def main():
    torch.manual_seed(20250301)
    torch.set_default_dtype(torch.float64)
    c = CFG
    D, grid = c["embed_dim"], c["img_size"] // c["patch_size"]

    model = ref.ViT(c)
    # Weights of a trained model (every LayerNorm gain and bias non-trivial), rounded to float32
    # so that the float32 checkpoint holds them exactly.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("norm1.weight", "norm2.weight")) or name == "norm.weight":
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn_like(p))
            else:
                p.copy_(torch.randn_like(p) / math.sqrt(p[0].numel()))
            p.copy_(p.float().double())
        learned = model.pos_embed + 0.5 * torch.randn_like(model.pos_embed)
        model.pos_embed.copy_(learned.float().double())

    # --- an MAE pre-training checkpoint: encoder, decoder, mask token, args; float32
    sd = {k: v.float() for k, v in model.state_dict().items()}
    Dd = 16
    sd.update({"mask_token": torch.zeros(1, 1, Dd).float(),
               "decoder_embed.weight": torch.randn(Dd, D).float(),
               "decoder_embed.bias": torch.zeros(Dd).float(),
               "decoder_pos_embed": torch.randn(1, 1 + grid * grid, Dd).float(),
               "decoder_blocks.0.norm1.weight": torch.ones(Dd).float(),
               "decoder_norm.weight": torch.ones(Dd).float(),
               "decoder_pred.weight": torch.randn(c["patch_size"] ** 2 * 3, Dd).float()})
    args = argparse.Namespace(model="vit_ref_patch8", input_size=c["img_size"], mask_ratio=0.75)
    with tempfile.TemporaryDirectory() as tmp:
        pth, converted = os.path.join(tmp, "mae_ref.pth"), os.path.join(tmp, "encoder.safetensors")
        torch.save({"model": sd, "epoch": 799, "args": args}, pth)
        subprocess.run([sys.executable, os.path.join(HERE, "convert_checkpoint.py"), pth,
                        converted], check=True, stdout=subprocess.DEVNULL)
        weights, file_meta = read_safetensors(converted)
    encoder_keys = set(model.state_dict())
    assert set(weights) == encoder_keys, sorted(set(weights) ^ encoder_keys)
    for k, v in weights.items():
        assert v.dtype == torch.float32 and torch.equal(v.double(), model.state_dict()[k]), k

    # --- case 1: the checkpoint's own grid
    images = torch.randn(c["images"], 3, c["img_size"], c["img_size"]).float().double()
    with torch.no_grad():
        cls = cls_features(model, images)

    # --- case 2: a 24x24 model (3x3 grid) with the resampled positions
    small = ref.ViT(dict(c, img_size=c["resampled_img_size"]))
    g2 = c["resampled_img_size"] // c["patch_size"]
    state = {k: v.double() for k, v in weights.items()}
    state["pos_embed"] = resample(state["pos_embed"], g2)
    small.load_state_dict(state)
    images2 = torch.randn(c["images"], 3, c["resampled_img_size"],
                          c["resampled_img_size"]).float().double()
    with torch.no_grad():
        cls2 = cls_features(small, images2)

    t = {f"weights.{k}": v for k, v in weights.items()}
    # Inputs hold float32 values: stored as F32 (exact) to keep the fixture small.
    t.update({"input.images": images.float(), "input.images_resampled": images2.float(),
              "out.cls": cls, "out.cls_resampled": cls2,
              "out.pos_embed_resampled": state["pos_embed"]})
    meta = {"format_version": FORMAT_VERSION, "generator": "scripts/make_encoder_reference.py",
            "torch_version": torch.__version__,
            "weights_source": file_meta.get("source", ""),
            "weights_converted_by": file_meta.get("converted_by", "")}
    meta.update({k: repr(v) for k, v in c.items()})
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    ref.save_safetensors(OUT, t, meta)
    print(f"wrote {os.path.relpath(OUT)}: {len(t)} tensors, {os.path.getsize(OUT)} bytes, "
          f"format {FORMAT_VERSION}, torch {torch.__version__}")


if __name__ == "__main__":
    sys.exit(main())
