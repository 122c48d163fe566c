#!/usr/bin/env python3
"""Converts a PyTorch ViT checkpoint (MAE, MoCo v3, DINO, timm, ...) into a safetensors file in
timm names, the format `--weights PATH` of the ocl evaluation apps reads
(ocl::nn::load_encoder_weights).

    /usr/bin/python3 scripts/convert_checkpoint.py IN.pth OUT.safetensors [--keep-head] [--force]

What it does:
  - finds the state dict: the top level, or under 'model' (MAE, timm), 'state_dict' (MoCo v3),
    'teacher' (DINO: the teacher is the model DINO evaluates), 'student', 'module';
  - strips the prefixes 'module.' (DistributedDataParallel), 'backbone.' (DINO), 'encoder.',
    'base_encoder.' (MoCo v3's 'module.base_encoder.');
  - drops MAE's decoder ('decoder_*', 'mask_token'), MoCo v3's momentum encoder and predictor
    ('momentum_encoder.*', 'predictor.*') and, unless --keep-head, 'head.*' (MoCo's and DINO's
    heads are projection MLPs, not classifiers; evaluation trains a new head anyway);
  - writes every remaining tensor as contiguous CPU data, keeping its dtype (F64 F32 BF16 F16 I64).

Only needs PyTorch (no safetensors package): the file is written by hand, like
scripts/make_reference.py does. Exits non-zero with a message when the input holds no ViT state
dict (no 'patch_embed.proj.weight' after stripping) or OUT exists (unless --force).
"""
import argparse
import collections
import json
import os
import pickle
import sys

import torch

from safetensors_writer import DTYPES, save_safetensors

CONTAINERS = ("model", "state_dict", "teacher", "student", "module")
PREFIXES = ("module.", "backbone.", "encoder.", "base_encoder.")
DROPPED = ("decoder_", "mask_token", "momentum_encoder.", "predictor.")
MARKER = "patch_embed.proj.weight"


def fail(message):
    sys.exit(f"convert_checkpoint: error: {message}")


# ---------------------------------------------------------------- reading the checkpoint
def load(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except TypeError:  # PyTorch < 1.13 has no weights_only and always unpickles everything
        return torch.load(path, map_location="cpu")
    except pickle.UnpicklingError:
        # MAE and MoCo v3 pickle their argparse.Namespace ('args') next to the weights, which
        # weights_only refuses. Unpickling runs code from the file: only convert files you trust.
        print(f"note: {path} holds Python objects besides tensors; loading it with "
              "weights_only=False (only do this for files you trust)")
        return torch.load(path, map_location="cpu", weights_only=False)


def strip(name):
    """'module.base_encoder.blocks.0...' -> 'blocks.0...', returning the prefixes removed."""
    removed = []
    changed = True
    while changed:
        changed = False
        for p in PREFIXES:
            if name.startswith(p):
                name, changed = name[len(p):], True
                removed.append(p)
    return name, removed


def is_vit(d):
    return isinstance(d, dict) and any(isinstance(k, str) and strip(k)[0] == MARKER for k in d)


def find_state_dict(obj):
    """(state dict, where it was found), looking one and two container levels deep."""
    if is_vit(obj):
        return obj, "the top level"
    if isinstance(obj, dict):
        for key in CONTAINERS:
            inner = obj.get(key)
            if is_vit(inner):
                return inner, f"'{key}'"
            if isinstance(inner, dict):
                for key2 in CONTAINERS:
                    if is_vit(inner.get(key2)):
                        return inner[key2], f"'{key}' -> '{key2}'"
    return None, None


def group(name):
    """The part a dropped key is reported under: 'decoder_blocks.3.mlp...' -> 'decoder_blocks'."""
    return name.split(".", 1)[0]


def counts(names):
    c = collections.Counter(group(n) for n in names)
    return ", ".join(f"{g}{'.*' if g != 'mask_token' else ''} ({n})" for g, n in sorted(c.items()))


def convert(src, dst, keep_head=False, force=False):
    if not os.path.isfile(src):
        fail(f"no input file '{src}'")
    if os.path.exists(dst) and not force:
        fail(f"'{dst}' exists; pass --force to overwrite it")
    obj = load(src)
    sd, where = find_state_dict(obj)
    if sd is None:
        top = sorted(map(str, obj.keys()))[:12] if isinstance(obj, dict) else [type(obj).__name__]
        fail(f"no ViT state dict in '{src}': no '{MARKER}' at the top level or under "
             f"{', '.join(repr(c) for c in CONTAINERS)} (after stripping "
             f"{', '.join(PREFIXES)}); the file's top-level keys: {', '.join(top)}")
    note = ""
    if where == "'teacher'" and isinstance(obj, dict) and "student" in obj:
        note = " (DINO: the teacher, the network DINO evaluates; 'student' not used)"
    print(f"state dict: {where}{note}, {len(sd)} entries")

    kept, dropped, skipped = {}, [], []
    stripped = collections.Counter()
    for key, value in sd.items():
        name, removed = strip(str(key))
        stripped.update(removed)
        if not isinstance(value, torch.Tensor):
            skipped.append(f"{key} ({type(value).__name__})")
            continue
        if name.startswith(DROPPED) or (name.startswith("head.") and not keep_head):
            dropped.append(name)
            continue
        if value.dtype not in DTYPES:
            fail(f"tensor '{key}' has dtype {value.dtype}; this writer handles "
                 f"{', '.join(str(d) for d in DTYPES)}")
        if name in kept:
            fail(f"two entries become '{name}' after stripping prefixes (one is '{key}')")
        kept[name] = value.detach().cpu().contiguous()

    if MARKER not in kept:
        fail(f"'{MARKER}' was dropped from '{src}'; nothing to write")
    if stripped:
        print("stripped prefixes: " + ", ".join(f"{p} ({n})" for p, n in sorted(stripped.items())))
    dtypes = collections.Counter(DTYPES[t.dtype] for t in kept.values())
    values = sum(t.numel() for t in kept.values())
    print(f"kept {len(kept)} tensors, {values / 1e6:.2f}M values "
          f"({', '.join(f'{d} {n}' for d, n in sorted(dtypes.items()))})")
    if dropped:
        print(f"dropped {len(dropped)} tensors: {counts(dropped)}")
    if skipped:
        print(f"skipped {len(skipped)} non-tensor entries: {', '.join(skipped)}")
    meta = {"format": "pt", "source": os.path.basename(src),
            "converted_by": "ocl convert_checkpoint.py"}
    save_safetensors(dst, kept, meta)
    print(f"wrote {dst} ({os.path.getsize(dst) / 1e6:.1f} MB)")
    return kept


def main():
    parser = argparse.ArgumentParser(
        description="PyTorch ViT checkpoint (.pth) -> safetensors in timm names for ocl --weights")
    parser.add_argument("input", help="checkpoint written by torch.save (MAE, MoCo v3, DINO, timm)")
    parser.add_argument("output", help="safetensors file to write")
    parser.add_argument("--keep-head", action="store_true",
                        help="keep head.* (a classifier of a fine-tuned model); dropped by default")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    args = parser.parse_args()
    convert(args.input, args.output, keep_head=args.keep_head, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
