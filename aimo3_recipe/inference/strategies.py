"""Names of the solution strategies, shared by inference and evaluation."""

STRATEGIES = ("greedy", "majority_vote", "weighted_vote", "tir", "genselect")
