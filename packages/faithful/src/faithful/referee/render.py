"""Human text of the referee's results (the CLI prints these; ``--json`` prints the data instead)."""

from __future__ import annotations

import unicodedata
from typing import Any

__all__ = ["render_audit", "render_matrix", "render_speculative"]


def _num(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        if x != x:
            return "nan"
        if x in (float("inf"), float("-inf")):
            return "inf" if x > 0 else "-inf"
        return f"{x:.4g}"
    return str(x)


def _safe(text: str) -> str:
    """``text`` with control characters, bidi overrides and line separators shown as '?'.

    Table cells quote what a records file says (an audited record's ``id``): an ESC sequence there
    recoloured or retitled the terminal, a newline broke the table into a forged row. ``--json``
    keeps the text exactly.
    """
    if text.isprintable():
        return text
    return "".join("?" if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    rows = [[_safe(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


_MEANING = {
    "processed": "the reported logprobs are log q of the distribution the settings sample from",
    "raw": "the reported logprobs are the raw model's, not the sampled distribution's (off-policy for RL)",
    "both": "the settings do not change these tokens' probabilities: processed and raw agree",
    "neither": "the reported logprobs match neither the processed nor the raw distribution",
    "mixed": "some records report processed logprobs, others raw or neither",
    "undetermined": "the records' top-k logprobs cannot determine the processed distribution",
}


def render_audit(data: dict[str, Any], *, limit: int = 20) -> str:
    """The audit's verdict, counts, and the records that are not "processed"/"both" (at most ``limit``)."""
    s = data["summary"]
    counts = ", ".join(f"{k} {v}" for k, v in s["counts"].items() if v)
    lines = [
        f"logprob audit: {s['records']} records -> {s['verdict']}: {_MEANING[s['verdict']]}",
        f"  {counts}; largest |reported - processed| {_num(s['max_abs_off_processed'])}, "
        f"|reported - raw| {_num(s['max_abs_off_raw'])} (nats; match tolerance {s['tol']:g})",
    ]
    if s["counts"].get("raw") and s["verdict"] != "raw":
        lines.append(
            f"  {s['counts']['raw']} records report the raw model's logprob: a legitimate answer (exit 0), "
            "but not log q of the sampled distribution (off-policy for RL)"
        )
    if s["impossible_tokens"]:
        lines.append(
            f"  {s['impossible_tokens']} chosen tokens have probability 0 under the stated settings: "
            "the engine did not sample from them"
        )
    odd = [r for r in data["records"] if r["verdict"] not in ("processed", "both")]
    if odd:
        rows = [
            [
                str(r["id"] if r["id"] is not None else r["index"]),
                str(r["token"]),
                _num(r["reported"]),
                _num(r["processed"]),
                _num(r["raw"]),
                _num(r["off_processed"]),
                r["verdict"],
            ]
            for r in odd[:limit]
        ]
        lines += ["", _table(["record", "token", "reported", "processed", "raw", "off", "verdict"], rows)]
        if len(odd) > limit:
            lines.append(f"... and {len(odd) - limit} more (--json lists every record)")
    return "\n".join(lines)


def render_matrix(data: dict[str, Any]) -> str:
    """The matrix (engines x settings), a legend, and each failing cell explained."""
    settings = data["settings"]
    by = {(c["engine"], c["setting"]): c for c in data["cells"]}
    mark = {"pass": "ok", "fail": "FAIL", "n/a": "n/a", "error": "ERROR"}
    cols = [f"[{i + 1}]" for i in range(len(settings))]
    rows = [[e] + [mark[by[(e, s)]["status"]] for s in settings] for e in data["engines"]]
    lines = [
        f"conformance: {data['n']} draws per row, {len(data['cases'])} cases "
        f"({', '.join(data['cases'])}), alpha {data['alpha']:g} per engine, seed {data['seed']}",
        "",
        _table(["engine", *cols], rows),
        "",
    ]
    lines += [f"  [{i + 1}] {s}" for i, s in enumerate(settings)]
    lines += [
        "",
        "ok: same support as faithful's exact q (the canonical definition), no draw of a probability-0 token,",
        "and the draws pass a calibrated test against the canonical q and the engine's own q.",
    ]
    for e, why in data["unavailable"].items():
        lines.append(f"{e}: not available ({why})")
    bad = [c for c in data["cells"] if c["status"] in ("fail", "error")]
    if bad:
        lines += ["", "failing cells:"]
        for c in bad:
            stats = (
                f" (TV exact {_num(c['tv_exact'])}, p canonical {_num(c['p_canonical'])}, p own {_num(c['p_own'])})"
                if c["status"] == "fail"
                else ""
            )
            lines.append(f"- {c['engine']} x {c['setting']}{stats}:")
            for part in c["reason"].split("; "):
                lines.append(f"    {part}")
    return "\n".join(lines)


def render_speculative(data: dict[str, Any]) -> str:
    """Human text of a speculative check: the headline line, then the counts and the verdict."""
    s = data["stats"]
    where = f"draft {data['draft']}, target {data['target']}"
    if data.get("sampler"):
        where += f", sampler {data['sampler']}"
    if data["mode"] == "greedy":
        verdict = (
            "equals greedy decoding of the target"
            if data["matches_greedy"]
            else "DIFFERS from greedy decoding"
        )
        head = f"speculative greedy ({where}): accept {_num(s['acceptance_rate'])}, {verdict}"
    else:
        p = data["p_value"]
        head = f"speculative ({where}): accept {_num(s['acceptance_rate'])}, fidelity p={_num(p)}"
    head += f", {_num(s['target_calls_saved'])} target calls/token saved"
    lines = [
        head,
        "",
        f"  gamma {s['gamma']}, {data['n']} outputs of at most {data['max_new_tokens']} tokens, seed {data['seed']}",
        f"  tokens {s['tokens']}: {s['accepted']} accepted proposals, {s['residual']} residual draws, "
        f"{s['bonus']} bonus draws",
        f"  proposals {s['proposed']} ({s['tested']} tested); target passes {s['target_passes']} "
        f"({_num(s['tokens_per_target_pass'])} tokens per pass; ancestral sampling: 1)",
        f"  {data['note']}",
    ]
    fid = data.get("fidelity")
    if fid is not None and fid["mode"] == "exact":
        seq = fid["sequence"]
        lines.append(
            f"  TV to the target {_num(seq['tv'])} (exact sampling at this N: 95% below {_num(seq['tv_null_q95'])})"
        )
    lines.append(
        "  consistent with the target's distribution"
        if data["consistent"]
        else "  NOT consistent with the target's distribution"
    )
    return "\n".join(lines)
