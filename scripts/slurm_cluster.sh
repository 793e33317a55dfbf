#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, to try `hydra/launcher=submitit_slurm` on a laptop
# or a CI runner (Debian-based, as root):
#
#   scripts/slurm_cluster.sh up       # install if missing, configure, start, wait for the node
#   scripts/slurm_cluster.sh status   # the daemons and `sinfo`
#   scripts/slurm_cluster.sh down     # stop the daemons this script started
#
# `up` installs the Debian packages slurmd, slurmctld, slurm-client and munge when a daemon is
# missing, writes /etc/slurm/slurm.conf (one node named after `hostname -s` with all its CPUs, one
# partition `debug`, no accounting), starts munged (as the munge user), slurmctld and slurmd, and
# waits until `sinfo` shows the node idle. It is idempotent: what already runs is left alone.
# `down` cancels the cluster's jobs, stops (by the PIDs kept in the state directory) only the
# daemons `up` started, and removes the configuration it wrote. Logs stay in the state directory.
set -euo pipefail

STATE=/run/spg-slurm                      # PID files, logs, spool directories
CONF=/etc/slurm/slurm.conf
MARK="# written by spg's scripts/slurm_cluster.sh"
NODE=$(hostname -s)
DAEMONS=(munged slurmctld slurmd)         # started in this order, stopped in the reverse

die() { echo "slurm_cluster: error: $*" >&2; exit 1; }
say() { echo "slurm_cluster: $*"; }

# the PID this script recorded for daemon $1, if that process still runs that daemon
live_pid() {
    local file="$STATE/$1.pid" pid
    [[ -f $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ && -d /proc/$pid && $(</proc/"$pid"/comm) == "$1" ]] || return 1
    echo "$pid"
}

install_packages() {
    command -v apt-get >/dev/null || die "slurmd, slurmctld or munged is missing and there is no apt-get: install SLURM and MUNGE with this system's package manager"
    local packages=(slurmd slurmctld slurm-client munge)
    say "installing ${packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${packages[@]}" >"$STATE/apt.log" 2>&1 ||
        { apt-get update -q >>"$STATE/apt.log" 2>&1 && apt-get install -y -q --no-install-recommends "${packages[@]}" >>"$STATE/apt.log" 2>&1; } ||
        die "apt-get could not install ${packages[*]} (log: $STATE/apt.log)"
}

write_conf() {
    if [[ -f $CONF ]] && ! grep -qxF "$MARK" "$CONF"; then
        die "$CONF exists and was not written by this script: this machine has its own SLURM configuration; use that cluster, or move the file away"
    fi
    local cpus mem_mb
    cpus=$(nproc)
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.95)}' /proc/meminfo)
    mkdir -p "$(dirname "$CONF")" "$STATE/ctld" "$STATE/d"
    cat >"$STATE/slurm.conf" <<EOF
$MARK
# A single-node cluster for trying SLURM sweeps; \`scripts/slurm_cluster.sh down\` removes it.
ClusterName=spg-local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job (preempted, \`scontrol requeue\`, submitit's requeue) may start again 20 s after it
# stopped (default 120 s: the lifetime of a job step's credential)
AuthInfo=cred_expire=20
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
# a cancelled job's processes get SIGKILL 2 s after SIGTERM (default 30 s; submitit's jobs ignore
# SIGTERM, and the trainer's checkpoints are written atomically)
KillWait=2
# the node's resources are the ones below, whatever the hardware reports (containers)
SlurmdParameters=config_overrides
# no accounting: no slurmdbd, no job accounting or completion records
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    if ! cmp -s "$STATE/slurm.conf" "$CONF"; then
        if live_pid slurmctld >/dev/null || live_pid slurmd >/dev/null; then
            say "warning: the configuration changed while the cluster runs: '$0 down' and '$0 up' apply it"
        fi
        mv "$STATE/slurm.conf" "$CONF"
        say "wrote $CONF ($NODE: $cpus CPUs, $mem_mb MB)"
    fi
}

start_munged() {
    if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        live_pid munged >/dev/null || say "munged already runs (not started by this script; left alone)"
        return
    fi
    [[ -f /etc/munge/munge.key ]] || runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
    install -d -o munge -g munge -m 0755 /run/munge "$STATE/munge"
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid --log-file="$STATE/munge/munged.log" ||
        die "munged did not start (log: $STATE/munge/munged.log)"
    cp /run/munge/munged.pid "$STATE/munged.pid"
}

# start slurm daemon $1 (it writes its own PID file into $STATE) unless it already runs
start_slurm_daemon() {
    if live_pid "$1" >/dev/null; then
        return
    fi
    "$1" || die "$1 did not start: $(tail -n 3 "$STATE/$1.log" 2>/dev/null)"
}

wait_for_node() {
    local state="" i
    for i in $(seq 120); do
        state=$(sinfo -h -n "$NODE" -o %t 2>/dev/null || true)
        if [[ $state == idle || $state == mix || $state == alloc ]]; then
            say "node $NODE is $state in partition debug (${SECONDS}s)"
            return
        fi
        sleep 0.5
    done
    die "node $NODE is not up after 60 s (sinfo says '${state:-nothing}'; logs: $STATE/slurmctld.log, $STATE/slurmd.log)"
}

up() {
    [[ $EUID -eq 0 ]] || die "run as root (sudo $0 up): it installs packages and starts system daemons"
    mkdir -p "$STATE"
    command -v slurmd >/dev/null && command -v slurmctld >/dev/null && command -v munged >/dev/null && command -v sinfo >/dev/null ||
        install_packages
    write_conf
    start_munged
    start_slurm_daemon slurmctld
    start_slurm_daemon slurmd
    wait_for_node
}

down() {
    local name pid i
    if live_pid slurmctld >/dev/null && [[ -n $(squeue -h -p debug 2>/dev/null) ]]; then
        say "cancelling the jobs in partition debug"
        scancel -p debug || true
        for _ in $(seq 100); do [[ -z $(squeue -h -p debug 2>/dev/null) ]] && break; sleep 0.2; done
    fi
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        name=${DAEMONS[i]}
        if pid=$(live_pid "$name"); then
            kill "$pid"
            for _ in $(seq 50); do [[ -d /proc/$pid ]] || break; sleep 0.2; done
            if [[ -d /proc/$pid ]]; then kill -9 "$pid"; fi
            say "stopped $name ($pid)"
        fi
        rm -f "$STATE/$name.pid"
    done
    if [[ -f $CONF ]] && grep -qxF "$MARK" "$CONF"; then
        rm -f "$CONF"
    fi
    rm -rf "$STATE/ctld" "$STATE/d"
}

status() {
    local name pid
    for name in "${DAEMONS[@]}"; do
        if pid=$(live_pid "$name"); then
            say "$name runs ($pid)"
        else
            say "$name: none started by this script runs"
        fi
    done
    sinfo 2>/dev/null || { say "sinfo: no cluster answers"; return 3; }
}

case ${1:-} in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
