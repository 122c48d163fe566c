"""Writes safetensors files from PyTorch tensors without the safetensors package (Debian ships
PyTorch but not it): the format is an 8-byte little-endian header length, a JSON header of
names, dtypes, shapes and byte offsets (plus "__metadata__" strings), then the raw data.

    from safetensors_writer import DTYPES, save_safetensors
    save_safetensors("out.safetensors", {"w": torch.zeros(2, 3)}, {"format": "pt"})

Used by the scripts beside it (they run as `python3 scripts/NAME.py`, which puts this folder on
the module path).
"""
import json
import os
import struct
import sys

import torch

DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.bfloat16: "BF16",
          torch.float16: "F16", torch.int64: "I64", torch.int32: "I32", torch.uint8: "U8"}


def save_safetensors(path, tensors, metadata=None):
    """Header keys sorted; data ordered by item size (largest first), then name, so that every
    tensor starts at a multiple of its item size, as the safetensors library and ocl write it.
    Written to PATH.tmp and renamed, so a crash never leaves half a file at PATH."""
    if sys.byteorder != "little":
        raise RuntimeError("safetensors is little-endian; this writer only runs on little-endian "
                           "machines")
    tensors = {name: t.detach().contiguous().cpu() for name, t in tensors.items()}
    for name, t in tensors.items():
        if t.dtype not in DTYPES:
            raise ValueError(f"{name}: dtype {t.dtype} cannot be written "
                             f"(known: {', '.join(str(d) for d in DTYPES)})")
    order = sorted(tensors, key=lambda n: (-tensors[n].element_size(), n))
    header, blobs, offset = {}, [], 0
    for name in order:
        t = tensors[name]
        # numpy has no bfloat16: write the 2-byte patterns through an int16 view (same for F16).
        raw = t.view(torch.int16) if t.dtype in (torch.bfloat16, torch.float16) else t
        data = raw.numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    header = dict(sorted(header.items()))
    if metadata:
        header = {"__metadata__": {k: str(v) for k, v in metadata.items()}, **header}
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)
