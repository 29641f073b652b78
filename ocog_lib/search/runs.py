"""A study or a grid with its plots saved beside the results: what `ocog search` runs."""

from __future__ import annotations

from ocog_lib.search.bayes import StudyResult, run_bayesian
from ocog_lib.search.grid import GridResult, run_grid
from ocog_lib.search.plots import save_grid_plots, save_study_plots
from ocog_lib.settings import Settings


def bayesian_with_plots(dataset: str, storage: str, trials: int, seed: int, settings: Settings,
                        **kw) -> StudyResult:  # fmt: skip
    """`run_bayesian` (same keywords), then the trial plot (`result.plots["trials"]`)."""
    result = run_bayesian(dataset, storage, trials, seed, settings, **kw)
    save_study_plots(result, settings)
    return result


def grid_with_plots(dataset: str, storage: str, var1: str, values1: list[str] | None,
                    var2: str, values2: list[str] | None, repeats: int, settings: Settings,
                    **kw) -> GridResult:  # fmt: skip
    """`run_grid` (same keywords), then the heatmap (`result.plots["heatmap"]`)."""
    result = run_grid(dataset, storage, var1, values1, var2, values2, repeats, settings, **kw)
    save_grid_plots(result, settings)
    return result
