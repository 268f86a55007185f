"""What fastc's custom ops (torch.ops.fastc.*) share: registering each once per process."""
from __future__ import annotations

import torch


def registered(op: str) -> bool:
    """Whether `torch.ops.fastc.<op>` exists already (a module imported twice, or reloaded, must
    not register it again: torch.library refuses a second definition)."""
    try:
        getattr(torch.ops.fastc, op).default  # noqa: B018 - lookup only
    except (AttributeError, RuntimeError):
        return False
    return True
