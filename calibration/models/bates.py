"""Bates (1996): Heston stochastic volatility plus Merton lognormal jumps, priced by the shared Fourier engine.

``ln phi = ln phi_Heston(kappa, theta, sigma, rho, v0) + lam t (J - 1 - i z k_J)`` (see
:mod:`calibration.models.heston` and :mod:`calibration.models.merton`); the jumps are compensated, so the forward
stays a martingale. The gradient is the concatenation of the two closed forms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from calibration.models.base import FloatArray, ParamSpec, QuoteArrays
from calibration.models.heston import HESTON_PARAMS, Heston, heston_initial_guess, heston_log_cf, heston_log_cf_grad
from calibration.models.merton import JUMP_PARAMS, jump_initial_guess, jump_log_cf, jump_log_cf_grad
from calibration.pricing.fourier import ComplexArray, Frequencies

BATES_PARAMS: tuple[ParamSpec, ...] = (*HESTON_PARAMS, *JUMP_PARAMS)
"""Bates parameters: Heston's five, then ``lam, mu_j, delta_j``."""


@dataclass(frozen=True)
class Bates(Heston):
    """Bates stochastic volatility with jumps, parameters ``(kappa, theta, sigma, rho, v0, lam, mu_j, delta_j)``.

    Attributes
    ----------
    enforce_feller
        As for :class:`~calibration.models.heston.Heston`: constrain ``2 kappa theta - sigma^2 >= 0``.
    """

    name: ClassVar[str] = "bates"
    label: ClassVar[str] = "Bates"
    params: ClassVar[tuple[ParamSpec, ...]] = BATES_PARAMS

    def initial_guess(self, quotes: QuoteArrays) -> FloatArray:
        """Heston's guess on 80 % of the ATM variance and half the short-dated skew and curvature; half a jump a
        year carries the rest of the variance, with the skew's sign."""
        heston = heston_initial_guess(quotes, variance_share=0.8, smile_share=0.5)
        if self.enforce_feller and self.feller_margin(heston) < 0.0:
            heston[0] = min(1.05 * heston[2] ** 2 / (2.0 * heston[1]), HESTON_PARAMS[0].upper)
        jumps = jump_initial_guess(quotes, jump_variance=0.2 * heston[1] / 0.8, lam=0.5)
        lower = np.array([s.lower for s in BATES_PARAMS])
        upper = np.array([s.upper for s in BATES_PARAMS])
        return np.clip(np.concatenate([heston, jumps]), lower, upper)

    def log_cf(self, theta: FloatArray, freq: Frequencies) -> tuple[ComplexArray, Any]:
        """``ln phi`` at ``freq`` and the state reused by the gradient."""
        values = [float(x) for x in theta]
        logphi, heston_state = heston_log_cf(*values[:5], freq)
        jumps, jump_state = jump_log_cf(*values[5:], freq)
        logphi += jumps
        return logphi, (heston_state, jump_state)

    def log_cf_grad(self, theta: FloatArray, freq: Frequencies, state: Any, out: ComplexArray) -> None:
        """``d ln phi / d theta`` into ``out`` (shape ``(8,) + freq.w.shape``)."""
        values = [float(x) for x in theta]
        heston_log_cf_grad(*values[:5], freq, state[0], out[:5])
        jump_log_cf_grad(*values[5:], freq, state[1], out[5:])
