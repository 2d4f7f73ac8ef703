#!/usr/bin/env python3
"""Build the course website from the notebooks with Sphinx, MyST-NB and sphinx-book-theme (no network needed).

Every ``notebooks/NN_*.ipynb`` becomes a page with its outputs and figures. The notebooks are executed through
MyST-NB's cache (jupyter-cache, see ``tools/notebook_cache.py``): a notebook whose code cells, mode and
environment have not changed is not executed again. The repository's files are never changed: the pages are
assembled in ``build/site/src`` (copies of the notebooks whose launch badges become plain links, the README's
course table, the teacher's guide and the speed results) and written to ``build/site/html``.

Usage: python tools/build_site.py [--smoke] [--only NN ...] [--out DIR]

``--smoke`` executes in smoke mode (CI; every lesson page then says so in a banner); without it, full mode,
the build to publish (20-30 minutes for all notebooks on a 2-core CPU the first time, about a minute after).
``--only 01 03`` builds a subset of the lessons (with the home page and the guides).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import course_address  # noqa: E402
import notebook_cache  # noqa: E402

ROOT = notebook_cache.ROOT
CONF = ROOT / "site"
OUT = ROOT / "build" / "site"
BADGE_LINK = re.compile(r"\]\((https://[^)\s]+)\)")
RELATIVE_LINK = re.compile(r"(\]\()(?!https?:|mailto:|#)([^)\s]+?)(#[^)\s]*)?(\))")
# Repository files that are pages of the site (target page, relative to the site's source folder).
PAGES = {"README.md": "index.md", "docs/teaching.md": "teaching.md", "benchmarks/README.md": "speed.md"}


def _between(text: str, start: str, end: str, source: str) -> str:
    try:
        return text.split(start, 1)[1].split(end, 1)[0].strip()
    except IndexError:
        raise SystemExit(
            f"{source} has no '{start}' ... '{end}' section; the home page includes it"
        ) from None


def rewrite_links(
    text: str, source: str, staged: set[str], ref: str, repo: str, *, absolute: bool = False
) -> str:
    """Point a copied document's relative links at the site's pages, or at GitHub for other files.

    Args:
        text: Markdown.
        source: The document's path in the repository (``docs/teaching.md``).
        staged: Paths (relative to the repository) of the files that are pages of the site.
        ref: Git ref for links to GitHub.
        repo: GitHub ``OWNER/NAME``.
        absolute: Write links to pages from the site's root (``/notebooks/...``), as a file included into
            another page needs.

    Returns:
        The markdown with every relative link resolved.
    """
    page = PAGES.get(source, source)

    def resolve(match: re.Match[str]) -> str:
        opening, target, anchor, closing = match.groups()
        path = os.path.normpath(os.path.join(os.path.dirname(source), target))
        if path in staged:
            site_path = PAGES.get(path, path)
            relative = (
                "/" + site_path if absolute else os.path.relpath(site_path, os.path.dirname(page) or ".")
            )
            return f"{opening}{relative}{anchor or ''}{closing}"
        return f"{opening}https://github.com/{repo}/blob/{ref}/{path}{anchor or ''}{closing}"

    return RELATIVE_LINK.sub(resolve, text)


def launch_links(line: str) -> str:
    """The badge line of a notebook as two text links (the same targets; no image fetched from elsewhere)."""
    colab, binder = (url for url in BADGE_LINK.findall(line) if "badge" not in url and "assets" not in url)
    return (
        '<p class="course-launch">'
        f'<a class="course-launch-colab" href="{colab}">Open in Colab</a> '
        f'<a class="course-launch-binder" href="{binder}">Launch on Binder</a></p>'
    )


def stage(src: Path, lessons: list[Path]) -> None:
    """Assemble the site's source folder from the repository (the repository itself is not changed).

    Args:
        src: The folder to fill (created; files that did not change keep their time stamps, so Sphinx
            rebuilds only what changed).
        lessons: The notebooks to include.
    """
    repo, ref = course_address.repository()
    staged = {f"notebooks/{p.name}" for p in lessons} | set(PAGES)
    files: dict[str, str] = {}
    for path in lessons:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:  # markdown only: code cells (what the cache matches) stay as they are
            if cell.cell_type == "markdown":
                lines = [
                    launch_links(line) if course_address.MARKER in line else line
                    for line in cell.source.split("\n")
                ]
                cell.source = rewrite_links("\n".join(lines), f"notebooks/{path.name}", staged, ref, repo)
        files[f"notebooks/{path.name}"] = nbformat.writes(nb)
    files["teaching.md"] = rewrite_links(
        (ROOT / "docs/teaching.md").read_text(), "docs/teaching.md", staged, ref, repo
    )
    files["speed.md"] = rewrite_links(
        (ROOT / "benchmarks/README.md").read_text(), "benchmarks/README.md", staged, ref, repo
    )
    readme = (ROOT / "README.md").read_text()
    table = _between(readme, "<!-- course-table:start -->", "<!-- course-table:end -->", "README.md")
    files["_generated/course_table.md"] = (
        rewrite_links(table, "README.md", staged, ref, repo, absolute=True) + "\n"
    )
    files["_generated/learning_path.md"] = learning_path(lessons)
    intro = readme.split("\n## ", 1)[0].split("\n", 1)[1].strip()  # between the title and the first section
    files["_generated/intro.md"] = rewrite_links(intro, "README.md", staged, ref, repo, absolute=True) + "\n"
    index = (CONF / "index.md").read_text()
    files["index.md"] = index.replace("@REPOSITORY@", repo).replace("@NAME@", repo.split("/")[1])
    wanted = {src / name for name in files}
    for name, text in files.items():
        target = src / name
        if not target.exists() or target.read_text() != text:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    for old in list(src.rglob("*.ipynb")) + list(src.rglob("*.md")):
        if old not in wanted:  # a lesson removed or left out with --only
            old.unlink()


def learning_path(lessons: list[Path]) -> str:
    """The home page's learning path: each lesson's title and what it builds on, from the notebook itself."""
    lines = []
    for path in lessons:
        first = nbformat.read(path, as_version=4).cells[0].source
        title = first.splitlines()[0].lstrip("# ").strip()
        match = re.search(r"\*\*Prerequisites\*\*:?\s*(.+?)(?:\n\n|\Z)", first, re.DOTALL)
        needs = " ".join(match.group(1).split()) if match else "see the lesson"
        needs = re.split(r"(?<=[.)])\s+(?=[A-Z])", needs, maxsplit=1)[0]  # its first sentence
        lines.append(f"1. **[{title}](/notebooks/{path.name})**  \n   *Builds on:* {needs}")
    return "\n".join(lines) + "\n"


def build(mode: str, out: Path, only: list[str]) -> int:
    """Stage the sources and run Sphinx; return its exit code.

    Args:
        mode: ``"smoke"`` or ``"full"``.
        out: The build folder (``src/`` and ``html/`` go inside).
        only: Lesson numbers to include (all when empty).
    """
    lessons = [p for p in notebook_cache.notebooks() if not only or p.name[:2] in only]
    if not lessons:
        raise SystemExit(f"no notebook matches --only {' '.join(only)} in {ROOT / 'notebooks'}")
    cache = notebook_cache.cache_dir(mode)
    for stale in notebook_cache.prune(mode):
        print(f"removed the cache of another environment: {stale}")
    src, html = out / "src", out / "html"
    stage(src, lessons)
    env = dict(
        os.environ,
        COURSE_SMOKE="1" if mode == "smoke" else "0",
        COURSE_SITE_MODE=mode,
        COURSE_SITE_CACHE=str(cache),
        JUPYTER_PREFER_ENV_PATH="1",  # the kernel of this environment, not one from the user's folders
        PYDEVD_DISABLE_FILE_VALIDATION="1",  # no debugger warning in the pages
    )
    if (
        mode == "smoke"
    ):  # as the tests do (conftest.py): a stand-in for each dataset missing here, said loudly
        from course_machinery.standins import write_standins
        from course_utils._setup import data_dir

        standins = out / "stand-in-data"
        made = write_standins(data_dir(), standins)
        if made:
            env["COURSE_DATA_DIR"] = str(standins)
            print(
                f"!!! SMOKE MODE: SYNTHETIC stand-ins for {', '.join(made)} (missing here) in {standins} !!!"
            )
    print(f"building the site in {mode} mode: {len(lessons)} lesson(s), cache {cache}", flush=True)
    start = time.monotonic()
    execute_lessons(lessons, mode, src / "notebooks", env)
    # -W: a warning (a broken reference, an output that cannot render, a failed notebook) fails the build.
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(CONF), "-W", "--keep-going", "-q"]
    command += ["-d", str(out / "doctrees")]  # beside the pages, not in them: html/ is what gets published
    # Sphinx rereads only the pages whose sources changed; after a change to the site's own extension, style
    # or this script (or a switch of mode), every page is read again (-E).
    parts = [mode] + [
        f"{p}:{p.read_bytes().hex()}"
        for p in sorted(CONF.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    ]
    stamp = hashlib.sha256("\n".join(parts + [Path(__file__).read_text()]).encode()).hexdigest()
    stamp_file = out / ".site-stamp"
    if not stamp_file.is_file() or stamp_file.read_text() != stamp:
        command.append("-E")
    code = subprocess.call([*command, str(src), str(html)], env=env, cwd=ROOT)
    if code == 0:
        stamp_file.write_text(stamp)
    print(f"{'built' if code == 0 else 'FAILED'} in {time.monotonic() - start:.0f} s: {html / 'index.html'}")
    report(lessons, mode, cache, out / "run-report.json")
    return code


def execute_lessons(lessons: list[Path], mode: str, folder: Path, env: dict[str, str]) -> None:
    """Run each staged lesson that the cache lacks, one at a time, timing every cell (MyST-NB then finds them all
    in the cache; it would run them without the cell times). A lesson that fails is left to Sphinx, which runs
    it again and names it among the build's failures."""
    saved = dict(os.environ)
    os.environ.update(env)  # the kernel inherits this process's environment: the mode, the data, the cache
    try:
        for path in lessons:
            staged = folder / path.name
            if notebook_cache.cached(staged, Path(env["COURSE_SITE_CACHE"])):
                continue
            print(f"running {path.name} in {mode} mode ...", flush=True)
            try:
                _, seconds, _ = notebook_cache.execute(staged, mode, cwd=folder)
            except RuntimeError as error:
                print(f"  {path.name} FAILED: {str(error).splitlines()[-1]}", flush=True)
                continue
            print(f"  {path.name}: {seconds:.0f} s", flush=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _has_bar(cell: dict) -> bool:
    """Whether a cell's outputs hold a progress bar: tqdm's widget, or its text bar (``42%|####``)."""
    for output in cell.get("outputs", []):
        if "application/vnd.jupyter.widget-view+json" in output.get("data", {}):
            return True
        if output.get("output_type") == "stream" and re.search(r"\d%\|", output.get("text", "")):
            return True
    return False


def report(lessons: list[Path], mode: str, cache: Path, target: Path) -> list[str]:
    """Print each lesson's run time and longest cells, the cells over 10 s without a progress bar, and every
    claim the run did not show (``course_machinery.claims``); write the same to ``target`` (JSON).

    Returns:
        The claims not shown, as ``"NN_name.ipynb cell K: claim"`` lines (none on a clean full build).
    """
    import json

    from course_machinery.claims import claims_in

    rows, unshown, checked, lines = {}, [], 0, [f"runs of this build ({mode} mode, from the cache):"]
    for path in lessons:
        record = notebook_cache.run_record(path, cache)
        if record is None:
            lines.append(f"  {path.name}: not in the cache (the build failed to run it)")
            continue
        cells = {int(k): v for k, v in record.get("cell_seconds", {}).items()}
        nb = record["nb"]
        longest = sorted(cells.items(), key=lambda kv: -kv[1])[:3]
        slow = [k for k, s in cells.items() if s > 10 and not _has_bar(nb.cells[k])]
        claims = claims_in(nb)
        checked += len(claims)
        unshown += [f"{path.name} cell {k}: {claim}" for k, claim, held in claims if held is False]
        rows[path.name] = {
            "seconds": round(record.get("execution_seconds", 0.0)),
            "longest": [{"cell": k, "seconds": s} for k, s in longest],
            "over_10_s_without_bar": slow,
            "claims": len(claims),
        }
        cells_text = (
            ", ".join(f"cell {k} {s:.0f} s" for k, s in longest)
            or "no cell times (run before they were kept)"
        )
        lines.append(f"  {path.name}: {rows[path.name]['seconds']} s; longest: {cells_text}")
        if slow:
            lines.append(f"    cells over 10 s without a progress bar: {', '.join(map(str, slow))}")
    if mode == "smoke":
        lines.append(f"claims: {checked} in the lessons, not judged in smoke mode")
    else:
        lines.append(
            f"claims checked by the runs: {checked}; not shown by this run: {len(unshown) or 'none'}"
        )
        lines += [f"  NOT SHOWN: {line}" for line in unshown]
    print("\n".join(lines))
    target.write_text(json.dumps({"mode": mode, "lessons": rows, "not_shown": unshown}, indent=1) + "\n")
    return unshown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="execute in smoke mode (CI); pages say so")
    parser.add_argument("--only", nargs="+", default=[], metavar="NN", help="build only these lessons")
    parser.add_argument("--out", type=Path, default=OUT, help="build folder (default: build/site)")
    args = parser.parse_args(argv)
    return build("smoke" if args.smoke else "full", args.out.resolve(), args.only)


if __name__ == "__main__":
    sys.exit(main())
