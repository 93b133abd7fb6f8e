"""Human tables show what others wrote (names, labels: a compose project label is an owner) without
letting it drive the terminal."""

from __future__ import annotations

from tamer.report.table import render_table


def test_control_characters_and_bidi_overrides_in_cells_are_shown_as_question_marks() -> None:
    hostile = "p\x1b[2J\rq\x00r\ns\u2028t\u202eu\x9bv"
    out = render_table(["OWNER", "SIZE"], [[hostile, "1B"], ["plain ü🙂", "2B"]], right=[1])
    assert "p?[2J?q?r?s?t?u?v" in out and "plain ü🙂" in out  # printable unicode stays
    assert len(out.splitlines()) == 3  # one line per row: a newline in a cell does not add one
    assert not any(ch in out for ch in "\x1b\r\x00\u2028\u202e\x9b")
    widths = {len(line.rstrip()) for line in out.splitlines()[1:]}
    assert max(widths) - min(widths) <= 2  # still lined up
