"""The research dashboard's logic, one module per tab, over a :class:`~ccr_core.dashboard.world.World`
loaded once and shared read-only by every user. Nothing here imports gradio: ``app.py`` only wires
these functions to components, so every view can be scripted and tested from plain Python."""
from ccr_core.dashboard.world import InputError, World, WorldNotBuilt, load_world

__all__ = ["InputError", "World", "WorldNotBuilt", "load_world"]
