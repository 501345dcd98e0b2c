"""Every registered method through the registry's checks (``ccr_core.testing.check_method``: encoders, loss terms
against the class's ``loss_keys``, gradients, save/load, config round trip, determinism, a tiny overfit, the grid's
settings, well-formed facts), one test per method and check; then the method facts the trainer and the dashboard
read, and a few method-specific checks."""
from __future__ import annotations

import math

import pytest
import torch

from ccr_core.methods import METHODS, TextBatch, build_method, main_methods, method_with_role, methods_with, ordered_methods
from ccr_core.testing import B, CHECKS, EMBED_DIM, TEXT_DIM, TINY, VISUAL_DIM, L, check_method, make_batch

# The tiny sizes and batches are ccr_core.testing's: the same a plugin's own tests use.
ALL = METHODS.list(plugins=False)  # a plugin runs these checks in its own tests (ccr_core.testing.check_method)


@pytest.fixture(autouse=True)
def one_thread():
    """Tensors here are tiny: thread start-up would cost more than it saves on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def build(name: str, **overrides):
    torch.manual_seed(0)
    return build_method(name, dict(TINY, **overrides))


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("name", ALL)
def test_registry_checks(name, check):
    check_method(name, only=[check])


# -- the facts on each method class ------------------------------------------------------------------
def test_every_built_in_declares_its_facts():
    for name in ALL:
        cls = METHODS.get(name)
        assert cls.loss_keys and cls.description and cls.colour and cls.label, name
        assert cls.display_order != float("inf"), f"{name} has no display_order"
    assert len({METHODS.get(n).display_order for n in ALL}) == len(ALL), "two built-ins share a display position"
    assert len({METHODS.get(n).colour for n in ALL}) == len(ALL), "two built-ins share a colour"


def test_loss_keys_check_fails_on_a_wrong_declaration(monkeypatch):
    """The loss-terms check really compares loss() with the class's loss_keys."""
    monkeypatch.setattr(METHODS.get("baseline"), "loss_keys", ("visual_source",))
    with pytest.raises(AssertionError, match="loss_terms"):
        check_method("baseline", only=["loss_terms"])


def test_roles_and_derived_facts():
    assert method_with_role("reference") == "floor" and method_with_role("baseline") == "baseline"
    assert ordered_methods(plugins=False)[:2] == ["floor", "baseline"]
    assert "baseline-en" not in main_methods() and "floor" in main_methods()
    assert methods_with(targets_per_batch=0) == ["one_to_k"]  # its loss needs every language of an image
    assert methods_with(has_discriminator_step=True) == ["nrccr"]
    assert methods_with(has_uncertainty=True) == ["uml"]
    with pytest.raises(ValueError, match="role 'nonesuch'"):
        method_with_role("nonesuch")


def test_facts_check_refuses_a_bad_colour(monkeypatch):
    monkeypatch.setattr(METHODS.get("uml"), "colour", "mauve")
    with pytest.raises(AssertionError, match="colour 'mauve'"):
        check_method("uml", only=["facts"])


def overfit(model, batch, steps: int = 30) -> list[float]:
    """Adam on one fixed batch; returns the losses."""
    optimizer = torch.optim.Adam(model.main_parameters(), lr=1e-2)
    model.train()
    history = []
    for _ in range(steps):
        out = model.loss(batch)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        history.append(out["loss"].item())
    return history


# -- method-specific ---------------------------------------------------------------------------------
def test_baseline_triplet_variant_and_bad_kind():
    out = build("baseline", loss_kind="triplet").loss(make_batch())
    assert torch.isfinite(out["loss"])
    with pytest.raises(ValueError):
        build("baseline", loss_kind="hinge")


TOTALS = {  # the published / documented combination of each method's terms
    "nrccr": lambda o: o["source"] + 0.6 * o["target"] + 0.4 * o["similarity_view"] + 0.1 * o["feature_view"]
    + o["back_translation_weight"] * o["back_translation"] + 0.001 * o["adversarial"],
    "cl2cm": lambda o: o["cross_modal"] + o["cross_lingual"] + o["knowledge_transfer"],
    "uml": lambda o: o["contrastive"] + 0.1 * o["evidential"] + 3.0 * o["mutual"],  # UMLConfig's weights
    "baseline": lambda o: o["visual_source"] + o["visual_target"],
}


@pytest.mark.parametrize("back", [True, False], ids=["back", "noback"])
@pytest.mark.parametrize("name", sorted(TOTALS))
def test_total_is_the_weighted_sum(name, back):
    out = build(name).loss(make_batch(back=back))
    torch.testing.assert_close(out["loss"], TOTALS[name](out))
    if name == "cl2cm":
        torch.testing.assert_close(out["cross_lingual"], out["sentence_alignment"] + 0.1 * out["word_alignment"])


def test_nrccr_back_translation_weight_reported():
    model = build("nrccr")
    with_back, without = model.loss(make_batch(back=True)), model.loss(make_batch(back=False))
    assert with_back["back_translation_weight"].item() == pytest.approx(0.5)
    assert without["back_translation_weight"].item() == 0.0 and without["back_translation"].item() == 0.0


def test_nrccr_discriminator_learns_separable_languages():
    model = build("nrccr", discriminator_lr=0.05)  # the published 1e-3 is slow for a 15-step test
    batch = make_batch(targets=("de",), back=False)
    batch["text"]["en"].states[..., 0] += 3.0  # English and German states differ along one direction
    batch["text"]["de"].states[..., 0] -= 3.0
    (optimizer,) = model.extra_optimizers()
    assert model.extra_optimizers()[0] is optimizer
    assert not {id(p) for p in model.discriminator.parameters()} & {id(p) for p in model.main_parameters()}
    logged = model.loss(batch)["discriminator"].item()
    history = [model.discriminator_step(batch) for _ in range(15)]
    assert history[0] == pytest.approx(logged)  # the logged value is the loss before the step
    assert history[-1] < 0.5 * history[0]
    assert all(p.grad is None for p in model.discriminator.parameters())
    assert math.isnan(model.discriminator_step(make_batch(targets=())))


def test_nrccr_trainer_step_leaves_discriminator_to_its_own_optimizer():
    """The loop of ccr_core.training.train: main Adam over ALL parameters, discriminator_step in between."""
    model = build("nrccr")
    main = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    batch = make_batch()
    for _ in range(2):
        main.zero_grad(set_to_none=True)
        model.loss(batch)["loss"].backward()
        before = [p.detach().clone() for p in model.discriminator.parameters()]
        model.discriminator_step(batch)
        after_own = [p.detach().clone() for p in model.discriminator.parameters()]
        main.step()
        assert any(not torch.equal(a, b) for a, b in zip(before, after_own))  # its own step moved it
        assert all(torch.equal(a, p) for a, p in zip(after_own, model.discriminator.parameters()))


def test_uml_uncertainty_range_and_ordering():
    model = build("uml")
    batch = make_batch()
    model.eval()
    u = model.uncertainty(batch["text"]["de"], batch["visual"])
    u_both = model.uncertainty(batch["text"]["de"], batch["visual"], source=batch["text"]["en"])
    for values in (u, u_both):
        assert values.shape == (B,) and bool(((values > 0) & (values <= 1)).all())
    gallery = torch.nn.functional.normalize(torch.randn(20, EMBED_DIM), dim=-1)
    dominant = gallery[3:4]  # (1, E): one candidate is the query itself
    flat = torch.zeros(EMBED_DIM)  # (E,): similarity 0 to every candidate, a uniform row
    u_dominant, u_spread = model.query_uncertainty(dominant, gallery), model.query_uncertainty(flat, gallery)
    assert u_dominant.shape == (1,) and u_dominant.item() < u_spread.item() <= 1


def test_uml_mismatched_pair_is_more_uncertain_after_training():
    model = build("uml", dropout=0.0, attention_dropout=0.0)
    batch = make_batch(5, b=8, targets=("de",))
    overfit(model, batch)
    model.eval()
    matched = model.uncertainty(batch["text"]["de"], batch["visual"])
    noisy = TextBatch(batch["text"]["de"].states.clone(), batch["text"]["de"].mask.clone())
    noisy.states[0] = torch.randn(L, TEXT_DIM, generator=torch.Generator().manual_seed(99))  # an unrelated caption
    mismatched = model.uncertainty(noisy, batch["visual"])
    assert mismatched[0] > matched[0]


def test_uml_mismatch_is_the_decl_score_it_trains_with_and_flags_swapped_pairs():
    from ccr_core.methods import losses

    model = build("uml", dropout=0.0, attention_dropout=0.0)
    batch = make_batch(5, b=8, targets=("de",))
    overfit(model, batch)
    model.eval()
    text, visual, source = batch["text"]["de"], batch["visual"], batch["text"]["en"]
    with torch.no_grad():
        v, t, s = model.encode_visual(visual), model.encode_text(text), model.encode_text(source)
    tau = model.config.evidence_temperature
    expected_img, _ = losses.decl_noise_scores(v @ t.T, tau)
    expected_src, _ = losses.decl_noise_scores(s @ t.T, tau)
    torch.testing.assert_close(model.mismatch(text, visual), expected_img)
    torch.testing.assert_close(model.mismatch(text, visual, source=source), (expected_img + expected_src) / 2)
    swapped = TextBatch(text.states[[1, 0, *range(2, 8)]].clone(), text.mask[[1, 0, *range(2, 8)]].clone())  # captions 0 and 1 exchanged
    m = model.mismatch(swapped, visual, source=source)
    assert bool(((m > 0) & (m < 1)).all())
    assert min(m[0], m[1]) > max(m[2:])  # the two mismatched pairs score highest


def concept_batch(b: int = 32, swapped: int = 0, seed: int = 0, world: int = 0) -> tuple[dict, torch.Tensor]:
    """Image, English and German views of b random concepts through fixed random maps (``world`` seeds
    the maps, ``seed`` the concepts), so pairs really correspond; the German captions of the first
    ``swapped`` pairs are exchanged in a cycle: known noisy correspondence. Returns the batch and the
    (b,) bool noise mask."""
    maps_gen = torch.Generator().manual_seed(1000 + world)
    maps = {"v": torch.randn(6, VISUAL_DIM, generator=maps_gen), "en": torch.randn(6, TEXT_DIM, generator=maps_gen)}
    maps["de"] = maps["en"] + 0.3 * torch.randn(6, TEXT_DIM, generator=maps_gen)  # a multilingual encoder: languages close
    gen = torch.Generator().manual_seed(seed)
    concepts = torch.randn(b, 6, generator=gen)  # (b, 6)

    def states(key):
        tokens = concepts @ maps[key]  # (b, Dt)
        return tokens[:, None, :] + 0.3 * torch.randn(b, L, TEXT_DIM, generator=gen)  # (b, L, Dt)

    de = states("de")
    if swapped:
        order = torch.arange(b)
        order[:swapped] = torch.roll(order[:swapped], 1)
        de = de[order]
    mask = torch.ones(b, L, dtype=torch.bool)
    noisy = torch.zeros(b, dtype=torch.bool)
    noisy[:swapped] = True
    batch = {"visual": concepts @ maps["v"] + 0.1 * torch.randn(b, VISUAL_DIM, generator=gen),
             "text": {"en": TextBatch(states("en"), mask), "de": TextBatch(de, mask)}, "targets": ["de"],
             "item_ids": [f"item{i}" for i in range(b)]}
    return batch, noisy


def train_on_concepts(model, steps: int, swapped: int, b: int = 32) -> None:
    """Adam on a fresh concept batch every step (a world, not one memorised batch)."""
    optimizer = torch.optim.Adam(model.main_parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        batch, _ = concept_batch(b, swapped, seed=step)
        optimizer.zero_grad()
        model.loss(batch)["loss"].backward()
        optimizer.step()


def test_uml_gives_swapped_pairs_lower_training_weight_than_clean_ones():
    """Fault 1 of issue 12: u = B/S gave noisy pairs the same (or a stronger) pull as clean ones."""
    model = build("uml", dropout=0.0, attention_dropout=0.0, warmup_steps=30)
    train_on_concepts(model, steps=60, swapped=8)  # 25% noise; past warm-up, flags in use
    assert not model.in_warmup()
    batch, noisy = concept_batch(swapped=8, seed=999)  # a batch not trained on
    model.eval()
    with torch.no_grad():
        v = model.encode_visual(batch["visual"])
        s, t = model.encode_text(batch["text"]["en"]), model.encode_text(batch["text"]["de"])
        w = model.training_weights(v, s, t)
        u = model.uncertainty(batch["text"]["de"], batch["visual"], source=batch["text"]["en"])
    assert w["weight"][noisy].mean() < 0.5 * w["weight"][~noisy].mean(), w
    assert w["flagged"][noisy].float().mean() >= 0.75 and w["flagged"][~noisy].float().mean() <= 0.1
    assert w["score"][noisy].min() > w["score"][~noisy].median()
    assert u.shape == noisy.shape  # u = B/S is still reported beside the detector


def test_uml_in_warmup_weights_every_pair_fully():
    model = build("uml", warmup_steps=5)
    batch, _ = concept_batch(swapped=8)
    with torch.no_grad():
        v = model.encode_visual(batch["visual"])
        w = model.training_weights(v, model.encode_text(batch["text"]["en"]), model.encode_text(batch["text"]["de"]))
    assert bool((w["weight"] == 1).all()) and not bool(w["flagged"].any())


def test_uml_at_noise_zero_does_not_push_clean_pairs_apart():
    """Issue 12, fault 2's symptom: the clean-trained UML ended at median cos(v, t) 0.31 against the baseline's 0.65."""
    batch, _ = concept_batch(swapped=0, seed=999)
    cosines = {}
    for name in ("baseline", "uml"):
        model = build(name, dropout=0.0, attention_dropout=0.0, **({"warmup_steps": 10} if name == "uml" else {}))
        train_on_concepts(model, steps=60, swapped=0)
        model.eval()
        with torch.no_grad():
            v, t = model.encode_visual(batch["visual"]), model.encode_text(batch["text"]["de"])
        cosines[name] = (v * t).sum(1).mean().item()
    assert cosines["uml"] >= cosines["baseline"] - 0.05, cosines


def test_uml_kl_annealing_follows_training_steps():
    model = build("uml", kl_anneal_steps=10)
    assert model.current_kl_weight() == 0.0
    model.loss(make_batch())
    assert int(model.step) == 1 and model.current_kl_weight() == pytest.approx(0.01)
    model.eval()
    model.loss(make_batch())
    assert int(model.step) == 1  # evaluation does not advance the schedule
    model.step.fill_(100)
    assert model.current_kl_weight() == pytest.approx(0.1)


def test_one_to_k_temperature_stays_clamped():
    model = build("one_to_k")
    assert model.loss(make_batch())["temperature"].item() == pytest.approx(0.07)
    for value, expected in ((5.0, 0.5), (1e-6, 0.001)):
        with torch.no_grad():
            model.temperature.temperature.fill_(value)
        assert model.loss(make_batch())["temperature"].item() == pytest.approx(expected)
    optimizer = torch.optim.SGD(model.main_parameters(), lr=100.0)
    for _ in range(3):
        out = model.loss(make_batch())
        assert 0.001 <= out["temperature"].item() <= 0.5 and math.isfinite(out["loss"].item())
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()


COMMON = [n for n in ALL if n != "floor"]  # the floor is the common encoder itself


@pytest.mark.parametrize("head", ["linear", "mlp"])
@pytest.mark.parametrize("name", COMMON)
def test_common_encoder_setting_puts_every_objective_on_the_floors_heads(name, head):
    """docs/methods.md §8: in the common-encoder setting the test-time encoders are the floor's (sentence embedding
    / pooled feature through a linear map or MLP), so a difference between methods is one of objective."""
    from ccr_core.methods.heads import FeatureVisualHead, SentenceTextHead

    model = build(name, head=head)
    batch = make_batch(video=True)
    out = model.loss(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    assert isinstance(model.text_head, SentenceTextHead) and isinstance(model.visual, FeatureVisualHead)
    model.eval()
    text = batch["text"]["de"]
    with torch.no_grad():
        t = model.encode_text(text, "de")
        v = model.encode_visual(batch["visual"], batch["frames"], batch["frame_mask"])
        expected = model.text_head(text.states, text.mask)
    torch.testing.assert_close(t, expected)  # the test-time text embedding is the common head's
    assert v.shape == (B, EMBED_DIM)
    assert all(p.grad is not None for p in model.text_head.parameters())


def test_unknown_head_is_refused():
    with pytest.raises(ValueError, match="head must be one of"):
        build("baseline", head="transformer")
