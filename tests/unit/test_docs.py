"""The operator documents hold together (issue 15): every relative link in README.md and
docs/ names a file of the repository, and each figure docs/scaling.md cites from
bench/README.md is there, word for word, with the same numbers."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SCALING = ROOT / "docs" / "scaling.md"
BENCH = ROOT / "bench" / "README.md"

#: An inline Markdown link or image: [text](target) or ![alt](target "title").
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
#: Targets that are not files of the repository.
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|#)", re.IGNORECASE)
BEGIN, END = "<!-- figures:", "<!-- /figures -->"
#: A number as the documents write it: 55.1, 10,000, the 99 of p99.
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
QUOTE = re.compile(r"\"([^\"]+)\"")


def links(text: str) -> list[str]:
    """Relative link targets outside code blocks, without their #fragment."""
    prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    prose = re.sub(r"`[^`\n]*`", "", prose)
    targets = (m.group(1) for m in LINK.finditer(prose))
    return [t.split("#", 1)[0] for t in targets if not EXTERNAL.match(t)]


def plain(text: str) -> str:
    """Text as read, not as marked up: emphasis and code marks gone, any run of
    white space (a line break in a wrapped paragraph) one space."""
    return re.sub(r"\s+", " ", re.sub(r"[*`]", "", text)).strip()


def cells(row: str) -> list[str]:
    """A Markdown table row's cells (a cell may hold an escaped ``\\|``)."""
    parts = re.split(r"(?<!\\)\|", row.strip().strip("|"))
    return [p.replace("\\|", "|").strip() for p in parts]


def figure_rows() -> list[list[str]]:
    text = SCALING.read_text()
    start = text.index(BEGIN)
    block = text[start:text.index(END, start)]
    rows = [cells(line) for line in block.splitlines() if line.startswith("|")]
    return [r for r in rows[2:]]  # past the header and its rule


def test_every_relative_link_names_a_file() -> None:
    assert SCALING in DOCUMENTS
    checked = 0
    for document in DOCUMENTS:
        for target in links(document.read_text()):
            path = (document.parent / target).resolve()
            assert path.is_relative_to(ROOT), f"{document.name}: {target} leaves the repository"
            assert path.exists(), f"{document.name}: {target} does not exist"
            checked += 1
    # README links the scaling document, which links the benches' figures.
    assert "docs/scaling.md" in links((ROOT / "README.md").read_text())
    assert "../bench/README.md" in links(SCALING.read_text())
    assert checked >= 2


def test_link_parser() -> None:
    text = ("[a](docs/a.md) ![b](img/b.png \"t\") [c](https://x.org/) [d](#anchor)\n"
            "[e](../bench/README.md#figures) `[f](not/a/link.md)`\n"
            "```\n[g](in/a/code/block.md)\n```\n")
    assert links(text) == ["docs/a.md", "img/b.png", "../bench/README.md"]


def test_cited_figures_are_in_bench_readme() -> None:
    bench = plain(BENCH.read_text())
    rows = figure_rows()
    assert len(rows) >= 10
    for row in rows:
        name, figure, quoted = row[0], row[1], row[-1]
        quotes = QUOTE.findall(quoted)
        assert quotes, f"{name}: no quote from bench/README.md"
        for quote in quotes:
            assert plain(quote) in bench, f"{name}: bench/README.md does not say {quote!r}"
        said = {n for q in quotes for n in NUMBER.findall(q)}
        missing = [n for n in NUMBER.findall(figure) if n not in said]
        assert not missing, f"{name}: {figure!r} has {missing}, which its quotes do not"


def test_figure_check_catches_a_changed_number() -> None:
    row = cells('| F0 | 55.2 msgs/s | e2e | "SW 55.1 / 56.6 / 54.1 msgs/s" |')
    said = {n for q in QUOTE.findall(row[-1]) for n in NUMBER.findall(q)}
    assert [n for n in NUMBER.findall(row[1]) if n not in said] == ["55.2"]
    assert cells(r"| a \| b | c |") == ["a | b", "c"]
