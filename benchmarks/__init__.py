"""CCR Lab benchmarks: ``python -m benchmarks`` runs every ``bench_*.py`` module and rewrites RESULTS.md."""
