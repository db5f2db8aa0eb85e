"""Side-by-side benchmarks: every number is printed next to an in-run reference as a ratio."""
