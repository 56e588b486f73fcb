"""A fitted surface: a model with its parameters, evaluated as vols or prices anywhere on the quote grid.

Surface models are evaluated directly. Slice models (one parameter vector per fitted expiry) are evaluated per
expiry; between fitted expiries the total variance ``w = sigma^2 t`` is interpolated linearly in ``t`` at fixed
log-moneyness, and beyond the first or last expiry the vol of the nearest slice is held constant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calibration.black import black_price
from calibration.implied_vol import implied_vol
from calibration.models.base import FloatArray, Model, QuoteArrays

#: Two times to expiry closer than this (years, about 0.03 s) are the same expiry.
SAME_EXPIRY_YEARS = 1e-9


@dataclass(frozen=True)
class FittedSurface:
    """A model and its parameters.

    Attributes
    ----------
    model
        The model.
    params
        ``(p,)`` for surface models; ``(m, p)`` for slice models, one row per fitted expiry.
    expiry_ttm
        Times to expiry (years) of the rows of ``params`` for slice models; empty for surface models.
    expiry_forward
        Forward (quote currency) of each fitted slice; slice models such as SABR depend on the forward level.
    """

    model: Model
    params: FloatArray
    expiry_ttm: FloatArray
    expiry_forward: FloatArray

    def vols(self, quotes: QuoteArrays) -> FloatArray:
        """Model implied vols (decimals) at every point of ``quotes``; NaN where a price has no implied vol."""
        if self.model.kind == "slice":
            return self._slice_vols(quotes)
        values = self.model.values(self.params, self.model.prepare(quotes))
        if self.model.output == "vol":
            return values
        return implied_vol(
            values, quotes.forward, quotes.strike, quotes.ttm, is_call=quotes.is_call, discount=quotes.discount
        ).vol

    def prices(self, quotes: QuoteArrays) -> FloatArray:
        """Model prices (discounted, quote currency) at every point of ``quotes``."""
        if self.model.kind == "surface" and self.model.output == "price":
            return self.model.values(self.params, self.model.prepare(quotes))
        return black_price(
            quotes.forward, quotes.strike, quotes.ttm, self.vols(quotes), is_call=quotes.is_call,
            discount=quotes.discount,
        )

    def _slice_total_variance(self, j: int, k: FloatArray) -> FloatArray:
        """Total variance of fitted slice ``j`` at log-moneyness ``k`` (with that slice's own t and forward)."""
        t, forward = self.expiry_ttm[j], self.expiry_forward[j]
        grid = QuoteArrays.from_arrays(
            forward=forward, strike=forward * np.exp(k), ttm=t, is_call=k >= 0.0, discount=1.0
        )
        vol = self.model.values(self.params[j], self.model.prepare(grid))
        return vol * vol * t

    def _slice_vols(self, quotes: QuoteArrays) -> FloatArray:
        fitted = np.asarray(self.expiry_ttm, dtype=float)
        k = quotes.k
        out = np.full(quotes.n, np.nan)
        for i, t in enumerate(quotes.expiry_ttm):
            rows = quotes.expiry_index == i
            exact = np.flatnonzero(np.abs(fitted - t) <= SAME_EXPIRY_YEARS)
            if exact.size:
                out[rows] = self.model.values(self.params[exact[0]], self.model.prepare(quotes.take(rows)))
                continue
            kk = k[rows]
            hi = int(np.searchsorted(fitted, t))
            if hi == 0 or hi == fitted.size:  # flat vol beyond the fitted range
                j = 0 if hi == 0 else fitted.size - 1
                out[rows] = np.sqrt(self._slice_total_variance(j, kk) / fitted[j])
                continue
            t0, t1 = fitted[hi - 1], fitted[hi]
            w0 = self._slice_total_variance(hi - 1, kk)
            w1 = self._slice_total_variance(hi, kk)
            w = w0 + (w1 - w0) * (t - t0) / (t1 - t0)
            out[rows] = np.sqrt(np.maximum(w, 0.0) / t)
        return out
