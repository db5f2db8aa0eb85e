"""`stability slurm`: the script and its checks (no Slurm needed), then sweeps run as jobs of a
real single-node Slurm: finished, cancelled and submitted again, failed."""

from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli import main
from store import Store
from tests.conftest import TINY_DATA, wait_for

CLUSTER_SCRIPT = Path(__file__).with_name("slurm_cluster.sh")
TINY = ["--model", "vit_c_1gf", "--optim", "adamw", *TINY_DATA, "--epochs", "1"]


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------- the script, without Slurm


def test_print_writes_the_script_of_the_options_and_submits_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = ["--nodes", "2", "--gpus-per-node", "4", "--cpus-per-task", "16", "--time", "1-00:00:00"]
    options += ["--partition", "gpu", "--account", "lab", "--sbatch=--qos=high", "--grace", "300"]
    code, out, err = run_cli(["slurm", "--print", *options, "--", "sweep", *TINY, "--trials", "2", "--name", "t"])
    assert code == 0, err
    header = [line for line in out.splitlines() if line.startswith("#SBATCH")]
    assert header == [
        "#SBATCH --job-name=stability-sweep-t",
        "#SBATCH --nodes=2",
        "#SBATCH --ntasks-per-node=1",
        "#SBATCH --exclusive",
        "#SBATCH --cpus-per-task=16",
        "#SBATCH --gpus-per-node=4",
        "#SBATCH --time=1-00:00:00",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab",
        f"#SBATCH --chdir={tmp_path}",
        f"#SBATCH --output={tmp_path}/results/slurm/%x-%j.out",
        "#SBATCH --open-mode=append",
        "#SBATCH --requeue",
        "#SBATCH --signal=B:USR1@300",
        "#SBATCH --qos=high",
    ]
    driver = f'{sys.executable} -m cli sweep --address "$STABILITY_SLURM_HEAD" {" ".join(TINY)} --trials 2 --name t'
    assert driver in out
    assert "--num-cpus=16 --num-gpus=4" in out
    assert subprocess.run(["bash", "-n"], input=out, text=True).returncode == 0
    assert "cannot be checked" in err
    assert list(tmp_path.iterdir()) == []  # --print submits and writes nothing


@pytest.mark.parametrize(
    ("inner", "says"),
    [
        ([], "give the command after --"),
        (["--", "train", "--model", "vit_c_1gf", "--optim", "adamw"], "got 'train'"),
        (["--", "sweep", *TINY, "--address", "10.0.0.1:6379"], "takes no --address"),
        (["--", "sweep", *TINY, "--dry-run"], "--dry-run runs here"),
        (["--", "sweep", "--model", "vit_x", "--optim", "adamw"], "vit_x"),  # the command's own checks
        (["--", "grid", "--figure", "3", "--epochs", "0"], "--epochs"),
        (["--", "sweep", *TINY, "--no-such-flag"], "unrecognized arguments"),
    ],
)
def test_a_command_that_would_fail_is_refused_before_it_is_queued(inner, says, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["slurm", *inner])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and says in lines[0], err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--time", "3"], "--time 3 leaves no time to train"),  # 180 s <= 120 + 70 + 60
        (["--time", "2:30:00x"], "use M, M:S, H:M:S"),
        (["--partition", "gpu\necho pwned"], "control character"),
        (["--sbatch=qos=high"], "takes an sbatch option"),
        (["--sbatch=--output=/elsewhere/%j.out"], "sets --output itself"),
        (["--job-name", "../up"], "letters, digits"),
    ],
)
def test_options_that_would_break_the_script_are_refused(options, says, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["slurm", "--print", *options, "--", "sweep", *TINY])
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and says in lines[0], err


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10", 600), ("10:30", 630), ("1:00:05", 3605), ("2-3", 183600), ("2-3:04", 183840), ("1-0:0:9", 86409)],
)
def test_time_limits_are_read_as_sbatch_reads_them(text, seconds):
    from cli.slurm import time_limit_s

    assert time_limit_s(text) == seconds
    assert time_limit_s("UNLIMITED") == time_limit_s("0") == math.inf


def test_without_sbatch_it_says_so_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))  # no sbatch on it
    code, _, err = run_cli(["slurm", "--", "sweep", *TINY, "--trials", "2"])
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: slurm: no sbatch here")
    assert list(tmp_path.iterdir()) == []


def test_a_refused_submission_leaves_no_folder(tmp_path, monkeypatch):
    """sbatch's own refusal (a partition that does not exist, say) is one error line; the results
    and log folders made for the job are removed again."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text("#!/bin/sh\necho 'sbatch: error: invalid partition specified: x' >&2\nexit 1\n")
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(["slurm", "--partition", "x", "--", "sweep", *TINY, "--results", "r/deep"])
    assert code == 2
    assert (
        err.strip().splitlines()[-1]
        == "error: slurm: sbatch refused the job: sbatch: error: invalid partition specified: x"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bin"]


# Stand-ins for Slurm, Ray and Python, to run the script's own logic on any machine: srun runs
# its command once, here; `ray symmetric-run` runs its entrypoint (or, with STUB_RAY_FAILS, exits
# 0 without it, as symmetric-run does when `ray start` fails); the "python" sleeps STUB_SLEEP s
# and exits STUB_EXIT when it is the command.
STUBS = {
    "srun": 'while [ "$1" != bash ]; do shift; done; exec "$@"',
    "ray": 'echo "ray $1 auth $RAY_AUTH_MODE $(stat -c %a "$RAY_AUTH_TOKEN_PATH")" >> "$STUB_LOG"\n'
    '[ "$1" = symmetric-run ] || exit 0; [ -z "${STUB_RAY_FAILS:-}" ] || exit 0\n'
    'while [ "$1" != -- ]; do shift; done; shift; exec "$@"',
    "scontrol": 'echo "scontrol $*" >> "$STUB_LOG"',
    "hostname": '[ "$1" = --ip-address ] && echo 127.0.1.1 || echo "10.1.2.3 192.168.0.9"',
    "python": '[ "$1" = -c ] && { echo token; exit 0; }; echo "command $*" >> "$STUB_LOG"; sleep "${STUB_SLEEP:-0}"\n'
    'exit "${STUB_EXIT:-0}"',
}


def stub_job(tmp_path: Path, **env: str) -> tuple[subprocess.Popen, Path, Path]:
    """The script of a job whose folders' names hold spaces and shell characters, started under the
    stubs; returns the running script, its logs folder and the stubs' log."""
    from sweeps import slurm

    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    for name, body in STUBS.items():
        (stubs / name).write_text(f"#!/bin/bash\n{body}\n")
        (stubs / name).chmod(0o755)
    logs = tmp_path / "it's $HOME `x` dir" / "slurm"
    logs.mkdir(parents=True, exist_ok=True)
    job = slurm.SlurmJob(
        command=("study", "--", "a b.toml"), python=str(stubs / "python"), workdir=tmp_path, logs=logs, lock_wait_s=0
    )
    (tmp_path / "job.sh").write_text(slurm.script(job))
    log = tmp_path / "stub.log"
    variables = {"SLURM_JOB_ID": "77", "SLURM_JOB_NUM_NODES": "1", "SLURM_JOB_NODELIST": "n1", "STUB_LOG": str(log)}
    process = subprocess.Popen(
        ["bash", str(tmp_path / "job.sh")],
        env={"PATH": f"{stubs}:/usr/bin:/bin", **variables, **env},
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return process, logs, log


@pytest.mark.parametrize(("env", "code"), [({}, 0), ({"STUB_EXIT": "3"}, 3), ({"STUB_RAY_FAILS": "1"}, 1)])
def test_the_job_exits_with_the_commands_status_and_fails_when_the_command_never_ran(env, code, tmp_path):
    process, logs, log = stub_job(tmp_path, **env)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == code, out
    assert "Ray head 10.1.2.3:6379" in out  # the name's 127.0.1.1 skipped for the node's first IPv4
    ran = log.read_text()
    assert "ray symmetric-run auth token 600" in ran  # Ray's token authentication, a token only its owner reads
    if "STUB_RAY_FAILS" in env:
        assert "command" not in ran and "the command did not finish (Ray did not start" in out
    else:
        assert "command -m cli study --address 10.1.2.3:6379 -- a b.toml" in ran
    assert list(logs.iterdir()) == []  # neither the status file nor the token is left


@pytest.mark.parametrize(("restarts", "requeued"), [("0", True), ("10", False)])
def test_usr1_before_the_time_limit_requeues_the_job_at_most_max_requeues_times(restarts, requeued, tmp_path):
    process, _, log = stub_job(tmp_path, STUB_SLEEP="3", SLURM_RESTART_COUNT=restarts)
    wait_for(lambda: "command" in (log.read_text() if log.exists() else ""), 30, "the job's command")
    process.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@grace sends the batch shell
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, out  # the stand-in scontrol requeues nothing: the command ends
    assert ("scontrol requeue 77" in log.read_text()) is requeued, out
    assert ("requeued itself" in out) is requeued and ("restarted 10 times: not again" in out) is not requeued
    assert (f"run {restarts}" in out) and (("waiting 0 s" in out) is not requeued)


GOOD = [["sweep", *TINY], ["grid", "--figure", "3", "--preset", "smoke"], ["study", "study.toml"]]
BAD = [["sweep", "--model", "vit_x", "--optim", "adamw"], ["study", "missing.toml"], ["noise", "--sweep", "s"], []]
OPTIONS = {
    "--nodes": ["1", "4", "0", "x"],
    "--gpus-per-node": ["1", "8", "0", "-1"],
    "--cpus-per-task": ["1", "32", "0"],
    "--time": ["10", "1-00:00:00"],
    "--partition": ["gpu"],
    "--grace": ["60", "300", "10", "99999"],
    "--max-requeues": ["0", "3", "-1"],
    "--ray-port": ["6379", "80", "70000"],
    "--shared-nodes": None,
    "--job-name": ["mine", "../up", "a b", "%x"],
}


@st.composite
def slurm_lines(data) -> list[str]:
    argv = ["slurm", "--print"]
    for flag in data(st.lists(st.sampled_from(sorted(OPTIONS)), max_size=4, unique=True)):
        argv += [flag] if OPTIONS[flag] is None else [flag, data(st.sampled_from(OPTIONS[flag]))]
    inner = data(st.sampled_from(GOOD + BAD))
    return argv + (["--", *inner] if inner else [])


@settings(max_examples=30, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(argv=slurm_lines())
def test_drawn_slurm_lines_print_a_valid_script_or_one_error_line(argv, tmp_path_factory):
    folder = tmp_path_factory.mktemp("drawn")
    (folder / "study.toml").write_text(
        'name = "s"\nmodels = ["vit_c_1gf"]\noptimizers = ["adamw"]\npreset = "smoke"\ndataset = "synthetic"\n'
    )
    before = sorted(folder.iterdir())
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        code, out, err = run_cli(argv)
    finally:
        os.chdir(cwd)
    assert code in (0, 2), (argv, err)
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), (argv, lines)
    else:
        assert out.startswith("#!/bin/bash\n") and subprocess.run(["bash", "-n"], input=out, text=True).returncode == 0
    assert sorted(folder.iterdir()) == before, argv


# ---------------------------------------------------------------- a real Slurm

ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")
NEEDED = ("slurmctld", "slurmd", "munged", "mungekey", "sbatch", "scontrol", "scancel", "unshare", "nsenter", "ip")


class Slurm:
    """A single-node Slurm in namespaces of its own; ``run`` runs a command inside them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root / "namespace.log"
        with self.log.open("w") as log:
            self.unshare = subprocess.Popen(
                [
                    "unshare",
                    "--net",
                    "--pid",
                    "--kill-child",
                    "--mount-proc",
                    "bash",
                    str(CLUSTER_SCRIPT),
                    str(root / "d"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.init = None  # the namespace's PID 1, as this namespace numbers it

    def start(self) -> None:
        def idle() -> bool:
            if self.unshare.poll() is not None:
                text = self.log.read_text()
                if "unshare" in text:  # the namespaces themselves are not allowed here
                    pytest.skip(f"namespaces are not allowed here: {text.strip().splitlines()[-1]}")
                raise AssertionError(f"the test Slurm did not start:\n{text}")
            children = psutil.Process(self.unshare.pid).children()
            if not (children and "slurm up" in self.log.read_text()):
                return False
            self.init = children[0].pid
            return "idle" in self.run(["sinfo", "--noheader", "-o", "%t"]).stdout

        wait_for(idle, 30, "the test Slurm to answer")

    def env(self) -> dict[str, str]:
        # Ray's folders under this test's own (short: Ray's socket paths are limited to 107 bytes)
        # A requeued run waits the lock's stale age plus a heartbeat: 3 s here, 70 s by default.
        lock = {"STABILITY_LOCK_STALE_S": "2", "STABILITY_LOCK_HEARTBEAT_S": "1"}
        return (
            os.environ
            | lock
            | {"SLURM_CONF": str(self.root / "d" / "slurm.conf"), "RAY_TMPDIR": str(self.root / "ray")}
        )

    def run(self, argv: list[str], cwd: Path | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
        enter = ["nsenter", "-t", str(self.init), "--net", "--pid", "--mount", f"--wd={cwd or self.root}"]
        return subprocess.run(enter + argv, env=env or self.env(), capture_output=True, text=True, timeout=180)

    def stability(self, argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
        return self.run([sys.executable, "-m", "cli", *argv], cwd=cwd)

    def job(self, job_id: str) -> dict[str, str]:
        fields = self.run(["scontrol", "show", "job", "-o", job_id]).stdout.split()
        return dict(field.split("=", 1) for field in fields if "=" in field)

    def wait(self, job_id: str, timeout: float = 600) -> dict[str, str]:
        wait_for(lambda: self.job(job_id).get("JobState") in ENDED, timeout, f"job {job_id} to end")
        return self.job(job_id)

    def ray_processes(self) -> list[str]:
        listing = self.run(["ps", "-eo", "args"]).stdout.splitlines()
        return [line for line in listing if "gcs_server" in line or "raylet" in line]

    def stop(self) -> None:
        if self.init is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.init, signal.SIGKILL)  # PID 1 of the namespace: every process in it goes
        self.unshare.kill()
        self.unshare.wait(timeout=30)


def unavailable() -> str | None:
    missing = [tool for tool in NEEDED if shutil.which(tool) is None]
    if missing:
        return f"no {', '.join(missing)}: install Debian's slurm-wlm and munge (.ci/run does)"
    if os.geteuid() != 0:
        return "slurmd and the namespaces need root"
    return None


@pytest.fixture(scope="module")
def slurm():
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="slurm", dir="/tmp"))
    cluster = Slurm(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def submitted(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.split("submitted job ")[1].split(":")[0]


def output_of(results: Path, job_id: str) -> str:
    return next((results / "slurm").glob(f"*-{job_id}.out")).read_text()


def stored(store: Store, at_least: int, job_id: str, slurm: Slurm) -> pd.DataFrame:
    """The sweep's rows once it holds ``at_least`` of them (the job still running)."""

    def enough() -> bool:
        assert slurm.job(job_id)["JobState"] not in ENDED, slurm.job(job_id)
        return len(store.read_trials("long")[0]) >= at_least

    wait_for(enough, 300, f"{at_least} results")
    return store.read_trials("long")[0]


@pytest.mark.slow
def test_a_sweep_job_requeued_by_its_time_signal_then_cancelled_and_submitted_again_finishes_once(slurm, tmp_path):
    # one trial at a time (a trial takes both CPUs), so that the signals land mid-sweep
    sweep = ["sweep", *TINY, "--trials", "16", "--cpus-per-trial", "2", "--name", "long", "--results", "r"]
    store = Store(tmp_path / "r")
    first = submitted(slurm.stability(["slurm", "--", *sweep], cwd=tmp_path))
    stored(store, 1, first, slurm)
    # The job's Ray takes no connection without the run's token (Ray's token authentication).
    no_token = {k: v for k, v in slurm.env().items() if not k.startswith("RAY_AUTH")}
    client = "import ray\ntry:\n    ray.init(address='10.254.0.1:6379')\nexcept ConnectionError:\n    print('refused')"
    assert slurm.run([sys.executable, "-c", client], env=no_token).stdout.strip().endswith("refused")
    assert (slurm.job(first)["JobState"], slurm.job(first)["Restarts"]) == ("RUNNING", "0")  # its Ray was up
    # What Slurm sends --grace seconds before the time limit: USR1 to the batch shell.
    slurm.run(["scancel", "--signal=USR1", "--batch", first])
    wait_for(lambda: slurm.job(first).get("Restarts") == "1", 120, "the job's requeue")
    wait_for(lambda: slurm.job(first)["JobState"] == "PENDING", 120, "the requeued job to wait")
    held = slurm.job(first)  # Slurm holds a requeued job back 2 minutes (Reason=BeginTime): no wait here
    assert (held["JobState"], held["Reason"]) == ("PENDING", "BeginTime"), held
    slurm.run(["scontrol", "update", f"JobId={first}", "StartTime=now"])
    requeued, _ = store.read_trials("long")
    before = stored(store, len(requeued) + 1, first, slurm)  # the same job id trains on, resumed

    slurm.run(["scancel", first])
    assert slurm.wait(first)["JobState"] == "CANCELLED"
    cancelled, _ = store.read_trials("long")
    assert len(cancelled) < 16, "the job should have been cancelled mid-sweep"
    wait_for(lambda: slurm.ray_processes() == [], 60, "the tasks' `ray stop` on SIGTERM")

    second = submitted(slurm.stability(["slurm", "--", *sweep], cwd=tmp_path))
    job = slurm.wait(second)
    out = output_of(tmp_path / "r", first)
    assert "requeued itself" in out and f"job {first}, run 1" in out and "waiting 3 s" in out, out
    out = output_of(tmp_path / "r", second)
    assert (job["JobState"], job["ExitCode"]) == ("COMPLETED", "0:0"), out
    assert f"job {second}, run 0" in out and "Ray head 10.254.0.1:6379" in out
    assert "cluster 10.254.0.1:6379: 1 node" in out  # the driver's cluster is the job's Ray
    logs = tmp_path / "r" / "slurm"
    assert sorted(p.name for p in logs.iterdir()) == sorted(
        f"stability-sweep-long-{job_id}.{kind}" for job_id in (first, second) for kind in ("out", "sbatch")
    )  # no status file, no token left
    assert slurm.ray_processes() == []
    after, _ = store.read_trials("long")
    manifest = store.read_manifest("long")
    assert sorted(after["trial_id"]) == sorted(manifest["trial_id"])  # one row per manifest row
    assert set(after["status"]) == {"ok"}
    columns = ["top1_err", "finished_at", "wall_s"]
    for earlier in (requeued, before, cancelled):  # no trial trained again
        kept = after.set_index("trial_id").loc[earlier["trial_id"], columns]
        assert kept.equals(earlier.set_index("trial_id")[columns])


@pytest.mark.slow
def test_a_command_that_fails_in_the_job_or_a_ray_that_never_starts_fails_the_job(slurm, tmp_path):
    (tmp_path / "fails_in_slurm.py").write_text(
        "import os\nif os.environ.get('SLURM_JOB_ID'):\n    raise RuntimeError('no GPUs here after all')\n"
    )
    sweep = ["sweep", *TINY, "--trials", "2", "--results", "r", "--import", "fails_in_slurm.py"]
    job_id = submitted(slurm.stability(["slurm", "--", *sweep], cwd=tmp_path))
    job = slurm.wait(job_id)
    assert (job["JobState"], job["ExitCode"]) == ("FAILED", "2:0")
    assert "no GPUs here after all" in output_of(tmp_path / "r", job_id)

    # A port held by another process: `ray start` fails, symmetric-run still exits 0, and the job
    # fails because the command never wrote its status.
    holder = subprocess.Popen(
        ["nsenter", "-t", str(slurm.init), "--net", sys.executable, "-c",
         "import socket, time; s = socket.socket(); s.bind(('127.0.0.1', 6390)); s.listen(); "
         "print('bound', flush=True); time.sleep(600)"], stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "bound"
        job_id = submitted(slurm.stability(["slurm", "--ray-port", "6390", "--", *sweep[:-2]], cwd=tmp_path))
        job = slurm.wait(job_id)
    finally:
        holder.kill()
        holder.wait()
    assert (job["JobState"], job["ExitCode"]) == ("FAILED", "1:0")
    out = output_of(tmp_path / "r", job_id)
    assert "Failed to start Ray" in out and "the command did not finish (Ray did not start" in out
