"""Rendering of faithful's command results as human text (the CLI prints these; --json prints the data)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        if x != 0 and (abs(x) < 10 ** (-digits) or abs(x) >= 10**6):
            return f"{x:.{max(1, digits - 1)}e}"
        return f"{x:.{digits}f}"
    return str(x)


def _fmt_p(p: Any) -> str:
    # a p-value that underflowed is "smaller than anything we can compute", not zero
    return "<1e-300" if isinstance(p, float) and p == 0.0 else _fmt(p)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def render_coin(data: dict[str, Any]) -> str:
    """Human text of a coin experiment's data."""
    labels, counts, expected = data["labels"], data["counts"], data["expected"]
    p = ", ".join(f"{x:g}" for x in data["p"])
    lines = [
        f"{data['n']} tosses of a coin the model puts at [{p}], decoded with {data['decoder']} (seed {data['seed']}):",
        "",
        f"  {data['tosses']}",
        "",
        "  "
        + ", ".join(f"{lab}: {c}" for lab, c in zip(labels, counts, strict=True))
        + "   (the model expects "
        + ", ".join(f"{e:g}" for e in expected)
        + ")",
    ]
    if len(labels) == 2:
        lines.append(
            f"  P(exactly {counts[0]} {labels[0]} in {data['n']} tosses) = {_fmt(data['probability_of_counts'], 4)}"
            "   (binomial, exact)"
        )
    else:
        lines.append(f"  P(these counts) = {_fmt(data['probability_of_counts'], 4)}   (multinomial, exact)")
    verdict = (
        "not what the model's distribution produces"
        if data["p_value"] < 0.01
        else "consistent with the model"
    )
    lines.append(f"  exact two-sided test: p = {_fmt_p(data['p_value'])}  -> {verdict}")
    if data.get("decoder_q") is not None:
        q = ", ".join(f"{x:.3g}" for x in data["decoder_q"])
        lines.append(f"  the decoder drew every toss from q = [{q}]; the model says [{p}]")
    return "\n".join(lines)


def render_comparison(data: dict[str, Any]) -> str:
    """Human text of a comparison's data: a header and one row per decoder."""
    head = (
        f"faithful compare: {data['model']}, {data['n']} outputs per decoder, "
        f"at most {data['max_new_tokens']} new tokens, seed {data['seed']}"
    )
    rows = []
    exact = data["mode"] == "exact"
    for r in data["table"]:
        gap = "-" if r["surprisal_gap"] is None else _fmt(r["surprisal_gap"])
        if r["gap_ci"] is not None and not exact:
            gap += f" [{_fmt(r['gap_ci'][0])}, {_fmt(r['gap_ci'][1])}]"
        d = data["decoders"][r["decoder"]]
        row = [r["decoder"]]
        if exact:
            row += [f"{_fmt(r['tv'])} ({_fmt(r['tv_null_q95'])})", _fmt_p(d["sequence"]["pvalue"])]
        row += [
            gap,
            f"{_fmt(r['distinct_2'])} ({_fmt(r['model_distinct_2'])})",
            f"{_fmt(r['mean_length'], 1)} ({_fmt(r['model_mean_length'], 1)})",
            "yes" if r["consistent"] else "NO",
        ]
        rows.append(row)
    headers = ["decoder"]
    if exact:
        headers += ["TV (exact-sampling q95)", "p"]
    headers += [
        "surprisal gap" + ("" if exact else " [95% CI]"),
        "distinct-2 (model)",
        "mean length (model)",
        "faithful?",
    ]
    legend = (
        "TV: total variation between the decoder's outputs and the exact distribution; exact sampling at this "
        "N stays below the q95 in 95% of runs.\np: that the outputs are exact samples (G-tests on all and on the "
        "likely outputs, surprisal check; Bonferroni); faithful? = p >= 0.01."
        if exact
        else "surprisal gap: mean -log p(token) minus the model's mean entropy, nats/token; 0 for exact samples;"
        " faithful? = its test gives p >= 0.01."
    )
    return "\n".join(
        [
            head,
            f"mode: {data['mode']} - {data['note']}",
            "",
            _table(headers, rows),
            "",
            legend,
            "model columns: what exact samples of the model give (distinct-2 at the same N; length implied by EOS).",
        ]
    )


def render_generation(data: dict[str, Any]) -> str:
    """Human text of generated continuations (an empty one is said, not printed as a blank line)."""
    texts = [t if t else "(empty continuation: the model ended the sequence at once)" for t in data["texts"]]
    if len(texts) == 1:
        return str(texts[0])
    return "\n".join(f"[{i}] {t}" for i, t in enumerate(texts))
