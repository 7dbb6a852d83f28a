"""Every ```python block of the README and of the guides in docs/ runs as written.

A page's blocks run in order in one fresh interpreter, as if pasted into one
session, in an empty folder (so files they write land there), with warnings as
errors. A traceback names the page and its line. A block that cannot run here
(it needs a cluster, say) is preceded by the comment
``<!-- not run: the reason -->``. The tutorials in docs/tutorials are executed
by the documentation build instead.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP = "<!-- not run:"

pytest.importorskip("sklearn")

# Runs the blocks given as (first line in the page, source) pairs, the page's path first on argv.
RUNNER = """
import sys
path, blocks = sys.argv[1], eval(sys.stdin.read())
namespace = {"__name__": "__main__"}
for line, source in blocks:
    exec(compile("\\n" * line + source, path, "exec"), namespace)
"""


def python_blocks(page):
    """The ``(line, source)`` of each runnable ```python fence in ``page``, and the count skipped.

    ``line`` is the 0-based line of the fence's first source line, so that
    tracebacks point at the page's own line numbers.
    """
    tokens = MarkdownIt("commonmark").parse(page.read_text())
    blocks, skipped = [], 0
    for before, token in zip([None, *tokens], tokens):
        if token.type != "fence" or token.info.split()[:1] != ["python"]:
            continue
        if before is not None and before.type == "html_block" and before.content.startswith(SKIP):
            skipped += 1
        else:
            blocks.append((token.map[0] + 1, token.content))
    return blocks, skipped


RUNNABLE = [page for page in PAGES if python_blocks(page)[0]]


def test_pages_are_found_and_few_blocks_are_skipped():
    names = {page.relative_to(ROOT).as_posix() for page in RUNNABLE}
    assert {"README.md", "docs/index.md", "docs/training.md", "docs/gradient_checking.md"} <= names
    assert sum(python_blocks(page)[1] for page in PAGES) <= 2


@pytest.mark.slow  # a fresh interpreter per page; 4 to 30 s each on 2 shared cores
@pytest.mark.parametrize("page", RUNNABLE, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_python_blocks_run_in_order(page, tmp_path):
    blocks, _ = python_blocks(page)
    paths = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths), MPLBACKEND="Agg")
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", RUNNER, str(page)],
        input=repr(blocks), capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    assert result.returncode == 0, f"{page.name}:\n{result.stdout}\n{result.stderr}"
