"""README's layout table names what is in the tree, and every top-level folder is in it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOP_LEVEL = ("functions", "shared", "infra", "devtools", "tests", "bench", "docs")


def layout_rows() -> list[tuple[str, str]]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| (.+) \|$", section, flags=re.MULTILINE)
    assert rows, "README's layout table is gone"
    return rows


def test_every_path_the_layout_table_names_exists() -> None:
    missing = []
    for path, meaning in layout_rows():
        if "<vendor>" in path:
            candidates = [path.replace("<vendor>", v) for v in ("google", "smartcar", "tlink")]
        else:
            candidates = [path]
        missing += [c for c in candidates if not (ROOT / c).exists()]
        # The files a row names by their role exist in each place it speaks of (after a ";",
        # the files only some of them have).
        for named in re.findall(r"`([a-z_]+\.py)`", meaning.split(";")[0]):
            missing += [f"{c}{named}" for c in candidates if not (ROOT / c / named).exists()]
    assert missing == []


def test_every_top_level_folder_has_a_row() -> None:
    named = {path.split("/")[0] for path, _ in layout_rows()}
    assert set(TOP_LEVEL) <= named
