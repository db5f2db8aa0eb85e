"""Stores written before sweeps named their metric read exactly as before: the same tables and
the same figures as the previous release drew from them.

``data/previous_release/store`` was written by an earlier release (commit 29b6a73: three
4-trial EDF sweeps, a seed-noise sweep and a Figure 3 grid, on synthetic data), and
``tables/`` and ``figures.json`` are what `stability figures` and the drawing functions made of
it, re-recorded when the statistics changed on purpose (the release of "Verdicts you can trust":
the intervals of the summary table, its exact area under the EDF, which moved by at most 4e-4,
the seed-noise columns it gained, and the EDF bands, now simultaneous and named in the legend;
every other column, line, point and label was checked equal to the 29b6a73 recording
first), and again in the release of "Budgets, sensitivity and transfer" (the summary named
``lr_sensitivity``, the mean of min(delta, 10), renamed ``capped_mean_delta`` with the same
values and intervals, and the learning rate's and weight decay's sensitivity added to the
table and, as one line per sweep, to the comparison figure's lr and wd panels; every other
column, line, point and label checked equal first). A figure is compared by what it draws (every line, point,
band, label and limit), not by its pixels, so that a new matplotlib's rendering does not fail
the test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import TINY_DATA

HERE = Path(__file__).parent / "data" / "previous_release"
FIGURES = ("2", "3", "4", "5", "compare")
RESAMPLES = 200


def _numbers(values) -> list:
    """Values rounded to 9 significant digits (NaN and inf as text), so drawings compare exactly."""
    out = []
    for v in np.asarray(values, dtype=float).ravel():
        out.append(str(v) if not np.isfinite(v) else float(f"{v:.9g}"))
    return out


def drawing(fig) -> dict:
    """What a figure draws: per axes its labels, scales and limits, every line's data and style,
    every collection's points and vertices, every text; the figure's own texts."""
    import matplotlib.colors

    axes = []
    for ax in fig.get_axes():
        axes.append(
            {
                "title": ax.get_title(),
                "labels": [ax.get_xlabel(), ax.get_ylabel()],
                "scales": [ax.get_xscale(), ax.get_yscale()],
                "limits": _numbers([*ax.get_xlim(), *ax.get_ylim()]),
                "lines": [
                    [
                        _numbers(line.get_xdata()),
                        _numbers(line.get_ydata()),
                        line.get_linestyle(),
                        line.get_marker(),
                        matplotlib.colors.to_hex(line.get_color()),
                    ]
                    for line in ax.get_lines()
                ],
                "collections": [
                    [_numbers(c.get_offsets()), [_numbers(p.vertices) for p in c.get_paths()]] for c in ax.collections
                ],
                "texts": [t.get_text() for t in ax.texts],
                "legend": [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else [],
            }
        )
    texts = [t.get_text() for t in fig.texts] + [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    return {"axes": axes, "texts": texts, "suptitle": fig._suptitle.get_text() if fig._suptitle else ""}


def drawings(store: Path) -> dict[str, dict]:
    """Every figure of the store as ``stability figures`` colours it, by what it draws."""
    import matplotlib.pyplot as plt

    from analysis import figures, load_trials

    trials = load_trials(store)
    colors = figures.store_colors(trials)
    out = {}
    for f in FIGURES:
        fig = figures.FIGURES[f](trials, RESAMPLES, colors)
        out[f] = drawing(fig)
        plt.close(fig)
    return out


def test_the_previous_releases_store_gives_the_same_tables(tmp_path):
    from analysis.figure_files import make_figures

    made = make_figures(HERE / "store", tmp_path, [], "png", RESAMPLES)
    assert not made["empty"]
    for path in sorted((HERE / "tables").glob("*.csv")):
        before, now = pd.read_csv(path), pd.read_csv(tmp_path / path.name)
        assert set(now.columns) - set(before.columns) <= {"metric"}, path.name  # one new column, nothing lost
        pd.testing.assert_frame_equal(now[before.columns], before, check_exact=True, obj=path.name)
    assert set(pd.read_csv(tmp_path / "stability_summary.csv")["metric"]) == {"top1_err"}


@pytest.fixture(scope="module")
def drawn_now() -> dict:
    return json.loads(json.dumps(drawings(HERE / "store")))  # through JSON, as stored


@pytest.mark.parametrize("figure", FIGURES)
def test_the_previous_releases_store_gives_the_same_figures(figure, drawn_now):
    before = json.loads((HERE / "figures.json").read_text())[figure]
    assert before["axes"] and drawn_now[figure] == before


RESUMED_SWEEP = [
    "--model",
    "vit_p_nano",
    "--optim",
    "sgd",
    *TINY_DATA,
    "--trials",
    "3",
    "--epochs",
    "2",
    "--name",
    "resume",
]


@pytest.mark.slow
def test_a_previous_releases_checkpoint_resumes_to_the_uninterrupted_result_and_figures(tmp_path, capsys, shared_ray):
    """``resume/`` was written by the previous release (commit 881d4da, before the trainer was
    split into config, stream and checkpoint): in ``interrupted``, trial 001 failed after its
    first epoch (``STABILITY_INJECT_FAILURE``, ``--max-failures 0``) and kept its checkpoint;
    ``whole`` is the same sweep run through by that release. This release resumes the trial from
    that checkpoint to the uninterrupted result, and the store draws the same figures."""
    from analysis import load_trials
    from cli import main

    shutil.copytree(HERE / "resume" / "interrupted", tmp_path, dirs_exist_ok=True)
    rc = main(["sweep", *RESUMED_SWEEP, "--results", str(tmp_path)])
    out = capsys.readouterr()
    assert rc == 0, out.out + out.err
    resumed, whole = (
        load_trials(root).sort_values("trial_id").reset_index(drop=True)
        for root in (tmp_path, HERE / "resume" / "whole")
    )
    assert resumed["resumed_from_epoch"].tolist() == [0, 1, 0]  # the retried trial went on from epoch 1
    columns = ["trial_id", "status", "lr", "wd", "top1_err", "top1_err_raw", "train_loss", "completed_epochs"]
    pd.testing.assert_frame_equal(resumed[columns], whole[columns], check_exact=True)
    assert drawings(tmp_path) == drawings(HERE / "resume" / "whole")


if __name__ == "__main__":  # run by the previous release's code (PYTHONPATH) to record its drawings
    (HERE / "figures.json").write_text(json.dumps(drawings(HERE / "store"), indent=None) + "\n")
