"""Sequence packing that keeps examples apart in attention, and the batch collator for SFT.

Packing puts several short examples in one row so no compute is spent on padding. It is only
correct if a token cannot attend to the other examples in its row. What we found reading
transformers 5.24 and TRL 1.16 (and what `tests/test_packing.py` checks):

- TRL's default packing (`packing_strategy="bfd"`) switches on padding-free batches: all rows
  of a micro-batch are concatenated into ONE row of shape [1, B*L] with `position_ids` that
  restart at 0 for each example and no `attention_mask`.
- FlashAttention (`flash_attention_2/3`) turns those restarts into varlen sequence boundaries
  (`cu_seq_lens`): examples stay separate, and cost grows with each example's own length.
- SDPA / eager / flex: `masking_utils.create_causal_mask` detects the restarts when
  `attention_mask` is None and no KV cache is passed (TRL passes `use_cache=False`), and builds
  a block-diagonal causal mask: examples stay separate too. But the mask is dense, so one
  [1, B*L] row costs (B*L)^2 attention instead of B*L^2: B times too much.
- Any `attention_mask` (TRL's `wrapped` strategy, or padded rows with packing) switches that
  detection off and examples DO attend to each other.

So: with FlashAttention we use TRL's padding-free layout ("flat"); with SDPA/eager we keep B
rows of at most `pack_length` tokens, each with restarting `position_ids` and no attention
mask ("rows"); a model whose attention ignores restarts (old remote code) is probed with
`examples_stay_separate` and trained unpacked ("padded").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aimo3_recipe.data.renderers import IGNORE_INDEX

LAYOUTS = ("padded", "rows", "flat")
# attention implementations that read sequence boundaries from position_ids as varlen kernels
_VARLEN_PREFIXES = ("flash_attention", "paged|flash_attention", "kernels-community/flash")


def pack_dataset(dataset, pack_length: int):
    """Best-fit-decreasing packing (TRL's `pack_dataset`, strategy "bfd") of a tokenized
    dataset with `input_ids` and `labels` into rows of at most `pack_length` tokens; adds
    `seq_lengths` (the example lengths inside each row). Longer examples are truncated."""
    from trl.data_utils import pack_dataset as trl_pack_dataset

    return trl_pack_dataset(dataset.select_columns(["input_ids", "labels"]), pack_length, "bfd")


def attention_implementation(model) -> str:
    config = getattr(model, "config", None)
    return str(getattr(config, "_attn_implementation", None) or "eager")


def choose_layout(model, packing: bool) -> str:
    """'padded' without packing; 'flat' for varlen (Flash) attention; 'rows' otherwise."""
    if not packing:
        return "padded"
    impl = attention_implementation(model)
    return "flat" if impl.startswith(_VARLEN_PREFIXES) else "rows"


@dataclass
class SFTCollator:
    """Batches tokenized examples (`input_ids`, `labels`, optional `seq_lengths`).

    layout "padded": right-padded rows with an attention mask (one example per row).
    layout "rows": packed rows, `position_ids` restart per example, no attention mask.
    layout "flat": TRL's padding-free [1, N] row (FlashAttention varlen).
    `num_real_tokens` counts the non-padding tokens collated so far (for tokens/s).
    """

    pad_token_id: int  # id written into padding positions (never trained on)
    layout: str = "padded"  # padded | rows | flat (see the class docstring)
    pad_to_multiple_of: int | None = None  # round row lengths up (tensor-core friendly)
    num_real_tokens: int = 0  # running count of real (non-padding) tokens collated

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            from aimo3_recipe.exceptions import ConfigError

            raise ConfigError(f"collator layout must be one of {LAYOUTS}; got {self.layout!r}")
        from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

        self._trl = DataCollatorForLanguageModeling(
            pad_token_id=self.pad_token_id, padding_free=self.layout == "flat",
            return_position_ids=self.layout == "rows", pad_to_multiple_of=self.pad_to_multiple_of)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        self.num_real_tokens += sum(len(e["input_ids"]) for e in examples)
        batch = self._trl(examples)
        if self.layout == "rows":
            # No attention mask: its presence would switch off packed-sequence detection.
            # Padding positions are 0, 0, ...: each pad token is its own one-token sequence.
            del batch["attention_mask"]
            # The first token of an example must not be predicted from the previous example.
            batch["labels"][batch["position_ids"] == 0] = IGNORE_INDEX
        return batch


def examples_stay_separate(model, layout: str) -> bool:
    """Probe: are an example's logits the same packed behind another example as alone?

    Two short random examples run packed (in `layout`), joined as one sequence (the second
    then sees the first: the size of a leak) and the second alone. Packing is safe when the
    packed error is under a tenth of the leak, a scale that holds in fp32 and bf16 alike.
    A few milliseconds even for a large model; not usable under DeepSpeed ZeRO-3.
    """
    import torch

    if layout == "padded":
        return True
    device = next(model.parameters()).device
    vocab = model.get_input_embeddings().weight.shape[0]
    g = torch.Generator().manual_seed(0)
    first, second = (torch.randint(1, vocab, (n,), generator=g).tolist() for n in (5, 7))
    packed = SFTCollator(pad_token_id=0, layout=layout)(
        [{"input_ids": first + second, "labels": first + second,
          "seq_lengths": [len(first), len(second)]}])
    packed.pop("labels")
    packed = {k: v.to(device) if torch.is_tensor(v) else v for k, v in packed.items()}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            def logits(**inputs):
                return model(**inputs, use_cache=False).logits[0].float()

            out_packed = logits(**packed)[len(first):]
            out_joined = logits(input_ids=torch.tensor([first + second], device=device))[len(first):]
            out_alone = logits(input_ids=torch.tensor([second], device=device))
    finally:
        model.train(was_training)
    error = (out_packed - out_alone).abs().max().item()
    leak = (out_joined - out_alone).abs().max().item()
    return error <= 0.1 * leak
