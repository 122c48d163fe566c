#!/usr/bin/env python3
"""Writes tests/fixtures/photometric_reference.safetensors: torchvision's photometric
augmentations on PIL RGB images, for tests/unit/test_photometric.cpp (ocl/data/photometric.h).

Every output is torchvision.transforms.functional called on a PIL image, as ColorJitter,
RandomGrayscale, GaussianBlur and RandomSolarize call it inside a BYOL / MoCo v3 pipeline:
  adjust_brightness / adjust_contrast / adjust_saturation (Pillow's ImageEnhance),
  adjust_hue (Pillow's HSV), rgb_to_grayscale(num_output_channels=3), gaussian_blur
  (float32 kernel, reflect padding, rounded), solarize; and two ColorJitter compositions in a
  given order with given factors. Two source images: make_augment_reference.py's structured
  one (gradients, a checker, a bright patch, a dark stripe) and one that sweeps every hue at
  several saturations and values (so the HSV round trip meets all six sectors).
Tensors (uint8, [H, W, 3]): "input.<image>", and "<case>.<image>" for each case; the metadata's
"cases" lists "name:arg1:arg2..." entries (comma separated) the C++ test replays.

Run with Debian's torchvision (apt install python3-torchvision):
  /usr/bin/python3 scripts/make_photometric_reference.py
Bump FORMAT_VERSION whenever the contents change; the C++ test checks it.
"""
import colorsys
import os
import sys
import warnings

import numpy as np
import PIL
import torch
import torchvision
import torchvision.transforms.functional as F
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_augment_reference import source_image as structured_image  # noqa: E402
from safetensors_writer import save_safetensors  # noqa: E402

FORMAT_VERSION = "1"
OUT = os.path.join(HERE, "..", "tests", "fixtures", "photometric_reference.safetensors")


def hue_sweep_image():
    """Columns sweep the hue circle, rows step through saturation and value (18 x 48), plus a
    grey row (saturation 0) and pure primaries at the corners."""
    h, w = 18, 48
    img = np.zeros((h, w, 3), dtype=np.uint8)
    for yy in range(h):
        s = [1.0, 0.8, 0.55, 0.3, 0.1, 0.0][yy % 6]
        v = [1.0, 0.75, 0.45][yy // 6]
        for xx in range(w):
            rgb = colorsys.hsv_to_rgb(xx / w, s, v)
            img[yy, xx] = [int(round(255 * c)) for c in rgb]
    img[0, 0], img[0, -1], img[-1, 0], img[-1, -1] = (255, 0, 0), (0, 255, 0), (0, 0, 255), (7, 3, 250)
    return img


def cases():
    """(name, args, fn(pil) -> pil)."""
    out = []
    for f in (0.0, 0.6, 1.0, 1.4):
        out.append((f"brightness_{f}", [f], lambda im, f=f: F.adjust_brightness(im, f)))
    for f in (0.0, 0.6, 1.4, 2.0):
        out.append((f"contrast_{f}", [f], lambda im, f=f: F.adjust_contrast(im, f)))
    for f in (0.0, 0.8, 1.2, 3.0):
        out.append((f"saturation_{f}", [f], lambda im, f=f: F.adjust_saturation(im, f)))
    for f in (-0.5, -0.1, -0.037, 0.0, 0.02, 0.1, 0.25, 0.5):
        out.append((f"hue_{f}", [f], lambda im, f=f: F.adjust_hue(im, f)))
    out.append(("grayscale", [], lambda im: F.rgb_to_grayscale(im, num_output_channels=3)))
    for k, s in ((3, 0.1), (3, 1.0), (5, 0.7), (5, 2.0), (9, 1.3), (23, 2.0)):
        out.append((f"blur_{k}_{s}", [k, s], lambda im, k=k, s=s: F.gaussian_blur(im, [k, k], [s, s])))
    for t in (0, 128, 200):
        out.append((f"solarize_{t}", [t], lambda im, t=t: F.solarize(im, t)))

    # ColorJitter's loop with fixed order and factors (brightness, contrast, saturation, hue).
    def jitter(order, factors):
        def fn(im):
            ops = [F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue]
            for i in order:
                im = ops[i](im, factors[i])
            return im
        return fn
    out.append(("jitter_3012", [3, 0, 1, 2, 1.3, 0.7, 1.15, -0.08],
                jitter([3, 0, 1, 2], [1.3, 0.7, 1.15, -0.08])))
    out.append(("jitter_1230", [1, 2, 3, 0, 0.65, 1.35, 0.85, 0.1],
                jitter([1, 2, 3, 0], [0.65, 1.35, 0.85, 0.1])))
    return out


def main():
    images = {"structured": structured_image(), "hues": hue_sweep_image()}
    tensors = {f"input.{k}": torch.from_numpy(v.copy()) for k, v in images.items()}
    entries = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numpy's negative float -> uint8 cast in adjust_hue
        for name, args, fn in cases():
            for key, src in images.items():
                result = np.asarray(fn(Image.fromarray(src, "RGB")).convert("RGB"), dtype=np.uint8)
                assert result.shape == src.shape, name
                tensors[f"{name}.{key}"] = torch.from_numpy(result.copy())
            entries.append(":".join([name] + [repr(float(a)) for a in args]))
    meta = {"format_version": FORMAT_VERSION, "pillow": PIL.__version__,
            "torchvision": torchvision.__version__, "numpy": np.__version__,
            "images": ",".join(images), "cases": ",".join(entries)}
    save_safetensors(OUT, tensors, meta)
    print(f"wrote {os.path.normpath(OUT)}: {len(entries)} cases x {len(images)} images, "
          f"{os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
