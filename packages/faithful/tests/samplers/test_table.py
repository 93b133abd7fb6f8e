"""The processor table is the one source of truth: spec, validation, default order, docs, make_sampler."""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import Any

import faithful.processors as processors_pkg
import numpy as np
import pytest
from faithful.errors import FaithfulError, SamplingParameterError
from faithful.mirostat import Mirostat
from faithful.processors import DEFAULT_ORDER, TABLE, Entry, Processor, TopP
from faithful.processors.table import KEYWORDS, render_table, spec_help
from faithful.samplers import make_sampler, parse_sampler_spec

ENTRIES = {e.name: e for e in TABLE}


def built(entry: Entry, sampler: Any) -> Any:
    if entry.cls is Mirostat:
        return sampler.mirostat
    (proc,) = [p for p in sampler.processors if isinstance(p, entry.cls)]
    return proc


@pytest.mark.parametrize("entry", TABLE, ids=lambda e: e.name)
def test_every_entry_parses_from_its_spec(entry: Entry) -> None:
    sampler = make_sampler(**entry.example)
    spec = sampler.name
    for p in entry.params:
        if p.keyword in entry.example and p.spec:
            assert any(f"{k.key}:" in spec for k in p.spec), (p.keyword, spec)
    parsed = parse_sampler_spec(spec)
    assert parsed.name == spec
    ours, theirs = built(entry, sampler), built(entry, parsed)
    for p in entry.params:
        assert getattr(ours, p.field) == getattr(theirs, p.field)
        if p.keyword in entry.example and p.keyword != "mirostat":
            expected = entry.example[p.keyword]
            got = getattr(ours, p.field)
            assert got == (tuple(expected) if isinstance(expected, list | tuple) else expected)


BAD_VALUES: dict[str, list[Any]] = {
    "real_in": [-0.5, 1.5, math.nan, "x", True, math.inf],
    "finite": [math.nan, math.inf, -math.inf, "x", True],
    "integer": [1.5, "3", True, -5],
    "one_of": [0, 3, 1.0, True],
    "token_ids": [[[1, 2]], [1.5], "ab"],
    "bias_map": [[1, 2], {1.5: 1.0}, {1: math.nan}, {1: math.inf}],
    "breaker_list": ["ab", [[]], [[-1]], 5],
}


def check_kind(check: Any) -> str:
    return str(getattr(check, "__qualname__", "")).split(".")[0]


def bad_values(entry: Entry, keyword: str) -> list[Any]:
    p = next(p for p in entry.params if p.keyword == keyword)
    values = list(BAD_VALUES[check_kind(p.check)])
    return [v for v in values if not _accepted(p, v)]


def _accepted(p: Any, v: Any) -> bool:
    try:
        p.check(p.keyword, v)
    except SamplingParameterError:
        return False
    return True


CASES = [(e, p.keyword) for e in TABLE for p in e.params]


@pytest.mark.parametrize(("entry", "keyword"), CASES, ids=[f"{e.name}.{k}" for e, k in CASES])
def test_every_parameter_is_validated_with_a_clear_message(entry: Entry, keyword: str) -> None:
    p = next(p for p in entry.params if p.keyword == keyword)
    kind = check_kind(p.check)
    assert kind in BAD_VALUES, kind
    values = bad_values(entry, keyword)
    assert len(values) >= 2, f"{keyword}: every bad value was accepted"
    base = {k: v for k, v in entry.example.items() if k != keyword}
    if not any(q.primary and q.keyword in base for q in entry.params) and not p.primary:
        base[next(q.keyword for q in entry.params if q.primary)] = next(
            v for q in entry.params if q.primary for v in [entry.example[q.keyword]]
        )
    for v in values:
        with pytest.raises(SamplingParameterError) as info:
            make_sampler(**{**base, keyword: v})
        message = str(info.value)
        assert message.startswith(f"`{keyword}` must be "), message
        assert ", got " in message
        assert isinstance(info.value, FaithfulError)
    # the processor class validates the same way when built directly
    if entry.cls is not Mirostat and isinstance(values[0], int | float) and not isinstance(values[0], bool):
        kwargs = {q.field: entry.example.get(q.keyword, q.default) for q in entry.params}
        kwargs[p.field] = values[0]
        with pytest.raises(SamplingParameterError, match=f"^`{keyword}` must be "):
            entry.cls(**kwargs)


def test_the_house_style_message() -> None:
    with pytest.raises(SamplingParameterError) as info:
        TopP(1.5)
    assert str(info.value) == "`top_p` must be in (0, 1], got 1.5"
    with pytest.raises(SamplingParameterError, match=r"^`top_p` must be in \(0, 1\], got 1.5$"):
        parse_sampler_spec("top-p:1.5")


def test_default_order_is_the_table_order_and_is_used() -> None:
    assert tuple(e.name for e in TABLE) == DEFAULT_ORDER
    assert len(set(DEFAULT_ORDER)) == len(DEFAULT_ORDER) == len(TABLE)
    everything: dict[str, Any] = {}
    for e in TABLE:
        everything.update(e.example)
    sampler = make_sampler(**everything)
    order = [next(e.name for e in TABLE if isinstance(p, e.cls)) for p in sampler.processors]
    assert order == [n for n in DEFAULT_ORDER if n != "mirostat"]
    assert sampler.mirostat is not None  # mirostat: always last, held apart because it keeps state
    # the spec puts them in the same order whatever order the parts are written in
    reversed_spec = "+".join(reversed(sampler.name.split("+")))
    assert [type(p) for p in parse_sampler_spec(reversed_spec).processors] == [
        type(p) for p in sampler.processors
    ]


def test_make_sampler_keywords_are_the_tables() -> None:
    params = inspect.signature(make_sampler).parameters
    processor_keywords = {k for k in params if k not in {"processors", "draw", "backend", "fast", "kernels"}}
    assert processor_keywords == set(KEYWORDS)
    assert len(KEYWORDS) == len(set(KEYWORDS))


def test_every_processor_class_is_in_the_table() -> None:
    classes = {
        obj
        for obj in vars(processors_pkg).values()
        if inspect.isclass(obj) and issubclass(obj, Processor) and obj is not Processor
    }
    assert classes == {e.cls for e in TABLE if e.cls is not Mirostat}
    for e in TABLE:
        fields = {f.name for f in dataclasses.fields(e.cls)}
        assert {p.field for p in e.params} <= fields, e.name


def test_docs_are_generated_from_the_table() -> None:
    doc = processors_pkg.__doc__ or ""
    begin, end = ".. processor-table-begin", ".. processor-table-end"
    section = doc[doc.index(begin) + len(begin) : doc.index(end)].strip()
    assert section == render_table(), "regenerate the table in faithful/processors/__init__.py"
    for e in TABLE:
        assert f"``{e.name}``" in section
    help_text = spec_help(detailed=True)
    for e in TABLE:
        for p in e.params:
            for k in p.spec:
                assert f"{k.key}:VALUE ({p.keyword} {p.expected})" in help_text


@pytest.mark.parametrize(
    ("spec", "repeated"),
    [
        ("top-p:0.9+top-p:0.5", "top_p"),
        ("temperature:0.7+top-k:5+temperature:0.7", "temperature"),
        ("mirostat:3+mirostat-v1:4", "mirostat_tau"),
        ("gumbel+top-k:3+gumbel", "draw"),
        ("sample+gumbel", "draw"),
        ("dry:0.8+dry-base:2+dry-base:3", "dry_base"),
        ("TOP-P:0.9+top-p:0.9", "top_p"),
    ],
)
def test_a_repeated_spec_part_is_a_usage_error(spec: str, repeated: str) -> None:
    # issue 13: top-p:0.9+top-p:0.5 silently used 0.5
    with pytest.raises(SamplingParameterError, match=f"sets `{repeated}` twice") as info:
        parse_sampler_spec(spec)
    assert "give each part once" in str(info.value)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("dry-base:2", "give `dry_multiplier` too"),
        ("xtc-threshold:0.2", "give `xtc_probability` too"),
        ("mirostat-eta:0.2", "give `mirostat` too"),
        ("top-p:0.9+", "empty part"),
        ("top-k:x", "not a valid value for `top_k`"),
        ("logit-bias:3", "not a valid value for `logit_bias`"),
        ("nucleus:0.9", "valid parts: greedy, sample, gumbel"),
        ("greedy+top-k:3", "greedy cannot be combined"),
    ],
)
def test_spec_errors_say_what_to_do(spec: str, needle: str) -> None:
    with pytest.raises(SamplingParameterError) as info:
        parse_sampler_spec(spec)
    assert needle in str(info.value)


def test_new_spec_parts_for_token_lists() -> None:
    s = parse_sampler_spec("logit-bias:3=2.5,7=-inf+allowed-tokens:0,3,7+forbidden-tokens:7")
    names = [type(p).__name__ for p in s.processors]
    assert names == ["LogitBias", "AllowedTokens", "ForbiddenTokens"]
    assert s.processors[0].bias == {3: 2.5, 7: -np.inf}  # type: ignore[attr-defined]
    assert parse_sampler_spec(s.name).processors == s.processors
    q = s.distribution(np.zeros((1, 10)))
    assert np.flatnonzero(q[0]).tolist() == [0, 3]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mirostat": 2},
        {"mirostat": 1, "mirostat_tau": 3.0},
        {"mirostat": 2, "mirostat_eta": 0.3},
        {"mirostat": Mirostat(version=1, tau=4.0, eta=0.2)},
        {"presence_penalty": 0.5},
        {"temperature": 0.0, "top_k": 3},
        {"dry_multiplier": 0.5, "dry_sequence_breakers": [[1], [2, 3]], "draw": "gumbel"},
    ],
)
def test_a_sampler_name_parses_back_to_the_same_sampler(kwargs: dict[str, Any]) -> None:
    s = make_sampler(**kwargs)
    back = parse_sampler_spec(s.name)
    assert back.name == s.name and back.processors == s.processors and back.draw == s.draw
    if s.mirostat is not None:
        assert back.mirostat is not None
        assert (back.mirostat.version, back.mirostat.tau, back.mirostat.eta) == (
            s.mirostat.version,
            s.mirostat.tau,
            s.mirostat.eta,
        )
