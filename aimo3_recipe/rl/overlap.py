"""Where a step's rollouts come from: sampled in line, or ahead of time on a rollout thread.

`InlineRollouts` (`max_steps_off_policy=0`): step n samples from the current policy when it
starts, then trains, then syncs the sampler: strictly on-policy, the loop as it always was.

`OverlappedRollouts` (`max_steps_off_policy=k >= 1`): a background thread samples and grades
step n+1 while the training thread runs step n. Step s samples from the weights published
after step s-k (after `start_step` on a resume): a fixed lag, not "whatever is newest", so a
run repeats whatever the timing, and no rollout is older than k steps. The trainer publishes
a copy of its weights after each update (`backend.sampler_weights()`), the rollout thread
loads the version it needs between generations (`backend.detached_sampler(weights)`); the
versions no future step needs are dropped, so at most k+1 copies live at once. The loss
corrects for the lag with the truncated importance weights it already has
(min(exp(trainer - sampler), tis_cap), on at 2.0 when `tis_cap` is 0); each group records the
version that sampled it (`RolloutGroup.weight_version`, in samples.jsonl).

When it pays: the engine has its own compute (vLLM's engine core in its own process on spare
CPU cores, vLLM on other GPUs of the node, the Tinker service), so generation and the update
run at once and a step costs max(generation, update) instead of their sum. When it cannot:
the engine and the trainer share one GPU (or a few CPU cores): each phase already fills the
device, so running them at once mostly interleaves them; what remains is hiding Python
overhead, grading and weight copies, and the cost is staler rollouts and k+1 weight copies.

Evaluation runs on the rollout engine under the same lock, with the newest weights.
Only the rollout thread draws from the torch generator (HF sampling seeds it per call).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.inference.engine import Engine
from aimo3_recipe.rl.types import StepRollouts

# produce(step, engine): the step's groups, sampled on `engine` and graded
Produce = Callable[[int, Engine], StepRollouts]


class InlineRollouts:
    """On-policy: sample when the step asks, from the live policy."""

    def __init__(self, backend, produce: Produce) -> None:
        self.backend, self.produce = backend, produce

    def get(self, step: int) -> StepRollouts:
        return _stamped(self.produce(step, self.backend.sampler()), step)

    def publish(self, version: int, changed: bool) -> dict[str, float]:
        """The weights after step `version`: the sampler uses them from now on."""
        return self.backend.sync_sampler() if changed else {}

    @contextmanager
    def eval_engine(self) -> Iterator[Engine]:
        yield self.backend.sampler()

    def close(self) -> None:
        pass


class OverlappedRollouts:
    """Off-policy by a fixed k steps: a rollout thread runs ahead of training (see module
    docstring). Errors on the rollout thread are raised by `get`."""

    def __init__(self, backend, produce: Produce, *, start_step: int, num_steps: int,
                 max_steps_off_policy: int) -> None:
        missing = [m for m in ("sampler_weights", "detached_sampler") if not hasattr(backend, m)]
        if missing:
            raise ConfigError(f"max_steps_off_policy={max_steps_off_policy} needs a backend with "
                              f"{' and '.join(missing)} ({type(backend).__name__} has not); "
                              "set max_steps_off_policy=0")
        self.backend, self.produce = backend, produce
        self.k, self.start, self.num_steps = max_steps_off_policy, start_step, num_steps
        self._cond = threading.Condition()
        self._weights: dict[int, Any] = {start_step: backend.sampler_weights()}
        self._latest = start_step
        self._results: dict[int, StepRollouts] = {}
        self._error: BaseException | None = None
        self._closed = False
        self._engine_lock = threading.Lock()  # one user of the engine at a time
        self._loaded: int | None = None  # the version the engine holds
        self._engine: Engine | None = None
        self._thread: threading.Thread | None = None

    def version_for(self, step: int) -> int:
        """The weights step `step` samples from: those after step - k (fixed lag)."""
        return max(self.start, step - self.k)

    def _engine_at(self, version: int) -> Engine:
        if self._loaded != version or self._engine is None:
            self._engine = self.backend.detached_sampler(self._weights_of(version))
            self._loaded = version
        return self._engine

    def _weights_of(self, version: int) -> Any:
        with self._cond:
            return self._weights[version]

    def _run(self) -> None:
        try:
            for step in range(self.start, self.num_steps):
                version = self.version_for(step)
                with self._cond:
                    self._cond.wait_for(lambda v=version: self._closed or v in self._weights)
                    if self._closed:
                        return
                with self._engine_lock:
                    t0 = time.perf_counter()
                    engine = self._engine_at(version)
                    loaded = time.perf_counter() - t0
                    out = self.produce(step, engine)
                out.metrics["time/sampler_load"] = loaded  # on this thread, overlapped
                with self._cond:
                    self._results[step] = _stamped(out, version)
                    self._cond.notify_all()
        except BaseException as e:  # noqa: BLE001 -- handed to the training thread by get()
            with self._cond:
                self._error = e
                self._cond.notify_all()

    def get(self, step: int) -> StepRollouts:
        if self._thread is None:  # started late: an evaluation before step 1 goes first
            self._thread = threading.Thread(target=self._run, name="rl-rollouts", daemon=True)
            self._thread.start()
        with self._cond:
            self._cond.wait_for(lambda: step in self._results or self._error is not None)
            if step in self._results:
                return self._results.pop(step)
            assert self._error is not None
            raise self._error

    def publish(self, version: int, changed: bool) -> dict[str, float]:
        """Record the weights after step `version` (a copy, taken now on the training
        thread; the previous copy again when the step did not update them)."""
        t0 = time.perf_counter()
        weights = self.backend.sampler_weights() if changed else self._weights_of(self._latest)
        with self._cond:
            self._weights[version] = weights
            self._latest = version
            for old in [v for v in self._weights if v < version - self.k]:
                del self._weights[old]  # every step still to sample needs >= version - k
            self._cond.notify_all()
        return {"time/weight_sync": time.perf_counter() - t0} if changed else {}

    @contextmanager
    def eval_engine(self) -> Iterator[Engine]:
        """The engine with the newest weights, while the rollout thread waits."""
        with self._engine_lock:
            yield self._engine_at(self._latest)

    def close(self) -> None:
        """Stop the rollout thread (after its current generation, if any)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None and self._error is None:
            self._thread.join(timeout=600)


def _stamped(out: StepRollouts, version: int) -> StepRollouts:
    out.weight_version = version
    for group in out.groups:
        group.weight_version = version
    return out


def make_rollouts(cfg, backend, produce: Produce, start_step: int):
    """Inline (on-policy) rollouts, or a rollout thread `cfg.max_steps_off_policy` ahead."""
    if cfg.max_steps_off_policy == 0:
        return InlineRollouts(backend, produce)
    return OverlappedRollouts(backend, produce, start_step=start_step, num_steps=cfg.num_steps,
                              max_steps_off_policy=cfg.max_steps_off_policy)
