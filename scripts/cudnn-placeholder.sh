#!/usr/bin/env bash
# Installs, in the Debian root given as $1, a placeholder for Debian's nvidia-cudnn package (an
# installer that downloads cuDNN from NVIDIA, unreachable here), so that libtorch-cuda-2.6,
# which depends on it, installs without it. Run by scripts/cuda-root.sh before apt.
#
# The placeholder ships cuDNN 9's front library, libcudnn.so.9, from this machine's NVIDIA
# cuDNN 9 (OCL_CUDNN_LIB, else the one ldconfig knows, else CUDA's lib64 folder). It is the
# library LibTorch's CUDA code links against; it needs nothing but the C and C++ runtimes, and
# loads cuDNN's engine libraries only when a convolution runs on a GPU, which never happens in
# this root. apt is pinned never to replace the placeholder with the archive's installer.
set -euo pipefail
root=${1:?usage: cudnn-placeholder.sh ROOT}
die() { echo "cudnn-placeholder: error: $*" >&2; exit 1; }
trap 'rc=$?; ((rc == 0)) || echo "cudnn-placeholder: failed (exit $rc)" >&2' EXIT

lib=${OCL_CUDNN_LIB:-}
if [[ -z "$lib" ]]; then
  # awk reads to the end: an early exit could end ldconfig with SIGPIPE, which pipefail and
  # set -e would turn into a silent failure of this script.
  lib=$(ldconfig -p 2>/dev/null | awk '$1 == "libcudnn.so.9" && /x86-64/ && !found { print $NF; found = 1 }' || true)
fi
for c in /usr/local/cuda/lib64/libcudnn.so.9 /usr/local/cuda/targets/x86_64-linux/lib/libcudnn.so.9; do
  [[ -n "$lib" ]] || { [[ -e "$c" ]] && lib=$c; }
done
[[ -n "$lib" && -e "$lib" ]] ||
  die "no cuDNN 9 on this machine (libcudnn.so.9): set OCL_CUDNN_LIB to NVIDIA's libcudnn.so.9"
lib=$(readlink -f "$lib")
soname=$(objdump -p "$lib" 2>/dev/null | awk '$1 == "SONAME" { print $2 }')
[[ "$soname" == libcudnn.so.9 ]] || die "$lib has soname '$soname', not libcudnn.so.9"

work=$(mktemp -d)
trap 'rc=$?; rm -rf "$work"; ((rc == 0)) || echo "cudnn-placeholder: failed (exit $rc)" >&2' EXIT
pkg=$work/pkg
mkdir -p "$pkg/DEBIAN" "$pkg/usr/lib/x86_64-linux-gnu" "$pkg/etc/apt/preferences.d"
install -m 644 "$lib" "$pkg/usr/lib/x86_64-linux-gnu/libcudnn.so.9"
cat >"$pkg/etc/apt/preferences.d/ocl-cudnn-placeholder" <<'PIN'
# ocl's cuDNN placeholder (scripts/cudnn-placeholder.sh): never the archive's downloader.
Package: nvidia-cudnn
Pin: origin "deb.debian.org"
Pin-Priority: -1
PIN
# Greater than the archive's 9.0.0.312~cuda12, so apt sees the dependency met.
cat >"$pkg/DEBIAN/control" <<CONTROL
Package: nvidia-cudnn
Version: 9.0.0.312~cuda12+ocl1
Architecture: amd64
Maintainer: ocl <ocl@localhost>
Section: non-free/libs
Priority: optional
Provides: libcudnn.so.9
Description: placeholder for nvidia-cudnn in ocl's CUDA build root
 Ships cuDNN 9's front library (libcudnn.so.9) copied from the host's NVIDIA cuDNN ($(basename "$lib")).
 Made by ocl's scripts/cudnn-placeholder.sh for compiling and testing on machines without a GPU.
CONTROL
dpkg-deb --root-owner-group --build "$pkg" "$root/var/cache/ocl-cudnn-placeholder.deb" >/dev/null
chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin dpkg -i /var/cache/ocl-cudnn-placeholder.deb
rm -f "$root/var/cache/ocl-cudnn-placeholder.deb"
echo "cudnn-placeholder: nvidia-cudnn placeholder with $lib installed in $root"
