"""quick_ls.volume_table (the lean `tamer ls volumes` table, laid out before the engine says which volumes
are orphaned) prints exactly what render_table prints for the same rows, on hostile names, labels and
paths (control characters, bidi overrides, trailing and non-breaking spaces, long and wide names), with
every filter and sort, and waits for the engine's answer once."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from tamer.listing import parse_filters
from tamer.quick_ls import finish_volume_rows, render, volume_table

NOW = datetime(2031, 6, 1, 12, 0, tzinfo=UTC)
NAMES = [
    "plain",
    "a" * 64,
    "b" * 39,
    "c" * 41,
    "esc\x1b[31mred",
    "bidi\u202eevil",
    "nbsp-end\xa0",
    "ideographic\u3000",
    "wide-\u4e2d\u6587",
    "tab\tname",
    "new\nline",
    "zero\u200bwidth",
]
PATHS = [
    "/srv/data",
    "/srv/trailing  ",
    "/srv/nbsp\xa0",
    "/srv/ideo\u3000",
    "/srv/\x1bcolour",
    "",
    "/srv/\u2028sep",
]


def _facts(rng: random.Random) -> list[tuple[str, bool, dict[str, str], str, str, datetime | None]]:
    out = []
    for i, name in enumerate(NAMES * 2):
        placement = rng.choice(["default", "bind", "symlink"])
        out.append(
            (
                f"{name}-{i}" if i >= len(NAMES) else name,
                rng.random() < 0.5,
                {"k": "v"} if rng.random() < 0.5 else {},
                placement,
                rng.choice(PATHS),
                NOW - timedelta(days=rng.randint(0, 30)) if rng.random() < 0.9 else None,
            )
        )
    return out


FILTERS = [
    [],
    ["anonymous"],
    ["named=true"],
    ["placement=bind"],
    ["placement=default"],
    ["label=k=v"],
    ["older-than=7d"],
    ["orphaned"],
    ["orphaned=false", "anonymous=false"],
    ["label=nothing-has-this"],
]


@pytest.mark.parametrize("sort", ["name", "age"])
def test_the_table_is_render_tables(sort: str) -> None:
    for seed in range(4):
        rng = random.Random(seed)
        facts = _facts(rng)
        names = [f[0] for f in facts]
        for specs in FILTERS:
            filters = parse_filters("volumes", specs)
            for dangling in (set(), set(names), set(rng.sample(names, len(names) // 3)) | {"not-listed"}):
                asked: list[int] = []

                def unreferenced(dangling: set[str] = dangling, asked: list[int] = asked) -> list[str]:
                    asked.append(1)
                    return sorted(dangling)

                got = volume_table(facts, unreferenced, filters, sort, NOW)
                want = render("volumes", finish_volume_rows(facts, dangling, filters, sort, NOW))
                assert got == want, (seed, specs, sort, dangling)
                assert asked == [1], "the engine's answer is waited for once"


def test_an_empty_listing_is_the_header_alone() -> None:
    got = volume_table([], lambda: [], [], "name", NOW)
    assert got == render("volumes", []) == "VOLUME  KIND  STATUS  SIZE  PLACEMENT"


def test_the_status_column_is_as_wide_as_its_widest_cell() -> None:
    facts = [("v1", False, {}, "default", "", None), ("v2", True, {}, "default", "", None)]
    used = volume_table(facts, lambda: [], [], "name", NOW).splitlines()
    orphaned = volume_table(facts, lambda: ["v2"], [], "name", NOW).splitlines()
    assert used[0] == "VOLUME  KIND       STATUS  SIZE  PLACEMENT"
    assert used[2] == "v2      anonymous  used       ?  default"
    assert orphaned[0] == "VOLUME  KIND       STATUS    SIZE  PLACEMENT"
    assert orphaned[2] == "v2      anonymous  orphaned     ?  default"
