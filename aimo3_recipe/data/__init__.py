"""aimo3_recipe.data: datasets (loaders), preprocessing (answers, dedup, decontamination),
renderers (chat text + loss masks for CoT and TIR), synthetic (offline generator)."""

from aimo3_recipe.data.datasets import DATASETS, load_math_dataset
from aimo3_recipe.data.records import MathRecord
from aimo3_recipe.data.renderers import build_messages, render_example, render_prompt
from aimo3_recipe.data.synthetic import generate_synthetic

__all__ = ["DATASETS", "MathRecord", "build_messages", "generate_synthetic",
           "load_math_dataset", "render_example", "render_prompt"]
