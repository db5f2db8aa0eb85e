"""Sweeps run elsewhere, into the store and out of it: ``stability import`` and ``stability export``.

Import reads a source through its library's own reader (``optuna.load_study``, Ray Tune's
``ExperimentAnalysis``, ``pandas.read_csv``) into one ``Source``: each trial's hyperparameters,
outcome and curve, the metric and the search space. ``plan_import`` turns it into the store's
rows, an EDF sweep with sampler ``imported``, checked whole (names, columns, parquet types);
``write_import`` writes them. Nothing is written before every row is read and checked, so bad
input is one ``UserError`` and leaves the store as it was.

Outcomes: a trial that finished with a finite value is ``ok``, with a NaN or infinite one
``diverged`` (it counts as the metric's diverged value). Every other trial (Optuna's FAIL,
PRUNED, RUNNING and WAITING states, a Tune trial that raised or reported no value, a CSV row
with an empty metric cell) is imported as ``failed``, its ``error`` saying why: a pruned trial
stopped early, so its last value is no result and never enters an EDF.

Export writes each sweep as an Optuna study of the same name: the stored space as its
distributions, ``ok`` trials COMPLETE with their value, ``diverged`` and ``failed`` ones FAIL
(user attribute ``stability_status`` says which). The study's user attribute ``stability``
holds the sweep's metric and constant planned columns, so that importing the study gives the
same sweep back.

Optuna storages are named by a URL Optuna opens (``sqlite:///x.db``, ``postgresql://...``)
or by a journal file: ``journal:///abs/path.log``, or a plain path without ``://`` (a file
that is an SQLite database is opened as ``sqlite:///`` instead). Import never creates one:
a URL naming a missing file is an error.
"""

from external.from_csv import read_csv  # noqa: F401
from external.from_optuna import read_optuna  # noqa: F401
from external.from_tune import read_tune  # noqa: F401
from external.into_store import Imported, plan_import, write_import  # noqa: F401
from external.optuna_storage import journal_path, storage_url  # noqa: F401
from external.source import Source, Trial, observed_space, parse_params  # noqa: F401
from external.to_optuna import plan_export, write_export  # noqa: F401
