#!/usr/bin/env python3
"""Writes tests/fixtures/tar/: small tar archives in WebDataset's layout, made by Python's own
tarfile module in each header format it writes, and index.txt, tarfile's listing of them, for
tests/unit/test_tar_index.cpp (ocl::data::index_tar and group_samples).

  pax.tar    PAX_FORMAT: a path over 255 bytes, a non-ASCII path, a directory and a symlink
             between the samples (passed over), members of 0, 1 and 513 bytes
  gnu.tar    GNU_FORMAT: paths over 100 bytes (GNU 'L' long-name headers)
  ustar.tar  USTAR_FORMAT: paths between 100 and 255 bytes (the ustar prefix field)

index.txt holds one line per regular file, "<archive> <offset of its data> <size> <CRC-32 of its
data> <path>", from tarfile's TarInfo.offset_data, size and extracted bytes (zlib.crc32): an
independent reading of the same archives.

Run with Debian's python3:  /usr/bin/python3 scripts/make_tar_fixtures.py
"""
import io
import os
import random
import tarfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "tar")


def add(tar, name, data, mtime=1700000000):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = mtime
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def add_other(tar, name, kind):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mtime = 1700000000
    if kind == tarfile.SYMTYPE:
        info.linkname = "0000.jpg"
    tar.addfile(info)


def main():
    rng = random.Random(7)
    os.makedirs(OUT, exist_ok=True)
    listing = []
    deep = "/".join(["level%02d" % i for i in range(35)])  # 279 bytes of folders
    archives = {
        "pax.tar": (tarfile.PAX_FORMAT, [
            ("n01/0000.jpg", 513), ("n01/0000.cls", 1),
            ("dir", "DIR"),
            (deep + "/n02/0001.jpg", 700), (deep + "/n02/0001.cls", 1),
            ("link.jpg", "SYM"),
            ("n03/\u00fcber.0002.png", 0), ("n03/\u00fcber.0002.cls", 1),
        ]),
        "gnu.tar": (tarfile.GNU_FORMAT, [
            ("g" * 120 + "/0000.jpg", 1000), ("g" * 120 + "/0000.cls", 1),
            ("short/0001.JPEG", 64), ("short/0001.cls", 2),
        ]),
        "ustar.tar": (tarfile.USTAR_FORMAT, [
            ("u" * 90 + "/v" * 20 + "/0000.webp", 300), ("u" * 90 + "/v" * 20 + "/0000.cls", 1),
        ]),
    }
    for archive, (fmt, entries) in archives.items():
        path = os.path.join(OUT, archive)
        with tarfile.open(path, "w", format=fmt) as tar:
            for name, what in entries:
                if what == "DIR":
                    add_other(tar, name, tarfile.DIRTYPE)
                elif what == "SYM":
                    add_other(tar, name, tarfile.SYMTYPE)
                elif name.endswith(".cls"):
                    add(tar, name, str(rng.randrange(10 ** what)).encode())
                else:
                    add(tar, name, bytes(rng.randrange(256) for _ in range(what)))
        with tarfile.open(path, "r") as tar:
            for m in tar.getmembers():
                if m.isreg():
                    crc = zlib.crc32(tar.extractfile(m).read())
                    listing.append("%s %d %d %d %s" % (archive, m.offset_data, m.size, crc, m.name))
    with open(os.path.join(OUT, "index.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(listing) + "\n")


if __name__ == "__main__":
    main()
