#!/usr/bin/env python3
"""Writes tests/fixtures/ocl_reference.safetensors: the OCL step of a tiny ViT computed by
PyTorch in float64, for tests/reference/test_reference.cpp.

The model here is written independently of the C++ code, from the method as docs/method.md
states it (timm's ViT layout, MAE's sin-cos positions and random masking, the T-SP loss). It
stores the inputs, the weights, the mask noise and indices, the CLS outputs, the loss and its
figures, the gradient of every parameter, plus position-table, global-negative and
independent-group-view cases.

Run with Debian's PyTorch (python3-torch):  /usr/bin/python3 scripts/make_reference.py
Bump FORMAT_VERSION whenever the contents change; the C++ test checks it.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from safetensors_writer import save_safetensors

FORMAT_VERSION = "2"
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "ocl_reference.safetensors")

# The tiny configuration (also written to the fixture's metadata for the C++ side).
CFG = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, batch=4,
           mask_ratio=0.25, kappa=16.0, temperature=0.07, max_logit_scale=100.0)


# ---------------------------------------------------------------- the model, timm names
def sincos_2d(dim, grid):
    """MAE's get_2d_sincos_pos_embed with a zero CLS row: first half x (column), second y."""
    def one_d(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    gw, gh = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64))
    emb = np.concatenate([one_d(dim // 2, gw), one_d(dim // 2, gh)], axis=1)
    return np.concatenate([np.zeros([1, dim]), emb], axis=0)


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(x).reshape(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(D // self.heads), dim=-1)
        return self.proj((w @ v).transpose(1, 2).reshape(B, T, D))


class Mlp(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, p, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, p, stride=p)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class ViT(nn.Module):
    def __init__(self, c):
        super().__init__()
        D, grid = c["embed_dim"], c["img_size"] // c["patch_size"]
        self.patch_embed = PatchEmbed(c["patch_size"], D)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.register_buffer("pos_embed", torch.from_numpy(sincos_2d(D, grid)).unsqueeze(0))
        self.blocks = nn.ModuleList([Block(D, c["num_heads"]) for _ in range(c["depth"])])
        self.norm = nn.LayerNorm(D, eps=1e-6)

    def encode(self, tokens):
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        x = torch.cat([cls, tokens], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


def tsp(cos, kappa):
    return (1 + cos) / (1 + (1 - cos) / kappa) - 1


def contrastive(a, b, scale, kappa, a_all=None, b_all=None, offset=0):
    a_n, b_n = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    a_c = a_n if a_all is None else F.normalize(a_all, dim=-1)
    b_c = b_n if b_all is None else F.normalize(b_all, dim=-1)
    cos_ab, cos_ba = a_n @ b_c.t(), b_n @ a_c.t()
    labels = torch.arange(offset, offset + a.shape[0])
    z_ab = scale * (tsp(cos_ab, kappa) + 1) / 2
    z_ba = scale * (tsp(cos_ba, kappa) + 1) / 2
    loss = (F.cross_entropy(z_ab, labels) + F.cross_entropy(z_ba, labels)) / 2
    with torch.no_grad():
        pos = cos_ab.gather(1, labels[:, None])
        n = cos_ab.numel() - a.shape[0]
        figures = dict(pos_cos=pos.mean(), neg_cos=(cos_ab.sum() - pos.sum()) / n,
                       accuracy=(cos_ab.argmax(1) == labels).double().mean(),
                       temperature=1 / scale.detach())
    return loss, figures


def main():
    torch.manual_seed(20241115)
    torch.set_default_dtype(torch.float64)
    c = CFG
    B, D, N = c["batch"], c["embed_dim"], (c["img_size"] // c["patch_size"]) ** 2

    model = nn.Module()
    model.encoder = ViT(c)
    model.logit_scale = nn.Parameter(torch.tensor(math.log(1 / c["temperature"])))
    # Weights of a mid-training model, not of an initialisation: every parameter (LayerNorm
    # gains and biases included) gets a non-trivial value, so a wrong one shows in the outputs.
    with torch.no_grad():
        for name, p in model.encoder.named_parameters():
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name == "norm.weight":
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.1 * torch.randn_like(p))
            else:
                fan_in = p[0].numel() if p.dim() > 1 else 1
                p.copy_(torch.randn_like(p) / math.sqrt(fan_in))
        model.logit_scale.add_(0.3)  # not the initial value: checks it is used, not rebuilt

    images = torch.randn(B, 3, c["img_size"], c["img_size"])
    noise = torch.rand(B, N)

    # --- the OCL step (docs/method.md "The pre-training step", steps 1-6)
    enc = model.encoder
    tokens = enc.patch_embed(images) + enc.pos_embed[:, 1:]
    keep = int(math.floor(N * (1 - c["mask_ratio"]) / 2)) * 2
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_a, ids_b = ids_shuffle[:, : keep // 2], ids_shuffle[:, keep // 2: keep]
    take = lambda ids: torch.gather(tokens, 1, ids[:, :, None].expand(-1, -1, D))
    cls = enc.encode(torch.cat([take(ids_a), take(ids_b)], 0))[:, 0]
    cls_a, cls_b = cls[:B], cls[B:]
    scale = model.logit_scale.exp().clamp(max=c["max_logit_scale"])
    loss, figures = contrastive(cls_a, cls_b, scale, c["kappa"])
    loss.backward()

    t = {"input.images": images, "input.noise": noise,
         "out.ids_a": ids_a, "out.ids_b": ids_b, "out.cls_a": cls_a, "out.cls_b": cls_b,
         "out.loss": loss}
    t.update({f"out.{k}": v for k, v in figures.items()})
    for name, p in model.named_parameters():
        t[f"param.{name}"] = p
        t[f"grad.{name}"] = p.grad
    t["buffer.encoder.pos_embed"] = enc.pos_embed

    # --- whole-image features (no masking): the evaluation forward
    with torch.no_grad():
        t["out.features"] = enc.encode(tokens)

    # --- position tables: MAE layout and bicubic resampling (MAE's interpolate_pos_embed)
    t["pos.sincos_d32_g4"] = torch.from_numpy(sincos_2d(32, 4))
    t["pos.sincos_d16_g3"] = torch.from_numpy(sincos_2d(16, 3))
    table = torch.randn(1, 1 + 16, 8)
    t["pos.table_g4"] = table
    for g in (6, 3):
        grid = table[:, 1:].reshape(1, 4, 4, 8).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(g, g), mode="bicubic", align_corners=False)
        t[f"pos.table_g{g}"] = torch.cat([table[:, :1], grid.permute(0, 2, 3, 1).reshape(1, g * g, 8)], 1)

    # --- global negatives: this rank holds rows 2..3 of 6 gathered rows
    ga, gb = torch.randn(2, 8, requires_grad=True), torch.randn(2, 8, requires_grad=True)
    ga_all, gb_all = torch.randn(6, 8, requires_grad=True), torch.randn(6, 8, requires_grad=True)
    gscale = torch.tensor(10.0, requires_grad=True)
    gloss, gfig = contrastive(ga, gb, gscale, 64.0, ga_all, gb_all, offset=2)
    gloss.backward()
    t.update({"global.a": ga, "global.b": gb, "global.a_all": ga_all, "global.b_all": gb_all,
              "global.scale": gscale, "global.loss": gloss, "global.accuracy": gfig["accuracy"],
              "global.neg_cos": gfig["neg_cos"], "global.grad_a": ga.grad, "global.grad_b": gb.grad,
              "global.grad_a_all": ga_all.grad, "global.grad_b_all": gb_all.grad,
              "global.grad_scale": gscale.grad})

    # --- independent group views: group B's tokens from a second image (the same crop drawn
    # again photometrically), at the same indices; gradients by autograd.grad so that the
    # step's .grad above stays as it is.
    images_b = torch.randn(B, 3, c["img_size"], c["img_size"])
    take_from = lambda x, ids: torch.gather(
        enc.patch_embed(x) + enc.pos_embed[:, 1:], 1, ids[:, :, None].expand(-1, -1, D))
    vcls = enc.encode(torch.cat([take_from(images, ids_a), take_from(images_b, ids_b)], 0))[:, 0]
    vscale = model.logit_scale.exp().clamp(max=c["max_logit_scale"])
    vloss, vfig = contrastive(vcls[:B], vcls[B:], vscale, c["kappa"])
    names, params = zip(*model.named_parameters())
    vgrads = torch.autograd.grad(vloss, params)
    t.update({"views.images_b": images_b, "views.cls_a": vcls[:B], "views.cls_b": vcls[B:],
              "views.loss": vloss, "views.accuracy": vfig["accuracy"]})
    t.update({f"views.grad.{n}": g for n, g in zip(names, vgrads)})

    meta = {"format_version": FORMAT_VERSION, "generator": "scripts/make_reference.py",
            "torch_version": torch.__version__, "global_offset": "2", "global_kappa": "64"}
    meta.update({k: repr(v) for k, v in c.items()})
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    save_safetensors(OUT, t, meta)
    print(f"wrote {os.path.relpath(OUT)}: {len(t)} tensors, loss {loss.item():.12f}, "
          f"format {FORMAT_VERSION}, torch {torch.__version__}")


if __name__ == "__main__":
    sys.exit(main())
