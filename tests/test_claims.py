"""course_machinery.claims: a sentence about a run's numbers, checked by that run, and the build's list of the
claims a full run did not show."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from course_machinery.claims import claims_in, expect

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import build_site  # noqa: E402


def test_plain_python_prints_a_tick_or_the_warning_and_returns_the_condition(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_SMOKE", "0")
    assert expect(3 > 2, "three beats two", shown="3 vs 2")
    assert capsys.readouterr().out == "✔ three beats two (3 vs 2)\n"
    assert not expect(0, "zero is true")
    out = capsys.readouterr().out
    assert out.startswith("⚠ NOT SHOWN BY THIS RUN: zero is true.") and "numbers above do not" in out


def test_smoke_mode_judges_nothing(monkeypatch, capsys):
    monkeypatch.setenv("COURSE_SMOKE", "1")
    assert not expect(False, "a claim about a full run")
    assert capsys.readouterr().out.startswith("· not checked in smoke mode")


def _run(cells: list[str], smoke: str, tmp_path: Path, monkeypatch) -> nbformat.NotebookNode:
    monkeypatch.setenv("COURSE_SMOKE", smoke)  # the kernel inherits it
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


def test_in_a_kernel_a_failed_claim_is_a_warning_box_and_the_build_lists_it(tmp_path, monkeypatch, capsys):
    cells = [
        "from course_machinery.claims import expect",
        "expect(1 + 1 == 2, 'arithmetic holds', shown='2')",
        "expect(1 + 1 == 3, 'arithmetic is broken <b>', shown='2')",
    ]
    nb = _run(cells, "0", tmp_path, monkeypatch)
    assert [len(cell.outputs) for cell in nb.cells] == [
        0,
        1,
        1,
    ]  # the verdict, and no True/False echoed under it
    held, unshown = nb.cells[1].outputs[0], nb.cells[2].outputs[0]
    assert held["data"]["text/plain"].startswith("✔ arithmetic holds (2)") and "text/html" not in held["data"]
    box = unshown["data"]["text/html"]
    assert "Not shown by this run" in box and "&lt;b&gt;" in box  # the claim is escaped in the page
    assert claims_in(nb) == [(1, "arithmetic holds", True), (2, "arithmetic is broken <b>", False)]

    # The website build reads the cached runs and ends with the claims not shown.
    path = tmp_path / "99_claims.ipynb"
    nbformat.write(nb, path)
    record = {"execution_seconds": 12.0, "cell_seconds": {"1": 11.0, "2": 0.5}, "nb": nb}
    monkeypatch.setattr(build_site.notebook_cache, "run_record", lambda p, cache: record)
    unshown_lines = build_site.report([path], "full", tmp_path, tmp_path / "report.json")
    assert unshown_lines == ["99_claims.ipynb cell 2: arithmetic is broken <b>"]
    out = capsys.readouterr().out
    assert "not shown by this run: 1" in out and "NOT SHOWN: 99_claims.ipynb cell 2" in out
    assert "cells over 10 s without a progress bar: 1" in out  # cell 1 took 11 s and drew no bar
    assert '"not_shown"' in (tmp_path / "report.json").read_text()


def test_smoke_runs_record_claims_without_a_verdict(tmp_path, monkeypatch):
    nb = _run(
        ["from course_machinery.claims import expect", "expect(False, 'x')"], "1", tmp_path, monkeypatch
    )
    assert claims_in(nb) == [(1, "x", None)] and len(nb.cells[1].outputs) == 1  # no False echoed
