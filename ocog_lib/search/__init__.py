"""Finding the fastest format + loader configuration: optuna TPE search and grids.

One trial = one COG profile (codec, level, predictor, block size) and one engine config
(sampler, patch, workers, threads, prefetch, cache, tile reuse, I/O threads), measured in
samples/s at steady state (start-up and warm-up timed apart). A profile not written yet
is written once into `variant_dir(dataset, <spec name>)` and reused by later trials. The
named profiles' own configurations are enqueued first, so a study can only match or beat
them, and both figures come out of the same run. Every trial, complete or not, lands in
DuckDB (`search_trials`, with the reason when it failed or was pruned); grids in
`grid_cells`. Studies live in optuna storage (a journal file under the data folder, or an
RDB URL from OCOG_OPTUNA_STORAGE), so several processes or machines share one study.

Modules: `space` (TrialConfig, SearchSpace, the named baselines), `files` (which files a
trial streams, local or through the WAN shaper), `measure` (one trial's measurement and
its DuckDB row), `bayes` (run_bayesian), `grid` (run_grid), `plots`, and `runs` (a
study or grid with its plots saved).
"""
