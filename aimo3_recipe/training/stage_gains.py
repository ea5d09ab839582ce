"""What each stage of `--stage full` gained, measured the only way small held-out sets allow:
paired, on the same problems as the model before it (evaluation/paired.py).

Inputs are the comparison's `samples.jsonl` records (one evaluation per model, same
benchmark). Per problem, a model scores 0/1 greedy and the majority-vote score of its
samples (1/t for a t-way tie: the SC@N column). Gains are reported per part of the held-out
set ("skills": data/heldout.py; "stories (tuning)" and "stories (locked)":
data/heldout_stories.py) and over all of it, for each stage against the one before and for
the final model against the base model. Pure functions; the report (pipeline_report.py)
prints their rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from aimo3_recipe.evaluation.metrics import majority_score
from aimo3_recipe.evaluation.paired import PairedGain, format_gain, paired_gain

# (after, before): each stage against its start, then the whole recipe
COMPARISONS = (("cot", "base"), ("tir", "cot"), ("rl", "tir"), ("rl", "base"))
METRICS = ("greedy", "sc")


def problem_scores(records: Iterable[dict]) -> dict[str, dict[str, float]]:
    """{"greedy": {problem_id: 0/1}, "sc": {problem_id: majority score}} from one
    evaluation's samples.jsonl records (the header line, without "kind", is skipped)."""
    greedy: dict[str, float] = {}
    sampled: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        if rec.get("kind") == "greedy":
            greedy[rec["problem_id"]] = float(bool(rec["correct"]))
        elif rec.get("kind") == "sampled":
            sampled[rec["problem_id"]].append(rec)
    sc = {pid: majority_score([r.get("answer_key") for r in recs],
                              [bool(r["correct"]) for r in recs])
          for pid, recs in sampled.items()}
    return {"greedy": greedy, "sc": sc}


@dataclass(frozen=True)
class GainRow:
    after: str  # model name (cot, tir, rl)
    before: str  # the model it is compared with
    part: str  # "all" or a held-out part
    metric: str  # greedy | sc
    gain: PairedGain  # the paired comparison


def stage_gains(scores: Mapping[str, Mapping[str, Mapping[str, float]]],
                parts: Mapping[str, str], *, comparisons: Sequence[tuple[str, str]] = COMPARISONS,
                seed: int = 0) -> list[GainRow]:
    """Paired gains for every comparison whose two models were evaluated, per metric, over
    all problems and per part. `scores[model][metric][problem_id]`; `parts[problem_id]`.
    Only problems both models scored are compared (a metric missing for one model, e.g. no
    samples, is skipped)."""
    names = ["all"] + sorted(set(parts.values()))
    rows = []
    for after, before in comparisons:
        if after not in scores or before not in scores:
            continue
        for metric in METRICS:
            a, b = scores[after].get(metric) or {}, scores[before].get(metric) or {}
            common = [pid for pid in b if pid in a]
            if not common:
                continue
            for part in names:
                ids = [pid for pid in common if part == "all" or parts.get(pid) == part]
                if ids:
                    rows.append(GainRow(after, before, part, metric, paired_gain(
                        [b[i] for i in ids], [a[i] for i in ids], seed=seed)))
    return rows


def part_accuracy(scores: Mapping[str, Mapping[str, Mapping[str, float]]],
                  parts: Mapping[str, str], metric: str = "greedy"
                  ) -> dict[str, dict[str, tuple[float, int]]]:
    """{model: {part: (mean score, n)}} over each held-out part ("all" included)."""
    out: dict[str, dict[str, tuple[float, int]]] = {}
    for model, by_metric in scores.items():
        per = by_metric.get(metric) or {}
        groups: dict[str, list[float]] = defaultdict(list)
        for pid, x in per.items():
            groups["all"].append(x)
            if pid in parts:
                groups[parts[pid]].append(x)
        out[model] = {part: (sum(xs) / len(xs), len(xs)) for part, xs in groups.items()}
    return out


def gains_markdown(rows: Sequence[GainRow], labels: Mapping[str, str], sc: int) -> list[str]:
    """The report's gains table: one line per (comparison, part), greedy and SC@N side by side
    (the SC@N column only when samples were drawn)."""
    if not rows:
        return []
    metrics = [m for m in METRICS if any(r.metric == m for r in rows)]
    title = {"greedy": "greedy", "sc": f"SC@{sc}"}
    cells: dict[tuple[str, str, str], dict[str, PairedGain]] = defaultdict(dict)
    for r in rows:
        cells[(r.after, r.before, r.part)][r.metric] = r.gain
    out = ["| stage | against | held-out part | n | "
           + " | ".join(f"{title[m]}: gain [95% interval]" for m in metrics) + " |",
           "|---|---|---|---|" + "---|" * len(metrics)]
    for (after, before, part), by_metric in cells.items():
        n = next(iter(by_metric.values())).n
        out.append(f"| {labels.get(after, after)} | {labels.get(before, before)} | {part} | {n} | "
                   + " | ".join(format_gain(by_metric[m]) if m in by_metric else "-"
                                for m in metrics) + " |")
    return out


def unproven_stages(rows: Sequence[GainRow]) -> list[str]:
    """Stages (against their start, over all problems) whose gain no metric shows."""
    shown: dict[str, bool] = {}
    for r in rows:
        if r.part == "all" and (r.after, r.before) in COMPARISONS[:3]:
            shown[r.after] = shown.get(r.after, False) or r.gain.verdict == "gain"
    return [stage for stage, ok in shown.items() if not ok]
