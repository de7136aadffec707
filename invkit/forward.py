"""The forward-model ladder: forward model ▸ linear operator ▸ SVD operator.

Three rungs, each adding what it claims (and each checked for it by :mod:`invkit.checks`):

* :class:`ForwardModel` — ``forward(x)``, ``in_shape``, ``out_shape``; differentiable. Its
  vector-Jacobian product :meth:`ForwardModel.vjp` is autograd's unless the model provides one
  (phase retrieval, a camera response curve, a user's function). Checked: VJP against central
  finite differences in float64.
* :class:`LinearOperator` — adds ``adjoint(y) = Hᵀ y`` (and its VJP is the adjoint). Checked:
  adjointness ``<Hx, y> = <x, Hᵀy>``, and autograd's VJP of ``forward`` equal to ``adjoint``
  (gradient-based solvers differentiate ``forward`` and rely on it).
* :class:`SVDOperator` — knows ``H = U Σ Vᵀ``: ``V``, ``Vt``, ``U``, ``Ut``, ``singular_values``.
  Checked: the SVD against the dense matrix (:class:`invkit.dense.DenseSVD`).

``Operator`` is the name of :class:`LinearOperator` from before forward models existed.

Conventions (written once, here):

* A forward model instance is **one** map ``A`` (a linear one is written ``H``) for a fixed image shape ``in_shape =
  (C, H, W)``. It acts on batches: ``forward`` maps ``(B, C, H, W)`` to ``(B, *out_shape)``, and
  every element of the batch (images, or posterior samples under the same ``H``) sees the same
  ``H``.
* A measurement lives in the operator's natural output space: an image for blur,
  super-resolution or colorization; a compact vector of kept entries (``out_shape == (m,)``)
  for masks and compressed sensing.
* An operator that knows its SVD ``H = U Σ Vᵀ`` subclasses :class:`SVDOperator` and offers
  ``Vt``/``V`` (images ``(B, C, H, W)`` <-> flat spectral vectors ``(B, n)``), ``Ut``/``U``
  (measurements <-> flat ``(B, m)``) and ``singular_values`` of length ``k = min(m, n)`` that
  belong to the **first k** spectral coordinates, in whatever order the operator likes (solvers
  must not rely on sorting). From these the core derives ``H`` (:meth:`SVDOperator.svd_forward`),
  ``Hᵀ`` (:meth:`SVDOperator.svd_adjoint`) and the guarded pseudo-inverse
  (:meth:`SVDOperator.pinv`).
* Operators are device- and dtype-agnostic: their constants are built once (usually in
  float64 on the CPU) and cast to the input's device and dtype on first use, then cached.
* Images are in [0, 1] (the operators are linear; the range only matters to solvers and I/O).

Example:
    >>> import torch
    >>> from invkit.forward import SVDOperator
    >>> class Scale(SVDOperator):
    ...     name = "scale"
    ...     def __init__(self, in_shape):
    ...         super().__init__(in_shape)
    ...     @property
    ...     def out_shape(self):
    ...         return self.in_shape
    ...     @property
    ...     def singular_values(self):
    ...         return torch.full((self.in_numel,), 2.0, dtype=torch.float64)
    ...     def Vt(self, x):
    ...         return x.reshape(x.shape[0], -1)
    ...     def V(self, z):
    ...         return z.reshape(z.shape[0], *self.in_shape)
    ...     def Ut(self, y):
    ...         return y.reshape(y.shape[0], -1)
    ...     def U(self, z):
    ...         return z.reshape(z.shape[0], *self.out_shape)
    >>> op = Scale((1, 2, 2))
    >>> op.forward(torch.ones(1, 1, 2, 2)).flatten().tolist()
    [2.0, 2.0, 2.0, 2.0]
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from .params import Param, declare_from_init, int_tuple, parse_params

__all__ = ["ForwardModel", "LinearOperator", "Operator", "SVDOperator", "IdentityUOperator", "Shape", "as_shape"]

#: An image shape ``(C, H, W)``: channels, height, width, without the batch dimension.
Shape = tuple[int, int, int]


def as_shape(shape: Sequence[int] | str) -> Shape:
    """Validate an image shape ``(C, H, W)``; accepts ``"3,64,64"`` and ``"3x64x64"`` too (the one shape parser).

    Raises:
        ValueError: Not three positive integers.
    """
    try:
        shape = int_tuple(shape)
    except ValueError:
        raise ValueError(f"image shape must be three positive integers (C, H, W), got {shape!r}") from None
    if len(shape) != 3 or any(v <= 0 for v in shape):
        raise ValueError(f"image shape must be three positive integers (C, H, W), got {shape}")
    return shape  # type: ignore[return-value]


def _model_name(model: ForwardModel) -> str:
    """How parameter errors name a forward model: its registry name, else its class name."""
    return model.name or type(model).__name__


def _adopt_config(model: ForwardModel, values: dict[str, Any]) -> None:
    """Before a signature-declared ``__init__`` body runs: its validated values become ``model.config``.

    The outermost such ``__init__`` sets it (a base class's, called from it, leaves it). Where the
    model's class has a schema of its own (a subclass declaring ``params``), values outside it are
    dropped and missing ones take its defaults, so ``config`` always holds ``type(model).params``.
    """
    if "config" in vars(model):
        return
    own = type(model).params
    names = {p.name for p in own}
    if names == set(values):
        model.config = values
    else:
        model.config = parse_params(own, {k: v for k, v in values.items() if k in names}, owner=_model_name(model))


class ForwardModel(ABC):
    """A differentiable forward model ``y = A(x)`` on batched images (linear or not).

    Subclasses set the class attributes below, declare their parameters once, call
    ``super().__init__`` (which validates the image shape) and implement :attr:`out_shape` and
    :meth:`forward` (differentiable by autograd, or with :meth:`vjp` overridden). The parameters
    are declared either

    * in the ``__init__`` signature, after the image shape, each annotated
      ``Annotated[T, Arg("doc", ...)]`` (a plain parameter gets an inferred schema, see
      :func:`~invkit.params.signature_params`): :attr:`params` is derived from it, every call
      is validated through it (``--arg`` strings and Python values alike), and the validated
      values are :attr:`config` before the body runs; the body calls
      ``super().__init__(in_shape)`` and uses its (already converted) arguments; or
    * as a :attr:`params` tuple, with ``__init__(self, in_shape, **params)`` (or an explicit
      keyword signature) passing them to ``super().__init__(in_shape, **params)``, which
      validates them into :attr:`config`: the form for a parameter set several operators
      share, and plugins written that way. An ``__init__`` taking ``**kwargs`` keeps the
      ``params`` it inherits.

    Attributes:
        name: Registry name (``--operator NAME``).
        params: Typed parameter schema (see :mod:`invkit.params`).
        check_shape: A small ``(C, H, W)`` this operator accepts at default parameters, used by
            ``invkit check-operator`` and the conformance tests.
        check_cases: Further ``(shape, params)`` pairs (each parameter family, non-square and
            single-channel shapes, n <= 1024) that the conformance tests run in addition to
            ``(check_shape, defaults)``; see :func:`invkit.checks.conformance_cases`.
        linear: Whether the model is linear (:class:`LinearOperator` and below set it).
        measures_pixels: The measurement is the image's own pixels at a subset of positions
            (a mask: ``forward`` selects them). A photo of the image's shape is then a
            measurement too: ``invkit solve`` reads it as ``y = A(photo)`` (its pixels where the
            mask keeps them), and ``invkit degrade`` writes that view beside a compact measurement.
        in_shape: The image shape ``(C, H, W)`` this instance was built for.
        config: The validated parameters this instance was built with, one per :attr:`params`.

    Example:
        >>> from typing import Annotated
        >>> from invkit.params import Arg, format_schema
        >>> class Gain(ForwardModel):
        ...     name = "gain"
        ...     def __init__(self, in_shape, *, k: Annotated[float, Arg("multiplier", min=0.0)] = 2.0) -> None:
        ...         super().__init__(in_shape)
        ...         self.k = k
        ...     @property
        ...     def out_shape(self):
        ...         return self.in_shape
        ...     def forward(self, x):
        ...         return self.k * x
        >>> print(format_schema(Gain.params))
          k: 0.0 <= float, default 2.0. multiplier
        >>> op = Gain((1, 2, 2), k="3")
        >>> op.k, op.config
        (3.0, {'k': 3.0})
        >>> Gain((1, 2, 2), k=-1)
        Traceback (most recent call last):
            ...
        invkit.params.ParamError: gain: parameter 'k' = -1.0 is out of range; expected 0.0 <= float
    """

    linear: ClassVar[bool] = False
    measures_pixels: ClassVar[bool] = False

    name: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    check_shape: ClassVar[Shape] = (3, 8, 12)
    check_cases: ClassVar[tuple[tuple[Shape, dict[str, Any]], ...]] = ()

    in_shape: Shape
    config: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Derive ``params`` from a new ``__init__`` and validate its calls (see the class docstring).

        Raises:
            SchemaError: That ``__init__``'s signature contradicts itself (at class creation).
        """
        super().__init_subclass__(**kwargs)
        declare_from_init(cls, owner=_model_name, skip=1, before=_adopt_config)

    def __init__(self, in_shape: Sequence[int] | str, **params: Any) -> None:
        """Validate the image shape, and ``params`` against :attr:`params` into :attr:`config`.

        Raises:
            ValueError: ``in_shape`` is not three positive integers.
            ParamError: A parameter is unknown, missing or not allowed.
            TypeError: Parameters passed here by a model that declares them in its ``__init__``
                signature (they are in :attr:`config` already).
        """
        self.in_shape = as_shape(in_shape)
        if "config" not in vars(self):
            self.config = parse_params(type(self).params, params, owner=_model_name(self))
        elif params:
            raise TypeError(
                f"{_model_name(self)}: {', '.join(params)} passed to ForwardModel.__init__, but {type(self).__name__} declares its "
                "parameters in its __init__ signature and they are validated into config already; call super().__init__(in_shape)"
            )
        self._cache: dict[tuple[str, torch.device, torch.dtype], Tensor] = {}

    # ------------------------------------------------------------------ shapes
    @classmethod
    def infer_in_shape(cls, out_shape: Sequence[int], params: dict[str, Any]) -> Shape:
        """The image shape whose measurement has ``out_shape`` (for restoring a given photo).

        The default suits operators whose measurement is an image of the same shape (blur,
        denoising); resizing operators override it. Operators with compact measurements
        cannot infer it and raise ``ValueError``.
        """
        if len(out_shape) != 3:
            raise ValueError(
                f"operator '{cls.name}' measurements of shape {tuple(out_shape)} do not determine the image shape; "
                "pass --size C,H,W or use a measurement file written by `invkit degrade`"
            )
        return as_shape(out_shape)

    @property
    @abstractmethod
    def out_shape(self) -> tuple[int, ...]:
        """Shape of one measurement (without the batch dimension)."""

    @property
    def in_numel(self) -> int:
        """n: number of entries of one image."""
        return math.prod(self.in_shape)

    @property
    def out_numel(self) -> int:
        """m: number of entries of one measurement."""
        return math.prod(self.out_shape)

    # ------------------------------------------------------------------ maps
    @abstractmethod
    def forward(self, x: Tensor) -> Tensor:
        """Apply ``A``: ``(B, *in_shape) -> (B, *out_shape)``."""

    def vjp(self, x: Tensor, v: Tensor) -> Tensor:
        """Vector-Jacobian product ``J_A(x)ᵀ v`` per batch row (autograd's, unless overridden).

        Args:
            x: Images ``(B, *in_shape)`` at which the Jacobian is taken.
            v: Cotangents ``(B, *out_shape)``.

        Returns:
            ``(B, *in_shape)``: row ``b`` is ``J_A(x_b)ᵀ v_b`` (rows do not mix, since ``A`` acts
            on each row alone).
        """
        return autograd_vjp(self.forward, x, v)

    def __call__(self, x: Tensor) -> Tensor:
        return self.forward(x)

    # ------------------------------------------------------------------ helpers
    def check_image(self, x: Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is a ``(B, *in_shape)`` tensor."""
        _check_batched(x, self.in_shape, f"{self.label}: image")

    def check_measurement(self, y: Tensor) -> None:
        """Raise ``ValueError`` unless ``y`` is a ``(B, *out_shape)`` tensor."""
        _check_batched(y, self.out_shape, f"{self.label}: measurement")

    @property
    def label(self) -> str:
        """Short description used in messages: name and shape."""
        kind = "operator" if self.linear else "forward model"
        return f"{kind} '{self.name or type(self).__name__}' on {self.in_shape}"

    def const(self, key: str, value: Tensor, like: Tensor) -> Tensor:
        """Return ``value`` cast to ``like``'s device and (floating) dtype, cached under ``key``.

        Operators keep their constants in float64 on the CPU and call this in ``forward`` etc.,
        so the first call on a new device/dtype pays the transfer once.
        """
        dtype = like.dtype if value.is_floating_point() else value.dtype
        slot = (key, like.device, dtype)
        hit = self._cache.get(slot)
        if hit is None:
            hit = value.to(device=like.device, dtype=dtype)
            self._cache[slot] = hit
        return hit

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.items())
        return f"{type(self).__name__}({self.in_shape}{', ' if args else ''}{args})"


class LinearOperator(ForwardModel):
    """A linear forward model ``y = H x`` that also offers its adjoint ``Hᵀ``.

    Subclasses implement :attr:`out_shape`, :meth:`forward` and :meth:`adjoint`. The VJP of a
    linear map is its adjoint, so :meth:`vjp` returns ``adjoint(v)`` (no autograd graph);
    :func:`invkit.checks.check_autograd_adjoint` verifies that autograd's VJP of ``forward``
    agrees, because gradient-based solvers differentiate ``forward`` directly.
    """

    linear: ClassVar[bool] = True

    @abstractmethod
    def adjoint(self, y: Tensor) -> Tensor:
        """Apply ``Hᵀ``: ``(B, *out_shape) -> (B, *in_shape)``."""

    def vjp(self, x: Tensor, v: Tensor) -> Tensor:
        """``Hᵀ v`` (the Jacobian of a linear map is the map itself; ``x`` is not used)."""
        return self.adjoint(v)


#: The name of :class:`LinearOperator` from before forward models existed (plugins use it).
Operator = LinearOperator


def autograd_vjp(fn: Callable[[Tensor], Tensor], x: Tensor, v: Tensor) -> Tensor:
    """``J_fn(x)ᵀ v`` by autograd, whatever the caller's grad mode (the graph stays local).

    Args:
        fn: A differentiable map of batched tensors.
        x: Point ``(B, ...)``; not modified, its own ``requires_grad`` is ignored.
        v: Cotangent of ``fn(x)``'s shape.

    Raises:
        ValueError: ``fn`` is not differentiable at ``x`` (its output has no graph).
    """
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        out = fn(xr)
        if not out.requires_grad:
            raise ValueError("the forward model's output does not depend differentiably on x (no autograd graph); "
                             "implement vjp() or build forward from differentiable torch operations")
        (grad,) = torch.autograd.grad(out, xr, grad_outputs=v.to(out.dtype), allow_unused=True)
    return torch.zeros_like(x) if grad is None else grad


class SVDOperator(LinearOperator):
    """An operator that knows its SVD ``H = U Σ Vᵀ`` (see the module conventions).

    Subclasses implement :attr:`singular_values`, :meth:`Vt`, :meth:`V`, :meth:`Ut`, :meth:`U`.
    ``forward``/``adjoint`` default to the SVD form; an operator with a faster or exact direct
    implementation (a kornia convolution, a mask multiply) overrides them, and the conformance
    checks verify that both agree.
    """

    @property
    @abstractmethod
    def singular_values(self) -> Tensor:
        """Singular values, float64, length ``min(m, n)``; entry i belongs to spectral coordinate i."""

    @abstractmethod
    def Vt(self, x: Tensor) -> Tensor:
        """``Vᵀ x``: images ``(B, *in_shape)`` -> spectral vectors ``(B, n)``."""

    @abstractmethod
    def V(self, z: Tensor) -> Tensor:
        """``V z``: spectral vectors ``(B, n)`` -> images ``(B, *in_shape)``."""

    @abstractmethod
    def Ut(self, y: Tensor) -> Tensor:
        """``Uᵀ y``: measurements ``(B, *out_shape)`` -> ``(B, m)``."""

    @abstractmethod
    def U(self, z: Tensor) -> Tensor:
        """``U z``: ``(B, m)`` -> measurements ``(B, *out_shape)``."""

    # ------------------------------------------------------------------ input checks
    def check_spectral(self, z: Tensor) -> None:
        """Raise ``ValueError`` unless ``z`` is a ``(B, n)`` spectral vector (input of ``V``)."""
        _check_batched(z, (self.in_numel,), f"{self.label}: spectral vector")

    def check_coordinates(self, z: Tensor) -> None:
        """Raise ``ValueError`` unless ``z`` is a ``(B, m)`` vector of measurement coordinates (input of ``U``)."""
        _check_batched(z, (self.out_numel,), f"{self.label}: measurement coordinates")

    # ------------------------------------------------------------------ derived maps
    def s_like(self, like: Tensor) -> Tensor:
        """The singular values on ``like``'s device and dtype (cached)."""
        return self.const("__singular_values__", self.singular_values, like)

    def svd_forward(self, x: Tensor) -> Tensor:
        """``H x = U Σ Vᵀ x``."""
        z = self.Vt(x)
        return self.U(_times(z, self.s_like(z), self.out_numel))

    def svd_adjoint(self, y: Tensor) -> Tensor:
        """``Hᵀ y = V Σᵀ Uᵀ y``."""
        z = self.Ut(y)
        return self.V(_times(z, self.s_like(z), self.in_numel))

    def pinv(self, y: Tensor, rcond: float | None = None) -> Tensor:
        """Pseudo-inverse ``H⁺ y = V Σ⁺ Uᵀ y``.

        Singular values at or below ``rcond * max(s)`` are treated as zero (their coefficients
        are set to 0), so zeroed or tiny singular values never divide by zero or blow up.

        Args:
            y: Measurements ``(B, *out_shape)``.
            rcond: Relative cut-off; default ``100 * eps(dtype)`` (2.2e-14 in float64, 1.2e-5 in
                float32). Every coordinate is divided by its own singular value, so rounding does not
                accumulate over the matrix size as in a dense pseudo-inverse, whose usual
                ``max(m, n) * eps`` would drop most of a large blur's spectrum in float32.
        """
        z = self.Ut(y)
        s = self.s_like(z)
        if rcond is None:
            rcond = 100 * torch.finfo(z.dtype).eps
        cutoff = rcond * (float(s.max()) if s.shape[0] else 0.0)
        keep = s > cutoff
        inv = torch.where(keep, 1.0 / torch.where(keep, s, torch.ones_like(s)), torch.zeros_like(s))
        return self.V(_times(z, inv, self.in_numel))

    def forward(self, x: Tensor) -> Tensor:
        return self.svd_forward(x)

    def adjoint(self, y: Tensor) -> Tensor:
        return self.svd_adjoint(y)


def _times(z: Tensor, s: Tensor, size: int) -> Tensor:
    """``(B, size)`` coordinates: the first ``len(s)`` of ``z`` times ``s``, the rest zero (``Σ z``, ``Σᵀ z``, ``Σ⁺ z``)."""
    k = s.shape[0]
    out = z.new_zeros(z.shape[0], size)
    out[:, :k] = z[:, :k] * s
    return out


def _check_batched(t: Tensor, shape: tuple[int, ...], what: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != len(shape) + 1 or tuple(t.shape[1:]) != tuple(shape):
        raise ValueError(f"{what} has shape {tuple(t.shape)}; expected (B, {', '.join(map(str, shape))})")


class IdentityUOperator(SVDOperator):
    """An :class:`SVDOperator` whose left singular vectors are the measurement's own coordinates.

    ``U = I``: ``Ut`` flattens a measurement ``(B, *out_shape)`` to ``(B, m)`` and ``U`` puts the
    coordinates back in that shape (both copy). Denoising, colorization, block-average
    super-resolution, inpainting and compressed sensing are of this kind; subclasses implement
    ``singular_values``, ``Vt`` and ``V``.
    """

    def Ut(self, y: Tensor) -> Tensor:
        self.check_measurement(y)
        return y.reshape(y.shape[0], -1).clone()

    def U(self, z: Tensor) -> Tensor:
        self.check_coordinates(z)
        return z.reshape(z.shape[0], *self.out_shape).clone()
