"""Helpers shared by the network tests (imported as ``_nets``; tests/ is on sys.path under pytest)."""

from __future__ import annotations

import torch


def randomize(model: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """Perturb every parameter in place (the zero-initialised output convs would otherwise hide bugs).

    The noise is drawn in float32 and cast to each parameter's dtype, so a float64 copy of a model
    gets the same perturbation. Returns ``model`` (its train/eval mode unchanged).
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype))
    return model
