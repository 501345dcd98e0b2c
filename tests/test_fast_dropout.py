"""NRCCR's CPU dropout masks (ccr_core.methods.heads.dropout_mask, FastDropout, the attention layer's own
dropout path): the distribution of torch's dropout -- each element dropped independently with probability p,
the kept ones scaled by 1 / (1 - p) -- from another random stream, fixed by torch.manual_seed; eval mode
is deterministic and draws nothing."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ccr_core.methods import build_method
from ccr_core.methods.heads import AttentionLayer, FastDropout, dropout_mask, use_fast_dropout


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mask_drop_rate_and_scale(p, dtype):
    torch.manual_seed(0)
    n = 400_000
    mask = dropout_mask((n // 400, 400), p, dtype)
    assert mask.shape == (n // 400, 400) and mask.dtype == dtype
    values = set(mask.unique().tolist())
    assert values == {0.0, torch.tensor(1 / (1 - p), dtype=dtype).item()}  # 0 or 1 / (1 - p) in the mask's dtype
    dropped = (mask == 0).double().mean().item()
    assert abs(dropped - p) < 5 * math.sqrt(p * (1 - p) / n)  # 5 standard errors of a binomial rate
    assert mask.double().mean().item() == pytest.approx(1.0, abs=5 * math.sqrt(p / (1 - p) / n))  # E[mask] = 1


def test_mask_elements_are_independent():
    """No correlation between neighbouring elements (rows, columns) nor between consecutive masks."""
    torch.manual_seed(1)
    p = 0.3
    a, b = (dropout_mask((500, 500), p) == 0).double(), (dropout_mask((500, 500), p) == 0).double()
    bound = 5 / 500  # 5 standard errors of a correlation over 250,000 pairs
    for x, y in [(a[:, 1:], a[:, :-1]), (a[1:], a[:-1]), (a, b)]:
        x, y = x.flatten() - p, y.flatten() - p
        assert abs((x * y).mean().item() / (p * (1 - p))) < bound


def test_masks_follow_torch_seed():
    torch.manual_seed(7)
    first = dropout_mask((64, 33), 0.1)
    torch.manual_seed(7)
    assert torch.equal(dropout_mask((64, 33), 0.1), first)
    assert not torch.equal(dropout_mask((64, 33), 0.1), first)
    state = torch.get_rng_state()  # saving and restoring torch's random state restores the masks
    again = dropout_mask((64, 33), 0.1)
    torch.set_rng_state(state)
    assert torch.equal(dropout_mask((64, 33), 0.1), again)


def test_fast_dropout_layer_train_and_eval():
    layer = FastDropout(0.2)
    x = torch.randn(300, 200, requires_grad=True)
    torch.manual_seed(0)
    y = layer(x)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.8)
    y.sum().backward()  # the gradient goes through the same mask
    assert torch.allclose(x.grad, kept.float() / 0.8)
    layer.eval()
    state = torch.get_rng_state()
    assert torch.equal(layer(x), x) and torch.equal(torch.get_rng_state(), state)  # eval: identity, no draw
    assert torch.equal(FastDropout(0.0).train()(x), x)
    assert not FastDropout(1.0).train()(x).any()  # p = 1: nn.Dropout's all-zero output


def test_use_fast_dropout_replaces_only_plain_dropouts():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.3), AttentionLayer(8, 2, 0.1))
    use_fast_dropout(model)
    assert type(model[1]) is FastDropout and model[1].p == 0.3
    assert type(model[2].dropout) is FastDropout and model[2].fast_dropout
    assert not any(type(m) is nn.Dropout for m in model.modules())


def test_attention_dropout_path_matches_sdpa_in_distribution(monkeypatch):
    """The attention layer's own dropout path: with a mask that keeps everything it is the fused attention;
    with p, each attention probability is dropped independently at rate p and the kept ones are scaled."""
    import ccr_core.methods.heads as heads

    torch.manual_seed(0)
    layer = AttentionLayer(16, 2, dropout=0.25)
    layer.fast_dropout = True
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1] * 6, [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    q = torch.randn(3, 2, 2000, 8, dtype=torch.float64)
    k = torch.randn(3, 2, 6, 8, dtype=torch.float64)
    v = torch.eye(6, 8, dtype=torch.float64).expand(3, 2, 6, 8).contiguous()  # one-hot values: outputs are the probabilities
    probs = lambda: layer.attend(q, k, v, mask).view(3, 2000, 2, 8)[..., :6]  # noqa: E731 -- (S, Lq, nh, Lk)
    layer.eval()
    reference = probs()  # eval: scaled_dot_product_attention, no dropout
    layer.train()
    with monkeypatch.context() as m:
        m.setattr(heads, "dropout_mask", lambda shape, p, dtype: torch.ones(shape, dtype=dtype))
        assert torch.allclose(probs(), reference, atol=1e-12)
    dropped = probs()
    real = mask[:, None, None, :].expand_as(dropped)
    assert not dropped[~real].any()  # padding keys get nothing
    kept = dropped[real] != 0
    assert torch.allclose(dropped[real][kept], reference[real][kept] / 0.75)
    n = int(real.sum())
    assert abs((~kept).double().mean().item() - 0.25) < 5 * math.sqrt(0.25 * 0.75 / n)


def test_nrccr_uses_fast_dropout_and_eval_is_deterministic():
    torch.manual_seed(0)
    model = build_method("nrccr", None, text_dim=16, visual_dim=12, embed_dim=8, hidden_dim=8, num_heads=2, max_text_tokens=16,
                         languages=["en", "de"], video=False)
    assert not any(type(m) is nn.Dropout for name, m in model.named_modules() if not name.startswith("text_top"))
    assert model.attention.fast_dropout
    from ccr_core.methods import TextBatch

    text = TextBatch(torch.randn(4, 5, 16), torch.arange(5)[None] < torch.tensor([5, 3, 1, 4])[:, None])
    model.eval()
    with torch.no_grad():
        a = model.encode_text(text)
        state = torch.get_rng_state()
        assert torch.equal(model.encode_text(text), a) and torch.equal(torch.get_rng_state(), state)
    model.train()
    torch.manual_seed(3)
    b = model.encode_text(text)
    torch.manual_seed(3)
    assert torch.equal(model.encode_text(text), b)  # training draws follow torch's seed
