#!/usr/bin/env python3
"""The OCL pre-training step in PyTorch on a GPU, timed: the comparison for ocl_bench on CUDA.

The step of scripts/bench_gpu.sh's C++ run written in PyTorch as one would for speed: the
independent model of scripts/make_reference.py (timm layout) with its attention through
F.scaled_dot_product_attention (flash / memory-efficient kernels), bf16 autocast for the
encoder, the loss in fp32, torch.optim.AdamW(fused=True), a fixed batch already on the device
and the mask noise drawn there. Timed eager and, where available, under torch.compile.
Prints `key=value` lines like ocl_bench.

    python3 scripts/bench_gpu.py --img 224 --patch 16 --dim 1024 --depth 24 --heads 16 \
        --batch 256 --mask-ratio 0.4 --steps 20 --warmup 5
    python3 scripts/bench_gpu.py --device cpu --dim 192 --depth 2 --heads 3 --batch 8 --steps 2
                                  (a smoke run without a GPU; on PyTorch 1.x, which has no
                                  SDPA, with the explicit attention, said as attention=explicit)
"""
import argparse
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_reference  # noqa: E402  (the independent reference model)


def sdpa_forward(self, x):
    """make_reference.Attention.forward through SDPA instead of the explicit softmax."""
    B, T, D = x.shape
    q, k, v = self.qkv(x).reshape(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
    return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, D))


def contrastive_loss(a, b, scale, kappa):
    """make_reference.contrastive's loss (T-SP logits, symmetric cross-entropy) with the labels
    on the inputs' device and without the figures."""
    a_n, b_n = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    labels = torch.arange(a.shape[0], device=a.device)
    z_ab = scale * (make_reference.tsp(a_n @ b_n.t(), kappa) + 1) / 2
    z_ba = scale * (make_reference.tsp(b_n @ a_n.t(), kappa) + 1) / 2
    return (F.cross_entropy(z_ab, labels) + F.cross_entropy(z_ba, labels)) / 2


def has_sdpa():
    return hasattr(F, "scaled_dot_product_attention")  # PyTorch >= 2.0


def build(a, device):
    if has_sdpa():  # else make_reference's explicit softmax attention (a smoke run on 1.x)
        make_reference.Attention.forward = sdpa_forward
    torch.manual_seed(0)
    cfg = dict(img_size=a.img, patch_size=a.patch, embed_dim=a.dim, depth=a.depth,
               num_heads=a.heads)
    enc = make_reference.ViT(cfg).float()
    enc.pos_embed = enc.pos_embed.float()
    for param in enc.patch_embed.parameters():
        param.requires_grad_(False)  # frozen patch embedding, as ocl's default
    enc.to(device)
    logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07), device=device))
    params = [q for q in enc.parameters() if q.requires_grad] + [logit_scale]
    fused = a.fused
    try:
        opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05, fused=fused)
    except (RuntimeError, TypeError) as e:  # fused=... unknown (< 2.0) or not for this device
        print(f"fused_adamw=unavailable reason={type(e).__name__}")
        fused = False
        opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
    return enc, logit_scale, opt, fused


def make_step(a, device, enc, logit_scale, opt):
    N = (a.img // a.patch) ** 2
    keep = int(math.floor(N * (1 - a.mask_ratio) / 2)) * 2
    images = torch.randn(a.batch, 3, a.img, a.img, device=device)

    def forward_loss(noise):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.bf16):
            with torch.no_grad():  # frozen: forward only, as ocl
                tokens = enc.patch_embed(images)
            tokens = tokens + enc.pos_embed[:, 1:]
            ids = torch.argsort(noise, dim=1)
            ids_a, ids_b = ids[:, : keep // 2], ids[:, keep // 2: keep]
            take = lambda i: torch.gather(tokens, 1, i[:, :, None].expand(-1, -1, a.dim))
            cls = enc.encode(torch.cat([take(ids_a), take(ids_b)], 0))[:, 0]
        scale = logit_scale.exp().clamp(max=100.0)
        return contrastive_loss(cls[: a.batch].float(), cls[a.batch:].float(), scale, a.kappa)

    def step(fn):
        opt.zero_grad(set_to_none=True)
        loss = fn(torch.rand(a.batch, N, device=device))
        loss.backward()
        opt.step()
        return loss.item()  # the host sync every real step has, as ocl_bench

    return forward_loss, step


def timed(a, device, step, fn, label):
    for _ in range(a.warmup):
        step(fn)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step(fn)
    secs = time.perf_counter() - t0
    line = (f"mode={label} step_ms={1e3 * secs / a.steps:.2f} "
            f"img_per_s={a.steps * a.batch / secs:.2f} last_loss={loss:.4f}")
    if device.type == "cuda":
        line += f" peak_mem_gib={torch.cuda.max_memory_allocated() / 2**30:.3f}"
    print(line, flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, default in [("img", 224), ("patch", 16), ("dim", 768), ("depth", 12), ("heads", 12),
                          ("batch", 128), ("steps", 20), ("warmup", 5)]:
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--mask-ratio", type=float, default=0.3)
    p.add_argument("--kappa", type=float, default=64.0)
    p.add_argument("--device", default="cuda")
    p.add_argument("--no-bf16", dest="bf16", action="store_false", help="fp32 instead of bf16")
    p.add_argument("--no-fused", dest="fused", action="store_false", help="for-loop AdamW")
    p.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                   help="also time the step under torch.compile (auto: where it exists)")
    a = p.parse_args()
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_gpu.py: no CUDA device (use --device cpu for a smoke run)")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # as ocl's fp32 parts on CUDA
        torch.backends.cudnn.allow_tf32 = True
    enc, logit_scale, opt, fused = build(a, device)
    print(f"pytorch={torch.__version__} device={device} bf16={int(a.bf16)} "
          f"fused_adamw={int(fused)} attention={'sdpa' if has_sdpa() else 'explicit'} "
          f"batch={a.batch}", flush=True)
    forward_loss, step = make_step(a, device, enc, logit_scale, opt)
    timed(a, device, step, forward_loss, "eager")
    if a.compile == "off":
        return
    if not hasattr(torch, "compile"):
        if a.compile == "on":
            sys.exit("bench_gpu.py: this PyTorch has no torch.compile")
        print("mode=compile unavailable=no_torch_compile")
        return
    try:
        timed(a, device, step, torch.compile(forward_loss), "compile")
    except Exception as e:  # a missing compiler (Triton, a C++ toolchain) is not fatal in auto
        if a.compile == "on":
            raise
        print(f"mode=compile unavailable={type(e).__name__}")


if __name__ == "__main__":
    main()
