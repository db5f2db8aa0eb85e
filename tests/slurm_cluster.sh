#!/bin/bash
# A single-node Slurm for tests/test_slurm.py, run as PID 1 of its own PID and network namespaces
# (`unshare --net --pid --fork --mount-proc`): slurmctld and slurmd listen on every interface, and
# the namespace has only loopback; Ray's `ray stop` sees only this namespace's processes. Killing
# this process (SIGKILL, by pid) ends everything it started. Usage: slurm_cluster.sh FOLDER
set -euo pipefail
D=$1
ip link set lo up
# glibc's getaddrinfo(AI_ADDRCONFIG), which Slurm calls, finds no IPv4 address while lo holds
# only 127.0.0.0/8; a second address on lo (still reachable from this namespace only) is one.
ip addr add 10.254.0.1/32 dev lo
mkdir -p "$D/munge" "$D/state" "$D/spool" "$D/log"
# This namespace's own /etc/hosts (the mount namespace is private): the host's may map its name to
# an address this namespace lacks. The name is the one non-loopback address here, as on a cluster.
printf '127.0.0.1 localhost\n10.254.0.1 %s\n' "$(hostname)" > "$D/hosts"
mount --bind "$D/hosts" /etc/hosts
chmod 700 "$D/munge"
mungekey --create --keyfile="$D/munge/munge.key" --force
munged --force --socket="$D/munge/munge.socket" --key-file="$D/munge/munge.key" \
    --pid-file="$D/munge/munged.pid" --log-file="$D/log/munged.log" --seed-file="$D/munge/seed"
cat > "$D/slurm.conf" << CONF
ClusterName=test
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$D/munge/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ReturnToService=2
MpiDefault=none
JobRequeue=1
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=$(hostname) $(slurmd -C | head -1 | cut -d' ' -f2-)
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
slurmctld -c -f "$D/slurm.conf"
slurmd -N localhost -f "$D/slurm.conf"
echo "slurm up"
# PID 1 of the namespace reaps the orphans (daemonized Slurm and Ray processes) until killed.
exec python3 -c '
import os, time
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.5)
' slurm-namespace-init
