"""The gateway admin client tune's trials turn (defined in core, which `llmctl up` shares)."""

from __future__ import annotations

from llmctl.core.admin import GatewayAdmin

__all__ = ["GatewayAdmin"]
