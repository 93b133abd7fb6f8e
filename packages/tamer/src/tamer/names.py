"""Recognising names docker made up (`--name` not given): "adjective_surname[N]".

Docker's generator joins an adjective from a fixed list and a scientist's
surname with "_" (and appends a digit on collision). The lists change between
releases, so we match the shape and the adjective against the union of the
adjective lists of past and current releases; surnames are too many to track.
"""

from __future__ import annotations

from tamer.patterns import LazyPattern

_ADJECTIVES = frozenset(
    """
admiring adoring affectionate agitated amazing angry awesome backstabbing beautiful berserk big blissful bold
boring brave busy charming clever cocky compassionate competent condescending confident cool cranky crazy
dazzling desperate determined distracted dreamy drunk eager ecstatic elastic elated elegant eloquent epic evil
exciting fervent festive flamboyant focused friendly frosty funny furious gallant gifted gigantic gloomy goofy
grave gracious great happy hardcore heuristic high hopeful hungry infallible insane inspiring intelligent
interesting jolly jovial keen kickass kind laughing lonely loving lucid mad magical modest musing mystifying
naughty nervous nice nifty nostalgic objective optimistic peaceful pedantic pensive practical priceless prickly
quirky quizzical recursing relaxed reverent romantic sad serene sharp sick silly sleepy small stoic strange
stupefied suspicious sweet tender thirsty tiny trusting unruffled upbeat vibrant vigilant vigorous wizardly
wonderful xenodochial youthful zealous zen
""".split()
)

_GENERATED = LazyPattern(r"^([a-z]+)_([a-z]+)\d*$")


def is_generated_name(name: str) -> bool:
    """True when `name` (with or without the leading "/") looks made up by docker.

    >>> is_generated_name("/nostalgic_hopper")
    True
    >>> is_generated_name("mongo_container")
    False
    """
    match = _GENERATED.match(name.lstrip("/"))
    return match is not None and match.group(1) in _ADJECTIVES
