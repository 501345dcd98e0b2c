"""Backbones: the shared text and visual encoders every method builds on, chosen by name from
registries (``TEXT_BACKBONES``, ``VISUAL_BACKBONES``)."""
from ccr_core.registry import Registry

TEXT_BACKBONES: Registry = Registry("text backbone")
VISUAL_BACKBONES: Registry = Registry("visual backbone")
