"""The old home of the operator protocol, kept so that ``from invkit.operator import ...`` still works.

Everything lives in :mod:`invkit.forward` (the forward-model ladder); import from there or from
:mod:`invkit`.
"""

from .forward import ForwardModel, IdentityUOperator, LinearOperator, Operator, Shape, SVDOperator, as_shape

__all__ = ["ForwardModel", "LinearOperator", "Operator", "SVDOperator", "IdentityUOperator", "Shape", "as_shape"]
