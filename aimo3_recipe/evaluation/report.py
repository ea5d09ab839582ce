"""Turn `results.json` into what a person reads: `report.md` (a Results table in the recipe's
shape, Greedy / SC@N / pass@N / TIR, then intervals, diagnostics and per-subject/level
breakdowns) and `accuracy_vs_samples.png` (pass@k and maj@k against k).

`python -m aimo3_recipe.evaluation.report RUN_DIR [RUN_DIR ...] [-o report.md]` merges several
runs (e.g. a CoT run with `--strategy majority_vote` and a TIR run) into one table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

PLOT_NAME = "accuracy_vs_samples.png"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _ci(ci: Any) -> str:
    return f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else ""


def _pct_ci(x: float | None, ci: Any) -> str:
    if x is None:
        return "–"
    return f"{100 * x:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if ci else _pct(x)


def table_row(results: dict) -> dict[str, str]:
    """One row of the Results table: Greedy, SC@N (CoT majority), pass@N, TIR (SC-TIR@N)."""
    m = results["metrics"]
    s = m.get("sampled")
    n = s["num_samples"] if s else None
    tir = results["strategy"] == "tir"
    return {
        "Model": str(results["model"]),
        "Benchmark": results["benchmark"]["name"],
        "Problems": str(m["num_problems"]),
        "Greedy": _pct(m["greedy"]["accuracy"]) if "greedy" in m else "–",
        "SC@N": f"{_pct(s[f'maj@{n}'])} (N={n})" if s and not tir else "–",
        "pass@N": f"{_pct(s[f'pass@{n}'])} (N={n})" if s else "–",
        "TIR": (f"{_pct(s[f'maj@{n}'])} (N={n})" if n and n > 1 else _pct(s["pass@1"]))
        if s and tir else "–",
    }


def results_table(runs: list[dict]) -> str:
    rows = [table_row(r) for r in runs]
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def headline(results: dict) -> str:
    """One line for the terminal."""
    m = results["metrics"]
    parts = [f"{results['benchmark']['name']} ({m['num_problems']} problems)"]
    if "greedy" in m:
        parts.append(f"greedy {_pct_ci(m['greedy']['accuracy'], m['greedy']['ci'])}")
    if "sampled" in m:
        s, n = m["sampled"], m["sampled"]["num_samples"]
        parts.append(f"pass@1 {_pct(s['pass@1'])}, maj@{n} {_pct(s[f'maj@{n}'])}, "
                     f"pass@{n} {_pct(s[f'pass@{n}'])}")
    if "strategy" in m:
        parts.append(f"{results['strategy']} {_pct_ci(m['strategy']['accuracy'], m['strategy']['ci'])}")
    return " | ".join(parts) + " (%)"


def _diagnostics(m: dict) -> list[str]:
    keys = [("boxed_rate", "boxed rate", True), ("no_answer_rate", "no answer", True),
            ("truncation_rate", "truncated (cut by a limit)", True),
            ("avg_completion_tokens", "avg completion tokens", False),
            ("grader_timeouts", "grader timeouts", False),
            ("grader_too_complex", "grader refused (too complex)", False),
            ("grader_errors", "grader errors", False),
            ("tir/code_calls_per_completion", "code calls / completion", False),
            ("tir/error_rate", "code error rate", True), ("tir/code_timeouts", "code timeouts", False)]
    passes = [(name, m[name]) for name in ("greedy", "sampled") if name in m]
    if not passes:
        return []
    lines = ["| | " + " | ".join(name for name, _ in passes) + " |",
             "|---|" + "---|" * len(passes)]
    for key, label, is_rate in keys:
        if not any(key in p for _, p in passes):
            continue
        vals = [p.get(key) for _, p in passes]
        fmt = [("–" if v is None else (f"{100 * v:.1f}%" if is_rate else
                                      (f"{v:.1f}" if isinstance(v, float) else str(v))))
               for v in vals]
        lines.append(f"| {label} | " + " | ".join(fmt) + " |")
    return lines


def _breakdown(title: str, groups: dict[str, dict]) -> list[str]:
    cols = [c for c in ("greedy", "pass@1") if any(c in g for g in groups.values())]
    cols += sorted({c for g in groups.values() for c in g if c.startswith("maj@")})
    cols += ["strategy"] if any("strategy" in g for g in groups.values()) else []
    lines = [f"### By {title}", "", f"| {title} | n | " + " | ".join(cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for label, g in groups.items():
        lines.append(f"| {label} | {g['n']} | " + " | ".join(_pct(g.get(c)) for c in cols) + " |")
    return lines + [""]


def render_markdown(results: dict, plot_name: str | None = PLOT_NAME) -> str:
    m = results["metrics"]
    conf = round(100 * results["config"].get("confidence", 0.95))
    intro = (f"{results['benchmark'].get('description', '')}. Strategy `{results['strategy']}`, "
             f"max {results['benchmark']['max_tokens']} new tokens, seed "
             f"{results['config'].get('seed')}. Accuracies in %.")
    lines = [f"# Evaluation: {results['model']} on {results['benchmark']['name']}", "", intro, "",
             "## Results", "", results_table([results]), "",
             f"## Accuracy with {conf}% intervals", "",
             "| metric | accuracy | interval |", "|---|---|---|"]
    if "greedy" in m:
        lines.append(f"| greedy | {_pct(m['greedy']['accuracy'])} | "
                     f"{_ci(m['greedy']['ci'])} (Wilson) |")
    if "sampled" in m:
        s, n = m["sampled"], m["sampled"]["num_samples"]
        for key in ("pass@1", f"maj@{n}"):
            lines.append(f"| {key} | {_pct(s[key])} | "
                         f"{_ci(s[key + '_ci'])} (bootstrap) |")
        for k, v in s.get("curve", {}).items():
            if k not in ("1", str(n)):
                lines.append(f"| pass@{k} / maj@{k} | {_pct(v['pass'])} / {_pct(v['maj'])} | |")
        lines.append(f"| pass@{n} | {_pct(s[f'pass@{n}'])} | |")
    if "strategy" in m:
        lines.append(f"| {results['strategy']} (chosen answer) | {_pct(m['strategy']['accuracy'])} | "
                     f"{_ci(m['strategy']['ci'])} (Wilson) |")
    lines += ["", ("maj@k is the expected majority-vote accuracy over k-subsets of the samples, "
                   "with a tie scored 1/t; the strategy row uses the deterministic first-seen "
                   "tie-break of the solver."), ""]
    diag = _diagnostics(m)
    if diag:
        lines += ["## Format, length and tool use", ""] + diag + [""]
    g = results.get("grader")
    if g:
        lines += [(f"Grader: {sum(g.values())} verdicts; {g.get('timeout', 0)} timed out, "
                   f"{g.get('too_complex', 0)} refused as too complex, {g.get('error', 0)} "
                   "errors (each counted as wrong)."), ""]
    for field in ("subject", "level"):
        if f"by_{field}" in m:
            lines += _breakdown(field, m[f"by_{field}"])
    t = results.get("timing", {})
    tps = t.get("tokens_per_second")
    timing = (f"wall {t.get('wall_seconds', 0):.1f} s this run; "
              f"{t.get('engine_start_seconds', 0):.1f} s engine start; generation "
              f"{t.get('generation_seconds_all_runs', 0):.1f} s over all runs, "
              f"{t.get('completion_tokens', 0)} completion tokens"
              + (f" ({tps:.1f} tok/s)" if tps else "") + ".")
    lines += ["## Timing", "", timing, ""]
    r = results.get("resume", {})
    if r.get("samples_resumed"):
        lines += [(f"Resumed: {r['samples_resumed']} completions reused from an earlier run, "
                   f"{r['samples_generated']} generated now."), ""]
    if plot_name and "sampled" in m:
        lines += [f"![accuracy vs samples]({plot_name})", ""]
    return "\n".join(lines)


def plot_accuracy_vs_samples(results: dict, path: str | Path) -> Path | None:
    """pass@k and maj@k against k (log2 axis), greedy as a horizontal line."""
    m = results["metrics"]
    curve = m.get("sampled", {}).get("curve")
    if not curve:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted(int(k) for k in curve)
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    ax.plot(ks, [100 * curve[str(k)]["pass"] for k in ks], "o-", label="pass@k")
    ax.plot(ks, [100 * curve[str(k)]["maj"] for k in ks], "s-", label="maj@k")
    if "greedy" in m:
        ax.axhline(100 * m["greedy"]["accuracy"], color="grey", ls="--", label="greedy")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("samples per problem (k)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{results['model']} on {results['benchmark']['name']}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def write_report(results: dict, output_dir: str | Path) -> Path:
    """Write report.md (and the plot when there are samples) into output_dir."""
    out = Path(output_dir)
    plot = plot_accuracy_vs_samples(results, out / PLOT_NAME)
    path = out / "report.md"
    path.write_text(render_markdown(results, PLOT_NAME if plot else None))
    return path


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aimo3_recipe.evaluation.report",
                                     description="Merge evaluation runs into one Results table.")
    parser.add_argument("runs", nargs="+", help="run folders (or results.json files)")
    parser.add_argument("-o", "--output", default=None, help="write the table here too")
    args = parser.parse_args(argv)
    runs = []
    for r in args.runs:
        p = Path(r) / "results.json" if Path(r).is_dir() else Path(r)
        if not p.is_file():
            print(f"error: {p} not found (give evaluation output folders)", file=sys.stderr)
            return 2
        runs.append(json.loads(p.read_text()))
    table = results_table(runs)
    print(table)
    if args.output:
        Path(args.output).write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
