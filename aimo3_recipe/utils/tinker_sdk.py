"""The thin layer between our code and the `tinker` SDK: the API key, the connection, SDK
version differences, retries, and keeping the key out of every message.

SDK versions. The SkyRL test server speaks SDK <= 0.24.1 (newer SDKs send protobuf bodies it
rejects: tested with 0.38.0). Where the SDKs differ, `resolve` is the one adapter: 0.38 returns
futures of clients from `create_lora_training_client`, `create_training_client_from_state*`,
`create_sampling_client` and `save_weights_and_get_sampling_client` (call `.result()`), 0.24
returns the clients themselves. tests/test_tinker_sdk.py checks it against both SDKs.

Retries (`call`). Every request is one attempt with a deadline; network errors, timeouts,
408/409/429 and 5xx are retried with exponential backoff and full jitter, up to
`RetryPolicy.max_attempts` over at most `RetryPolicy.max_seconds`; then `TinkerServiceError`
says which operation failed, after how many attempts, and (from the caller) how to resume.
The SDK's own resubmission of a request is switched off (`connect`): a resent forward/backward
or optimizer step is applied twice by a server that does not deduplicate requests (SkyRL does
not), and only the caller knows how to make it safe (rl/tinker_backend.py restores the last
saved state and replays its journal). The SDK still retries polling for a result, which is
read-only.

Secrets. The key is read from TINKER_API_KEY or a `.env` file (python-dotenv, without touching
os.environ) and handed to the SDK only; `redact` removes it (and WANDB_API_KEY) from any text
we log or raise, and configs never hold it.
"""

from __future__ import annotations

import concurrent.futures
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aimo3_recipe.exceptions import Aimo3Error, require

T = TypeVar("T")
RETRYABLE_STATUS = (408, 409, 429)  # plus every 5xx
SECRET_ENV = ("TINKER_API_KEY", "WANDB_API_KEY")


class TinkerServiceError(Aimo3Error, RuntimeError):
    """A Tinker request failed for good (retries exhausted, or an error retrying cannot fix)."""


def load_api_key(env_file: str | Path = ".env") -> str | None:
    """TINKER_API_KEY from the environment, else from `env_file` (not exported to os.environ)."""
    key = os.environ.get("TINKER_API_KEY")
    if key:
        return key
    path = Path(env_file)
    if path.is_file():
        dotenv = require("dotenv", "tinker", "reading TINKER_API_KEY from .env")
        return dotenv.dotenv_values(path).get("TINKER_API_KEY") or None
    return None


def secrets() -> list[str]:
    """Secret values that must never appear in what we write (keys of the env and .env)."""
    found = {os.environ.get(name, "") for name in SECRET_ENV}
    key = load_api_key()
    found.add(key or "")
    return sorted((s for s in found if len(s) >= 6), key=len, reverse=True)


def redact(text: str, extra: list[str] | None = None) -> str:
    """`text` with every secret value replaced by '***'."""
    for secret in (extra or []) + secrets():
        if secret:
            text = text.replace(secret, "***")
    return text


def resolve(obj: Any, timeout: float | None = None) -> Any:
    """A client from what an SDK returned: the client itself (SDK <= 0.24) or a future of
    it (newer SDKs: `BackcompatTrainingClientFuture` and friends, which also subclass the
    client, so the type alone does not tell)."""
    if type(obj).__name__.startswith("Backcompat") or isinstance(obj, concurrent.futures.Future):
        return obj.result(timeout)
    return obj


@dataclass
class RetryPolicy:
    max_attempts: int = 8  # attempts per request, the first included
    base_delay: float = 1.0  # seconds before the first retry (doubles each time, full jitter)
    max_delay: float = 30.0  # cap on one wait
    timeout: float = 300.0  # seconds one attempt may take (submit + result)
    max_seconds: float = 900.0  # give up on a request after this long in all


def is_transient(err: BaseException) -> bool:
    """Network errors, timeouts, 408/409/429 and 5xx: worth retrying."""
    if isinstance(err, (TimeoutError, concurrent.futures.TimeoutError, ConnectionError)):
        return True
    try:
        import httpx
        import tinker
    except ImportError:
        return False
    if isinstance(err, (tinker.APIConnectionError, httpx.TransportError)):
        return True  # APITimeoutError is an APIConnectionError
    if isinstance(err, tinker.APIStatusError):
        return err.status_code in RETRYABLE_STATUS or err.status_code >= 500
    retryable = getattr(getattr(tinker, "lib", None), "retryable_exception", None)
    if retryable is not None and isinstance(err, retryable.RetryableException):
        return True
    # polling a result that gave up on a transport error raises `... from` that error
    cause = err.__cause__
    return cause is not None and cause is not err and is_transient(cause)


class Retrier:
    """Runs requests under a RetryPolicy and counts what happened (`stats`, for metrics)."""

    def __init__(self, policy: RetryPolicy | None = None, *, sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None) -> None:
        self.policy = policy or RetryPolicy()
        self.stats: Counter[str] = Counter()
        self._sleep = sleep
        self._rng = rng or random.Random()

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based): full jitter over an
        exponentially growing cap."""
        cap = min(self.policy.max_delay, self.policy.base_delay * 2 ** (attempt - 1))
        return self._rng.uniform(0.0, cap)

    def call(self, op: str, fn: Callable[[], Any], *, on_failure: Callable[[BaseException], None]
             | None = None) -> Any:
        """Run `fn` (which returns a value or an SDK future) until it succeeds. `on_failure`
        runs after a failed attempt, before the next one (e.g. to restore server state when
        the attempt may have been applied)."""
        start = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            try:
                return wait(fn(), self.policy.timeout)
            except Exception as err:  # noqa: BLE001 - classified below, never swallowed
                elapsed = time.monotonic() - start
                self.stats[f"tinker/errors/{op}"] += 1
                if not is_transient(err):
                    raise TinkerServiceError(f"Tinker {op} failed: {describe(err)}") from None
                if attempt >= self.policy.max_attempts or elapsed >= self.policy.max_seconds:
                    raise TinkerServiceError(
                        f"Tinker {op} failed {attempt} times over {elapsed:.0f} s; last error: "
                        f"{describe(err)}") from None
                self.stats["tinker/retries"] += 1
                self._sleep(min(self.delay(attempt),
                                max(0.0, self.policy.max_seconds - elapsed)))
                if on_failure is not None:
                    on_failure(err)


def wait(value: Any, timeout: float) -> Any:
    """The result of an SDK future (cancelled when it takes longer than `timeout`), or the
    value itself when it is not a future."""
    future = getattr(value, "future", None)
    if callable(getattr(value, "result", None)) and (future is not None
                                                      or isinstance(value, concurrent.futures.Future)):
        try:
            return value.result(timeout=timeout)
        except (TimeoutError, concurrent.futures.TimeoutError):
            inner = value.future() if callable(future) else value
            if isinstance(inner, concurrent.futures.Future):
                inner.cancel()  # stops the SDK's polling; the caller decides what is safe
            raise
    return value


def describe(err: BaseException) -> str:
    """One line about an error, secrets removed."""
    status = getattr(err, "status_code", None)
    text = f"{type(err).__name__}{f' (HTTP {status})' if status else ''}: {err}"
    return redact(text.splitlines()[0] if text else type(err).__name__)[:400]


def connect(base_url: str | None, api_key: str | None):
    """A ServiceClient whose requests are each sent once (see the module docstring)."""
    tinker = require("tinker", "tinker", "training through Tinker")
    kwargs: dict[str, Any] = {"max_retries": 0}
    if base_url:
        kwargs["base_url"] = base_url
    if api_key:
        kwargs["api_key"] = api_key
    service = tinker.ServiceClient(**kwargs)
    holder = service.holder  # the SDK's connection; 0.24 and 0.38 both have it

    async def once(func, *args, **kw):
        return await func(*args, **kw)

    holder.execute_with_retries = once
    return service


def split_tinker_path(path: str) -> tuple[str, str]:
    """tinker://RUN/[sampler_weights/]CHECKPOINT -> (RUN, CHECKPOINT). Parsed here because
    servers differ in the middle part (SkyRL 0.3 leaves it out of save_weights_for_sampler's
    path, which SDK 0.24's own parser then rejects)."""
    if not path.startswith("tinker://"):
        raise ValueError(f"not a tinker:// path: {path!r}")
    parts = [p for p in path.removeprefix("tinker://").split("/") if p]
    if len(parts) < 2:
        raise ValueError(f"a tinker:// path needs a run and a checkpoint: {path!r}")
    return parts[0], parts[-1]


def sdk_version() -> str:
    from importlib.metadata import version

    try:
        return version("tinker")
    except Exception:  # noqa: BLE001 - only for a log line
        return "unknown"
