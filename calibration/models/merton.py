"""Merton (1976) jump-diffusion in forward space, priced by the shared Fourier engine.

Under the ``t``-forward measure the log forward ``X = ln(F_t / F_0)`` is a Brownian motion with volatility
``sigma`` plus compound Poisson jumps (intensity ``lam`` per year, log jump sizes ``N(mu_j, delta_j^2)``), with
the drift that makes ``F`` a martingale (``phi(-i) = 1``):

    ln phi(z) = -sigma^2 t (z^2 + i z) / 2 + lam t (J(z) - 1 - i z k_J),
    J(z) = exp(i z mu_j - delta_j^2 z^2 / 2),   k_J = exp(mu_j + delta_j^2 / 2) - 1 = E[e^jump] - 1.

The jump part is shared with Bates (:mod:`calibration.models.bates`); its gradient is closed form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from calibration.models.base import FloatArray, ParamSpec, QuoteArrays
from calibration.pricing.fourier import ComplexArray, FourierModel, Frequencies, atm_smile, safe_exp

JUMP_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("lam", 0.0, 50.0, 1.0, "jump intensity, jumps per year", 0.0, 20.0),
    ParamSpec("mu_j", -2.0, 2.0, -0.05, "mean log jump size (-0.05: jumps of about -5 %)", -0.5, 0.5),
    ParamSpec("delta_j", 1e-3, 2.0, 0.1, "standard deviation of the log jump size", 0.01, 1.0),
)
"""Lognormal jump parameters shared by Merton and Bates."""

MERTON_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("sigma", 1e-3, 5.0, 0.2, "diffusion volatility, per sqrt(year) (0.2 = 20 %)", 0.01, 2.0),
    *JUMP_PARAMS,
)
"""Merton parameters: diffusion vol 0.1 % .. 500 %, up to 50 jumps a year, log jumps within +/- 2."""


def jump_log_cf(lam: float, mu: float, delta: float, freq: Frequencies) -> tuple[ComplexArray, tuple[Any, ...]]:
    """Compensated lognormal-jump part ``lam t (J - 1 - w k_J)`` of ``ln phi`` (``w = i z``) and its state."""
    w, t = freq.w, freq.t
    jump = safe_exp(mu * w + (0.5 * delta * delta) * freq.w2)
    growth = float(np.exp(mu + 0.5 * delta * delta))  # 1 + k_J
    core = jump - 1.0
    core -= (growth - 1.0) * w
    return (lam * t) * core, (jump, growth, core)


def jump_log_cf_grad(
    lam: float, mu: float, delta: float, freq: Frequencies, state: tuple[Any, ...], out: ComplexArray
) -> None:
    """``d / d (lam, mu_j, delta_j)`` of :func:`jump_log_cf` into ``out[0:3]``."""
    w, t = freq.w, freq.t
    jump, growth, core = state
    lt = lam * t
    np.multiply(t, core, out=out[0])
    dmu = jump - growth  # d/dmu: lam t w (J - (1 + k_J))
    np.multiply(w, dmu, out=out[1])
    out[1] *= lt
    ddelta = freq.w2 * jump  # d/ddelta: lam t delta (w^2 J - w (1 + k_J))
    ddelta -= growth * w
    np.multiply(lt, ddelta, out=out[2])
    out[2] *= delta


def jump_initial_guess(quotes: QuoteArrays, *, jump_variance: float, lam: float) -> FloatArray:
    """``(lam, mu_j, delta_j)`` carrying ``jump_variance`` (per year) with the sign of the market skew."""
    _, skew, _ = atm_smile(quotes)
    sign = -1.0 if np.nanmean(skew) < 0.0 or not np.isfinite(skew).any() else 1.0
    size = np.sqrt(max(jump_variance, 1e-8) / (2.0 * lam))
    return np.array([lam, sign * size, size])


@dataclass(frozen=True)
class Merton(FourierModel):
    """Merton jump-diffusion, parameters ``(sigma, lam, mu_j, delta_j)`` (see :data:`MERTON_PARAMS`)."""

    name: ClassVar[str] = "merton"
    label: ClassVar[str] = "Merton jump-diffusion"
    params: ClassVar[tuple[ParamSpec, ...]] = MERTON_PARAMS

    def constraints(self, theta: FloatArray) -> FloatArray:
        """No constraints beyond the bounds."""
        return np.empty(0)

    def initial_guess(self, quotes: QuoteArrays) -> FloatArray:
        """Diffusion carries 64 % of the longest expiry's ATM variance; one jump a year carries the rest, with the
        sign of the skew (equal mean and dispersion)."""
        atm, _, _ = atm_smile(quotes)
        ok = np.isfinite(atm)
        total = float(atm[ok][-1] ** 2) if ok.any() else MERTON_PARAMS[0].default ** 2
        jumps = jump_initial_guess(quotes, jump_variance=0.36 * total, lam=1.0)
        guess = np.concatenate([[0.8 * np.sqrt(total)], jumps])
        lower = np.array([s.lower for s in MERTON_PARAMS])
        upper = np.array([s.upper for s in MERTON_PARAMS])
        return np.clip(guess, lower, upper)

    def log_cf(self, theta: FloatArray, freq: Frequencies) -> tuple[ComplexArray, Any]:
        """``ln phi`` at ``freq`` and the state reused by the gradient."""
        sigma, lam, mu, delta = (float(x) for x in theta)
        logphi, state = jump_log_cf(lam, mu, delta, freq)
        logphi -= (0.5 * sigma * sigma) * freq.beta_t
        return logphi, state

    def log_cf_grad(self, theta: FloatArray, freq: Frequencies, state: Any, out: ComplexArray) -> None:
        """``d ln phi / d theta`` into ``out`` (shape ``(4,) + freq.w.shape``)."""
        sigma, lam, mu, delta = (float(x) for x in theta)
        np.multiply(-sigma, freq.beta_t, out=out[0])
        jump_log_cf_grad(lam, mu, delta, freq, state, out[1:])
