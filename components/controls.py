"""The calibration controls (left navbar) and their mapping to settings and to the URL query string.

Pure helpers (no callbacks here): :func:`settings_from_controls` turns control values into
:class:`calibration.calibrate.CalibrationSettings`; :func:`query_from_state` / :func:`state_from_query` carry
the snapshot, the settings and the view in a link.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

import dash_mantine_components as dmc
from dash import dcc, html

from calibration.calibrate import CalibrationSettings
from calibration.errors import CalibrationError
from calibration.models import MODEL_NAMES
from calibration.objective import FIT_TO, SPACES, WEIGHTS
from calibration.optimizers import LOSSES, OPTIMIZERS
from components import ids

DEFAULTS = CalibrationSettings()

MODEL_LABELS: dict[str, str] = {
    "black": "Black · flat vol per expiry",
    "svi": "SVI · per expiry",
    "ssvi": "SSVI · whole surface",
    "sabr": "SABR · per expiry",
    "heston": "Heston · stochastic vol",
    "merton": "Merton · jump diffusion",
    "bates": "Bates · Heston + jumps",
}
OPTIMIZER_LABELS: dict[str, str] = {
    "lm": "Levenberg–Marquardt",
    "trf": "Trust-region reflective",
    "lbfgsb": "L-BFGS-B",
    "nelder": "Nelder–Mead",
    "de": "Differential evolution + polish",
}
SPACE_LABELS: dict[str, str] = {"vol": "Vol", "price": "Price"}
WEIGHT_LABELS: dict[str, str] = {"uniform": "Uniform", "vega": "Vega", "spread": "1 / spread", "oi": "Open interest"}
LOSS_LABELS: dict[str, str] = {"linear": "Least squares", "soft_l1": "Soft L1", "huber": "Huber", "cauchy": "Cauchy"}
FIT_TO_LABELS: dict[str, str] = {"mid": "Mid", "band": "Bid-ask band"}
#: Models whose options the navbar offers.
SABR_MODELS = ("sabr",)
FELLER_MODELS = ("heston", "bates")
DEFAULT_SABR_BETA = 0.5

#: Tabs (value, label), in order.
TABS: tuple[tuple[str, str], ...] = (
    ("surface", "Surface"),
    ("smiles", "Smiles"),
    ("residuals", "Residuals"),
    ("term", "Term structure"),
    ("greeks", "Greeks"),
    ("params", "Parameters"),
    ("quality", "Data quality"),
    ("compare", "Compare"),
    ("backtest", "Backtest"),
)
TAB_NAMES = tuple(value for value, _ in TABS)
SURFACE_AXES: tuple[tuple[str, str], ...] = (("k", "ln(K/F)"), ("strike", "Strike"), ("delta", "Delta"))
RESIDUAL_SPACES: tuple[tuple[str, str], ...] = (("vol", "Vol points"), ("price", "Premium"))
GREEKS: tuple[tuple[str, str], ...] = (
    ("delta", "Delta"), ("gamma", "Gamma"), ("vega", "Vega"), ("theta", "Theta"), ("vanna", "Vanna"),
    ("volga", "Volga"),
)


def _options(keys: tuple[str, ...], labels: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"value": key, "label": labels.get(key, key)} for key in keys]


# ---------------------------------------------------------------------------------------------------------------
# control values <-> settings
# ---------------------------------------------------------------------------------------------------------------

#: Control id -> settings field, for the plain fields (model options are handled apart).
CONTROL_FIELDS: tuple[tuple[str, str], ...] = (
    (ids.MODEL_SELECT, "model"),
    (ids.OPTIMIZER_SELECT, "optimizer"),
    (ids.SPACE_SELECT, "space"),
    (ids.WEIGHTS_SELECT, "weights"),
    (ids.LOSS_SELECT, "loss"),
    (ids.FIT_TO_SELECT, "fit_to"),
    (ids.MAX_EVALS_INPUT, "max_evals"),
    (ids.MULTISTART_INPUT, "multistart"),
    (ids.SEED_INPUT, "seed"),
)
#: Every control of the settings, in the order callbacks receive their values.
CONTROL_IDS: tuple[str, ...] = tuple(cid for cid, _ in CONTROL_FIELDS) + (ids.SABR_BETA_INPUT, ids.FELLER_SWITCH)
#: The property holding each control's value.
CONTROL_PROPS: dict[str, str] = {cid: "value" for cid in CONTROL_IDS} | {ids.FELLER_SWITCH: "checked"}


def _whole(name: str, value: Any, *, lowest: int) -> int:
    if value is None or value == "":
        raise CalibrationError(f"{name}: enter a whole number")
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"{name}: {value!r} is not a number") from exc
    if number != int(number) or number < lowest:
        raise CalibrationError(f"{name} must be a whole number >= {lowest}, got {value!r}")
    return int(number)


def model_options(model: str, sabr_beta: Any, feller: Any) -> dict[str, Any]:
    """The model options the navbar sets for ``model``: SABR ``beta`` (blank: fitted), Heston/Bates Feller."""
    if model in SABR_MODELS:
        if sabr_beta is None or sabr_beta == "":
            return {"beta": None}
        try:
            beta = float(sabr_beta)
        except (TypeError, ValueError) as exc:
            raise CalibrationError(f"SABR beta: {sabr_beta!r} is not a number (leave it blank to fit it)") from exc
        if not 0.0 <= beta <= 1.0:
            raise CalibrationError(f"SABR beta must lie in [0, 1] (blank: fitted), got {beta:g}")
        return {"beta": beta}
    if model in FELLER_MODELS:
        return {"enforce_feller": bool(feller)}
    return {}


def settings_from_controls(
    model: str,
    optimizer: str,
    space: str,
    weights: str,
    loss: str,
    fit_to: str,
    max_evals: Any,
    multistart: Any,
    seed: Any,
    sabr_beta: Any = DEFAULT_SABR_BETA,
    feller: Any = False,
) -> CalibrationSettings:
    """Calibration settings from the navbar's values (in :data:`CONTROL_IDS` order).

    Raises
    ------
    CalibrationError
        A value the settings refuse, with a message naming the control.
    """
    return CalibrationSettings(
        model=model,
        optimizer=optimizer,
        space=space,
        weights=weights,
        loss=loss,
        fit_to=fit_to,
        max_evals=_whole("Max evaluations", max_evals, lowest=1),
        multistart=_whole("Multistart", multistart, lowest=0),
        seed=_whole("Seed", seed, lowest=0),
        model_options=model_options(model, sabr_beta, feller),
    )


def controls_from_settings(settings: CalibrationSettings) -> dict[str, Any]:
    """Control id -> value showing ``settings`` (model options of other models keep their defaults)."""
    values: dict[str, Any] = {cid: getattr(settings, name) for cid, name in CONTROL_FIELDS}
    options = dict(settings.model_options)
    beta = options.get("beta", DEFAULT_SABR_BETA)
    values[ids.SABR_BETA_INPUT] = "" if beta is None else beta
    values[ids.FELLER_SWITCH] = bool(options.get("enforce_feller", False))
    return values


# ---------------------------------------------------------------------------------------------------------------
# URL query string
# ---------------------------------------------------------------------------------------------------------------

#: Query parameter -> (settings field, allowed values or None for whole numbers).
QUERY_FIELDS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "model": ("model", MODEL_NAMES),
    "optimizer": ("optimizer", OPTIMIZERS),
    "space": ("space", SPACES),
    "weights": ("weights", WEIGHTS),
    "loss": ("loss", LOSSES),
    "fit_to": ("fit_to", FIT_TO),
    "max_evals": ("max_evals", None),
    "multistart": ("multistart", None),
    "seed": ("seed", None),
}


def query_from_state(
    key: Mapping[str, Any] | None,
    settings: CalibrationSettings,
    *,
    tab: str | None = None,
    surface_axis: str | None = None,
) -> str:
    """The query string of a view: snapshot (data file name, or ``upload=<hash>``), settings that differ from
    the defaults, model options, tab and surface axis. Starts with ``?`` (empty string when nothing to say)."""
    params: dict[str, Any] = {}
    if key:
        if key.get("source") == "data":
            params["snapshot"] = key["name"]
        else:
            params["upload"] = key["hash"]
    for query, (field, _) in QUERY_FIELDS.items():
        value = getattr(settings, field)
        if value != getattr(DEFAULTS, field) or query in ("model", "optimizer"):
            params[query] = value
    options = dict(settings.model_options)
    if "beta" in options:
        params["beta"] = "fit" if options["beta"] is None else f"{options['beta']:g}"
    if options.get("enforce_feller"):
        params["feller"] = 1
    if tab and tab != TAB_NAMES[0]:
        params["tab"] = tab
    if surface_axis and surface_axis != SURFACE_AXES[0][0]:
        params["x"] = surface_axis
    return f"?{urlencode(params)}" if params else ""


def state_from_query(search: str | None) -> dict[str, Any]:
    """What a link asks for: ``{"snapshot": name | None, "upload": hash | None, "controls": {id: value},
    "tab": tab | None, "surface_axis": axis | None}``. Unknown or invalid values are ignored (the control keeps
    its value)."""
    pairs = dict(parse_qsl((search or "").lstrip("?"), keep_blank_values=False))
    controls: dict[str, Any] = {}
    for query, (field, allowed) in QUERY_FIELDS.items():
        if query not in pairs:
            continue
        raw = pairs[query]
        cid = next(c for c, f in CONTROL_FIELDS if f == field)
        if allowed is None:
            try:
                controls[cid] = _whole(query, raw, lowest=1 if field == "max_evals" else 0)
            except CalibrationError:
                continue
        elif raw in allowed:
            controls[cid] = raw
    if "beta" in pairs:
        if pairs["beta"] == "fit":
            controls[ids.SABR_BETA_INPUT] = ""
        else:
            try:
                beta = float(pairs["beta"])
                if 0.0 <= beta <= 1.0:
                    controls[ids.SABR_BETA_INPUT] = beta
            except ValueError:
                pass
    if "feller" in pairs:
        controls[ids.FELLER_SWITCH] = pairs["feller"] in ("1", "true", "yes")
    axis = pairs.get("x")
    return {
        "snapshot": pairs.get("snapshot"),
        "upload": pairs.get("upload"),
        "controls": controls,
        "tab": pairs.get("tab") if pairs.get("tab") in TAB_NAMES else None,
        "surface_axis": axis if axis in {a for a, _ in SURFACE_AXES} else None,
    }


# ---------------------------------------------------------------------------------------------------------------
# components
# ---------------------------------------------------------------------------------------------------------------


def snapshot_options(names: list[str]) -> list[dict[str, Any]]:
    """Picker entries, grouped: snapshots at the top of the data directory, then one group per sub-folder
    (history). Uploads of the session are added by :func:`with_upload`."""
    groups: dict[str, list[dict[str, str]]] = {}
    for name in names:
        folder, _, base = name.rpartition("/")
        group = f"{folder}/" if folder else "Snapshots"
        groups.setdefault(group, []).append({"value": name, "label": base if folder else name})
    out: list[dict[str, Any]] = [{"group": group, "items": items} for group, items in groups.items()]
    return out


UPLOAD_PREFIX = "upload:"


def upload_value(content_hash: str, name: str) -> str:
    """The picker value of an uploaded snapshot: ``upload:<hash>:<file name>``."""
    return f"{UPLOAD_PREFIX}{content_hash}:{name}"


def parse_upload_value(value: str) -> tuple[str, str] | None:
    """``(hash, file name)`` of an upload's picker value, ``None`` for a data-directory name."""
    if not value.startswith(UPLOAD_PREFIX):
        return None
    content_hash, _, name = value.removeprefix(UPLOAD_PREFIX).partition(":")
    return content_hash, name


UPLOAD_GROUP = "Uploaded"


def with_upload(options: list[dict[str, Any]] | None, name: str, content_hash: str) -> list[dict[str, Any]]:
    """Picker entries with an uploaded snapshot added to the "Uploaded" group (once)."""
    entry = {"value": upload_value(content_hash, name), "label": f"{name} · {content_hash[:6]}"}
    groups = [dict(g) for g in (options or [])]
    for group in groups:
        if group.get("group") == UPLOAD_GROUP:
            if all(item.get("value") != entry["value"] for item in group["items"]):
                group["items"] = [*group["items"], entry]
            return groups
    return [*groups, {"group": UPLOAD_GROUP, "items": [entry]}]


def _section(title: str, *children: Any) -> dmc.Stack:
    return dmc.Stack([dmc.Text(title, size="xs", fw=700, c="dimmed", tt="uppercase", className="nav-title"),
                      *children], gap=6)


def _select(cid: str, label: str, options: list[dict[str, str]], value: str) -> dmc.Select:
    return dmc.Select(id=cid, label=label, data=options, value=value, allowDeselect=False, size="xs",
                      comboboxProps={"withinPortal": True})


def navbar(snapshot_names: list[str], selected: str | None) -> list[dmc.AppShellSection]:
    """The left navbar: snapshot picker and upload, model, optimizer and objective (scrolling), then Calibrate /
    Cancel, the progress bar and the compare pins, always in view at the bottom."""
    d = DEFAULTS
    snapshot = _section(
        "Snapshot",
        dmc.Select(
            id=ids.SNAPSHOT_SELECT,
            data=snapshot_options(snapshot_names),
            value=selected,
            searchable=True,
            allowDeselect=False,
            size="xs",
            maxDropdownHeight=360,
            comboboxProps={"withinPortal": True},
            nothingFoundMessage="No such file in the data directory",
        ),
        dcc.Upload(
            id=ids.SNAPSHOT_UPLOAD,
            children=html.Div(["Drop a snapshot or ", html.A("browse")], className="upload-target"),
            multiple=False,
            className="upload",
        ),
        dmc.Text("CSV/Parquet (canonical), Deribit JSON, CBOE or OptionMetrics CSV; .gz accepted",
                 size="xs", c="dimmed"),
    )
    model = _section(
        "Model",
        _select(ids.MODEL_SELECT, "Model", _options(MODEL_NAMES, MODEL_LABELS), d.model),
        dmc.Group(
            [
                dmc.NumberInput(id=ids.SABR_BETA_INPUT, label="SABR β (blank: fit)", placeholder="fitted",
                                value=DEFAULT_SABR_BETA, min=0, max=1, step=0.1, decimalScale=3, size="xs", w=120,
                                disabled=d.model not in SABR_MODELS),
                dmc.Switch(id=ids.FELLER_SWITCH, label="Enforce Feller", checked=False, size="xs",
                           disabled=d.model not in FELLER_MODELS, mt=26),
            ],
            gap="sm",
            align="flex-start",
            wrap="nowrap",
        ),
    )
    optimizer = _section(
        "Optimizer",
        _select(ids.OPTIMIZER_SELECT, "Method", _options(OPTIMIZERS, OPTIMIZER_LABELS), d.optimizer),
        dmc.Group(
            [
                dmc.NumberInput(id=ids.MAX_EVALS_INPUT, label="Max evals", value=d.max_evals, min=1, step=500,
                                allowDecimal=False, size="xs", w=92),
                dmc.NumberInput(id=ids.MULTISTART_INPUT, label="Starts", value=d.multistart, min=0, max=50,
                                allowDecimal=False, size="xs", w=70),
                dmc.NumberInput(id=ids.SEED_INPUT, label="Seed", value=d.seed, min=0, allowDecimal=False, size="xs",
                                w=70),
            ],
            gap="xs",
            wrap="nowrap",
        ),
    )
    objective = _section(
        "Objective",
        dmc.SegmentedControl(id=ids.SPACE_SELECT, data=_options(SPACES, SPACE_LABELS), value=d.space, size="xs",
                             fullWidth=True),
        dmc.SegmentedControl(id=ids.FIT_TO_SELECT, data=_options(FIT_TO, FIT_TO_LABELS), value=d.fit_to, size="xs",
                             fullWidth=True),
        dmc.Group(
            [
                _select(ids.WEIGHTS_SELECT, "Weights", _options(WEIGHTS, WEIGHT_LABELS), d.weights),
                _select(ids.LOSS_SELECT, "Loss", _options(LOSSES, LOSS_LABELS), d.loss),
            ],
            gap="xs",
            grow=True,
            wrap="nowrap",
        ),
    )
    run = dmc.Stack(
        [
            dmc.Group(
                [
                    dmc.Button("Calibrate", id=ids.CALIBRATE_BUTTON, size="sm", flex=1),
                    dmc.Button("Cancel", id=ids.CANCEL_BUTTON, size="sm", variant="default", disabled=True),
                ],
                gap="xs",
                wrap="nowrap",
            ),
            dmc.Progress(id=ids.PROGRESS_BAR, value=0, size="sm", animated=True, striped=True,
                         style={"visibility": "hidden"}),
            dmc.Text(id=ids.PROGRESS_TEXT, size="xs", c="dimmed", className="progress-text"),
            dmc.Group(
                [
                    dmc.Button("Add to compare", id=ids.COMPARE_ADD, size="xs", variant="light", flex=1),
                    dmc.Button("Clear", id=ids.COMPARE_CLEAR, size="xs", variant="subtle", color="gray"),
                ],
                gap="xs",
                wrap="nowrap",
            ),
        ],
        gap=6,
    )
    return [
        dmc.AppShellSection(
            dmc.ScrollArea(dmc.Stack([snapshot, model, optimizer, objective], gap="sm", p="sm"), type="scroll",
                           h="100%"),
            grow=True,
            style={"overflow": "hidden"},
        ),
        dmc.AppShellSection(run, p="sm", className="run-section"),
    ]
