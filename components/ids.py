"""Every component id of the app, in one place (callbacks and tests import them from here)."""

# Shell
THEME_STORE = "theme-store"  # "dark" | "light", persisted in the browser
THEME_TOGGLE = "theme-toggle"
URL = "url"
NOTIFICATIONS = "notifications"
SYNTHETIC_BADGE = "synthetic-badge"
THEME_PROVIDER = "theme-provider"  # the dmc.MantineProvider (its forceColorScheme follows THEME_STORE)
RESULT_SUMMARY = "result-summary"  # header line describing the fit on screen
URL_APPLIED = "url-applied"  # bumped when a link's query string has been applied to the controls

# Snapshot
SNAPSHOT_SELECT = "snapshot-select"
SNAPSHOT_UPLOAD = "snapshot-upload"
SNAPSHOT_KEY = "snapshot-key"  # {"source": "data"|"upload", "name": str, "hash": str}
SNAPSHOT_SUMMARY = "snapshot-summary"
SNAPSHOT_ERROR = "snapshot-error"

# Calibration controls
MODEL_SELECT = "model-select"
OPTIMIZER_SELECT = "optimizer-select"
SPACE_SELECT = "space-select"
WEIGHTS_SELECT = "weights-select"
LOSS_SELECT = "loss-select"
FIT_TO_SELECT = "fit-to-select"
MAX_EVALS_INPUT = "max-evals-input"
MULTISTART_INPUT = "multistart-input"
SEED_INPUT = "seed-input"
SABR_BETA_INPUT = "sabr-beta-input"
FELLER_SWITCH = "feller-switch"
CALIBRATE_BUTTON = "calibrate-button"
CANCEL_BUTTON = "cancel-button"
PROGRESS_BAR = "progress-bar"
PROGRESS_TEXT = "progress-text"
RESULT_STORE = "result-store"  # CalibrationResult.to_dict() of the current fit
COMPARE_STORE = "compare-store"  # up to three pinned results of the same snapshot
COMPARE_ADD = "compare-add"
COMPARE_CLEAR = "compare-clear"
FIT_REQUEST = "fit-request"  # {"snapshot": key, "settings": CalibrationSettings.to_dict()}: the job's only input

# Views
TABS = "view-tabs"
SURFACE_GRAPH = "surface-graph"
SURFACE_AXIS = "surface-axis"  # "k" | "strike" | "delta"
SMILES_GRAPH = "smiles-graph"
RESIDUALS_GRAPH = "residuals-graph"
RESIDUALS_SPACE = "residuals-space"  # "vol" | "price"
TERM_GRAPH = "term-graph"
GREEKS_GRAPH = "greeks-graph"
GREEKS_SELECT = "greeks-select"
DENSITY_GRAPH = "density-graph"
PARAMS_TABLE = "params-table"
FIT_STATS = "fit-stats"
CORRELATION_GRAPH = "correlation-graph"
SENSITIVITY_GRAPH = "sensitivity-graph"
FORWARDS_GRAPH = "forwards-graph"
DROP_TABLE = "drop-table"
FORWARD_TABLE = "forward-table"
QUOTES_GRID = "quotes-grid"
COMPARE_TABLE = "compare-table"
COMPARE_SMILES_GRAPH = "compare-smiles-graph"
COMPARE_RESIDUALS_GRAPH = "compare-residuals-graph"
RENDERED = "rendered"  # pattern-matching type: {"type": RENDERED, "tab": tab}: stamp of what the tab draws

# Backtest
BACKTEST_HISTORY = "backtest-history"  # a folder of history_folders()
BACKTEST_MODELS = "backtest-models"
BACKTEST_STARTS = "backtest-starts"  # ["warm", "cold", "regularised"]
BACKTEST_LAMBDA = "backtest-lambda"  # regularisation weight of the "regularised" start
BACKTEST_RUN = "backtest-run"
BACKTEST_CANCEL = "backtest-cancel"
BACKTEST_PROGRESS_BAR = "backtest-progress-bar"
BACKTEST_PROGRESS_TEXT = "backtest-progress-text"
BACKTEST_EXPORT_CSV = "backtest-export-csv"
BACKTEST_EXPORT_JSON = "backtest-export-json"
BACKTEST_DOWNLOAD = "backtest-download"
BACKTEST_REQUEST = "backtest-request"  # {"history", "names", "calibration", "runs"}: the job's only input
BACKTEST_STORE = "backtest-store"  # {"key", "labels", "n", "asof", "names"} of the backtest on screen
BACKTEST_VIEW = "backtest-view"  # "ranking" | "stability" | "oos" | "hedge" | "replay"
BACKTEST_NOTE = "backtest-note"  # one line under the controls: what the backtest on screen is, bad snapshots
BACKTEST_RANKING = "backtest-ranking"
BACKTEST_STABILITY_GRAPH = "backtest-stability-graph"
BACKTEST_OOS_GRAPH = "backtest-oos-graph"
BACKTEST_HEDGE_GRAPH = "backtest-hedge-graph"
BACKTEST_PANES = "backtest-panes"  # pattern-matching type: {"type": BACKTEST_PANES, "view": view}
REPLAY_RUN = "replay-run"
REPLAY_STEP = "replay-step"  # slider over the snapshot index
REPLAY_PLAY = "replay-play"
REPLAY_TIMER = "replay-timer"
REPLAY_SURFACE_GRAPH = "replay-surface-graph"
REPLAY_SMILES_GRAPH = "replay-smiles-graph"

# Exports
EXPORT_PARAMS = "export-params"
EXPORT_GRID = "export-grid"
EXPORT_QUOTES = "export-quotes"
DOWNLOAD = "download"

# Scale-out (only in the layout when SMILESCOPE_REDIS_URL is set)
SCALEOUT_BADGE = "scaleout-badge"  # header badge: workers alive, none, or Redis unreachable
SCALEOUT_TIMER = "scaleout-timer"  # dcc.Interval re-checking the back end every few seconds
