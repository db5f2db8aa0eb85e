"""Stores written before sweeps named their metric read exactly as before: the same tables and
the same figures as the previous release drew from them.

``data/previous_release/store`` was written by an earlier release (commit 29b6a73: three
4-trial EDF sweeps, a seed-noise sweep and a Figure 3 grid, on synthetic data), and
``tables/`` and ``figures.json`` are what `stability figures` and the drawing functions made of
it, re-recorded when the statistics changed on purpose (the release of "Verdicts you can trust":
the intervals of the summary table, its exact area under the EDF, which moved by at most 4e-4,
the seed-noise columns it gained, and the EDF bands, now simultaneous and named in the legend;
every other column, line, point and label was checked equal to the 29b6a73 recording
first). A figure is compared by what it draws (every line, point, band, label and limit), not by
its pixels, so that a new matplotlib's rendering does not fail the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

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


if __name__ == "__main__":  # run by the previous release's code (PYTHONPATH) to record its drawings
    (HERE / "figures.json").write_text(json.dumps(drawings(HERE / "store"), indent=None) + "\n")
