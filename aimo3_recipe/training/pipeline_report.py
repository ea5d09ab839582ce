"""The `--stage full` comparison a person reads at a glance: a table (terminal and
`report.md`), `pipeline_results.json`, and three PNG plots:

- `plots/sft_loss.png`: training loss over steps, one line per SFT stage;
- `plots/rl.png`: mean reward per RL step and held-out accuracy at the RL evaluations;
- `plots/accuracy.png`: held-out accuracy of each model (greedy and SC@N) with 95% intervals.

Below the table, each stage's gain over the model it started from, paired on the same
problems (stage_gains.py), per held-out part (the locked story problems on their own rows),
and which stages showed no gain.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ORDER = ("base", "cot", "tir", "rl")
LABELS = {"base": "base model", "cot": "after SFT-CoT", "tir": "after SFT-TIR", "rl": "after RL"}


def headline(result: dict[str, Any], sc: int) -> dict[str, Any]:
    """Greedy and SC@N accuracy with intervals from one evaluation's results.json."""
    m = result["metrics"]
    row: dict[str, Any] = {"n": m["num_problems"], "mode": result["config"].get("mode")}
    if "greedy" in m:
        row["greedy"], row["greedy_ci"] = m["greedy"]["accuracy"], list(m["greedy"]["ci"])
        row["boxed_rate"] = m["greedy"].get("boxed_rate")
    s = m.get("sampled")
    if s:
        n = s["num_samples"]
        row[f"sc@{n}"], row[f"sc@{n}_ci"] = s[f"maj@{n}"], list(s.get(f"maj@{n}_ci", [0, 1]))
    return row


def _fmt(x: float | None, ci: list[float] | None) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else f"{100 * x:.1f}"


def load_scores(out: Path, names) -> dict[str, dict[str, dict[str, float]]]:
    """Per-problem scores of each evaluated model (stage_gains.problem_scores)."""
    from aimo3_recipe.training.stage_gains import problem_scores

    scores = {}
    for name in names:
        path = out / "eval" / name / "samples.jsonl"
        if path.is_file():
            scores[name] = problem_scores(json.loads(line) for line in
                                          path.read_text().splitlines() if line.strip())
    return scores


def _part_lines(acc: dict[str, dict[str, tuple[float, int]]]) -> list[str]:
    from aimo3_recipe.evaluation.metrics import wilson_interval

    names = [n for n in ORDER if n in acc]
    cols = sorted({p for n in names for p in acc[n] if p != "all"})
    if not cols:
        return []
    lines = ["## Greedy accuracy by held-out part", "",
             "| model | " + " | ".join(f"{c} (n={acc[names[0]][c][1]})" for c in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for n in names:
        cells = []
        for c in cols:
            x, k = acc[n].get(c, (None, 0))
            cells.append("-" if x is None else _fmt(x, list(wilson_interval(x * k, k))))
        lines.append(f"| {LABELS[n]} | " + " | ".join(cells) + " |")
    return lines + [""]


def write_pipeline_report(out: Path, config, record: dict[str, Any],
                          results: dict[str, dict[str, Any]], eval_seconds: float, *,
                          parts: dict[str, str] | None = None) -> dict:
    """Table, gains, plots and pipeline_results.json. `parts`: problem id -> held-out part."""
    from aimo3_recipe.evaluation.paired import format_gain
    from aimo3_recipe.training.stage_gains import (
        gains_markdown,
        part_accuracy,
        stage_gains,
        unproven_stages,
    )

    sc = config.pipeline.sc
    rows = {name: headline(res, sc) for name, res in results.items()}
    stages = record.get("stages", {})
    scores = load_scores(out, results)
    gains = stage_gains(scores, parts or {}, seed=config.sft.seed)
    unproven = unproven_stages(gains)
    by_part = part_accuracy(scores, parts or {})
    summary = {"base_model": record.get("base_model"), "held_out_problems": rows["base"]["n"],
               "models": rows, "stage_seconds": {s: stages[s]["seconds"] for s in stages},
               "eval_seconds": eval_seconds,
               "gains": [{"stage": g.after, "against": g.before, "part": g.part,
                          "metric": g.metric, "n": g.gain.n, "gain": g.gain.gain,
                          "ci": list(g.gain.ci), "worse": g.gain.worse,
                          "better": g.gain.better, "p_value": g.gain.p_value,
                          "verdict": g.gain.verdict} for g in gains],
               "stages_without_shown_gain": unproven,
               "greedy_by_part": by_part}
    (out / "pipeline_results.json").write_text(json.dumps(summary, indent=2) + "\n")
    plots = _plots(out, rows, sc)
    sc_head = f"SC@{sc}" if sc > 0 else "SC (not run)"
    lines = ["# aimo3-recipe: the whole recipe, measured", "",
             (f"Base model `{record.get('base_model')}`; held-out problems phrased unlike the "
             f"training generator's templates (data/heldout.py; story problems: "
             f"data/heldout_stories.py), n = {rows['base']['n']}. "
             f"Accuracy in % with 95% intervals (greedy: Wilson; SC@N: bootstrap)."), "",
             f"| model | prompt | greedy | {sc_head} | boxed (greedy) | stage wall time |",
             "|---|---|---|---|---|---|"]
    for name in ORDER:
        if name not in rows:
            continue
        r = rows[name]
        secs = stages.get(name, {}).get("seconds")
        boxed = r.get("boxed_rate")
        lines.append(f"| {LABELS[name]} | {r['mode']} | {_fmt(r.get('greedy'), r.get('greedy_ci'))}"
                     f" | {_fmt(r.get(f'sc@{sc}'), r.get(f'sc@{sc}_ci'))} | "
                     f"{'-' if boxed is None else f'{100 * boxed:.0f}%'} | "
                     f"{'-' if secs is None else f'{secs / 60:.1f} min'} |")
    lines += ["", f"Evaluation of all models: {eval_seconds / 60:.1f} min.", ""]
    if getattr(config, "cot_max_samples", 0) > 0:
        lines += [(f"SFT-CoT was kept short on purpose ({config.pipeline.cot_max_samples} examples, "
                  "`cot_max_samples`): in this preset it has not shown a gain."), ""]
    lines += _part_lines(by_part)
    if gains:
        lines += ["## What each stage gained, paired on the same problems", "",
                  ("Gain in points with a 95% paired-bootstrap interval; worse / better count "
                   "the problems that only the earlier / only the later model solved (McNemar's "
                   "exact test on those). The locked part of the story problems is never "
                   "looked at when choosing a preset's settings."), "",
                  *gains_markdown(gains, LABELS, sc), ""]
        if unproven:
            lines += ["No gain shown (all problems, any metric) by: "
                      + ", ".join(LABELS[s] for s in unproven)
                      + ". On this many problems such a stage does not earn its minutes here.",
                      ""]
    lines += [f"![{p.stem}](plots/{p.name})" for p in plots]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    _print_table(rows, stages, sc)
    _print_gains(gains, format_gain)
    return summary


def _print_gains(gains, format_gain) -> None:
    from aimo3_recipe.utils.notice import notice

    for g in gains:
        if g.metric == "greedy" and g.part in ("all", "stories (locked)"):
            notice(f"[gain] {LABELS[g.after]} vs {LABELS[g.before]}, {g.part} (n={g.gain.n}, "
                   f"greedy): {format_gain(g.gain)}")


def _print_table(rows, stages, sc) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="held-out accuracy after each stage (%, 95% interval)")
    for col in ("model", "prompt", "greedy", f"SC@{sc}", "stage time"):
        table.add_column(col)
    for name in ORDER:
        if name in rows:
            r = rows[name]
            secs = stages.get(name, {}).get("seconds")
            table.add_row(LABELS[name], str(r["mode"]), _fmt(r.get("greedy"), r.get("greedy_ci")),
                          _fmt(r.get(f"sc@{sc}"), r.get(f"sc@{sc}_ci")),
                          "-" if secs is None else f"{secs / 60:.1f} min")
    Console(stderr=True).print(table)


def _metrics(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _plots(out: Path, rows: dict[str, dict[str, Any]], sc: int) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = out / "plots"
    folder.mkdir(exist_ok=True)
    made = []
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for stage in ("cot", "tir"):
        pts = [(r["step"], r["train/loss"]) for r in _metrics(out / stage / "metrics.jsonl")
               if "train/loss" in r]
        if pts:
            ax.plot(*zip(*pts), marker=".", label=f"SFT-{stage.upper()}")
    ax.set(xlabel="optimizer step", ylabel="training loss", title="SFT training loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "sft_loss.png", dpi=110)
    plt.close(fig)
    made.append(folder / "sft_loss.png")

    rl = _metrics(out / "rl" / "metrics.jsonl")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    pts = [(r["step"], r["reward/mean"]) for r in rl if "reward/mean" in r]
    if pts:
        ax.plot(*zip(*pts), marker=".", color="tab:blue", label="mean reward (train rollouts)")
    ax.set(xlabel="RL step", ylabel="mean reward", title="RL: reward and held-out accuracy")
    ax2 = ax.twinx()
    ev = [(r["step"], 100 * r["eval/accuracy"]) for r in rl if "eval/accuracy" in r]
    if ev:
        ax2.plot(*zip(*ev), marker="o", color="tab:red", label="held-out accuracy (greedy)")
    ax2.set_ylabel("held-out accuracy (%)")
    fig.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(folder / "rl.png", dpi=110)
    plt.close(fig)
    made.append(folder / "rl.png")

    names = [n for n in ORDER if n in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    width = 0.38
    for j, (key, label) in enumerate((("greedy", "greedy"), (f"sc@{sc}", f"SC@{sc}"))):
        xs, ys, err = [], [], [[], []]
        for i, n in enumerate(names):
            if rows[n].get(key) is None:
                continue
            v, ci = 100 * rows[n][key], rows[n].get(f"{key}_ci") or [rows[n][key]] * 2
            xs.append(i + (j - 0.5) * width)
            ys.append(v)
            err[0].append(v - 100 * ci[0])
            err[1].append(100 * ci[1] - v)
        ax.bar(xs, ys, width, yerr=err, capsize=3, label=label)
    ax.set_xticks(range(len(names)), [LABELS[n] for n in names], fontsize=8)
    ax.set(ylabel="held-out accuracy (%)", title="Accuracy after each stage (95% intervals)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "accuracy.png", dpi=110)
    plt.close(fig)
    made.append(folder / "accuracy.png")
    return made
