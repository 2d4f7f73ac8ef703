"""Run a lesson's own code (its code cells tagged ``lesson-code``) in a fresh namespace, so tests and benchmarks can reuse it.

What one lesson teaches lives in that lesson's notebook, where the learner reads or builds it. The cells that
define it carry the cell tag ``lesson-code``; a test loads them with :func:`lesson_code` and tests the objects
they define, exactly as the learner's notebook defines them.
"""

from __future__ import annotations

import json
import sys
import types
from functools import cache
from pathlib import Path
from types import SimpleNamespace

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TAG = "lesson-code"


def lesson_cells(lesson: str) -> list[str]:
    """The sources of the code cells tagged ``lesson-code`` in the notebook whose name starts with ``lesson``."""
    (path,) = sorted(NOTEBOOKS.glob(f"{lesson}*.ipynb"))
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    sources = [
        "".join(c["source"])
        for c in cells
        if c["cell_type"] == "code" and TAG in c.get("metadata", {}).get("tags", [])
    ]
    if not sources:
        raise LookupError(f"{path.name} has no code cell tagged {TAG!r}")
    for source in sources:
        if source.lstrip().startswith(("%", "!")):
            raise ValueError(
                f"a {TAG} cell of {path.name} starts with a magic; keep lesson code plain Python"
            )
    return sources


@cache
def _namespace(lesson: str) -> dict:
    # A module of its own, registered as a notebook's __main__ would be, so that what needs its module (dataclasses,
    # pickling) works; compiled without this file's __future__ imports, as the notebook's kernel does.
    module = types.ModuleType(f"lesson_{lesson}")
    sys.modules[module.__name__] = module
    for source in lesson_cells(lesson):
        exec(compile(source, f"<{lesson} lesson-code>", "exec", dont_inherit=True), module.__dict__)
    return module.__dict__


def lesson_code(lesson: str) -> SimpleNamespace:
    """Execute the lesson's ``lesson-code`` cells once (cached) and return what they define as attributes."""
    return SimpleNamespace(**{k: v for k, v in _namespace(lesson).items() if not k.startswith("__")})
