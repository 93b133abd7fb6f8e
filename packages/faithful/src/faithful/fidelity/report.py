"""An HTML report with PNG charts for a :class:`~faithful.fidelity.harness.Comparison`.

The charts answer the questions a person asks before reading numbers: do the decoders' outputs
have the model's lengths (length histograms), its word/character statistics (rank-frequency),
and which decoders are faithful at all (fidelity by decoder). Needs matplotlib
(``pip install 'faithful[report]'``); everything else in the harness does not.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from faithful.errors import FaithfulError
from faithful.fidelity.harness import Comparison

__all__ = ["ReportError", "write_report"]

_MODEL_COLOR = "#222222"


class ReportError(FaithfulError):
    """The report could not be written (matplotlib missing, directory not writable)."""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ReportError(
            "the HTML report's charts need matplotlib; install it with `pip install 'faithful[report]'`"
        ) from None
    return plt


def _colors(n: int) -> list[str]:
    palette = [
        "#1f77b4",
        "#ff7f0e",
        "#2ca02c",
        "#d62728",
        "#9467bd",
        "#8c564b",
        "#e377c2",
        "#17becf",
        "#bcbd22",
    ]
    return [palette[i % len(palette)] for i in range(n)]


def _length_chart(plt: Any, c: Comparison, path: Path) -> None:
    labels = list(c.results)
    cols = min(3, len(labels))
    rows = math.ceil(len(labels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.9 * rows), squeeze=False, sharex=True)
    model_hist = next(iter(c.results.values())).model_length_hist
    xs = list(range(c.max_new_tokens + 1))
    for ax, label, color in zip(axes.flat, labels, _colors(len(labels)), strict=False):
        hist = c.results[label].length_hist
        ax.bar(xs, [hist.get(x, 0.0) for x in xs], color=color, alpha=0.75, width=1.0, label=label)
        ax.step(
            xs, [model_hist.get(x, 0.0) for x in xs], where="mid", color=_MODEL_COLOR, lw=1.5, label="model"
        )
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("length (tokens, EOS not counted)", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.legend(fontsize=7, frameon=False)
    for ax in list(axes.flat)[len(labels) :]:
        ax.axis("off")
    fig.suptitle("Output lengths: decoder (bars) against the model (line)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _rank_chart(plt: Any, c: Comparison, path: Path) -> None:
    fig, (ax_tok, ax_seq) = plt.subplots(1, 2, figsize=(10.5, 3.8))
    first = next(iter(c.results.values()))
    for ax, attr, model_attr, title in (
        (ax_tok, "token_rank_freq", "model_token_rank_freq", "tokens"),
        (ax_seq, "rank_freq", "model_rank_freq", "whole outputs"),
    ):
        model = getattr(first, model_attr)
        if model:
            ax.loglog(range(1, len(model) + 1), model, color=_MODEL_COLOR, lw=2.2, label="model")
        for (label, f), color in zip(c.results.items(), _colors(len(c.results)), strict=True):
            ys = getattr(f, attr)
            if ys:
                ax.loglog(
                    range(1, len(ys) + 1),
                    ys,
                    color=color,
                    lw=1.2,
                    marker="." if len(ys) < 4 else None,
                    label=label,
                )
        ax.set_title(f"Rank-frequency of {title}", fontsize=10)
        ax.set_xlabel("rank", fontsize=8)
        ax.set_ylabel("frequency", fontsize=8)
        ax.tick_params(labelsize=8)
    ax_tok.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fidelity_chart(plt: Any, c: Comparison, path: Path) -> None:
    labels = list(c.results)
    colors = _colors(len(labels))
    fig, (ax_fit, ax_div) = plt.subplots(1, 2, figsize=(10.5, 3.8))
    xs = list(range(len(labels)))
    if c.mode == "exact":
        tv = [c.results[k].sequence["tv"] for k in labels]
        q95 = [c.results[k].sequence["tv_null_q95"] for k in labels]
        ax_fit.bar(xs, tv, color=colors)
        ax_fit.plot(xs, q95, color=_MODEL_COLOR, ls="--", marker="_", ms=20, label="exact sampling, 95th pct")
        ax_fit.set_ylabel("total variation to the model", fontsize=8)
        ax_fit.set_title("Distance to the model's sequence distribution (lower is better)", fontsize=10)
        ax_fit.legend(fontsize=7, loc="lower left", framealpha=0.9)
    else:
        gaps, lo, hi = [], [], []
        for k in labels:
            s = c.results[k].surprisal
            g = 0.0 if s is None else s.gap
            gaps.append(g)
            lo.append(0.0 if s is None else g - s.ci_low)
            hi.append(0.0 if s is None else s.ci_high - g)
        ax_fit.bar(xs, gaps, color=colors, yerr=[lo, hi], capsize=4)
        ax_fit.axhline(0.0, color=_MODEL_COLOR, lw=1.2)
        ax_fit.set_ylabel("surprisal - entropy (nats/token)", fontsize=8)
        ax_fit.set_title("Surprisal gap with 95% CI (0 = exact sampling)", fontsize=10)
    d2 = [c.results[k].diversity["distinct_2"] for k in labels]
    model_d2 = next(iter(c.results.values())).diversity["model_distinct_2"]
    ax_div.bar(xs, d2, color=colors)
    ax_div.axhline(model_d2, color=_MODEL_COLOR, ls="--", lw=1.5, label="model (exact samples)")
    ax_div.set_title("distinct-2 (unique bigrams / bigrams)", fontsize=10)
    ax_div.legend(fontsize=7, frameon=False)
    for ax in (ax_fit, ax_div):
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, rotation=25, ha="right", fontsize=8)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if math.isinf(x) or math.isnan(x):
            return str(x)
        return f"{x:.3g}" if abs(x) < 1e-3 and x != 0 else f"{x:.3f}"
    return html.escape(str(x))


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
table{border-collapse:collapse;margin:1em 0;font-size:14px}th,td{padding:4px 10px;border-bottom:1px solid #ddd;
text-align:right}th:first-child,td:first-child{text-align:left}.no{color:#b00020;font-weight:600}.yes{color:#1b7f3b}
img{max-width:100%;margin:1em 0;border:1px solid #eee}code,pre{background:#f6f6f6;padding:2px 4px}
pre{padding:8px;white-space:pre-wrap}.muted{color:#666;font-size:13px}
"""


def _table_html(c: Comparison) -> str:
    exact = c.mode == "exact"
    head = ["decoder"]
    if exact:
        head += ["TV", "TV of exact sampling (q95)", "p (exact samples?)", "KL(dec||model)"]
    head += [
        "surprisal gap",
        "95% CI",
        "distinct-2",
        "model distinct-2",
        "mean length",
        "model mean length",
        "faithful?",
    ]
    rows = []
    for label, f in c.results.items():
        s = f.surprisal
        cells = [html.escape(label)]
        if exact:
            cells += [
                _fmt(f.sequence["tv"]),
                _fmt(f.sequence["tv_null_q95"]),
                "&lt;1e-300" if f.sequence["pvalue"] == 0.0 else _fmt(f.sequence["pvalue"]),
                _fmt(f.sequence["kl_decoder_model"]),
            ]
        cells += [
            _fmt(None if s is None else s.gap),
            "-" if s is None else f"[{_fmt(s.ci_low)}, {_fmt(s.ci_high)}]",
            _fmt(f.diversity["distinct_2"]),
            _fmt(f.diversity["model_distinct_2"]),
            _fmt(f.lengths["mean"]),
            _fmt(f.lengths["model_mean"]),
            '<span class="yes">yes</span>' if f.consistent else '<span class="no">no</span>',
        ]
        rows.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    return (
        "<table><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + "</tr>"
        + "".join(rows)
        + "</table>"
    )


def write_report(comparison: Comparison, directory: str | Path) -> Path:
    """Write ``index.html``, three PNG charts and ``comparison.json`` into ``directory``.

    Parameters: ``comparison`` from :func:`~faithful.fidelity.harness.compare_decoders`;
    ``directory`` is created when missing.

    Returns: the path of ``index.html``.

    Raises: ReportError when matplotlib is missing or the directory cannot be written.
    """
    plt = _pyplot()
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
        _fidelity_chart(plt, comparison, out / "fidelity.png")
        _length_chart(plt, comparison, out / "lengths.png")
        _rank_chart(plt, comparison, out / "rank_frequency.png")
        (out / "comparison.json").write_text(json.dumps(comparison.to_dict(), indent=2), encoding="utf-8")
    except OSError as exc:
        raise ReportError(
            f"cannot write the report into {str(out)!r}: {exc}; choose a writable directory"
        ) from None
    c = comparison
    examples = "".join(
        f"<h3>{html.escape(label)}</h3><pre>" + "\n".join(html.escape(repr(t)) for t in texts) + "</pre>"
        for label, texts in c.examples.items()
    )
    if c.mode == "exact":
        how = (
            "The model is small enough to enumerate: each decoder's outputs are compared with the exact "
            "distribution over whole outputs. TV is the total variation distance; exact sampling with the same "
            "number of outputs stays below the listed 95th percentile in 95% of runs, so a decoder far above it "
            "does not reproduce the model. The p-value tests exactly that (G-tests over all outputs and over the "
            "likely ones, and the surprisal check, Bonferroni-combined)."
        )
    else:
        how = (
            "The model is too large to enumerate, so each decoder is checked by the per-step surprisal test: for "
            "exact samples the mean surprisal of the chosen tokens equals the model's mean entropy, so the gap is "
            "0 within its confidence interval. A negative gap means the decoder picks likelier tokens than the "
            "model would (greedy, beam, top-p); a positive one, less likely ones. One mean can hide a mixture "
            "(sharp outputs and flat ones whose gaps cancel), so the verdict also tests the spread of per-token "
            "surprisal against the model's varentropy, the dispersion of whole outputs and the gap along "
            "positions (Bonferroni-combined). It cannot see changes that keep all four means, such as two equally "
            "likely tokens swapped. The model columns come from exact samples of the model."
        )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>faithful: fidelity report</title>
<style>{_CSS}</style></head><body>
<h1>Does the decoder reproduce the model's distribution?</h1>
<p>Model <code>{html.escape(c.model)}</code>; {c.n} outputs per decoder, at most {c.max_new_tokens} new tokens,
seed {c.seed}. <span class="muted">{html.escape(c.note)}</span></p>
<img src="fidelity.png" alt="fidelity by decoder">
{_table_html(c)}
<p>{how}</p>
<h2>Lengths</h2>
<p>The model's line is the length distribution its EOS probabilities imply; a faithful decoder's bars follow it.</p>
<img src="lengths.png" alt="length histograms">
<h2>Rank-frequency</h2>
<p>Token and whole-output frequencies by rank (log-log). Decoders that collapse onto a few outputs fall off the
model's curve.</p>
<img src="rank_frequency.png" alt="rank-frequency">
<h2>What the decoders wrote</h2>
<p class="muted">Up to five distinct outputs of each decoder, in the order they came.</p>
{examples}
<p class="muted">All numbers: <a href="comparison.json">comparison.json</a>. Made by faithful.</p>
</body></html>
"""
    index = out / "index.html"
    try:
        index.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot write {str(index)!r}: {exc}; choose a writable directory") from None
    return index.resolve()
