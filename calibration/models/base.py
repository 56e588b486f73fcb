"""The model interface: parameter specs, the quote arrays a model evaluates on, and the ``Model`` protocol.

Two kinds of model share one interface:

- **slice** models (flat Black, SVI, SABR) have one parameter vector per expiry and are fitted expiry by expiry;
  their ``QuoteArrays`` is one expiry's quotes and ``theta`` has shape ``(p,)``;
- **surface** models (SSVI, Heston, Merton, Bates) have one parameter vector for the whole surface.

A model's native output is either implied vols (``output == "vol"``: flat Black, SVI, SABR, SSVI) or discounted
prices in the quote currency (``output == "price"``: Heston, Merton, Bates). The objective converts between the
two with Black-76 (vol -> price) or the vectorized implied-vol solver (price -> vol).

Models are stateless: parameters are arrays passed in; anything precomputed for a fixed set of quotes (Fourier
grids, truncation ranges, strike-dependent coefficients) lives in the *plan* returned by ``prepare`` and is reused
across optimizer iterations.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class ParamSpec:
    """One model parameter.

    Attributes
    ----------
    name
        Short name used in tables and JSON ("kappa", "rho").
    lower, upper
        Hard bounds; every optimizer respects them (``-inf``/``inf`` allowed except for differential evolution,
        which uses ``de_lower``/``de_upper``).
    default
        A neutral starting value.
    doc
        What it is, with its unit ("mean-reversion speed, per year").
    de_lower, de_upper
        Finite search box for global optimizers; default to ``lower``/``upper``.
    """

    name: str
    lower: float
    upper: float
    default: float
    doc: str
    de_lower: float | None = None
    de_upper: float | None = None

    @property
    def search_bounds(self) -> tuple[float, float]:
        """Finite bounds for global search."""
        lo = self.lower if self.de_lower is None else self.de_lower
        hi = self.upper if self.de_upper is None else self.de_upper
        return float(lo), float(hi)


def bounds_of(specs: tuple[ParamSpec, ...]) -> tuple[FloatArray, FloatArray]:
    """Lower and upper bound arrays of a parameter list."""
    return (
        np.array([s.lower for s in specs], dtype=float),
        np.array([s.upper for s in specs], dtype=float),
    )


@dataclass(frozen=True)
class QuoteArrays:
    """Flat arrays of the quotes (or grid points) a model is evaluated on; one entry per quote.

    Attributes
    ----------
    forward
        Forward of the quote's expiry, quote currency.
    strike
        Strike, quote currency.
    ttm
        Time to expiry, years (ACT/365).
    discount
        Discount factor to expiry.
    is_call
        True for calls.
    expiry_index
        Index of the quote's expiry in ``expiry_ttm`` (0 = nearest).
    expiry_ttm
        Distinct times to expiry, ascending, years.
    vol_bid, vol_mid, vol_ask
        Market implied vols, decimals (NaN when unknown, e.g. on an evaluation grid).
    price_bid, price_mid, price_ask
        Market premiums, discounted, quote currency (NaN when unknown).
    vega
        Black vega at the mid vol, quote currency per 1.00 vol (NaN when unknown).
    open_interest
        Open interest, contracts (NaN when unknown).
    """

    forward: FloatArray
    strike: FloatArray
    ttm: FloatArray
    discount: FloatArray
    is_call: NDArray[np.bool_]
    expiry_index: NDArray[np.intp]
    expiry_ttm: FloatArray
    vol_bid: FloatArray
    vol_mid: FloatArray
    vol_ask: FloatArray
    price_bid: FloatArray
    price_mid: FloatArray
    price_ask: FloatArray
    vega: FloatArray
    open_interest: FloatArray

    @property
    def n(self) -> int:
        """Number of quotes."""
        return int(self.strike.shape[0])

    @property
    def k(self) -> FloatArray:
        """Log-moneyness ``ln(K/F)``."""
        return np.log(self.strike / self.forward)

    @property
    def expiry_forward(self) -> FloatArray:
        """Forward per expiry (first quote of each expiry)."""
        return self._per_expiry(self.forward)

    @property
    def expiry_discount(self) -> FloatArray:
        """Discount factor per expiry."""
        return self._per_expiry(self.discount)

    def _per_expiry(self, values: FloatArray) -> FloatArray:
        out = np.full(self.expiry_ttm.shape, np.nan)
        out[self.expiry_index[::-1]] = values[::-1]  # first occurrence wins
        return out

    def take(self, mask_or_index: NDArray[Any]) -> "QuoteArrays":
        """A subset of the quotes (boolean mask or integer index); expiries are re-indexed to those present."""
        picked = {f.name: getattr(self, f.name)[mask_or_index] for f in fields(self) if f.name != "expiry_ttm"}
        present = np.unique(picked["expiry_index"])
        remap = np.full(self.expiry_ttm.shape[0], -1, dtype=np.intp)
        remap[present] = np.arange(present.shape[0])
        picked["expiry_index"] = remap[picked["expiry_index"]]
        return QuoteArrays(expiry_ttm=self.expiry_ttm[present], **picked)

    def slice(self, j: int) -> "QuoteArrays":
        """The quotes of expiry ``j``."""
        return self.take(self.expiry_index == j)

    def with_values(self, **values: FloatArray) -> "QuoteArrays":
        """A copy with some arrays replaced (e.g. market vols of another snapshot)."""
        return replace(self, **values)

    @classmethod
    def from_arrays(
        cls,
        *,
        forward: Any,
        strike: Any,
        ttm: Any,
        is_call: Any,
        discount: Any = 1.0,
        **market: Any,
    ) -> "QuoteArrays":
        """Build from array-likes (broadcast to one length); market arrays default to NaN.

        ``market`` may hold any of vol_bid, vol_mid, vol_ask, price_bid, price_mid, price_ask, vega,
        open_interest.
        """
        arrays = np.broadcast_arrays(
            np.asarray(forward, dtype=float),
            np.asarray(strike, dtype=float),
            np.asarray(ttm, dtype=float),
            np.asarray(discount, dtype=float),
            np.asarray(is_call, dtype=bool),
        )
        F, K, t, D, call = (np.ascontiguousarray(a).ravel() for a in arrays)
        expiry_ttm, expiry_index = np.unique(t, return_inverse=True)
        nan = np.full(F.shape, np.nan)
        known = {"vol_bid", "vol_mid", "vol_ask", "price_bid", "price_mid", "price_ask", "vega", "open_interest"}
        unknown = set(market) - known
        if unknown:
            raise TypeError(f"unknown market arrays: {sorted(unknown)}")
        filled = {
            name: (np.broadcast_to(np.asarray(market[name], dtype=float), F.shape).copy() if name in market else nan.copy())
            for name in sorted(known)
        }
        return cls(
            forward=F,
            strike=K,
            ttm=t,
            discount=D,
            is_call=call,
            expiry_index=expiry_index.astype(np.intp),
            expiry_ttm=expiry_ttm,
            **filled,
        )


@runtime_checkable
class Model(Protocol):
    """What every model provides (see the module docstring for slice vs surface models).

    Attributes
    ----------
    name
        Registry key ("heston").
    label
        Display name ("Heston").
    kind
        "slice" (one parameter vector per expiry) or "surface".
    output
        "vol" when :meth:`values` returns implied vols (decimals), "price" when it returns discounted prices in
        the quote currency.
    params
        Parameter specs (of one slice for slice models).
    """

    name: str
    label: str
    kind: Literal["slice", "surface"]
    output: Literal["vol", "price"]
    params: tuple[ParamSpec, ...]

    def initial_guess(self, quotes: QuoteArrays) -> FloatArray:
        """A starting point from the market data in ``quotes`` (market vols/prices are set)."""
        ...

    def constraints(self, theta: FloatArray) -> FloatArray:
        """Inequality constraints beyond the bounds, each ``>= 0`` when satisfied (empty array if none)."""
        ...

    def prepare(self, quotes: QuoteArrays) -> Any:
        """Precompute what does not depend on ``theta`` for these quotes; the result is passed to values."""
        ...

    def values(self, theta: FloatArray, plan: Any) -> FloatArray:
        """Model vols or prices (see ``output``) at every quote of the plan, shape ``(n,)``."""
        ...

    def jacobian(self, theta: FloatArray, plan: Any) -> FloatArray | None:
        """d values / d theta, shape ``(n, p)``; ``None`` when the model has no analytic form (finite differences
        are then used by the objective)."""
        ...
