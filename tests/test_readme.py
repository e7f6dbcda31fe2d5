"""README.md as GitHub and PyPI render it (GitHub-flavoured Markdown): a `|` splits a table's cell even
inside a code span unless escaped, so every row of every table must have its header's cells."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
DELIMITER = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")


def gfm_cells(row: str) -> list[str]:
    """A table row's cells as GFM splits them: at every `|` that no backslash escapes, code spans or not."""
    row = row.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    return re.split(r"(?<!\\)\|", row)


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


def test_every_table_row_has_its_headers_columns():
    found = tables(README.read_text())
    assert len(found) >= 8  # the check reads the tables there are
    wrong = [f"README.md:{start}: a row with {len(gfm_cells(row))} cells under a header of {len(gfm_cells(rows[0]))}: {row[:80]}"
             for start, rows in found for row in rows[1:] if len(gfm_cells(row)) != len(gfm_cells(rows[0]))]
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_a_pipe_inside_a_code_span():
    broken = "| identity | logged as |\n|---|---|\n| `KL(q(z|x) ‖ p(z))` | `kl` |\n"
    (_, rows), = tables(broken)
    assert len(gfm_cells(rows[1])) == 3 and len(gfm_cells(rows[1].replace("z|x", "z\\|x"))) == 2
