"""Re-execute chapters and store their outputs in the notebooks (the publishing workflow).

    python -m helpers.publish --profile quick            # every chapter
    python -m helpers.publish --profile full book/01_distribution_shift.md

Each chapter is a jupytext pair: ``book/NN_*.md`` (MyST Markdown, the text you edit) and
``book/NN_*.ipynb`` (executed; the site and Colab read it). The pair is synced first, so an
edit to either file is what runs, then the notebook is executed in a fresh kernel and written
back with its outputs. Each notebook's first output names the profile, device and library
versions that produced it. Widget state is stored too, so sliders work on the static website.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from .files import atomic_path
from .profiles import PROFILE_ENV, PROFILES

BOOK = Path(__file__).resolve().parent.parent / "book"


def sync(path: Path) -> None:
    """Bring a chapter's .md and .ipynb into agreement (``jupytext --sync``: the newer wins)."""
    from jupytext.cli import jupytext

    jupytext(["--sync", "--quiet", str(path)])


def execute_notebook(path: Path, profile: str, timeout: int = 1800,
                     allow_errors: bool = False) -> float:
    """Run ``path`` top to bottom in a fresh kernel with ``profile``; write it back atomically."""
    import nbformat
    from nbclient import NotebookClient

    path = path.with_suffix(".ipynb")
    sync(path)
    os.environ[PROFILE_ENV] = profile
    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}},
                            store_widget_state=True, allow_errors=allow_errors)
    client.execute()
    seconds = time.perf_counter() - started
    with atomic_path(path) as tmp:
        nbformat.write(notebook, tmp)
    sync(path)  # the text file stays the newer of the two, as jupytext expects
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="chapters to run, .md or .ipynb (default: every chapter, in order)")
    parser.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    parser.add_argument("--draft", action="store_true",
                        help="authors: run past failing cells to see every failure at once")
    args = parser.parse_args(argv)
    for path in args.notebooks or sorted(BOOK.glob("[0-9][0-9]_*.ipynb")):
        seconds = execute_notebook(path, args.profile, args.timeout, args.draft)
        print(f"{path.name}: executed in {seconds:.0f} s ({args.profile} profile)", flush=True)


if __name__ == "__main__":
    main()
