"""The sbatch script of `stability slurm`: Ray across a Slurm allocation, one command as its driver.

Why the script has this shape (README, "On a Slurm cluster"):

- Ray starts the way Ray documents for Slurm since 2.49: ``ray symmetric-run`` on every node of
  the allocation (one task per node), which starts the head on the node whose address it is
  given, joins the others to it, runs the command on the head and stops Ray at the end.
- ``symmetric-run`` exits 0 when ``ray start`` itself fails, so the job's status is the
  command's own: the command writes its exit status to a file, and a run without that file
  (Ray never started, or the command was killed) fails the job.
- ``symmetric-run`` stops Ray only at its own end; a task that Slurm terminates (``scancel``,
  preemption, a requeue) would leave the head's Ray daemons behind wherever Slurm does not
  track processes by cgroup, and the next job on that node could not start Ray. So each task
  runs ``ray stop`` on SIGTERM, which is what ``symmetric-run`` does at its end.
- A job ends before its sweep in two ways: Slurm preempts it, or its time limit comes. The
  script asks Slurm for USR1 ``grace`` seconds before the limit (``--signal=B:USR1@grace``)
  and requeues itself (``scontrol requeue``): the same job id, its output appended to the same
  file, dependencies on it kept, which a resubmitted job would not give. ``--requeue`` lets Slurm
  requeue it on preemption and node failure. A requeued run re-runs the same command, which
  resumes the sweep from its store: finished trials are not trained again, a trial in progress
  resumes from its last epoch's checkpoint.
- A requeued run waits the driver lock's stale age before its driver starts, so that the lock
  of the run it replaces (whose driver Slurm killed, perhaps on another node) counts as stale.
- The job's Ray cluster takes only connections that carry a token made for this run (Ray's
  token authentication), so that other users of the cluster's network cannot run code in it.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class SlurmJob:
    """What the script needs: Slurm's options, and the command that the job's driver runs."""

    command: tuple[str, ...]  # the driver's command line, without --address (the script adds it)
    python: str  # the interpreter that runs `-m cli` and whose folder holds `ray`
    workdir: Path  # the job's working directory: relative paths in the command mean the same there
    logs: Path  # where the job's output (and the submitted script) goes
    job_name: str = "stability"
    nodes: int = 1
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    time: str | None = None
    partition: str | None = None
    account: str | None = None
    exclusive: bool = True
    extra: tuple[str, ...] = field(default_factory=tuple)  # further #SBATCH options, as typed
    grace_s: int = 120
    max_requeues: int = 10
    ray_port: int = 6379
    lock_wait_s: int = 70


def sbatch_lines(job: SlurmJob) -> list[str]:
    """The ``#SBATCH`` header: what the allocation is, where its output goes, how it comes back."""
    options = [
        f"--job-name={job.job_name}",
        f"--nodes={job.nodes}",
        "--ntasks-per-node=1",  # one symmetric-run per node
        *(["--exclusive"] if job.exclusive else []),
        *([f"--cpus-per-task={job.cpus_per_task}"] if job.cpus_per_task else []),
        *([f"--gpus-per-node={job.gpus_per_node}"] if job.gpus_per_node else []),
        *([f"--time={job.time}"] if job.time else []),
        *([f"--partition={job.partition}"] if job.partition else []),
        *([f"--account={job.account}"] if job.account else []),
        f"--chdir={job.workdir}",
        f"--output={str(job.logs).replace('%', '%%')}/%x-%j.out",  # Slurm expands % in it
        "--open-mode=append",  # a requeued run appends to its first run's output
        "--requeue",
        f"--signal=B:USR1@{job.grace_s}",
        *job.extra,
    ]
    return [f"#SBATCH {shlex.quote(option)}" for option in options]


def ray_start_options(job: SlurmJob) -> list[str]:
    """What each node's Ray declares: the task's CPUs and the node's GPUs when asked for."""
    options = ["--include-dashboard=false"]
    # Ray counts every core of the node; the CPUs Slurm bound the task to are what nproc counts.
    options.append(f"--num-cpus={job.cpus_per_task}" if job.cpus_per_task else '--num-cpus="$(nproc)"')
    if job.gpus_per_node:
        options.append(f"--num-gpus={job.gpus_per_node}")
    return options


def script(job: SlurmJob) -> str:
    """The sbatch script (bash): see the module's docstring for why each part is there."""
    q = shlex.quote
    # --address right after the command's name: what follows may hold a "--" of its own
    driver = shlex.join([job.python, "-m", "cli", job.command[0]]) + ' --address "$STABILITY_SLURM_HEAD" '
    driver += shlex.join(job.command[1:])
    bin_dir = str(Path(job.python).parent)
    return f"""#!/bin/bash
# Written by `stability slurm`; README, "On a Slurm cluster", says what each part is for.
{chr(10).join(sbatch_lines(job))}
set -uo pipefail
export PATH={q(bin_dir)}:"$PATH"  # the `ray` that symmetric-run calls: the driver's own
# symmetric-run waits 30 s by default for the head and the nodes; Ray on NFS may start slower
export RAY_SYMMETRIC_RUN_CLUSTER_WAIT_TIMEOUT="${{RAY_SYMMETRIC_RUN_CLUSTER_WAIT_TIMEOUT:-300}}"
LOGS={q(str(job.logs))}
RUN="${{SLURM_RESTART_COUNT:-0}}"
rm -f "$LOGS/.status-$SLURM_JOB_ID-"* "$LOGS/.ray-token-$SLURM_JOB_ID-"*  # an earlier run's, if it was killed

head_ip() {{  # the hostname's IPv4 address, unless a loopback one (Debian's 127.0.1.1); else the node's first
    for ip in $(hostname --ip-address 2> /dev/null) $(hostname --all-ip-addresses 2> /dev/null); do
        case "$ip" in 127.* | *:*) ;; *) echo "$ip" && return ;; esac
    done
}}
HEAD_IP="$(head_ip)"
if [ -z "$HEAD_IP" ]; then
    echo "stability slurm: no IPv4 address of this node other than loopback, for the Ray head" >&2
    exit 1
fi
export STABILITY_SLURM_HEAD="$HEAD_IP:{job.ray_port}"
export STABILITY_SLURM_STATUS="$LOGS/.status-$SLURM_JOB_ID-$RUN"
echo "stability slurm: job $SLURM_JOB_ID, run $RUN, on $SLURM_JOB_NODELIST; Ray head $STABILITY_SLURM_HEAD"

# Ray's token authentication: only processes holding this run's token join its cluster.
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$LOGS/.ray-token-$SLURM_JOB_ID-$RUN"
(umask 077 && {q(job.python)} -c 'import secrets; print(secrets.token_hex(32))' > "$RAY_AUTH_TOKEN_PATH") || exit 1
trap 'rm -f "$RAY_AUTH_TOKEN_PATH"' EXIT

requeue() {{  # USR1, {job.grace_s} s before the time limit
    if [ "$RUN" -ge {job.max_requeues} ]; then
        echo "stability slurm: the time limit is near; the job was restarted {job.max_requeues} times: not again"
    elif scontrol requeue "$SLURM_JOB_ID"; then
        echo "stability slurm: the time limit is near: job $SLURM_JOB_ID requeued itself; its sweep resumes"
    else
        echo "stability slurm: the time limit is near, and scontrol could not requeue job $SLURM_JOB_ID" >&2
    fi
}}
trap requeue USR1
# scancel, preemption, a requeue: the tasks stop their Ray before the job ends
trap '[ -n "${{STEP:-}}" ] && wait "$STEP"; exit 143' TERM

if [ "$RUN" -gt 0 ]; then
    echo "stability slurm: waiting {job.lock_wait_s} s, until the lock of the run this one replaces is stale"
    sleep {job.lock_wait_s}
fi

driver() {{  # on the head node, under symmetric-run: the command, and its exit status for the job
    {driver}
    echo $? > "$STABILITY_SLURM_STATUS"
}}
node() {{  # one per node: Ray across the allocation; SIGTERM stops this node's Ray
    trap 'ray stop > /dev/null 2>&1; exit 143' TERM
    ray symmetric-run --address "$STABILITY_SLURM_HEAD" --min-nodes "$SLURM_JOB_NUM_NODES" \\
        {" ".join(ray_start_options(job))} -- bash -c driver &
    wait $!
}}
export -f driver node

srun --export=ALL --nodes="$SLURM_JOB_NUM_NODES" --ntasks="$SLURM_JOB_NUM_NODES" --ntasks-per-node=1 \\
    ${{SLURM_CPUS_PER_TASK:+--cpus-per-task="$SLURM_CPUS_PER_TASK"}} bash -c node &
STEP=$!
while kill -0 "$STEP" 2> /dev/null; do wait "$STEP"; done  # a trapped USR1 ends `wait` early

STATUS="$(cat "$STABILITY_SLURM_STATUS" 2> /dev/null)"
rm -f "$STABILITY_SLURM_STATUS"
case "$STATUS" in
    '' | *[!0-9]*)
        echo "stability slurm: the command did not finish (Ray did not start, or it was killed); see above" >&2
        exit 1 ;;
    *) exit "$STATUS" ;;
esac
"""
