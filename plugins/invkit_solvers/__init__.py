"""invkit's built-in solvers, one module per paper: ``ddrm`` (Kawar et al., 2022), ``dps`` (Chung et
al., 2023), ``exact`` (exact posterior sampling for priors with a Gaussian form, the reference the
others are measured against) and ``hio`` (Fienup's 1982 hybrid input-output and error reduction,
the classical phase-retrieval baseline). Each solver's core is a pure step function in its paper's
symbols. ``ddnm``/``ddnm_plus`` (Wang et al., 2023), ``pigdm`` (Song et al., 2023) and ``diffpir`` (Zhu et al.,
2023) share DDRM's spectral set-up."""

from .ddnm import DDNM, DDNMPlus
from .ddrm import DDRM
from .diffpir import DiffPIR
from .dps import DPS
from .exact import ExactSolver
from .hio import HIO
from .pigdm import PiGDM

__all__ = ["DDNM", "DDNMPlus", "DDRM", "DPS", "DiffPIR", "ExactSolver", "HIO", "PiGDM"]
