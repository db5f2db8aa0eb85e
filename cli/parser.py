"""The ``stability`` command line's parser: every subcommand, its flags, and the function that
runs it, named by module and function (``handler``) and imported only when that command runs,
so that building the parser imports no command's code: ``--help`` and a mistyped flag answer
at once, without torch or Ray."""

from __future__ import annotations

import argparse
import importlib
import math
from collections.abc import Callable
from pathlib import Path

from stability.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one ``error:`` line and status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def add_command(sub, name: str, handler: str, **kwargs) -> Parser:
    """A subcommand, run by ``handler`` ("module:function", imported when the command runs)."""
    p = sub.add_parser(name, **kwargs)
    p.set_defaults(handler=handler)
    return p


def run_parsed(args: argparse.Namespace, *, check_only: bool = False) -> int:
    """Run a parsed command: the user's ``--import`` modules first (they register what the
    command reads), then its handler. ``check_only``: every check that needs no cluster, then
    stop (`stability slurm`, before it submits a sweep, grid or study)."""
    if getattr(args, "imports", None):
        from stability.imports import load_imports

        load_imports(args.imports)
    module, _, function = args.handler.partition(":")
    handler: Callable[..., int] = getattr(importlib.import_module(module), function)
    return handler(args, check_only=True) if check_only else handler(args)


def build_parser() -> Parser:
    parser = Parser(prog="stability", description="Hyperparameter-stability studies of ViT_P, ViT_C and CNNs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = add_command(sub, "models", "cli.models:command", help="list the model zoo with complexity counts")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.add_argument("--image-size", type=int, default=224)
    add_import_flag(p)

    p = add_command(
        sub,
        "optimizers",
        "cli.optimizers:command",
        help="list the optimizers: hyperparameters, lr scaling, default intervals",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list instead of text")
    add_import_flag(p)

    p = add_command(sub, "train", "cli.train:command", help="train one model once and store its result")
    add_model_flags(p)
    p.add_argument("--lr", type=number, help="lr normalized to batch 2048 (default: Table 4 optimum)")
    p.add_argument("--wd", type=number, help="weight decay (default: Table 4 optimum)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--dataset", default="digits")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--patch-size", type=int)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--no-autoaugment", action="store_true", help="turn AutoAugment off (ablation)")
    p.add_argument("--no-mixing", action="store_true", help="turn mixup/CutMix off (ablation)")
    p.add_argument("--dry-run", action="store_true", help="check the run and print it; train nothing")
    add_import_flag(p)
    add_execution_flags(p)
    add_log_flags(p)

    p = add_command(
        sub, "sweep", "cli.sweeps:sweep", help="an EDF sweep: N (lr, wd) pairs of one model and optimizer on Ray Tune"
    )
    add_model_flags(p, required=False)
    p.add_argument(
        "--trainer",
        help="sweep a registered trainable (your own training function, from --import) instead of a model and "
        "optimizer; its hyperparameters are sampled with --space (docs/experiments.md)",
    )
    add_sweep_flags(p)
    p.add_argument("--trials", type=int, help="trials drawn (default 64; the laptop preset's 32)")
    p.add_argument("--name", help="sweep name (default: MODEL-OPTIM-PRESET; a trainable's: its name)")
    p.add_argument(
        "--sampler",
        default="random",
        choices=["random", "sobol", "grid"],
        help="grid: every point of a space of choices once (--trials is then its size)",
    )
    p.add_argument(
        "--lr-range", help="A,B: lr interval (batch 2048), default Table 4's (laptop: centred on its optimum)"
    )
    p.add_argument("--wd-range", help="C,D: wd interval, default Table 4's (laptop: centred on its optimum)")
    p.add_argument(
        "--space",
        action="append",
        metavar="NAME=DIST",
        help="sample a recipe field or an optimizer hyperparameter: DIST is log:A,B | uniform:A,B | int:A,B | "
        "choice:a|b|c (repeatable; lr and wd default to the optimizer's intervals, Table 4's for adamw/sgd)",
    )
    p.add_argument("--space-file", type=absolute_path, help='a TOML file whose [space] table holds NAME = "DIST"')
    p.add_argument("--dry-run", action="store_true", help="print the plan (the preset as given, else smoke) and stop")
    add_import_flag(p)

    p = add_command(sub, "grid", "cli.sweeps:grid", help="the paper's experiment grid of one figure (2-5)")
    p.add_argument("--figure", type=int, required=True, choices=[2, 3, 4, 5])
    p.add_argument("--models", help="comma-separated subset of the figure's models")
    p.add_argument(
        "--optims", help="comma-separated optimizers: a subset of the figure's (figure 3: any registered ones)"
    )
    p.add_argument("--trials", type=int, help="trials per EDF sweep (figures 4, 5; default 64, the laptop preset's 32)")
    p.add_argument("--sampler", default="random", choices=["random", "sobol"])
    p.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    add_data_dir_flag(p)
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--results", default="results")
    add_import_flag(p)
    add_sweep_flags(p, epochs_type=str)

    p = add_command(
        sub, "study", "cli.study:run", help="a whole comparison from one study file: sweeps, resume and its figure"
    )
    p.add_argument("file", type=absolute_path, help="the study's TOML file (see docs/study.md)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    p.add_argument("--results", default="results")
    p.add_argument("--out", default="figures", help="where the comparison figure goes")
    p.add_argument("--resamples", type=RESAMPLES, default=1000, help="bootstrap resamples for the figure's bands")
    add_data_dir_flag(p)
    add_import_flag(p)
    add_run_flags(p)

    p = add_command(
        sub, "noise", "cli.sweeps:noise", help="re-train a sweep's best (lr, wd) under K seeds: its seed-noise floor"
    )
    p.add_argument("--sweep", required=True, help="the sweep whose best trial is re-trained")
    p.add_argument("--seeds", type=int, default=5, help="how many other seeds")
    p.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    add_data_dir_flag(p)
    p.add_argument("--results", default="results")
    add_run_flags(p)

    p = add_command(sub, "report", "cli.report:command", help="one self-contained HTML report of a results store")
    p.add_argument("--results", default="results")
    p.add_argument("--out", default="report.html")
    p.add_argument("--resamples", type=RESAMPLES, default=1000, help="bootstrap resamples for bands and intervals")
    p.add_argument(
        "--with-replacement",
        action="store_true",
        help="expected best of k drawn with replacement (Dodge et al. 2019, biased) instead of without (unbiased)",
    )
    add_first_flag(p)

    p = add_command(
        sub, "transfer", "cli.transfer:command", help="tune on one sweep, train another: optimum shift, ranks, regret"
    )
    p.add_argument("--results", default="results")
    p.add_argument("--from", dest="source", metavar="SWEEP", help="the sweep tuned on (with --to)")
    p.add_argument("--to", dest="target", metavar="SWEEP", help="the sweep its optimum is used in (with --from)")

    p = add_command(
        sub, "power", "cli.power:command", help="the difference N trials per sweep detect, simulated from a pilot"
    )
    p.add_argument("--results", default="results")
    p.add_argument(
        "--sweep",
        action="append",
        required=True,
        help="a pilot sweep; again for more (two of the same draws: a paired pilot; else pooled)",
    )
    p.add_argument("--trials", type=trial_counts, default=[16, 32, 64, 128], help="N,N,...: trials per sweep")
    p.add_argument("--sims", type=at_least(20, 100_000), default=400, help="simulated comparisons per step")
    p.add_argument("--seed", type=seed, default=0)

    p = add_command(
        sub, "figures", "cli.figures:command", help="draw Figures 2-5 and the summary tables from a results store"
    )
    p.add_argument("--results", default="results")
    p.add_argument("--out", default="figures")
    p.add_argument(
        "--figure",
        default="all",
        choices=["2", "3", "4", "5", "compare", "all"],
        help="a paper figure, the comparison of every sweep in the store, or all",
    )
    p.add_argument("--format", default="png", choices=["png", "pdf", "svg"])
    p.add_argument("--resamples", type=RESAMPLES, default=1000, help="bootstrap resamples for bands and intervals")
    p.add_argument(
        "--protocol",
        help="draw Figures 2 and 3 for this protocol only (a label as in figure2-<protocol>.png and the tables' "
        "protocol column); default: one figure per protocol the store holds",
    )
    add_first_flag(p)

    p = add_command(
        sub,
        "bench",
        "benchmarks.report:main",
        help="side-by-side benchmarks: step throughput, data path, sweep wall time",
    )
    p.add_argument("what", choices=["step", "data", "population", "sweep", "all"])
    p.add_argument("--model", default="vit_c_4gf")
    p.add_argument("--image-size", type=int, help="default 224 on GPU, 32 on CPU")
    p.add_argument("--batch-size", type=int, help="default 256 on GPU, 16 on CPU")
    p.add_argument("--steps", type=int, default=10, help="timed training steps (step benchmark)")
    p.add_argument("--compile", action="store_true", help="torch.compile the fast path (falls back to eager)")
    p.add_argument("--dataset", default="digits", help="real data for the data-path benchmark")
    add_data_dir_flag(p)
    p.add_argument("--trials", type=int, default=4, help="trials per side (sweep benchmark)")
    p.add_argument("--epochs", type=int, default=1, help="epochs per trial (sweep benchmark)")
    p.add_argument("--pack", type=int, default=2, help="trials sharing the device at once (population, sweep)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--dry-run", action="store_true", help="check the flags, say what would run, and stop")

    p = add_command(sub, "status", "cli.sweeps:status", help="planned / done / diverged / failed / remaining per sweep")
    p.add_argument("--results", default="results")

    add_external_parsers(sub)
    add_slurm_parser(sub)
    return parser


def add_first_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--first",
        type=at_least(1),
        metavar="K",
        help="analyse only each sweep's first K trials (its first K draws): what a budget of K would have said",
    )


def at_least(minimum: int, at_most: int | None = None):
    """An argparse type: an integer >= ``minimum`` (and <= ``at_most``), refused in one line otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        if at_most is not None and value > at_most:
            raise argparse.ArgumentTypeError(f"must be at most {at_most:,}, got {value}")
        return value

    return parse


def trial_counts(text: str) -> list[int]:
    """Comma-separated trials per sweep, 2 to 4096 each (a simulation of more would run for hours)."""
    return [at_least(2, 4096)(part) for part in text.split(",")]


# The resampling holds every resample in memory at once (analysis.stats, vectorized): beyond
# this, a figure's bands would need more memory than a laptop has, for no visible gain.
RESAMPLES = at_least(1, 100_000)


def seed(text: str) -> int:
    """A seed numpy and torch both take: 0 .. 2**32 - 1."""
    value = at_least(0)(text)
    if value >= 2**32:
        raise argparse.ArgumentTypeError(f"must be below 2**32, got {value}")
    return value


def number(text: str) -> float:
    """A finite float (argparse's float takes 'nan' and 'inf', which no flag here means)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def absolute_path(given: str) -> str:
    """Resolved at parse time, because Ray Tune runs each trial in a working directory of its own."""
    return str(Path(given).resolve())


def import_spec(given: str) -> str:
    """A file is recorded by its absolute path (trials run elsewhere); a dotted module as given."""
    return absolute_path(given) if given.endswith(".py") or "/" in given else given


def add_import_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--import",
        dest="imports",
        action="append",
        type=import_spec,
        default=[],
        metavar="MODULE_OR_FILE",
        help="a module (dotted name) or .py file that registers models, datasets or optimizers; imported here and in "
        "every trial process (repeatable)",
    )


def add_data_dir_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=absolute_path, help="where the dataset lives (default: see docs/stability.md)")


def add_model_flags(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--model", required=required)
    p.add_argument(
        "--optim", required=required, help="a registered optimizer: adamw, sgd, ... (see `stability optimizers`)"
    )
    add_data_dir_flag(p)
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--results", default="results")


def add_sweep_flags(p: argparse.ArgumentParser, epochs_type=int) -> None:
    p.add_argument(
        "--preset", help="smoke | small | laptop | paper (default: small where the cluster has GPUs, else smoke)"
    )
    p.add_argument("--dataset")
    p.add_argument("--epochs", type=epochs_type, help="epochs (grid: a comma-separated list)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--image-size", type=int)
    p.add_argument("--patch-size", type=int)
    add_run_flags(p)


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """Where and how trials run: the cluster and each trial's resources."""
    p.add_argument("--address", help="HOST:PORT of an existing Ray cluster (default: a local one on 127.0.0.1)")
    p.add_argument("--gpus-per-trial", type=number, help="may be fractional (default: 1 where the cluster has GPUs)")
    p.add_argument("--cpus-per-trial", type=number, default=1.0)
    p.add_argument("--max-failures", type=at_least(0), default=2, help="retries of a trial that raises, in one run")
    p.add_argument(
        "--no-retry-failed",
        action="store_true",
        help="keep the sweep's failed trials as they are (default: a run retries them from their checkpoints)",
    )
    p.add_argument(
        "--pack",
        type=int,
        help="trials trained together as one population on a device "
        "(default on a GPU below ImageNet scale: as many as fit, up to 16; else 1)",
    )
    add_execution_flags(p)
    add_log_flags(p)


def add_log_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log",
        action="append",
        choices=["tensorboard", "mlflow"],
        help="send each trial's curve and hyperparameters, as it trains, to TensorBoard event files under the "
        "sweep or to an MLflow experiment per sweep (repeatable; the optional extras of the same names)",
    )
    p.add_argument("--mlflow-uri", help="with --log mlflow: a tracking URI (default: sqlite:///<sweep>/mlflow.db)")


def add_execution_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=int,
        help="run each trial data-parallel on N >= 1 Ray Train workers (DDP); --cpus-per-trial is then per "
        "worker (default: the trial runs in one process, without Ray Train)",
    )
    p.add_argument("--gpus-per-worker", type=number, help="with --workers (default: 1 where the cluster has GPUs)")
    p.add_argument("--accumulate", type=int, default=1, help="gradient accumulation: micro-batches per step")
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile each trial's (or a ViT population's) training forward (eager if it fails)",
    )


def add_external_parsers(sub) -> None:
    """`stability import` and `stability export` (cli/external.py)."""
    p = add_command(
        sub,
        "import",
        "cli.external:import_",
        help="turn an Optuna study, a Ray Tune experiment or a CSV into a sweep of the store",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--optuna", metavar="URL", help="an Optuna storage: sqlite:///x.db, journal:///x.log, ...")
    source.add_argument("--tune", metavar="DIR", help="a Ray Tune experiment folder")
    source.add_argument("--csv", metavar="FILE", help="a CSV file, one trial per row")
    p.add_argument("--study", help="the Optuna study (default: the storage's only one)")
    p.add_argument("--metric", help="the value's name (Optuna: default 'value'; Tune: a reported key; CSV: a column)")
    p.add_argument(
        "--mode", choices=["min", "max"], help="which way the metric is better (Tune's words; or --direction)"
    )
    p.add_argument("--direction", choices=["minimize", "maximize"], help="which way the metric is better (or --mode)")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME[:SCALE]",
        help="a hyperparameter (CSV column, Tune config key) and its scale: log | linear | int | choice (default "
        "linear; text is a choice); repeatable. Tune default: every config key",
    )
    p.add_argument("--diverged", type=number, help="the value a diverged trial counts as (default: the worst, +-inf)")
    p.add_argument("--name", help="the sweep's name (default: the study's, folder's or file's name)")
    p.add_argument("--model", help="a model label for the rows (default: the sweep's name)")
    p.add_argument("--optimizer", help="an optimizer label for the rows (default: unknown)")
    p.add_argument("--results", default="results")
    p.add_argument("--dry-run", action="store_true", help="read and check the source, say what would be written, stop")

    p = add_command(
        sub,
        "export",
        "cli.external:export",
        help="write a store's sweeps as Optuna studies (for optuna-dashboard and friends)",
    )
    p.add_argument("--optuna", metavar="URL", required=True, help="the storage: sqlite:///studies.db, journal:///x.log")
    p.add_argument("--results", default="results")
    p.add_argument("--sweep", action="append", default=[], help="a sweep to export (repeatable; default: all)")


def add_slurm_parser(sub) -> None:
    """`stability slurm` (cli/slurm.py)."""
    p = add_command(
        sub,
        "slurm",
        "cli.slurm:run",
        help="run a sweep, grid or study as a Slurm job: Ray across the allocation, requeued before its time "
        "limit and on preemption, resumed where it was",
    )
    p.add_argument("--print", dest="print_only", action="store_true", help="print the sbatch script; submit nothing")
    p.add_argument("--nodes", type=at_least(1), default=1, help="nodes of the allocation (one Ray node each)")
    p.add_argument("--gpus-per-node", type=at_least(1), help="GPUs per node (default: none asked for)")
    p.add_argument("--cpus-per-task", type=at_least(1), help="CPUs per node's task (default: Slurm's)")
    p.add_argument("--time", help="the job's time limit, as sbatch takes it: MINUTES, HH:MM:SS, D-HH:MM:SS")
    p.add_argument("--partition")
    p.add_argument("--account")
    p.add_argument("--job-name", help="default: stability-COMMAND-NAME")
    p.add_argument(
        "--sbatch",
        action="append",
        default=[],
        metavar="OPTION",
        help="a further #SBATCH option, written as --sbatch=--qos=high (repeatable)",
    )
    p.add_argument(
        "--shared-nodes",
        action="store_true",
        help="do not ask for whole nodes (--exclusive); Ray then refuses a node where another Ray runs",
    )
    p.add_argument(
        "--grace",
        type=at_least(60, 65_535),
        default=120,
        help="seconds before the time limit at which the job requeues itself (Slurm signals within 60 s)",
    )
    p.add_argument("--max-requeues", type=at_least(0), default=10, help="requeues before the time limit, at most")
    p.add_argument("--ray-port", type=at_least(1024, 65_535), default=6379, help="the Ray head's port")
    p.add_argument("inner", nargs=argparse.REMAINDER, help="-- then a sweep, grid or study command")
