"""The RL reward: answer correctness, plus a small bonus for a proper `\\boxed{}`.

    reward = correct_reward (+1.0) if the answer is right, else incorrect_reward (-0.5)
           + format_reward (+0.1) if the graded text has a closed, non-empty \\boxed{}

What is graded (and why):
- Only text the model wrote (`Rollout.model_text`): tool output is left out, so a code
  block whose *output* is `\\boxed{42}` earns nothing.
- ```python blocks are cut out of the model text first: the code is not the model's answer,
  and `print(f"\\\\boxed{{{x}}}")` would otherwise earn the format bonus through a box whose
  content is code (and a box the code only prints is exactly the tool-output case above).
- A truncated rollout (`Rollout.truncated`: finish_reason "length", "max_rounds" or
  "max_tool_calls", inference/finish_reason.py) gets incorrect_reward and no
  format bonus, without grading: an answer boxed early and then rambled past the limit must
  not pay, or RL learns to box first and never finish. Its grader_status is "skipped".
- A grader timeout (or a too-complex input, or a grader error) is incorrect, and says so in
  `grader_status` so the loop can count it; nothing is raised.

A user-supplied `answer_verifier(predicted, reference) -> bool` replaces the grader's
equivalence (status "ok"; "error" if it raises, with the verdict incorrect, counted in
`status_counts`). The default, `grader.verify_answer`, is called through `grader.verify`
so its status is kept.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from aimo3_recipe.grader import extract_answer, verify, verify_answer
from aimo3_recipe.grader.extraction import last_box
from aimo3_recipe.rl.types import RolloutGroup

# every grader_status a RewardResult can carry: the grader's four, plus "skipped" (truncated)
GRADER_STATUSES = ("ok", "timeout", "too_complex", "error", "skipped")

# a ```python block to its closing fence, or to the end when it was cut off unclosed
_PYTHON_BLOCK = re.compile(r"```python\b.*?(?:```|\Z)", re.DOTALL)


def graded_text(model_text: str) -> str:
    """The part of the model's text the reward reads: ```python blocks removed."""
    return _PYTHON_BLOCK.sub("", model_text)


@dataclass(frozen=True)
class RewardResult:
    reward: float  # the scalar reward
    correct: bool  # the extracted answer equals the ground truth (False when truncated)
    boxed: bool  # earned the format bonus (closed non-empty \boxed{}, not truncated)
    extracted: str | None  # the answer found in the graded text (None: none found)
    grader_status: str  # ok | timeout | too_complex | error | skipped (see GRADER_STATUSES)
    truncated: bool = False  # the rollout was cut off (reward is incorrect_reward)


class MathRewardFunction:
    """Callable reward: `fn(model_text, ground_truth, truncated=False, problem=None)`.

    The seed's public API (`training/rl_math.py` re-exports it). `timeout` bounds the
    symbolic comparison per call; `aimo` grades as the competition does (integers 0..99999,
    reduced mod m when `problem` asks for a remainder mod m)."""

    def __init__(
        self,
        answer_verifier: Callable[[str, str], bool] = verify_answer,
        correct_reward: float = 1.0,
        incorrect_reward: float = -0.5,
        format_reward: float = 0.1,
        aimo: bool = False,
        timeout: float = 2.0,
    ) -> None:
        self.answer_verifier = answer_verifier
        self.correct_reward = correct_reward
        self.incorrect_reward = incorrect_reward
        self.format_reward = format_reward
        self.aimo = aimo
        self.timeout = timeout
        self.status_counts: Counter[str] = Counter()  # grader_status of every call so far
        self._lock = threading.Lock()  # rewards may be computed from a thread pool

    def __call__(
        self,
        model_text: str,
        ground_truth: str,
        truncated: bool = False,
        problem: str | None = None,
    ) -> RewardResult:
        text = graded_text(model_text or "")
        extracted = extract_answer(text)
        if truncated:
            result = RewardResult(self.incorrect_reward, False, False, extracted, "skipped", True)
        else:
            found, content = last_box(text)
            boxed = found and content is not None
            correct, status = self._check(extracted, ground_truth, problem)
            reward = (self.correct_reward if correct else self.incorrect_reward) + (
                self.format_reward if boxed else 0.0
            )
            result = RewardResult(reward, correct, boxed, extracted, status)
        with self._lock:
            self.status_counts[result.grader_status] += 1
        return result

    def _check(self, extracted: str | None, ground_truth: str,
               problem: str | None) -> tuple[bool, str]:
        """(correct, grader_status). The default verifier goes through `verify` for its
        status; a custom one that raises is an incorrect verdict with status "error"."""
        if self.answer_verifier is verify_answer:
            v = verify(extracted, ground_truth, timeout=self.timeout, aimo=self.aimo,
                       problem=problem)
            return v.correct, v.status
        if extracted is None:
            return False, "ok"
        try:
            return bool(self.answer_verifier(extracted, ground_truth)), "ok"
        except Exception:  # noqa: BLE001 - a verifier bug must not kill the run; counted
            return False, "error"


def score_group(group: RolloutGroup, reward_fn: MathRewardFunction) -> None:
    """Grade every rollout of the group and fill its rewards_G, correct_G, boxed_G,
    extracted_G and grader_status_G."""
    results = [
        reward_fn(r.model_text, group.answer, truncated=r.truncated, problem=group.problem)
        for r in group.rollouts
    ]
    group.rewards_G = [x.reward for x in results]
    group.correct_G = [x.correct for x in results]
    group.boxed_G = [x.boxed for x in results]
    group.extracted_G = [x.extracted for x in results]
    group.grader_status_G = [x.grader_status for x in results]
