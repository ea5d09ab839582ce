"""What the two Tinker entry points share: the connection, the training client (new, or from
the newest checkpoint with its optimizer), the logger, the closing export and the message a
failed run ends with.

A run's folder (`log_dir`): config.json (no secrets: the key is never in the config),
metrics.jsonl, samples.jsonl (RL, with save_samples), checkpoints/step-N/tinker.json (the
tinker:// state path; rl/checkpoints.py's layout, so a folder without state.json is an
unfinished write and is ignored), and at the end adapter/ (PEFT) + model/ (merged).
"""

from __future__ import annotations

import io
import json
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.rl.checkpoints import latest_checkpoint, trim_jsonl
from aimo3_recipe.rl.tinker_backend import TinkerBackend, read_state
from aimo3_recipe.training.tinker_config import TinkerTrainConfig
from aimo3_recipe.utils.notice import notice
from aimo3_recipe.utils.tinker_sdk import (
    Retrier,
    RetryPolicy,
    TinkerServiceError,
    connect,
    load_api_key,
    redact,
    resolve,
    sdk_version,
    split_tinker_path,
)


def open_backend(cfg: TinkerTrainConfig, tokenizer, *, learning_rate: float,
                 max_grad_norm: float, kind: str, seed: int,
                 logs: tuple[str, ...] = ("metrics.jsonl",)) -> tuple[Any, TinkerBackend, int]:
    """(service client, backend, the step to start from): a new LoRA training client, or the
    newest checkpoint's state with its optimizer (the logs are cut back to that step). `seed`: the
    section's (sft.seed or rl.seed), which seeds the new LoRA's init."""
    key = load_api_key()
    if not key:
        raise ConfigError("TINKER_API_KEY is not set: export it, or put TINKER_API_KEY=... in a "
                          ".env file in the working directory")
    retrier = Retrier(RetryPolicy(max_attempts=cfg.retry_attempts, timeout=cfg.request_timeout,
                                  max_seconds=cfg.retry_seconds))
    service = retrier.call("connect", lambda: connect(cfg.base_url, key))
    run = Path(cfg.log_dir)
    found = latest_checkpoint(run / "checkpoints")
    if found:
        path, start = found
        state = read_state(path)
        client = retrier.call("create_training_client_from_state_with_optimizer", lambda: resolve(
            service.create_training_client_from_state_with_optimizer(state)))
        for log in logs:
            trim_jsonl(run / log, start)
        notice(f"Tinker {kind} resumes from {path} (step {start}; state {state})")
        backend = TinkerBackend(client, tokenizer, learning_rate=learning_rate,
                                max_grad_norm=max_grad_norm, retrier=retrier, base_state=state,
                                name_prefix=kind)
        return service, backend, start
    if cfg.init_state:
        init = cfg.init_state
        client = retrier.call("create_training_client_from_state", lambda: resolve(
            service.create_training_client_from_state(init)))
        notice(f"Tinker {kind}: starts from {init} (weights; a new optimizer), tinker SDK "
               f"{sdk_version()}")
    else:
        client = retrier.call("create_lora_training_client", lambda: resolve(
            service.create_lora_training_client(base_model=cfg.model_name, rank=cfg.lora_rank,
                                                seed=seed)))
        notice(f"Tinker {kind}: new LoRA (rank {cfg.lora_rank}) on {cfg.model_name}, tinker "
               f"SDK {sdk_version()}")
    backend = TinkerBackend(client, tokenizer, learning_rate=learning_rate,
                            max_grad_norm=max_grad_norm, retrier=retrier, name_prefix=kind)
    return service, backend, 0


def make_logger(cfg: TinkerTrainConfig, resume: bool, extra: dict[str, Any]):
    from aimo3_recipe.utils.ml_log import MetricsLogger

    report = "wandb" if cfg.wandb_project else "none"
    return MetricsLogger(cfg.log_dir, report, config={"tinker": cfg, **extra},
                         run_name=cfg.wandb_name, project=cfg.wandb_project or "aimo3-recipe",
                         resume=resume)


def stopped_message(err: BaseException, cfg: TinkerTrainConfig, kind: str) -> str:
    """What a run that failed for good says: what failed, and how to go on."""
    found = latest_checkpoint(Path(cfg.log_dir) / "checkpoints")
    where = (f"the newest checkpoint is step {found[1]} ({found[0]})" if found
             else "no checkpoint was saved yet (it starts over)")
    script = f"aimo3_recipe/training/tinker_{kind}_math.py"
    return redact(f"{err}\nThe Tinker {kind} run stopped; {where}. Rerun the same command "
                  f"(python {script} ... log_dir={cfg.log_dir}) to resume from there.")


def run_cli(main, kind: str, argv: list[str] | None = None) -> None:
    """`python tinker_<kind>_math.py key=value ...`: chz parses the config tree
    (`rl.group_size=16`; `--help` lists it by section); a bad setting ends with a one-line
    error and exit status 2, a failed run with `stopped_message` and exit status 1, without
    a traceback."""
    from aimo3_recipe.config import chz_config
    from aimo3_recipe.training.tinker_config import SECTION_DEFAULTS

    usage = (f"python aimo3_recipe/training/tinker_{kind}_math.py key=value ... "
             f"(the {kind} entry point reads the top level and `{kind}.*`)")
    try:
        cfg = chz_config(TinkerTrainConfig, sys.argv[1:] if argv is None else argv,
                         SECTION_DEFAULTS, usage)
        main(cfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except TinkerServiceError as err:
        print(stopped_message(err, cfg, kind), file=sys.stderr)
        raise SystemExit(1) from None


# -- export ----------------------------------------------------------------------------------
def export_weights(service, backend: TinkerBackend, cfg: TinkerTrainConfig) -> Path | None:
    """The trained LoRA weights downloaded into {log_dir}/adapter (a PEFT adapter folder) and,
    when the base model is a local folder or a loadable hub id, merged into {log_dir}/model
    (what our engines and `evaluate` read). Returns the model (or adapter) folder."""
    run = Path(cfg.log_dir)
    retrier = backend.retrier
    saved = retrier.call("save_weights_for_sampler",
                         lambda: backend.client.save_weights_for_sampler(name="final"))
    rest = service.create_rest_client()
    run_id, checkpoint = split_tinker_path(saved.path)
    url = retrier.call("get_checkpoint_archive_url", lambda:
                       rest.get_checkpoint_archive_url(run_id, checkpoint)).url
    data = retrier.call("download adapter", lambda: _download(url, cfg.request_timeout))
    adapter = run / "adapter"
    unpack_adapter(data, adapter, cfg.model_name)
    (run / "sampler.json").write_text(json.dumps({"sampler_path": saved.path}) + "\n")
    try:
        model = merge_adapter(adapter, cfg.model_name, run / "model")
    except Exception as err:  # noqa: BLE001 - the adapter is there; say why there is no merge
        notice(f"Tinker export: adapter in {adapter}; no merged model ({type(err).__name__}: "
               f"{redact(str(err))[:200]})")
        return adapter
    return model


def _download(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def unpack_adapter(archive: bytes, out: Path, base_model: str) -> Path:
    """Extract a Tinker weights archive into a PEFT adapter folder. Fills in what a server may
    leave out (SkyRL writes no target_modules): the modules named by the weights, and the
    base model."""
    from safetensors import safe_open

    tmp = Path(tempfile.mkdtemp(prefix="tinker-adapter-"))
    try:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        configs = list(tmp.rglob("adapter_config.json"))
        if not configs:
            raise TinkerServiceError(f"the weights archive holds no adapter_config.json "
                                     f"(files: {[p.name for p in tmp.rglob('*')][:10]})")
        src = configs[0].parent
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(src, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    config = json.loads((out / "adapter_config.json").read_text())
    if not config.get("target_modules"):
        with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
            names = {k.split(".lora_")[0].rsplit(".", 1)[-1] for k in f.keys() if ".lora_" in k}  # noqa: SIM118
        config["target_modules"] = sorted(names)
    config["base_model_name_or_path"] = base_model
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out


def merge_adapter(adapter: Path, base_model: str, out: Path) -> Path:
    """Base model + adapter merged into a plain transformers folder (with the tokenizer)."""
    from peft import PeftModel

    from aimo3_recipe.models import load_model, load_tokenizer

    base = load_model(base_model, device="cpu", dtype="float32")
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    merged.save_pretrained(out)
    load_tokenizer(base_model).save_pretrained(out)
    load_tokenizer(base_model).save_pretrained(adapter)
    return out
