"""The Surface view: the fitted implied-vol surface in 3D with the market mids coloured by residual."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from calibration.result import CalibrationResult
from calibration.snapshot import QuoteSnapshot
from components.figures.common import (
    DELTA_LIMITS,
    MODEL_VOL_TITLE,
    QUOTE_HOVER,
    RESIDUAL_VOL_TITLE,
    VOL_TITLE,
    X_AXES,
    X_TITLES,
    XAxis,
    arbitrage_points,
    atm_vols,
    base_layout,
    call_delta,
    empty_figure,
    scene_expiry_axis,
    f32,
    failure_note,
    fit_title,
    fitted_expiries,
    has_model,
    sqrt_days,
    model_vols,
    pct,
    quote_customdata,
    quote_frame,
    quote_text,
    standardised_k_range,
    surface_point_array,
    symmetric_range,
    vol_grid,
)
from components.theme import PALETTE, RESIDUAL_SCALE, SURFACE_SCALE, Theme

#: Grid points per expiry of the drawn surface.
N_GRID = 61
#: At most this many arbitrage markers per kind (evenly thinned beyond).
MAX_VIOLATION_MARKERS = 200
#: Camera: from the front (short expiries) and a little left and above; moneyness across the screen.
CAMERA = dict(eye=dict(x=-0.55, y=-1.8, z=0.85), center=dict(x=0.05, y=0.0, z=-0.1), up=dict(x=0, y=0, z=1))
ASPECT = dict(x=1.5, y=1.1, z=0.85)


def _x_of(axis: XAxis, k: np.ndarray, strike: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Display coordinate of ``axis``: k, strike, or call delta in percent."""
    return {"k": k, "strike": strike, "delta": 100.0 * delta}[axis]


def _surface_text(grid) -> np.ndarray:
    """Hover text of each grid point (expiry, days, strike, k, delta)."""
    ex = grid.expiries
    label = np.repeat(np.asarray(ex.label, dtype=object)[:, None], grid.k.shape[1], axis=1)
    days = np.repeat(ex.days[:, None], grid.k.shape[1], axis=1)
    out = np.empty(grid.k.shape, dtype=object)
    for idx in np.ndindex(grid.k.shape):
        out[idx] = (f"{label[idx]} · {days[idx]:.1f} d<br>K {grid.strike[idx]:,.6g} · k {grid.k[idx]:+.3f}"
                    f" · delta {100 * grid.delta[idx]:.0f}%")
    return out


def surface_figure(snapshot: QuoteSnapshot, result: CalibrationResult | None, *, x_axis: XAxis = "k",
                   theme: Theme = "dark") -> go.Figure:
    """The fitted implied-vol surface in 3D with the market mids coloured by residual and arbitrage marked.

    Parameters
    ----------
    snapshot
        The snapshot the result was fitted to.
    result
        The fit; ``None`` (or NaN parameters) shows the market mids alone.
    x_axis
        "k" (log-moneyness), "strike" (quote currency) or "delta" (forward call delta, percent, high on the left
        so that low strikes stay on the left).
    theme
        "dark" or "light".

    Returns
    -------
    plotly.graph_objects.Figure
        Expiry on a log-days axis, vol in percent; hover: strike, expiry, days, delta, bid/mid/ask vol, model
        vol, residual.
    """
    if x_axis not in X_AXES:
        raise ValueError(f"x_axis must be one of {X_AXES}, got {x_axis!r}")
    c = PALETTE[theme]
    quotes = quote_frame(snapshot, result)
    market = quotes.loc[quotes["status"] == "ok"]
    market = market.loc[np.isfinite(market["iv_mid"].to_numpy(dtype=float))]
    fitted = has_model(result)
    if market.empty and not fitted:
        return empty_figure("No quotes to show: every quote of this snapshot was dropped", theme=theme)

    traces: list[go.BaseTraceType] = []
    z_values = [100.0 * market["iv_mid"].to_numpy(dtype=float)]
    if fitted:
        ex = fitted_expiries(snapshot, result)
        k_range = standardised_k_range(snapshot, ex, atm_vols(result, ex))
        grid = vol_grid(snapshot, result, n=N_GRID, axis=x_axis, expiries=ex, k_range=k_range)
        z = 100.0 * grid.vol
        z_values.append(z.ravel())
        traces.append(go.Surface(
            x=f32(grid.x(x_axis)), y=f32(np.repeat(sqrt_days(grid.expiries.days)[:, None], grid.k.shape[1], 1)),
            z=f32(z), surfacecolor=f32(z), colorscale=SURFACE_SCALE, opacity=0.92, name="Model",
            text=surface_point_array(_surface_text(grid)),
            hovertemplate="<b>Model</b> %{text}<br>model vol %{z:.2f} %<extra></extra>",
            colorbar=dict(title=dict(text=MODEL_VOL_TITLE, side="right"), x=0.84, len=0.7, thickness=12),
            contours=dict(z=dict(show=False)), showscale=True,
            lighting=dict(ambient=0.75, diffuse=0.5, specular=0.05, roughness=0.9),
        ))

    if x_axis == "delta" and not market.empty:  # the delta axis shows the 5-95 delta window only
        d = call_delta(market["k"], market["iv_mid"], market["ttm"])
        market = market.loc[(d >= DELTA_LIMITS[0] - 0.005) & (d <= DELTA_LIMITS[1] + 0.005)]
    if not market.empty:
        ttm = market["ttm"].to_numpy(dtype=float)
        k = market["k"].to_numpy(dtype=float)
        iv = market["iv_mid"].to_numpy(dtype=float)
        x = _x_of(x_axis, k, market["strike"].to_numpy(dtype=float), call_delta(k, iv, ttm))
        residual = market["residual_vol_points"].to_numpy(dtype=float)
        has_res = bool(np.isfinite(residual).any())
        span = symmetric_range(residual)
        marker = dict(size=3.2, line=dict(width=0.6 if theme == "light" else 0, color=c["muted"]))
        if has_res:
            marker.update(color=f32(np.where(np.isfinite(residual), residual, 0.0)), colorscale=RESIDUAL_SCALE,
                          cmin=-span, cmax=span, cmid=0.0,
                          colorbar=dict(title=dict(text=RESIDUAL_VOL_TITLE, side="right"), x=0.93, len=0.7,
                                        thickness=14))
        else:
            marker.update(color=c["market"])
        traces.append(go.Scatter3d(
            x=f32(x), y=sqrt_days(market["days"]), z=pct(iv), mode="markers", name="Market mid",
            marker=marker, text=quote_text(market), customdata=quote_customdata(market), hovertemplate=QUOTE_HOVER,
        ))

    points = arbitrage_points(snapshot, result, grid.expiries) if fitted else None
    if fitted:
        traces.extend(_violation_traces(points, result, grid, x_axis, c["violation"]))

    fig = go.Figure(traces)
    days = np.concatenate([market["days"].to_numpy(dtype=float), grid.expiries.days if fitted else []])
    z_all = np.concatenate(z_values)
    z_all = z_all[np.isfinite(z_all)]
    if fitted and z_all.size:
        fig.data[0].update(cmin=float(np.floor(z_all.min())), cmax=float(np.ceil(z_all.max())))
    x_title = X_TITLES[x_axis]
    axis_font = dict(size=12)
    scene = dict(
        xaxis=dict(title=dict(text=x_title, font=axis_font),
                   autorange="reversed" if x_axis == "delta" else True,
                   tickformat=",.0f" if x_axis == "strike" else None),
        yaxis=scene_expiry_axis(days),
        zaxis=dict(title=dict(text=VOL_TITLE, font=axis_font), ticksuffix=""),
        camera=CAMERA, aspectmode="manual", aspectratio=ASPECT,
        domain=dict(x=[0.0, 0.82], y=[0.0, 1.0]),
    )
    annotations = []
    note = failure_note(result)
    if note:
        annotations.append(dict(text=note, showarrow=False, xref="paper", yref="paper", x=0.0, y=1.0,
                                xanchor="left", yanchor="bottom", font=dict(color=c["violation"], size=12)))
    if fitted:
        annotations.append(dict(text=_arbitrage_summary(points), showarrow=False, xref="paper", yref="paper",
                                x=0.0, y=1.0, yshift=-18 if note else 0, xanchor="left", yanchor="bottom",
                                font=dict(color=c["violation"] if len(points) else c["muted"], size=12)))
    else:
        annotations.append(dict(text="No fitted model: market mids only", showarrow=False, xref="paper",
                                yref="paper", x=0.0, y=1.0, xanchor="left", yanchor="bottom",
                                font=dict(color=c["muted"], size=12)))
    return base_layout(
        fig, theme,
        title=dict(text=fit_title(snapshot, result), x=0.01, xanchor="left", y=0.98, font=dict(size=14)),
        scene=scene, annotations=annotations, margin=dict(l=0, r=0, t=48, b=0),
        legend=dict(orientation="h", x=0.01, y=0.94, xanchor="left", yanchor="top"),
        uirevision="surface",
    )


def _arbitrage_summary(points) -> str:
    """One line on the static arbitrage found on the quoted range."""
    if points.empty:
        return "No static arbitrage found on the quoted range"
    n_fly = int((points["kind"] == "butterfly").sum())
    n_cal = int((points["kind"] == "calendar").sum())
    return (f"Static arbitrage on the quoted range: {n_fly} butterfly and {n_cal} calendar grid points"
            " (red marks where they fall on the drawn surface)")


def _violation_traces(points, result: CalibrationResult, grid, x_axis: XAxis, colour: str) -> list[go.Scatter3d]:
    """Red markers where the fitted surface has butterfly or calendar arbitrage, on the model surface.

    The check covers each expiry's quoted range; points beyond the drawn surface (its k range, or the 5-95 delta
    window) are counted in the legend but not drawn, so that far-wing vols do not flatten the picture.
    """
    if points.empty:
        return []
    ex = grid.expiries
    out = []
    for kind, symbol in (("butterfly", "x"), ("calendar", "diamond-open")):
        rows = points.loc[points["kind"] == kind]
        if rows.empty:
            continue
        n = len(rows)
        t = rows["ttm"].to_numpy(dtype=float)
        j = np.clip(np.searchsorted(ex.ttm, t - 1e-9), 0, ex.m - 1)
        k = rows["k"].to_numpy(dtype=float)
        shown = (k >= grid.k[j, 0] - 1e-12) & (k <= grid.k[j, -1] + 1e-12)
        name = f"{kind.capitalize()} arbitrage ({n} pts" + (f", {n - int(shown.sum())} beyond the surface)"
                                                            if not shown.all() else ")")
        if shown.sum() > MAX_VIOLATION_MARKERS:
            keep = np.flatnonzero(shown)[np.linspace(0, shown.sum() - 1, MAX_VIOLATION_MARKERS).round().astype(int)]
            shown = np.zeros_like(shown)
            shown[keep] = True
        if not shown.any():
            continue
        t, j, k = t[shown], j[shown], k[shown]
        F, D = ex.forward[j], ex.discount[j]
        strike = F * np.exp(k)
        vol = model_vols(result, F, strike, t, D)
        x = _x_of(x_axis, k, strike, call_delta(k, vol, t))
        labels = [f"{ex.label[i]} · K {s:,.6g}" for i, s in zip(j, strike)]
        what = "negative density (butterfly)" if kind == "butterfly" else "total variance falls to next expiry"
        out.append(go.Scatter3d(
            x=f32(x), y=sqrt_days(365.0 * t), z=pct(vol), mode="markers", name=name,
            marker=dict(size=4.5, color=colour, symbol=symbol), text=labels,
            hovertemplate=f"<b>{what}</b><br>%{{text}}<br>model vol %{{z:.2f}} %<extra></extra>",
        ))
    return out


__all__ = ["surface_figure"]
