#!/usr/bin/python3
"""The OCL pre-training step in PyTorch (Python), timed: the comparison for ocl_bench.

The model is scripts/make_reference.py's independent PyTorch OCL (timm layout, explicit
softmax attention as LibTorch 1.13 has no SDPA), in float32, with torch.optim.AdamW; the same
sizes, threads and batch as the C++ run. Prints `key=value` lines like ocl_bench.

    /usr/bin/python3 scripts/bench_pretrain.py --img 224 --patch 16 --dim 384 --depth 12 \
        --heads 6 --batch 32 --mask-ratio 0.3 --threads 2 --steps 10 --warmup 2
"""
import argparse
import math
import os
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_reference import ViT, contrastive  # noqa: E402  (the independent reference model)


def main():
    p = argparse.ArgumentParser()
    for name, default in [("img", 224), ("patch", 16), ("dim", 384), ("depth", 12), ("heads", 6),
                          ("batch", 32), ("threads", 0), ("steps", 10), ("warmup", 2)]:
        p.add_argument(f"--{name}", type=int, default=default)
    p.add_argument("--mask-ratio", type=float, default=0.3)
    p.add_argument("--kappa", type=float, default=64.0)
    p.add_argument("--bf16", action="store_true", help="CPU bf16 autocast")
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = dict(img_size=a.img, patch_size=a.patch, embed_dim=a.dim, depth=a.depth, num_heads=a.heads)
    enc = ViT(cfg).float()
    enc.pos_embed = enc.pos_embed.float()
    for param in enc.patch_embed.parameters():
        param.requires_grad_(False)  # frozen patch embedding, as ocl's default
    logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    params = [q for q in enc.parameters() if q.requires_grad] + [logit_scale]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.05)
    N = (a.img // a.patch) ** 2
    keep = int(math.floor(N * (1 - a.mask_ratio) / 2)) * 2
    images = torch.randn(a.batch, 3, a.img, a.img)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
            tokens = enc.patch_embed(images) + enc.pos_embed[:, 1:]
            ids = torch.argsort(torch.rand(a.batch, N), dim=1)
            ids_a, ids_b = ids[:, : keep // 2], ids[:, keep // 2: keep]
            take = lambda i: torch.gather(tokens, 1, i[:, :, None].expand(-1, -1, a.dim))
            cls = enc.encode(torch.cat([take(ids_a), take(ids_b)], 0))[:, 0]
        scale = logit_scale.exp().clamp(max=100.0)
        loss, _ = contrastive(cls[: a.batch].float(), cls[a.batch:].float(), scale, a.kappa)
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = step()
    secs = time.perf_counter() - t0
    print(f"pytorch={torch.__version__} threads={torch.get_num_threads()}")
    print(f"step_ms={1e3 * secs / a.steps:.2f} img_per_s={a.steps * a.batch / secs:.2f} last_loss={loss:.4f}")


if __name__ == "__main__":
    main()
