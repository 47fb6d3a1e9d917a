"""Write a chapter notebook from a list of cells (used by the chapter sources in tools/)."""

from __future__ import annotations

from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
COLAB_CELL = '''\
# Colab only: fetch the course and install what Colab lacks (Colab's own torch is kept).
# Run locally, this cell does nothing.
import os
import subprocess
import sys

REPO_URL = "{url}"
BRANCH = "{branch}"
if "google.colab" in sys.modules and not os.path.isdir("course"):
    subprocess.run(["git", "clone", "--depth", "1", "-b", BRANCH, REPO_URL, "course"], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "course"], check=True)
    sys.path.insert(0, os.path.abspath("course"))
    from google.colab import output

    output.enable_custom_widget_manager()  # ipywidgets sliders
'''


def repository() -> tuple[str, str]:
    """The repository URL and branch from _config.yml (the one place they are set)."""
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return config["repository"]["url"], config["repository"]["branch"]


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(text: str, *tags: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(text.strip("\n"))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def check(text: str) -> nbformat.NotebookNode:
    """An assert cell: hidden on the site (remove-cell), run by nbval."""
    return code(text, "remove-cell")


def write_notebook(name: str, cells: list) -> Path:
    url, branch = repository()
    colab = code(COLAB_CELL.format(url=url, branch=branch), "remove-cell")
    notebook = nbformat.v4.new_notebook(cells=[cells[0], colab, *cells[1:]])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    notebook.metadata["accelerator"] = "GPU"
    notebook.metadata["colab"] = {"provenance": [], "gpuType": "T4"}
    path = ROOT / "book" / name
    nbformat.write(notebook, path)
    return path
