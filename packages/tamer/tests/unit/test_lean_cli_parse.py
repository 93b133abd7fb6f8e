"""Which command lines the lean path (tamer.cli.lean) takes, and fastjson against json.

The integration test (tests/integration/test_lean_cli.py) runs each form both ways on an engine; here
the split itself is checked against what argparse does with the same words, and the JSON reader
against json.loads on generated and hostile documents."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tamer import fastjson
from tamer.cli.lean import _split, run_lean
from tamer.patterns import LazyPattern


@pytest.mark.parametrize(
    ("argv", "want"),
    [
        (["ls", "images"], (None, ["ls", "images"], [], None)),
        (["-H", "unix:///a", "ls", "volumes"], ("unix:///a", ["ls", "volumes"], [], None)),
        (
            ["ls", "-H", "unix:///a", "volumes", "--host=unix:///b"],
            ("unix:///b", ["ls", "volumes"], [], None),
        ),
        (["ls", "--sort", "age", "images", "-q"], (None, ["ls", "images"], [], "age")),
        (
            ["ls", "images", "-f", "a=b", "--filter=c=d", "--filter", "e"],
            (None, ["ls", "images"], ["a=b", "c=d", "e"], None),
        ),
        (["ls", "images", "--sort=name", "--sort", "age"], (None, ["ls", "images"], [], "age")),
        (["ls", "-"], (None, ["ls", "-"], [], None)),
    ],
)
def test_plain_listings_split(argv: list[str], want: Any) -> None:
    assert _split(argv) == want


@pytest.mark.parametrize(
    "argv",
    [
        ["--sort", "age", "ls", "images"],  # ls's own option before `ls`: the full CLI's error
        ["-f", "a=b", "ls"],
        ["ls", "images", "--json"],
        ["ls", "images", "--filter"],  # no value
        ["ls", "images", "--filter", "-x"],  # argparse reads -x as an option
        ["ls", "images", "-Hx"],  # attached short value: left to argparse
        ["ls", "images", "-f=a"],
        ["ls", "images", "--"],
        ["ls", "images", "--hos", "x"],  # a prefix: left to argparse
        ["ls", "images", "--size"],
        ["ls", "images", "-u"],
        ["ls", "images", "--traceback"],
        ["ls", "images", "--help"],
        ["ls", "images", "-h"],
        ["--version"],
    ],
)
def test_anything_else_is_left_to_the_full_cli(argv: list[str]) -> None:
    assert _split(argv) is None


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["df"],
        ["ls", "pods"],
        ["ls", "images", "extra"],
        ["ls", "images", "--sort", "size"],
        ["ls", "images", "--sort", ""],
        ["ls", "images", "--filter", "colour=red"],
        ["ls", "images", "--filter", "older-than=forever"],
        ["ls", "images", "--filter", "unused"],  # needs the container list: the full path
        ["ls", "cache"],
        ["-H", "ssh://someone@somewhere", "ls", "images"],
        ["-H", "tcp://127.0.0.1:1", "ls", "images"],
    ],
)
def test_what_the_lean_path_cannot_answer_returns_none_having_done_nothing(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TAMER_FULL_CLI", raising=False)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/lean-unit.sock")
    assert run_lean(argv) is None


def test_tamer_full_cli_turns_the_lean_path_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAMER_FULL_CLI", "1")
    assert run_lean(["ls", "images"]) is None


# -- fastjson -------------------------------------------------------------------------------------
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=30,
)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@settings(max_examples=300, deadline=None)
@given(_values, st.sampled_from(["", " ", "\n", " \t\r\n "]), st.booleans())
def test_fastjson_reads_what_json_reads(value: Any, pad: str, ascii_only: bool) -> None:
    text = pad + json.dumps(value, ensure_ascii=ascii_only) + pad
    for doc in (text, text.encode("utf-8")):
        assert _same(fastjson.loads(doc), json.loads(doc))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40) | st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_fastjson_fails_as_json_fails(doc: bytes) -> None:
    try:
        want: Any = ("ok", json.loads(doc))
    except Exception as exc:  # json's own error, word for word
        want = (type(exc), str(exc))
    try:
        got: Any = ("ok", fastjson.loads(doc))
    except Exception as exc:
        got = (type(exc), str(exc))
    if want[0] == "ok":
        assert got[0] == "ok" and _same(got[1], want[1])
    else:
        assert got == want


@pytest.mark.parametrize(
    "doc",
    [
        b"\xef\xbb\xbf{}",  # a UTF-8 BOM: json.loads reads bytes with one
        "\ufeff{}",  # and refuses a str with one
        b'{"a": 1} x',
        b"[1,]",
        b'{"a":"\x01"}',
        b'"\\ud800"',
        b"1" * 5000,  # past int's digit limit: json's ValueError
        b'{"a": 1, "a": 2}',
        bytearray(b"[1, 2]"),
        b"",
        b"   ",
        "{}".encode("utf-16"),
        "[1]".encode("utf-32-le"),
    ],
)
def test_fastjson_hostile_documents(doc: Any) -> None:
    try:
        want: Any = ("ok", json.loads(doc))
    except Exception as exc:
        want = (type(exc), str(exc))
    try:
        got: Any = ("ok", fastjson.loads(doc))
    except Exception as exc:
        got = (type(exc), str(exc))
    assert repr(got) == repr(want)


def test_lazy_pattern_compiles_on_first_use_as_re_would() -> None:
    import re

    p = LazyPattern(r"^([a-z]+)_(\d+)$")
    assert p._compiled is None
    assert p.match("ab_12") is not None and p.match("ab_12").group(2) == "12"  # type: ignore[union-attr]
    assert p.compiled() is re.compile(r"^([a-z]+)_(\d+)$")
    assert LazyPattern(r"[\x00-\x1f]").sub("?", "a\x01b") == "a?b"


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), st.lists(st.text(), max_size=4), max_size=4))
def test_the_engine_filters_text_is_json_dumps(filters: dict[str, list[str]]) -> None:
    from tamer.engine.client import _dumps

    assert _dumps(filters) == json.dumps(filters)
