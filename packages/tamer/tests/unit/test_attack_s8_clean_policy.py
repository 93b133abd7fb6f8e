"""Session 8: policy values that parsed but meant nothing (a label spec with no key protected nothing)."""

from __future__ import annotations

import pytest
from tamer.policy import PolicyError, load_policy


@pytest.mark.parametrize(
    ("section", "line"),
    [
        ("[protect]", 'labels = ["=keep"]'),
        ("[protect]", 'labels = ["keep", " =x"]'),
        ("[containers]", 'labels = ["=ci"]'),
        ("[[volumes.named]]", 'labels = ["=old"]'),
    ],
)
def test_a_label_with_no_key_is_refused_line_precisely(section: str, line: str) -> None:
    with pytest.raises(PolicyError) as exc:
        load_policy(f"version = 1\n{section}\n{line}\n", "p.toml")
    assert "p.toml:3" in str(exc.value) and "KEY=VALUE" in str(exc.value), str(exc.value)


def test_label_specs_with_a_key_still_parse() -> None:
    policy = load_policy('version = 1\n[protect]\nlabels = ["keep", "tier=prod", "x="]\n', "p.toml")
    assert policy.protect_labels == ("keep", "tier=prod", "x=")
