"""Parameter sensitivity of a fitted surface: which parameter moves which part of the surface, and by how much.

The Jacobian of the model's implied vols at each quote with respect to each parameter, scaled by the parameter's
uncertainty, ranks the parameters by their contribution to the surface (the dashboard's sensitivity view).

Columns
    Surface models (SSVI, Heston, ...): one column per parameter, named as the model names it ("kappa").
    Slice models (flat Black, SVI, SABR): one column per (fitted expiry, parameter), named ``"a[<expiry>]"`` with
    ``<expiry>`` taken from ``expiry_labels`` (e.g. the ISO dates of ``CalibrationResult.expiries``:
    ``"a[2026-12-25T08:00:00Z]"``) or, by default, the time to expiry in years (``"a[0.25y]"``). The Jacobian is
    block-diagonal: a quote on a fitted expiry depends only on that expiry's parameters; a quote between two fitted
    expiries (total variance interpolated linearly in time) depends on both neighbours.
Derivatives
    The model's analytic Jacobian where it has one (price-output models: ``d vol = d price / vega``, the exact
    derivative of the implied vol), central finite differences of the model's values otherwise (one-sided at a
    bound), and finite differences of :meth:`FittedSurface.vols` for slice-model quotes between fitted expiries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from calibration.arbitrage import array_from_json
from calibration.black import black_greeks
from calibration.errors import CalibrationError
from calibration.models.base import FloatArray, Model, QuoteArrays, bounds_of
from calibration.result import to_json_value
from calibration.surface import SAME_EXPIRY_YEARS, FittedSurface

__all__ = ["DEFAULT_STEP", "Sensitivity", "sensitivity"]

#: Relative finite-difference step: ``h = step * max(|theta_i|, STEP_FLOOR)`` (central differences, error of
#: order ``h^2`` against rounding of order ``eps / h``: ``eps^(1/3)`` is the balance).
DEFAULT_STEP = 1e-5
STEP_FLOOR = 1e-2


@dataclass(frozen=True)
class Sensitivity:
    """Vol sensitivities of a fitted surface at a set of quotes.

    Attributes
    ----------
    names
        Column labels, ``P`` of them (see the module docstring).
    param
        Parameter name of each column ("a", "kappa").
    expiry_ttm
        Fitted expiry (years) of each column for slice models; NaN for surface models. ``(P,)``.
    k, ttm, strike
        Log-moneyness, time to expiry (years) and strike (quote currency) of each quote, ``(n,)``.
    vol
        The surface's vol at each quote, decimal, ``(n,)``.
    jacobian_vol
        ``d vol / d param``, vol decimals per unit of the parameter, ``(n, P)``.
    scale
        The move each column is scaled by, in the parameter's unit, ``(P,)``: its standard error, or the width of
        its search bounds (``ParamSpec.search_bounds``) where no standard error is known.
    scale_source
        "std_error" or "bound_width" per column.
    scaled
        ``jacobian_vol * scale``: the vol change (decimals) for a one-standard-error move, ``(n, P)``.
    ranking
        ``(name, rms)`` per column, descending: the root-mean-square over the quotes of the scaled column (vol
        decimals).
    ranking_by_param
        ``(param, rms)`` per parameter name, descending: the root-mean-square over the quotes of the summed
        squares of that parameter's columns (the same as ``ranking`` for surface models).
    """

    names: list[str]
    param: list[str]
    expiry_ttm: FloatArray
    k: FloatArray
    ttm: FloatArray
    strike: FloatArray
    vol: FloatArray
    jacobian_vol: FloatArray
    scale: FloatArray
    scale_source: list[str]
    scaled: FloatArray
    ranking: list[tuple[str, float]]
    ranking_by_param: list[tuple[str, float]]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (lists; NaN becomes ``None``; rankings as ``[name, value]`` pairs)."""
        return to_json_value({
            "names": self.names,
            "param": self.param,
            "expiry_ttm": self.expiry_ttm,
            "k": self.k,
            "ttm": self.ttm,
            "strike": self.strike,
            "vol": self.vol,
            "jacobian_vol": self.jacobian_vol,
            "scale": self.scale,
            "scale_source": self.scale_source,
            "scaled": self.scaled,
            "ranking": [list(item) for item in self.ranking],
            "ranking_by_param": [list(item) for item in self.ranking_by_param],
        })

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Sensitivity":
        """Inverse of :meth:`to_dict`."""
        n_cols = len(data["names"])

        def array(name: str, ndim: int = 1) -> FloatArray:
            out = array_from_json(data[name])
            return out.reshape(-1, n_cols) if ndim == 2 else out.reshape(-1)

        def ranking(name: str) -> list[tuple[str, float]]:
            return [(str(a), float("nan") if b is None else float(b)) for a, b in data[name]]

        return cls(
            names=list(data["names"]),
            param=list(data["param"]),
            expiry_ttm=array("expiry_ttm"),
            k=array("k"),
            ttm=array("ttm"),
            strike=array("strike"),
            vol=array("vol"),
            jacobian_vol=array("jacobian_vol", 2),
            scale=array("scale"),
            scale_source=list(data["scale_source"]),
            scaled=array("scaled", 2),
            ranking=ranking("ranking"),
            ranking_by_param=ranking("ranking_by_param"),
        )


# ---------------------------------------------------------------------------------------------------------------
# derivatives


def _fd_jacobian(
    fun: Callable[[FloatArray], FloatArray], theta: FloatArray, lower: FloatArray, upper: FloatArray, step: float
) -> FloatArray:
    """Finite-difference Jacobian of ``fun`` (``(p,) -> (n,)``) at ``theta``: central where ``theta +/- h`` stay
    within the bounds, one-sided (inwards) otherwise."""
    theta = np.asarray(theta, dtype=float)
    h = step * np.maximum(np.abs(theta), STEP_FLOOR)
    columns = []
    for i in range(theta.shape[0]):
        up = theta[i] + h[i] <= upper[i]
        down = theta[i] - h[i] >= lower[i]
        hi, lo = theta.copy(), theta.copy()
        hi[i] += h[i] if up else 0.0
        lo[i] -= h[i] if down else 0.0
        columns.append((fun(hi) - fun(lo)) / (hi[i] - lo[i]))
    return np.stack(columns, axis=1)


def _surface_jacobian(surface: FittedSurface, quotes: QuoteArrays, vol: FloatArray, step: float) -> FloatArray:
    """``d vol / d theta`` of a surface model, ``(n, p)``."""
    model = surface.model
    theta = np.asarray(surface.params, dtype=float)
    plan = model.prepare(quotes)
    jac = model.jacobian(theta, plan)
    if jac is None:
        lower, upper = bounds_of(model.params)
        jac = _fd_jacobian(lambda th: model.values(th, plan), theta, lower, upper, step)
    jac = np.asarray(jac, dtype=float)
    if model.output == "price":
        vega = black_greeks(
            quotes.forward, quotes.strike, quotes.ttm, vol, is_call=quotes.is_call, discount=quotes.discount
        ).vega
        with np.errstate(divide="ignore", invalid="ignore"):
            jac = jac / vega[:, None]
    return jac


def _slice_block(model: Model, theta: FloatArray, quotes: QuoteArrays, step: float) -> FloatArray:
    """``d vol / d theta`` of one slice at its own quotes, ``(n_i, p)``."""
    plan = model.prepare(quotes)
    jac = model.jacobian(theta, plan)
    if jac is None:
        lower, upper = bounds_of(model.params)
        jac = _fd_jacobian(lambda th: model.values(th, plan), theta, lower, upper, step)
    return np.asarray(jac, dtype=float)


def _slice_jacobian(surface: FittedSurface, quotes: QuoteArrays, step: float) -> FloatArray:
    """``d vol / d params`` of a slice model, ``(n, m * p)``: columns row-major over (fitted expiry, parameter)."""
    model = surface.model
    params = np.atleast_2d(np.asarray(surface.params, dtype=float))
    m, p = params.shape
    fitted = np.asarray(surface.expiry_ttm, dtype=float)
    lower, upper = bounds_of(model.params)
    jac = np.zeros((quotes.n, m * p))
    for i, t in enumerate(quotes.expiry_ttm):
        rows = np.flatnonzero(quotes.expiry_index == i)
        sub = quotes.take(rows)
        exact = np.flatnonzero(np.abs(fitted - t) <= SAME_EXPIRY_YEARS)
        if exact.size:
            j = int(exact[0])
            jac[np.ix_(rows, np.arange(j * p, (j + 1) * p))] = _slice_block(model, params[j], sub, step)
            continue
        hi = int(np.searchsorted(fitted, t))
        neighbours = [j for j in (hi - 1, hi) if 0 <= j < m]
        for j in neighbours:  # interpolated (or extrapolated) quotes: differentiate the surface itself
            def vols_with(theta_j: FloatArray, j: int = j) -> FloatArray:
                moved = params.copy()
                moved[j] = theta_j
                return FittedSurface(model, moved, fitted, surface.expiry_forward).vols(sub)

            jac[np.ix_(rows, np.arange(j * p, (j + 1) * p))] = _fd_jacobian(vols_with, params[j], lower, upper, step)
    return jac


# ---------------------------------------------------------------------------------------------------------------
# the entry point


def _ranking(names: Sequence[str], squares: FloatArray) -> list[tuple[str, float]]:
    """``(name, sqrt(mean over rows))`` of the ``(n, P)`` squares, descending (NaN rows ignored, NaN last)."""
    finite = np.isfinite(squares)
    count = finite.sum(axis=0)
    total = np.where(finite, squares, 0.0).sum(axis=0)
    rms = np.where(count > 0, np.sqrt(total / np.maximum(count, 1)), np.nan)
    order = sorted(range(len(names)), key=lambda i: (np.isnan(rms[i]), -np.nan_to_num(rms[i])))
    return [(names[i], float(rms[i])) for i in order]


def sensitivity(
    surface: FittedSurface,
    quotes: QuoteArrays,
    *,
    std_errors: ArrayLike | None = None,
    step: float | None = None,
    expiry_labels: Sequence[str] | None = None,
) -> Sensitivity:
    """The Jacobian of the fitted vols at ``quotes`` with respect to the parameters, scaled and ranked.

    Parameters
    ----------
    surface
        A fitted surface (any model).
    quotes
        Where to evaluate (usually the fitted quotes).
    std_errors
        Standard errors of the parameters, shaped like ``surface.params`` (``(p,)``; slice models ``(m, p)``);
        NaN (or missing) entries fall back on the width of the parameter's search bounds.
    step
        Relative finite-difference step (default :data:`DEFAULT_STEP`), used where no analytic Jacobian exists.
    expiry_labels
        Slice models: one label per fitted expiry for the column names (default: the time to expiry in years).

    Returns
    -------
    Sensitivity
        Jacobian, scaled Jacobian and rankings (see :class:`Sensitivity` for units).

    Raises
    ------
    CalibrationError
        Standard errors or labels that do not match the parameters.
    """
    model = surface.model
    specs = model.params
    step = DEFAULT_STEP if step is None else float(step)
    if not step > 0.0:
        raise CalibrationError(f"the finite-difference step must be > 0, got {step}")
    vol = np.asarray(surface.vols(quotes), dtype=float)
    base_names = [s.name for s in specs]
    widths = np.array([hi - lo for lo, hi in (s.search_bounds for s in specs)], dtype=float)

    if model.kind == "slice":
        fitted = np.asarray(surface.expiry_ttm, dtype=float)
        if expiry_labels is None:
            labels = [f"{t:.6g}y" for t in fitted]
        else:
            labels = [str(x) for x in expiry_labels]
            if len(labels) != fitted.size:
                raise CalibrationError(f"expected {fitted.size} expiry labels (one per fitted expiry), got {len(labels)}")
        names = [f"{name}[{label}]" for label in labels for name in base_names]
        param = base_names * fitted.size
        column_ttm = np.repeat(fitted, len(specs))
        width = np.tile(widths, fitted.size)
        jac = _slice_jacobian(surface, quotes, step)
    else:
        names = list(base_names)
        param = list(base_names)
        column_ttm = np.full(len(specs), np.nan)
        width = widths
        jac = _surface_jacobian(surface, quotes, vol, step)

    n_cols = len(names)
    if std_errors is None:
        se = np.full(n_cols, np.nan)
    else:
        se = np.asarray(std_errors, dtype=float).ravel()
        if se.size != n_cols:
            raise CalibrationError(
                f"std_errors has {se.size} values, the surface has {n_cols} parameters "
                f"(shape {np.shape(surface.params)})"
            )
    known = np.isfinite(se) & (se > 0.0)
    scale = np.where(known, se, width)
    scaled = jac * scale
    squares = scaled * scaled
    by_param = np.stack([squares[:, [c for c in range(n_cols) if param[c] == name]].sum(axis=1)
                         for name in base_names], axis=1)
    return Sensitivity(
        names=names,
        param=param,
        expiry_ttm=column_ttm,
        k=quotes.k,
        ttm=np.asarray(quotes.ttm, dtype=float),
        strike=np.asarray(quotes.strike, dtype=float),
        vol=vol,
        jacobian_vol=jac,
        scale=scale,
        scale_source=["std_error" if ok else "bound_width" for ok in known],
        scaled=scaled,
        ranking=_ranking(names, squares),
        ranking_by_param=_ranking(base_names, by_param),
    )
