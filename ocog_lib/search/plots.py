"""PNG plots of searches and grids, saved beside the results (data/search/<dataset>/<storage>).

Figures are built with matplotlib's object API (no pyplot state), so plotting is safe in a
Dagster run or a thread and needs no display.
"""

from __future__ import annotations

import base64
from pathlib import Path

from ocog_lib.atomic import atomic_path
from ocog_lib.search.bayes import StudyResult
from ocog_lib.search.grid import GridResult
from ocog_lib.settings import Settings


def search_dir(settings: Settings, dataset: str, storage: str) -> Path:
    return settings.data_dir / "search" / dataset / storage


def _save(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def plot_trials(result: StudyResult, path: Path) -> Path:
    """Samples/s per trial: searched, named baselines, best so far; pruned/failed marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5))
    ax = fig.add_subplot()
    trials = sorted(result.trials, key=lambda t: t.number)
    done = [t for t in trials if t.state == "COMPLETE" and t.value is not None]
    searched = [t for t in done if not t.baseline]
    base = [t for t in done if t.baseline]
    ax.scatter([t.number for t in searched], [t.value for t in searched], s=22,
               label="searched", color="tab:blue")  # fmt: skip
    ax.scatter([t.number for t in base], [t.value for t in base], s=40, marker="s",
               label="named profile", color="tab:orange")  # fmt: skip
    for t in base:
        ax.annotate(t.baseline, (t.number, t.value), fontsize=6, xytext=(3, 3),
                    textcoords="offset points")  # fmt: skip
    for state, color in (("PRUNED", "grey"), ("FAIL", "tab:red")):
        xs = [t.number for t in trials if t.state == state]
        if xs:
            ax.scatter(xs, [0] * len(xs), marker="x", color=color, label=state.lower())
    best, run = [], 0.0
    for t in trials:
        if t in done:
            run = max(run, t.value or 0.0)
        best.append(run)
    if trials:
        ax.step([t.number for t in trials], best, where="post", color="tab:green",
                label="best so far")  # fmt: skip
    top = result.best_baseline
    if top is not None:
        ax.axhline(top.value, color="tab:orange", ls="--", lw=1,
                   label=f"best named ({top.value:.0f}/s)")  # fmt: skip
    ax.set_xlabel("trial")
    ax.set_ylabel("samples/s (steady state)")
    ax.set_title(f"{result.study}: {result.dataset} on {result.storage} storage")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_grid(result: GridResult, path: Path) -> Path:
    """Heatmap of mean samples/s per var1 x var2 cell, annotated mean ± std."""
    import numpy as np
    from matplotlib.figure import Figure

    grid = np.full((len(result.values1), len(result.values2)), np.nan)
    notes = [["n/a"] * len(result.values2) for _ in result.values1]
    for c in result.cells:
        i, j = result.values1.index(c.value1), result.values2.index(c.value2)
        if c.mean is not None:
            grid[i, j] = c.mean
            notes[i][j] = f"{c.mean:.0f}\n±{c.std:.0f}"
    fig = Figure(figsize=(1.4 * len(result.values2) + 2.5, 0.9 * len(result.values1) + 1.8))
    ax = fig.add_subplot()
    im = ax.imshow(grid, cmap="viridis", aspect="auto")
    fig.colorbar(im, ax=ax, label="samples/s")
    ax.set_xticks(range(len(result.values2)), result.values2)
    ax.set_yticks(range(len(result.values1)), result.values1)
    ax.set_xlabel(result.var2)
    ax.set_ylabel(result.var1)
    finite = grid[np.isfinite(grid)]
    mid = float(finite.mean()) if finite.size else 0.0
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            dark = not np.isfinite(grid[i, j]) or grid[i, j] < mid
            ax.text(j, i, notes[i][j], ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")  # fmt: skip
    ax.set_title(f"{result.dataset} on {result.storage}: {result.repeats} repeat(s) per cell")
    return _save(fig, path)


def save_study_plots(result: StudyResult, settings: Settings) -> dict[str, str]:
    path = search_dir(settings, result.dataset, result.storage) / f"{result.study}_trials.png"
    result.plots["trials"] = str(plot_trials(result, path))
    return result.plots


def save_grid_plots(result: GridResult, settings: Settings) -> dict[str, str]:
    name = f"grid_{result.var1}_{result.var2}_{result.grid_id}.png"
    path = search_dir(settings, result.dataset, result.storage) / name
    result.plots["heatmap"] = str(plot_grid(result, path))
    return result.plots


def png_markdown(png: str | Path | bytes, title: str = "") -> str:
    """Markdown with the PNG (a file, or its bytes) inlined as base64, for Dagster's
    metadata view, which renders it in place."""
    raw = png if isinstance(png, bytes) else Path(png).read_bytes()
    data = base64.b64encode(raw).decode()
    return f"![{title}](data:image/png;base64,{data})"
