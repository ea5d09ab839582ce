"""`--stage full`: base model -> SFT-CoT -> SFT-TIR -> RL, then every model measured.

Each stage starts from the previous stage's model and writes `<output_dir>/<stage>/`; a stage
that finished is recorded in `<output_dir>/pipeline.json` (its model folder and wall time) and
skipped when the command is run again, and an interrupted stage resumes from its own
checkpoint. At the end the base model and each stage's model answer the same held-out
problems (data/heldout.py: the generator's skills in phrasings it never uses; with
`pipeline_story_problems`, data/heldout_stories.py's story problems in a tuning and a locked
part), greedy and SC@N, in CoT format before TIR training and in TIR format after it,
through the evaluation harness (evaluation/evaluate.py, one engine reused for all four
models). The comparison goes
to the terminal, `<output_dir>/report.md`, `results.json` and PNG plots, with each stage's
paired gain over the model it started from (stage_gains.py).

Nothing here is specific to the CPU demo: `configs/train_cpu_demo.yaml` is a set of overrides, and
the same command with a 14B model on GPUs is the real recipe.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from aimo3_recipe.config import replace_path
from aimo3_recipe.utils.notice import notice

STAGE_ORDER = ("cot", "tir", "rl")
EVAL_MODE = {"base": "cot", "cot": "cot", "tir": "tir", "rl": "tir"}  # prompt format per model


def _record_path(output_dir: str | Path) -> Path:
    return Path(output_dir) / "pipeline.json"


def load_record(output_dir: str | Path) -> dict[str, Any]:
    path = _record_path(output_dir)
    return json.loads(path.read_text()) if path.is_file() else {"stages": {}}


def _save_record(output_dir: str | Path, record: dict[str, Any]) -> None:
    path = _record_path(output_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)  # atomic: a kill never leaves half a record


def _finished(entry: dict[str, Any] | None) -> bool:
    return bool(entry) and entry.get("status") == "done" and \
        (Path(entry["model"]) / "config.json").is_file()


def run_full(config, run_stage) -> Path:
    """Run the stages not finished yet, then the evaluation; returns the final model folder.
    `run_stage(stage, config) -> Path` runs one stage (train.py's)."""
    from aimo3_recipe.training.sft_data import STAGE_DATASET_FIELDS, dataset_label, stage_dataset

    # every stage's data from the config and the user's base model, once: later stages start
    # from a folder, which must not change what they train on
    for s in STAGE_ORDER:
        config = replace_path(config, STAGE_DATASET_FIELDS[s], stage_dataset(config, s))
    for s in STAGE_ORDER:
        notice(f"[full] {s} dataset: {dataset_label(stage_dataset(config, s))}")
    out = Path(config.output_dir)
    record = load_record(out)
    record["base_model"] = config.base_model
    model = config.base_model
    t_start = time.time()
    for i, stage in enumerate(STAGE_ORDER, 1):
        entry = record["stages"].get(stage)
        if _finished(entry):
            notice(f"[full {i}/3] {stage}: finished in an earlier run "
                   f"({entry['seconds']:.0f} s) -> {entry['model']}; skipped")
            model = entry["model"]
            continue
        notice(f"[full {i}/3] {stage}: starting from {model} "
               f"({(time.time() - t_start) / 60:.1f} min so far)")
        t0 = time.time()
        staged = dataclasses.replace(config, base_model=str(model))
        for path, value in stage_overrides(config, stage).items():
            staged = replace_path(staged, path, value)
        done = run_stage(stage, staged)
        # wall time of the run that finished the stage (time before an interruption is lost)
        record["stages"][stage] = {"status": "done", "model": str(done),
                                   "seconds": time.time() - t0}
        _save_record(out, record)
        model = str(done)
    if config.pipeline.eval_problems > 0:
        evaluate_stages(config, record)
    return Path(model)


def heldout_bench(config) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The comparison's problems as benchmark rows, and each problem id's part: "skills"
    (data/heldout.py), "stories (tuning)" and "stories (locked)" (data/heldout_stories.py,
    `pipeline_story_problems` of each)."""
    from aimo3_recipe.data.heldout import held_out_problems
    from aimo3_recipe.data.heldout_stories import held_out_stories

    parts = [("skills", held_out_problems(config.pipeline.eval_problems, seed=config.sft.seed + 1))]
    if config.pipeline.story_problems > 0:
        parts += [(f"stories ({part})",
                   held_out_stories(config.pipeline.story_problems, seed=config.sft.seed, part=part))
                  for part in ("tuning", "locked")]
    rows, part_of = [], {}
    for part, problems in parts:
        for p in problems:
            rows.append({"problem": p.problem, "answer": p.answer, "id": p.metadata["id"],
                         "subject": p.metadata["kind"]})
            part_of[p.metadata["id"]] = part
    return rows, part_of


def stage_overrides(config, stage: str) -> dict[str, Any]:
    """Settings one stage of the pipeline takes differently from the others, {path: value}: a
    shorter CoT stage (`pipeline.cot_max_samples`), LoRA for RL (`pipeline.rl_lora_rank`,
    alpha 2 x rank)."""
    if stage == "cot" and config.pipeline.cot_max_samples > 0:
        return {"sft.max_samples": config.pipeline.cot_max_samples}
    if stage == "rl" and config.pipeline.rl_lora_rank > 0:
        return {"use_lora": True, "lora_rank": config.pipeline.rl_lora_rank,
                "lora_alpha": 2 * config.pipeline.rl_lora_rank}
    return {}


def evaluate_stages(config, record: dict[str, Any]) -> dict[str, Any]:
    """Held-out accuracy of the base model and every stage's, and each stage's paired gain
    over the model it started from; writes report.md, plots."""
    from aimo3_recipe.training.pipeline_report import write_pipeline_report

    out = Path(config.output_dir)
    bench = out / "eval" / "heldout.jsonl"
    bench.parent.mkdir(parents=True, exist_ok=True)
    rows, parts = heldout_bench(config)
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows))
    models = {"base": record["base_model"]}
    models.update({s: record["stages"][s]["model"] for s in STAGE_ORDER if s in record["stages"]})
    results: dict[str, Any] = {}
    engine = None
    t0 = time.time()
    for i, (name, path) in enumerate(models.items(), 1):
        per_model = (time.time() - t0) / max(i - 1, 1)
        left = "" if i == 1 else f"; about {per_model * (len(models) - i + 1) / 60:.1f} min left"
        notice(f"[full eval {i}/{len(models)}] {name}: {path} ({EVAL_MODE[name]}, greedy + "
               f"SC@{config.pipeline.sc}, {len(rows)} problems{left})")
        res, engine = _evaluate_one(config, name, path, bench, engine)
        results[name] = res
    summary = write_pipeline_report(out, config, record, results, time.time() - t0, parts=parts)
    return summary


def _evaluate_one(config, name: str, model: str, bench: Path, engine):
    """One model through the evaluation harness. A vLLM engine (started once, ~1 min on CPU)
    is reused by reloading the next model's weights; the transformers engine is rebuilt."""
    from aimo3_recipe.evaluation.config import EvalConfig
    from aimo3_recipe.evaluation.evaluate import build_engine
    from aimo3_recipe.evaluation.evaluate import main as evaluate
    from aimo3_recipe.inference.hf_engine import HFEngine
    from aimo3_recipe.models import resolve_model_path

    voted = "majority_vote" if EVAL_MODE[name] == "cot" else "tir"
    cfg = EvalConfig(model=str(model), benchmark=str(bench),
                     # pipeline.sc 0: greedy only (the CPU demo: more problems, fewer samples)
                     strategy=voted if config.pipeline.sc > 0 else "greedy",
                     mode=EVAL_MODE[name], num_samples=max(config.pipeline.sc, 1),
                     max_new_tokens=config.pipeline.eval_tokens, temperature=0.7, top_p=1.0,
                     use_vllm=config.use_vllm, device=config.device, seed=config.sft.seed,
                     output_dir=str(Path(config.output_dir) / "eval" / name),
                     bootstrap_resamples=500)
    if engine is None or isinstance(engine, HFEngine):
        engine = build_engine(cfg, config.pipeline.eval_tokens, weight_updates=True)
    else:
        engine.reload_weights(resolve_model_path(model))
    return evaluate(cfg, engine=engine), engine
