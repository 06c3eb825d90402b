"""The documentation is for people who clone the repository: every link in README.md and docs/ must point at a
file (and heading) inside the repository, never at ../shared or another machine's path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|^\[[^\]]+\]:\s*(\S+)", re.MULTILINE)


def _anchors(path: Path) -> set[str]:
    """GitHub-style heading anchors of a Markdown file."""
    anchors = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def _links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.DOTALL)  # code blocks hold commands, not links
    return [m.group(1) or m.group(2) for m in LINK.finditer(text)]


def test_the_documents_exist_and_the_readme_links_them():
    assert {p.name for p in DOCUMENTS} >= {"README.md", "domain.md", "api.md", "operations.md"}
    readme_links = set(_links(ROOT / "README.md"))
    assert {"docs/domain.md", "docs/api.md", "docs/operations.md"} <= readme_links


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_link_points_outside_the_repository(document):
    bad = []
    for link in _links(document):
        if re.match(r"^[a-z][a-z0-9+.-]*:", link, re.IGNORECASE):  # http:, file:, mailto: ... : not in the repo
            bad.append((link, "not a link into the repository"))
            continue
        target, _, anchor = link.partition("#")
        resolved = (document.parent / target).resolve() if target else document
        if target.startswith("/") or not resolved.is_relative_to(ROOT):
            bad.append((link, "outside the repository"))
        elif not resolved.exists():
            bad.append((link, "no such file"))
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            bad.append((link, "no such heading"))
    assert not bad, bad


def test_the_checker_catches_links_out_of_the_repository(tmp_path):
    sample = tmp_path / "x.md"
    sample.write_text("[a](../shared/docs/api.md) [b](https://example.com) ```\n[c](nope.md)\n```")
    assert _links(sample) == ["../shared/docs/api.md", "https://example.com"]
