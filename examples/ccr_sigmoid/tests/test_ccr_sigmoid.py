"""The example plugin, as its author tests it: registered through its entry point once installed
(`pip install --no-deps -e examples/ccr_sigmoid`), it passes CCR Lab's registry checks, and its loss
equals a pair-by-pair reference."""
from __future__ import annotations

import math

import pytest
import torch

from ccr_core.methods import METHODS
from ccr_core.testing import CHECKS, check_method


def test_registered_through_its_entry_point():
    METHODS.get("sigmoid")  # not installed: the error says which methods are known
    assert "ccr_lab" not in (METHODS.plugin_of("sigmoid") or "") and "ccr_sigmoid" in METHODS.plugin_of("sigmoid")
    assert "sigmoid" not in METHODS.list(plugins=False)


@pytest.mark.parametrize("check", CHECKS)
def test_passes_the_registry_checks(check):
    check_method("sigmoid", only=[check])


def test_loss_equals_the_pairwise_reference():
    from ccr_sigmoid import sigmoid_pair_loss

    gen = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(5, 7, generator=gen), dim=-1)
    b = torch.nn.functional.normalize(torch.randn(5, 7, generator=gen), dim=-1)
    scale, bias = torch.tensor(3.0), torch.tensor(-1.5)
    reference = 0.0
    for i in range(5):
        for j in range(5):
            z = 1.0 if i == j else -1.0
            logit = 3.0 * float(a[i] @ b[j]) - 1.5
            reference -= math.log(1 / (1 + math.exp(-z * logit)))
    assert sigmoid_pair_loss(a, b, scale, bias).item() == pytest.approx(reference / 5, rel=1e-5)
