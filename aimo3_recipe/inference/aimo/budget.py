"""Time for the competition run: a clock, the per-problem budget rule, banking and the hard stop.

The run has one total (Kaggle: 5 h of GPU notebook; the public solutions plan for 17,400 s,
leaving the rest for start-up and the gateway). Problems come one at a time and their number
is known in advance (50). Before each problem the rule gives it a budget:

    planned = clamp(time_left - (problems_left - 1) * reserve_s, min_s, max_s)
    budget  = min(planned, time_left - (problems_left - 1) * hard_reserve_s)

(`problems_left` counts the current problem). The first line is the public rule (reserve
300 s, 300..900 s); unused time is *banked* simply by being left in `time_left`, so an easy
problem that stops early leaves more for the hard ones. The second line is the hard stop: the
budget never takes the `hard_reserve_s` kept for each problem still to come, whatever the
floor `min_s` says, so the total is never exceeded as long as each problem ends by its
deadline. Attempts are stopped `stop_margin_s` before the deadline, for cancelling,
selecting and logging.

Every function takes its time from a `Clock` object (`now()` in seconds), never from the
wall directly: tests and the replay simulator pass a `SimClock` and advance it by hand.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields
from typing import Protocol

from aimo3_recipe.exceptions import ConfigError


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic scale (only differences mean anything)."""
        ...


class MonotonicClock:
    """The real clock (`time.monotonic`)."""

    def now(self) -> float:
        return time.monotonic()


class SimClock:
    """A clock that moves only when told to (tests, the replay simulator)."""

    def __init__(self, start: float = 0.0) -> None:
        self.t = float(start)

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"SimClock.advance needs seconds >= 0; got {seconds}")
        self.t += seconds


@dataclass
class TimeRule:
    """The per-problem budget rule and the hard stop (module docstring)."""

    total_s: float = 17400.0  # the whole run's time budget, from the solver's start
    num_problems: int = 50  # problems the run will get (the private set has 50)
    reserve_s: float = 300.0  # the rule keeps this back for each problem still to come
    min_s: float = 300.0  # the rule's floor per problem (the hard stop may still cut it)
    max_s: float = 900.0  # the rule's ceiling per problem
    hard_reserve_s: float = 10.0  # the hard stop leaves this for each problem still to come
    stop_margin_s: float = 2.0  # attempts stop this long before the deadline (cancel, select)

    def __post_init__(self) -> None:
        for name in ("total_s", "num_problems", "max_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0; got {getattr(self, name)}")
        for name in ("reserve_s", "min_s", "hard_reserve_s", "stop_margin_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0; got {getattr(self, name)}")
        if self.min_s > self.max_s:
            raise ConfigError(f"min_s ({self.min_s}) must be <= max_s ({self.max_s})")

    @classmethod
    def of(cls, config: object) -> TimeRule:
        """The TimeRule fields of a config that has them (SolverConfig inherits them)."""
        return cls(**{f.name: getattr(config, f.name) for f in fields(cls)})


def problem_budget(time_left: float, problems_left: int, rule: TimeRule) -> float:
    """Seconds the current problem may use (module docstring); >= 0. `problems_left`
    counts the current problem (values < 1 are taken as 1: more problems than planned)."""
    others = max(1, problems_left) - 1
    planned = min(max(time_left - others * rule.reserve_s, rule.min_s), rule.max_s)
    hard = time_left - others * rule.hard_reserve_s
    return max(0.0, min(planned, hard))


@dataclass
class ProblemTime:
    """The time given to one problem."""

    index: int  # problems begun before this one
    start: float  # clock time at its start
    budget_s: float  # what the rule gave it
    deadline: float  # clock time at which its attempts are stopped (budget less the margin)
    time_left_s: float  # the run's time left when it began
    problems_left: int  # problems still to do, this one included


class TimeKeeper:
    """Tracks the run's clock across problems: `begin()` gives a problem its budget and
    deadline, `end()` records what it used and what it banked."""

    def __init__(self, rule: TimeRule, clock: Clock | None = None,
                 start: float | None = None) -> None:
        self.rule = rule
        self.clock = clock or MonotonicClock()
        self.start = self.clock.now() if start is None else start
        self.done = 0  # problems ended
        self.banked_s = 0.0  # sum over ended problems of (budget - used), negative if overrun
        self.used_s: list[float] = []  # per ended problem

    def elapsed(self) -> float:
        return self.clock.now() - self.start

    def time_left(self) -> float:
        return self.rule.total_s - self.elapsed()

    def begin(self) -> ProblemTime:
        now = self.clock.now()
        left = self.rule.total_s - (now - self.start)
        problems_left = max(1, self.rule.num_problems - self.done)
        budget = problem_budget(left, problems_left, self.rule)
        deadline = now + max(0.0, budget - self.rule.stop_margin_s)
        return ProblemTime(self.done, now, budget, deadline, left, problems_left)

    def end(self, pt: ProblemTime) -> float:
        """Record the end of the problem `pt`; returns the seconds it used."""
        used = self.clock.now() - pt.start
        self.done += 1
        self.used_s.append(used)
        self.banked_s += pt.budget_s - used
        return used
