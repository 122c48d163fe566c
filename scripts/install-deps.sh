#!/usr/bin/env bash
# Installs everything ocl needs to build and test on Debian/Ubuntu, from apt only.
# Idempotent: packages already present are left alone. Run as root (or with sudo).
#
#   bash scripts/install-deps.sh          the build and the tests
#   bash scripts/install-deps.sh --fuzz   those, and clang with libFuzzer (scripts/fuzz.sh)
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config
  libtorch-dev
  libopenblas0-openmp           # Debian's LibTorch otherwise uses the reference BLAS (~15x slower);
                                # OpenMP's build, which shares LibTorch's threads
  libgloo-dev
  libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev
  libgtest-dev
  nlohmann-json3-dev            # safetensors headers (JSON)
  zlib1g-dev                    # CRC-32 of packed data sets
  libjpeg62-turbo-dev           # region and reduced-scale JPEG decoding, JPEG encoding
  libspng-dev                   # PNG decoding and encoding
  libcurl4-openssl-dev          # http(s) WebDataset shards (optional: OCL_WITH_CURL)
  python3-torch                 # scripts/make_reference.py (fixtures), bench_pretrain.py, export_weights.py
  python3-matplotlib python3-yaml  # scripts/plot_metrics.py (a run's plot; several runs' legends)
  python3-protobuf python3-crcmod  # tests/integration/read_tfevents.py (TensorBoard files, read
                                   # independently of ocl's writer)
  iproute2 nftables util-linux  # scripts/netns-cluster.sh: the multi-node tests' namespaces,
                                # links and faults (ip, nft, unshare)
)

case "${1:-}" in
  "") ;;
  --fuzz)
    packages+=(
      clang                     # libFuzzer targets (OCL_FUZZ=ON)
      libclang-rt-dev           # libFuzzer and the sanitizer runtimes (only recommended by clang)
    )
    ;;
  *)
    echo "install-deps: unknown option '$1' (known: --fuzz)" >&2
    exit 2
    ;;
esac

SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi

# OpenBLAS's OpenMP build rather than the pthread one, where both are installed: the pthread
# build's own thread pool fights LibTorch's (scripts/use-openmp-openblas.sh says how much).
use_openmp_openblas() { $SUDO bash "$(dirname "${BASH_SOURCE[0]}")/use-openmp-openblas.sh"; }

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#packages[@]} packages already installed"
  use_openmp_openblas
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
use_openmp_openblas
