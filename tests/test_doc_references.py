"""Every file a docstring, comment or doc page names exists in the repository.

A reader who follows `ocog_lib/bench/limits.py` or `docs/benchmarks.md` must find it; after a
move the old names linger in prose unless something checks them.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# repository-relative paths such as ocog_lib/cog/write.py or docs/benchmarks.md
_PATH = re.compile(
    r"(?<![\w/.:$<{-])((?:ocog_lib|ocog_assets|tests|docs|\.ci|dagster_home)(?:/[\w.-]+)+"
    r"|[\w-]+\.(?:md|toml|yaml))(?![\w/])"
)
# written at run time, or shapes of paths rather than paths
_RUNTIME = ("dagster_home/storage", "dagster_home/history", "dagster_home/logs",
            "dagster_home/schedules", "tests/ocog_lib/<package>")  # fmt: skip


def _texts() -> list[Path]:
    files = [*ROOT.glob("*.md"), *(ROOT / "docs").rglob("*.md")]
    for top in ("ocog_lib", "ocog_assets", "tests"):
        files += (ROOT / top).rglob("*.py")
    return sorted(files)


def _missing(path: Path) -> list[str]:
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        for ref in _PATH.findall(line):
            ref = ref.rstrip(".")
            if ref.startswith(_RUNTIME) or "<" in ref or "*" in ref:
                continue
            if "/" not in ref:  # a bare file name: at the root, in docs/ or beside the text
                if any((d / ref).exists() for d in (ROOT, ROOT / "docs", path.parent)):
                    continue
                if ref in ("manifest.json", "endpoint.json", "dagster.yaml", "workspace.yaml"):
                    continue
            elif (ROOT / ref).exists() or (ROOT / f"{ref}.py").exists():
                continue
            shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            out.append(f"{shown}:{n}: {ref}")
    return out


def test_every_named_repository_file_exists():
    missing = [m for p in _texts() for m in _missing(p)]
    assert missing == []


def test_the_check_finds_a_missing_name(tmp_path):
    text = tmp_path / "x.py"
    gone = "ocog_lib/" + "nowhere.py"  # not spelled whole: this file is checked too
    text.write_text(f'"""See {gone} and docs/benchmarks.md."""\n')
    assert [m.split(": ", 1)[1] for m in _missing(text)] == [gone]
