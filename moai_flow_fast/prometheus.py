"""Public import path of the Prometheus integration: ``moai_flow_fast.prometheus``."""

from .integrations.prometheus import *  # noqa: F403
from .integrations.prometheus import __all__ as __all__
