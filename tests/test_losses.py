"""Each loss in ccr_core.methods.losses against a hand computation or an independent NumPy/SciPy
reference, plus backward / gradcheck tests."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import special

from ccr_core.methods import losses as L


def _unit(*shape: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g, dtype=dtype), dim=-1)


def _np_log_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def _np_softmax(x: np.ndarray, axis: int) -> np.ndarray:
    return np.exp(_np_log_softmax(x, axis))


# ---------------------------------------------------------------- InfoNCE and 1-to-K
def _np_info_nce(a: np.ndarray, b: np.ndarray, tau: float) -> float:
    n = a.shape[0]
    total_ab = total_ba = 0.0
    for i in range(n):
        row = [a[i] @ b[j] / tau for j in range(n)]
        col = [a[j] @ b[i] / tau for j in range(n)]
        total_ab += -(row[i] - math.log(sum(math.exp(x) for x in row)))
        total_ba += -(col[i] - math.log(sum(math.exp(x) for x in col)))
    return (total_ab / n + total_ba / n) / 2


def _np_one_to_k(v: np.ndarray, t: np.ndarray, tau: float, k: int, w=None) -> float:
    """Naive loops over docs/methods.md §7: t[i*k + kk] is caption kk of image i; ``w`` (K,) weights of the
    positives (each log-probability counted K·w_kk times; None: 1/K each, the paper)."""
    b = v.shape[0]
    w = [1.0 / k] * k if w is None else w
    text = lambda j, kk: t[j * k + kk]  # noqa: E731
    l_i2t = 0.0
    for i in range(b):
        denom = sum(math.exp(v[i] @ text(j, kk) / tau) for j in range(b) for kk in range(k))
        for kk in range(k):
            l_i2t -= k * w[kk] * math.log(math.exp(v[i] @ text(i, kk) / tau) / denom)
    l_i2t /= b
    l_t2i = 0.0
    for j in range(b):
        for kk in range(k):
            denom = sum(math.exp(v[i] @ text(j, kk) / tau) for i in range(b))
            l_t2i -= k * w[kk] * math.log(math.exp(v[j] @ text(j, kk) / tau) / denom)
    l_t2i /= b * k
    return (l_i2t + l_t2i) / (2 * k)


def test_info_nce_matches_loops():
    a, b = _unit(5, 7, seed=1, dtype=torch.float64), _unit(5, 7, seed=2, dtype=torch.float64)
    got = L.info_nce(a, b, 0.1).item()
    assert got == pytest.approx(_np_info_nce(a.numpy(), b.numpy(), 0.1), rel=1e-10)


def test_one_to_k_with_k1_is_info_nce_i_e_summed_directions_halved():
    v, t = _unit(6, 8, seed=3, dtype=torch.float64), _unit(6, 8, seed=4, dtype=torch.float64)
    got = L.one_to_k_contrastive(v, t, 0.07, k=1)
    logits = v @ t.T / 0.07
    labels = torch.arange(6)
    summed = F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)
    assert got.item() == pytest.approx(summed.item() / 2, rel=1e-12)
    assert got.item() == pytest.approx(L.info_nce(v, t, 0.07).item(), rel=1e-12)


def test_one_to_k_matches_naive_loop_k3_b4():
    v, t = _unit(4, 6, seed=5, dtype=torch.float64), _unit(12, 6, seed=6, dtype=torch.float64)
    got = L.one_to_k_contrastive(v, t, 0.2, k=3).item()
    assert got == pytest.approx(_np_one_to_k(v.numpy(), t.numpy(), 0.2, 3), rel=1e-10)


def test_one_to_k_language_weights_match_naive_loop_and_uniform_is_the_paper():
    v, t = _unit(4, 6, seed=5, dtype=torch.float64), _unit(12, 6, seed=6, dtype=torch.float64)
    w = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    got = L.one_to_k_contrastive(v, t, 0.2, 3, w).item()
    assert got == pytest.approx(_np_one_to_k(v.numpy(), t.numpy(), 0.2, 3, w.tolist()), rel=1e-10)
    assert got != pytest.approx(L.one_to_k_contrastive(v, t, 0.2, 3).item(), rel=1e-3)
    uniform = torch.full((3,), 1 / 3, dtype=torch.float64)
    assert L.one_to_k_contrastive(v, t, 0.2, 3, uniform).item() == pytest.approx(L.one_to_k_contrastive(v, t, 0.2, 3).item(), rel=1e-12)
    with pytest.raises(ValueError, match="summing to 1"):
        L.one_to_k_contrastive(v, t, 0.2, 3, torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64))


def test_one_to_k_english_weight_field_sets_the_language_weights():
    from ccr_core.methods import build_method

    torch.manual_seed(0)
    cfg = dict(text_dim=6, visual_dim=5, embed_dim=4, languages=["en", "de", "fr"], video=False, head="linear", dropout=0.0)
    a, b = build_method("one_to_k", None, **cfg), build_method("one_to_k", None, english_weight=0.5, **cfg)
    b.load_state_dict(a.state_dict())
    from ccr_core.methods import TextBatch
    gen = torch.Generator().manual_seed(1)
    text = {lang: TextBatch(torch.randn(4, 3, 6, generator=gen), torch.ones(4, 3, dtype=torch.bool)) for lang in ("en", "de", "fr")}
    batch = {"visual": torch.randn(4, 5, generator=gen), "text": text, "targets": ["de", "fr"], "item_ids": list("abcd")}
    a.eval(), b.eval()
    with torch.no_grad():
        v = a.encode_visual(batch["visual"])
        texts = torch.stack([a.encode_text(text[lang]) for lang in ("en", "de", "fr")], dim=1).reshape(-1, 4)
        tau = a.temperature()
        expected = L.one_to_k_contrastive(v, texts, tau, 3, torch.tensor([0.5, 0.25, 0.25]))
        assert b.loss(batch)["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
        assert a.loss(batch)["loss"].item() == pytest.approx(L.one_to_k_contrastive(v, texts, tau, 3).item(), rel=1e-6)


def test_one_to_k_rejects_wrong_text_count():
    with pytest.raises(ValueError):
        L.one_to_k_contrastive(_unit(4, 6), _unit(10, 6), 0.07, k=3)


def test_temperature_clamp_and_learnable_module():
    assert L.clamp_temperature(1.0) == 0.5
    assert L.clamp_temperature(1e-5) == 0.001
    assert L.clamp_temperature(torch.tensor(0.07)).item() == pytest.approx(0.07)
    module = L.LearnableTemperature()
    assert module().item() == pytest.approx(0.07)
    with torch.no_grad():
        module.temperature.fill_(3.0)
    assert module().item() == pytest.approx(0.5)
    with torch.no_grad():
        module.temperature.fill_(-1.0)
    assert module().item() == pytest.approx(0.001)
    with torch.no_grad():
        module.temperature.fill_(0.07)
    v, t = _unit(4, 6, seed=7), _unit(8, 6, seed=8)
    # two calls inside one graph must not trip autograd's in-place check
    loss = L.one_to_k_contrastive(v, t, module(), k=2) + L.info_nce(v, t[::2], module())
    loss.backward()
    assert module.temperature.grad is not None and torch.isfinite(module.temperature.grad)
    with pytest.raises(ValueError):
        L.LearnableTemperature(init=0.9)


# ---------------------------------------------------------------- triplet
def _triplet_3x3():
    # a = standard basis, so scores[i, j] = b[j][i]:
    # scores = [[0.8, 0, 0], [0.6, 0.6, 0], [0, 0.8, 1]]
    a = torch.eye(3, dtype=torch.float64)
    b = torch.tensor([[0.8, 0.6, 0.0], [0.0, 0.6, 0.8], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return a, b


def test_triplet_hardest_negative_hand_computed():
    a, b = _triplet_3x3()
    # a-anchored (rows): row 1 has 0.2 + 0.6 - 0.6 = 0.2, others 0 -> 0.2
    # b-anchored (cols): col 1 has 0.2 + 0.8 - 0.6 = 0.4, others 0 -> 0.4
    assert L.triplet_hardest_negative(a, b, margin=0.2).item() == pytest.approx(0.6)
    assert L.triplet_hardest_negative(a, b, margin=0.2, reduction="mean").item() == pytest.approx(0.2)
    # margin 0: row 1 is a tie (0.6 vs 0.6) and costs 0; col 1 still violates by 0.8 - 0.6 = 0.2
    assert L.triplet_hardest_negative(a, b, margin=0.0).item() == pytest.approx(0.2)


def test_triplet_positive_mask_removes_shared_image_pairs():
    a, b = _triplet_3x3()
    mask = torch.zeros(3, 3, dtype=torch.bool)
    mask[0, 1] = mask[1, 0] = True  # rows 0 and 1 share an image
    # row 1's violator (j=0) is now a positive -> only col 1's 0.4 is left
    assert L.triplet_hardest_negative(a, b, 0.2, positive_mask=mask).item() == pytest.approx(0.4)


# ---------------------------------------------------------------- NRCCR
def test_soft_ce_equals_teacher_entropy_and_kl_is_zero_when_equal():
    logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    p = _np_softmax(logits.numpy(), 1)
    entropy = -(p * np.log(p)).sum(1).mean()
    assert L.soft_cross_entropy_distillation(logits, logits).item() == pytest.approx(entropy, rel=1e-12)
    assert L.kl_distillation(logits, logits).item() == pytest.approx(0.0, abs=1e-12)


def test_soft_ce_matches_numpy_and_teacher_gets_no_gradient():
    g = torch.Generator().manual_seed(1)
    teacher = torch.randn(3, 6, generator=g, dtype=torch.float64, requires_grad=True)
    student = torch.randn(3, 6, generator=g, dtype=torch.float64, requires_grad=True)
    got = L.soft_cross_entropy_distillation(teacher, student)
    teacher_p = _np_softmax(teacher.detach().numpy(), 1)
    ref = -(teacher_p * _np_log_softmax(student.detach().numpy(), 1)).sum(1).mean()
    assert got.item() == pytest.approx(ref, rel=1e-12)
    got.backward()
    assert teacher.grad is None and student.grad is not None


def test_similarity_view_distillation_matches_numpy():
    v, h, c = (_unit(4, 5, seed=s, dtype=torch.float64) for s in (10, 11, 12))
    tau = 0.07
    got = L.similarity_view_distillation(v, h, c, tau).item()
    vn, hn, cn = v.numpy(), h.numpy(), c.numpy()
    teach, stud = vn @ hn.T / tau, vn @ cn.T / tau
    v2t = -(_np_softmax(teach, 1) * _np_log_softmax(stud, 1)).sum(1).mean()
    t2v = -(_np_softmax(teach.T, 1) * _np_log_softmax(stud.T, 1)).sum(1).mean()
    assert got == pytest.approx((v2t + t2v) / 2, rel=1e-10)


def test_similarity_view_distillation_gradients_follow_the_code():
    v, h, c = (_unit(4, 5, seed=s).requires_grad_() for s in (13, 14, 15))
    L.similarity_view_distillation(v, h, c).backward()
    assert h.grad is None and c.grad is not None and v.grad is not None
    # with c_t equal to h_c the student equals the teacher: loss = teacher entropy, KL part zero
    same = _unit(4, 5, seed=16, dtype=torch.float64)
    vv = _unit(4, 5, seed=17, dtype=torch.float64)
    logits = vv @ same.T / 0.07
    p_rows, p_cols = _np_softmax(logits.numpy(), 1), _np_softmax(logits.numpy().T, 1)
    entropy = (-(p_rows * np.log(p_rows)).sum(1).mean() - (p_cols * np.log(p_cols)).sum(1).mean()) / 2
    assert L.similarity_view_distillation(vv, same, same).item() == pytest.approx(entropy, rel=1e-10)


def test_feature_view_distillation_hand_computed():
    c_t = torch.tensor([[1.0, 5.0]])
    h_c = torch.zeros(1, 2)
    # SmoothL1, beta 4: |x| < 4 -> 0.5 x^2 / 4 = 0.125; |x| >= 4 -> |x| - 2 = 3; mean = 1.5625
    assert L.feature_view_distillation(c_t, h_c, beta=4.0).item() == pytest.approx(1.5625)
    assert L.feature_view_distillation(h_c, h_c).item() == 0.0


def test_adversarial_losses_hand_computed():
    zeros = torch.zeros(3, 1)
    assert L.discriminator_loss(zeros, zeros).item() == pytest.approx(math.log(2))
    en, tgt = torch.tensor([[2.0]]), torch.tensor([[-1.0]])
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    # English should be 1, target 0: 0.5 * (-log σ(2) - log(1 - σ(-1)))
    expected = 0.5 * (-math.log(sig(2.0)) - math.log(1 - sig(-1.0)))
    assert L.discriminator_loss(en, tgt).item() == pytest.approx(expected, rel=1e-6)
    # the encoder wants the target to look English: -log σ(-1)
    assert L.encoder_adversarial_loss(tgt).item() == pytest.approx(-math.log(sig(-1.0)), rel=1e-6)


# ---------------------------------------------------------------- CL2CM
def _padded_problem(dtype=torch.float64):
    g = torch.Generator().manual_seed(20)
    tokens_a = F.normalize(torch.randn(2, 5, 16, generator=g, dtype=dtype), dim=-1)
    tokens_b = F.normalize(torch.randn(2, 4, 16, generator=g, dtype=dtype), dim=-1)
    cost = 1 - tokens_a @ tokens_b.transpose(1, 2)  # (2, 5, 4), the word-OT cost 1 - cos
    mask_a = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    mask_b = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    return cost, L.uniform_marginals(mask_a, dtype), L.uniform_marginals(mask_b, dtype), mask_a, mask_b


def _np_sinkhorn(cost: np.ndarray, a: np.ndarray, b: np.ndarray, eps: float, iters: int) -> np.ndarray:
    """Plain (kernel-scaling) Sinkhorn on the support of a and b; same update order."""
    ia, ib = a > 0, b > 0
    k = np.exp(-cost[np.ix_(ia, ib)] / eps)
    u, v = np.ones(ia.sum()), np.ones(ib.sum())
    for _ in range(iters):
        u = a[ia] / (k @ v)
        v = b[ib] / (k.T @ u)
    plan = np.zeros_like(cost)
    plan[np.ix_(ia, ib)] = u[:, None] * k * v[None, :]
    return plan


def test_sinkhorn_meets_marginals_with_padding():
    cost, a, b, mask_a, mask_b = _padded_problem(torch.float32)
    plan = L.sinkhorn(cost, a, b, epsilon=0.05, iterations=50)
    assert torch.allclose(plan.sum(2), a, atol=1e-4)
    assert torch.allclose(plan.sum(1), b, atol=1e-4)
    pad = ~(mask_a[:, :, None] & mask_b[:, None, :])
    assert (plan[pad] == 0).all()
    assert torch.isfinite(plan).all()


def test_sinkhorn_converges_on_a_hard_cost_given_more_iterations():
    # costs spread over the whole [0, 2] range on tiny sets converge slowly at eps = 0.05:
    # 50 iterations leave row errors around 1e-2 here, 200 reach 1e-9 (columns are always exact)
    g = torch.Generator().manual_seed(20)
    cost = torch.rand(1, 5, 3, generator=g, dtype=torch.float64) * 2
    a, b = torch.full((1, 5), 0.2, dtype=torch.float64), torch.full((1, 3), 1 / 3, dtype=torch.float64)
    plan = L.sinkhorn(cost, a, b, epsilon=0.05, iterations=200)
    assert torch.allclose(plan.sum(2), a, atol=1e-8) and torch.allclose(plan.sum(1), b, atol=1e-12)


def test_sinkhorn_matches_plain_numpy_sinkhorn():
    cost, a, b, _, _ = _padded_problem(torch.float64)
    plan = L.sinkhorn(cost, a, b, epsilon=0.2, iterations=30)
    for i in range(2):
        ref = _np_sinkhorn(cost[i].numpy(), a[i].numpy(), b[i].numpy(), 0.2, 30)
        np.testing.assert_allclose(plan[i].numpy(), ref, atol=1e-12)
    single = L.sinkhorn(cost[0], a[0], b[0], epsilon=0.2, iterations=30)  # unbatched (P, Q)
    assert torch.allclose(single, plan[0])


def test_sinkhorn_stable_at_tiny_epsilon_and_rejects_empty_sequences():
    cost, a, b, _, _ = _padded_problem(torch.float32)
    plan = L.sinkhorn(cost, a, b, epsilon=1e-3, iterations=20)
    assert torch.isfinite(plan).all()
    # exponents reach C/eps ~ 2000, so float32 rounding alone leaves ~1e-5 on the columns
    assert torch.allclose(plan.sum(1), b, atol=1e-4)
    with pytest.raises(ValueError):
        L.sinkhorn(cost, torch.zeros_like(a), b)


def test_word_ot_loss_small_for_identical_and_permuted_token_sets():
    tokens = torch.randn(2, 6, 32, generator=torch.Generator().manual_seed(21))
    mask = torch.tensor([[1] * 6, [1] * 4 + [0] * 2], dtype=torch.bool)
    same = L.word_ot_loss(tokens, mask, tokens, mask)
    shuffled = L.word_ot_loss(tokens, mask, tokens[:, [3, 1, 0, 2, 4, 5]], mask[:, [3, 1, 0, 2, 4, 5]])
    other = L.word_ot_loss(tokens, mask, torch.randn(2, 5, 32), torch.ones(2, 5, dtype=torch.bool))
    assert 0 <= same.item() < 1e-3
    assert 0 <= shuffled.item() < 1e-3
    assert other.item() > 0.5  # random 32-d vectors: cos ≈ 0, cost ≈ 1
    # padded target tokens carry garbage (even NaN) and must not change the value
    garbage = tokens.clone()
    garbage[1, 4:] = float("nan")
    assert L.word_ot_loss(tokens, mask, garbage, mask).item() == pytest.approx(same.item(), abs=1e-6)


def test_word_ot_loss_detached_plan_same_value_gradient_only_through_cost():
    s = torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(22), requires_grad=True)
    t = torch.randn(1, 2, 4, generator=torch.Generator().manual_seed(23), requires_grad=True)
    m_s, m_t = torch.ones(1, 3, dtype=torch.bool), torch.ones(1, 2, dtype=torch.bool)
    detached = L.word_ot_loss(s, m_s, t, m_t, detach_plan=True)
    unrolled = L.word_ot_loss(s, m_s, t, m_t, detach_plan=False)
    assert detached.item() == pytest.approx(unrolled.item(), rel=1e-6)
    detached.backward()
    assert torch.isfinite(s.grad).all() and torch.isfinite(t.grad).all()
    # brute force for the detached version: <T, C> with T fixed, C = 1 - cos
    sn, tn = F.normalize(s.detach(), dim=-1)[0], F.normalize(t.detach(), dim=-1)[0]
    cost = 1 - sn @ tn.T
    plan = L.sinkhorn(cost, torch.full((3,), 1 / 3), torch.full((2,), 1 / 2))
    assert detached.item() == pytest.approx((plan * cost).sum().item(), rel=1e-6)


def test_relational_distillation_zero_when_equal_and_matches_numpy():
    sim = _unit(4, 6, seed=24) @ _unit(4, 6, seed=25).T
    assert L.relational_distillation(sim, sim.clone()).item() == pytest.approx(0.0, abs=1e-6)
    teacher = (_unit(4, 6, seed=26, dtype=torch.float64) @ _unit(4, 6, seed=27, dtype=torch.float64).T)
    student = (_unit(4, 6, seed=28, dtype=torch.float64) @ _unit(4, 6, seed=29, dtype=torch.float64).T)
    teacher.requires_grad_()
    student.requires_grad_()
    got = L.relational_distillation(teacher, student, temperature=0.1)
    tn, sn = teacher.detach().numpy() / 0.1, student.detach().numpy() / 0.1

    def kl(p_logits, q_logits):
        lp, lq = _np_log_softmax(p_logits, 1), _np_log_softmax(q_logits, 1)
        return (np.exp(lp) * (lp - lq)).sum(1).mean()

    assert got.item() == pytest.approx((kl(tn, sn) + kl(tn.T, sn.T)) / 2, rel=1e-10)
    got.backward()
    assert teacher.grad is None and student.grad is not None


# ---------------------------------------------------------------- UML / evidential
def test_evidence_and_uncertainty():
    sim = torch.tensor([[0.5, -0.2, 0.0]], dtype=torch.float64)
    e = L.evidence_from_similarity(sim, tau_e=0.1)
    np.testing.assert_allclose(e.numpy(), np.exp(np.tanh(sim.numpy()) / 0.1))
    alpha = torch.tensor([[2.0, 3.0, 5.0]])
    assert L.dirichlet_uncertainty(alpha).item() == pytest.approx(3 / 10)  # u = B / S
    assert L.dirichlet_uncertainty(e + 1).item() == pytest.approx(3 / (3 + e.sum().item()))
    # zero evidence: u = 1 exactly; evidence tends to 0 only as far as exp(-1/tau_e) = exp(-10)
    assert L.dirichlet_uncertainty(torch.ones(2, 4)).tolist() == [1.0, 1.0]
    far = L.evidence_from_similarity(torch.full((1, 4), -50.0)) + 1
    u = L.dirichlet_uncertainty(far).item()
    assert u == pytest.approx(1 / (1 + math.exp(-10)), rel=1e-6) and u > 0.9999
    u_v, u_s = torch.tensor([0.2]), torch.tensor([0.6])
    assert L.combine_view_uncertainty(u_v, u_s).item() == pytest.approx(0.4)
    assert L.combine_view_uncertainty(u_v, u_s, "max").item() == pytest.approx(0.6)


def _np_kl_dir_uniform(alpha: np.ndarray) -> np.ndarray:
    s = alpha.sum(-1)
    c = alpha.shape[-1]
    return (
        special.gammaln(s) - special.gammaln(c) - special.gammaln(alpha).sum(-1)
        + ((alpha - 1) * (special.digamma(alpha) - special.digamma(s)[..., None])).sum(-1)
    )


def _np_edl(alpha: np.ndarray, y: np.ndarray, kl_w: float, fisher_w: float | None) -> np.ndarray:
    rows = []
    for a_row, y_row in zip(alpha, y):
        s = a_row.sum()
        p = a_row / s
        w = special.polygamma(1, a_row) if fisher_w is not None else np.ones_like(a_row)
        err = (w * (y_row - p) ** 2).sum()
        var = (w * a_row * (s - a_row) / (s * s * (s + 1))).sum()
        kl = _np_kl_dir_uniform(y_row + (1 - y_row) * a_row)
        total = err + var + kl_w * kl
        if fisher_w is not None:
            fim = np.diag(special.polygamma(1, a_row)) - special.polygamma(1, s) * np.ones((len(a_row),) * 2)
            sign, logdet = np.linalg.slogdet(fim)
            assert sign > 0
            total -= fisher_w * logdet
        rows.append(total)
    return np.array(rows)


def _alpha_and_labels():
    sim = _unit(3, 8, seed=30, dtype=torch.float64) @ _unit(4, 8, seed=31, dtype=torch.float64).T  # (3, 4)
    alpha = L.evidence_from_similarity(sim * 3) + 1
    y = F.one_hot(torch.tensor([0, 2, 3]), 4).to(torch.float64)
    return alpha, y


def test_dirichlet_kl_matches_scipy():
    alpha, _ = _alpha_and_labels()
    ref = _np_kl_dir_uniform(alpha.numpy())
    np.testing.assert_allclose(L.dirichlet_kl_to_uniform(alpha).numpy(), ref, rtol=1e-10)
    uniform = torch.ones(1, 5, dtype=torch.float64)
    assert L.dirichlet_kl_to_uniform(uniform).item() == pytest.approx(0, abs=1e-12)


def test_edl_mse_loss_matches_scipy_reference():
    alpha, y = _alpha_and_labels()
    ref = _np_edl(alpha.numpy(), y.numpy(), 0.1, None)
    np.testing.assert_allclose(L.edl_mse_loss(alpha, y, 0.1, reduction="none").numpy(), ref, rtol=1e-10)
    assert L.edl_mse_loss(alpha, y, 0.1).item() == pytest.approx(ref.mean(), rel=1e-10)
    soft = torch.full_like(y, 0.1) + 0.6 * y  # soft labels, rows sum to 1
    ref_soft = _np_edl(alpha.numpy(), soft.numpy(), 0.1, None)
    got_soft = L.edl_mse_loss(alpha, soft, 0.1, reduction="none")
    np.testing.assert_allclose(got_soft.numpy(), ref_soft, rtol=1e-10)


@pytest.mark.parametrize(
    "alpha_row", [[1.0, 1.0, 1.0], [1.5, 7.0, 2.0, 30.0], [1.0001, 2.5e3, 3.0, 40.0, 1.2]]
)
def test_fisher_logdet_matches_numpy_slogdet(alpha_row):
    alpha = torch.tensor([alpha_row], dtype=torch.float64)
    a = np.array(alpha_row)
    fim = np.diag(special.polygamma(1, a)) - special.polygamma(1, a.sum()) * np.ones((len(a), len(a)))
    sign, logdet = np.linalg.slogdet(fim)
    assert sign == 1
    # torch's trigamma is accurate to ~5e-10 relative near 1 (scipy's to ~1e-16)
    assert L.dirichlet_fisher_logdet(alpha).item() == pytest.approx(logdet, rel=1e-7, abs=1e-8)


def test_fisher_edl_loss_matches_reference():
    alpha, y = _alpha_and_labels()
    ref = _np_edl(alpha.numpy(), y.numpy(), 0.1, 0.01)
    got = L.fisher_edl_loss(alpha, y, kl_weight=0.1, fisher_weight=0.01, reduction="none")
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-9)


def test_certainty_softened_labels_hand_checked():
    alpha = torch.tensor([[4.0, 1.0, 2.0], [1.0, 9.0, 1.0]], dtype=torch.float64)
    u = L.dirichlet_uncertainty(alpha)  # [3/7, 3/11]
    labels = L.certainty_softened_labels(u, alpha)
    psi = special.polygamma(1, alpha.numpy())
    expected = np.zeros((2, 3))
    for i in range(2):
        others = [j for j in range(3) if j != i]
        expected[i, i] = 1 - u[i].item()
        for j in others:
            expected[i, j] = u[i].item() * psi[i, j] / psi[i, others].sum()
    np.testing.assert_allclose(labels.numpy(), expected, rtol=1e-8)  # torch vs scipy trigamma
    np.testing.assert_allclose(labels.sum(1).numpy(), 1.0)
    # explicit positive index, and certainty 1 -> one-hot
    one_hot = L.certainty_softened_labels(torch.zeros(2, dtype=torch.float64), alpha, torch.tensor([2, 0]))
    assert one_hot.tolist() == [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]


def _np_aml(v, s, t, c, flagged, tau, margin, push_weight):
    def per_sample(a, b):
        return np.array([_np_info_nce_rowcol(a, b, tau, i) for i in range(len(a))])

    pull = (per_sample(v, s) + per_sample(v, t) + per_sample(s, t)) / 3
    push = np.zeros(len(v))
    for i in range(len(v)):
        if not flagged[i]:
            continue
        for anchor in (v, s):
            negatives = [anchor[i] @ t[j] for j in range(len(v)) if j != i and not flagged[j]]
            hardest = max(negatives) if negatives else 0.0
            push[i] += max(anchor[i] @ t[i] - hardest + margin, 0.0)
    return (c * (1 - flagged) * pull + push_weight * flagged * push).mean()


def _np_info_nce_rowcol(a, b, tau, i):
    logits = a @ b.T / tau
    return -(_np_log_softmax(logits, 1)[i, i] + _np_log_softmax(logits, 0)[i, i]) / 2


def test_adaptive_mutual_learning_matches_reference():
    v, s, t = (_unit(5, 6, seed=k, dtype=torch.float64) for k in (40, 41, 42))
    t = F.normalize(t + 2 * v, dim=-1)  # own similarities high, so the push of a flagged pair is active
    c = torch.tensor([1.0, 0.9, 0.5, 0.1, 0.0], dtype=torch.float64)
    flagged = torch.tensor([False, False, True, False, True])
    got = L.adaptive_mutual_learning_loss(v, s, t, c, flagged, temperature=0.1, margin=0.2, push_weight=0.5)
    ref = _np_aml(v.numpy(), s.numpy(), t.numpy(), c.numpy(), flagged.numpy(), 0.1, 0.2, 0.5)
    assert got.item() == pytest.approx(ref, rel=1e-10)
    # fully certain, nothing flagged: the mean of the three InfoNCE losses
    certain = L.adaptive_mutual_learning_loss(v, s, t, torch.ones(5, dtype=torch.float64), torch.zeros(5, dtype=torch.bool), 0.1)
    mean_nce = (L.info_nce(v, s, 0.1) + L.info_nce(v, t, 0.1) + L.info_nce(s, t, 0.1)) / 3
    assert certain.item() == pytest.approx(mean_nce.item(), rel=1e-12)


def _attraction(loss_of_t, v, t, i):
    """d loss / d eps at eps = 0 for t_i moved towards v_i: negative means the loss pulls the pair together."""
    eps = torch.zeros((), dtype=t.dtype, requires_grad=True)
    moved = t.clone()
    moved[i] = F.normalize(t[i] + eps * v[i], dim=-1)
    (grad,) = torch.autograd.grad(loss_of_t(moved), eps)
    return grad.item()


def test_aml_is_attractive_on_every_clean_pair_and_repels_flagged_ones():
    """AML pulls every clean pair together and pushes only flagged pairs apart, never the reverse (a push on
    clean pairs above the margin that spares noisy ones would train the noise in)."""
    v, s, t = (_unit(8, 6, seed=k, dtype=torch.float64) for k in (43, 44, 45))
    t = F.normalize(t + 1.5 * v, dim=-1)  # clean pairs well aligned (cos above any margin)
    s = F.normalize(s + 1.5 * v, dim=-1)  # and so is every English caption with its image
    t[[6, 7]] = t[[7, 6]].clone()  # pairs 6 and 7 swapped: noisy, yet not at cos 0
    c = torch.full((8,), 0.8, dtype=torch.float64)
    flagged = torch.tensor([False] * 6 + [True, True])

    def loss(t_):
        return L.adaptive_mutual_learning_loss(v, s, t_, c, flagged, temperature=0.1, margin=0.5)

    for i in range(6):
        assert _attraction(loss, v, t, i) < 0, f"clean pair {i} is pushed apart"
    # a flagged pair whose own similarity sits above its hardest clean negative minus the margin is repelled
    t_flag = t.clone()
    t_flag[6] = F.normalize(t[6] + 3 * v[6], dim=-1)
    assert _attraction(loss, v, t_flag, 6) > 0


def test_clean_pair_labels_and_the_hard_kl_label():
    """The KL term takes the hard label: a soft label there would penalise a clean pair's own evidence."""
    certainty = torch.tensor([0.9, 0.4, 0.7])
    flagged = torch.tensor([False, False, True])
    soft, hard = L.clean_pair_labels(certainty, flagged)
    assert torch.equal(hard, torch.diag(torch.tensor([1.0, 1.0, 0.0])))
    assert torch.allclose(soft, torch.diag(torch.tensor([0.9, 0.4, 0.0])))
    sim = torch.tensor([[0.8, 0.1, 0.0], [0.2, 0.6, 0.1], [0.0, 0.3, 0.1]], dtype=torch.float64, requires_grad=True)
    alpha = L.evidence_from_similarity(sim) + 1

    def kl_part(labels):
        return L.dirichlet_kl_to_uniform(labels + (1 - labels) * alpha).sum()

    (grad_hard,) = torch.autograd.grad(kl_part(hard.double()), sim, retain_graph=True)
    assert grad_hard[0, 0].item() == 0.0 and grad_hard[1, 1].item() == 0.0  # a clean pair's own evidence is untouched
    (grad_soft,) = torch.autograd.grad(kl_part(soft.double()), sim)
    assert grad_soft[0, 0].item() > 0  # the soft label would push it down (descent lowers sim_00)
    # fisher_edl_loss routes kl_labels into the KL term only
    with_hard = L.fisher_edl_loss(alpha, soft.double(), 0.1, 0.01, reduction="none", kl_labels=hard.double())
    expected = (L.fisher_edl_loss(alpha, soft.double(), 0.0, 0.01, reduction="none")
                + 0.1 * L.dirichlet_kl_to_uniform(hard.double() + (1 - hard.double()) * alpha))
    torch.testing.assert_close(with_hard, expected)


def test_decl_noise_scores_symmetric_argmax_rule():
    sim = torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.2, 0.5], [0.0, 0.6, 0.1]], dtype=torch.float64)
    score, flagged = L.decl_noise_scores(sim, 0.1)
    e = np.exp(np.tanh(sim.numpy()) / 0.1)
    sym = e + e.T
    norm = sym / sym.sum(1, keepdims=True)
    np.testing.assert_allclose(score.numpy(), 1 - np.diag(norm), rtol=1e-12)
    assert flagged.tolist() == [False, True, True]  # rows 1 and 2 prefer each other's candidate


# ---------------------------------------------------------------- gradients
def _all_losses():
    v, s, t, h = (_unit(4, 6, seed=k).requires_grad_() for k in (50, 51, 52, 53))
    texts = _unit(8, 6, seed=54).requires_grad_()
    logits = torch.randn(3, 5, generator=torch.Generator().manual_seed(55), requires_grad=True)
    tokens_s = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(56), requires_grad=True)
    tokens_t = torch.randn(2, 3, 6, generator=torch.Generator().manual_seed(57), requires_grad=True)
    m_s = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    m_t = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    sim = (v @ t.T)
    y = torch.eye(4)
    alpha = L.evidence_from_similarity(sim) + 1
    u = L.dirichlet_uncertainty(alpha)
    return {
        "info_nce": (lambda: L.info_nce(v, t, 0.07), [v, t]),
        "triplet": (lambda: L.triplet_hardest_negative(v, t, 0.5), [v, t]),
        "one_to_k": (lambda: L.one_to_k_contrastive(v, texts, 0.07, 2), [v, texts]),
        "soft_ce": (lambda: L.soft_cross_entropy_distillation(logits * 2, logits), [logits]),
        "kl": (lambda: L.kl_distillation(logits * 2, logits), [logits]),
        "sim_view": (lambda: L.similarity_view_distillation(v, h, t), [v, t]),
        "feat_view": (lambda: L.feature_view_distillation(t, h), [t, h]),
        "disc": (lambda: L.discriminator_loss(logits[:, :1], logits[:, 1:2]), [logits]),
        "adv": (lambda: L.encoder_adversarial_loss(logits[:, :1]), [logits]),
        "word_ot": (lambda: L.word_ot_loss(tokens_s, m_s, tokens_t, m_t), [tokens_s, tokens_t]),
        "word_ot_unrolled": (
            lambda: L.word_ot_loss(tokens_s, m_s, tokens_t, m_t, detach_plan=False), [tokens_s, tokens_t]
        ),
        "relational": (lambda: L.relational_distillation(s @ t.T, v @ t.T), [v, t]),
        "edl": (lambda: L.edl_mse_loss(L.evidence_from_similarity(v @ t.T) + 1, y), [v, t]),
        "fisher_edl": (
            lambda: L.fisher_edl_loss(
                L.evidence_from_similarity(v @ t.T) + 1,
                L.certainty_softened_labels(u, alpha),
                kl_labels=y,
            ),
            [v, t],
        ),
        "aml": (lambda: L.adaptive_mutual_learning_loss(v, s, t, 1 - u, torch.tensor([False, True, False, False]), margin=1.0), [v, s, t]),
    }


@pytest.mark.parametrize("name", list(_all_losses()))
def test_backward_runs_and_is_finite(name):
    loss_fn, inputs = _all_losses()[name]
    loss = loss_fn()
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    for x in inputs:
        assert x.grad is not None and torch.isfinite(x.grad).all(), name
    assert any(x.grad.abs().sum() > 0 for x in inputs), name


def test_gradcheck_one_to_k_and_relational():
    g = torch.Generator().manual_seed(60)
    v = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: L.one_to_k_contrastive(a, b, 0.5, 2), (v, t))
    teacher = torch.randn(3, 3, generator=g, dtype=torch.float64)
    student = torch.randn(3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: L.relational_distillation(teacher, x, 0.5), (student,))


def test_gradcheck_fisher_edl_and_logdet():
    g = torch.Generator().manual_seed(61)
    alpha = (1 + 3 * torch.rand(2, 4, generator=g, dtype=torch.float64)).requires_grad_()
    y = F.one_hot(torch.tensor([1, 3]), 4).to(torch.float64)
    assert torch.autograd.gradcheck(lambda a: L.fisher_edl_loss(a, y, 0.1, 0.01), (alpha,))
    assert torch.autograd.gradcheck(lambda a: L.edl_mse_loss(a, y, 0.1), (alpha,))
    assert torch.autograd.gradcheck(lambda a: L.dirichlet_fisher_logdet(a).sum(), (alpha,))


def test_gradcheck_sinkhorn_through_iterations():
    g = torch.Generator().manual_seed(62)
    cost = torch.rand(1, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    a = torch.tensor([[0.5, 0.5, 0.0]], dtype=torch.float64)  # one padded row
    b = torch.full((1, 4), 0.25, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda c: L.sinkhorn(c, a, b, epsilon=0.1, iterations=20), (cost,))


def test_word_ot_loss_batched_targets_equal_one_call_per_target():
    """CL2CM runs every target language's OT in one padded call: the same costs as one call each."""
    gen = torch.Generator().manual_seed(4)
    s = torch.randn(3, 5, 8, generator=gen, dtype=torch.float64)
    m_s = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.bool)
    targets = [(torch.randn(3, q, 8, generator=gen, dtype=torch.float64), torch.arange(q)[None, :] < torch.tensor([[q], [1], [q - 1]]))
               for q in (4, 7)]
    one_each = torch.stack([L.word_ot_loss(s, m_s, t, m) for t, m in targets])
    padded_t = torch.cat([torch.nn.functional.pad(t, (0, 0, 0, 7 - t.shape[1])) for t, _ in targets])
    padded_m = torch.cat([torch.nn.functional.pad(m, (0, 7 - m.shape[1])) for _, m in targets])
    batched = L.word_ot_loss(s.repeat(2, 1, 1), m_s.repeat(2, 1), padded_t, padded_m, reduction="none").view(2, -1).mean(dim=1)
    assert torch.allclose(batched, one_each, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="reduction"):
        L.word_ot_loss(s, m_s, *targets[0], reduction="sum")
