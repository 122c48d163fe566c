#!/usr/bin/env python3
"""Test helper: a .pth written by scripts/export_weights.py as safetensors that C++ tests read.

    /usr/bin/python3 tests/integration/pth_to_safetensors.py IN.pth OUT.safetensors

A {"model": state_dict} file is written with metadata container=model, a plain state dict with
container="" ; anything else (a non-tensor value, another nesting) exits non-zero naming it.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from safetensors_writer import save_safetensors  # noqa: E402


def main():
    src, dst = sys.argv[1], sys.argv[2]
    obj = torch.load(src, map_location="cpu")
    container = ""
    if isinstance(obj, dict) and set(obj) == {"model"} and isinstance(obj["model"], dict):
        obj, container = obj["model"], "model"
    if not isinstance(obj, dict):
        sys.exit(f"{src}: a {type(obj).__name__}, not a state dict")
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            sys.exit(f"{src}: '{key}' is a {type(value).__name__}, not a tensor")
    save_safetensors(dst, obj, {"container": container})
    return 0


if __name__ == "__main__":
    sys.exit(main())
