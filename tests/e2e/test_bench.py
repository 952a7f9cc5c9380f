"""The benchmark scripts still run (issue 18). `make bench` once ended in a TypeError for a whole
issue's time, unnoticed because nothing ran it between measurements. These runs are tiny and
measure nothing: they check that each script ends, answers every request of every column, and
writes its table, not how fast anything was."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.e2e.test_process import ROOT


def test_the_churn_benchmark_runs_every_column_and_writes_its_table(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    argv = [sys.executable, "bench/churn.py", "--workers", "3", "--seconds", "0.4",
            "--rounds", "1", "--single", "3", "--paced-streams", "4", "--paced-tokens", "4",
            "--write", str(out)]  # fmt: skip
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    table = out.read_text()
    assert "<!-- churn:start -->" in table and "<!-- churn:end -->" in table
    head = next(line for line in table.splitlines() if line.startswith("| upstream path"))
    assert "bare aiohttp relay (floor)" in head and "after" in head
    failed = [line for line in table.splitlines() if "failed or incomplete" in line]
    assert len(failed) == 4, failed  # churn and paced, on both upstream paths
    for line in failed:
        cells = [c.strip() for c in line.strip("|").split("|")]
        # path, figure, one cell per column, the target (0)
        assert cells[2:] == ["0"] * (len(cells) - 2), line
    for path in ("Messages (headline)", "Text Completions"):
        cpu = next(line for line in table.splitlines() if line.startswith(f"| {path} | proxy CPU"))
        assert all(float(c) > 0 for c in cpu.strip("|").split("|")[2:4]), cpu


def test_the_memory_benchmark_runs_its_three_cases() -> None:
    argv = [sys.executable, "bench/memory.py", "--streams", "4", "--slow", "2"]
    run = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    for case in ("fast readers", "slow readers", "burst"):
        assert f"| {case}" in run.stdout, run.stdout[-2000:]
