#!/usr/bin/env bash
# A Debian 13 ("trixie", LibTorch 2.6) root for building and testing ocl with the second
# LibTorch the project supports, next to the host's Debian 12 (LibTorch 1.13).
#
#   scripts/trixie-root.sh ensure                 create the root, or bring it up to date
#   scripts/trixie-root.sh run HOSTDIR CMD [ARG]  run CMD in the root, HOSTDIR mounted at /src
#                                                 (cwd /src); exits with CMD's exit status
#   scripts/trixie-root.sh info                   path, readiness, LibTorch version, size
#   scripts/trixie-root.sh remove                 delete the root
#
# The root lives at a fixed path outside any clone, shared by all of them:
#   OCL_TRIXIE_ROOT    (default /var/cache/ocl/trixie-root)
#   OCL_TRIXIE_MIRROR  (default http://deb.debian.org/debian)
#   OCL_TRIXIE_TORCH   LibTorch major.minor the root must have (default 2.6)
# Other roots are made with the same code by setting these too (scripts/bare-root.sh does):
#   OCL_TRIXIE_SUITE     the Debian suite (default trixie)
#   OCL_TRIXIE_PACKAGES  the packages, space-separated (default the list below)
#   OCL_TRIXIE_COMPONENTS  the archive's components, comma-separated (default main)
#   OCL_TRIXIE_TORCH_PACKAGE  the package that holds LibTorch's headers (default libtorch-dev)
#   OCL_TRIXIE_PREINSTALL  a host script, run as `bash SCRIPT ROOT` after debootstrap and
#                          before apt installs the packages (scripts/cuda-root.sh installs its
#                          cuDNN placeholder package with it); the script's checksum joins the
#                          stamp, so a changed script runs again
# It is complete only when ROOT/.ocl-ready exists (written last, holding the package list): a
# root without it is what an interrupted run left, and is deleted and made again. When the
# package list below changes, `ensure` installs what is missing.
#
# Mounts (/proc, /sys, /dev, /dev/shm, /src) are made in a private mount namespace (unshare)
# where available, and are unmounted by an exit trap in every case, failure included. Runs on
# one root are serialised with a lock (ROOT.lock). Needs root privileges.
set -euo pipefail

ROOT=${OCL_TRIXIE_ROOT:-/var/cache/ocl/trixie-root}
ROOT=${ROOT%/}
MIRROR=${OCL_TRIXIE_MIRROR:-http://deb.debian.org/debian}
TORCH_WANT=${OCL_TRIXIE_TORCH:-2.6}
SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SUITE=${OCL_TRIXIE_SUITE:-trixie}
COMPONENTS=${OCL_TRIXIE_COMPONENTS:-main}
TORCH_PACKAGE=${OCL_TRIXIE_TORCH_PACKAGE:-libtorch-dev}
PREINSTALL=${OCL_TRIXIE_PREINSTALL:-}
STAMP="$ROOT/.ocl-ready"
LOCK="$ROOT.lock"

# Keep in step with scripts/install-deps.sh (less python3-torch and pkg-config, not needed here).
PACKAGES=(
  g++ cmake ninja-build
  libtorch-dev
  libopenblas0-openmp
  libgloo-dev
  libyaml-cpp-dev libspdlog-dev libfmt-dev libcli11-dev
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev
  libgtest-dev
  nlohmann-json3-dev
  zlib1g-dev libjpeg62-turbo-dev libspng-dev libcurl4-openssl-dev
  python3-protobuf python3-crcmod  # tests/integration/read_tfevents.py
)
if [[ -n "${OCL_TRIXIE_PACKAGES:-}" ]]; then
  read -r -d '' -a PACKAGES <<<"$OCL_TRIXIE_PACKAGES" || true # any whitespace, newlines too
fi

log() { echo "$(basename "$ROOT"): $*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

[[ $# -ge 1 ]] || usage
[[ "$ROOT" == /* && "$ROOT" != / ]] || die "OCL_TRIXIE_ROOT must be an absolute path other than /"
[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap, chroot and mount need it)"

# ---------------------------------------------------------------------------------------------
# Mounts

# Mount points at or below ROOT, deepest first.
mounts_under_root() {
  awk -v r="$ROOT" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo |
    sort -r
}

MOUNTED=()
unmount_all() {
  local i m
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
    m=${MOUNTED[i]}
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: could not unmount $m"
  done
  MOUNTED=()
  # Anything else left below ROOT (a run killed by SIGKILL outside a namespace).
  for m in $(mounts_under_root); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "warning: could not unmount $m"
  done
}

do_mount() { # do_mount TARGET MOUNT-ARGS...
  local target=$1
  shift
  [[ -e "$target" ]] || mkdir -p "$target" || return 1
  mount "$@" "$target" || return 1
  MOUNTED+=("$target")
}

mount_system() {
  do_mount "$ROOT/proc" -t proc -o nosuid,nodev,noexec proc
  do_mount "$ROOT/sys" -t sysfs -o ro,nosuid,nodev,noexec sysfs 2>/dev/null ||
    { do_mount "$ROOT/sys" --bind /sys && mount -o remount,bind,ro "$ROOT/sys"; }
  do_mount "$ROOT/dev" --bind /dev
  do_mount "$ROOT/dev/shm" -t tmpfs -o nosuid,nodev,mode=1777 tmpfs
  do_mount "$ROOT/dev/pts" --bind /dev/pts 2>/dev/null || true # optional (apt logs to a pty)
}

# Re-run this script in a private mount namespace: its mounts vanish with it, even on SIGKILL.
in_namespace() {
  if [[ -z "${OCL_TRIXIE_IN_NS:-}" && -z "${OCL_TRIXIE_NO_UNSHARE:-}" ]] && command -v unshare >/dev/null &&
     unshare --mount --propagation private true 2>/dev/null; then
    OCL_TRIXIE_IN_NS=1 exec unshare --mount --propagation private "$BASH" "$0" "$@"
  fi
}

take_lock() {
  [[ -z "${OCL_TRIXIE_IN_NS:-}" ]] || return 0 # the lock came with us through exec
  mkdir -p "$(dirname "$ROOT")"
  exec 9>"$LOCK"
  if ! flock -n 9; then
    log "waiting for another run on $ROOT to finish"
    flock 9
  fi
}

# chroot with a clean environment; cwd given.
chroot_exec() { # chroot_exec CWD CMD...
  local cwd=$1
  shift
  local envs=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
              LANG=C.UTF-8 LC_ALL=C.UTF-8 TERM="${TERM:-dumb}" DEBIAN_FRONTEND=noninteractive)
  local v
  for v in CI CTEST_PARALLEL_LEVEL CTEST_OUTPUT_ON_FAILURE OMP_NUM_THREADS OCL_TEST_SHARDS \
           ${OCL_TRIXIE_PASSENV:-}; do
    if [[ -n "${!v+x}" ]]; then envs+=("$v=${!v}"); fi
  done
  chroot "$ROOT" /usr/bin/env -i "${envs[@]}" /bin/sh -c 'cd "$1" && shift && exec "$@"' sh "$cwd" "$@"
}

# ---------------------------------------------------------------------------------------------
# ensure

wanted_list() {
  printf '%s\n' "${PACKAGES[@]}"
  [[ "$COMPONENTS" == main ]] || echo "components: $COMPONENTS"
  [[ -z "$PREINSTALL" ]] || echo "preinstall: $(basename "$PREINSTALL") $(sha256sum <"$PREINSTALL" | cut -c1-16)"
}

torch_version() { # prints e.g. 2.6.0 from the root's headers
  local h="$ROOT/usr/include/torch/csrc/api/include/torch/version.h"
  [[ -f "$h" ]] || return 1
  awk '/#define TORCH_VERSION_(MAJOR|MINOR|PATCH)/ { v[$2] = $3 }
       END { printf "%s.%s.%s\n", v["TORCH_VERSION_MAJOR"], v["TORCH_VERSION_MINOR"], v["TORCH_VERSION_PATCH"] }' "$h"
}

check_torch() {
  local v pkg
  v=$(torch_version) || die "no LibTorch headers in $ROOT"
  pkg=$(chroot "$ROOT" dpkg-query -W -f='${Version}' "$TORCH_PACKAGE" 2>/dev/null || echo '?')
  log "LibTorch in the root: $v ($TORCH_PACKAGE $pkg)"
  [[ "$v" == "$TORCH_WANT" || "$v" == "$TORCH_WANT".* ]] ||
    die "expected LibTorch $TORCH_WANT in $ROOT, found $v (set OCL_TRIXIE_TORCH to accept it)"
}

apt_in_root() { # apt_in_root PACKAGES...
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
  # No service may start inside the root.
  printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
  chmod 755 "$ROOT/usr/sbin/policy-rc.d"
  chroot_exec / apt-get update -q
  chroot_exec / apt-get install -y -q --no-install-recommends "$@"
  chroot_exec / apt-get clean
  # OpenBLAS's OpenMP build, when installed, even beside the pthread one (as on the host).
  chroot_exec / bash -c "$(cat "$SCRIPTS/use-openmp-openblas.sh")"
}

install_debootstrap() {
  if ! command -v debootstrap >/dev/null || [[ ! -e /usr/share/debootstrap/scripts/$SUITE ]]; then
    log "installing debootstrap on the host"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || log "warning: apt-get update reported errors (continuing)"
    apt-get install -y -qq --no-install-recommends debootstrap
  fi
  [[ -e /usr/share/debootstrap/scripts/$SUITE ]] || die "this debootstrap does not know '$SUITE'"
}

cmd_ensure() {
  take_lock
  in_namespace ensure
  trap unmount_all EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  unmount_all # stale mounts from a killed run, before anything is deleted

  local t0=$SECONDS
  if [[ -f "$STAMP" ]] && [[ "$(cat "$STAMP")" == "$(wanted_list)" ]]; then
    log "$ROOT is ready"
    check_torch
    return 0
  fi

  if [[ -e "$ROOT" && ! -f "$STAMP" ]]; then
    log "$ROOT is incomplete (no $(basename "$STAMP")): deleting it and starting again"
    [[ -z "$(mounts_under_root)" ]] || die "mounts remain under $ROOT; not deleting"
    rm -rf --one-file-system "$ROOT"
  fi

  if [[ ! -e "$ROOT" ]]; then
    install_debootstrap
    log "debootstrap --variant=minbase --components=$COMPONENTS $SUITE $ROOT $MIRROR"
    mkdir -p "$(dirname "$ROOT")"
    debootstrap --variant=minbase --components="$COMPONENTS" "$SUITE" "$ROOT" "$MIRROR" >"$ROOT.debootstrap.log" 2>&1 || {
      tail -n 30 "$ROOT.debootstrap.log" >&2
      die "debootstrap failed (log: $ROOT.debootstrap.log)"
    }
    log "debootstrap done after $((SECONDS - t0)) s"
  else
    log "package list changed since the root was made: installing what is missing"
  fi

  mount_system
  if [[ -n "$PREINSTALL" ]]; then
    log "preinstall: $PREINSTALL $ROOT"
    bash "$PREINSTALL" "$ROOT" || die "preinstall failed: $PREINSTALL"
  fi
  apt_in_root "${PACKAGES[@]}"
  unmount_all
  check_torch
  wanted_list >"$STAMP.tmp"
  mv "$STAMP.tmp" "$STAMP"
  log "ready after $((SECONDS - t0)) s: $(du -sh --one-file-system "$ROOT" | cut -f1) at $ROOT"
}

# ---------------------------------------------------------------------------------------------
# run

cmd_run() {
  [[ $# -ge 2 ]] || die "usage: $0 run HOSTDIR CMD [ARG...]"
  local hostdir
  hostdir=$(cd "$1" && pwd -P) || die "no such directory: $1"
  shift
  [[ -f "$STAMP" ]] || die "$ROOT is not ready: run '$0 ensure' first"

  take_lock
  in_namespace run "$hostdir" "$@"
  trap unmount_all EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  unmount_all

  mount_system
  do_mount "$ROOT/src" --bind "$hostdir"
  # The host's names (its own hostname included), for code that resolves them (Gloo, TCPStore).
  if [[ -f /etc/hosts && -f "$ROOT/etc/hosts" ]]; then
    do_mount "$ROOT/etc/hosts" --bind -o ro /etc/hosts 2>/dev/null || true
  fi
  local rc=0
  chroot_exec /src "$@" || rc=$?
  unmount_all
  return "$rc"
}

# ---------------------------------------------------------------------------------------------

cmd_info() {
  echo "root:    $ROOT"
  if [[ -f "$STAMP" ]]; then echo "ready:   yes"; else echo "ready:   no"; fi
  echo "torch:   $(torch_version 2>/dev/null || echo none)"
  if [[ -e "$ROOT" ]]; then echo "size:    $(du -sh --one-file-system "$ROOT" | cut -f1)"; fi
  echo "mounts:  $(mounts_under_root | wc -l)"
}

cmd_remove() {
  take_lock
  unmount_all
  [[ -z "$(mounts_under_root)" ]] || die "mounts remain under $ROOT; not deleting"
  rm -rf --one-file-system "$ROOT" "$ROOT.debootstrap.log"
  log "removed $ROOT"
}

sub=$1
shift
case "$sub" in
  ensure) cmd_ensure "$@" ;;
  run) cmd_run "$@" ;;
  info) cmd_info ;;
  remove) cmd_remove ;;
  -h | --help | help) usage ;;
  *) die "unknown subcommand '$sub' (ensure, run, info, remove)" ;;
esac
