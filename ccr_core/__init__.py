"""CCR Lab core: data, backbones, methods, training, evaluation, indexes and projections for
cross-lingual cross-modal retrieval. It never imports gradio; the dashboard imports it."""
from ccr_core._compat import ensure_torchvision_importable

ensure_torchvision_importable()

__version__ = "0.1.0"
