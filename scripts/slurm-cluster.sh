#!/usr/bin/env bash
# A real Slurm cluster (munged, slurmctld, and one slurmd per node) on loopback inside one
# directory: no systemd, no cgroups, no slurmdbd (facts: ../shared/SLURM.md).
#   scripts/slurm-cluster.sh start DIR   # prints `export SLURM_CONF=DIR/slurm.conf`
#   scripts/slurm-cluster.sh stop DIR    # cancels its jobs, stops only the daemons it started
# Two nodes by default, node1 and node2, each a slurmd of its own on this host (Debian's Slurm is
# built with multiple-slurmd: `slurmd -N nodeN`, a Port= per node) sharing the CPUs and memory;
# OPENCARBON_SLURM_NODES=1 starts one. A node must not be named `localhost`: with one node of that
# name, Slurm's node lookup answers it for any name, so a second node is refused as a duplicate.
# Installs Debian's slurmctld slurmd slurm-client munge when missing (needs root or sudo).
set -euo pipefail
cmd="${1:?start|stop}"
DIR="${2:?directory}"

pid_of() { [[ -f "$DIR/$1.pid" ]] && cat "$DIR/$1.pid" || true; }

stop_one() {
    local pid
    pid="$(pid_of "$1")"
    # Only a process of ours: its command line still names this directory.
    if [[ -n "$pid" ]] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$DIR"; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
}

if [[ "$cmd" == stop ]]; then
    export SLURM_CONF="$DIR/slurm.conf"
    # Jobs first, while the daemons are up: a slurmstepd outliving slurmd retries forever.
    if [[ -f "$SLURM_CONF" ]]; then
        timeout 20 scancel --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 50); do
            [[ -z "$(timeout 10 squeue -h 2>/dev/null)" ]] && break
            sleep 0.2
        done
    fi
    for pidfile in "$DIR"/slurmd-*.pid; do
        [[ -f "$pidfile" ]] && stop_one "$(basename "$pidfile" .pid)"
    done
    stop_one slurmctld
    stop_one munged
    exit 0
fi

[[ "$cmd" == start ]] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
    echo "installing Debian's slurmctld slurmd slurm-client munge" >&2
    SUDO=""
    [[ "$(id -u)" != 0 ]] && SUDO=sudo
    $SUDO apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null ||
        { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null; }
fi
NODES="${OPENCARBON_SLURM_NODES:-2}"
[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || { echo "OPENCARBON_SLURM_NODES must be a positive number" >&2; exit 2; }
mkdir -p "$DIR/munge" "$DIR/state"
for n in $(seq "$NODES"); do mkdir -p "$DIR/spool/node$n"; done
# munged refuses a socket directory that is not world-executable, up to the root.
chmod 755 "$DIR" "$DIR/munge"
d="$DIR"
while [[ "$d" != / ]]; do
    [[ $(( 8#$(stat -c %a "$d") & 1 )) == 1 ]] || { echo "munged needs $d to be world-executable (chmod o+x)" >&2; exit 1; }
    d="$(dirname "$d")"
done
mungekey --create --keyfile="$DIR/munge/munge.key" --force 2>/dev/null ||
    dd if=/dev/urandom bs=1 count=1024 of="$DIR/munge/munge.key" 2>/dev/null
chmod 600 "$DIR/munge/munge.key"
munged --foreground --socket="$DIR/munge/munge.sock" --key-file="$DIR/munge/munge.key" \
    --pid-file="$DIR/munge/munged.pid" --seed-file="$DIR/munge/munge.seed" \
    --log-file="$DIR/munge/munged.log" >/dev/null 2>&1 &
echo $! > "$DIR/munged.pid"
for _ in $(seq 50); do [[ -S "$DIR/munge/munge.sock" ]] && break; sleep 0.1; done
[[ -S "$DIR/munge/munge.sock" ]] || { echo "munged did not start; see $DIR/munge/munged.log" >&2; exit 1; }

# The host's CPUs and three quarters of its memory, shared out between the nodes.
CPUS=$(( $(nproc) / NODES ))
(( CPUS >= 1 )) || CPUS=1
MEM=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) * 3 / 4 / NODES ))
SLURMD_PORT=${OPENCARBON_SLURMD_PORT:-6818}
COMM=""
if getent ahostsv4 "$(hostname)" | awk '{print $1}' | grep -q '^127\.'; then
    COMM="CommunicationParameters=NoCtldInAddrAny,NoInAddrAny"
fi
cat > "$DIR/slurm.conf" <<CONF
ClusterName=opencarbon
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=${OPENCARBON_SLURMCTLD_PORT:-6817}
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.sock,cred_expire=10
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/slurmctld.pidfile
SlurmdPidFile=$DIR/slurmd-%n.pidfile
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=512
SlurmdParameters=config_overrides
ReturnToService=2
SchedulerParameters=bf_interval=1,sched_interval=1
MinJobAge=3600
RequeueExit=75
MpiDefault=none
$COMM
CONF
for n in $(seq "$NODES"); do
    echo "NodeName=node$n NodeHostname=localhost NodeAddr=127.0.0.1 Port=$(( SLURMD_PORT + n - 1 )) CPUs=$CPUS RealMemory=$MEM State=UNKNOWN"
done >> "$DIR/slurm.conf"
echo "PartitionName=debug Nodes=node[1-$NODES] Default=YES MaxTime=INFINITE State=UP" >> "$DIR/slurm.conf"
export SLURM_CONF="$DIR/slurm.conf"
slurmctld -D -c -f "$SLURM_CONF" >/dev/null 2>&1 &
echo $! > "$DIR/slurmctld.pid"
for _ in $(seq 50); do
    timeout 2 scontrol ping 2>/dev/null | grep -q "is UP" && break
    sleep 0.1
done
timeout 5 scontrol ping | grep -q "is UP" || { echo "slurmctld did not come up; see $DIR/slurmctld.log" >&2; exit 1; }
for n in $(seq "$NODES"); do
    slurmd -D -N "node$n" -f "$SLURM_CONF" >/dev/null 2>&1 &
    echo $! > "$DIR/slurmd-node$n.pid"
done
for n in $(seq "$NODES"); do
    for _ in $(seq 50); do
        [[ "$(timeout 2 sinfo -h -N -n "node$n" -o %T 2>/dev/null)" == idle ]] && break
        sleep 0.1
    done
    [[ "$(timeout 5 sinfo -h -N -n "node$n" -o %T)" == idle ]] ||
        { echo "slurmd node$n did not come up; see $DIR/slurmd-node$n.log" >&2; exit 1; }
done
echo "export SLURM_CONF=$SLURM_CONF"
