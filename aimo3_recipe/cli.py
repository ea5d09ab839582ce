"""The `aimo3` console script: `aimo3 train|eval|generate|demo|kaggle ...` forwards to the
modules' own command lines (`python -m aimo3_recipe.<module>` works the same)."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "train": ("aimo3_recipe.training.train", "train a model (SFT-CoT, SFT-TIR, RL)"),
    "eval": ("aimo3_recipe.evaluation.evaluate", "evaluate a model on a benchmark"),
    "generate": ("aimo3_recipe.inference.generate", "solve one problem with a strategy"),
    "demo": ("aimo3_recipe.demo", "run the demo on the embedded default model"),
    "kaggle": ("aimo3_recipe.inference.aimo.cli", "AIMO3 solver: gateway, predict, serve"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: aimo3 {" + ",".join(COMMANDS) + "} [args...]\n")
        for name, (_, help_) in COMMANDS.items():
            print(f"  {name:<9} {help_}")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return int(module.cli(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
