"""The Backtest tab's layout: history, models and starts to run, progress, exports, and the five sub-views.

A run is one model from one start ("warm": from the previous good fit, "cold": from the model's initial guess,
"regularised": warm and penalised toward the previous fit with weight lambda); every other calibration setting
comes from the left panel. The callbacks are in :mod:`components.callbacks.backtest`.
"""

from __future__ import annotations

import logging
from typing import Any

import dash_mantine_components as dmc
import pandas as pd
from dash import dcc, html

from components import ids
from components.controls import MODEL_LABELS
from components.data_files import history_folders
from components.layout import _card, _graph, _grid, graph_config
from components.server_store import data_snapshot

log = logging.getLogger(__name__)

#: Starts of a run (value, label).
STARTS: tuple[tuple[str, str], ...] = (("warm", "warm"), ("cold", "cold"), ("regularised", "regularised"))
DEFAULT_MODELS = ["svi", "heston"]
DEFAULT_STARTS = ["warm"]
DEFAULT_LAMBDA = 1.0
MAX_MODELS = 3
#: Sub-views (value, label), in order.
SUBVIEWS: tuple[tuple[str, str], ...] = (
    ("ranking", "Ranking"), ("stability", "Stability"), ("oos", "Out-of-sample"), ("hedge", "Hedge"),
    ("replay", "Replay"),
)
#: Height of a sub-view's figure: what the tab leaves of the window below its controls.
GRAPH_BOX = {"height": "calc(100vh - 300px)", "minHeight": "420px"}
#: The replay's smiles: small multiples, as tall as the Smiles tab's.
TALL_BOX = {"height": "calc(100vh - 165px)", "minHeight": "480px"}
#: The stability grid may be taller than the window: it scrolls in its box.
SCROLL_BOX = {"maxHeight": "calc(100vh - 290px)", "minHeight": "420px", "overflowY": "auto"}
#: Seconds per snapshot of the replay.
REPLAY_STEP_S = 1.5


def history_label(folder: str, names: list[str]) -> str:
    """Picker label of a history: folder, snapshot count and the times of its first and last snapshot (read from
    the files; left out when they cannot be read)."""
    label = f"{folder} · {len(names)} snapshots"
    try:
        first, last = (pd.Timestamp(data_snapshot(name).asof).tz_convert("UTC") for name in (names[0], names[-1]))
    except Exception as exc:  # noqa: BLE001 - an unreadable end file costs the label its times, nothing else
        log.info("history %s: times not read (%s)", folder, exc)
        return label
    end = last.strftime("%H:%M" if last.date() == first.date() else "%m-%d %H:%M")
    return f"{label} · {first:%Y-%m-%d %H:%M} → {end} UTC"


def history_options() -> list[dict[str, str]]:
    """Entries of the History picker: every history folder of the data directory."""
    return [{"value": folder, "label": history_label(folder, names)} for folder, names in history_folders().items()]


def _box(gid: str, name: str, style: dict[str, str] = GRAPH_BOX) -> html.Div:
    box = _graph(gid, name, css="")
    box.style = style
    return box


def _model_options() -> list[dict[str, str]]:
    return [{"value": m, "label": label.split(" · ")[0]} for m, label in MODEL_LABELS.items()]


def _ranking_grid() -> Any:
    """The ranking: a row per run (at most nine), as tall as its rows, headers wrapped rather than cut."""
    grid = _grid(ids.BACKTEST_RANKING, [], height="auto", min_width=70)
    grid.dashGridOptions = {**grid.dashGridOptions, "domLayout": "autoHeight"}
    grid.defaultColDef = {**grid.defaultColDef, "wrapHeaderText": True, "autoHeaderHeight": True,
                          "suppressHeaderMenuButton": True, "suppressHeaderFilterButton": True}
    return grid


def backtest_panel() -> list[Any]:
    """The tab's content: the run's choices; Run, Cancel, the progress and the exports; the sub-view switch with a
    line about the backtest on screen; and the sub-views' panes (only the chosen one shown)."""
    histories = history_options()
    controls = dmc.Group(
        [
            dmc.Select(id=ids.BACKTEST_HISTORY, label="History", data=histories,
                       value=histories[0]["value"] if histories else None, allowDeselect=False, size="xs", w=380,
                       placeholder="no history folder in the data directory",
                       comboboxProps={"withinPortal": True}),
            dmc.MultiSelect(id=ids.BACKTEST_MODELS, label=f"Models (up to {MAX_MODELS})", data=_model_options(),
                            value=DEFAULT_MODELS, maxValues=MAX_MODELS, size="xs", w=230,
                            comboboxProps={"withinPortal": True}),
            dmc.CheckboxGroup(
                dmc.Group([dmc.Checkbox(label=label, value=value, size="xs") for value, label in STARTS], gap=10,
                          mt=6, mb=6, wrap="nowrap"),
                id=ids.BACKTEST_STARTS, label="Starts", value=DEFAULT_STARTS, size="xs",
            ),
            dmc.NumberInput(id=ids.BACKTEST_LAMBDA, label="λ", value=DEFAULT_LAMBDA, min=0, step=0.5,
                            decimalScale=4, size="xs", w=64, disabled="regularised" not in DEFAULT_STARTS),
        ],
        gap="sm",
        align="flex-end",
    )
    run = dmc.Group(
        [
            dmc.Button("Run backtest", id=ids.BACKTEST_RUN, size="xs"),
            dmc.Button("Cancel", id=ids.BACKTEST_CANCEL, size="xs", variant="default", disabled=True),
            dmc.Progress(id=ids.BACKTEST_PROGRESS_BAR, value=0, size="sm", animated=True, striped=True, w=140,
                         style={"visibility": "hidden"}),
            dmc.Text(id=ids.BACKTEST_PROGRESS_TEXT, size="xs", c="dimmed", className="progress-text", flex=1),
            dmc.Button("Export CSV", id=ids.BACKTEST_EXPORT_CSV, size="xs", variant="subtle"),
            dmc.Button("Export JSON", id=ids.BACKTEST_EXPORT_JSON, size="xs", variant="subtle"),
        ],
        gap="sm",
        wrap="nowrap",
    )
    switch = dmc.Group(
        [
            dmc.SegmentedControl(id=ids.BACKTEST_VIEW, data=[{"value": v, "label": t} for v, t in SUBVIEWS],
                                 value=SUBVIEWS[0][0], size="xs"),
            dmc.Text("Every other setting (optimizer, objective, evaluations, seed) comes from the left panel.",
                     id=ids.BACKTEST_NOTE, size="xs", c="dimmed"),
        ],
        gap="sm",
        wrap="nowrap",
    )
    replay = [
        dmc.Group(
            [
                dmc.Select(id=ids.REPLAY_RUN, data=[], placeholder="run", size="xs", w=200, allowDeselect=False,
                           comboboxProps={"withinPortal": True}),
                dmc.Button("Play", id=ids.REPLAY_PLAY, size="xs", variant="light", w=70),
                html.Div(dmc.Slider(id=ids.REPLAY_STEP, min=0, max=1, step=1, value=0, marks=[], size="sm",
                                    updatemode="mouseup", label=None),
                         style={"flex": 1, "padding": "0 44px 18px 28px"}),
                dcc.Interval(id=ids.REPLAY_TIMER, interval=int(REPLAY_STEP_S * 1000), disabled=True),
            ],
            gap="sm",
            wrap="nowrap",
            align="center",
        ),
        dmc.Stack([_box(ids.REPLAY_SURFACE_GRAPH, "backtest-replay-surface"),
                   _box(ids.REPLAY_SMILES_GRAPH, "backtest-replay-smiles", TALL_BOX)], gap="sm"),
    ]
    tall = dcc.Graph(id=ids.BACKTEST_STABILITY_GRAPH, figure={"data": [], "layout": {}},
                     config=graph_config("backtest-stability"), responsive="auto")
    panes = {
        "ranking": [_card("Runs ranked by out-of-sample error (then hedge error)", _ranking_grid())],
        "stability": [html.Div(tall, className="graph-box", style=SCROLL_BOX)],
        "oos": [_box(ids.BACKTEST_OOS_GRAPH, "backtest-out-of-sample")],
        "hedge": [_box(ids.BACKTEST_HEDGE_GRAPH, "backtest-hedge")],
        "replay": replay,
    }
    return [
        controls,
        run,
        switch,
        *[html.Div(children, id={"type": ids.BACKTEST_PANES, "view": view},
                   style={"display": "block" if view == SUBVIEWS[0][0] else "none"})
          for view, children in panes.items()],
        dcc.Download(id=ids.BACKTEST_DOWNLOAD),
    ]
