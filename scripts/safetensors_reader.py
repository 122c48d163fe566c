"""Reads safetensors files into PyTorch tensors without the safetensors package (Debian ships
PyTorch but not it): an 8-byte little-endian header length, a JSON header of names, dtypes,
shapes and byte offsets (plus "__metadata__" strings), then the raw data.

    from safetensors_reader import load_safetensors
    tensors, metadata = load_safetensors("encoder.safetensors")

The reading half of safetensors_writer.py; used by the scripts beside it.
"""
import json
import struct
import sys

import torch

DTYPES = {"F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16,
          "F16": torch.float16, "I64": torch.int64, "I32": torch.int32, "U8": torch.uint8}
# numpy has no bfloat16: 2-byte patterns are read as int16 and viewed as the real dtype.
NUMPY_SIDE = {torch.bfloat16: torch.int16, torch.float16: torch.int16}


class SafetensorsError(ValueError):
    pass


def load_safetensors(path):
    """({name: tensor}, {metadata key: value}); raises SafetensorsError naming the file and what
    is wrong with it (a truncated file, a header that is not JSON, an unknown dtype, offsets
    outside the data)."""
    if sys.byteorder != "little":
        raise SafetensorsError("safetensors is little-endian; this reader only runs on "
                               "little-endian machines")
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise SafetensorsError(f"{path}: {len(data)} bytes, too short for a safetensors file")
    (header_len,) = struct.unpack("<Q", data[:8])
    if 8 + header_len > len(data):
        raise SafetensorsError(f"{path}: the header says {header_len} bytes but the file has "
                               f"{len(data) - 8} after the length (truncated?)")
    try:
        header = json.loads(data[8:8 + header_len])
    except ValueError as e:
        raise SafetensorsError(f"{path}: the header is not JSON ({e})") from None
    body = memoryview(data)[8 + header_len:]
    metadata = header.pop("__metadata__", {}) or {}
    tensors = {}
    for name, entry in header.items():
        dtype = DTYPES.get(entry.get("dtype"))
        if dtype is None:
            raise SafetensorsError(f"{path}: tensor '{name}' has dtype {entry.get('dtype')}, "
                                   f"which this reader does not know ({', '.join(DTYPES)})")
        begin, end = entry["data_offsets"]
        shape = entry["shape"]
        count = 1
        for s in shape:
            count *= s
        itemsize = torch.tensor([], dtype=dtype).element_size()
        if not 0 <= begin <= end <= len(body) or end - begin != count * itemsize:
            raise SafetensorsError(f"{path}: tensor '{name}' has offsets {begin}..{end}, which do "
                                   f"not hold {shape} {entry['dtype']} inside the "
                                   f"{len(body)}-byte data (truncated?)")
        raw = torch.frombuffer(bytearray(body[begin:end]), dtype=NUMPY_SIDE.get(dtype, dtype)) \
            if end > begin else torch.empty(0, dtype=NUMPY_SIDE.get(dtype, dtype))
        tensors[name] = raw.view(dtype).reshape(shape)
    return tensors, metadata
