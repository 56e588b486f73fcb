"""Colours, fonts and plotly templates of the two themes (dark for the desk, light for projectors)."""

from __future__ import annotations

from typing import Literal

import plotly.graph_objects as go

Theme = Literal["dark", "light"]

FONT = "Inter, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"

#: Semantic colours, the same meaning on every chart.
PALETTE: dict[Theme, dict[str, str]] = {
    "dark": {
        "paper": "#15181e",
        "plot": "#15181e",
        "grid": "#2a2f3a",
        "text": "#d7dae0",
        "muted": "#8a93a3",
        "market": "#e8eaed",  # market mids
        "bid_ask": "#6b7385",  # bid-ask bars
        "model": "#4dabf7",  # fitted curve / surface
        "venue": "#ffa94d",  # the venue's own IVs
        "dropped": "#4a5060",  # dropped quotes, greyed
        "violation": "#ff6b6b",  # arbitrage flags, points outside the band
        "positive": "#ff8787",
        "negative": "#74c0fc",
    },
    "light": {
        "paper": "#ffffff",
        "plot": "#ffffff",
        "grid": "#e3e6eb",
        "text": "#1f2430",
        "muted": "#5c6370",
        "market": "#1f2430",
        "bid_ask": "#9aa3b2",
        "model": "#1c7ed6",
        "venue": "#e8590c",
        "dropped": "#c3c8d0",
        "violation": "#e03131",
        "positive": "#e03131",
        "negative": "#1c7ed6",
    },
}

#: Up to three compared fits.
SERIES = ("#4dabf7", "#ffa94d", "#69db7c")

#: Diverging scale for residuals (blue: model below market, red: model above), centred on zero.
RESIDUAL_SCALE = [[0.0, "#1c7ed6"], [0.5, "#f1f3f5"], [1.0, "#e03131"]]
#: Sequential scale for surfaces (vol, greeks).
SURFACE_SCALE = "Viridis"


def template(theme: Theme = "dark") -> go.layout.Template:
    """The plotly layout template of a theme: colours, font, grid, hover and margins."""
    c = PALETTE[theme]
    axis = dict(gridcolor=c["grid"], zerolinecolor=c["grid"], linecolor=c["grid"], tickfont=dict(color=c["muted"]),
                title=dict(font=dict(color=c["text"])))
    scene_axis = dict(axis, backgroundcolor=c["plot"], showbackground=True)
    return go.layout.Template(
        layout=go.Layout(
            paper_bgcolor=c["paper"],
            plot_bgcolor=c["plot"],
            font=dict(family=FONT, color=c["text"], size=12),
            colorway=list(SERIES),
            xaxis=axis,
            yaxis=axis,
            scene=dict(xaxis=scene_axis, yaxis=scene_axis, zaxis=scene_axis),
            legend=dict(bgcolor="rgba(0,0,0,0)", font=dict(color=c["text"])),
            hoverlabel=dict(font=dict(family=FONT, size=12)),
            margin=dict(l=60, r=20, t=40, b=50),
            coloraxis=dict(colorbar=dict(tickfont=dict(color=c["muted"]))),
        )
    )
