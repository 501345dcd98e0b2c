"""The small-loss example plugin, as its author tests it: registered through its entry point once installed
(`pip install --no-deps -e examples/ccr_small_loss`), it passes CCR Lab's registry checks, and its loss is the
baseline's with each target language's highest-loss 30% of pairs left out."""
from __future__ import annotations

import math

import pytest
import torch

from ccr_core.methods import METHODS, build_method, losses
from ccr_core.testing import CHECKS, TINY, check_method, make_batch


def test_registered_as_a_plugin():
    METHODS.get("small_loss")  # not installed: the error says which methods are known
    assert "ccr_small_loss" in METHODS.plugin_of("small_loss") and "small_loss" not in METHODS.list(plugins=False)


@pytest.mark.parametrize("check", CHECKS)
def test_passes_the_registry_checks(check):
    check_method("small_loss", only=[check])


def test_drops_each_target_languages_highest_loss_pairs():
    """Against a reference: per target language the mean InfoNCE of the ⌈0.7 B⌉ lowest-loss pairs; English all pairs."""
    torch.manual_seed(0)
    model = build_method("small_loss", dict(TINY)).eval()
    batch = make_batch(2, b=10, back=False)
    with torch.no_grad():
        out = model.loss(batch)
        v = model.encode_visual(batch["visual"])
        per_lang = {lang: losses.info_nce_per_sample(v, model.encode_text(batch["text"][lang], lang), 0.05)
                    for lang in ["en", *batch["targets"]]}
    kept = {lang: sorted(per_lang[lang].tolist())[: math.ceil(0.7 * 10)] for lang in batch["targets"]}
    assert out["visual_source"].item() == pytest.approx(per_lang["en"].mean().item(), rel=1e-5)
    assert out["visual_target"].item() == pytest.approx(sum(sum(k) / 7 for k in kept.values()) / len(kept), rel=1e-5)
    baseline = build_method("baseline", dict(TINY))
    baseline.load_state_dict(model.state_dict())
    with torch.no_grad():  # the dropped pairs are the high-loss ones: the baseline's target term is larger
        assert baseline.eval().loss(batch)["visual_target"] > out["visual_target"]


@pytest.mark.parametrize("bad", [dict(keep=0.0), dict(keep=1.5), dict(loss_kind="triplet")])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError, match="small_loss"):
        build_method("small_loss", dict(TINY, **bad))
