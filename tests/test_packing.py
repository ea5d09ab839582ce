"""Packing keeps examples apart: per-example losses are the same packed as unpacked, on a tiny
model with SDPA and eager attention; the naive layout (an attention mask of ones over the
packed row) is shown to leak, so the comparison can fail."""

from __future__ import annotations

import pytest
import torch

from aimo3_recipe.data.renderers import IGNORE_INDEX
from aimo3_recipe.training.packing import (
    SFTCollator,
    choose_layout,
    examples_stay_separate,
    pack_dataset,
)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: spinning OpenMP threads slow tiny models ~20x
    yield
    torch.set_num_threads(before)


def _examples(n: int = 6, seed: int = 0) -> list[dict]:
    """Random examples of varied length, the first 3 tokens of each masked (a 'prompt')."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        length = 5 + 7 * i % 23
        ids = torch.randint(3, 500, (length,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [IGNORE_INDEX] * 3 + ids[3:]})
    return out


def _model(tiny_tokenizer, attn: str):
    from aimo3_recipe.testing import make_tiny_model

    model = make_tiny_model(tiny_tokenizer)
    model.set_attn_implementation(attn)
    return model.eval()


def _per_token_nll(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T-1] loss of predicting token t+1 from tokens <= t, and the labels it is scored on."""
    labels = batch.pop("labels")
    with torch.no_grad():
        logits = model(**batch, use_cache=False).logits
    shift_labels = labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), shift_labels,
                                            reduction="none", ignore_index=IGNORE_INDEX)
    return nll, shift_labels


def _mean_loss(nll, labels, row: int, start: int, n: int) -> float:
    """Mean loss of the example occupying positions [start, start + n) of `row`."""
    span, lab = nll[row, start:start + n - 1], labels[row, start:start + n - 1]
    return span[lab != IGNORE_INDEX].mean().item()


def _per_example_losses_unpacked(model, examples) -> list[float]:
    out = []
    for ex in examples:
        nll, labels = _per_token_nll(model, SFTCollator(pad_token_id=0, layout="padded")([ex]))
        out.append(_mean_loss(nll, labels, 0, 0, len(ex["input_ids"])))
    return out


def _per_example_losses_packed(model, rows, layout: str) -> list[float]:
    """Run packed rows in `layout`; split the per-token losses back into their examples."""
    nll, labels = _per_token_nll(model, SFTCollator(pad_token_id=0, layout=layout)(rows))
    out = []
    offset = 0  # "flat" puts all rows one after another in row 0
    for r, row in enumerate(rows):
        start = offset if layout == "flat" else 0
        for n in row["seq_lengths"]:
            out.append(_mean_loss(nll, labels, 0 if layout == "flat" else r, start, n))
            start += n
        offset += sum(row["seq_lengths"])
    return out


def _rows(examples, pack_length):
    from datasets import Dataset

    ds = Dataset.from_list(examples)
    return list(pack_dataset(ds, pack_length))


def _reorder(rows, examples):
    """The examples in the order packing placed them (matched by their tokens)."""
    order = []
    for row in rows:
        pos = 0
        for n in row["seq_lengths"]:
            ids = row["input_ids"][pos:pos + n]
            order.append(next(i for i, e in enumerate(examples) if e["input_ids"] == ids))
            pos += n
    return order


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("layout", ["rows", "flat"])
def test_per_example_loss_is_the_same_packed_and_unpacked(tiny_tokenizer, attn, layout):
    model = _model(tiny_tokenizer, attn)
    examples = _examples()
    rows = _rows(examples, pack_length=40)
    assert len(rows) < len(examples)  # some rows really hold several examples
    assert any(len(r["seq_lengths"]) > 1 for r in rows)
    unpacked = _per_example_losses_unpacked(model, examples)
    packed = _per_example_losses_packed(model, rows, layout)
    order = _reorder(rows, examples)
    assert packed == pytest.approx([unpacked[i] for i in order], abs=1e-5)


def test_naive_packing_with_an_attention_mask_leaks_between_examples(tiny_tokenizer):
    model = _model(tiny_tokenizer, "sdpa")
    rows = _rows(_examples(), pack_length=40)
    clean = SFTCollator(pad_token_id=0, layout="rows")(rows)
    naive = {k: v.clone() for k, v in clean.items()}
    naive["attention_mask"] = torch.ones_like(naive["input_ids"])  # what "wrapped" packing does
    nll_clean, labels = _per_token_nll(model, clean)
    nll_naive, _ = _per_token_nll(model, naive)
    keep = labels != IGNORE_INDEX
    assert not torch.allclose(nll_naive[keep], nll_clean[keep], atol=1e-3)


def test_rows_collator_restarts_positions_and_masks_boundaries():
    rows = [{"input_ids": [5, 6, 7, 8, 9], "labels": [-100, 6, 7, -100, 9], "seq_lengths": [3, 2]},
            {"input_ids": [4, 3], "labels": [4, 3], "seq_lengths": [2]}]
    collator = SFTCollator(pad_token_id=0, layout="rows")
    batch = collator(rows)
    assert "attention_mask" not in batch
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 0, 0, 0]]
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [4, 3, 0, 0, 0]]
    # example starts and padding never carry loss
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9], [-100, 3, -100, -100, -100]]
    assert collator.num_real_tokens == 7


def test_padded_collator_masks_padding():
    batch = SFTCollator(pad_token_id=0, layout="padded")(
        [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [4], "labels": [4]}])
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [4, -100, -100]]


def test_pack_dataset_keeps_every_token_within_the_row_length():
    examples = _examples(n=8, seed=1)
    rows = _rows(examples, pack_length=30)
    assert all(len(r["input_ids"]) == sum(r["seq_lengths"]) <= 30 for r in rows)
    packed = sorted(tuple(r["input_ids"][sum(r["seq_lengths"][:i]):sum(r["seq_lengths"][:i + 1])])
                    for r in rows for i in range(len(r["seq_lengths"])))
    assert packed == sorted(tuple(e["input_ids"][:30]) for e in examples)


def test_layout_follows_the_attention_implementation(tiny_tokenizer):
    model = _model(tiny_tokenizer, "sdpa")
    assert choose_layout(model, packing=False) == "padded"
    assert choose_layout(model, packing=True) == "rows"
    model.config._attn_implementation = "flash_attention_2"
    assert choose_layout(model, packing=True) == "flat"


def test_probe_detects_attention_that_leaks(tiny_tokenizer):
    model = _model(tiny_tokenizer, "sdpa")
    assert examples_stay_separate(model, "rows") and examples_stay_separate(model, "flat")
    forward = model.forward

    def leaky_forward(input_ids=None, **kwargs):  # a model that builds its own full mask
        kwargs["attention_mask"] = torch.ones_like(input_ids)
        return forward(input_ids=input_ids, **kwargs)

    model.forward = leaky_forward
    assert not examples_stay_separate(model, "rows")
