#!/usr/bin/env bash
# A small cluster on one machine for the multi-node tests: N network namespaces ("nodes"), each
# with its own address on a bridge and every node's name in its hosts file, joined by veth links
# to a switch namespace. Nothing is added to the host's own network namespace, and no route
# leads out of the cluster: traffic stays between its nodes.
#
#   scripts/netns-cluster.sh up NAME N           make nodes NAME-n0 .. NAME-n(N-1) (node0 ...)
#   scripts/netns-cluster.sh exec NAME I CMD...  run CMD in node I (its hosts file in /etc/hosts)
#   scripts/netns-cluster.sh cut NAME I          drop every packet to and from node I (a cable
#                                                pulled: no reset, no error, the packets vanish)
#   scripts/netns-cluster.sh heal NAME I         undo cut and impair
#   scripts/netns-cluster.sh impair NAME I LOSS% RATE [DELAY]
#                                                a slow, lossy link: LOSS% of node I's packets
#                                                dropped at random both ways (nftables), its
#                                                egress limited to RATE (tbf), and DELAY added
#                                                where the kernel has netem
#   scripts/netns-cluster.sh down NAME           kill what runs in its nodes, remove all of it
#   scripts/netns-cluster.sh sweep               remove the clusters whose owner process is gone
#
# Node I is "nodeI" at 10.77.0.(I+1)/24 on its interface eth0. `up` records the calling process
# (OCL_NETNS_OWNER, default the parent of this script) as the owner; `sweep` and every `up`
# remove clusters whose owner has exited, so a test killed before its clean-up leaves nothing
# behind for long. Needs root, iproute2 and nftables (scripts/install-deps.sh installs them).
set -euo pipefail

STATE=/run/ocl-netns
SUBNET=10.77.0

die() {
  echo "netns-cluster: $*" >&2
  exit 1
}

nodes_of() { ip netns list | awk '{print $1}' | grep -E "^$1-n[0-9]+$" || true; }

down() {
  local name=$1 ns
  for ns in $(nodes_of "$name") "$name-sw"; do
    ip netns list | awk '{print $1}' | grep -qx "$ns" || continue
    # Processes keep a namespace alive after it is deleted: kill them first.
    local pids
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "/etc/netns/$ns"
  done
  rm -f "$STATE/$name.owner"
}

sweep() {
  [ -d "$STATE" ] || return 0
  local f name owner
  for f in "$STATE"/*.owner; do
    [ -e "$f" ] || continue
    name=$(basename "$f" .owner)
    owner=$(cat "$f" 2>/dev/null || echo 0)
    if ! kill -0 "$owner" 2>/dev/null; then down "$name"; fi
  done
}

up() {
  local name=$1 n=$2 i
  [[ $name =~ ^[a-z0-9]{1,9}$ ]] || die "NAME must be 1-9 lower-case letters or digits (interface names are at most 15 characters), got '$name'"
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "N must be 1..200, got '$n'"
  [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
  command -v nft >/dev/null || die "needs nft (Debian: nftables)"
  sweep
  down "$name"
  mkdir -p "$STATE"
  echo "${OCL_NETNS_OWNER:-$PPID}" >"$STATE/$name.owner"
  local sw="$name-sw"
  ip netns add "$sw"
  ip -n "$sw" link add br0 type bridge
  ip -n "$sw" link set br0 up
  local hosts="127.0.0.1 localhost"$'\n'
  for ((i = 0; i < n; i++)); do hosts+="$SUBNET.$((i + 1)) node$i"$'\n'; done
  for ((i = 0; i < n; i++)); do
    local ns="$name-n$i"
    ip netns add "$ns"
    # Both ends are made in the switch namespace (so no name is ever taken in the host's), then
    # one end moves to the node and becomes its eth0.
    ip -n "$sw" link add "p$i" type veth peer name "e$i"
    ip -n "$sw" link set "e$i" netns "$ns"
    ip -n "$ns" link set "e$i" name eth0
    ip -n "$ns" addr add "$SUBNET.$((i + 1))/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
    ip -n "$sw" link set "p$i" master br0
    ip -n "$sw" link set "p$i" up
    # `ip netns exec` bind-mounts /etc/netns/<ns>/hosts over /etc/hosts.
    mkdir -p "/etc/netns/$ns"
    printf '%s' "$hosts" >"/etc/netns/$ns/hosts"
    # The table the faults go into: empty (everything passes) until cut or impair.
    ip netns exec "$ns" nft add table inet ocl_faults
    ip netns exec "$ns" nft add chain inet ocl_faults out '{ type filter hook output priority 0; }'
    ip netns exec "$ns" nft add chain inet ocl_faults in '{ type filter hook input priority 0; }'
  done
}

node_ns() {
  local ns="$1-n$2"
  ip netns list | awk '{print $1}' | grep -qx "$ns" || die "no node $2 in cluster '$1'"
  echo "$ns"
}

heal() {
  local ns
  ns=$(node_ns "$1" "$2")
  ip netns exec "$ns" nft flush chain inet ocl_faults out
  ip netns exec "$ns" nft flush chain inet ocl_faults in
  ip netns exec "$ns" tc qdisc del dev eth0 root 2>/dev/null || true
}

# Only the link is cut: a node's traffic to itself goes through lo and is not touched.
cut() {
  local ns
  ns=$(node_ns "$1" "$2")
  ip netns exec "$ns" nft add rule inet ocl_faults out oifname eth0 drop
  ip netns exec "$ns" nft add rule inet ocl_faults in iifname eth0 drop
}

impair() {
  local ns loss=$3 rate=$4 delay=${5:-}
  ns=$(node_ns "$1" "$2")
  [[ $loss =~ ^[0-9]+$ ]] && [ "$loss" -le 100 ] || die "LOSS% must be 0..100, got '$loss'"
  if [ "$loss" -gt 0 ]; then
    ip netns exec "$ns" nft add rule inet ocl_faults out oifname eth0 numgen random mod 100 '<' "$loss" drop
    ip netns exec "$ns" nft add rule inet ocl_faults in iifname eth0 numgen random mod 100 '<' "$loss" drop
  fi
  if [ -n "$delay" ] && ip netns exec "$ns" tc qdisc add dev eth0 root netem delay "$delay" rate "$rate" 2>/dev/null; then
    echo "netns-cluster: node $2: netem delay $delay, rate $rate, loss $loss%"
  else
    # No netem in this kernel (CONFIG_NET_SCH_NETEM): a token bucket makes the link slow, and
    # packets queue behind it (up to 50 ms) instead of being delayed by a fixed time.
    ip netns exec "$ns" tc qdisc add dev eth0 root tbf rate "$rate" burst 16kb latency 50ms
    echo "netns-cluster: node $2: rate $rate (tbf; ${delay:+no netem here for a fixed $delay delay, }queueing up to 50 ms), loss $loss%"
  fi
}

cmd=${1:-}
case "$cmd" in
  up) [ $# -eq 3 ] || die "usage: up NAME N"; up "$2" "$3" ;;
  down) [ $# -eq 2 ] || die "usage: down NAME"; down "$2" ;;
  sweep) sweep ;;
  exec)
    [ $# -ge 4 ] || die "usage: exec NAME I CMD..."
    ns=$(node_ns "$2" "$3")
    shift 3
    exec ip netns exec "$ns" "$@"
    ;;
  cut) [ $# -eq 3 ] || die "usage: cut NAME I"; cut "$2" "$3" ;;
  heal) [ $# -eq 3 ] || die "usage: heal NAME I"; heal "$2" "$3" ;;
  impair) [ $# -ge 5 ] || die "usage: impair NAME I LOSS% RATE [DELAY]"; impair "$2" "$3" "$4" "$5" "${6:-}" ;;
  *) die "usage: $0 up|down|sweep|exec|cut|heal|impair ... (see the header of this script)" ;;
esac
