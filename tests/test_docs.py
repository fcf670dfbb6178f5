"""The README is a front door to the guides in docs/: short, every guide linked, every link resolving."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
GUIDES = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")  # [text](target) and ![alt](target)


def links(path: Path) -> list[str]:
    """The targets of a Markdown file's links and images, code blocks and code spans left out."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.DOTALL | re.MULTILINE)
    text = re.sub(r"`[^`\n]*`", "", text)
    return LINK.findall(text)


def local(target: str) -> str | None:
    """The file part of a relative link; None for a web address or an anchor in the same file."""
    if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
        return None
    return target.split("#", 1)[0] or None


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= 420


def test_there_are_guides():
    assert len(GUIDES) >= 10


@pytest.mark.parametrize("path", [README, *GUIDES], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_points_at_a_file(path):
    missing = [t for t in links(path) if local(t) and not (path.parent / local(t)).exists()]
    assert not missing, f"{path.relative_to(ROOT)} links to files that do not exist: {missing}"


def test_every_guide_is_linked_from_the_readme():
    linked = {(ROOT / local(t)).resolve() for t in links(README) if local(t)}
    unlinked = [g.name for g in GUIDES if g.resolve() not in linked]
    assert not unlinked, f"README.md does not link these guides: {unlinked}"


def test_the_readme_names_every_section_of_selfplay_and_every_file_in_it():
    """The layout table lists each section (`core/`) with the files it holds, so a reader finds a thing
    from the README alone; a file added or moved without it fails here."""
    text = README.read_text()
    top = ROOT / "selfplay"
    for section in sorted(p for p in top.iterdir() if (p / "__init__.py").is_file()):
        row = next((line for line in text.splitlines() if line.startswith(f"| `{section.name}/` |")), None)
        assert row is not None, f"no README row for selfplay/{section.name}/"
        files = {p.name for p in section.glob("*.py")} - {"__init__.py", "__main__.py"}
        files |= {f"{p.name}/" for p in section.iterdir() if (p / "__init__.py").is_file()}
        assert sorted(f for f in files if f"`{f}`" not in row) == [], section.name
    modules = sorted(p.name for p in top.glob("*.py") if p.name != "__init__.py")
    assert [m for m in modules if f"`{m}`" not in text] == []
