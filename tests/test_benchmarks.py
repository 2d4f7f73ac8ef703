"""The benchmarks at their smallest settings, so a refactor of course_utils cannot break them unnoticed.

Each script runs in its own process in smoke mode (small subsets; synthetic digits where the real data is absent)
with downloads failing at once, and must finish and print its table. Nothing here measures speed: the numbers
of such short runs mean nothing (benchmarks/README.md has the real ones).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CASES = {
    "bench_data.py": ["--repeats", "1"],
    "bench_ddp.py": ["--images", "512", "--epochs", "1", "--timeout", "300"],
    "bench_fit_overhead.py": ["--images", "512", "--repeats", "1"],
    "bench_grading.py": ["--students", "1"],
    "bench_feature_cache.py": ["--epochs", "1"],
    "bench_time_to_accuracy.py": ["--epochs", "1", "--runs", "1", "--source-epochs", "0"],
}


def test_every_benchmark_is_covered():
    assert sorted(CASES) == sorted(p.name for p in (ROOT / "benchmarks").glob("bench_*.py"))


@pytest.mark.parametrize("script", sorted(CASES))
def test_benchmark_runs_at_its_smallest_settings(script, tmp_path):
    env = {
        **os.environ,
        "COURSE_SMOKE": "1",
        "COURSE_CACHE_DIR": str(tmp_path / "cache"),
        "TORCH_HOME": str(tmp_path / "torch"),  # no cached weights: ResNet18 is random, and says so
        "MPLBACKEND": "Agg",
        **{name: "http://127.0.0.1:9" for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")},
        "no_proxy": "",
        "NO_PROXY": "",
    }
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *CASES[script]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{script} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert result.stdout.startswith("== "), result.stdout[:500]  # the header says what ran where
