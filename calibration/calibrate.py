"""Calibrate a model to a snapshot: ``calibrate(snapshot, settings)``; score given parameters: ``evaluate``.

Slice models (flat Black, SVI, SABR) are fitted expiry by expiry, each expiry its own least-squares problem;
surface models (SSVI, Heston, Merton, Bates) in one problem. The residuals are those of
:mod:`calibration.objective`, minimised by :func:`calibration.optimizers.minimize`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from calibration.arbitrage import check_arbitrage as arbitrage_report
from calibration.black import black_price
from calibration.errors import CalibrationError
from calibration.implied_vol import implied_vol
from calibration.models import MODEL_NAMES, get_model
from calibration.models.base import FloatArray, Model, QuoteArrays
from calibration.models.slices import fit_slices
from calibration.objective import (
    FIT_TO,
    SPACES,
    WEIGHTS,
    Objective,
    Prior,
    check_choice,
    prior_scale,
    quote_weights,
    usable_quotes,
)
from calibration.optimizers import (
    LOSSES,
    CalibrationCancelled,
    OPTIMIZERS,
    OptimizeOutcome,
    OptimizerSettings,
    ProgressCallback,
    ProgressMonitor,
    minimize,
)
from calibration.result import CalibrationResult, to_json_value
from calibration.snapshot import SECONDS_PER_YEAR, QuoteSnapshot
from calibration.surface import FittedSurface

#: Smallest interval between two progress reports, seconds.
PROGRESS_INTERVAL_S = 0.05
#: Two expiries given as times to expiry closer than this (years, about 30 s) are the same expiry.
MATCH_TTM_YEARS = 1e-6
#: Condition number of ``J^T J`` (scaled to a unit diagonal) above which the covariance uses a pseudo-inverse.
MAX_CONDITION = 1e12


@dataclass(frozen=True)
class CalibrationSettings:
    """Everything that defines a calibration run (shown in the UI, part of the cache key).

    Attributes
    ----------
    model
        Model key, one of :data:`calibration.models.MODEL_NAMES` (default "svi").
    optimizer
        One of :data:`calibration.optimizers.OPTIMIZERS` (default "lm").
    space
        Residual space, "vol" (model vol - market vol, decimals; default) or "price" (quote currency).
    weights
        "uniform", "vega" (default), "spread" or "oi" (see :func:`calibration.objective.quote_weights`).
    loss
        Robust loss: "linear" (default), "soft_l1", "huber", "cauchy".
    f_scale
        Loss scale in residual units; ``None`` (default): one vol point in vol space, the premium of one vol
        point on the median quote in price space.
    fit_to
        "mid" (default) or "band" (no penalty inside bid-ask).
    max_evals
        Residual evaluations allowed per problem (per expiry for slice models; per start), default 2000.
    ftol, xtol, gtol
        Tolerances on the relative cost change, the relative step and the scaled gradient (default 1e-10).
    seed
        Seed of differential evolution and multistart points (default 0).
    multistart
        Number of starting points of a local optimizer (0 or 1: the initial guess only; default 0).
    regularisation
        ``lambda >= 0`` of the regularisation toward ``previous`` (squared residual units; default 0, off).
    model_options
        Keyword fields of the model class (e.g. ``{"beta": 0.5}`` for SABR), JSON-able.
    """

    model: str = "svi"
    optimizer: str = "lm"
    space: str = "vol"
    weights: str = "vega"
    loss: str = "linear"
    f_scale: float | None = None
    fit_to: str = "mid"
    max_evals: int = 2000
    ftol: float = 1e-10
    xtol: float = 1e-10
    gtol: float = 1e-10
    seed: int = 0
    multistart: int = 0
    regularisation: float = 0.0
    model_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("model", self.model, MODEL_NAMES)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("residual space", self.space, SPACES)
        check_choice("weights", self.weights, WEIGHTS)
        check_choice("loss", self.loss, LOSSES)
        check_choice("fit_to", self.fit_to, FIT_TO)
        for name in ("max_evals", "seed", "multistart"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise CalibrationError(f"{name} must be a whole number, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("ftol", "xtol", "gtol", "regularisation") + (("f_scale",) if self.f_scale is not None else ()):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise CalibrationError(f"{name} must be a number, got {value!r}")
            object.__setattr__(self, name, float(value))  # 0 and 0.0 are the same setting (and cache key)
        if self.f_scale is not None and not (np.isfinite(self.f_scale) and self.f_scale > 0.0):
            raise CalibrationError(f"f_scale must be a positive number (or unset), got {self.f_scale!r}")
        if not (np.isfinite(self.regularisation) and self.regularisation >= 0.0):
            raise CalibrationError(f"regularisation must be a non-negative number, got {self.regularisation!r}")
        try:
            options = {
                str(k): float(v) if isinstance(v, (int, np.integer)) and not isinstance(v, bool) else v
                for k, v in json.loads(json.dumps(dict(self.model_options), sort_keys=True, allow_nan=False)).items()
            }
        except (TypeError, ValueError) as exc:
            raise CalibrationError(f"model_options must be JSON-able: {exc}") from exc
        object.__setattr__(self, "model_options", options)
        self.optimizer_settings()  # validates tolerances and the multistart / optimizer pair

    def optimizer_settings(self) -> OptimizerSettings:
        """The optimizer part of the settings."""
        return OptimizerSettings(
            method=self.optimizer, max_evals=self.max_evals, ftol=self.ftol, xtol=self.xtol, gtol=self.gtol,
            seed=self.seed, starts=self.multistart,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        out = asdict(self)
        out["model_options"] = dict(self.model_options)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CalibrationSettings":
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CalibrationError(f"unknown calibration settings: {', '.join(unknown)}")
        return cls(**dict(data))

    def cache_key(self) -> str:
        """Stable hex digest of the canonical JSON of the settings (equal settings, equal key)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def __hash__(self) -> int:  # model_options is a dict: hash the canonical JSON instead of the fields
        return hash(self.cache_key())


# ---------------------------------------------------------------------------------------------------------------
# quotes
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Quotes:
    """Quote arrays with what calibrate needs to report: expiry labels, snapshot time, drops and hash."""

    arrays: QuoteArrays
    expiries: tuple[str | None, ...]  # ISO per expiry of ``arrays``
    option_type: np.ndarray
    asof: pd.Timestamp | None
    n_dropped: int
    content_hash: str

    def take(self, mask: np.ndarray) -> "_Quotes":
        present = np.unique(self.arrays.expiry_index[mask])
        return _Quotes(
            arrays=self.arrays.take(mask),
            expiries=tuple(self.expiries[i] for i in present),
            option_type=self.option_type[mask],
            asof=self.asof,
            n_dropped=self.n_dropped,
            content_hash=self.content_hash,
        )


def _iso(ts: pd.Timestamp) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


def quote_arrays(snapshot: QuoteSnapshot) -> QuoteArrays:
    """The fit quotes of a snapshot as :class:`QuoteArrays` (vols and premiums of bid/mid/ask, vega, OI)."""
    return _quotes_of(snapshot).arrays


def _quotes_of(snapshot: QuoteSnapshot | QuoteArrays) -> _Quotes:
    if isinstance(snapshot, QuoteArrays):
        digest = hashlib.sha256()
        for f in fields(snapshot):
            digest.update(np.ascontiguousarray(getattr(snapshot, f.name)).tobytes())
        return _Quotes(
            arrays=snapshot,
            expiries=(None,) * snapshot.expiry_ttm.shape[0],
            option_type=np.where(snapshot.is_call, "C", "P"),
            asof=None,
            n_dropped=0,
            content_hash=digest.hexdigest()[:32],
        )
    if not isinstance(snapshot, QuoteSnapshot):
        raise CalibrationError(f"calibrate needs a QuoteSnapshot or QuoteArrays, got {type(snapshot).__name__}")
    q = snapshot.fit_quotes
    col = lambda name: q[name].to_numpy(dtype=float)  # noqa: E731
    option_type = q["option_type"].astype(str).to_numpy()
    arrays = QuoteArrays.from_arrays(
        forward=col("forward"), strike=col("strike"), ttm=col("ttm"), discount=col("discount"),
        is_call=option_type == "C", vol_bid=col("iv_bid"), vol_mid=col("iv_mid"), vol_ask=col("iv_ask"),
        price_bid=col("bid"), price_mid=col("mid"), price_ask=col("ask"), vega=col("vega"),
        open_interest=col("open_interest") if "open_interest" in q else np.nan,
    )
    expiries: list[str | None] = [None] * arrays.expiry_ttm.shape[0]
    if len(q):
        present, first = np.unique(arrays.expiry_index, return_index=True)  # first quote of each expiry
        for i, ts in zip(present, q["expiry"].iloc[first]):
            if pd.notna(ts):
                expiries[int(i)] = _iso(ts)
    return _Quotes(
        arrays=arrays,
        expiries=tuple(expiries),
        option_type=option_type,
        asof=pd.Timestamp(snapshot.asof),
        n_dropped=int(snapshot.drops.n_dropped),
        content_hash=snapshot.content_hash,
    )


# ---------------------------------------------------------------------------------------------------------------
# parameter alignment (warm start, regularisation, evaluate)
# ---------------------------------------------------------------------------------------------------------------


def _utc(ts: pd.Timestamp) -> pd.Timestamp:
    ts = pd.Timestamp(ts)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _result_ttm(result: CalibrationResult, asof: pd.Timestamp | None) -> FloatArray:
    """Times to expiry (years) of a result's parameter rows seen from ``asof`` (the result's own when either
    the snapshot time or the result's expiry dates are unknown)."""
    ttm = np.asarray(result.expiry_ttm, dtype=float)
    if asof is None or any(e is None for e in result.expiries):
        return ttm
    expiry = pd.to_datetime(list(result.expiries), utc=True, format="ISO8601")
    return np.asarray((expiry - _utc(asof)).total_seconds(), dtype=float) / SECONDS_PER_YEAR


def _aligned(
    given: CalibrationResult | ArrayLike | None, model: Model, quotes: _Quotes, what: str
) -> FloatArray | None:
    """Given parameters laid out like the fit: ``(p,)`` for surface models, ``(m, p)`` for slice models with
    NaN rows for the expiries the given parameters lack."""
    if given is None:
        return None
    p = len(model.params)
    m = quotes.arrays.expiry_ttm.shape[0]
    if isinstance(given, CalibrationResult):
        if given.model != model.name:
            raise CalibrationError(f"{what} parameters are for model {given.model!r}, not {model.name!r}")
        values = given.param_array
        if model.kind == "surface":  # by name (SSVI's list depends on the expiries): NaN where missing
            return np.array([float(given.params.get(s.name, np.nan)) for s in model.params])
        out = np.full((m, p), np.nan)
        ttm = _result_ttm(given, quotes.asof)
        for j, t in enumerate(quotes.arrays.expiry_ttm):
            if quotes.expiries[j] is not None and quotes.expiries[j] in given.expiries:
                out[j] = values[given.expiries.index(quotes.expiries[j])]
                continue
            hit = np.flatnonzero(np.abs(ttm - t) <= MATCH_TTM_YEARS)
            if hit.size:
                out[j] = values[hit[0]]
        return out
    values = np.asarray(given, dtype=float)
    if model.kind == "surface" or values.ndim == 1:
        if values.shape != (p,):
            raise CalibrationError(f"{what} parameters: expected {p} values ({_names(model)}), got {values.shape}")
        return values if model.kind == "surface" else np.tile(values, (m, 1))
    if values.shape != (m, p):
        raise CalibrationError(
            f"{what} parameters: expected shape ({m}, {p}) (one row of {_names(model)} per expiry), got {values.shape}"
        )
    return values


def _names(model: Model) -> str:
    return ", ".join(s.name for s in model.params)


# ---------------------------------------------------------------------------------------------------------------
# statistics
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Laplace:
    std_errors: FloatArray
    correlation: FloatArray
    note: str | None


def laplace_errors(objective: Objective, theta: FloatArray) -> _Laplace:
    """Standard errors and correlation at ``theta``: ``cov = s^2 (J^T J)^-1``, ``s^2 = RSS / (n - p)``.

    ``J`` is the Jacobian of the weighted data residuals and of the regularisation rows (constraint penalty rows
    are left out); ``RSS`` the weighted sum of squared data residuals (a robust loss is not taken into account:
    the Gauss-Newton approximation of the plain weighted least-squares problem). A singular or ill-conditioned
    ``J^T J`` uses the pseudo-inverse, and says so.
    """
    p = theta.shape[0]
    n = objective.n_data
    r = objective.residuals(theta)
    jac = objective.jacobian(theta)
    rows = np.r_[0:n, n + objective.n_constraints : jac.shape[0]]
    jac = jac[rows]
    rss = float(r[:n] @ r[:n])
    note = None
    s2 = rss / (n - p) if n > p else np.nan
    if n <= p:
        note = f"{n} quotes for {p} parameters: no standard errors"
    hess = jac.T @ jac
    inv = np.full((p, p), np.nan)
    if np.all(np.isfinite(hess)):
        # condition of the scale-free (correlation-like) matrix: parameter units do not make it singular
        d = np.sqrt(np.diag(hess))
        d = np.where(d > 0.0, d, 1.0)
        scaled = hess / np.outer(d, d)
        if np.linalg.cond(scaled) < MAX_CONDITION:
            inv = np.linalg.inv(scaled) / np.outer(d, d)
        else:
            inv = np.linalg.pinv(scaled) / np.outer(d, d)
            note = note or "singular Jacobian: some parameters are not identified by the quotes (pseudo-inverse)"
    cov = s2 * inv
    se = np.sqrt(np.maximum(np.diag(cov), 0.0))
    with np.errstate(all="ignore"):
        corr = cov / np.outer(se, se)
    return _Laplace(std_errors=se, correlation=corr, note=note)


def _feller_margin(model: Model, theta: FloatArray) -> float | None:
    """``2 kappa theta - sigma^2`` for models that report it (``feller_margin`` method), else ``None``."""
    margin = getattr(model, "feller_margin", None)
    if margin is None or model.kind != "surface":
        return None
    return float(margin(theta))


def _vols_and_prices(
    model: Model, values: FloatArray, q: QuoteArrays, vols: FloatArray | None = None
) -> tuple[FloatArray, FloatArray]:
    """Model vols (decimals) and prices (quote currency) from the model's native output ``values`` (a price
    model's implied ``vols`` when already known)."""
    with np.errstate(all="ignore"):
        if model.output == "vol":
            return values, black_price(q.forward, q.strike, q.ttm, values, is_call=q.is_call, discount=q.discount)
        if vols is None:
            vols = implied_vol(values, q.forward, q.strike, q.ttm, is_call=q.is_call, discount=q.discount).vol
        return vols, values


def _statistics(
    model: Model, values: FloatArray, quotes: _Quotes, weights: FloatArray, *, vols: FloatArray | None = None
) -> dict[str, Any]:
    """Fit statistics and the per-quote residual table of the model output ``values`` (against the mid); ``vols``:
    the implied vols of a price model's ``values`` when the fit already computed them."""
    q = quotes.arrays
    model_vol, model_price = _vols_and_prices(model, values, q, vols)
    with np.errstate(all="ignore"):
        res_vol = model_vol - q.vol_mid
        res_price = model_price - q.price_mid
        by_price = np.isfinite(q.price_bid) & np.isfinite(q.price_ask) & np.isfinite(model_price)
        by_vol = np.isfinite(q.vol_bid) & np.isfinite(q.vol_ask) & np.isfinite(model_vol)
        inside_price = (model_price >= q.price_bid) & (model_price <= q.price_ask)
        inside_vol = (model_vol >= q.vol_bid) & (model_vol <= q.vol_ask)
    inside = np.where(by_price, inside_price, inside_vol)
    known = by_price | by_vol

    def rms(x: FloatArray) -> float:
        x = x[np.isfinite(x)]
        return float(np.sqrt(np.mean(x * x))) if x.size else float("nan")

    finite_vol = np.abs(res_vol[np.isfinite(res_vol)])
    expiry_of = np.array(quotes.expiries, dtype=object)[q.expiry_index]
    table = {
        "expiry": list(expiry_of),
        "ttm": q.ttm,
        "strike": q.strike,
        "option_type": list(quotes.option_type),
        "k": q.k,
        "vol_bid": q.vol_bid,
        "vol_mid": q.vol_mid,
        "vol_ask": q.vol_ask,
        "model_vol": model_vol,
        "residual_vol_points": 100.0 * res_vol,
        "residual_price": res_price,
        "inside_spread": [bool(v) if k else None for v, k in zip(inside, known)],
        "weight": weights,
    }
    return {
        "rmse_vol_points": 100.0 * rms(res_vol),
        "rmse_price": rms(res_price),
        "max_error_vol_points": 100.0 * float(finite_vol.max()) if finite_vol.size else float("nan"),
        "inside_spread_share": float(np.mean(inside[known])) if known.any() else float("nan"),
        "residuals": {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in table.items()},
    }


# ---------------------------------------------------------------------------------------------------------------
# calibrate
# ---------------------------------------------------------------------------------------------------------------


def for_quotes(model: Model, quotes: QuoteArrays) -> Model:
    """The model sized or bounded for ``quotes`` when it has a ``for_quotes`` method (SSVI: one ATM variance per
    expiry; SVI: vertex and width bounded by the quotes), else the model itself."""
    build = getattr(model, "for_quotes", None)
    return build(quotes) if callable(build) else model


def build_model(settings: CalibrationSettings, quotes: QuoteArrays) -> Model:
    """The model of ``settings`` (with its options) for these quotes: surface models are sized for them with
    :func:`for_quotes`; slice models are returned as registered (calibrate applies ``for_quotes`` per expiry)."""
    model = get_model(settings.model, settings.model_options)
    return for_quotes(model, quotes) if model.kind == "surface" else model


def _usable(
    model: Model, quotes: _Quotes, settings: CalibrationSettings, *, fitting: bool = True
) -> tuple[_Quotes, int, list[str]]:
    """The quotes that can be fitted (scored when not ``fitting``), the number excluded, and notes."""
    q = quotes.arrays
    if q.n == 0:
        raise CalibrationError("the snapshot has no quotes to fit (every quote was dropped by cleaning)")
    ok = usable_quotes(q, space=settings.space, fit_to=settings.fit_to, weights=settings.weights)
    notes = []
    if (~ok).any():
        need = "bid and ask" if settings.fit_to == "band" else "mid"
        notes.append(f"{int((~ok).sum())} quotes without a {need} {settings.space} were not fitted")
    if model.kind == "slice" and fitting:
        p = len(model.params)
        counts = np.bincount(q.expiry_index[ok], minlength=q.expiry_ttm.shape[0])
        thin = (counts > 0) & (counts < p)
        if thin.any():
            names = [quotes.expiries[j] or f"t={q.expiry_ttm[j]:.4f}" for j in np.flatnonzero(thin)]
            notes.append(f"expiries with fewer than {p} quotes not fitted: {', '.join(names)}")
            ok &= ~thin[q.expiry_index]
    if not ok.any():
        raise CalibrationError(
            f"no quote has the market data a {settings.space}-space fit to the {settings.fit_to} needs"
            + (f" with at least {len(model.params)} quotes per expiry" if model.kind == "slice" else "")
        )
    every_expiry = np.bincount(q.expiry_index, minlength=q.expiry_ttm.shape[0]).all()
    kept = quotes if ok.all() and every_expiry else quotes.take(ok)  # take copies every array
    return kept, int((~ok).sum()), notes


def _prior(model: Model, previous: FloatArray | None, lam: float) -> Prior | None:
    """Regularisation toward the finite entries of ``previous`` (none when ``lam`` is 0 or nothing is given)."""
    if previous is None or lam <= 0.0 or not np.isfinite(previous).any():
        return None
    known = np.isfinite(previous)
    theta = np.where(known, previous, 0.0)
    scale = np.where(known, prior_scale(model, np.where(known, previous, 1.0)), np.inf)
    return Prior(theta=theta, scale=scale, lam=lam)


def _start(
    model: Model, quotes: QuoteArrays, given: FloatArray | None, guess: FloatArray | None = None
) -> FloatArray:
    """The given starting point, its missing (NaN) entries from ``guess`` or the model's initial guess."""
    if given is not None and np.all(np.isfinite(given)):
        return given
    guess = np.asarray(model.initial_guess(quotes) if guess is None else guess, dtype=float)
    return guess if given is None else np.where(np.isfinite(given), given, guess)


def _with_mids(q: QuoteArrays) -> QuoteArrays:
    """The quotes with missing mid vols/prices replaced by the middle of their bid and ask."""
    return q.with_values(
        vol_mid=np.where(np.isfinite(q.vol_mid), q.vol_mid, 0.5 * (q.vol_bid + q.vol_ask)),
        price_mid=np.where(np.isfinite(q.price_mid), q.price_mid, 0.5 * (q.price_bid + q.price_ask)),
    )


@dataclass
class _Fit:
    theta: FloatArray
    outcome: OptimizeOutcome | None
    laplace: _Laplace
    values: FloatArray  # the model's native output at theta on the problem's quotes
    vols: FloatArray | None = None  # a price model's implied vols of ``values``, when the fit computed them


def _fit_one(
    model: Model,
    quotes: QuoteArrays,
    weights: FloatArray,
    settings: CalibrationSettings,
    monitor: ProgressMonitor,
    start: FloatArray,
    prior: Prior | None,
) -> _Fit:
    objective = Objective(
        model, quotes, weights=weights, space=settings.space, fit_to=settings.fit_to, loss=settings.loss,
        f_scale=settings.f_scale, prior=prior,
    )
    outcome = minimize(objective.problem(start), settings.optimizer_settings(), monitor=monitor)
    if settings.fit_to == "band":
        # inside the band residuals and their Jacobian rows are zero: the Laplace approximation of the band fit
        # says nothing, so standard errors come from the residuals to the mid (the band's middle where no mid)
        mid = Objective(
            model, _with_mids(quotes), weights=weights, space=settings.space, fit_to="mid", loss=settings.loss,
            f_scale=settings.f_scale, prior=prior,
        )
        laplace = laplace_errors(mid, outcome.x)
        laplace = replace(laplace, note="band fit: standard errors from the residuals to the mid")
    else:
        laplace = laplace_errors(objective, outcome.x)
    return _Fit(
        theta=outcome.x, outcome=outcome, laplace=laplace, values=objective.model_values(outcome.x),
        vols=objective.model_vols(outcome.x),
    )


def calibrate(
    snapshot: QuoteSnapshot | QuoteArrays,
    settings: CalibrationSettings | None = None,
    *,
    progress: ProgressCallback | None = None,
    initial: CalibrationResult | ArrayLike | None = None,
    previous: CalibrationResult | ArrayLike | None = None,
    check_arbitrage: bool = True,
) -> CalibrationResult:
    """Calibrate the model of ``settings`` to the fit quotes of ``snapshot``.

    Parameters
    ----------
    snapshot
        A :class:`calibration.snapshot.QuoteSnapshot` (its ``fit_quotes`` are fitted) or :class:`QuoteArrays`.
    settings
        Model, optimizer, residual space, weights, loss... (defaults when omitted).
    progress
        Called with a :class:`calibration.optimizers.ProgressInfo` at most every 50 ms; returning True (or
        raising :class:`calibration.optimizers.CalibrationCancelled`) stops the fit: the result then has
        ``success=False`` and message "cancelled" (expiries not reached keep their initial guess).
    initial
        Warm start: a previous :class:`CalibrationResult` (slice models: matched by expiry; unmatched expiries
        start from the model's guess) or parameters, ``(p,)`` or ``(m, p)`` for the ``m`` expiries of the fitted
        quotes. Defaults to ``previous`` when given, else the model's initial guess.
    previous
        Parameters to regularise toward (``settings.regularisation > 0``), given like ``initial``.
    check_arbitrage
        Fill ``result.arbitrage`` with the butterfly and calendar checks of the fitted surface
        (:func:`calibration.arbitrage.check_arbitrage`); included in ``elapsed_s``. Off only to time the fit alone.

    Returns
    -------
    CalibrationResult
        A fit that does not converge is a result with ``success=False`` and the reason.

    Raises
    ------
    CalibrationError
        Empty snapshot, no fittable quote, unknown model or optimizer, bad settings or bad parameter shapes.
    """
    started = time.perf_counter()
    settings = settings or CalibrationSettings()
    quotes = _quotes_of(snapshot)
    model = build_model(settings, quotes.arrays)
    quotes, n_excluded, notes = _usable(model, quotes, settings)
    q = quotes.arrays
    weights = quote_weights(q, scheme=settings.weights, space=settings.space)
    prev = _aligned(previous, model, quotes, "previous")
    init = _aligned(initial, model, quotes, "initial")
    init = prev if init is None else init
    monitor = ProgressMonitor(progress, interval_s=PROGRESS_INTERVAL_S)
    vols = None  # a price model's implied vols at the optimum, when the fit computed them

    if model.kind == "surface":
        monitor.stage = model.label
        prior = _prior(model, prev, settings.regularisation)
        fits = [_fit_one(model, q, weights, settings, monitor, _start(model, q, init), prior)]
        theta = fits[0].theta
        values = fits[0].values
        vols = fits[0].vols
    elif _batched(settings, prev):
        monitor.stage = "all expiries"
        theta, values, fits = _fit_slices_batched(model, q, weights, settings, init, monitor)
    else:
        m = q.expiry_ttm.shape[0]
        fits = []
        values = np.empty(q.n)
        cancelled = False
        # a model that guesses every expiry at once (vectorized) does so once
        guesses = model.initial_guesses(q) if callable(getattr(model, "initial_guesses", None)) else None
        for j in range(m):
            rows = q.expiry_index == j
            sq = q.take(rows)
            expiry_model = for_quotes(model, sq)
            guess = None if guesses is None else guesses[j]
            start = _start(expiry_model, sq, None if init is None else init[j], guess)
            if cancelled:  # expiries not reached keep their starting point
                out = expiry_model.values(start, expiry_model.prepare(sq))
                fits.append(_Fit(theta=start, outcome=None, laplace=_nan_laplace(len(model.params)), values=out))
            else:
                monitor.stage = f"expiry {j + 1}/{m}"
                prior = _prior(expiry_model, None if prev is None else prev[j], settings.regularisation)
                fits.append(_fit_one(expiry_model, sq, weights[rows], settings, monitor, start, prior))
                cancelled = fits[-1].outcome is not None and fits[-1].outcome.cancelled
            values[rows] = fits[-1].values
        theta = np.vstack([f.theta for f in fits])

    success, message = _summary([f.outcome for f in fits], quotes)
    notes += [f.laplace.note for f in fits if f.laplace.note]
    stats = _statistics(model, values, quotes, weights, vols=vols)
    result = _result(
        model, settings, quotes, theta, fits, stats, n_excluded=n_excluded, nfev=monitor.nfev,
        elapsed_s=time.perf_counter() - started, success=success, message=message, notes=notes,
    )
    if not check_arbitrage:
        return result
    report = arbitrage_report(
        result.fitted_surface(), np.asarray(result.expiry_ttm), np.asarray(result.expiry_forward), 1.0,
        n_k=ARBITRAGE_GRID[model.output],
    )
    return replace(result, arbitrage=report.to_dict(), elapsed_s=time.perf_counter() - started)


#: Log-moneyness points per expiry of the arbitrage check: Fourier-priced models (free of static arbitrage by
#: construction, so the check guards the pricer) use a coarser grid, their prices cost more per strike.
ARBITRAGE_GRID = {"vol": 201, "price": 101}


def _batched(settings: CalibrationSettings, previous: FloatArray | None) -> bool:
    """Plain Levenberg-Marquardt on the mids in vol space: every expiry of a slice model is fitted at once."""
    return (
        settings.optimizer == "lm" and settings.space == "vol" and settings.loss == "linear"
        and settings.fit_to == "mid" and settings.multistart <= 1
        and (previous is None or settings.regularisation <= 0.0)
    )


def _fit_slices_batched(
    model: Model,
    q: QuoteArrays,
    weights: FloatArray,
    settings: CalibrationSettings,
    init: FloatArray | None,
    monitor: ProgressMonitor,
) -> tuple[FloatArray, FloatArray, list[_Fit]]:
    """Fit every expiry of a slice model in one batched Levenberg-Marquardt iteration
    (:func:`calibration.models.slices.fit_slices`: the same least-squares problem as the per-expiry loop, a
    damping per expiry, one vectorized model evaluation per iteration for all expiries)."""
    guesses = model.initial_guesses(q)
    start = guesses if init is None else np.where(np.isfinite(init), init, guesses)
    plan = model.prepare(q)
    fit = fit_slices(
        model, plan, q.vol_mid, start, weight=np.sqrt(weights), max_iter=settings.max_evals,
        ftol=settings.ftol, xtol=settings.xtol,
    )
    values = model.values(fit.theta, plan)
    monitor.nfev += fit.iterations  # one evaluation per iteration; the start is recorded (and reported) below
    try:
        monitor.evaluated(lambda: 100.0 * float(np.sqrt(np.mean((values - q.vol_mid) ** 2))))
    except CalibrationCancelled:
        pass  # asked to stop after the batched fit had already finished: keep its result
    fits = []
    for j in range(q.expiry_ttm.shape[0]):
        rows = q.expiry_index == j
        sq = q.take(rows)
        objective = Objective(
            for_quotes(model, sq), sq, weights=weights[rows], space="vol", fit_to="mid", loss="linear",
            f_scale=settings.f_scale, prior=None,
        )
        converged = bool(fit.converged[j])
        outcome = OptimizeOutcome(
            x=fit.theta[j], cost=float(fit.cost[j]), nfev=fit.iterations, njev=fit.iterations, success=converged,
            message="converged" if converged else f"no convergence in {settings.max_evals} iterations",
        )
        fits.append(_Fit(theta=fit.theta[j], outcome=outcome, laplace=laplace_errors(objective, fit.theta[j]),
                         values=values[rows]))
    return fit.theta, values, fits


def _nan_laplace(p: int) -> _Laplace:
    return _Laplace(std_errors=np.full(p, np.nan), correlation=np.full((p, p), np.nan), note=None)


def _summary(outcomes: list[OptimizeOutcome | None], quotes: _Quotes) -> tuple[bool, str]:
    """Overall success and message of the problems of a calibration."""
    if any(o is None or o.cancelled for o in outcomes):
        return False, "cancelled"
    if len(outcomes) == 1:
        return bool(outcomes[0].success), outcomes[0].message  # type: ignore[union-attr]
    label = [e or f"t={t:.4f}" for e, t in zip(quotes.expiries, quotes.arrays.expiry_ttm)]
    failed = [f"expiry {label[j]}: {o.message}" for j, o in enumerate(outcomes) if o is not None and not o.success]
    if failed:
        return False, f"{len(failed)} of {len(outcomes)} expiries did not converge; " + "; ".join(failed)
    return True, f"all {len(outcomes)} expiries converged"


def _result(
    model: Model,
    settings: CalibrationSettings,
    quotes: _Quotes,
    theta: FloatArray,
    fits: list[_Fit],
    stats: dict[str, Any],
    *,
    n_excluded: int,
    nfev: int,
    elapsed_s: float,
    success: bool,
    message: str,
    notes: list[str],
    optimizer: str | None = None,
    rows: tuple[tuple[str | None, ...], FloatArray, FloatArray] | None = None,
) -> CalibrationResult:
    """Assemble a result; ``rows`` (expiries, ttm, forwards of the parameter rows) default to the quotes'."""
    names = tuple(s.name for s in model.params)
    q = quotes.arrays
    slice_model = model.kind == "slice"
    expiries, expiry_ttm, expiry_forward = rows or (quotes.expiries, q.expiry_ttm, q.expiry_forward)
    se = np.vstack([f.laplace.std_errors for f in fits]) if slice_model else fits[0].laplace.std_errors
    corr: Any = [f.laplace.correlation.tolist() for f in fits] if slice_model else fits[0].laplace.correlation.tolist()
    if slice_model:
        params = {n: theta[:, i].tolist() for i, n in enumerate(names)}
        errors = {n: se[:, i].tolist() for i, n in enumerate(names)}
    else:
        params = {n: float(theta[i]) for i, n in enumerate(names)}
        errors = {n: float(se[i]) for i, n in enumerate(names)}
    return CalibrationResult(
        model=settings.model,
        kind=model.kind,
        optimizer=optimizer or settings.optimizer,
        settings=settings.to_dict(),
        param_names=names,
        params=params,
        std_errors=errors,
        correlation=corr,
        expiries=tuple(expiries),
        expiry_ttm=tuple(float(t) for t in expiry_ttm),
        expiry_forward=tuple(float(f) for f in expiry_forward),
        asof=None if quotes.asof is None else _iso(quotes.asof),
        n_quotes=q.n,
        n_dropped=quotes.n_dropped,
        n_excluded=n_excluded,
        nfev=nfev,
        elapsed_s=elapsed_s,
        success=success,
        message=message,
        feller_margin=None if slice_model else _feller_margin(model, theta),
        snapshot_hash=quotes.content_hash,
        notes=tuple(dict.fromkeys(notes)),
        model_fields=model_fields(model),
        **stats,
    )


def model_fields(model: Model) -> dict[str, Any]:
    """The constructor fields of a model as JSON values (``get_model(name, fields)`` rebuilds it)."""
    if not is_dataclass(model):
        return {}
    return {f.name: to_json_value(getattr(model, f.name)) for f in fields(model) if f.init}


# ---------------------------------------------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------------------------------------------


def evaluate(
    model: Model | str,
    params: CalibrationResult | ArrayLike,
    snapshot: QuoteSnapshot | QuoteArrays,
    *,
    settings: CalibrationSettings | None = None,
    expiry_ttm: ArrayLike | None = None,
    expiry_forward: ArrayLike | None = None,
) -> CalibrationResult:
    """Statistics of given parameters on a snapshot, without optimising (yesterday's parameters on today's quotes).

    Parameters
    ----------
    model
        The model, or its registry key (built with ``settings.model_options``, or the result's).
    params
        A :class:`CalibrationResult`, or parameters: ``(p,)`` for surface models, ``(m, p)`` for slice models
        (then ``expiry_ttm`` is required).
    snapshot
        The quotes to score.
    settings
        Residual space, fit target and weights deciding which quotes count (default: the result's settings, or
        the defaults). Optimizer settings are ignored.
    expiry_ttm, expiry_forward
        For slice-model parameter arrays: time to expiry (years, seen from ``snapshot``) and forward of each row.

    Returns
    -------
    CalibrationResult
        ``optimizer="none"``, ``nfev=0``, NaN standard errors; the statistics are computed exactly as for a fit.
        Slice models: rows are matched to the snapshot's expiries by expiry date (by time to expiry for arrays);
        expiries between the given rows are interpolated in total variance (:class:`FittedSurface`); given rows
        already expired are ignored. Surface models are evaluated as fitted: a result's model is rebuilt from
        its ``model_fields`` (SSVI keeps the ATM variances of its own times to expiry).
    """
    started = time.perf_counter()
    result = params if isinstance(params, CalibrationResult) else None
    if settings is None:
        base = CalibrationSettings.from_dict(result.settings) if result is not None else None
        name = model if isinstance(model, str) else model.name
        settings = base if base is not None and base.model == name else CalibrationSettings(model=name)
    quotes = _quotes_of(snapshot)
    if isinstance(model, str) and result is not None and result.model == model:
        model = get_model(model, result.model_options())  # the model as fitted (SSVI: on its own expiry grid)
    elif isinstance(model, str):
        model = build_model(CalibrationSettings(model=model, model_options=settings.model_options), quotes.arrays)
    quotes, n_excluded, notes = _usable(model, quotes, settings, fitting=False)
    q = quotes.arrays
    weights = quote_weights(q, scheme=settings.weights, space=settings.space)
    p = len(model.params)
    rows = None
    if model.kind == "surface":
        theta = result.param_array if result is not None else np.asarray(params, dtype=float)
        if theta.shape != (p,):
            raise CalibrationError(f"expected {p} parameters ({_names(model)}), got shape {theta.shape}")
        surface = FittedSurface(model=model, params=theta, expiry_ttm=np.empty(0), expiry_forward=np.empty(0))
    else:
        if result is not None:
            theta = result.param_array
            ttm = _result_ttm(result, quotes.asof)
            forward = np.asarray(result.expiry_forward, dtype=float)
            expiries = np.array(result.expiries, dtype=object)
        else:
            theta = np.atleast_2d(np.asarray(params, dtype=float))
            if expiry_ttm is None:
                raise CalibrationError("slice-model parameters need the time to expiry of each row (expiry_ttm)")
            ttm = np.atleast_1d(np.asarray(expiry_ttm, dtype=float))
            forward = np.asarray(expiry_forward if expiry_forward is not None else np.full(ttm.shape, np.nan))
            expiries = np.full(ttm.shape, None, dtype=object)
        if theta.ndim != 2 or theta.shape[1] != p or theta.shape[0] != ttm.shape[0]:
            raise CalibrationError(
                f"expected one row of {p} parameters ({_names(model)}) per expiry, got shape {theta.shape} "
                f"for {ttm.shape[0]} expiries"
            )
        live = np.flatnonzero(ttm > 0.0)
        if not live.size:
            raise CalibrationError("every expiry of the given parameters has expired at the snapshot time")
        live = live[np.argsort(ttm[live])]
        theta = theta[live]
        rows = (tuple(expiries[live]), ttm[live], forward[live])
        surface = FittedSurface(model=model, params=theta, expiry_ttm=ttm[live], expiry_forward=forward[live])
    if model.kind == "slice" or model.output == "vol":
        values = surface.vols(q)  # slice models: interpolated between the given expiries
    else:
        values = model.values(theta, model.prepare(q))
    stats = _statistics(model, values, quotes, weights)
    n_rows = theta.shape[0] if theta.ndim == 2 else 1
    fits = [_Fit(theta=theta, outcome=None, laplace=_nan_laplace(p), values=values)] * n_rows
    return _result(
        model, settings, quotes, theta, fits, stats, n_excluded=n_excluded, nfev=0,
        elapsed_s=time.perf_counter() - started, success=True, message="evaluated without optimising",
        notes=notes, optimizer="none", rows=rows,
    )
