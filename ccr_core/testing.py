"""The registry's checks of one method, for a method's own tests (a plugin's included)::

    from ccr_core.testing import check_method

    def test_my_method():
        check_method("my_method")          # every check; an AssertionError says which failed and why

or one test per check: ``@pytest.mark.parametrize("check", CHECKS)`` then ``check_method("my_method", only=[check])``.
Each check runs the method on tiny random inputs on the CPU in well under a second: unit-length embeddings
(images and videos), named finite loss terms, gradients reaching every trained parameter and no frozen input,
a save/load round trip, a config round trip, deterministic evaluation, a tiny overfit that beats chance, and
that the method's config takes what the comparison grid sets (``head="linear"``, each world's published config).
"""
from __future__ import annotations

from dataclasses import fields
from typing import Callable, Iterable

import torch
from torch import nn

from ccr_core.methods import METHODS, build_method
from ccr_core.methods.base import ROLES, TextBatch
from ccr_core.study import grid
from ccr_core.study.plots import OKABE_ITO

B, L, T = 6, 5, 4  # items, tokens, frames
TEXT_DIM, VISUAL_DIM, EMBED_DIM = 16, 12, 8
LANGS = ["en", "de", "fr"]
# Small widths for the fields a config has (EncoderConfig's and MethodConfig's); others keep their defaults.
TINY = dict(text_dim=TEXT_DIM, visual_dim=VISUAL_DIM, embed_dim=EMBED_DIM, hidden_dim=8, num_heads=2,
            max_text_tokens=16, max_frames=8, languages=LANGS)


class TinyTop(nn.Module):
    """Stands in for the trainable top layers of the text backbone."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(TEXT_DIM, TEXT_DIM)

    def forward(self, states, mask):
        return states + self.linear(states)  # (B, L, Dt)


def text_batch(gen: torch.Generator, b: int = B, length: int = L):

    states = torch.randn(b, length, TEXT_DIM, generator=gen)  # (B, L, Dt)
    lengths = torch.randint(1, length + 1, (b,), generator=gen)
    lengths[0] = length  # at least one full row, so no all-padding column
    return TextBatch(states, torch.arange(length)[None, :] < lengths[:, None])  # mask (B, L)


def make_batch(seed: int = 0, video: bool = False, back: bool = True, targets=("de", "fr"), b: int = B) -> dict:
    """A random batch in the trainer's layout (``ccr_core.methods.base``)."""
    gen = torch.Generator().manual_seed(seed)
    batch = {"visual": torch.randn(b, VISUAL_DIM, generator=gen),  # (B, Dv)
             "text": {lang: text_batch(gen, b) for lang in ["en", *targets]},
             "targets": list(targets), "item_ids": [f"item{i}" for i in range(b)]}
    if back:
        batch["back"] = {lang: text_batch(gen, b) for lang in targets}
    if video:
        batch["frames"] = torch.randn(b, T, VISUAL_DIM, generator=gen)  # (B, T, Dv)
        frame_lengths = torch.randint(1, T + 1, (b,), generator=gen)
        batch["frame_mask"] = torch.arange(T)[None, :] < frame_lengths[:, None]  # (B, T)
    return batch


def tiny_config(name: str, **overrides):
    """The method's config at the tiny widths (only fields it has), plus ``overrides``."""

    cls = METHODS.get(name).config_class
    known = {f.name for f in fields(cls)}
    return cls.from_dict({k: v for k, v in {**TINY, **overrides}.items() if k in known})


def build(name: str, text_top: nn.Module | None = None, **overrides):

    torch.manual_seed(0)
    return METHODS.get(name)(tiny_config(name, **overrides), text_top=text_top)


def _unit(x: torch.Tensor, what: str) -> None:
    assert x.shape == (B, EMBED_DIM), f"{what}: shape {tuple(x.shape)}, expected {(B, EMBED_DIM)}"
    torch.testing.assert_close(x.norm(dim=-1), torch.ones(B), msg=lambda m: f"{what} are not unit vectors: {m}")


def check_encoders_give_unit_vectors(name: str, video: bool = True) -> None:
    model = build(name)
    for with_video in (False, True) if video else (False,):
        batch = make_batch(video=with_video)
        for mode in (model.train, model.eval):
            mode()
            _unit(model.encode_text(batch["text"]["de"], "de"), "encode_text embeddings")
            _unit(model.encode_visual(batch["visual"], batch.get("frames"), batch.get("frame_mask")),
                  "encode_visual embeddings" + (" of videos" if with_video else ""))


def check_loss_terms_are_named_finite_scalars(name: str, video: bool = True, expected_keys: Iterable[str] | None = None) -> None:
    """Every case gives named finite scalars with a total ``"loss"``; the terms are ``expected_keys``, by default the
    class's declared ``loss_keys`` (a method that declares none is checked for the total only)."""
    if expected_keys is None and METHODS.get(name).loss_keys:
        expected_keys = METHODS.get(name).loss_keys
    model = build(name)
    cases = [dict(back=True), dict(back=False), dict(back=False, targets=())] + ([dict(video=True, back=False)] if video else [])
    for case in cases:
        out = model.loss(make_batch(**case))
        assert "loss" in out, f"loss() returned {sorted(out)}: no 'loss' total"
        if expected_keys is not None:
            assert set(out) == {"loss"} | set(expected_keys), f"loss terms {sorted(out)}, expected {sorted({'loss', *expected_keys})}"
        for key, value in out.items():
            assert isinstance(value, torch.Tensor) and value.dim() == 0, f"loss term {key!r} is not a scalar tensor ({case})"
            assert torch.isfinite(value), f"loss term {key!r} is {value.item()} ({case})"
        assert out["loss"].requires_grad, f"the total loss has no gradient ({case})"


def check_gradients_reach_trained_parameters_only(name: str, video: bool = True) -> None:
    model = build(name, text_top=TinyTop())
    batches = [make_batch(0)] + ([make_batch(1, video=True, back=False)] if video else [])
    sum(model.loss(batch)["loss"] for batch in batches).backward()
    main = {id(p) for p in model.main_parameters()}
    for pname, p in model.named_parameters():
        if id(p) in main:
            assert p.grad is not None, f"parameter {pname} got no gradient from the loss"
            assert torch.isfinite(p.grad).all(), f"parameter {pname} has a non-finite gradient"
        else:
            assert p.grad is None, f"parameter {pname}, owned by an extra optimiser, got a gradient from the main loss"
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.text_top.parameters()), \
        "the text backbone's trainable top (text_top) got no gradient: use self.backbone_states(text)"
    for batch in batches:
        frozen = [batch["visual"], *(t.states for group in ("text", "back") for t in batch.get(group, {}).values())]
        frozen += [batch["frames"]] if "frames" in batch else []
        assert all(not x.requires_grad and x.grad is None for x in frozen), "a frozen input got a gradient"


def check_save_load_round_trip(name: str, video: bool = True) -> None:
    from safetensors.torch import load, save


    model = build(name)
    optimizer = torch.optim.Adam(model.main_parameters(), lr=1e-2)
    model.loss(make_batch(0))["loss"].backward()  # one step, so that BatchNorm statistics move
    optimizer.step()
    model.eval()
    fresh = build_method(name, model.config.to_dict())
    fresh.load_state_dict(load(save({k: v.contiguous() for k, v in model.state_dict().items()})))
    fresh.eval()
    batch = make_batch(3, video=video)
    with torch.no_grad():
        torch.testing.assert_close(fresh.encode_text(batch["text"]["fr"], "fr"), model.encode_text(batch["text"]["fr"], "fr"))
        torch.testing.assert_close(fresh.encode_visual(batch["visual"]), model.encode_visual(batch["visual"]))
        if video:
            torch.testing.assert_close(fresh.encode_visual(batch["visual"], batch["frames"], batch["frame_mask"]),
                                       model.encode_visual(batch["visual"], batch["frames"], batch["frame_mask"]))


def check_config_round_trip(name: str, video: bool = True) -> None:

    cls = METHODS.get(name).config_class
    for config in (cls(), tiny_config(name)):
        assert cls.from_dict(config.to_dict()) == config, f"{cls.__name__}.from_dict(to_dict()) changed the config"
    try:
        cls.from_dict({"no_such_field": 1})
    except ValueError:
        pass
    else:
        raise AssertionError(f"{cls.__name__}.from_dict accepted an unknown field")


def check_eval_is_deterministic(name: str, video: bool = True) -> None:
    model = build(name).eval()
    batch = make_batch(video=video)

    def encode():
        with torch.no_grad():
            return (model.encode_text(batch["text"]["en"], "en"),
                    model.encode_visual(batch["visual"], batch.get("frames"), batch.get("frame_mask")))

    for a, b in zip(encode(), encode()):
        assert torch.equal(a, b), "two evaluations of the same batch differ (dropout or randomness left on in eval mode?)"


def check_tiny_overfit_beats_chance(name: str, video: bool = True) -> None:
    """Adam on one fixed batch of 8 for 30 steps: the loss halves and text→image R@1 reaches 3/8 (chance 1/8) in
    German or English (a method may train on English alone, as baseline-en)."""
    batch = make_batch(5, b=8, targets=("de",))
    model = build(name, dropout=0.0, attention_dropout=0.0)
    optimizer = torch.optim.Adam(model.main_parameters(), lr=1e-2)
    model.train()
    history = []
    for _ in range(30):
        out = model.loss(batch)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        history.append(out["loss"].item())
    assert history[-1] < 0.5 * history[0], f"the loss did not halve on one batch in 30 steps: {history[0]:.4f} -> {history[-1]:.4f}"
    model.eval()
    r1 = 0.0
    with torch.no_grad():
        for lang in ("de", "en"):
            sim = model.encode_text(batch["text"][lang], lang) @ model.encode_visual(batch["visual"]).T  # (8, 8)
            r1 = max(r1, (sim.argmax(dim=1) == torch.arange(8)).float().mean().item())
    assert r1 >= 3 / 8, f"text→image R@1 {r1:.3f} after overfitting one batch (chance 0.125, bar 0.375)"


def check_config_takes_the_grids_settings(name: str, video: bool = True) -> None:
    """The comparison grid builds every method with ``head="linear"`` (its common-encoder setting) and with each
    world's published config and per-method overrides: the method's config must take them."""

    configs = [{"head": grid.COMMON_HEAD}]
    for proto in grid.PROTOCOL.values():
        configs += [dict(proto.published_config), dict(proto.method_overrides.get(name, {}))]
    for config in configs:
        try:
            build_method(name, tiny_config(name), **config)
        except (ValueError, TypeError) as exc:
            raise AssertionError(f"the grid cannot build {name!r} with {config}: {exc} "
                                 "(subclass ccr_core.methods.heads.EncoderConfig and build the heads with make_text_head / "
                                 "make_visual_head to take the grid's settings)") from None


def check_facts_are_well_formed(name: str, video: bool = True) -> None:
    """The class's facts (``ccr_core.methods.base.CCRMethod``) are what the trainer and the dashboard can read."""
    cls = METHODS.get(name)
    assert cls.colour is None or cls.colour in OKABE_ITO, f"colour {cls.colour!r} is not one of {sorted(OKABE_ITO)}"
    assert isinstance(cls.display_order, (int, float)), f"display_order {cls.display_order!r} is not a number"
    assert cls.role in ROLES, f"role {cls.role!r}: expected one of {ROLES}"
    assert cls.targets_per_batch is None or (isinstance(cls.targets_per_batch, int) and cls.targets_per_batch >= 0), \
        f"targets_per_batch {cls.targets_per_batch!r}: expected None or an int >= 0"
    assert isinstance(cls.loss_keys, tuple) and "loss" not in cls.loss_keys, \
        f"loss_keys {cls.loss_keys!r}: a tuple of the terms besides the total 'loss'"
    assert isinstance(cls.description, str) and "\n" not in cls.description, "description: one line of plain words"


CHECKS: dict[str, Callable[..., None]] = {
    "facts": check_facts_are_well_formed,
    "encoders": check_encoders_give_unit_vectors,
    "loss_terms": check_loss_terms_are_named_finite_scalars,
    "gradients": check_gradients_reach_trained_parameters_only,
    "save_load": check_save_load_round_trip,
    "config": check_config_round_trip,
    "deterministic": check_eval_is_deterministic,
    "overfit": check_tiny_overfit_beats_chance,
    "grid": check_config_takes_the_grids_settings,
}


def check_method(name: str, only: Iterable[str] | None = None, video: bool = True) -> None:
    """Run the registry's checks (``only``: those named, keys of :data:`CHECKS`) on the registered method ``name``,
    with one torch thread; the first failure raises an AssertionError naming the check. ``video=False`` for a
    method that does not take frame sequences."""

    METHODS.get(name)  # an unknown name (or a plugin that failed to load) says so here
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for check in only or CHECKS:
            if check not in CHECKS:
                raise ValueError(f"no check {check!r}; checks: {', '.join(CHECKS)}")
            try:
                CHECKS[check](name, video=video)
            except AssertionError as exc:
                raise AssertionError(f"method {name!r} fails the {check!r} check: {exc}") from None
    finally:
        torch.set_num_threads(threads)
