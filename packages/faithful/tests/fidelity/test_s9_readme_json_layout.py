"""faithful's --json envelope is laid out as the README says of both tools' envelopes: indented on a
terminal and on one line otherwise (tamer's report/envelope.py). faithful indented it everywhere, so
a pipe, a log or a JSON-lines collector got a multi-line document where tamer's was one line.
"""

from __future__ import annotations

import io
import json

from faithful.cli import main


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _run(out: io.StringIO, *argv: str) -> tuple[int, str]:
    code = main(list(argv), stdout=out, stderr=io.StringIO())
    return code, out.getvalue()


def test_one_line_envelope_without_a_terminal() -> None:
    for argv, expected in ((("--json", "coin", "--n", "4"), 0), (("coin", "--n", "-3", "--json"), 2)):
        code, text = _run(io.StringIO(), *argv)
        assert code == expected
        assert text.count("\n") == 1 and text.endswith("\n"), text  # one line, as tamer prints it
        env = json.loads(text)
        assert env["version"] == 1 and env["exit_code"] == expected


def test_indented_envelope_on_a_terminal() -> None:
    code, text = _run(_Terminal(), "--json", "coin", "--n", "4")
    assert code == 0
    assert text.startswith('{\n  "version": 1,\n'), text
    assert json.loads(text)["data"]["n"] == 4
