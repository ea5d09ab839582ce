"""Our exception types. Each subclasses the stdlib type it replaces, so callers that catch
ValueError / FileNotFoundError keep working, and each message says what to do."""


class Aimo3Error(Exception):
    """Base class for every error raised on purpose by aimo3_recipe."""


class ConfigError(Aimo3Error, ValueError):
    """A config field or CLI flag has a bad value; the message names the field and the fix."""


class ModelLoadError(Aimo3Error, OSError):
    """A model could not be found or loaded; the message lists every source that was tried."""


class DatasetError(Aimo3Error, ValueError):
    """A dataset could not be found or read; the message says where we looked."""


class ContextWindowError(Aimo3Error, ValueError):
    """A prompt leaves no room in an engine's context window (max_model_len)."""


class MissingDependencyError(Aimo3Error, ImportError):
    """An optional extra is needed (vllm, tinker, wandb, bitsandbytes); says how to install it."""


def require(module: str, extra: str, purpose: str):
    """Import an optional dependency or raise MissingDependencyError with the install line."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(
            f"{purpose} needs the `{module}` package, which is not installed "
            f"({e}). Install it with: pip install 'aimo3-recipe[{extra}]'"
        ) from e
