"""invkit's built-in solvers, one module per paper: ``ddrm`` (Kawar et al., 2022), ``dps`` (Chung et
al., 2023), ``exact`` (exact posterior sampling for priors with a Gaussian form, the reference the
others are measured against) and ``hio`` (Fienup's 1982 hybrid input-output and error reduction,
the classical phase-retrieval baseline). Each solver's core is a pure step function in its paper's
symbols."""

from .ddrm import DDRM
from .dps import DPS
from .exact import ExactSolver
from .hio import HIO

__all__ = ["DDRM", "DPS", "ExactSolver", "HIO"]
