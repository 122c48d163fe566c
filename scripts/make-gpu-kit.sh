#!/usr/bin/env bash
# Makes the GPU build kit: one archive with the headers and shared libraries of every ocl
# dependency except LibTorch, taken from Debian 12's own packages (apt-get download + dpkg -x,
# nothing built by hand), for machines with no package manager and no root: the project's GPU
# machines, and clusters where PyTorch comes from conda or a module. There:
#
#   tar -xJf ocl-gpu-kit.tar.xz                       one folder, ocl-gpu-kit/
#   PREFIX=$PWD/ocl-gpu-kit bash scripts/build-gpu.sh  LibTorch from python3's PyTorch
#
# Usage (on Debian 12, after apt-get update; root is not needed):
#   bash scripts/make-gpu-kit.sh [ARCHIVE]            default: ocl-gpu-kit.tar.xz in the cwd
#   KIT_DIR=/tmp/k bash scripts/make-gpu-kit.sh       also keep the unpacked folder there
#
# The kit is the packages' usr/ tree moved up one level (include/, lib/x86_64-linux-gnu/,
# share/), so their CMake files, which locate themselves relative to their own folder, work from
# wherever it is unpacked. It carries the runtime libraries that the -dev packages' libraries
# need, closed under their DT_NEEDED entries: every library a kit library names is in the kit or
# in the base every glibc system has (BASE_LIBS below); the script fails otherwise, naming the
# library. ocl-gpu-kit/KIT.txt lists the packages, versions and the glibc the kit needs.
set -euo pipefail

archive=${1:-ocl-gpu-kit.tar.xz}
mkdir -p "$(dirname "$archive")"  # dev/gpu-visit.md writes it into .gpu-kit/, absent in a fresh clone
max_mib=${KIT_MAX_MIB:-40}
arch=x86_64-linux-gnu

# What ocl's build uses (CMakeLists.txt, apps/, tests/), as Debian 12 packages.
DEV_PACKAGES=(
  libyaml-cpp-dev libyaml-cpp0.7
  libspdlog-dev libspdlog1.10 libfmt-dev libfmt9
  libcli11-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev
  libjpeg62-turbo-dev libjpeg62-turbo
  libspng-dev libspng0
  zlib1g-dev zlib1g
  libopencv-core-dev libopencv-core406 libopencv-imgproc-dev libopencv-imgproc406
)
# What those libraries need at run time beyond the base (found with readelf -d; the closure
# check below fails if this list falls behind): OpenCV's core links TBB, LAPACK/BLAS and libGLX.
# The BLAS is OpenBLAS's OpenMP build, not the reference one: the programs' RPATH puts the kit's
# libblas.so.3 before the system's, so where the LibTorch is Debian's CPU one (it links
# libblas.so.3 too), the kit's BLAS is the one its matrix products run on; the reference BLAS
# made a CPU pre-training six times slower, and the pthread build's own thread pool fights
# LibTorch's OpenMP threads (scripts/install-deps.sh). A CUDA LibTorch from pip carries its own
# BLAS and never calls this one; the OpenMP build starts no threads until it is called.
RUNTIME_PACKAGES=(
  libtbb12
  libopenblas0-openmp libgomp1 libgfortran5 libquadmath0
  libglx0 libglvnd0 libx11-6 libxcb1 libxau6 libxdmcp6 libbsd0 libmd0
)
# Sonames every glibc Linux system has (Debian 12 and Ubuntu 24.04 bases alike): glibc itself
# and GCC's runtime. The kit never carries them: a second copy would fight the system's.
BASE_LIBS=(libc.so.6 libm.so.6 libpthread.so.0 libdl.so.2 librt.so.1 ld-linux-x86-64.so.2
           libstdc++.so.6 libgcc_s.so.1)

die() { echo "make-gpu-kit: $*" >&2; exit 1; }
log() { echo "make-gpu-kit: $*" >&2; }

command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
  die "needs apt-get and dpkg-deb (run it on Debian 12)"
command -v readelf >/dev/null || die "needs readelf (binutils)"
if [[ -r /etc/os-release ]]; then
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [[ "$codename" == bookworm ]] ||
    log "warning: this is '$codename', not Debian 12 (bookworm): the kit's package names are bookworm's"
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ocl-gpu-kit.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/debs" "$work/root"

log "downloading ${#DEV_PACKAGES[@]} + ${#RUNTIME_PACKAGES[@]} packages"
# apt-get download writes into the cwd; as root, apt warns that its sandbox user cannot read
# the folder (harmless): the folder is made readable to silence it.
chmod 755 "$work/debs"
(cd "$work/debs" && apt-get download -q "${DEV_PACKAGES[@]}" "${RUNTIME_PACKAGES[@]}" \
  >"$work/download.log" 2>&1) || {
  cat "$work/download.log" >&2
  die "apt-get download failed (is the package list up to date? apt-get update)"
}
for deb in "$work"/debs/*.deb; do dpkg-deb -x "$deb" "$work/root"; done

kit="$work/ocl-gpu-kit"
mv "$work/root/usr" "$kit"
# Debian's /lib is merged into /usr/lib on Debian 12, but a package may still ship /lib paths.
if [[ -d "$work/root/lib" ]]; then cp -a "$work/root/lib/." "$kit/lib/"; fi
rm -rf "$kit/share/doc" "$kit/share/man" "$kit/share/lintian" "$kit/share/bug" \
  "$kit/share/X11" "$kit/bin" "$kit/sbin" "$kit/src"
# Debian keeps architecture-specific headers (libjpeg's jconfig.h, OpenCV's cvconfig.h) in
# include/x86_64-linux-gnu/, which GCC searches on Debian only: merged into include/, where any
# compiler given the kit finds them beside the headers that include them.
if [[ -d "$kit/include/$arch" ]]; then
  cp -a "$kit/include/$arch/." "$kit/include/"
  rm -rf "${kit:?}/include/$arch"
fi
# OpenBLAS lives in a subfolder, with the libblas.so.3 / liblapack.so.3 names made by
# update-alternatives when the package is installed, which dpkg -x does not run. Its BLAS and
# LAPACK find libopenblas.so.0 through RUNPATH $ORIGIN, which is the folder they were loaded
# from: the link's, so libopenblas.so.0 is linked beside them.
for name in libblas.so.3 liblapack.so.3 libopenblas.so.0; do
  ln -sf "openblas-openmp/$name" "$kit/lib/$arch/$name"
done

# Closure: every DT_NEEDED of every kit library is a kit library or a base library.
declare -A have=()
for f in "$kit/lib/$arch"/*.so*; do have[$(basename "$f")]=1; done
for b in "${BASE_LIBS[@]}"; do have[$b]=1; done
missing=()
while IFS= read -r -d '' lib; do
  [[ -L "$lib" ]] && continue
  readelf -h "$lib" >/dev/null 2>&1 || continue
  while read -r needed; do
    [[ -n "${have[$needed]:-}" ]] || missing+=("$needed (needed by $(basename "$lib"))")
  done < <(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
done < <(find "$kit/lib" -name '*.so*' -type f -print0)
((${#missing[@]} == 0)) || die "libraries the kit needs but lacks (add their packages to RUNTIME_PACKAGES): ${missing[*]}"

# The newest glibc / libstdc++ symbol versions the kit's libraries use: the oldest system it runs on.
versions() { # versions PREFIX: the highest PREFIX_x.y.z version referenced by the kit's libraries
  find "$kit/lib" -name '*.so*' -type f -exec readelf -V {} + 2>/dev/null |
    grep -o "$1_[0-9][0-9.]*" | sed "s/^$1_//" | sort -uV | tail -n 1
}
glibc=$(versions GLIBC)
glibcxx=$(versions GLIBCXX)

{
  echo "ocl GPU build kit: every dependency of ocl except LibTorch, from Debian 12 packages."
  echo "Made $(date -u '+%F %T UTC') by scripts/make-gpu-kit.sh on $(. /etc/os-release && echo "$PRETTY_NAME")."
  echo
  echo "Use:   PREFIX=/path/to/ocl-gpu-kit bash scripts/build-gpu.sh"
  echo "Needs: x86-64 Linux with glibc >= $glibc and libstdc++ >= GLIBCXX_$glibcxx"
  echo "       (GCC 12 or newer's runtime), and a LibTorch built with the C++11 ABI."
  echo
  echo "Packages:"
  for deb in "$work"/debs/*.deb; do
    dpkg-deb -f "$deb" Package Version | paste -sd' ' | sed 's/^Package: \(.*\) Version: /  \1 /'
  done
} >"$kit/KIT.txt"
cat >"$kit/env.sh" <<'EOF'
# Source this to run programs linked against the kit without an RPATH to it (build-gpu.sh sets
# one, so ocl's own programs need nothing): . ocl-gpu-kit/env.sh
_ocl_kit=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)
export LD_LIBRARY_PATH="$_ocl_kit/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
unset _ocl_kit
EOF

if [[ -n "${KIT_DIR:-}" ]]; then
  rm -rf "$KIT_DIR"
  mkdir -p "$(dirname "$KIT_DIR")"
  cp -a "$kit" "$KIT_DIR"
fi
tar -C "$work" -cf - ocl-gpu-kit | xz -T0 -6 >"$work/kit.tar.xz"
size=$(stat -c %s "$work/kit.tar.xz")
unpacked=$(du -sm "$kit" | cut -f1)
((size <= max_mib * 1024 * 1024)) ||
  die "the kit is $((size / 1024 / 1024)) MiB, over the $max_mib MiB limit"
mv "$work/kit.tar.xz" "$archive"
log "wrote $archive: $(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1048576 }') MiB" \
  "($unpacked MiB unpacked, $(ls "$work"/debs/*.deb | wc -l) packages; needs glibc >= $glibc)"
