"""GenSelect: the model reads several candidate solutions and names the best one.

Following OpenMathReasoning's GenSelect, candidates are first reduced to one representative
per distinct answer (the most confident one), because choosing between equal answers decides
nothing; a single distinct answer is returned without asking the model. The representatives
are summarised to fit the context (head + tail of each solution, the tail holds the answer),
shown to the model in windows of `window` candidates, and the chosen ones advance, round
after round, until one remains (a knock-out tournament). When the model's judgment cannot be
parsed (no "Judgment: i" / `\\boxed{i}` with a valid index), that window falls back to the
majority winner among its candidates, and the fallback is counted in the report.

The prompt building, summarising and parsing are pure functions; only `genselect()` calls a
model. Callers do not call it directly: `make_judge(engine, problem)` binds it for
`solution_selection.select("genselect", ..., judge=...)`, which decides which candidates the
judge sees (finished ones) and what happens when it cannot decide (the majority answer).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aimo3_recipe.inference.engine import Engine, SamplingConfig

GENSELECT_INSTRUCTION = (
    "Below are a math problem and {k} candidate solutions, numbered 0 to {last}. They reach "
    "different final answers, so at most one is correct. Check each solution's reasoning, "
    "then state which solution is correct on the last line as 'Judgment: <number>'."
)


def summarise_solution(text: str, max_chars: int) -> str:
    """Fit a solution into `max_chars`: keep its start and, larger, its end (where the final
    answer is), with a marker where the middle was cut."""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    marker = "\n[...]\n"
    budget = max(0, max_chars - len(marker))
    head = budget // 3
    tail = budget - head
    return text[:head] + marker + (text[-tail:] if tail else "")


def build_genselect_prompt(problem: str, solutions: Sequence[str], max_chars: int) -> str:
    """The user message for one window: problem + numbered summaries, `max_chars` in total."""
    per = max(80, max_chars // max(1, len(solutions)))
    parts = [GENSELECT_INSTRUCTION.format(k=len(solutions), last=len(solutions) - 1),
             f"Problem:\n{problem.strip()}"]
    for i, s in enumerate(solutions):
        parts.append(f"Solution {i}:\n{summarise_solution(s, per)}")
    return "\n\n".join(parts)


_JUDGMENT_RE = re.compile(r"judg(?:e)?ment\s*[:=]?\s*\**\s*(?:solution\s*)?#?(\d+)", re.IGNORECASE)
_BOXED_INT_RE = re.compile(r"\\boxed\{\s*(?:solution\s*)?(\d+)\s*\}", re.IGNORECASE)


def parse_selection(text: str, num_candidates: int) -> int | None:
    """Index named by the judge's output ('Judgment: 2', else the last `\\boxed{2}`), or None
    when absent or out of range."""
    for regex in (_JUDGMENT_RE, _BOXED_INT_RE):
        hits = regex.findall(text)
        if hits:
            idx = int(hits[-1])
            return idx if 0 <= idx < num_candidates else None
    return None


def windows(n: int, size: int) -> list[list[int]]:
    """Split indices 0..n-1 into consecutive windows of `size`; a last window of one joins the
    previous one (a window of one decides nothing)."""
    size = max(2, size)
    out = [list(range(i, min(i + size, n))) for i in range(0, n, size)]
    if len(out) > 1 and len(out[-1]) == 1:
        out[-2].extend(out.pop())
    return out


@dataclass
class GenSelectReport:
    chosen: int | None  # index (into the candidates given) of the selected solution
    rounds: int = 0  # tournament rounds run
    judgments: list[dict] = field(default_factory=list)  # per window: shown, choice, fallback
    fallbacks: int = 0  # windows whose judgment was unusable (majority used instead)
    tokens: int = 0  # tokens the judge generated
    reason: str = ""  # 'unanimous', 'tournament', 'no answers'


def genselect(engine: Engine, render: Callable[[str], str], problem: str,
              texts: Sequence[str], answer_keys: Sequence[str | None],
              confidences: Sequence[float], *, window: int = 4, max_chars: int = 4000,
              max_tokens: int = 512, seed: int | None = 0) -> GenSelectReport:
    """Select one candidate index. `render(user_message) -> prompt` applies the chat template;
    `answer_keys` group equal answers (None = no answer, never selected when others exist)."""
    # one representative per answer group: the most confident member; votes per group
    reps: dict[str, int] = {}
    votes: dict[str, int] = {}
    for i, k in enumerate(answer_keys):
        if k is None:
            continue
        votes[k] = votes.get(k, 0) + 1
        if k not in reps or confidences[i] > confidences[reps[k]]:
            reps[k] = i
    if not reps:
        return GenSelectReport(chosen=None, reason="no answers")
    pool = list(reps.values())
    if len(pool) == 1:
        return GenSelectReport(chosen=pool[0], reason="unanimous")
    report = GenSelectReport(chosen=None, reason="tournament")
    config = SamplingConfig(n=1, temperature=0.0, max_tokens=max_tokens, seed=seed,
                            logprobs=False)
    while len(pool) > 1:
        report.rounds += 1
        groups = [[pool[j] for j in w] for w in windows(len(pool), window)]
        prompts = [render(build_genselect_prompt(problem, [texts[i] for i in g], max_chars))
                   for g in groups]
        outs = engine.generate(prompts, config)
        pool = []
        for g, out in zip(groups, outs):
            judged = out[0]
            report.tokens += len(judged.token_ids)
            pick = parse_selection(judged.text, len(g))
            fallback = pick is None
            if fallback:  # the most-voted answer of the window (first shown on ties)
                report.fallbacks += 1
                pick = max(range(len(g)), key=lambda j: (votes[answer_keys[g[j]]], -j))
            report.judgments.append({"round": report.rounds, "shown": g, "choice": g[pick],
                                     "fallback": fallback, "judge_text": judged.text[-300:]})
            pool.append(g[pick])
    report.chosen = pool[0]
    return report


def judge_prompt(tokenizer: object, message: str) -> str:
    """The judge's user message in the tokenizer's chat format (plain text when it has none)."""
    from aimo3_recipe.data.renderers import has_chat_template

    if not has_chat_template(tokenizer):
        return f"{message}\n\n"
    return tokenizer.apply_chat_template(  # type: ignore[attr-defined]
        [{"role": "user", "content": message}], tokenize=False, add_generation_prompt=True)


def make_judge(engine: Engine, problem: str, *, window: int = 4, max_chars: int = 4000,
               max_tokens: int = 512, seed: int | None = 0
               ) -> Callable[[Sequence[str], Sequence[str | None], Sequence[float]],
                             GenSelectReport]:
    """`genselect` bound to one engine and problem: the `judge` that `select` calls."""
    def judge(texts: Sequence[str], answer_keys: Sequence[str | None],
              confidences: Sequence[float]) -> GenSelectReport:
        return genselect(engine, lambda msg: judge_prompt(engine.tokenizer, msg), problem,
                         texts, answer_keys, confidences, window=window, max_chars=max_chars,
                         max_tokens=max_tokens, seed=seed)

    return judge
