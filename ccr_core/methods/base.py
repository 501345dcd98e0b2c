"""The one interface every CCR method implements, the method registry, and the batch layout.

Training is affordable on a CPU because the frozen parts are computed once: visual features come
from the feature cache, and the frozen lower layers of the text backbone are run once per caption
(``TextBatch.states`` holds their output). A method owns only what it trains: optionally the top
``trainable_layers`` of the text backbone (``text_top``), the last ``trainable_image_blocks`` of the
visual backbone (``visual_top``, over cached feature maps), and its own heads.

A batch is a dict::

    {
      "visual":     (B, Dv) float  pooled frozen visual features of the B items
      "frames":     (B, T, Dv) float, "frame_mask": (B, T) bool     -- optional, video items
      "text":       {lang: TextBatch}  one caption per item per language; "en" (the source) first,
                    then the target languages (machine-translated in training)
      "back":       {lang: TextBatch}  optional back-translations into English of text[lang]
      "targets":    list of the target languages in this batch (text keys other than "en")
      "item_ids":   list[str] of length B (bookkeeping; never used by losses)
      "visual_maps": (B, C, H, W) float  instead of "visual" when the method fine-tunes image blocks
                    (``visual_top``): cached EfficientNet feature maps, which ``with_visual_top`` turns
                    into "visual" before ``loss`` sees the batch
    }

``loss(batch)`` returns a dict of named scalar tensors with the total under ``"loss"``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import nn

from ccr_core.registry import Registry

# Methods in other packages register through this entry-point group (see ccr_core.methods.load_plugins).
PLUGIN_GROUP = "ccr_lab.methods"
METHODS: Registry = Registry("method", plugin_group=PLUGIN_GROUP)
# A method's ``role`` in the comparison: none, the floor every method must beat, the method they are compared against.
ROLES = ("", "reference", "baseline")


@dataclass
class TextBatch:
    states: torch.Tensor  # (B, L, Dt) output of the frozen text-backbone layers
    mask: torch.Tensor  # (B, L) bool, True at real tokens

    def to(self, device) -> "TextBatch":
        return TextBatch(self.states.to(device), self.mask.to(device))


@dataclass
class MethodConfig:
    """Fields shared by every method; each method subclasses this with its own fields."""

    text_dim: int = 384  # width of the text backbone's token states
    visual_dim: int = 1280  # width of the frozen visual features
    embed_dim: int = 256  # the joint embedding space
    dropout: float = 0.2  # in the mapping heads
    languages: list[str] = field(default_factory=lambda: ["en"])  # languages seen in training, "en" first

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MethodConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown config fields {sorted(unknown)}")
        return cls(**data)


FACTS = ("label", "description", "colour", "display_order", "main", "role", "loss_keys", "targets_per_batch")


class CCRMethod(nn.Module):
    """Base class. Subclasses set ``name`` and ``config_class`` and implement the four methods; the class
    attributes below are the method's facts, which the trainer, the study and the dashboard read from the
    registry (see :func:`ordered_methods`), so a method is described in its own file only."""

    name: str = "base"
    config_class: type[MethodConfig] = MethodConfig

    # -- facts about the method (class attributes; a plugin may leave them at these defaults) ----------------
    label: str = ""  # how prose names it ("NRCCR", "1-to-K"); "" = its registry name
    description: str = ""  # one plain-words sentence: what it does differently (glossary, About tab)
    colour: str | None = None  # its charts' colour: a name in ccr_core.study.plots.OKABE_ITO; None = the "other" colour
    display_order: float = float("inf")  # position in every table and chart; unset (a plugin) = after, alphabetically
    main: bool = False  # one of the comparison's methods: the grid trains it, tables and pickers show it by default
    role: str = ""  # "reference": the floor every method must beat; "baseline": what methods are compared against
    loss_keys: tuple[str, ...] = ()  # the terms loss() returns besides the total "loss"
    # Target languages per batch: None = the trainer's ``targets_per_batch``; 0 = every target language in
    # every batch (a loss over all languages of an image at once).
    targets_per_batch: int | None = None
    # Derived from the class (set in __init_subclass__): whether it defines discriminator_step / uncertainty.
    has_discriminator_step: bool = False
    has_uncertainty: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Facts describe one method: a subclass (a plugin built on the baseline) does not inherit its parent's
        # order, colour, role or loss keys; what it does not declare keeps the defaults above.
        for fact in FACTS:
            if fact not in cls.__dict__:
                setattr(cls, fact, getattr(CCRMethod, fact))
        cls.has_discriminator_step = cls.discriminator_step is not CCRMethod.discriminator_step
        cls.has_uncertainty = cls.uncertainty is not CCRMethod.uncertainty

    def __init__(self, config: MethodConfig, text_top: nn.Module | None = None):
        super().__init__()
        self.config = config
        # The trainable top layers of the text backbone, applied to cached frozen states:
        # callable(states (B, L, Dt), mask (B, L)) -> states (B, L, Dt). None = backbone fully frozen.
        self.text_top = text_top
        # The trainable top blocks of the visual backbone (ccr_core.training.image_cache.ImageTop):
        # callable(maps (B, C, H, W)) -> pooled features (B, Dv). None = pooled frozen features.
        self.visual_top = None

    def backbone_states(self, text: TextBatch) -> torch.Tensor:
        """Run the trainable top layers (if any) over cached frozen states: (B, L, Dt)."""
        return text.states if self.text_top is None else self.text_top(text.states, text.mask)

    def with_visual_top(self, batch: dict) -> dict:
        """The batch with ``"visual"`` computed from ``"visual_maps"`` by the trainable image top (when the
        method has one and the batch carries maps); otherwise the batch unchanged."""
        if self.visual_top is None or "visual_maps" not in batch:
            return batch
        return {**batch, "visual": self.visual_top(batch["visual_maps"])}  # (B, Dv)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """``loss(batch)`` after the image top: forward() is what the trainer calls and what
        DistributedDataParallel wraps to average gradients."""
        return self.loss(self.with_visual_top(batch))

    def encode_text(self, text: TextBatch, lang: str | None = None) -> torch.Tensor:
        """L2-normalised caption embeddings (B, E), as used at test time."""
        raise NotImplementedError

    def encode_visual(self, visual: torch.Tensor, frames: torch.Tensor | None = None, frame_mask: torch.Tensor | None = None) -> torch.Tensor:
        """L2-normalised visual embeddings (B, E), as used at test time."""
        raise NotImplementedError

    def loss(self, batch: dict) -> dict[str, torch.Tensor]:
        """Named loss terms; the total under ``"loss"``."""
        raise NotImplementedError

    def uncertainty(self, text: TextBatch, visual: torch.Tensor) -> torch.Tensor | None:  # pragma: no cover - optional
        """Per-pair uncertainty in [0, 1] (UML only); None for methods without one."""
        return None

    def discriminator_step(self, batch: dict) -> float:  # pragma: no cover - optional
        """One step of a method's own adversary (NRCCR's language discriminator) on ``batch``, after the main
        loss's backward and before the main optimiser's step; returns its loss. Methods without one leave it."""
        raise NotImplementedError

    def extra_optimizers(self) -> list[torch.optim.Optimizer]:
        """Optimisers a method steps itself (e.g. NRCCR's language discriminator, stepped by its
        ``discriminator_step(batch)``), returned so a trainer can checkpoint them. Default: none.
        Return the same optimiser objects on every call, so their state persists."""
        return []

    def backbone_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters of the backbone tops (``text_top``, ``visual_top``), which a trainer may
        give their own, smaller learning rate."""
        return [p for top in (self.text_top, self.visual_top) if top is not None for p in top.parameters() if p.requires_grad]

    def main_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters for the main optimiser: all but those an extra optimiser owns."""
        owned = {id(p) for opt in self.extra_optimizers() for group in opt.param_groups for p in group["params"]}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in owned]


def ordered_methods(plugins: bool = True) -> list[str]:
    """Registered method names in display order (``display_order``, then by name); ``plugins=False``: built-ins only."""
    return sorted(METHODS.list(plugins=plugins), key=lambda n: (METHODS.get(n).display_order, n))


def main_methods(plugins: bool = False) -> list[str]:
    """The comparison's methods (``main``), in display order: what the grid trains."""
    return [n for n in ordered_methods(plugins) if METHODS.get(n).main]


def method_with_role(role: str) -> str:
    """The built-in method with ``role`` ("reference": the floor; "baseline"); a ValueError when none has it."""
    found = [n for n in ordered_methods(plugins=False) if METHODS.get(n).role == role]
    if len(found) != 1:
        raise ValueError(f"expected one built-in method with role {role!r}, found {found}")
    return found[0]


def methods_with(plugins: bool = False, **facts) -> list[str]:
    """Method names in display order whose class facts equal ``facts`` (``methods_with(targets_per_batch=0)``: those
    whose batches carry every target language); ``plugins=False``: built-ins only."""
    return [n for n in ordered_methods(plugins) if all(getattr(METHODS.get(n), k) == v for k, v in facts.items())]


def method_label(name: str) -> str:
    """How prose names a registered method (its ``label``), else the name itself (an unknown name too)."""
    return (METHODS.get(name).label or name) if name in METHODS else name


def build_method(name: str, config: MethodConfig | dict | None = None, **overrides) -> CCRMethod:
    """Create a registered method from a config (object or dict) plus key=value overrides."""
    cls = METHODS.get(name)
    cfg_cls = cls.config_class
    if config is None:
        config = cfg_cls()
    elif isinstance(config, dict):
        config = cfg_cls.from_dict(config)
    for key, value in overrides.items():
        if not hasattr(config, key):
            raise ValueError(f"{cfg_cls.__name__} has no field {key!r}")
        setattr(config, key, value)
    return cls(config)
