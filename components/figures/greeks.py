"""The Greeks view: 3D surfaces of the Black greeks of the fitted surface, and the risk-neutral density per expiry.

Greeks come from :func:`calibration.greeks.greeks_grid` (Black-76 at the fitted implied vol, sticky strike, one
unit of the underlying, discounted premiums in the quote currency) and are shown in a trader's units:

=======  ===============================================  ======================================
greek    shown as                                         from the core's units
=======  ===============================================  ======================================
delta    call delta, percent                              ``100 (delta + D)`` on the put side
gamma    change of delta (percent) for a 1 % move of F    ``gamma F``
vega     premium per vol point                            ``vega / 100``
theta    premium per calendar day (time decay)            ``theta / 365``
vanna    change of delta (percent) per vol point          ``vanna`` (``100 x / 100``)
volga    change of vega (per vol point) per vol point     ``volga / 10^4``
=======  ===============================================  ======================================

Gamma and time decay grow like ``1/sqrt(t)``: the short expiries would flatten every other expiry on a linear
axis, so those two are drawn on a log scale (labelled; hover gives the signed value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from calibration.errors import CalibrationError
from calibration.greeks import GREEK_NAMES, GreeksGrid, greeks_grid
from calibration.result import CalibrationResult
from calibration.snapshot import QuoteSnapshot
from components.figures.common import (
    DAYS_PER_YEAR,
    STRIKE_TITLE,
    Expiries,
    atm_vols,
    base_layout,
    empty_figure,
    f32,
    failure_note,
    fit_title,
    fitted_expiries,
    has_model,
    scene_expiry_axis,
    sqrt_days,
    standardised_k_range,
)
from components.figures.params import failure_suffix
from components.theme import PALETTE, RESIDUAL_SCALE, SURFACE_SCALE, Theme

Greek = Literal["delta", "gamma", "vega", "theta", "vanna", "volga"]

#: Grid points per expiry of a greek surface.
N_GRID = 61
#: Grid points per expiry of a density curve.
N_DENSITY = 201
#: Half-width of the density grid, in at-the-money standard deviations (``atm vol sqrt(t)``): wide enough for the
#: fat wings of a skewed smile (on the demo fits the range holds all but a few tenths of a percent of the
#: probability, about 2 % for SABR's steep wings).
DENSITY_N_SD = 6.0
#: Log-scale floor, as a fraction of the largest value (deep wings have no gamma or decay to speak of).
LOG_FLOOR = 1e-3
#: Camera of the greek surfaces: in front, a little to the left and above; moneyness across the screen (puts on
#: the left), expiry receding. Greeks largest at the short end (gamma, decay) put the short end at the back, so
#: that its ridge does not hide the longer expiries.
# further out than the Surface tab's camera: the greeks scene shares the row with the density chart
CAMERA = dict(eye=dict(x=-0.38, y=-2.3, z=1.1), center=dict(x=0.0, y=0.0, z=-0.12), up=dict(x=0, y=0, z=1))
ASPECT = dict(x=1.4, y=1.2, z=0.7)
DENSITY_TITLE = "Probability per 1% of strike (%)"
MONEYNESS_TITLE = "Moneyness ln(K/F) / (σ_ATM √t) (ATM std devs)"


@dataclass(frozen=True)
class GreekSpec:
    """How a greek is shown: its name, titles with units (colour bar; the shorter one on the z axis), scale and
    colours, and which end of the expiry axis faces the viewer."""

    label: str
    title: str
    short_title: str
    log: bool = False
    diverging: bool = False
    short_end_back: bool = False


GREEK_SPECS: dict[str, GreekSpec] = {
    "delta": GreekSpec("Delta", "Call delta (%)", "Call delta (%)"),
    "gamma": GreekSpec("Gamma", "Gamma: change of delta (%) for a 1% move, log scale", "Gamma (Δ% per 1%, log)",
                       log=True, short_end_back=True),
    "vega": GreekSpec("Vega", "Vega: premium per vol point", "Vega (per vol pt)"),
    "theta": GreekSpec("Theta", "Time decay −Θ: premium lost per day, log scale", "Decay −Θ (per day, log)",
                       log=True, short_end_back=True),
    "vanna": GreekSpec("Vanna", "Vanna: change of delta (%) per vol point", "Vanna (Δ% per vol pt)",
                       diverging=True),
    "volga": GreekSpec("Volga", "Volga: change of vega per vol point (premium per vol pt²)",
                       "Volga (per vol pt²)", diverging=True),
}


def greek_values(grid: GreeksGrid, greek: str) -> np.ndarray:
    """The greek in display units (see the module docstring), ``(m, n)``; signed (theta is negative decay)."""
    F = grid.forward[:, None]
    D = grid.discount[:, None]
    if greek == "delta":
        return 100.0 * np.where(grid.is_call, grid.delta, grid.delta + D)
    if greek == "gamma":
        return grid.gamma * F
    if greek == "vega":
        return grid.vega / 100.0
    if greek == "theta":
        return grid.theta / DAYS_PER_YEAR
    if greek == "vanna":
        return grid.vanna
    if greek == "volga":
        return grid.volga / 1e4
    raise ValueError(f"greek must be one of {GREEK_NAMES}, got {greek!r}")


def nice_log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 tick values between ``lo`` and ``hi`` (both > 0), at most about eight of them."""
    if not (np.isfinite(lo) and np.isfinite(hi) and 0 < lo < hi):
        return []
    out = []
    for e in range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1):
        out += [m * 10.0 ** e for m in (1, 2, 5)]
    ticks = [v for v in out if lo <= v <= hi]
    while len(ticks) > 8:
        ticks = ticks[::2]
    return ticks


def _tick_text(v: float) -> str:
    return f"{v:,.0f}" if v >= 10 else f"{v:.3g}"


def greeks_of_fit(snapshot: QuoteSnapshot, result: CalibrationResult, ex: Expiries, *, n: int,
                  quoted: bool) -> tuple[GreeksGrid, np.ndarray]:
    """The greeks grid of the fit on the expiries ``ex`` and the at-the-money standard deviation of each expiry
    (``atm vol sqrt(t)``, ``(m,)``): over the Surface view's standardised quoted range (``quoted``) or +/-
    :data:`DENSITY_N_SD` standard deviations."""
    atm = atm_vols(result, ex)
    sd = np.where(np.isfinite(atm) & (atm > 0), atm, np.nanmedian(atm)) * np.sqrt(ex.ttm)
    if quoted:
        # the Surface view's standardised range, without its clip to the quoted strikes (meant for a strike
        # axis): every expiry spans the same standard deviations, so the greek surface is a rectangle
        lo, hi = standardised_k_range(snapshot, ex, atm)
        k_range = (np.nanmin(lo / sd) * sd, np.nanmax(hi / sd) * sd)
    else:
        k_range = (-DENSITY_N_SD * sd, DENSITY_N_SD * sd)
    grid = greeks_grid(result.fitted_surface(), ex.ttm, ex.forward, ex.discount, axis="k", k_range=k_range, n=n)
    return grid, sd


def _fitted_grid(snapshot: QuoteSnapshot, result: CalibrationResult | None, *, n: int, quoted: bool, what: str,
                 theme: Theme) -> tuple[Expiries, GreeksGrid, np.ndarray] | go.Figure:
    """The fitted expiries, the greeks grid and the ATM standard deviations (see :func:`greeks_of_fit`), or the
    empty figure saying why there are none (no fit, no expiry, the grid failed); ``what`` names the view."""
    if not has_model(result):
        return empty_figure(f"No fitted model: calibrate to see the {what}", theme=theme)
    assert result is not None
    ex = fitted_expiries(snapshot, result)
    if ex.m == 0:
        return empty_figure("No expiries to show", theme=theme)
    try:
        grid, sd = greeks_of_fit(snapshot, result, ex, n=n, quoted=quoted)
    except CalibrationError as exc:
        return empty_figure(f"{what[0].upper()}{what[1:]} not available: {exc}", theme=theme)
    return ex, grid, sd


def _hover_text(grid: GreeksGrid, ex: Expiries) -> np.ndarray:
    """Per grid point: expiry, days, strike, k and the option (call/put side)."""
    call_delta = greek_values(grid, "delta")
    out = np.empty(grid.k.shape, dtype=object)
    for j in range(grid.k.shape[0]):
        head = f"{ex.label[j]} · {ex.days[j]:.1f} d"
        for i in range(grid.k.shape[1]):
            side = "call" if grid.is_call[j, i] else "put"
            out[j, i] = (f"{head}<br>K {grid.strike[j, i]:,.6g} · k {grid.k[j, i]:+.3f} · call Δ "
                         f"{call_delta[j, i]:.0f}% · vol {100 * grid.vol[j, i]:.1f}%<br>greeks of the OTM {side}")
    return out


def greeks_figure(snapshot: QuoteSnapshot, result: CalibrationResult | None, *, greek: Greek = "delta",
                  theme: Theme = "dark") -> go.Figure:
    """3D surface of one greek of the fitted surface over expiry x log-moneyness.

    Parameters
    ----------
    snapshot
        The snapshot the result was fitted to (its quoted moneyness range bounds the grid).
    result
        The fit; ``None`` or NaN parameters give an empty figure saying why.
    greek
        "delta", "gamma", "vega", "theta", "vanna" or "volga" (units in the module docstring and the z title).
    theme
        "dark" or "light".
    """
    if greek not in GREEK_SPECS:
        raise ValueError(f"greek must be one of {tuple(GREEK_SPECS)}, got {greek!r}")
    spec = GREEK_SPECS[greek]
    fitted = _fitted_grid(snapshot, result, n=N_GRID, quoted=True, what="greeks", theme=theme)
    if isinstance(fitted, go.Figure):
        return fitted
    ex, grid, sd = fitted
    value = greek_values(grid, greek)
    x = grid.k / sd[:, None]  # standardised moneyness
    if not np.isfinite(value).any():
        return empty_figure(f"{spec.label} not available: the fitted surface has no vols on the grid", theme=theme)

    c = PALETTE[theme]
    if spec.log:
        shown = -value if greek == "theta" else value
        top = float(np.nanmax(shown)) if np.isfinite(shown).any() else 1.0
        floor = top * LOG_FLOOR if top > 0 else 1e-12
        z = np.log10(np.clip(np.where(np.isfinite(shown), shown, np.nan), floor, None))
        ticks = nice_log_ticks(float(np.nanmin(np.power(10.0, z))), top)
        z_axis = dict(tickvals=[float(np.log10(v)) for v in ticks], ticktext=[_tick_text(v) for v in ticks])
        colour = dict(colorscale=SURFACE_SCALE, cmin=float(np.nanmin(z)), cmax=float(np.nanmax(z)),
                      colorbar=dict(title=dict(text=spec.title, side="right"), tickvals=z_axis["tickvals"],
                                    ticktext=z_axis["ticktext"], len=0.75, thickness=14))
    else:
        z = value
        z_axis = {}
        if spec.diverging:
            span = float(np.nanquantile(np.abs(value), 0.99)) or 1.0
            colour = dict(colorscale=RESIDUAL_SCALE, cmin=-span, cmax=span, cmid=0.0)
        else:
            lo, hi = (0.0, 100.0) if greek == "delta" else (float(np.nanmin(value)), float(np.nanmax(value)))
            colour = dict(colorscale=SURFACE_SCALE, cmin=lo, cmax=hi)
        colour["colorbar"] = dict(title=dict(text=spec.title, side="right"), len=0.75, thickness=14)

    fmt = ",.4~g"
    trace = go.Surface(
        x=f32(x), y=f32(np.repeat(sqrt_days(ex.days)[:, None], grid.k.shape[1], axis=1)), z=f32(z),
        surfacecolor=f32(z), customdata=f32(value), text=_hover_text(grid, ex), name=spec.label,
        hovertemplate=f"<b>{spec.label}</b> %{{customdata:{fmt}}}<br>%{{text}}<extra></extra>",
        contours=dict(z=dict(show=False)), opacity=0.95,
        lighting=dict(ambient=0.75, diffuse=0.5, specular=0.05, roughness=0.9), **colour,
    )
    fig = go.Figure(trace)
    annotations = []
    note = failure_note(result)
    if note:
        annotations.append(dict(text=note, showarrow=False, xref="paper", yref="paper", x=0.0, y=1.0,
                                xanchor="left", yanchor="bottom", font=dict(color=c["violation"], size=12)))
    scene = dict(
        xaxis=dict(title=dict(text=MONEYNESS_TITLE)),
        yaxis=dict(scene_expiry_axis(ex.days), autorange="reversed" if spec.short_end_back else True),
        zaxis=dict(title=dict(text=spec.short_title), **z_axis),
        camera=CAMERA, aspectmode="manual", aspectratio=ASPECT,
    )
    return base_layout(
        fig, theme,
        title=dict(text=f"{spec.label} · {fit_title(snapshot, result)}<br><sup>Black-76 at the fitted vol, sticky "
                        f"strike, one unit of {snapshot.underlying}; premiums in the quote currency</sup>",
                   x=0.01, xanchor="left", y=0.98, font=dict(size=14)),
        scene=scene, annotations=annotations, margin=dict(l=0, r=0, t=60, b=0),
        uirevision=f"greeks-{greek}",
    )


def density_figure(snapshot: QuoteSnapshot, result: CalibrationResult | None, *,
                   theme: Theme = "dark") -> go.Figure:
    """Risk-neutral density of the underlying at each expiry (Breeden-Litzenberger from the fitted smile).

    One line per expiry (nearest: dark, furthest: bright) against the strike (log axis), as the probability of
    ending in a band 1 % of the strike wide (``100 q(K) K 0.01``, percent: the density per unit of ``ln K``, so
    that the curves are bells on the log axis), over +/- :data:`DENSITY_N_SD` at-the-money standard deviations.
    Points where the density is negative (butterfly arbitrage) are marked in the violation colour.
    """
    fitted = _fitted_grid(snapshot, result, n=N_DENSITY, quoted=False, what="risk-neutral density", theme=theme)
    if isinstance(fitted, go.Figure):
        return fitted
    ex, grid, _ = fitted
    c = PALETTE[theme]
    y = grid.density * grid.strike  # percent per 1 % of strike: 100 * q K * 0.01
    lo, hi = (0.25, 1.0) if theme == "dark" else (0.0, 0.8)  # keep every line visible on the background
    colours = sample_colorscale(SURFACE_SCALE, list(np.linspace(lo, hi, ex.m)) if ex.m > 1 else [0.5])
    traces: list[go.BaseTraceType] = []
    for j in range(ex.m):
        traces.append(go.Scatter(
            x=f32(grid.strike[j]), y=f32(y[j]), mode="lines", name=ex.label[j], line=dict(color=colours[j], width=1.8),
            customdata=f32(np.column_stack([grid.k[j], 100.0 * grid.vol[j]])),
            hovertemplate=(f"<b>{ex.label[j]}</b> · {ex.days[j]:.1f} d<br>K %{{x:,.6~g}} · k %{{customdata[0]:+.3f}}"
                           "<br>%{y:.3f} % per 1% of strike · vol %{customdata[1]:.2f} %<extra></extra>"),
        ))
    negative = np.isfinite(y) & (y < 0)
    if negative.any():
        traces.append(go.Scatter(
            x=f32(grid.strike[negative]), y=f32(y[negative]), mode="markers",
            name=f"Negative density ({int(negative.sum())} pts)", marker=dict(color=c["violation"], size=6, symbol="x"),
            hovertemplate="<b>negative density (butterfly arbitrage)</b><br>K %{x:,.6~g} · %{y:.3f} %<extra></extra>",
        ))
    fig = go.Figure(traces)
    sub = "probability (%) of expiring within a strike band 1% wide" + failure_suffix(result, theme)
    fig.add_hline(y=0, line=dict(color=c["muted"], width=1))
    if np.isfinite(snapshot.spot) and snapshot.spot > 0:
        fig.add_vline(x=snapshot.spot, line=dict(color=c["muted"], width=1, dash="dot"))
        fig.add_annotation(x=float(np.log10(snapshot.spot)), y=1.0, xref="x", yref="paper", showarrow=False,
                           text=f"spot {snapshot.spot:,.6g}", xanchor="left", yanchor="bottom",
                           font=dict(color=c["muted"], size=11))  # annotations on a log axis take log10(x)
    return base_layout(
        fig, theme,
        title=dict(text=f"Risk-neutral density<br><sup>{fit_title(snapshot, result)} · {sub}</sup>", x=0.01,
                   xanchor="left"),
        xaxis=dict(title=dict(text=STRIKE_TITLE + ", log scale"), type="log", dtick="D2", tickformat=",.8~g"),
        yaxis=dict(title=dict(text=DENSITY_TITLE), rangemode="tozero"),
        legend=dict(title=dict(text="Expiry"), itemclick="toggle", itemdoubleclick="toggleothers"),
        hovermode="closest", margin=dict(l=70, r=20, t=70, b=60),
    )
