"""One meaning of "truncated" (inference/finish_reason.py), read the same by the four places
that act on it: the RL reward, answer selection, evaluation's truncation rate and the solver
log replay. Each is fed every finish reason and must agree with `is_truncated`."""

from __future__ import annotations

import json

import pytest

from aimo3_recipe.inference.finish_reason import TRUNCATED, FinishReason, is_truncated

CUT = {"length", "max_rounds", "max_tool_calls"}
NOT_CUT = {"stop", "fake_output", "cancelled", "error"}


def test_the_truncated_set_and_the_enum():
    assert {str(r) for r in FinishReason} == CUT | NOT_CUT
    assert {str(r) for r in TRUNCATED} == CUT
    for reason in FinishReason:
        # a member and its string (as read back from JSON) get the same answer
        assert is_truncated(reason) == is_truncated(str(reason)) == (reason in CUT)
    assert not is_truncated(None) and not is_truncated("no-such-reason")
    assert json.dumps({"r": FinishReason.MAX_ROUNDS}) == '{"r": "max_rounds"}'


@pytest.mark.parametrize("reason", sorted(CUT | NOT_CUT))
def test_rl_reward_skips_exactly_the_truncated(reason):
    """A rollout with a right, boxed answer: paid unless its finish reason is truncated."""
    from aimo3_recipe.rl.rewards import MathRewardFunction, score_group
    from aimo3_recipe.rl.types import Rollout, RolloutGroup

    ro = Rollout(prompt_ids=[1], tokens=[2], mask=[1], sampler_logprobs=[-0.1],
                 text="\\boxed{47}", model_text="\\boxed{47}", finish_reason=reason)
    assert ro.truncated == (reason in CUT)
    group = RolloutGroup(problem="What is 12 + 35?", answer="47", rollouts=[ro])
    reward_fn = MathRewardFunction()
    score_group(group, reward_fn)
    res = reward_fn(ro.model_text, "47", truncated=ro.truncated)
    if reason in CUT:
        assert (res.correct, res.grader_status) == (False, "skipped")
        assert group.rewards_G[0] == pytest.approx(reward_fn.incorrect_reward)
    else:
        assert res.correct
        assert group.rewards_G[0] == pytest.approx(reward_fn.correct_reward
                                                   + reward_fn.format_reward)


@pytest.mark.parametrize("reason", sorted(CUT | NOT_CUT))
def test_selection_keeps_truncated_candidates_from_the_judge(reason):
    """GenSelect never shows a truncated candidate; a finished one stays selectable."""
    from aimo3_recipe.inference.genselect import GenSelectReport
    from aimo3_recipe.inference.solution_selection import Candidate, select

    seen: list = []

    def judge(texts, keys, weights):
        seen.append(list(keys))
        return GenSelectReport(chosen=1 if keys[1] is not None else 0, reason="picked")

    cands = [Candidate("5"), Candidate("7", finish_reason=reason)]
    assert cands[1].truncated == (reason in CUT)
    s = select("genselect", cands, judge=judge)
    if reason in CUT:  # shown to the judge as unselectable; the finished answer wins
        assert seen == [["5", None]] and s.answer == "5"
    else:
        assert seen == [["5", "7"]] and s.answer == "7"


def test_evaluation_truncation_rate_counts_every_truncated_reason():
    from aimo3_recipe.evaluation.metrics import completion_stats

    reasons = sorted(CUT | NOT_CUT)
    stats = completion_stats([{"finish_reason": r, "answer_key": None} for r in reasons])
    assert stats["truncation_rate"] == pytest.approx(len(CUT) / len(reasons))


def test_replay_reads_truncated_from_solver_logs_and_samples(tmp_path):
    from aimo3_recipe.inference.aimo.replay import load_samples, load_solver_log

    reasons = sorted(CUT | NOT_CUT)
    attempts = [{"index": i, "answer": 7, "finish_reason": r, "time_s": 1.0 + i, "tokens": 3}
                for i, r in enumerate(reasons)]
    log = tmp_path / "problems.jsonl"
    log.write_text(json.dumps({"id": "p1", "reference": 7, "attempts": attempts}) + "\n")
    (prob,) = load_solver_log(log)
    by_time = sorted(attempts, key=lambda a: a["time_s"])
    assert [a.truncated for a in prob.attempts] == [a["finish_reason"] in CUT for a in by_time]

    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(
        json.dumps({"kind": "sampled", "problem_index": 0, "sample_index": i, "correct": True,
                    "answer_key": "7", "num_tokens": 3, "finish_reason": r}) + "\n"
        for i, r in enumerate(reasons)))
    (prob,) = load_samples(samples)
    assert [a.truncated for a in prob.attempts] == [r in CUT for r in reasons]
