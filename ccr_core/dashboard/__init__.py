"""The research dashboard, one module per tab, over a :class:`~ccr_core.dashboard.world.World` loaded
once and shared read-only by every user. Each tab module holds the tab's logic (plain functions,
scripted and tested without Gradio) and its ``build_tab(world, page)``, which lays the tab out and
wires it to those functions; ``ui`` has what the builders share. Gradio is imported inside the
builders only, so importing this package (or the core) never imports it; ``app.py`` assembles the
tabs and launches."""
from ccr_core.dashboard.world import InputError, World, WorldNotBuilt, load_world

__all__ = ["InputError", "World", "WorldNotBuilt", "load_world"]
