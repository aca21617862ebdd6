"""Statistics of a run's results: bootstrap confidence intervals for every metric, paired
comparisons between methods, sample-size advice.

This room reads result files (``per_image.csv``, ``summary.json``, feature rows) and imports
numpy and scipy only, never torch or a model, so ``vqfr-eval report`` and ``vqfr-eval power``
recompute everything from a run directory alone. The numbers depend only on the files and the
options (level, method, resamples, seed): a sharded, resumed or cached run gives the same."""
