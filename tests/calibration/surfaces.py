"""Independent test-only surfaces: a model around any total-variance function, raw SVI and SSVI written out
here (not imported from calibration.models), shared by the arbitrage, greeks and sensitivity tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import numpy as np

from calibration.surface import FittedSurface

#: Gatheral & Jacquier 2014, example 3.1 (Vogt): a raw SVI slice with butterfly arbitrage at t = 1.
VOGT = (-0.0410, 0.1331, 0.3060, 0.3586, 0.4153)


class FixedSurfaceModel:
    """The protocol boilerplate of a test-only surface model without parameters: subclasses set ``name``,
    ``label``, ``output`` and ``values``."""

    kind: ClassVar[str] = "surface"
    params: ClassVar[tuple] = ()

    def initial_guess(self, quotes):
        return np.empty(0)

    def constraints(self, theta):
        return np.empty(0)

    def prepare(self, quotes):
        return quotes

    def jacobian(self, theta, quotes):
        return None


@dataclass(frozen=True)
class TotalVarianceModel(FixedSurfaceModel):
    """Surface model whose vol is ``sqrt(w(k, t) / t)`` for a plain total-variance function (no parameters)."""

    w: Callable[[np.ndarray, np.ndarray], np.ndarray]
    name: ClassVar[str] = "test_w"
    label: ClassVar[str] = "test total variance"
    output: ClassVar[str] = "vol"

    def values(self, theta, quotes):
        return np.sqrt(self.w(quotes.k, quotes.ttm) / quotes.ttm)


def surface_of(w) -> FittedSurface:
    return FittedSurface(TotalVarianceModel(w), np.empty(0), np.empty(0), np.empty(0))


def raw_svi(k, a, b, rho, m, sigma):
    u = np.asarray(k) - m
    return a + b * (rho * u + np.sqrt(u * u + sigma * sigma))


def ssvi_w(k, theta, rho, eta, gamma):
    phi = eta / (theta**gamma * (1 + theta) ** (1 - gamma))
    return theta / 2 * (1 + rho * phi * k + np.sqrt((phi * k + rho) ** 2 + 1 - rho * rho))
