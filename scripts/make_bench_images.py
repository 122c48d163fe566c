#!/usr/bin/env python3
"""Writes an ImageFolder of photograph-like JPEGs for the data-loading benchmark
(scripts/bench_data.sh): OUT/train/class_XX/img_NNNNN.jpg and a small OUT/val.

Each image is about 500x375 (times --scale; sizes vary by +-20 %, a quarter of them portrait), quality 90, with
the statistics that make a JPEG cost what a photograph costs to decode: smooth shading and large
blobs of colour (low frequencies), texture at several scales, edges, and sensor-like noise. The
files come out around 95 KB on average (ImageNet's average about 110 KB).

    /usr/bin/python3 scripts/make_bench_images.py /tmp/bench-folder --count 1200
"""
import argparse
import os

import numpy as np
from PIL import Image


def photo_like(rng, height, width):
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = np.zeros((height, width, 3), np.float32)
    base = rng.uniform(40, 200, 3)
    img += base
    # Shading: a few slow waves per channel.
    for _ in range(4):
        fy, fx = rng.uniform(0.2, 2.0, 2) * 2 * np.pi / np.array([height, width])
        phase = rng.uniform(0, 2 * np.pi)
        amp = rng.uniform(10, 40, 3)
        img += np.sin(fy * y + fx * x + phase)[..., None] * amp
    # Objects: soft and hard-edged blobs of other colours.
    for _ in range(rng.integers(3, 9)):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        r = rng.uniform(0.05, 0.3) * min(height, width)
        d = np.sqrt((y - cy) ** 2 + (x - cx) ** 2) / r
        mask = np.clip(1.5 - d, 0, 1) if rng.random() < 0.5 else (d < 1).astype(np.float32)
        img = img * (1 - mask[..., None]) + mask[..., None] * rng.uniform(0, 255, 3)
    # Texture at two scales, then noise.
    for scale in (3.0, 11.0):
        small = rng.normal(0, 1, (int(height / scale) + 2, int(width / scale) + 2, 3))
        up = np.asarray(Image.fromarray(((small * 30 + 128).clip(0, 255)).astype(np.uint8))
                        .resize((width, height), Image.BICUBIC), np.float32) - 128
        img += up * rng.uniform(0.5, 1.0)
    img += rng.normal(0, 12, img.shape)
    return img.clip(0, 255).astype(np.uint8)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out")
    parser.add_argument("--count", type=int, default=1200, help="training images")
    parser.add_argument("--val", type=int, default=100, help="validation images")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="size multiplier (2: about 1000x750, for the reduced-scale decode)")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    total = 0
    for split, count in (("train", args.count), ("val", args.val)):
        for i in range(count):
            cls = i % args.classes
            folder = os.path.join(args.out, split, f"class_{cls:02d}")
            os.makedirs(folder, exist_ok=True)
            h, w = (np.array([375, 500]) * args.scale * rng.uniform(0.8, 1.2)).astype(int)
            if rng.random() < 0.25:
                h, w = w, h
            path = os.path.join(folder, f"img_{i:05d}.jpg")
            Image.fromarray(photo_like(rng, int(h), int(w))).save(path, quality=90)
            total += os.path.getsize(path)
    n = args.count + args.val
    print(f"wrote {n} images to {args.out}: {total / n / 1024:.0f} KB on average")


if __name__ == "__main__":
    main()
