#!/usr/bin/env bash
# Start or stop a private single-node SLURM (munged, slurmctld, slurmd) on localhost, for trying jobs/.
#
# usage: eval "$(tools/slurm-local.sh start [DIR])"   start; prints `export SLURM_CONF=DIR/slurm.conf`
#        tools/slurm-local.sh stop [DIR]               stop the daemons started in DIR
#        tools/slurm-local.sh status [DIR]             are they running?
#
# DIR defaults to /tmp/legr-slurm. Everything lives there: slurm.conf, the munge socket, state,
# spool, pid and log files; nothing under /etc is changed. Needs root (slurmd runs as root, munged
# as user munge) and Debian's slurmctld, slurmd, slurm-client and munge packages
# (tools/install-deps.sh --slurm). The node is this host with CPUs=16 and
# SlurmdParameters=config_overrides, so 8-16-task jobs start on a 2-core machine; processes are
# tracked by proctrack/linuxproc (no cgroups or systemd needed). Ports: LEGR_SLURM_PORT and the
# next one (default 16817, 16818).
#
# Exit codes: 0 done; 1 the daemons could not be started (the reason and the log tail go to
# stderr); 2 usage.
set -euo pipefail

cmd=${1:-}
dir=${2:-/tmp/legr-slurm}
port=${LEGR_SLURM_PORT:-16817}
node=$(hostname -s)

say() { echo "slurm-local: $*" >&2; }

# kill_pidfile FILE: end the process named in FILE (read first: slurmd removes it on exit).
kill_pidfile() {
    local f=$1 pid i
    [[ -s $f ]] || return 0
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

write_conf() {
    cat >"$dir/slurm.conf" <<EOF
# Written by tools/slurm-local.sh: one node, this host, everything under $dir.
ClusterName=legrlocal
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=5
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=600
KillWait=5
InactiveLimit=0
NodeName=$node NodeAddr=127.0.0.1 CPUs=16 State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
    [[ $(id -u) -eq 0 ]] || { say "needs root (slurmd runs as root, munged as munge)"; exit 1; }
    local b
    for b in munged slurmctld slurmd sbatch scontrol sinfo; do
        command -v "$b" >/dev/null ||
            { say "$b is not installed (tools/install-deps.sh --slurm)"; exit 1; }
    done
    id munge >/dev/null 2>&1 || { say "user munge is missing (package munge)"; exit 1; }
    [[ -r /etc/munge/munge.key ]] || { say "/etc/munge/munge.key is missing (package munge)"; exit 1; }
    if [[ -s $dir/slurmctld.pid ]] && kill -0 "$(<"$dir/slurmctld.pid")" 2>/dev/null; then
        say "already running in $dir"
        echo "export SLURM_CONF=$dir/slurm.conf"
        return 0
    fi
    mkdir -p "$dir/state" "$dir/spool" "$dir/munge"
    chmod 755 "$dir"
    # munged insists on a socket directory owned by its user and not writable by others.
    chown munge:munge "$dir/munge"
    chmod 711 "$dir/munge"
    write_conf

    runuser -u munge -- munged --socket="$dir/munge/munge.socket" \
        --key-file=/etc/munge/munge.key --pid-file="$dir/munge/munged.pid" \
        --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/munged.seed" ||
        { say "munged did not start:"; tail -5 "$dir/munge/munged.log" >&2 || true; exit 1; }
    # slurmctld -i: ignore state left in $dir by an earlier run.
    slurmctld -f "$dir/slurm.conf" -i ||
        { say "slurmctld did not start:"; tail -5 "$dir/slurmctld.log" >&2 || true; stop; exit 1; }
    slurmd -f "$dir/slurm.conf" ||
        { say "slurmd did not start:"; tail -5 "$dir/slurmd.log" >&2 || true; stop; exit 1; }

    local i state=""
    for ((i = 0; i < 60; i++)); do
        state=$(SLURM_CONF=$dir/slurm.conf sinfo -h -N -o %t 2>/dev/null | head -1 || true)
        [[ $state == idle* ]] && break
        sleep 0.5
    done
    if [[ $state != idle* ]]; then
        say "node $node is not idle after 30 s (state '${state:-none}'); logs in $dir:"
        tail -5 "$dir/slurmctld.log" "$dir/slurmd.log" >&2 || true
        stop
        exit 1
    fi
    say "running in $dir (node $node, 16 CPUs)"
    echo "export SLURM_CONF=$dir/slurm.conf"
}

stop() {
    kill_pidfile "$dir/slurmd.pid"
    kill_pidfile "$dir/slurmctld.pid"
    kill_pidfile "$dir/munge/munged.pid"
    say "stopped the daemons of $dir"
}

status() {
    local f name rc=0
    for f in slurmctld.pid slurmd.pid munge/munged.pid; do
        name=$(basename "$f" .pid)
        if [[ -s $dir/$f ]] && kill -0 "$(<"$dir/$f")" 2>/dev/null; then
            echo "$name: running (pid $(<"$dir/$f"))"
        else
            echo "$name: not running"
            rc=1
        fi
    done
    return $rc
}

case $cmd in
start) start ;;
stop) stop ;;
status) status ;;
*) sed -n '2,8p' "$0" >&2; exit 2 ;;
esac
