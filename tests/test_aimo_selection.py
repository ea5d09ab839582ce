"""The solver's selection rules through the one selection layer, on hand-made candidates with
numbers computed by hand: entropy weights (whole, tail window, mean, median), the vote-led
score, the runner-up early-stop rule, GenSelect through `choose`, and engines returning the
top-k log-probs that entropy needs."""

from __future__ import annotations

import math

import pytest

from aimo3_recipe.inference.aimo.attempts import AttemptsOutcome, attempt_weight, choose
from aimo3_recipe.inference.aimo.config import SolverConfig
from aimo3_recipe.inference.aimo.log import AttemptRecord, entropy_stats
from aimo3_recipe.inference.engine import Completion, SamplingConfig
from aimo3_recipe.inference.genselect import GenSelectReport
from aimo3_recipe.inference.solution_selection import (
    Candidate,
    VoteScore,
    early_stop_reason,
    entropy_weight,
    runner_up_cannot_catch_up,
    select,
    topk_entropy,
)


# ---------------------------------------------------------------- entropy by hand
def test_topk_entropy_and_completion_entropies():
    assert topk_entropy([math.log(0.5), math.log(0.5)]) == pytest.approx(math.log(2))
    # top-2 (-0.1, -2.5) renormalised: p = 1/(1+e^-2.4), 1-p
    p = 1 / (1 + math.exp(-2.4))
    h = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    comp = Completion("ab", [1, 2], [-0.1, -0.1], "stop", top_logprobs=[[-0.1, -2.5]] * 2)
    assert comp.entropies == pytest.approx([h, h])
    assert Completion("a", [1], [-0.1], "stop").entropies is None


def test_entropy_weight_whole_tail_mean_median():
    ents = [1.0, 2.0, 10.0]
    assert entropy_weight(ents) == pytest.approx(3 / 13)  # 1 / mean 13/3
    assert entropy_weight(ents, reduce="median") == pytest.approx(0.5)  # 1 / 2
    assert entropy_weight(ents, tail=2) == pytest.approx(1 / 6)  # 1 / mean(2, 10)
    assert entropy_weight(ents, tail=1) == pytest.approx(0.1)
    assert attempt_weight(ents, -0.3, tail=2) == pytest.approx(1 / 6)
    assert attempt_weight(None, math.log(0.25)) == pytest.approx(0.25)  # no top-k: exp(mean lp)
    assert attempt_weight(None, None) == 1.0


def test_entropy_stats_logged_for_replay():
    ents = [4.0] * 10 + [1.0] * 64
    st = entropy_stats(ents)
    assert st["mean"] == pytest.approx((40 + 64) / 74)
    assert st["median"] == 1.0 and st["tail64_mean"] == 1.0 and st["tail128_mean"] == st["mean"]
    assert entropy_stats(None) == {}


def test_entropy_weighted_vote_beats_majority_by_hand():
    # answer 1: one confident attempt (entropy 0.5 -> weight 2); answer 2: two unsure ones
    # (entropy 2 -> 0.5 each, total 1): majority says 2, entropy-weighted says 1
    cands = [Candidate("1", score=entropy_weight([0.5, 0.5])),
             Candidate("2", score=entropy_weight([1.0, 3.0])),
             Candidate("2", score=entropy_weight([2.0]))]
    assert select("majority_vote", cands).answer == "2"
    sel = select("weighted_vote", cands)
    assert sel.answer == "1" and sel.votes == pytest.approx({"1": 2.0, "2": 1.0})


def test_tail_window_changes_the_winner_by_hand():
    # attempt A: unsure start, confident end; attempt B: the reverse
    a, b = [3.0] * 8 + [0.25] * 2, [0.25] * 8 + [3.0] * 2
    whole = [Candidate("1", score=entropy_weight(a)), Candidate("2", score=entropy_weight(b))]
    tail = [Candidate("1", score=entropy_weight(a, tail=2)),
            Candidate("2", score=entropy_weight(b, tail=2))]
    # whole: 1/2.45 vs 1/0.8 -> "2"; last 2 tokens: 1/0.25 = 4 vs 1/3 -> "1"
    assert select("weighted_vote", whole).answer == "2"
    assert select("weighted_vote", tail).answer == "1"


# ---------------------------------------------------------------- the vote-led score
def test_vote_score_by_hand():
    cands = [Candidate("7", score=2.0), Candidate("7", score=1.0),
             Candidate("9", score=4.0, finish_reason="length"), Candidate("9", score=0.5)]
    sel = select("vote_score", cands, vote_score=VoteScore(confidence=0.1, consensus=0.05))
    # 7: 2/4 + 0.1 * median(2, 1)/4 + 0.05 * 2/3 (of the 3 finished) = 0.570833
    # 9: 2/4 + 0.1 * median(4, .5)/4 + 0.05 * 1/3                     = 0.572917
    assert sel.votes["7"] == pytest.approx(0.5 + 0.0375 + 0.05 * 2 / 3)
    assert sel.votes["9"] == pytest.approx(0.5 + 0.05625 + 0.05 / 3)
    assert sel.answer == "9" and sel.index == 2 and sel.counts == {"7": 2, "9": 2}
    # the vote leads: one more vote for 7 outweighs any confidence
    sel = select("vote_score", [*cands, Candidate("7", score=0.01)])
    assert sel.answer == "7" and sel.reason.startswith("score")


def test_vote_score_tie_goes_to_the_first_seen_and_no_answers():
    sel = select("vote_score", [Candidate("3", score=1.0), Candidate("4", score=1.0)])
    assert sel.answer == "3" and sel.tie and sel.tied == ["3", "4"]
    sel = select("vote_score", [Candidate(None), Candidate(None)])
    assert sel.answer is None and sel.reason == "no answers"


# ---------------------------------------------------------------- early-stop rules
def test_runner_up_rule_by_hand():
    assert runner_up_cannot_catch_up(["5", "5", "6"], remaining=1)  # 1 + 1 <= 2
    assert not runner_up_cannot_catch_up(["5", "5", "6"], remaining=2)  # 1 + 2 > 2
    assert runner_up_cannot_catch_up(["5", "5", "5", "5"], remaining=4)  # 0 + 4 <= 4
    assert not runner_up_cannot_catch_up([None, None], remaining=0)  # no leader
    assert runner_up_cannot_catch_up(["5"], remaining=0)


def test_early_stop_reason_order():
    assert early_stop_reason(["1"] * 4, 4, k=4, runner_up=True) == "k_agree"
    assert early_stop_reason(["1", "1", "2"], 1, k=4, runner_up=True) == "runner_up"
    assert early_stop_reason(["1", "1", "2"], 1, k=4, runner_up=False) is None
    assert early_stop_reason(["1", "2"], 0, k=4) == "all_done"


# ---------------------------------------------------------------- choose(): the solver's call
def _outcome(answers, weights, finish=None) -> AttemptsOutcome:
    recs = [AttemptRecord(index=i, answer=a, answer_status="ok" if a is not None else "none",
                          raw_answer=None if a is None else str(a),
                          finish_reason=(finish or {}).get(i, "stop"), time_s=float(i),
                          tokens=10, weight=w, text=f"attempt {i}")
            for i, (a, w) in enumerate(zip(answers, weights))]
    order = [r.index for r in recs if not r.cancelled]
    return AttemptsOutcome(recs, order, "all_done")


def test_choose_skips_cancelled_attempts_and_uses_weights():
    out = _outcome([5, 6, 6, 5], [3.0, 1.0, 1.0, 9.0], finish={3: "cancelled"})
    assert choose(out, SolverConfig(selection="majority_vote")).answer == "6"
    assert choose(out, SolverConfig(selection="weighted_vote")).answer == "5"  # 3 > 2


def test_choose_genselect_with_a_judge_and_without_time():
    out = _outcome([5, 6, 6], [1.0, 1.0, 1.0])
    seen = {}

    def judge(texts, keys, confs):
        seen["texts"], seen["keys"] = list(texts), list(keys)
        return GenSelectReport(chosen=0, rounds=1, reason="tournament",
                               judgments=[{"fallback": False}])

    sel = choose(out, SolverConfig(selection="genselect"), judge=judge)
    assert sel.answer == "5" and sel.reason == "genselect"
    assert seen["keys"] == ["5", "6", "6"] and seen["texts"][0] == "attempt 0"
    sel = choose(out, SolverConfig(selection="genselect"), judge=None)
    assert sel.answer == "6" and sel.reason.startswith("genselect skipped")


# ---------------------------------------------------------------- engines return top-k
def test_hf_engine_returns_top_k_logprobs(tiny_model_dir):
    from aimo3_recipe.inference.hf_engine import HFEngine

    engine = HFEngine(str(tiny_model_dir), device="cpu")
    out = engine.generate(["What is 2 + 3?"], SamplingConfig(n=1, max_tokens=6,
                                                             top_logprobs=3))[0][0]
    assert out.top_logprobs is not None and len(out.top_logprobs) == len(out.token_ids)
    for lp, top in zip(out.logprobs, out.top_logprobs):
        assert len(top) == 3 and top == sorted(top, reverse=True)
        assert lp == pytest.approx(top[0], abs=1e-5)  # greedy: the sampled token is the top one
    assert all(h >= 0 for h in out.entropies)
    plain = engine.generate(["What is 2 + 3?"], SamplingConfig(n=1, max_tokens=6))[0][0]
    assert plain.top_logprobs is None and plain.logprobs == pytest.approx(out.logprobs)
