"""NRCCR's packed tower (one call for all text batches of a step, real tokens only, cross-attention
reusing the self-attention's queries, keys and values) against the per-batch implementation it
replaced, on fixed inputs: same losses, same gradients, same BatchNorm statistics."""
from __future__ import annotations

import pytest
import torch

from ccr_core.methods import TextBatch, build_method, losses
from ccr_core.methods.heads import encode_batch_visual, masked_mean, pack

TEXT_DIM, VISUAL_DIM = 16, 12
CONFIG = dict(text_dim=TEXT_DIM, visual_dim=VISUAL_DIM, embed_dim=8, hidden_dim=8, num_heads=2, max_text_tokens=16,
              languages=["en", "de", "fr", "ja"], video=False)


def reference_loss(model, batch: dict) -> dict:
    """The per-batch NRCCR loss as it was before packing (commit ec0fb2c): one tower call per text batch,
    the cross-attention recomputing its projections."""
    c = model.config

    def tokens_of(text):
        states = model.backbone_states(text)
        return states, model.text_proj(states)

    def self_embedding(tokens, mask):
        return model.text_mapping(masked_mean(model.attention(tokens, tokens, mask), mask))

    def sentence(states, tokens, mask):
        return self_embedding(tokens, mask) if model.text_head is None else model.text_head(states, mask)

    def encode_text(text):
        if model.text_head is not None:
            return model.text_head(model.backbone_states(text), text.mask)
        return self_embedding(tokens_of(text)[1], text.mask)

    tri = lambda a, b: losses.triplet_hardest_negative(a, b, c.margin, reduction="sum")
    v = encode_batch_visual(model, batch)
    source = batch["text"]["en"]
    states_s, tokens_s = tokens_of(source)
    c_s = sentence(states_s, tokens_s, source.mask)
    target_terms, back_terms = [], []
    for lang in batch.get("targets", []):
        target = batch["text"][lang]
        states_t, tokens_t = tokens_of(target)
        c_t = sentence(states_t, tokens_t, target.mask)
        cross = model.attention(tokens_s, tokens_t, target.mask, residual=False)
        joint = torch.cat([cross, tokens_t], dim=1)
        h_c = model.text_mapping(masked_mean(joint, torch.cat([source.mask, target.mask], dim=1)))
        pooled_t = masked_mean(states_t, target.mask)
        target_terms.append(torch.stack([tri(c_t, v), losses.similarity_view_distillation(v, h_c, c_t, c.distill_temperature),
                                         losses.feature_view_distillation(c_t, h_c, c.feature_beta),
                                         losses.encoder_adversarial_loss(model._frozen_discriminator(pooled_t))]))
        back = batch.get("back", {}).get(lang)
        if back is not None:
            back_terms.append(tri(c_s, encode_text(back)))
    target, similarity, feature, adversarial = torch.stack(target_terms).mean(dim=0)
    back = torch.stack(back_terms).mean() if back_terms else v.new_zeros(())
    loss = (tri(c_s, v) + c.target_weight * target + c.similarity_weight * similarity + c.feature_weight * feature
            + (c.back_weight if back_terms else 0.0) * back + c.adversarial_weight * adversarial)
    return {"loss": loss, "target": target, "similarity_view": similarity, "feature_view": feature, "back_translation": back}


def text_batch(gen, b, length, full_row=True, dtype=torch.float64):
    lengths = torch.randint(1, length + 1, (b,), generator=gen)
    if full_row:
        lengths[0] = length
    states = torch.randn(b, length, TEXT_DIM, generator=gen, dtype=dtype)
    return TextBatch(states, torch.arange(length)[None, :] < lengths[:, None])


def make_batch(seed=0, b=7):
    gen = torch.Generator().manual_seed(seed)
    # different padded lengths per batch, one batch with no full-length row, back-translation for two of three targets
    text = {"en": text_batch(gen, b, 5), "de": text_batch(gen, b, 9), "fr": text_batch(gen, b, 3), "ja": text_batch(gen, b, 6, full_row=False)}
    back = {"de": text_batch(gen, b, 4), "ja": text_batch(gen, b, 8)}
    return {"visual": torch.randn(b, VISUAL_DIM, generator=gen, dtype=torch.float64), "text": text, "targets": ["de", "fr", "ja"], "back": back,
            "item_ids": [f"i{k}" for k in range(b)]}


def twins(head):
    torch.manual_seed(3)
    new = build_method("nrccr", None, head=head, dropout=0.0, attention_dropout=0.0, **CONFIG)
    old = build_method("nrccr", None, head=head, dropout=0.0, attention_dropout=0.0, **CONFIG)
    old.load_state_dict(new.state_dict())
    return new.double().train(), old.double().train()  # float64: a difference in the maths is not hidden by rounding


@pytest.mark.parametrize("head", ["native", "linear"])
def test_packed_loss_and_gradients_equal_the_per_batch_implementation(head):
    new, old = twins(head)
    batch = make_batch()
    out_new, out_old = new.loss(batch), reference_loss(old, batch)
    for key in out_old:
        assert torch.allclose(out_new[key], out_old[key], rtol=1e-10, atol=1e-12), (key, out_new[key], out_old[key])
    out_new["loss"].backward()
    out_old["loss"].backward()
    grads_old = dict(old.named_parameters())
    checked = 0
    for name, p in new.named_parameters():
        q = grads_old[name]
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            assert torch.allclose(p.grad, q.grad, rtol=1e-9, atol=1e-11), (name, (p.grad - q.grad).abs().max())
            checked += 1
    assert checked >= 10
    # BatchNorm running statistics: the mapping head saw the same batches in the same order
    for (name, b_new), (_, b_old) in zip(new.named_buffers(), old.named_buffers()):
        assert torch.allclose(b_new.double(), b_old.double(), atol=1e-12), name


def test_packed_loss_without_back_translation_or_targets():
    new, old = twins("native")
    batch = make_batch(seed=1)
    batch.pop("back")
    assert torch.allclose(new.loss(batch)["loss"], reference_loss(old, batch)["loss"], rtol=1e-10)
    batch["targets"] = []
    out = new.loss(batch)
    assert float(out["target"]) == 0.0 and torch.isfinite(out["loss"])


def test_packed_encode_text_equals_per_batch_in_eval():
    torch.manual_seed(0)
    model = build_method("nrccr", None, **CONFIG).eval()  # dropout on, but eval mode
    gen = torch.Generator().manual_seed(5)
    text = text_batch(gen, 6, 7, dtype=torch.float32)
    with torch.no_grad():
        tokens = model.text_proj(text.states)
        expected = model.text_mapping(masked_mean(model.attention(tokens, tokens, text.mask), text.mask))
        assert torch.allclose(model.encode_text(text), expected, atol=1e-6)


def test_pack_layout():
    gen = torch.Generator().manual_seed(0)
    a, b = text_batch(gen, 3, 4, dtype=torch.float32), text_batch(gen, 2, 6, dtype=torch.float32)
    x, packing = pack([(a.states, a.mask), (b.states, b.mask)])
    assert x.shape == (int(a.mask.sum() + b.mask.sum()), TEXT_DIM)
    assert torch.equal(x[packing.tokens(0)], a.states[a.mask]) and torch.equal(x[packing.tokens(1)], b.states[b.mask])
    padded = packing.pad(x[packing.tokens(1)], 1)  # each batch keeps its own length
    assert padded.shape == (2, 6, TEXT_DIM) and torch.equal(padded[b.mask], b.states[b.mask]) and not padded[~b.mask].any()
    assert torch.equal(packing.unpad(padded, 1), x[packing.tokens(1)])
    assert torch.allclose(packing.mean(x[packing.tokens(0)], 0), masked_mean(a.states, a.mask), atol=1e-6)
    assert torch.allclose(packing.mean(x[packing.tokens(1)], 1), masked_mean(b.states, b.mask), atol=1e-6)
    assert packing.pos.tolist() == a.mask.nonzero()[:, 1].tolist() + b.mask.nonzero()[:, 1].tolist()


def test_packed_tower_refuses_too_long_captions():
    model = build_method("nrccr", None, **{**CONFIG, "max_text_tokens": 4}).eval()
    text = TextBatch(torch.randn(2, 5, TEXT_DIM), torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="5 positions; this tower has 4 position embeddings"):
        model.encode_text(text)


def test_without_distillation_the_common_encoder_skips_the_tower_and_keeps_every_other_term():
    """The "no-distill" ablation (similarity and feature weights 0): same loss and same gradients as the
    reference with those weights 0, and the attention tower, which then feeds no term, is not run."""
    torch.manual_seed(3)
    kw = dict(head="linear", dropout=0.0, attention_dropout=0.0, similarity_weight=0.0, feature_weight=0.0, **CONFIG)
    new, old = build_method("nrccr", None, **kw), build_method("nrccr", None, **kw)
    old.load_state_dict(new.state_dict())
    new, old = new.double().train(), old.double().train()
    batch = make_batch(seed=2)
    out_new, out_old = new.loss(batch), reference_loss(old, batch)
    for key in ("loss", "target", "back_translation"):
        assert torch.allclose(out_new[key], out_old[key], rtol=1e-10, atol=1e-12), key
    assert out_new["similarity_view"].item() == 0.0 and out_new["feature_view"].item() == 0.0
    assert out_old["similarity_view"].item() > 0.0  # the reference computed a teacher the weights then ignore
    out_new["loss"].backward()
    out_old["loss"].backward()
    grads_old = dict(old.named_parameters())
    tower = ("text_proj.", "attention.", "text_mapping.")
    for name, p in new.named_parameters():
        if name.startswith(tower):
            assert p.grad is None, name  # not run
            assert grads_old[name].grad is None or not grads_old[name].grad.any(), name  # zero in the reference
        elif grads_old[name].grad is not None:
            assert torch.allclose(p.grad, grads_old[name].grad, rtol=1e-9, atol=1e-11), name
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for n, p in new.named_parameters() if n.startswith("text_head."))


# --------------------------------------------------------------------------------------------------
# NRCCR.loss split into named steps: the same numbers as the one-body loss it replaced


def _tri(self, a, b):
    return losses.triplet_hardest_negative(a, b, self.config.margin, reduction="sum")


def loss_before_split(self, batch: dict) -> dict[str, torch.Tensor]:
    """``NRCCR.loss`` as it was before its split into named steps (commit 3163621), kept verbatim
    (``self`` is the model); it uses the model's tower helpers, which the split left as they were."""
    c = self.config
    a = self.attention
    v = encode_batch_visual(self, batch)  # (B, E)
    source = batch["text"]["en"]
    targets = list(batch.get("targets", []))
    backs = {lang: batch["back"][lang] for lang in targets if batch.get("back", {}).get(lang) is not None}
    native = self.text_head is None
    # With both distillation weights 0 (an ablation) the pseudo-target h^C feeds no term; in the common
    # encoder the attention tower then serves nothing and is not run (its parameters get no gradient,
    # as they would get zero ones; only the dropout draws of the skipped tower differ).
    teacher = bool(targets) and (c.similarity_weight != 0 or c.feature_weight != 0)
    # one tower call: English, the targets, and (own tower only) the back-translations
    texts = [source] + [batch["text"][lang] for lang in targets] + (list(backs.values()) if native else [])
    if native or teacher:
        states, tokens, packing = self._pack(texts)  # tokens (N, H)
    else:
        states = [self.backbone_states(t) for t in texts]  # each (B_i, L_i, Dt)
    n = len(targets)
    if native:  # self-attention of every batch; its English queries and target keys/values serve h^C too
        h, heads = self._self_attention(tokens, packing)  # h: (N, H)
        pooled = [packing.mean(h[packing.tokens(i)], i) for i in range(len(texts))]  # (B, H) each
        q_en = heads[0][0]
        kv = {j: heads[1 + j][1:] for j in range(n)}
    elif teacher:  # common encoder: the tower serves only h^C -- English queries, target keys and values
        q_en = self._padded_heads(a.project(tokens[packing.tokens(0)], "q"), packing, 0, 1)[0]
        kv = {j: self._padded_heads(a.project(tokens[packing.tokens(1 + j)], "kv"), packing, 1 + j, 2) for j in range(n)}
    c_s = self.text_mapping(pooled[0]) if native else self.text_head(states[0], source.mask)  # (B, E)
    pooled_s = masked_mean(states[0], source.mask)  # (B, Dt) discriminator input, English

    if teacher:
        # h^C per target: English queries over the target's keys and values, no residual; pooled over
        # [cross ; target tokens] -- one output projection for all targets
        cross = torch.cat([packing.unpad(a.attend(q_en, *kv[j], packing.masks[1 + j]), 0) for j in range(n)])  # (n * n_en, H)
        cross = a.finish(cross, None)
        n_en = packing.tokens(0).stop - packing.tokens(0).start
        joint = [(packing.sums(cross[j * n_en:(j + 1) * n_en], 0) + packing.sums(tokens[packing.tokens(1 + j)], 1 + j))
                 / (packing.counts(0) + packing.counts(1 + j)) for j in range(n)]  # (B, H) each

    target_terms, back_terms, pooled_targets = [], [], []
    for j, lang in enumerate(targets):
        target = batch["text"][lang]
        states_t = states[1 + j]  # (B, Lt, Dt)
        c_t = self.text_mapping(pooled[1 + j]) if native else self.text_head(states_t, target.mask)  # (B, E)
        pooled_t = masked_mean(states_t, target.mask)  # (B, Dt)
        if teacher:
            h_c = self.text_mapping(joint[j])  # (B, E)
            distill = [losses.similarity_view_distillation(v, h_c, c_t, c.distill_temperature),
                       losses.feature_view_distillation(c_t, h_c, c.feature_beta)]
        else:
            distill = [v.new_zeros(()), v.new_zeros(())]
        target_terms.append(
            torch.stack([_tri(self, c_t, v), *distill, losses.encoder_adversarial_loss(self._frozen_discriminator(pooled_t))])
        )
        pooled_targets.append(pooled_t.detach())
        if lang in backs:
            if native:
                c_b = self.text_mapping(pooled[1 + n + list(backs).index(lang)])  # (B, E)
            else:
                c_b = self.encode_text(backs[lang], "en")  # (B, E)
            back_terms.append(_tri(self, c_s, c_b))

    out = {"source": _tri(self, c_s, v)}
    zero = v.new_zeros(())
    if target_terms:
        target, similarity, feature, adversarial = torch.stack(target_terms).mean(dim=0)  # 4 scalars
        with torch.no_grad():  # for logging only; discriminator_step trains it
            logits_tgt = self.discriminator(torch.cat(pooled_targets))  # (B * n_targets, 1)
            out["discriminator"] = losses.discriminator_loss(self.discriminator(pooled_s), logits_tgt)
    else:
        target = similarity = feature = adversarial = out["discriminator"] = zero
    out.update(target=target, similarity_view=similarity, feature_view=feature, adversarial=adversarial)
    # with no back-translation in the batch the term is skipped: weight 0, reported below
    back_weight = c.back_weight if back_terms else 0.0
    out["back_translation"] = torch.stack(back_terms).mean() if back_terms else zero
    out["back_translation_weight"] = v.new_tensor(back_weight)
    out["loss"] = (
        out["source"]
        + c.target_weight * target
        + c.similarity_weight * similarity
        + c.feature_weight * feature
        + back_weight * out["back_translation"]
        + c.adversarial_weight * adversarial
    )
    return out


@pytest.mark.parametrize("head", ["native", "linear"])
@pytest.mark.parametrize("case", ["full", "no_back", "one_target", "no_targets", "no_distill"])
def test_split_loss_equals_the_one_body_loss(head, case):
    torch.manual_seed(4)
    kw = dict(head=head, dropout=0.0, attention_dropout=0.0, **CONFIG)
    if case == "no_distill":
        kw.update(similarity_weight=0.0, feature_weight=0.0)
    new, old = build_method("nrccr", None, **kw), build_method("nrccr", None, **kw)
    old.load_state_dict(new.state_dict())
    new, old = new.double().train(), old.double().train()
    batch = make_batch(seed=7)
    if case == "no_back":
        batch.pop("back")
    elif case == "one_target":
        batch["targets"] = ["ja"]
    elif case == "no_targets":
        batch["targets"] = []
    out_new, out_old = new.loss(batch), loss_before_split(old, batch)
    assert set(out_new) == set(out_old)
    for key in out_old:
        assert torch.allclose(out_new[key], out_old[key], rtol=1e-12, atol=1e-14), (key, out_new[key], out_old[key])
    out_new["loss"].backward()
    out_old["loss"].backward()
    grads_old = dict(old.named_parameters())
    for name, p in new.named_parameters():
        q = grads_old[name].grad
        assert (p.grad is None) == (q is None), name
        if p.grad is not None:
            assert torch.allclose(p.grad, q, rtol=1e-10, atol=1e-12), name
    for (name, b_new), (_, b_old) in zip(new.named_buffers(), old.named_buffers()):
        # BatchNorm's running statistics: equal to float64 rounding (bit equality depends on the CPU's summation order)
        assert b_new.dtype == b_old.dtype and torch.allclose(b_new, b_old, rtol=1e-12, atol=1e-14), name
