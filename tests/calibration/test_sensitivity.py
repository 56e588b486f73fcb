"""Parameter sensitivities: closed forms, finite differences of FittedSurface.vols written here, rankings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
from scipy.special import ndtr

from calibration.errors import CalibrationError
from calibration.models.base import ParamSpec, QuoteArrays
from calibration.sensitivity import Sensitivity, sensitivity
from calibration.surface import FittedSurface

SVI_SLICES = np.array([[0.010, 0.10, -0.6, 0.02, 0.10],
                       [0.025, 0.12, -0.5, 0.03, 0.20],
                       [0.060, 0.14, -0.4, 0.05, 0.30]])
SVI_TTM = np.array([0.1, 0.5, 1.5])
SVI_FWD = np.array([100.0, 101.0, 103.0])


# ---------------------------------------------------------------------------------------------------------------
# test-only models: vol = level + skew k + curvature k^2, as vols or as Black prices


def bs_price_and_vega(F, K, t, vol, D, is_call):
    """Black-76 price and vega, written out here."""
    s = vol * np.sqrt(t)
    d1 = np.log(F / K) / s + s / 2
    d2 = d1 - s
    call = D * (F * ndtr(d1) - K * ndtr(d2))
    price = np.where(is_call, call, call - D * (F - K))
    vega = D * F * np.exp(-d1 * d1 / 2) / np.sqrt(2 * np.pi) * np.sqrt(t)
    return price, vega


@dataclass(frozen=True)
class QuadraticSmile:
    """Surface model ``vol = level + skew k + curvature k^2``; ``output`` "vol" or "price" (Black prices), with or
    without an analytic Jacobian."""

    output: str = "vol"
    analytic: bool = True
    name: ClassVar[str] = "quadratic"
    label: ClassVar[str] = "quadratic smile"
    kind: ClassVar[str] = "surface"
    params: ClassVar[tuple] = (
        ParamSpec("level", 0.01, 3.0, 0.5, "ATM vol", de_lower=0.05, de_upper=2.0),
        ParamSpec("skew", -2.0, 2.0, 0.0, "vol per unit k"),
        ParamSpec("curvature", -1.0, 5.0, 0.0, "vol per unit k^2", de_upper=2.0),
    )

    def initial_guess(self, quotes):
        return np.array([0.5, 0.0, 0.0])

    def constraints(self, theta):
        return np.empty(0)

    def prepare(self, quotes):
        return quotes

    def _vol(self, theta, q):
        k = q.k
        return theta[0] + theta[1] * k + theta[2] * k * k

    def values(self, theta, q):
        vol = self._vol(theta, q)
        if self.output == "vol":
            return vol
        return bs_price_and_vega(q.forward, q.strike, q.ttm, vol, q.discount, q.is_call)[0]

    def jacobian(self, theta, q):
        if not self.analytic:
            return None
        k = q.k
        basis = np.stack((np.ones_like(k), k, k * k), axis=1)
        if self.output == "vol":
            return basis
        vega = bs_price_and_vega(q.forward, q.strike, q.ttm, self._vol(theta, q), q.discount, q.is_call)[1]
        return basis * vega[:, None]


def smile_quotes(n=41, ttm=0.5):
    k = np.linspace(-0.5, 0.5, n)
    return QuoteArrays.from_arrays(forward=100.0, strike=100.0 * np.exp(k), ttm=ttm, is_call=k >= 0, discount=0.98)


def quadratic_surface(theta=(0.4, -0.2, 0.3), **options):
    return FittedSurface(QuadraticSmile(**options), np.array(theta, dtype=float), np.empty(0), np.empty(0))


def fd_of_surface_vols(surface: FittedSurface, quotes: QuoteArrays, h: float = 1e-6) -> np.ndarray:
    """Central differences of FittedSurface.vols in every entry of ``surface.params`` (flattened, row-major)."""
    base = np.asarray(surface.params, dtype=float)
    columns = []
    for i in range(base.size):
        step = h * max(abs(base.flat[i]), 1e-2)
        up, down = base.copy(), base.copy()
        up.flat[i] += step
        down.flat[i] -= step
        vol_up = FittedSurface(surface.model, up, surface.expiry_ttm, surface.expiry_forward).vols(quotes)
        vol_down = FittedSurface(surface.model, down, surface.expiry_ttm, surface.expiry_forward).vols(quotes)
        columns.append((vol_up - vol_down) / (2 * step))
    return np.stack(columns, axis=1)


# ---------------------------------------------------------------------------------------------------------------
# closed forms


@pytest.mark.parametrize("output", ["vol", "price"])
@pytest.mark.parametrize("analytic", [True, False])
def test_quadratic_smile_jacobian_is_the_basis_whatever_the_output_and_derivative_route(output, analytic):
    quotes = smile_quotes()
    result = sensitivity(quadratic_surface(output=output, analytic=analytic), quotes)
    k = quotes.k
    expected = np.stack((np.ones_like(k), k, k * k), axis=1)
    tol = 1e-12 if analytic and output == "vol" else 1e-7
    assert np.allclose(result.jacobian_vol, expected, rtol=0, atol=tol)
    assert result.names == ["level", "skew", "curvature"]
    assert np.allclose(result.vol, 0.4 - 0.2 * k + 0.3 * k * k, rtol=1e-12)
    assert np.isnan(result.expiry_ttm).all()


def test_finite_differences_step_inwards_at_a_bound():
    quotes = smile_quotes()
    result = sensitivity(quadratic_surface(theta=(3.0, 2.0, -1.0), analytic=False), quotes)  # all at a bound
    k = quotes.k
    assert np.allclose(result.jacobian_vol, np.stack((np.ones_like(k), k, k * k), axis=1), atol=1e-8)


def test_ranking_puts_the_dominant_parameter_first_with_its_rms():
    quotes = smile_quotes()
    k = quotes.k
    se = np.array([0.01, 1e-4, 1e-5])  # a 1-sigma move of the level moves every vol by 1 vol point
    result = sensitivity(quadratic_surface(), quotes, std_errors=se)
    assert [name for name, _ in result.ranking] == ["level", "skew", "curvature"]
    assert result.ranking[0][1] == pytest.approx(0.01, rel=1e-12)
    assert result.ranking[1][1] == pytest.approx(1e-4 * np.sqrt(np.mean(k**2)), rel=1e-10)
    assert result.ranking[2][1] == pytest.approx(1e-5 * np.sqrt(np.mean(k**4)), rel=1e-10)
    assert result.scale_source == ["std_error"] * 3
    assert np.allclose(result.scaled, result.jacobian_vol * se)
    assert result.ranking_by_param == result.ranking
    # the other way round when the curvature is the uncertain one
    flipped = sensitivity(quadratic_surface(), quotes, std_errors=[1e-5, 1e-4, 1.0])
    assert flipped.ranking[0][0] == "curvature"


def test_missing_std_errors_fall_back_on_the_search_bound_width():
    result = sensitivity(quadratic_surface(), smile_quotes(), std_errors=[0.01, np.nan, 0.0])
    assert result.scale_source == ["std_error", "bound_width", "bound_width"]
    assert np.allclose(result.scale, [0.01, 4.0, 3.0])  # skew: -2..2; curvature: search box -1..2
    default = sensitivity(quadratic_surface(), smile_quotes())
    assert np.allclose(default.scale, [1.95, 4.0, 3.0])


# ---------------------------------------------------------------------------------------------------------------
# real models against finite differences of FittedSurface.vols


def svi_quotes():
    # quotes on the three fitted expiries, one between two of them and one beyond the last
    ttm = np.repeat([0.1, 0.5, 0.8, 1.5, 2.0], 9)
    F = np.interp(ttm, SVI_TTM, SVI_FWD)
    k = np.tile(np.linspace(-0.4, 0.3, 9), 5)
    return QuoteArrays.from_arrays(forward=F, strike=F * np.exp(k), ttm=ttm, is_call=k >= 0)


def test_svi_slices_match_finite_differences_and_are_block_diagonal():
    svi = pytest.importorskip("calibration.models.svi")
    surface = FittedSurface(svi.SVI(), SVI_SLICES, SVI_TTM, SVI_FWD)
    quotes = svi_quotes()
    labels = ["2025-02-08", "2025-07-02", "2026-07-02"]
    result = sensitivity(surface, quotes, expiry_labels=labels)
    assert result.jacobian_vol.shape == (45, 15)
    assert result.names[:6] == ["a[2025-02-08]", "b[2025-02-08]", "rho[2025-02-08]", "m[2025-02-08]",
                                "sigma[2025-02-08]", "a[2025-07-02]"]
    assert result.param[5] == "a" and result.expiry_ttm[5] == 0.5
    reference = fd_of_surface_vols(surface, quotes)
    assert np.allclose(result.jacobian_vol, reference, rtol=1e-6, atol=1e-8)
    # block structure: a quote on a fitted expiry moves with that expiry's parameters only
    on_first = quotes.ttm == 0.1
    assert np.count_nonzero(result.jacobian_vol[on_first][:, 5:]) == 0
    between = quotes.ttm == 0.8  # interpolated between 0.5 and 1.5: both neighbours, not the first
    assert np.count_nonzero(result.jacobian_vol[between][:, :5]) == 0
    assert np.abs(result.jacobian_vol[between][:, 5:]).min(axis=0).max() > 0
    beyond = quotes.ttm == 2.0
    assert np.count_nonzero(result.jacobian_vol[beyond][:, :10]) == 0
    by_param = dict(result.ranking_by_param)
    assert set(by_param) == {"a", "b", "rho", "m", "sigma"}
    per_column = dict(result.ranking)
    n = quotes.n
    assert by_param["a"] == pytest.approx(np.sqrt(sum(per_column[f"a[{x}]"] ** 2 * n for x in labels) / n))


def test_svi_default_labels_are_years_to_expiry():
    svi = pytest.importorskip("calibration.models.svi")
    surface = FittedSurface(svi.SVI(), SVI_SLICES, SVI_TTM, SVI_FWD)
    result = sensitivity(surface, svi_quotes())
    assert result.names[0] == "a[0.1y]" and result.names[-1] == "sigma[1.5y]"
    with pytest.raises(CalibrationError, match="expiry labels"):
        sensitivity(surface, svi_quotes(), expiry_labels=["x"])


def test_ssvi_matches_finite_differences():
    ssvi = pytest.importorskip("calibration.models.ssvi")
    if not hasattr(ssvi, "SSVI"):
        pytest.skip("calibration.models.ssvi.SSVI not written yet")
    model = ssvi.SSVI(expiry_ttm=tuple(SVI_TTM))
    params = np.array([0.01, 0.02, 0.05, -0.4, 0.8, 0.4])
    surface = FittedSurface(model, params, np.empty(0), np.empty(0))
    quotes = svi_quotes()
    result = sensitivity(surface, quotes)
    assert result.names == [p.name for p in model.params]
    assert np.allclose(result.jacobian_vol, fd_of_surface_vols(surface, quotes), rtol=1e-6, atol=1e-8)


def test_heston_vol_jacobian_matches_finite_differences_of_implied_vols():
    heston = pytest.importorskip("calibration.models.heston", reason="calibration/models/heston.py not written yet")
    model = heston.Heston()
    typical = {"v0": 0.04, "kappa": 1.5, "theta": 0.06, "sigma": 0.6, "rho": -0.7}
    names = [p.name for p in model.params]
    if set(names) != set(typical):
        pytest.skip(f"unexpected Heston parameter names {names}")
    surface = FittedSurface(model, np.array([typical[n] for n in names]), np.empty(0), np.empty(0))
    ttm = np.repeat([30 / 365, 0.5, 2.0], 7)
    k = np.tile(np.linspace(-0.3, 0.2, 7), 3) * np.sqrt(ttm)
    quotes = QuoteArrays.from_arrays(forward=100.0, strike=100.0 * np.exp(k), ttm=ttm, is_call=k >= 0, discount=0.97)
    result = sensitivity(surface, quotes)
    reference = fd_of_surface_vols(surface, quotes, h=1e-5)
    assert np.allclose(result.jacobian_vol, reference, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# JSON, errors


def test_round_trips_through_json():
    result = sensitivity(quadratic_surface(), smile_quotes(n=5), std_errors=[0.01, np.nan, 0.1])
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    back = Sensitivity.from_dict(data)
    assert back.names == result.names and back.scale_source == result.scale_source
    assert back.ranking == result.ranking and back.ranking_by_param == result.ranking_by_param
    for name in ("jacobian_vol", "scaled", "scale", "k", "vol", "expiry_ttm"):
        assert np.array_equal(getattr(back, name), getattr(result, name), equal_nan=True), name


def test_std_errors_of_the_wrong_size_raise():
    with pytest.raises(CalibrationError, match="std_errors has 2 values"):
        sensitivity(quadratic_surface(), smile_quotes(), std_errors=[0.1, 0.2])
    with pytest.raises(CalibrationError, match="step"):
        sensitivity(quadratic_surface(), smile_quotes(), step=0.0)
