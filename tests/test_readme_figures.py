"""README figures come from scripts: each figure block is the file scripts/readme_figures.py wrote.

No figure in a block is typed by hand; a rerun of the script rewrites the file and the block.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"<!-- figure: ([a-z0-9_]+) -->\n(.*?)<!-- /figure: \1 -->", README, re.S)


def test_the_readme_has_figure_blocks():
    assert len(BLOCKS) >= 8


def test_every_readme_figure_is_the_file_its_script_wrote():
    for name, body in BLOCKS:
        path = ROOT / "scripts" / "figures" / f"{name}.md"
        assert path.is_file(), f"README figure {name!r} has no scripts/figures/{name}.md"
        assert body == path.read_text(), f"README figure {name!r} differs from {path}"


def test_every_figure_says_when_where_and_how_it_was_measured():
    for name, body in BLOCKS:
        first = body.splitlines()[0]
        assert re.match(r"<sub>Measured \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC on \d+ CPU cores", first), name
        assert "`" in first and " s.</sub>" in first, name  # the command and its duration


def test_every_figure_the_script_can_write_is_in_the_readme():
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_figures",
                                                  ROOT / "scripts" / "readme_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert {name for name, _ in BLOCKS} == set(module.FIGURES)
