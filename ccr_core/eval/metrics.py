"""Where :mod:`ccr_core.metrics` used to live; the dashboard's modules still import it from here.
Delete once they import ``ccr_core.metrics``."""
from ccr_core.metrics import *  # noqa: F401,F403
from ccr_core.metrics import __all__  # noqa: F401
