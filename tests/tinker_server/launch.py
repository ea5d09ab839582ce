"""Start SkyRL's Tinker-API server (skyrl 0.3.0, JAX on CPU) from its own virtualenv.

Run with `.venv-skyrl/bin/python tests/tinker_server/launch.py --base-model <folder>
--host 127.0.0.1 --port N [other skyrl.tinker.api flags]`; `... launch.py engine <flags>`
starts the engine process (the API server runs that itself). Two workarounds for skyrl 0.3.0,
found on Python 3.11 (see issue 15):

- it uses `typing.TypedDict` inside pydantic models, which pydantic rejects before Python
  3.12: `typing.TypedDict` is aliased to `typing_extensions.TypedDict` before skyrl imports;
- its API server starts the engine with `uv run ... -m skyrl.tinker.engine`, which needs uv
  and a project checkout: the engine is started with this interpreter and this launcher
  instead (same config flags).

Nothing here listens anywhere but the --host given (the tests pass 127.0.0.1).
"""

from __future__ import annotations

import runpy
import sys
import typing

import typing_extensions

typing.TypedDict = typing_extensions.TypedDict  # type: ignore[misc]  # before skyrl imports


def _engine_cmd(parent_cmd, engine_config):
    from skyrl.tinker.config import config_to_argv

    return [sys.executable, __file__, "engine", *config_to_argv(engine_config)]


def main() -> None:
    if sys.argv[1:] == ["--check"]:  # setup.sh: the server imports with the workarounds
        import skyrl.tinker.api
        import skyrl.tinker.engine  # noqa: F401

        print("[tinker-server] skyrl.tinker.api and .engine import")
        return
    if len(sys.argv) > 1 and sys.argv[1] == "engine":
        sys.argv = ["skyrl.tinker.engine", *sys.argv[2:]]
        runpy.run_module("skyrl.tinker.engine", run_name="__main__", alter_sys=True)
        return
    import argparse

    import uvicorn
    from skyrl.tinker import api
    from skyrl.tinker.config import EngineConfig, add_model
    from skyrl.utils.log import get_uvicorn_log_config

    api._build_uv_run_cmd_engine = _engine_cmd
    # what `python -m skyrl.tinker.api` does in its __main__ block
    parser = argparse.ArgumentParser(description="SkyRL Tinker API server (test launcher)")
    add_model(parser, EngineConfig)
    parser.add_argument("--host", type=str, default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    api.app.state.engine_config = EngineConfig.model_validate(
        {k: v for k, v in vars(args).items() if k in EngineConfig.model_fields})
    uvicorn.run(api.app, host=args.host, port=args.port, log_config=get_uvicorn_log_config())

if __name__ == "__main__":
    main()
