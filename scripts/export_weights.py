#!/usr/bin/python3
"""Exports an ocl encoder for the paper's downstream code: COCO detection with ViTDet
(detectron2) and ADE20K segmentation with UperNet (mmsegmentation, or BEiT's / MAE's code).

    /usr/bin/python3 scripts/export_weights.py SOURCE --format mae|mmseg -o OUT.pth
                     [--img-size N] [--allow-input-norm] [--force]

SOURCE is an encoder.safetensors, a checkpoint folder (its encoder.safetensors), a run folder
(its checkpoint-last), or fine-tuning's model-best.safetensors. The formats:
  mae    {"model": state_dict} in timm / MAE names (cls_token, pos_embed, patch_embed.proj.*,
         blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*, norm.*): what MAE's
         mae_pretrain_vit_*.pth holds, what detectron2's ViTDet configs take as
         train.init_checkpoint and BEiT/MAE-style segmentation code loads.
  mmseg  a plain state dict in the names of mmsegmentation's VisionTransformer backbone
         (patch_embed.projection.*, layers.N.{ln1,attn.attn.in_proj_*,attn.attn.out_proj.*,ln2,
         ffn.layers.0.0.*,ffn.layers.1.*}.*, ln1.* as the final norm): what its vit2mmseg
         converter writes from timm names; load it with final_norm=True, with_cls_token=True.

Downstream loaders skip keys they do not know (mmsegmentation loads with strict=False), so a
wrong name silently leaves a layer untrained. The export therefore checks its output against the
exact key list of the target model (written out below from those projects' model definitions)
and fails on any missing or extra key. What it changes on the way, each said on the console:
  - head.* (a fine-tuned classifier) is dropped: detection and segmentation train their own;
  - a fine-tuned model's fc_norm (global average pooling) becomes the final norm;
  - LayerScale (blocks.N.ls1/ls2.gamma), which neither target model has, is folded exactly into
    the linear layer before it (attn.proj, mlp.fc2): gamma * (W x + b) = (gamma W) x + gamma b;
  - a missing qkv bias (model.qkv_bias false) is written as zeros, which is the same layer;
  - --img-size resamples pos_embed to the new grid bicubically (align_corners false), as MAE's
    interpolate_pos_embed and ocl's own loader do; the CLS row is kept.

An encoder trained with model.input_norm: patch standardises each patch before its projection;
downstream code does not, and would feed it pixels it never saw. Such an encoder is refused
unless --allow-input-norm, which exports it and says what the downstream model must add.
Exits non-zero with a message naming the problem; OUT is written whole (via OUT.tmp) or not at all.
"""
import argparse
import io
import json
import os
import re
import stat
import sys
import zlib

import torch
import torch.nn.functional as F

from safetensors_reader import SafetensorsError, load_safetensors


def fail(message):
    sys.exit(f"export_weights: error: {message}")


# ---------------------------------------------------------------- the target models' keys
# timm / MAE VisionTransformer (qkv_bias=True, no LayerScale, final norm), as MAE's
# models_mae encoder and mae_pretrain_vit_*.pth name them.
MAE_TOP = ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
           "norm.weight", "norm.bias"]
MAE_BLOCK = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias",
             "attn.proj.weight", "attn.proj.bias", "norm2.weight", "norm2.bias",
             "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"]
# mmsegmentation's VisionTransformer (mmseg/models/backbones/vit.py, final_norm=True): its
# PatchEmbed's conv is `projection`, each TransformerEncoderLayer holds ln1, an mmcv
# MultiheadAttention wrapping nn.MultiheadAttention as `attn`, ln2 and an mmcv FFN whose
# Sequential puts the first Linear at layers.0.0 and the second at layers.1; the final norm
# is the backbone's ln1.
MMSEG_TOP = ["cls_token", "pos_embed", "patch_embed.projection.weight",
             "patch_embed.projection.bias", "ln1.weight", "ln1.bias"]
MMSEG_BLOCK = ["ln1.weight", "ln1.bias", "attn.attn.in_proj_weight", "attn.attn.in_proj_bias",
               "attn.attn.out_proj.weight", "attn.attn.out_proj.bias", "ln2.weight", "ln2.bias",
               "ffn.layers.0.0.weight", "ffn.layers.0.0.bias", "ffn.layers.1.weight",
               "ffn.layers.1.bias"]
# timm name in a block -> mmseg name (the rest of the key is kept).
MMSEG_BLOCK_NAMES = {"norm1.": "ln1.", "norm2.": "ln2.", "attn.qkv.weight": "attn.attn.in_proj_weight",
                     "attn.qkv.bias": "attn.attn.in_proj_bias", "attn.proj.": "attn.attn.out_proj.",
                     "mlp.fc1.": "ffn.layers.0.0.", "mlp.fc2.": "ffn.layers.1."}
MMSEG_TOP_NAMES = {"patch_embed.proj.": "patch_embed.projection.", "norm.": "ln1."}


def expected_keys(fmt, depth):
    top, block, prefix = (MAE_TOP, MAE_BLOCK, "blocks") if fmt == "mae" else \
        (MMSEG_TOP, MMSEG_BLOCK, "layers")
    return set(top) | {f"{prefix}.{i}.{k}" for i in range(depth) for k in block}


def check_keys(state, fmt, depth, what):
    """Fails naming every missing and extra key of `state` against the target model's list."""
    want = expected_keys(fmt, depth)
    missing, extra = sorted(want - set(state)), sorted(set(state) - want)
    if missing or extra:
        fail(f"{what} does not match the keys of a {fmt} ViT of depth {depth}: missing "
             f"{missing or 'none'}, extra {extra or 'none'}; nothing was written")


# ---------------------------------------------------------------- reading the encoder
def resolve_source(path):
    """The safetensors file SOURCE names: the file itself, a checkpoint folder's
    encoder.safetensors, or a run folder's checkpoint-last/encoder.safetensors."""
    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        fail(f"no file or folder '{path}'")
    for candidate in ("encoder.safetensors", "checkpoint-last/encoder.safetensors",
                      "model-best.safetensors"):
        file = os.path.join(path, candidate)
        if os.path.isfile(file):
            return file
    fail(f"'{path}' holds no encoder.safetensors, checkpoint-last/encoder.safetensors or "
         "model-best.safetensors (expected a pre-training checkpoint or run folder, or a "
         "fine-tuning run folder)")


def verify_checksum(path):
    """A file of a checkpoint folder against the size and CRC-32 its state.json records (as ocl
    checks a resume and --weights): a damaged encoder is named, not exported."""
    state_file = os.path.join(os.path.dirname(path) or ".", "state.json")
    if not os.path.isfile(state_file):
        return
    try:
        with open(state_file, encoding="utf-8") as f:
            want = json.load(f).get("files", {}).get(os.path.basename(path))
    except (OSError, ValueError, AttributeError) as e:
        fail(f"cannot read '{state_file}' beside '{path}': {e}")
    if not isinstance(want, dict):
        return
    crc, size = 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    if size != want.get("bytes"):
        fail(f"'{path}' has {size} bytes and state.json recorded {want.get('bytes')} "
             "(truncated or replaced)")
    if crc != want.get("crc32"):
        fail(f"'{path}' does not match the CRC-32 state.json recorded ({crc} instead of "
             f"{want.get('crc32')}): the file is damaged")


def block_indices(state):
    return sorted({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})


def canonical_encoder(state, notes):
    """`state` (ocl's timm names) as the plain timm / MAE encoder both formats are made from."""
    state = dict(state)
    head = [k for k in state if k.startswith("head.")]
    for k in head:
        del state[k]
    if head:
        notes.append(f"dropped the classifier head ({', '.join(sorted(head))}): detection and "
                     "segmentation train their own")
    if "norm.weight" not in state and "fc_norm.weight" in state:
        state["norm.weight"] = state.pop("fc_norm.weight")
        state["norm.bias"] = state.pop("fc_norm.bias")
        notes.append("fc_norm (a fine-tuned model's norm after global average pooling) exported "
                     "as the final norm")
    folded = 0
    for i in block_indices(state):
        b = f"blocks.{i}."
        for ls, linear in (("ls1", "attn.proj"), ("ls2", "mlp.fc2")):
            gamma = state.pop(f"{b}{ls}.gamma", None)
            if gamma is None:
                continue
            weight, bias = state[f"{b}{linear}.weight"], state[f"{b}{linear}.bias"]
            state[f"{b}{linear}.weight"] = (gamma.double()[:, None] * weight.double()).to(weight.dtype)
            state[f"{b}{linear}.bias"] = (gamma.double() * bias.double()).to(bias.dtype)
            folded += 1
        if f"{b}attn.qkv.bias" not in state and f"{b}attn.qkv.weight" in state:
            w = state[f"{b}attn.qkv.weight"]
            state[f"{b}attn.qkv.bias"] = torch.zeros(w.shape[0], dtype=w.dtype)
            notes.append(f"blocks.{i}: no qkv bias (model.qkv_bias false), written as zeros")
    if folded:
        notes.append(f"folded {folded} LayerScale gammas into attn.proj / mlp.fc2 (exact)")
    return state


def check_input_norm(metadata, allow):
    norm = metadata.get("ocl.input_norm", "none")
    if norm == "none":
        return None
    eps = metadata.get("ocl.input_norm_eps", "?")
    what = (f"in each channel of each patch, the patch's pixels have their mean subtracted and "
            f"are divided by sqrt(variance + {eps}) (the population variance over the patch), "
            "after the usual mean/std normalisation and before the patch projection")
    if not allow:
        fail(f"this encoder was trained with model.input_norm: {norm} ({what}); detectron2 and "
             "mmsegmentation feed the projection plain normalised pixels, so the exported "
             "backbone would see inputs it was never trained on. Pass --allow-input-norm to "
             "export it anyway and add that standardisation to the downstream model")
    return (f"model.input_norm: {norm}: the downstream model must standardise its input the same "
            f"way before patch_embed ({what}); without it the features are not the ones ocl "
            "evaluated")


def resample_pos_embed(pos, patch, img_size, notes):
    """pos_embed [1, 1 + H*W, D] for a square grid of img_size / patch, bicubic."""
    if img_size % patch:
        fail(f"--img-size {img_size} is not a multiple of the patch size {patch}")
    old = int(round((pos.shape[1] - 1) ** 0.5))
    if old * old != pos.shape[1] - 1:
        fail(f"pos_embed has {pos.shape[1]} rows, not 1 + a square grid")
    new = img_size // patch
    if new == old:
        return pos
    grid = pos[:, 1:].reshape(1, old, old, -1).permute(0, 3, 1, 2)
    compute = torch.float64 if pos.dtype == torch.float64 else torch.float32
    grid = F.interpolate(grid.to(compute), size=(new, new), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new * new, -1).to(pos.dtype)
    notes.append(f"pos_embed resampled from a {old}x{old} to a {new}x{new} grid "
                 f"({img_size} px at patch {patch}), bicubic")
    return torch.cat([pos[:, :1], grid], dim=1)


# ---------------------------------------------------------------- the formats
def to_mmseg(state):
    out = {}
    for key, value in state.items():
        if key.startswith("blocks."):
            _, index, rest = key.split(".", 2)
            for old, new in MMSEG_BLOCK_NAMES.items():
                if rest.startswith(old):
                    rest = new + rest[len(old):]
                    break
            out[f"layers.{index}.{rest}"] = value
            continue
        for old, new in MMSEG_TOP_NAMES.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        out[key] = value
    return out


def file_kind(path):
    mode = os.lstat(path).st_mode
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISFIFO, "a pipe"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def export(source, fmt, output, img_size=None, allow_input_norm=False, force=False):
    if os.path.lexists(output):
        if not stat.S_ISREG(os.lstat(output).st_mode):
            fail(f"'{output}' exists and is not a regular file ({file_kind(output)}): "
                 "give the name of a new or regular file")
        if not force:
            fail(f"'{output}' exists; pass --force to overwrite it")
    path = resolve_source(source)
    verify_checksum(path)
    try:
        state, metadata = load_safetensors(path)
    except (OSError, SafetensorsError) as e:
        fail(f"cannot read '{path}': {e}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        fail(f"'{path}' holds non-finite values in {bad[:5]}{' ...' if len(bad) > 5 else ''}: "
             "a diverged run; export an earlier checkpoint")
    if "patch_embed.proj.weight" not in state:
        fail(f"'{path}' holds no ViT encoder in timm names (no patch_embed.proj.weight)")
    input_norm_note = check_input_norm(metadata, allow_input_norm)
    notes = []
    state = canonical_encoder(state, notes)
    depth = len(block_indices(state))
    if img_size:
        patch = state["patch_embed.proj.weight"].shape[-1]
        try:
            state["pos_embed"] = resample_pos_embed(state["pos_embed"], patch, img_size, notes)
        except (RuntimeError, MemoryError) as e:
            fail(f"--img-size {img_size}: cannot resample the positions to a "
                 f"{img_size // patch}x{img_size // patch} grid ({str(e).splitlines()[0][:200]})")
    # What both formats are made from must be a whole timm encoder first (an unknown tensor in
    # the source is named here), then the result is checked against the target's own list.
    check_keys(state, "mae", depth, f"the encoder in '{path}'")
    out = state if fmt == "mae" else to_mmseg(state)
    check_keys(out, fmt, depth, f"the {fmt} export")
    payload = {k: v.contiguous() for k, v in out.items()}
    # Serialised in memory, then written with plain file calls: torch.save's own file writer
    # aborts the process on a failed write (a full disk) instead of raising.
    buffer = io.BytesIO()
    torch.save({"model": payload} if fmt == "mae" else payload, buffer)
    tmp = output + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, output)
    except OSError as e:
        if os.path.lexists(tmp):
            os.remove(tmp)
        fail(f"cannot write '{output}': {e.strerror or e}")
    embed = state["patch_embed.proj.weight"]
    grid = int(round((state["pos_embed"].shape[1] - 1) ** 0.5))
    print(f"read {path}: ViT depth {depth}, width {embed.shape[0]}, patch {embed.shape[-1]}")
    for note in notes:
        print(f"  {note}")
    print(f"wrote {output}: {fmt} format, {len(out)} tensors (the target model's exact key list), "
          f"positions for {grid * embed.shape[-1]} px")
    if input_norm_note:
        print(f"warning: {input_norm_note}")
    return out


def main():
    parser = argparse.ArgumentParser(
        description="ocl encoder -> detectron2 ViTDet / MAE (mae) or mmsegmentation (mmseg) .pth")
    parser.add_argument("source", help="encoder.safetensors, a checkpoint or run folder, or "
                        "model-best.safetensors")
    parser.add_argument("--format", required=True, choices=("mae", "mmseg"))
    parser.add_argument("-o", "--output", required=True, help=".pth file to write")
    parser.add_argument("--img-size", type=int, default=None,
                        help="resample pos_embed for this input size (e.g. 1024 for ViTDet)")
    parser.add_argument("--allow-input-norm", action="store_true",
                        help="export an encoder trained with model.input_norm (see above)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    args = parser.parse_args()
    if args.img_size is not None and args.img_size <= 0:
        fail(f"--img-size must be positive, got {args.img_size}")
    export(args.source, args.format, args.output, args.img_size, args.allow_input_norm,
           args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
