"""Voting, early stopping, GenSelect's pure parts and the selection layer `select`, on
hand-made candidates; and the evaluation path and the MathGenerator path choosing the same
answers from the same scripted model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from aimo3_recipe.inference.genselect import (
    GenSelectReport,
    build_genselect_prompt,
    parse_selection,
    summarise_solution,
    windows,
)
from aimo3_recipe.inference.solution_selection import (
    Candidate,
    agreement,
    confidence_weight,
    entropy_weight,
    majority_vote,
    select,
    should_stop_early,
    topk_entropy,
    weighted_vote,
)
from aimo3_recipe.inference.strategies import STRATEGIES


def test_majority_clear_winner_counts_votes():
    r = majority_vote(["4", "5", "4", None, "4"])
    assert r.answer == "4"
    assert r.top_votes == 3
    assert not r.tie and r.tied == []
    assert r.num_valid == 4
    assert sorted(r.votes.values()) == [1.0, 3.0]


def test_majority_groups_equivalent_answers():
    # "1/2", "\\frac{1}{2}" and "0.5" are one answer for the verifier's key
    r = majority_vote(["3", "1/2", "\\frac{1}{2}", "0.5", "3"])
    assert r.top_votes == 3
    assert r.answer == "1/2"  # the group's first-seen spelling


def test_majority_tie_broken_by_first_seen_and_reported():
    r = majority_vote(["7", "9", "9", "7"])
    assert r.answer == "7"  # 7 appeared first
    assert r.tie and r.tied == ["7", "9"]
    assert r.tie_break == "first_seen"
    r2 = majority_vote(["9", "7", "7", "9"])
    assert r2.answer == "9"


def test_all_different_is_a_tie_of_all():
    r = majority_vote(["1", "2", "3"])
    assert r.answer == "1" and r.tie and r.tied == ["1", "2", "3"]


def test_no_answers():
    for answers in ([], [None, None], ["", "  "]):
        r = majority_vote(answers)
        assert r.answer is None and r.votes == {} and not r.tie and r.num_valid == 0


def test_confidence_weight_is_geometric_mean_probability():
    assert confidence_weight([math.log(0.5), math.log(0.5)]) == pytest.approx(0.5)
    assert confidence_weight([math.log(0.25), math.log(1.0)]) == pytest.approx(0.5)
    assert confidence_weight([]) == 1.0 and confidence_weight(None) == 1.0


def test_weighted_vote_differs_from_majority_when_minority_is_confident():
    answers = ["10", "10", "12"]
    weights = [0.2, 0.25, 0.9]  # two unsure samples vs one confident one
    assert majority_vote(answers).answer == "10"
    w = weighted_vote(answers, weights)
    assert w.answer == "12"
    assert w.votes[w.winner_key] == pytest.approx(0.9)
    assert sum(w.votes.values()) == pytest.approx(1.35)
    # ...and agrees with majority when weights are equal
    assert weighted_vote(answers, [0.5, 0.5, 0.5]).answer == "10"


def test_weighted_vote_rejects_bad_weights():
    with pytest.raises(ValueError):
        weighted_vote(["1", "2"], [0.5])
    with pytest.raises(ValueError):
        weighted_vote(["1"], [float("nan")])


def test_weighted_tie_first_seen():
    w = weighted_vote(["a", "b"], [0.5, 0.5])
    assert w.answer == "a" and w.tie


def test_agreement_and_early_stop():
    answers = ["2", None, "3", "2", "2"]
    assert agreement(answers) == 3
    assert should_stop_early(answers, 3)
    assert not should_stop_early(answers, 4)
    assert not should_stop_early(answers, None) and not should_stop_early(answers, 0)
    assert agreement([None]) == 0


# -- GenSelect pure parts ---------------------------------------------------------------
def test_parse_selection():
    assert parse_selection("Solution 1 is wrong.\nJudgment: 2", 3) == 2
    assert parse_selection("judgement: 0 ... Judgment: 1", 3) == 1  # the last one counts
    assert parse_selection("The best is \\boxed{1}.", 2) == 1
    assert parse_selection("Judgment: 5", 3) is None  # out of range
    assert parse_selection("I cannot decide.", 3) is None


def test_summarise_keeps_head_and_answer_tail():
    text = "START " + "x" * 1000 + " so the answer is \\boxed{42}"
    s = summarise_solution(text, 200)
    assert len(s) <= 200
    assert s.startswith("START") and s.endswith("\\boxed{42}") and "[...]" in s
    assert summarise_solution("short", 200) == "short"


def test_genselect_prompt_fits_budget_and_numbers_solutions():
    sols = ["a" * 5000 + "\\boxed{1}", "b" * 5000 + "\\boxed{2}", "c\\boxed{3}"]
    p = build_genselect_prompt("What is x?", sols, max_chars=1500)
    assert "Solution 0:" in p and "Solution 2:" in p and "What is x?" in p
    assert "\\boxed{1}" in p and "\\boxed{2}" in p  # tails survive summarising
    assert len(p) < 1500 + 600  # summaries + fixed instruction text


def test_windows():
    assert windows(5, 2) == [[0, 1], [2, 3, 4]]  # no window of one
    assert windows(4, 4) == [[0, 1, 2, 3]]
    assert windows(9, 4) == [[0, 1, 2, 3], [4, 5, 6, 7, 8]]
    assert windows(3, 1) == [[0, 1, 2]]  # size below 2 is raised to 2 (then merged)


# -- the selection layer: select(strategy, candidates) -> Selection ------------------------
def C(answer, **kw) -> Candidate:
    return Candidate(answer, text=f"... \\boxed{{{answer}}}", **kw)


def test_select_majority_says_answer_index_counts_and_why():
    s = select("majority_vote", [C("4"), C("5"), C("4"), C(None), C("4")])
    assert (s.answer, s.index, s.key) == ("4", 0, "4")
    assert s.counts == {"4": 3, "5": 1} and s.votes == {"4": 3.0, "5": 1.0}
    assert s.reason == "majority 3/5" and not s.tie and not s.fallback and s.genselect is None


def test_select_tie_goes_to_first_seen_and_is_reported():
    s = select("majority_vote", [C("9"), C("7"), C("7"), C("9")])
    assert (s.answer, s.index) == ("9", 0) and s.tie and s.tied == ["9", "7"]
    assert s.reason == "majority 2/4, tie of 2 broken by first_seen"
    # the chosen candidate is the first of the winning group, with its own spelling
    s2 = select("tir", [C(None), C("0.5"), C("3"), C("1/2")])
    assert (s2.answer, s2.index, s2.reason) == ("0.5", 1, "majority 2/4")


def test_select_no_answers():
    for strategy in ("majority_vote", "weighted_vote", "tir"):
        s = select(strategy, [C(None), C(None)])
        assert s.answer is None and s.index is None and s.reason == "no answers"
        assert s.votes == {} and s.counts == {}
    assert select("majority_vote", []).reason == "no answers"


def test_select_greedy_takes_candidate_zero():
    s = select("greedy", [C("5"), C("6"), C("6")])
    assert (s.answer, s.index, s.reason) == ("5", 0, "greedy")
    s = select("greedy", [C(None)])
    assert (s.answer, s.index, s.reason) == (None, 0, "greedy: no answer")


def test_select_weighted_from_logprobs_mean_or_list():
    # weights: exp(log .2) = .2; geometric mean of (.5, .125) = .25; exp(log .9) = .9
    cands = [C("10", mean_logprob=math.log(0.2)),
             C("10", logprobs=[math.log(0.5), math.log(0.125)]),
             C("12", mean_logprob=math.log(0.9))]
    assert [c.weight() for c in cands] == pytest.approx([0.2, 0.25, 0.9])
    s = select("weighted_vote", cands)
    assert (s.answer, s.index) == ("12", 2)
    assert s.votes["10"] == pytest.approx(0.45) and s.votes["12"] == pytest.approx(0.9)
    assert s.counts == {"10": 2, "12": 1} and s.reason == "weighted 0.9 of 1.35"
    assert select("majority_vote", cands).answer == "10"
    # no log-probs, or a non-finite mean (stored as null in samples.jsonl): a plain vote
    assert C("1").weight() == 1.0 and C("1", mean_logprob=float("-inf")).weight() == 1.0


def test_select_weighted_uses_caller_scores_first():
    cands = [C("10", score=1.0, mean_logprob=math.log(0.2)), C("10", score=1.0),
             C("12", mean_logprob=math.log(0.9))]
    s = select("weighted_vote", cands)  # 1 + 1 = 2 for 10 vs 0.9 for 12
    assert s.answer == "10" and s.votes["10"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="finite"):
        select("weighted_vote", [C("1", score=float("nan"))])


def test_topk_entropy_by_hand():
    assert topk_entropy([math.log(0.5)] * 2) == pytest.approx(math.log(2))
    assert topk_entropy([math.log(0.25)] * 4) == pytest.approx(math.log(4))
    assert topk_entropy([math.log(0.3)] * 2) == pytest.approx(math.log(2))  # renormalised
    # p = (0.75, 0.25): -(.75 ln .75 + .25 ln .25) = 0.5623
    assert topk_entropy([math.log(0.75), math.log(0.25)]) == pytest.approx(0.562335, abs=1e-6)
    assert topk_entropy([0.0]) == 0.0


def test_entropy_weight_by_hand():
    h = [2.0, 1.0, 0.5, 0.5]
    assert entropy_weight(h) == pytest.approx(1 / 1.0)  # mean 1.0
    assert entropy_weight(h, tail=2) == pytest.approx(1 / 0.5)  # last two: mean 0.5
    assert entropy_weight(h, reduce="median") == pytest.approx(1 / 0.75)  # (0.5 + 1) / 2
    assert entropy_weight([0.2, 0.4, 0.9], reduce="median") == pytest.approx(1 / 0.4)
    assert entropy_weight(None) == 1.0 and entropy_weight([]) == 1.0
    assert entropy_weight([0.0]) == pytest.approx(1e6)  # eps guard, no division by zero
    with pytest.raises(ValueError, match="reduce"):
        entropy_weight(h, reduce="max")


def test_entropy_weighted_vote_through_the_same_layer():
    # one confident attempt (mean entropy 0.25 -> weight 4) vs two unsure ones (1.0 -> 1 each)
    ents = {"3": [0.25, 0.25], "5": [1.0, 1.0]}
    cands = [Candidate(a, entropies=ents[a]) for a in ("5", "3", "5")]
    for c in cands:
        c.score = entropy_weight(c.entropies)
    s = select("weighted_vote", cands)
    assert (s.answer, s.index, s.reason) == ("3", 1, "weighted 4 of 6")
    assert select("majority_vote", cands).answer == "5"


class RecordingJudge:
    """A GenSelect judge that returns a fixed report and records what it was shown."""

    def __init__(self, report: GenSelectReport):
        self.report, self.seen = report, None

    def __call__(self, texts, keys, confidences):
        self.seen = (list(texts), list(keys), list(confidences))
        return self.report


def test_select_genselect_follows_the_judge():
    judge = RecordingJudge(GenSelectReport(chosen=2, rounds=1, reason="tournament",
                                           judgments=[{"fallback": False}]))
    s = select("genselect", [C("9"), C("9"), C("11")], judge=judge)
    assert (s.answer, s.index, s.reason, s.fallback) == ("11", 2, "genselect", False)
    assert s.genselect is judge.report
    assert s.counts == {"9": 2, "11": 1}  # the vote behind it is still reported
    assert judge.seen[1] == ["9", "9", "11"]


def test_select_genselect_falls_back_to_majority_when_no_judgment_parses():
    report = GenSelectReport(chosen=1, rounds=1, reason="tournament", fallbacks=1,
                             judgments=[{"fallback": True}])
    s = select("genselect", [C("9"), C("11"), C("9")], judge=RecordingJudge(report))
    assert (s.answer, s.index, s.fallback) == ("9", 0, True)
    assert s.reason == "fallback: no usable judgment; majority 2/3"
    # one window of two unusable, the other decided: the tournament's answer stands
    partial = GenSelectReport(chosen=1, rounds=2, reason="tournament", fallbacks=1,
                              judgments=[{"fallback": True}, {"fallback": False}])
    s = select("genselect", [C("9"), C("11"), C("9")], judge=RecordingJudge(partial))
    assert (s.answer, s.reason, s.fallback) == ("11", "genselect", False)


def test_select_genselect_never_shows_truncated_candidates():
    from aimo3_recipe.inference.genselect import make_judge

    class NoModel:
        tokenizer = None

        def generate(self, prompts, config):
            raise AssertionError("the judge should not be called")

    cands = [C("7", finish_reason="length"), C("7", finish_reason="max_rounds"),
             C("5"), C("7", finish_reason="length")]
    judge = RecordingJudge(GenSelectReport(chosen=2, reason="unanimous"))
    s = select("genselect", cands, judge=judge)
    assert judge.seen[1] == [None, None, "5", None]  # cut candidates are not selectable
    assert (s.answer, s.index, s.reason) == ("5", 2, "genselect: unanimous")
    # the real judge: one finished answer is chosen without a model call
    s = select("genselect", cands, judge=make_judge(NoModel(), "x?"))
    assert (s.answer, s.reason) == ("5", "genselect: unanimous")
    # every answered candidate cut: the majority over all of them stands
    s = select("genselect", [C("7", finish_reason="length"), C(None),
                             C("7", finish_reason="length")], judge=make_judge(NoModel(), "x?"))
    assert (s.answer, s.index, s.fallback) == ("7", 0, True)
    assert s.reason == "fallback: no finished candidate has an answer; majority 2/3"


def test_select_rejects_bad_calls():
    with pytest.raises(ValueError, match="strategy must be one of"):
        select("best_of_n", [C("1")])
    with pytest.raises(ValueError, match="needs a judge"):
        select("genselect", [C("1")])


# -- the evaluation path and the MathGenerator path agree ----------------------------------
# Five problems, four samples each; what the scripted model writes (text, finish, p per token).
_SCRIPT = {
    # 10 twice unsure, 12 once confident, one without an answer
    "A": [("so \\boxed{10}", "stop", 0.2), ("thus \\boxed{10}", "stop", 0.25),
          ("hence \\boxed{12}", "stop", 0.9), ("I am not sure", "stop", 0.5)],
    # a tie between 1/2 (two spellings) and 3
    "B": [("\\boxed{1/2}", "stop", 0.5), ("\\boxed{3}", "stop", 0.5),
          ("\\boxed{0.5}", "stop", 0.5), ("\\boxed{3}", "stop", 0.5)],
    # three cut-off candidates say 7, the only finished one says 5
    "C": [("\\boxed{7} and then", "length", 0.9), ("\\boxed{7} so", "length", 0.9),
          ("\\boxed{7} but", "length", 0.9), ("\\boxed{5}", "stop", 0.5)],
    # no answers at all
    "D": [("I do not know", "stop", 0.5)] * 4,
    # sample 0 writes code (its last number, 7, is the answer without tools; 42 with them)
    "E": [("```python\nprint(6 * 7)\n```\n", "stop", 0.5), ("\\boxed{42}", "stop", 0.5),
          ("\\boxed{41}", "stop", 0.5), ("\\boxed{41}", "stop", 0.5)],
}
_JUDGE = {"A": "Solution 1 is right.\nJudgment: 1", "B": "no idea", "E": "Judgment: 1"}
_EXPECTED = {  # worked out by hand from the script above
    "greedy": ["10", "1/2", "7", None, "7"],
    "majority_vote": ["10", "1/2", "7", None, "41"],
    "weighted_vote": ["12", "1/2", "7", None, "41"],
    "tir": ["10", "1/2", "7", None, "42"],  # E: code prints 42 -> 42, 42, 41, 41: first seen
    "genselect": ["12", "1/2", "5", None, "42"],  # B: judge unusable -> majority; C: cut
}


def _script_engine(tokenizer):
    from aimo3_recipe.testing import Reply, TextEngine

    class Scripted(TextEngine):
        def reply(self, prompt, config, index):
            label = prompt.split("Problem ", 1)[1][0]
            if "candidate solutions" in prompt:
                return Reply(_JUDGE[label], logprob=None)
            turn = prompt.rsplit("<|im_start|>assistant", 1)[-1]
            if "```output" in turn:  # TIR: the sandbox ran sample 0's code
                result = turn.rsplit("```output", 1)[1].strip().strip("`").strip()
                return Reply(f"so \\boxed{{{result}}}")
            if turn.strip():  # TIR continuing a cut-off sample: it stops
                return Reply(" ")
            text, finish, p = _SCRIPT[label][index]
            return Reply(text, finish, math.log(p))

    return Scripted(tokenizer)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_evaluation_and_generator_choose_the_same_answers(strategy, tmp_path: Path,
                                                          tiny_tokenizer):
    from aimo3_recipe.evaluation.config import EvalConfig
    from aimo3_recipe.evaluation.evaluate import choose, main
    from aimo3_recipe.inference.generate import GenerationConfig, MathGenerator

    problems = [f"Problem {label}: find the number." for label in _SCRIPT]
    bench = tmp_path / "bench.jsonl"
    bench.write_text("".join(json.dumps({"problem": p, "solution": "", "answer": "1"}) + "\n"
                             for p in problems))
    n = 1 if strategy == "greedy" else 4
    main(EvalConfig(benchmark=str(bench), strategy=strategy, num_samples=n, batch_size=5,
                    max_new_tokens=64, include_greedy=False, output_dir=str(tmp_path / "eval"),
                    progress=False, bootstrap_resamples=10),
         engine=_script_engine(tiny_tokenizer))
    recs: dict = {}
    for line in (tmp_path / "eval" / "samples.jsonl").read_text().splitlines()[1:]:
        r = json.loads(line)
        recs.setdefault((r["kind"], r["problem_index"]), []).append(r)
    eval_answers = []
    for i in range(len(problems)):
        samples = sorted(recs.get(("sampled", i), []), key=lambda r: r["sample_index"])
        greedy = recs.get(("greedy", i), [None])[0]
        selection = recs.get(("selection", i), [None])[0]
        eval_answers.append(choose(strategy, greedy, samples, selection)[0])

    gen = MathGenerator(GenerationConfig(strategy=strategy, num_samples=n, max_new_tokens=64),
                        engine=_script_engine(tiny_tokenizer))
    results = gen.solve_batch(problems)
    assert [r.answer for r in results] == eval_answers == _EXPECTED[strategy]
    if strategy == "genselect":  # the same choice, for the same reason, on both paths
        sels = [recs[("selection", i)][0] for i in range(len(problems))]
        assert [s["chosen_index"] for s in sels] == [r.chosen for r in results]
        assert [s["selection_reason"] for s in sels] == [r.reason for r in results]
        assert [r.selection["fell_back_to_majority"] for r in results] \
            == [s["fell_back_to_majority"] for s in sels] == [False, True, False, True, False]
        assert results[1].reason.startswith("fallback: no usable judgment")
        assert results[2].reason == "genselect: unanimous"
        assert results[3].reason == "fallback: no candidate has an answer"
