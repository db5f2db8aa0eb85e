"""Ray Tune orchestration: search spaces, seeded manifests, trial execution, resume, the store."""
