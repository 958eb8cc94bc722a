#!/usr/bin/env bash
# Vendored from the workplace's shared/tools/two_node_slurm.sh so the suite needs nothing outside the repo.
# Changed: cred_expire=10 (SLURM holds a requeued job that long before it may start again; default 120 s).
# A real two-node SLURM cluster on one machine (root; slurm-wlm and munge installed).
# Each slurmd runs in its own network namespace (its own address on a private bridge) and UTS namespace (its
# own hostname, node1 / node2), with a private /etc/hosts naming the nodes; its job tasks inherit all three.
# munged and slurmctld run on the host, reachable at the bridge address. Besides DIR, only the netns, the veths
# and the bridge are created; the bridge's alias records DIR, and stop touches the network only when it matches.
#   two_node_slurm.sh start DIR   # idempotent; prints the environment to source (SLURM_CONF, ...)
#   two_node_slurm.sh stop DIR    # idempotent; cancels jobs, stops the daemons, deletes netns, veths, bridge
# TWO_NODE_PREFIX (default slurm2n) names the netns/links; TWO_NODE_SUBNET (default 10.77.41) is a free /24:
# node1 = .1, node2 = .2, host = .254.
set -euo pipefail
usage="usage: two_node_slurm.sh start|stop DIR"
action=${1:?$usage}
dir=$(realpath -m "${2:?$usage}")
prefix=${TWO_NODE_PREFIX:-slurm2n}
net=${TWO_NODE_SUBNET:-10.77.41}
bridge=${prefix}br
nodes=(node1 node2)
host=$(hostname -s)

slurm() { SLURM_CONF="$dir/slurm.conf" "$@"; }

# The PID in DIR/NAME.pid if that process is still NAME (a recycled PID is left alone).
pid_of() {
  local pid
  pid=$(head -n 1 "$dir/$1.pid" 2>/dev/null) || return 1
  [[ -n "$pid" && "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$1" ]] && echo "$pid"
}

node_states() { slurm sinfo -h -N -o %t 2>/dev/null | sort -u | tr '\n' ' '; }

print_env() {
  echo "export SLURM_CONF=$dir/slurm.conf"
  echo "export TWO_NODE_NETNS='${prefix}n1 ${prefix}n2' TWO_NODE_ADDRS='$net.1 $net.2'"
  echo "# ${nodes[0]}=$net.1 (netns ${prefix}n1), ${nodes[1]}=$net.2 (netns ${prefix}n2), slurmctld on $host=$net.254"
}

stop() {
  if pid_of slurmctld >/dev/null; then
    slurm scancel --full --signal=KILL --user=root 2>/dev/null || true
    for _ in $(seq 30); do [[ -z "$(slurm squeue -h 2>/dev/null)" ]] && break; sleep 1; done
  fi
  local owner i ns pids name pid signal
  owner=$(cat "/sys/class/net/$bridge/ifalias" 2>/dev/null || true)
  if [[ -e /sys/class/net/$bridge && "$owner" != "$dir" ]]; then
    echo "two_node_slurm.sh: $bridge belongs to ${owner:-someone else}, not $dir: network left alone" >&2
  elif [[ -e /sys/class/net/$bridge ]]; then
    for i in 1 2; do
      ns=${prefix}n$i
      [[ -e /run/netns/$ns ]] || continue
      # Everything left in the node's netns is this cluster's: slurmd, slurmstepd, job tasks.
      for signal in TERM KILL; do
        pids=$(ip netns pids "$ns")
        # shellcheck disable=SC2086 # one PID per word
        if [[ -n "$pids" ]]; then kill -s "$signal" $pids 2>/dev/null || true; sleep 2; fi
      done
      ip netns del "$ns"
      ip link del "${prefix}v$i" 2>/dev/null || true
    done
    ip link del "$bridge"
  fi
  for name in slurmctld munged; do
    if pid=$(pid_of "$name"); then
      kill "$pid"
      for _ in $(seq 20); do [[ -d /proc/$pid ]] || break; sleep 0.5; done
    fi
  done
}

free_port() {
  local port
  while port=$((30000 + RANDOM % 20000)); [[ -n "$(ss -Htan "sport = :$port")" ]]; do :; done
  echo "$port"
}

start() {
  if pid_of slurmctld >/dev/null && [[ ! "$(node_states)" =~ down|unk|drain|fail|inval ]]; then
    print_env
    return
  fi
  stop # a half-started cluster: clean up first
  if [[ -e /sys/class/net/$bridge || -e /run/netns/${prefix}n1 || -e /run/netns/${prefix}n2 ]]; then
    echo "two_node_slurm.sh: $bridge / ${prefix}n1 / ${prefix}n2 exist and are not $dir's: set TWO_NODE_PREFIX" >&2
    exit 1
  fi
  if ip -4 addr | grep -q " $net\."; then
    echo "two_node_slurm.sh: $net.0/24 is in use here: set TWO_NODE_SUBNET" >&2
    exit 1
  fi
  mkdir -p "$dir/state" "$dir/spool/${nodes[0]}" "$dir/spool/${nodes[1]}"

  head -c 1024 /dev/urandom >"$dir/munge.key"
  chmod 400 "$dir/munge.key"
  munged --force --key-file="$dir/munge.key" --socket="$dir/munge.socket" --pid-file="$dir/munged.pid" \
    --log-file="$dir/munged.log" --seed-file="$dir/munged.seed"

  ip link add "$bridge" type bridge
  ip link set "$bridge" alias "$dir"
  ip addr add "$net.254/24" dev "$bridge"
  ip link set "$bridge" up
  local i ns
  for i in 1 2; do
    ns=${prefix}n$i
    ip netns add "$ns"
    ip link add "${prefix}v$i" type veth peer name eth0 netns "$ns"
    ip link set "${prefix}v$i" master "$bridge" up
    ip -n "$ns" addr add "$net.$i/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" link set lo up
  done
  printf '127.0.0.1 localhost\n%s.254 %s\n%s.1 %s\n%s.2 %s\n' "$net" "$host" "$net" "${nodes[0]}" "$net" \
    "${nodes[1]}" >"$dir/hosts"

  cat >"$dir/slurm.conf" <<EOF
ClusterName=twonode
SlurmctldHost=$host($net.254)
SlurmctldPort=$(free_port)
SlurmdPort=6818
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge.socket,cred_expire=10
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd-%n.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
KillWait=5
SchedulerParameters=sched_interval=2
NodeName=${nodes[0]} NodeAddr=$net.1 CPUs=2 RealMemory=8000 State=UNKNOWN
NodeName=${nodes[1]} NodeAddr=$net.2 CPUs=2 RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  slurm slurmctld -f "$dir/slurm.conf"
  for i in 1 2; do
    # slurmd takes its node name from the hostname. nsenter, not `ip netns exec`: that remounts /sys, which
    # hides /sys/fs/cgroup, and slurmd then fails ("Unable to initialize cgroup plugin").
    # shellcheck disable=SC2016 # $1 and $2 are the inner shell's arguments
    nsenter --net="/run/netns/${prefix}n$i" unshare --uts --mount -- sh -c \
      'mount --bind "$1/hosts" /etc/hosts && hostname "$2" && exec slurmd -f "$1/slurm.conf"' \
      sh "$dir" "${nodes[i - 1]}"
  done
  for _ in $(seq 60); do
    if [[ "$(node_states)" == "idle " ]]; then
      print_env
      return
    fi
    sleep 1
  done
  echo "two_node_slurm.sh: the nodes did not come up idle:" >&2
  slurm sinfo -N >&2 || true
  tail -n 20 "$dir"/slurm*.log >&2 || true
  exit 1
}

case "$action" in
  start) start ;;
  stop) stop ;;
  *)
    echo "$usage" >&2
    exit 2
    ;;
esac
