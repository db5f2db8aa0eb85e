"""One protocol per curve (docs/design.md, "The protocol"): a store holding Figure 2 and 3 grids under two
protocols (digits at the smoke preset, 1-8 epochs; fashion-mnist at the small preset, 10-80
epochs) draws them apart, measures each against its own longest run and never carries an error
across protocols. Synthetic trial rows with the columns real ones have (store.schema)."""

from __future__ import annotations

import json
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from analysis import experiments, figures
from analysis import report as html_report
from analysis.figure_files import make_figures
from store import Store, schema

SMOKE = {"dataset": "digits", "image_size": 8, "patch_size": 4, "batch_size": 32, "preset": "smoke"}
SMALL = {"dataset": "fashion-mnist", "image_size": 32, "patch_size": 4, "batch_size": 256, "preset": "small"}
EPOCHS = {"smoke": [1, 2, 4, 8], "small": [10, 20, 40, 80]}
FAMILY = {"vit_p_1gf": "ViT_P", "vit_c_1gf": "ViT_C", "regnety_1gf": "RegNetY"}
BASE = {"vit_p_1gf": 40.0, "vit_c_1gf": 35.0, "regnety_1gf": 33.0}
GAIN = [0.0, 4.0, 6.0, 7.0]  # error drop from the shortest to each longer schedule
PRESET_ERR = {"smoke": 0.0, "small": 20.0}  # fashion-mnist errors sit 20 points above digits'


@pytest.fixture(autouse=True)
def _close_figures():
    """Every test's figures are closed after it, so that a run holds few open at once."""
    yield
    plt.close("all")


def trial_row(sweep: str, index: int, model: str, optim: str, epochs: int, err: float, scale: dict, **extra) -> dict:
    """A finished trial row in the schema's columns (plan and outcome), as the trainer writes one."""
    status = extra.pop("status", "diverged" if err >= 100 else "ok")
    row = {c: None for c in [*schema.PLAN, *schema.OUTCOME]}
    row.update(
        {
            "sweep": sweep,
            "index": index,
            "trial_id": f"{model}-{optim}-e{epochs}-{index}",
            "model": model,
            "family": FAMILY[model],
            "optimizer": optim,
            "lr": 1e-3 if optim == "adamw" else 0.1,
            "wd": 0.05,
            "epochs": epochs,
            **scale,
            "seed": 0,
            "sampler": "fixed",
            "stem": "conv" if model.startswith("vit_c") else "patchify",
            "status": status,
            "top1_err": 100.0 if status != "ok" else err,
            "top1_err_raw": 100.0 if status != "ok" else err + 0.5,
            "train_loss": 1.0,
            "diverged_epoch": epochs // 2 + 1 if status == "diverged" else None,
            "completed_epochs": epochs if status == "ok" else None,
            "wall_s": 1.0,
            "device": "cpu",
            "version": "test",
            **extra,
        }
    )
    return row


def grid(figure: int, preset: str, *, diverged: dict | None = None) -> pd.DataFrame:
    """One grid sweep (``figure<figure>-<preset>``): Figure 2 trains ViTs with AdamW and RegNetY with
    SGD, Figure 3 every model with both; SGD sits 2 points above AdamW. ``diverged``: (model,
    optimizer) -> epochs whose run diverged."""
    scale = SMOKE if preset == "smoke" else SMALL
    pairs = [(m, "adamw" if m.startswith("vit") else "sgd") for m in BASE] if figure == 2 else []
    pairs = pairs or [(m, o) for m in BASE for o in ("adamw", "sgd")]
    rows = []
    for model, optim in pairs:
        for e, gain in zip(EPOCHS[preset], GAIN, strict=True):
            err = BASE[model] + PRESET_ERR[preset] + (2.0 if optim == "sgd" else 0.0) - gain
            if e in (diverged or {}).get((model, optim), []):
                err = 100.0
            rows.append(trial_row(f"figure{figure}-{preset}", len(rows), model, optim, e, err, scale))
    return pd.DataFrame(rows)


SMALL_DIVERGED = {("vit_p_1gf", "sgd"): [10, 80]}  # the first and the last schedule of its protocol


def two_protocols() -> pd.DataFrame:
    return pd.concat(
        [
            grid(2, "smoke"),
            grid(2, "small"),
            grid(3, "smoke"),
            grid(3, "small", diverged=SMALL_DIVERGED),
        ],
        ignore_index=True,
    )


def label(scale: dict) -> str:
    return schema.protocol_label(schema.protocol_key(pd.DataFrame([{**scale, "seed": 0}])).iloc[0])


def own_rows(trials: pd.DataFrame, preset: str) -> pd.DataFrame:
    return trials[trials["sweep"].str.endswith(f"-{preset}")]


def sorted_frame(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return frame.sort_values(keys).reset_index(drop=True)


def test_protocol_labels_name_the_data_size_preset_and_seed():
    assert label(SMOKE) == "digits_8px_p4_b32_smoke_seed0"
    assert label(SMALL) == "fashion-mnist_32px_p4_b256_small_seed0"
    labels = experiments.with_protocol(two_protocols())
    assert set(labels["protocol"]) == {label(SMOKE), label(SMALL)}


@pytest.mark.parametrize(
    ("table", "keys"),
    [
        (experiments.training_length_deltas, ["model", "optimizer", "epochs"]),
        (experiments.error_vs_epochs, ["model", "optimizer", "epochs"]),
        (experiments.optimizer_gaps, ["model", "optimizer", "epochs"]),
    ],
)
def test_each_protocols_table_equals_the_one_of_its_own_rows(table, keys):
    both = table(two_protocols())
    assert set(both["protocol"]) == {label(SMOKE), label(SMALL)}
    for preset, scale in [("smoke", SMOKE), ("small", SMALL)]:
        alone = table(own_rows(two_protocols(), preset))
        mine = both[both["protocol"] == label(scale)]
        assert len(mine) and len(alone) == len(mine)
        pd.testing.assert_frame_equal(sorted_frame(mine, keys), sorted_frame(alone, keys))


def test_each_curve_is_measured_against_its_own_protocols_longest_run():
    deltas = experiments.training_length_deltas(two_protocols())
    by = deltas.set_index(["protocol", "model", "optimizer", "epochs"])
    assert set(deltas.groupby("protocol")["reference_epochs"].unique().map(tuple)) == {(8,), (80,)}
    # digits: err(1) - err(8) = 0 - (-7); fashion-mnist the same, never against the other's 80 / 8
    assert by.loc[(label(SMOKE), "vit_c_1gf", "adamw", 1), "delta"] == pytest.approx(7.0)
    assert by.loc[(label(SMALL), "vit_c_1gf", "adamw", 10), "delta"] == pytest.approx(7.0)
    assert set(deltas.loc[deltas["protocol"] == label(SMOKE), "epochs"]) == {1, 2, 4}


def test_carry_forward_never_crosses_protocols():
    curve = experiments.error_vs_epochs(two_protocols()).set_index(["protocol", "model", "optimizer", "epochs"])
    first = curve.loc[(label(SMALL), "vit_p_1gf", "sgd", 10)]
    # diverged at the protocol's shortest schedule: nothing of its own to carry, and never digits' 8-epoch error
    assert not bool(first["carried"]) and first["top1_err"] == 100.0
    last = curve.loc[(label(SMALL), "vit_p_1gf", "sgd", 80)]
    assert bool(last["carried"]) and last["top1_err"] == pytest.approx(40 + 20 + 2 - 6)  # its own 40-epoch run
    smoke = curve.loc[(label(SMOKE), "vit_p_1gf", "sgd")]
    assert not smoke["carried"].any() and smoke.loc[8, "top1_err"] == pytest.approx(40 + 2 - 7)


def test_single_train_runs_and_noise_runs_are_not_grid_points():
    trials = two_protocols()
    better = trial_row("train", 0, "vit_c_1gf", "adamw", 8, 1.0, SMOKE, sampler=None)  # a `stability train` run
    nan_sampler = trial_row("train", 1, "vit_c_1gf", "adamw", 4, 1.0, SMOKE, sampler=np.nan)
    noise = trial_row("x-noise", 0, "vit_c_1gf", "adamw", 2, 1.0, SMOKE, sampler="noise", noise_of="x")
    more = pd.concat([trials, pd.DataFrame([better, nan_sampler, noise])], ignore_index=True)
    pd.testing.assert_frame_equal(experiments.optimum_runs(more), experiments.optimum_runs(trials))
    assert experiments.optimum_runs(more)["top1_err"].min() > 1.0


def test_a_store_from_before_the_sampler_column_treats_its_rows_as_grid_points():
    old = grid(3, "smoke").drop(columns=["sampler", "preset", "space", "noise_of", "imports", "patch_size"])
    curve = experiments.error_vs_epochs(old)
    assert len(curve) == 3 * 2 * 4 and curve["protocol"].nunique() == 1
    assert curve["protocol"].iloc[0] == "digits_8px_b32_seed0"


def test_missing_columns_and_nan_compare_equal_and_numbers_compare_by_value():
    new = grid(2, "smoke").head(2)
    old = new.drop(columns=["preset"])
    nan = new.assign(preset=np.nan)
    floats = new.assign(image_size=8.0, batch_size=32.0)
    keys = [schema.protocol_key(f).iloc[0] for f in (old, nan)]
    assert keys[0] == keys[1] and schema.protocol_key(floats).iloc[0] == schema.protocol_key(new).iloc[0]
    assert schema.protocol_key(new).iloc[0] != keys[0]  # a preset is part of it where recorded


def test_recipe_fields_and_the_space_are_part_of_the_protocol():
    rows = grid(2, "smoke").head(1)
    plain = schema.protocol_label(schema.protocol_key(rows).iloc[0])
    ema = schema.protocol_label(schema.protocol_key(rows.assign(ema=True)).iloc[0])
    no_ema = schema.protocol_label(schema.protocol_key(rows.assign(ema=False)).iloc[0])
    assert plain == label(SMOKE) and len({plain, ema, no_ema}) == 3
    assert ema.startswith(plain + "_") and re.fullmatch(r"[A-Za-z0-9._-]+", ema)
    space = json.dumps({"lr": ["log", 1e-3, 1e-2], "warmup_epochs": ["uniform", 0, 5]})
    sampled = pd.concat([rows.assign(space=space, warmup_epochs=w) for w in (0.5, 3.0)])
    assert schema.protocol_key(sampled).nunique() == 1  # a sampled field varies within its sweep
    wider = json.dumps({"lr": ["log", 1e-4, 1e-2], "warmup_epochs": ["uniform", 0, 5]})
    longer = json.dumps({"lr": ["log", 1e-3, 1e-2], "warmup_epochs": ["uniform", 0, 8]})
    # lr and wd intervals are each model's search range (Table 4 has one per family), not the protocol
    assert schema.protocol_key(rows.assign(space=wider)).iloc[0] == schema.protocol_key(sampled).iloc[0]
    assert schema.protocol_key(rows.assign(space=longer)).iloc[0] != schema.protocol_key(sampled).iloc[0]
    table4 = json.dumps({"lr": ["log", 1e-3, 1e-2], "wd": ["log", 1e-2, 1.0]})
    centred = json.dumps({"lr": ["log", 3e-3, 0.1], "wd": ["log", 2e-2, 0.8]})
    uniform = json.dumps({"lr": ["uniform", 1e-3, 1e-2], "wd": ["log", 1e-2, 1.0]})
    key = [schema.protocol_key(rows.assign(space=s)).iloc[0] for s in (table4, centred, uniform)]
    assert key[0] == key[1] != key[2]  # how lr is drawn is part of it, its interval is not
    named = [c for c in schema.METRIC_COLUMNS if c in sampled]  # where a frame has them
    assert schema.protocol_columns(sampled.columns) == [*schema.PROTOCOL, "warmup_epochs", "space", *named]
    trainable = rows.assign(trainer="modadd", metric="val_acc", metric_direction="maximize", metric_diverged=0.0)
    key = schema.protocol_key(trainable).iloc[0]
    assert key != schema.protocol_key(rows).iloc[0] and '"metric":["val_acc","maximize",0]' in key
    assert (
        schema.protocol_key(rows.assign(metric="top1_err", metric_direction="minimize", metric_diverged=100.0)).iloc[0]
        == schema.protocol_key(rows).iloc[0]
    )  # the built-in metric, named or not, is one protocol


def test_labels_are_safe_in_file_names():
    odd = grid(2, "smoke").head(1).assign(dataset="my data/v2")
    got = schema.protocol_labels(odd).iloc[0]
    assert re.fullmatch(r"[A-Za-z0-9._-]+", got) and got.startswith("my-data-v2_8px")


def test_a_figure_of_a_mixed_frame_never_joins_two_protocols():
    ax = figures.figure3(two_protocols()).get_axes()[0]
    epochs = [set(EPOCHS["smoke"]), set(EPOCHS["small"])]
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) and set(ln.get_xdata()) != {0}]
    assert lines and all(any(set(ln.get_xdata()) <= e for e in epochs) for ln in lines)
    labels = {t.get_text() for t in figures.figure3(two_protocols()).legends[0].get_texts()}
    assert f"ViT_C AdamW [{label(SMALL)}]" in labels and f"ViT_C AdamW [{label(SMOKE)}]" in labels


def write_store(root, trials: pd.DataFrame) -> None:
    store = Store(root)
    for row in trials.to_dict("records"):
        store.write_trial(row["sweep"], row, [])


def test_make_figures_writes_one_figure_per_protocol(tmp_path):
    write_store(tmp_path / "results", two_protocols())
    report = make_figures(tmp_path / "results", tmp_path / "out", ["2", "3"], n_resamples=20)
    names = sorted(p.name for p in report["written"] if p.suffix == ".png")
    assert names == sorted(f"figure{f}-{label(s)}.png" for f in "23" for s in (SMOKE, SMALL))
    assert report["protocols"] == {"2": sorted([label(SMOKE), label(SMALL)])} | {
        "3": sorted([label(SMOKE), label(SMALL)])
    }
    assert any(n.startswith("figure 2: the store holds its runs under 2 protocols") for n in report["notes"])
    gaps = pd.read_csv(tmp_path / "out" / "optimizer_gaps.csv")
    assert set(gaps["protocol"]) == {label(SMOKE), label(SMALL)}
    assert len(gaps) == 2 * 3 * 4 * 2  # protocols x models x lengths x optimizers
    deltas = pd.read_csv(tmp_path / "out" / "training_length_deltas.csv")
    assert set(deltas["protocol"]) == {label(SMOKE), label(SMALL)}


def test_make_figures_draws_a_named_protocol_and_names_the_others(tmp_path):
    write_store(tmp_path / "results", two_protocols())
    report = make_figures(tmp_path / "results", tmp_path / "out", ["2"], n_resamples=20, protocol=label(SMALL))
    assert [p.name for p in report["written"] if p.suffix == ".png"] == [f"figure2-{label(SMALL)}.png"]
    assert report["notes"] == [f"figure 2: drawn for protocol {label(SMALL)}; the store also holds {label(SMOKE)}"]
    unknown = make_figures(tmp_path / "results", tmp_path / "out2", ["2"], n_resamples=20, protocol="nope")
    assert not [p for p in unknown["written"] if p.suffix == ".png"]
    assert unknown["notes"][0].startswith("figure 2: no grid runs under protocol 'nope'; the store holds: ")


def test_a_store_of_one_protocol_keeps_the_plain_file_names(tmp_path):
    write_store(tmp_path / "results", own_rows(two_protocols(), "small"))
    report = make_figures(tmp_path / "results", tmp_path / "out", ["2", "3"], n_resamples=20)
    assert sorted(p.name for p in report["written"] if p.suffix == ".png") == ["figure2.png", "figure3.png"]
    assert report["notes"] == []


def test_the_report_draws_a_figure_per_protocol():
    page = html_report.build(two_protocols(), "results", n_resamples=20)
    for f in "23":
        for scale in (SMOKE, SMALL):
            assert f"<h3>Figure {f} (protocol {label(scale)})</h3>" in page


def test_old_grid_rows_without_a_sampler_stay_grid_points_beside_new_rows():
    """A store whose newer rows have a sampler column: old grid rows (no sampler, a grid's sweep
    name) are still grid points; `stability train` rows (sweep "train", no sampler) are not."""
    old = grid(3, "smoke").assign(sampler=np.nan)  # written before the sampler column existed
    new = grid(3, "small")
    train = trial_row("train", 0, "vit_c_1gf", "adamw", 8, 1.0, SMOKE, sampler=np.nan)
    trials = pd.concat([old, new, pd.DataFrame([train])], ignore_index=True)
    assert trials["sampler"].isna().sum() == len(old) + 1
    runs = experiments.optimum_runs(trials)
    assert len(runs) == len(old) + len(new) and runs["top1_err"].min() > 1.0
    mine = experiments.error_vs_epochs(trials)
    pd.testing.assert_frame_equal(
        sorted_frame(mine[mine["protocol"] == label(SMOKE)], ["model", "optimizer", "epochs"]),
        sorted_frame(experiments.error_vs_epochs(grid(3, "smoke")), ["model", "optimizer", "epochs"]),
    )
    assert experiments.grid_protocols(trials) == sorted([label(SMOKE), label(SMALL)])


def all_failed(rows: pd.DataFrame) -> pd.DataFrame:
    return rows.assign(status="failed", top1_err=100.0, top1_err_raw=100.0, completed_epochs=None)


def test_a_protocol_whose_grid_runs_all_failed_is_held_and_its_failures_counted(tmp_path):
    failed = all_failed(grid(2, "small"))
    trials = pd.concat([grid(2, "smoke"), failed], ignore_index=True)
    assert experiments.grid_protocols(trials) == sorted([label(SMOKE), label(SMALL)])
    assert experiments.failed_protocols(trials) == {label(SMALL): len(failed)}
    write_store(tmp_path / "results", trials)
    report = make_figures(tmp_path / "results", tmp_path / "out", ["2"], n_resamples=20)
    assert f"figure 2 under protocol {label(SMALL)}: all {len(failed)} runs failed" in report["notes"]
    assert f"figure2-{label(SMALL)}.png" in {p.name for p in report["written"]}
    only = make_figures(tmp_path / "results", tmp_path / "out2", ["2"], n_resamples=20, protocol=label(SMALL))
    assert only["notes"][-1] == f"figure 2 under protocol {label(SMALL)}: all {len(failed)} runs failed"
    page = html_report.build(trials, "results", n_resamples=20)
    assert f"All {len(failed)} runs of protocol {label(SMALL)} failed." in page


EDF_MODELS = {"smoke": ["vit_c_1gf", "vit_p_1gf"], "small": ["vit_c_1gf", "regnety_1gf"]}
EDF_TRIALS = {"smoke": 6, "small": 7}  # so that each protocol's legend entries differ by their n


def edf_sweeps(optim: str = "adamw") -> pd.DataFrame:
    """EDF sweeps of one optimizer under two protocols (digits/smoke, fashion-mnist/small), plus a
    seed-noise run of one smoke sweep (other seeds: its own label differs)."""
    rng = np.random.default_rng(0)
    rows = []
    for preset, scale in [("smoke", SMOKE), ("small", SMALL)]:
        for model in EDF_MODELS[preset]:
            for i in range(EDF_TRIALS[preset]):
                lr, err = 10 ** rng.uniform(-4, -2), 20 + PRESET_ERR[preset] + rng.exponential(3.0)
                rows.append(
                    trial_row(f"{model}-{optim}-{preset}", i, model, optim, 4, err, scale, sampler="random", lr=lr)
                )
    for seed in (1, 2):
        rows.append(trial_row("vit_c_1gf-adamw-smoke-noise", seed - 1, "vit_c_1gf", optim, 4, 20.0 + seed, SMOKE,
                              sampler="noise", noise_of=f"vit_c_1gf-{optim}-smoke", seed=seed))  # fmt: skip
    return pd.DataFrame(rows)


def figure_legends(fig) -> set[str]:
    """Every legend entry of a figure (the shared one and each panel's)."""
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.get_axes() if ax.get_legend())]
    return {t.get_text() for legend in legends for t in legend.get_texts()}


def expected_legend(preset: str) -> set[str]:
    """A protocol's Figure 4 legends: its models in the scatter row's, with their n in the EDF panel's
    beside the band's name."""
    models = EDF_MODELS[preset]
    return {*models, *(f"{m} (n={EDF_TRIALS[preset]})" for m in models), figures.BAND_LABEL}


def spy_saves(monkeypatch) -> dict[str, plt.Figure]:
    """File name -> legend entries of every figure ``figures.save`` writes."""
    saved, real = {}, figures.save

    def spy(fig, out_dir, name, fmt="png"):
        saved[name] = figure_legends(fig)
        return real(fig, out_dir, name, fmt)

    monkeypatch.setattr(figures, "save", spy)
    return saved


def test_of_protocol_keeps_the_noise_runs_of_its_sweeps():
    mine = experiments.of_protocol(edf_sweeps(), label(SMOKE))
    assert set(mine["sweep"]) == {"vit_c_1gf-adamw-smoke", "vit_p_1gf-adamw-smoke", "vit_c_1gf-adamw-smoke-noise"}
    assert set(experiments.noise_floors(mine)["sweep"]) == {"vit_c_1gf-adamw-smoke"}
    assert "vit_c_1gf-adamw-smoke-noise" not in set(experiments.of_protocol(edf_sweeps(), label(SMALL))["sweep"])


def test_figure_4_is_drawn_once_per_protocol_each_with_its_own_sweeps(tmp_path, monkeypatch):
    write_store(tmp_path / "results", edf_sweeps())
    saved = spy_saves(monkeypatch)
    report = make_figures(tmp_path / "results", tmp_path / "out", ["4", "5"], n_resamples=20)
    names = {p.name for p in report["written"] if p.suffix == ".png"}
    assert names == {f"figure4-{label(SMALL)}.png", f"figure4-{label(SMOKE)}.png", "figure5.png"}
    assert report["protocols"] == {"4": sorted([label(SMOKE), label(SMALL)]), "5": []}
    for preset, scale in [("smoke", SMOKE), ("small", SMALL)]:
        assert saved[f"figure4-{label(scale)}"] == expected_legend(preset)
    assert any(n.startswith("figure 4: the store holds its runs under 2 protocols") for n in report["notes"])


def test_figure_4_of_one_protocol_says_which_and_draws_its_noise_floors():
    fig = figures.figure_edf(experiments.of_protocol(edf_sweeps(), label(SMOKE)), "adamw", n_resamples=20)
    assert fig._suptitle.get_text() == f"protocol {label(SMOKE)}"
    edf_1gf = fig.get_axes()[3]
    assert len([ln for ln in edf_1gf.get_lines() if ln.get_linestyle() == ":"]) == 1  # vit_c_1gf's noise floor
    assert figures.figure_edf(edf_sweeps(), "adamw", n_resamples=20)._suptitle.get_text() == (
        "sweeps of 2 protocols overlaid"
    )


def test_figure_4_draws_a_named_protocol_and_names_the_others(tmp_path, monkeypatch):
    write_store(tmp_path / "results", edf_sweeps())
    saved = spy_saves(monkeypatch)
    report = make_figures(tmp_path / "results", tmp_path / "out", ["4"], n_resamples=20, protocol=label(SMALL))
    assert [p.name for p in report["written"] if p.suffix == ".png"] == [f"figure4-{label(SMALL)}.png"]
    assert saved[f"figure4-{label(SMALL)}"] == expected_legend("small")
    assert report["notes"] == [f"figure 4: drawn for protocol {label(SMALL)}; the store also holds {label(SMOKE)}"]
    unknown = make_figures(tmp_path / "results", tmp_path / "out2", ["4"], n_resamples=20, protocol="nope")
    assert not [p for p in unknown["written"] if p.suffix == ".png"]
    assert unknown["notes"][0].startswith("figure 4: no AdamW EDF sweeps under protocol 'nope'; the store holds: ")


def test_a_store_of_one_edf_protocol_keeps_the_plain_figure_4_name(tmp_path):
    write_store(tmp_path / "results", own_rows(edf_sweeps(), "small"))
    report = make_figures(tmp_path / "results", tmp_path / "out", ["4"], n_resamples=20)
    assert [p.name for p in report["written"] if p.suffix == ".png"] == ["figure4.png"] and report["notes"] == []


def test_the_report_draws_figure_4_and_the_edfs_once_per_protocol():
    page = html_report.build(edf_sweeps(), "results", n_resamples=20)
    for scale in (SMOKE, SMALL):
        assert f"<h3>Figure 4 (protocol {label(scale)})</h3>" in page
        assert f"<h3>Protocol {label(scale)}</h3>" in page
    assert "<h3>Figure 5" not in page


def test_one_set_of_reserved_names_for_every_registry_and_the_importer():
    """Optimizers, trainables and imported sweeps refuse the same names, but for those each may fill."""
    from external.into_store import RESERVED
    from stability import trainables

    every = schema.reserved_columns()
    assert {"metric", "metric_score", "protocol", "status", "epoch", "top1_err"} <= every
    assert every - {"lr", "wd"} == trainables.TAKEN and every - set(schema.SWEEPABLE) == RESERVED
