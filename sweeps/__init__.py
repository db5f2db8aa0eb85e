"""Ray Tune orchestration (docs/design.md, "Packages"): search spaces and seeded manifests
(``space``, ``plan``, ``grid``), the cluster and its device decisions (``cluster``), trial
execution and resume (``engine``, ``workers`` for Ray Train, ``guard``, ``faults`` for the
tests), one driver per sweep (``lock``), Slurm jobs (``slurm``) and trackers (``trackers``).
Results go to the store (``store``); import from and export to other tools is the ``external``
package's, beside this one."""
