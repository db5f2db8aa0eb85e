"""`stability slurm`: a sweep, grid or study as a Slurm job (README, "On a Slurm cluster").

The script is ``sweeps.slurm``'s; this module checks the command before anything is queued
(a mistyped flag should not wait hours in a queue to fail), says which paths the job's nodes
must see, and submits the script with ``sbatch``."""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from stability.errors import UserError

if TYPE_CHECKING:
    from sweeps.slurm import SlurmJob

COMMANDS = ("sweep", "grid", "study")
# Folders that are each node's own on every cluster we know of: a job on another node sees
# other files there, or none.
NODE_LOCAL = ("/tmp", "/var/tmp", "/dev/shm", "/run")
JOB_NAME = re.compile(r"[A-Za-z0-9._+-]+")


def run(args: argparse.Namespace) -> int:
    from sweeps import slurm

    inner = inner_command(args.inner)
    check_options(args)
    parsed = checked(inner)
    results = Path(parsed.results).resolve()
    for path in (Path.cwd(), results):
        if "\\" in str(path) or not str(path).isprintable():  # sbatch's #SBATCH reader mangles them
            raise UserError(f"slurm: {str(path)!r} holds a backslash or a control character, which sbatch cannot take")
    job = slurm.SlurmJob(
        command=tuple(inner),
        python=sys.executable,
        workdir=Path.cwd(),
        logs=results / "slurm",
        job_name=job_name(args.job_name, parsed),
        nodes=args.nodes,
        gpus_per_node=args.gpus_per_node,
        cpus_per_task=args.cpus_per_task,
        time=args.time,
        partition=args.partition,
        account=args.account,
        exclusive=not args.shared_nodes,
        extra=tuple(args.sbatch),
        grace_s=args.grace,
        max_requeues=args.max_requeues,
        ray_port=args.ray_port,
        lock_wait_s=lock_wait_s(),
    )
    tell_paths(shared_paths(parsed, job))
    text = slurm.script(job)
    if args.print_only:
        print(text, end="")
        return 0
    return submit(text, job)


# The #SBATCH options the script itself sets and relies on: its output file, its requeue signal.
OWNED = ("--output", "-o", "--open-mode", "--signal", "--chdir", "-D", "--requeue", "--no-requeue",
         "--ntasks-per-node", "--job-name", "-J")  # fmt: skip


def check_options(args: argparse.Namespace) -> None:
    """Header values that would break the script, and a time limit too short for any run to train."""
    given = [args.time, args.partition, args.account, *args.sbatch]
    if any(value is not None and not value.isprintable() for value in given):
        raise UserError("slurm: an option's value holds a control character (a newline?)")
    for option in args.sbatch:
        if not option.startswith("-"):
            raise UserError(f"slurm: --sbatch takes an sbatch option such as --sbatch=--qos=high, got {option!r}")
        if option.split("=")[0] in OWNED:
            raise UserError(f"slurm: --sbatch={option}: the script sets {option.split('=')[0]} itself")
    if args.time is not None:
        least = args.grace + lock_wait_s() + 60
        if time_limit_s(args.time) <= least:
            raise UserError(
                f"slurm: --time {args.time} leaves no time to train: a run needs more than --grace ({args.grace} s) "
                f"+ a requeued run's wait ({lock_wait_s()} s) + a minute to start Ray, {least} s in all"
            )


def time_limit_s(text: str) -> float:
    """Seconds of a time limit as sbatch takes it: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S (or no limit)."""
    if text.strip().lower() in ("unlimited", "infinite", "0"):  # sbatch: 0 is no limit too
        return math.inf
    days, _, clock = text.rpartition("-") if "-" in text else ("0", "", text)
    parts = clock.split(":")
    try:
        numbers = [int(days)] + [int(part) for part in parts]
    except ValueError:
        raise UserError(f"slurm: --time {text!r}: use M, M:S, H:M:S, D-H, D-H:M or D-H:M:S") from None
    if len(parts) > 3 or min(numbers) < 0:
        raise UserError(f"slurm: --time {text!r}: use M, M:S, H:M:S, D-H, D-H:M or D-H:M:S")
    if "-" in text:  # D-H, D-H:M, D-H:M:S
        hours, minutes, seconds = [*parts, "0", "0"][:3]
        return numbers[0] * 86400 + int(hours) * 3600 + int(minutes) * 60 + int(seconds)
    units = {1: (60,), 2: (60, 1), 3: (3600, 60, 1)}[len(parts)]
    return sum(int(part) * unit for part, unit in zip(parts, units, strict=True))


def inner_command(given: list[str]) -> list[str]:
    inner = given[1:] if given[:1] == ["--"] else given
    if not inner:
        raise UserError("slurm: give the command after --, e.g. `stability slurm --nodes 2 -- sweep --model M ...`")
    if inner[0] not in COMMANDS:
        raise UserError(f"slurm: runs a {', '.join(COMMANDS[:-1])} or {COMMANDS[-1]} command, got {inner[0]!r}")
    return inner


def checked(inner: list[str]) -> argparse.Namespace:
    """The command as its own parser reads it, after every check that needs no cluster: a mistake
    is refused here, not after the job's wait in the queue."""
    from cli.parser import build_parser, run_parsed

    parsed = build_parser().parse_args(inner)
    if parsed.address:
        raise UserError("slurm: the command takes no --address: its cluster is the Ray of the job's allocation")
    if parsed.dry_run:
        raise UserError("slurm: --dry-run runs here, without slurm: `stability " + " ".join(inner) + "`")
    with contextlib.redirect_stdout(io.StringIO()):  # the plan as this machine sees it is not the job's
        run_parsed(parsed, check_only=True)
    return parsed


def job_name(given: str | None, parsed: argparse.Namespace) -> str:
    """The job's name, which also names its script and output files: letters, digits and ._+-."""
    if given is not None:
        if not JOB_NAME.fullmatch(given):
            raise UserError(f"slurm: --job-name {given!r}: use letters, digits and . _ + - only")
        return given
    if parsed.command == "sweep":
        name = parsed.name or parsed.trainer or parsed.model
    else:
        name = f"figure{parsed.figure}" if parsed.command == "grid" else Path(parsed.file).stem
    return re.sub(r"[^A-Za-z0-9._+-]", "-", f"stability-{parsed.command}-{name}")


def lock_wait_s() -> int:
    """How long a requeued run waits before its driver starts: the lock of the run it replaces is
    stale by then (sweeps.lock)."""
    from sweeps import lock

    return math.ceil(lock.stale_s() + lock.heartbeat_s())


def shared_paths(parsed: argparse.Namespace, job: SlurmJob) -> list[Path]:
    """What every node of the job reads or writes: the working folder, the results, the Python
    environment, and the data, study and --import files the command names."""
    paths = [job.workdir, job.logs.parent, Path(job.python).parent.parent]
    paths += [Path(given) for given in (getattr(parsed, "data_dir", None), getattr(parsed, "file", None)) if given]
    paths += [Path(spec) for spec in parsed.imports if spec.endswith(".py") or "/" in spec]
    return list(dict.fromkeys(p.resolve() for p in paths))


def tell_paths(paths: list[Path]) -> None:
    """A path under a node-local folder is warned of; that every node mounts the others cannot be
    checked from the submitting machine, so it is said."""
    for path in paths:
        local = next((root for root in NODE_LOCAL if path.is_relative_to(root)), None)
        if local:
            print(
                f"warning: {path} is under {local}, each node's own folder: the job's nodes may not see it",
                file=sys.stderr,
            )
    listed = ", ".join(str(p) for p in paths)
    print(
        f"note: every node of the job must see {listed} (a shared filesystem); that cannot be checked from here",
        file=sys.stderr,
    )


def submit(text: str, job: SlurmJob) -> int:
    """``sbatch --parsable`` the script; it is kept as ``<logs>/<job>-<id>.sbatch`` beside the job's
    output. A refused job leaves no file and no folder behind."""
    if shutil.which("sbatch") is None:
        raise UserError("slurm: no sbatch here; run it on a machine of the Slurm cluster, or --print the script")
    made: list[Path] = []
    try:
        made = [p for p in (job.logs, *job.logs.parents) if not p.exists()]  # deepest first
        job.logs.mkdir(parents=True, exist_ok=True)  # Slurm writes the job's output there: it must exist
        fd, name = tempfile.mkstemp(prefix=f".{job.job_name}-", suffix=".sbatch", dir=job.logs)
        with os.fdopen(fd, "w") as file:
            file.write(text)
    except OSError as e:
        remove_folders(made)
        raise UserError(f"slurm: cannot write the job's script into {job.logs}: {e.strerror}") from None
    pending = Path(name)
    done = subprocess.run(["sbatch", "--parsable", str(pending)], capture_output=True, text=True)
    if done.returncode != 0:
        pending.unlink()
        remove_folders(made)
        reason = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}").splitlines()[0]
        raise UserError(f"slurm: sbatch refused the job: {reason}")
    answer = done.stdout.strip().splitlines()[-1:] or [""]
    job_id = answer[0].split(";")[0]
    if not re.fullmatch(r"\d+(_\d+)?", job_id):  # a site's wrapper around sbatch may print more
        print(f"submitted: sbatch said {done.stdout.strip()!r}; the script is kept as {pending}")
        return 0
    kept = pending.rename(job.logs / f"{job.job_name}-{job_id}.sbatch")
    print(f"submitted job {job_id}: {kept}")
    print(f"its output: {job.logs / f'{job.job_name}-{job_id}.out'}")
    return 0


def remove_folders(made: list[Path]) -> None:
    for folder in made:  # deepest first; a folder something else wrote into stays
        with contextlib.suppress(OSError):
            folder.rmdir()
