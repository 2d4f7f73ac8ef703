"""Sentences of a lesson that interpret a run's numbers, checked by the run that printed those numbers.

A lesson's prose may say what its run shows ("the CNN loses less accuracy on shifted images than the MLP") only
where the cell beside it declares the condition::

    from course_machinery.claims import expect

    expect(drops["SimpleCNN"] < drops["MLP"], "the CNN loses less accuracy at a 4-pixel shift than the MLP",
           shown=f"SimpleCNN -{drops['SimpleCNN']:.1%}, MLP -{drops['MLP']:.1%}")

In a full run the cell prints ``✔ the CNN loses ... (SimpleCNN -3.1%, MLP -20.4%)`` when the condition holds,
and a warning box, in the notebook and on the website, when it does not: the numbers of this run do not say
what the text says. In smoke mode (a short run on few, possibly synthetic, images) nothing is judged: the line
says it was not checked. Every claim's outcome is kept in its output's metadata, so the website build
(``tools/build_site.py``) ends with the list of the claims a full run did not show (:func:`claims_in`).

Kept outside the learner's package: it is course machinery (how the course keeps its own text honest), not
something a learner's code needs.
"""

from __future__ import annotations

import html
import os
from typing import Any

__all__ = ["expect", "claims_in", "Held"]

KEY = "course_claim"  # the output metadata key that records a claim and whether the run showed it


def _smoke() -> bool:
    return os.environ.get("COURSE_SMOKE", "").strip().lower() in {"1", "true", "yes", "on"}


def _show(text: str, html_text: str | None, record: dict[str, Any]) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # plain Python (a script, a test): the text alone
        print(text)
        return
    if get_ipython() is None:
        print(text)
        return
    bundle = {"text/plain": text}
    if html_text is not None:
        bundle["text/html"] = html_text
    display(bundle, raw=True, metadata={KEY: record})


class Held:
    """What :func:`expect` returns: true when the run showed the claim. The cell has already printed the verdict, so
    a notebook shows nothing more for it (no ``True`` echoed under the line when ``expect`` ends a cell)."""

    __slots__ = ("held",)

    def __init__(self, held: bool) -> None:
        self.held = held

    def __bool__(self) -> bool:
        return self.held

    def __repr__(self) -> str:
        return f"Held({self.held})"

    def _ipython_display_(self) -> None:
        """Jupyter calls this instead of showing the repr: the verdict line is all the cell shows."""


def expect(condition: Any, claim: str, *, shown: str = "") -> Held:
    """Say whether this run shows ``claim``, the sentence the lesson's text states about its numbers.

    Args:
        condition: Whether the run's numbers show the claim (evaluated by the caller: ``gap > noise``).
        claim: The claim, as the lesson states it, in words a learner reads next to the numbers.
        shown: The numbers it rests on, as printed (``"+2.1 points, seeds differ by 0.4"``).

    Returns:
        Whether the condition held (also in smoke mode, where nothing is judged), as a :class:`Held`.
    """
    held = bool(condition)
    numbers = f" ({shown})" if shown else ""
    if _smoke():
        _show(
            f"· not checked in smoke mode (few images, one short epoch): {claim}",
            None,
            {"claim": claim, "held": None},
        )
        return Held(held)
    record = {"claim": claim, "shown": shown, "held": held}
    if held:
        _show(f"✔ {claim}{numbers}", None, record)
        return Held(held)
    text = (
        f"⚠ NOT SHOWN BY THIS RUN: {claim}{numbers}.\n"
        "The lesson's text says so, but this run's numbers above do not. Runs differ between machines, devices "
        "and library versions: read the numbers rather than the text, and if this persists, tell the course "
        "(CONTRIBUTING.md) so the text can be corrected."
    )
    box = (
        '<div style="border:2px solid #c0392b;background:#fdecea;color:#1a1a1a;padding:0.5em 0.8em;'
        'border-radius:4px;margin:0.3em 0">'
        f"<strong>⚠ Not shown by this run:</strong> {html.escape(claim)}{html.escape(numbers)}.<br>"
        "The lesson's text says so, but this run's numbers above do not. Runs differ between machines, devices "
        "and library versions: read the numbers rather than the text, and if this persists, tell the course "
        "(CONTRIBUTING.md) so the text can be corrected.</div>"
    )
    _show(text, box, record)
    return Held(held)


def claims_in(nb: Any) -> list[tuple[int, str, bool | None]]:
    """Every claim an executed notebook recorded: ``(cell index, claim, held)``, ``held`` None in smoke mode.

    Args:
        nb: An executed notebook (an ``nbformat`` node, or the same as plain dicts).
    """
    found = []
    for index, cell in enumerate(nb["cells"]):
        for output in cell.get("outputs", []) if cell["cell_type"] == "code" else []:
            record = output.get("metadata", {}).get(KEY)
            if record is not None:
                found.append((index, record["claim"], record["held"]))
    return found
