#!/usr/bin/env python3
"""Writes tests/fixtures/augment_reference.safetensors: the Pillow outputs of every RandAugment op
timm uses, at the arguments timm's level functions give for magnitude 9 (both signs where the
level function draws one), on one small structured RGB image, for tests/unit/test_rand_augment.cpp
(ocl::data::apply_augment_op).

Each op is the Pillow call timm's auto_augment.py makes (ImageOps.*, ImageEnhance.*.enhance,
Image.rotate, Image.transform(AFFINE, ...)), with fillcolor = timm's img_mean (124, 116, 104);
SolarizeAdd, which Pillow lacks, is timm's point table written out. Affine ops are written for
both of timm's resampling filters. Tensors (uint8, [H, W, 3]):
  input                     the source image
  <Op>_<case>               the op's output, e.g. Rotate_pos_bicubic, Color_low
and "args" (float64, [N]) holding each output's argument in the order of the metadata's "names"
list (comma separated).

Run with Debian's Pillow:  /usr/bin/python3 scripts/make_augment_reference.py
Bump FORMAT_VERSION whenever the contents change; the C++ test checks it.
"""
import os
import sys

import numpy as np
import PIL
import torch
from PIL import Image, ImageEnhance, ImageOps

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from safetensors_writer import save_safetensors  # noqa: E402

FORMAT_VERSION = "1"
OUT = os.path.join(HERE, "..", "tests", "fixtures", "augment_reference.safetensors")
FILL = (124, 116, 104)
HEIGHT, WIDTH = 20, 24


def source_image():
    """Gradients, a bright square, a dark stripe and a checker: every channel spans a range
    short of [0, 255] (so AutoContrast stretches), has many distinct values (Equalize moves them)
    and edges (Sharpness and the resampling filters see detail)."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    r = 30 + 7 * x + 2 * y
    g = 60 + 6 * y + ((x // 3 + y // 3) % 2) * 40
    b = 200 - 5 * x + 3 * y
    img = np.stack([r, g, b], axis=-1)
    img[5:11, 14:20] = (235, 220, 90)
    img[:, 3:5] = (20, 25, 40)
    return np.clip(img, 0, 255).astype(np.uint8)


def solarize_add(img, add, thresh=128):
    lut = [min(255, i + add) if i < thresh else i for i in range(256)]
    return img.point(lut * 3)


def cases():
    """(name, arg, fn(img) -> img) for every op and argument tested; args at m = 9 per timm's
    increasing level functions: rotate 27°, shear 0.27, translate 0.405, posterize 4 − 3 = 1 bit,
    solarize 256 − 230 = 26, solarize_add 99, enhance 1 ± 0.81."""
    out = [
        ("AutoContrast", 0.0, ImageOps.autocontrast),
        ("Equalize", 0.0, ImageOps.equalize),
        ("Invert", 0.0, ImageOps.invert),
        ("Posterize_1", 1.0, lambda im: ImageOps.posterize(im, 1)),
        ("Posterize_4", 4.0, lambda im: ImageOps.posterize(im, 4)),
        ("Solarize_26", 26.0, lambda im: ImageOps.solarize(im, 26)),
        ("Solarize_128", 128.0, lambda im: ImageOps.solarize(im, 128)),
        ("SolarizeAdd_99", 99.0, lambda im: solarize_add(im, 99)),
    ]
    enhancers = {"Color": ImageEnhance.Color, "Contrast": ImageEnhance.Contrast,
                 "Brightness": ImageEnhance.Brightness, "Sharpness": ImageEnhance.Sharpness}
    for op, cls in enhancers.items():
        # 1.81 extrapolates (Pillow clips), 0.19 and 0.5 interpolate (Pillow truncates).
        for case, factor in (("high", 1.0 + 0.81), ("low", 1.0 - 0.81), ("half", 0.5)):
            out.append((f"{op}_{case}", factor, lambda im, c=cls, f=factor: c(im).enhance(f)))
    filters = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}
    for fname, resample in filters.items():
        kw = dict(resample=resample, fillcolor=FILL)
        for case, sign in (("pos", 1.0), ("neg", -1.0)):
            deg, shear, pct = sign * 27.0, sign * 0.27, sign * 0.405
            out += [
                (f"Rotate_{case}_{fname}", deg, lambda im, d=deg, k=kw: im.rotate(d, **k)),
                (f"ShearX_{case}_{fname}", shear,
                 lambda im, s=shear, k=kw: im.transform(im.size, Image.AFFINE, (1, s, 0, 0, 1, 0), **k)),
                (f"ShearY_{case}_{fname}", shear,
                 lambda im, s=shear, k=kw: im.transform(im.size, Image.AFFINE, (1, 0, 0, s, 1, 0), **k)),
                (f"TranslateXRel_{case}_{fname}", pct,
                 lambda im, p=pct, k=kw: im.transform(
                     im.size, Image.AFFINE, (1, 0, p * im.size[0], 0, 1, 0), **k)),
                (f"TranslateYRel_{case}_{fname}", pct,
                 lambda im, p=pct, k=kw: im.transform(
                     im.size, Image.AFFINE, (1, 0, 0, 0, 1, p * im.size[1]), **k)),
            ]
    return out


def main():
    src = source_image()
    tensors = {"input": torch.from_numpy(src.copy())}
    names, args = [], []
    for name, arg, fn in cases():
        result = np.asarray(fn(Image.fromarray(src, "RGB")).convert("RGB"), dtype=np.uint8)
        assert result.shape == src.shape, name
        tensors[name] = torch.from_numpy(result.copy())
        names.append(name)
        args.append(arg)
    tensors["args"] = torch.tensor(args, dtype=torch.float64)
    meta = {"format_version": FORMAT_VERSION, "pillow": PIL.__version__, "names": ",".join(names),
            "fill": ",".join(str(v) for v in FILL)}
    save_safetensors(OUT, tensors, meta)
    print(f"wrote {os.path.normpath(OUT)}: {len(names)} outputs, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
