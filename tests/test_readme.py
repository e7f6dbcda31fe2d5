"""README.md and the pages under docs/ as GitHub and PyPI render them (GitHub-flavoured Markdown): a `|`
splits a table's cell even inside a code span unless escaped, so every row of every table must have
its header's cells; and every relative link points to a file (and a heading) that exists."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
DELIMITER = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
# [text](target): the target up to the first `)` or space (a title after it is ignored)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)[^)]*\)")


def gfm_cells(row: str) -> list[str]:
    """A table row's cells as GFM splits them: at every `|` that no backslash escapes, code spans or not."""
    row = row.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    return re.split(r"(?<!\\)\|", row)


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of every line outside fenced code."""
    found, fenced = [], False
    for number, line in enumerate(text.split("\n"), start=1):
        if line.startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            found.append((number, line))
    return found


def tables(text: str) -> list[tuple[int, list[str]]]:
    """(line number of the header, rows) of each table outside fenced code."""
    lines, found, fenced, i = text.split("\n"), [], False, 0
    while i < len(lines):
        fenced ^= lines[i].startswith("```")
        if not fenced and "|" in lines[i] and i + 1 < len(lines) and DELIMITER.match(lines[i + 1]):
            j = i + 2
            while j < len(lines) and lines[j].strip().startswith("|"):
                j += 1
            found.append((i + 1, [lines[i], *lines[i + 2:j]]))
            i = j
            continue
        i += 1
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (hyphens and underscores kept),
    each space a hyphen."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(line.lstrip("#")) for _, line in prose_lines(page.read_text()) if re.match(r"#{1,6} ", line)}


def test_every_table_row_has_its_headers_columns():
    found = {page: tables(page.read_text()) for page in PAGES}
    assert sum(len(t) for t in found.values()) >= 9  # the check reads the tables there are
    assert len(found[README]) >= 5
    wrong = [f"{page.relative_to(ROOT)}:{start}: a row with {len(gfm_cells(row))} cells under a header of "
             f"{len(gfm_cells(rows[0]))}: {row[:80]}"
             for page, page_tables in found.items() for start, rows in page_tables
             for row in rows[1:] if len(gfm_cells(row)) != len(gfm_cells(rows[0]))]
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_a_pipe_inside_a_code_span():
    broken = "| identity | logged as |\n|---|---|\n| `KL(q(z|x) ‖ p(z))` | `kl` |\n"
    (_, rows), = tables(broken)
    assert len(gfm_cells(rows[1])) == 3 and len(gfm_cells(rows[1].replace("z|x", "z\\|x"))) == 2


def test_every_relative_link_points_to_a_file_and_heading_that_exist():
    links = [(page, number, target) for page in PAGES for number, line in prose_lines(page.read_text())
             for target in LINK.findall(line) if not re.match(r"[a-z]+:", target)]
    assert any(page == README and target.startswith("docs/") for page, _, target in links)
    wrong = []
    for page, number, target in links:
        path, _, fragment = target.partition("#")
        goal = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(ROOT)}:{number}: {target}"
        if not goal.exists():
            wrong.append(f"{where}: no such file")
        elif fragment and goal.suffix == ".md" and fragment not in anchors(goal):
            wrong.append(f"{where}: {goal.name} has no heading with that anchor")
    assert not wrong, "\n".join(wrong)


def test_readme_links_every_page_under_docs():
    linked = {(ROOT / target.partition("#")[0]).resolve() for _, line in prose_lines(README.read_text())
              for target in LINK.findall(line) if target.startswith("docs/")}
    assert set(DOCS) <= linked, f"not linked from README: {sorted(p.name for p in set(DOCS) - linked)}"


def test_the_link_check_sees_a_broken_link_and_the_slug_is_githubs():
    assert LINK.findall("see [the page](docs/none.md#x) and [a site](https://example.org)") == [
        "docs/none.md#x", "https://example.org"]
    assert slug("Resume, and when things go wrong") == "resume-and-when-things-go-wrong"
    assert slug("What K = N costs") == "what-k--n-costs"
    assert slug("`vaebench report`") == "vaebench-report"
