"""DDRM (Kawar et al., 2022): invkit's reference solver."""

from .ddrm import DDRM, ddrm_schedule

__all__ = ["DDRM", "ddrm_schedule"]
