"""Flat Black: one implied vol per expiry, the baseline every other fit is compared with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from calibration.models.base import FloatArray, ParamSpec, QuoteArrays
from calibration.models.slices import SlicePlan, atm_vols, single_expiry


@dataclass(frozen=True)
class FlatBlack:
    """One Black-76 implied vol per expiry (a flat smile); the baseline of every fit."""

    name: ClassVar[str] = "black"
    label: ClassVar[str] = "Flat Black"
    kind: ClassVar[Literal["slice", "surface"]] = "slice"
    output: ClassVar[Literal["vol", "price"]] = "vol"

    @property
    def params(self) -> tuple[ParamSpec, ...]:
        """One parameter: the expiry's Black vol."""
        return (ParamSpec("sigma", 1e-4, 10.0, 0.5, "Black implied vol of the expiry, decimal per sqrt(year)",
                          de_lower=0.01, de_upper=3.0),)

    def initial_guesses(self, quotes: QuoteArrays) -> FloatArray:
        """Vega-weighted at-the-money vol of every expiry, shape ``(m, 1)``."""
        return atm_vols(quotes)[:, None]

    def initial_guess(self, quotes: QuoteArrays) -> FloatArray:
        """Vega-weighted at-the-money vol of the (single) expiry of ``quotes``, shape ``(1,)``."""
        single_expiry(quotes, self.label)
        return self.initial_guesses(quotes)[0]

    def constraints(self, theta: FloatArray) -> FloatArray:
        """None beyond the bounds."""
        return np.empty(0)

    def prepare(self, quotes: QuoteArrays) -> SlicePlan:
        """The slice plan of ``quotes``."""
        return SlicePlan.of(quotes)

    def values(self, theta: FloatArray, plan: SlicePlan) -> FloatArray:
        """The flat vol at every quote (decimals), shape ``(n,)``."""
        return np.ascontiguousarray(np.broadcast_to(plan.columns(theta, 1)[0], plan.k.shape), dtype=float)

    def jacobian(self, theta: FloatArray, plan: SlicePlan) -> FloatArray:
        """d vol / d sigma = 1, shape ``(n, 1)``."""
        return np.ones((plan.k.shape[0], 1))

    def value_and_jacobian(self, theta: FloatArray, plan: SlicePlan) -> tuple[FloatArray, FloatArray]:
        """:meth:`values` and :meth:`jacobian` in one call."""
        return self.values(theta, plan), self.jacobian(theta, plan)
