#!/usr/bin/env python3
"""The torchvision side of scripts/bench_data.sh: images per second of ImageFolder +
RandomResizedCrop(224, scale=(0.2, 1), bicubic) + RandomHorizontalFlip + PILToTensor, batched
as uint8 by a DataLoader with WORKERS worker processes, the same pipeline as ocl's pre-training
loader (MAE's transform less the float conversion, which ocl does on the device).

    /usr/bin/python3 scripts/bench_data_torchvision.py FOLDER --workers 2 --batches 20

Prints `torchvision_img_per_s=... workers=...`.
"""
import argparse
import time

import torch
import torchvision
from torchvision import transforms


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", help="an ImageFolder split (…/train)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=20, help="timed batches, after 2 warm ones")
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    torch.set_num_threads(1)
    transform = transforms.Compose([
        transforms.RandomResizedCrop(args.size, scale=(0.2, 1.0),
                                     interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.RandomHorizontalFlip(),
        transforms.PILToTensor(),
    ])
    dataset = torchvision.datasets.ImageFolder(args.folder, transform=transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=True,
                                         num_workers=args.workers, drop_last=True,
                                         persistent_workers=True, prefetch_factor=4)
    done, images, start = 0, 0, None
    while done < args.batches + 2:
        for batch, _ in loader:
            done += 1
            if done == 2:
                start = time.perf_counter()
            elif done > 2:
                images += batch.shape[0]
            if done >= args.batches + 2:
                break
    seconds = time.perf_counter() - start
    print(f"torchvision_img_per_s={images / seconds:.1f} workers={args.workers} "
          f"torchvision={torchvision.__version__}")


if __name__ == "__main__":
    main()
