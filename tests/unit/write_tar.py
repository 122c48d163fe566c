#!/usr/bin/env python3
"""Writes one tar archive with Python's tarfile, for tests/unit/test_webdataset.cpp: the shards
the tests read are made by an implementation other than ocl's.

  write_tar.py OUT.tar FORMAT < MEMBERS

FORMAT is pax, gnu or ustar. MEMBERS has one line per member, "<name>\t@<file>" (the member
holds that file's bytes) or "<name>\t=<text>" (it holds the text), in archive order.
"""
import io
import sys
import tarfile

FORMATS = {"pax": tarfile.PAX_FORMAT, "gnu": tarfile.GNU_FORMAT, "ustar": tarfile.USTAR_FORMAT}


def main():
    out, fmt = sys.argv[1], FORMATS[sys.argv[2]]
    with tarfile.open(out, "w", format=fmt) as tar:
        for line in sys.stdin.read().split("\n"):
            if not line:
                continue
            name, source = line.split("\t", 1)
            if source.startswith("@"):
                with open(source[1:], "rb") as f:
                    data = f.read()
            else:
                data = source[1:].encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1700000000
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))


if __name__ == "__main__":
    main()
