"""Smilescope web app: ``create_app()`` builds the Dash app; ``python app.py`` serves it.

Safe defaults: binds 127.0.0.1 (``HOST``/``PORT`` from the environment), debug off, no remote version check,
every asset served locally (nothing is fetched from a CDN). Calibrations run as background jobs memoised in a
diskcache directory (``SMILESCOPE_CACHE_DIR``, default ``.cache/``) by snapshot content, settings and code
version; the default snapshot's default fit is computed once at start-up, off the request path. With
``SMILESCOPE_REDIS_URL`` set they run on Celery workers instead (``make worker``, see
:mod:`components.scaleout.worker`) and the shared stores live in Redis.
"""

from __future__ import annotations

import os

# Before numpy is imported: the pricing engines multiply many small matrices, where threaded BLAS is slower.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import logging  # noqa: E402
import threading  # noqa: E402

from dash import CeleryManager, Dash, DiskcacheManager  # noqa: E402

from components import scaleout  # noqa: E402
from components.layout import build_layout  # noqa: E402
from components.server_store import code_version, jobs_cache  # noqa: E402

log = logging.getLogger("smilescope")


def prewarm() -> None:
    """Open the default snapshot and compute its default fit into the disk cache (what page loads show)."""
    from components.controls import DEFAULTS
    from components.data_files import DEFAULT_SNAPSHOT, list_snapshots
    from components.server_store import cached_fit, data_key

    try:
        if DEFAULT_SNAPSHOT in list_snapshots():
            cached_fit(data_key(DEFAULT_SNAPSHOT)[0], DEFAULTS)
    except Exception:  # noqa: BLE001 - a failed warm-up only costs the first page load its speed
        log.exception("pre-warming the default fit failed")


def background_manager() -> DiskcacheManager | CeleryManager:
    """Where background jobs run, memoised by their input and the code version: Celery workers through Redis
    when ``SMILESCOPE_REDIS_URL`` is set, local processes with a diskcache directory otherwise."""
    if not scaleout.enabled():
        return DiskcacheManager(jobs_cache(), cache_by=[code_version])
    from components.scaleout.celery_app import get_celery
    from components.scaleout.manager import ScaleoutManager

    return ScaleoutManager(get_celery(), cache_by=[code_version])


def create_app(*, warm: bool = True) -> Dash:
    """Build the app: layout, callbacks and the background-job manager; ``warm`` pre-computes the default fit
    in a background thread."""
    import components.callbacks.calibrate  # noqa: F401  (each module registers its callbacks)
    import components.callbacks.backtest  # noqa: F401
    import components.callbacks.compare  # noqa: F401
    import components.callbacks.exports  # noqa: F401
    import components.callbacks.snapshot  # noqa: F401
    import components.callbacks.theme  # noqa: F401
    import components.callbacks.url  # noqa: F401
    import components.callbacks.views  # noqa: F401

    on_error = None
    if scaleout.enabled():
        from components.callbacks.scaleout import report_job_failure  # (registers the badge's callback too)

        on_error = report_job_failure

    app = Dash(
        __name__,
        title="Smilescope",
        update_title=None,
        serve_locally=True,
        suppress_callback_exceptions=False,
        background_callback_manager=background_manager(),
        on_error=on_error,
    )
    app.layout = build_layout
    if warm:
        threading.Thread(target=prewarm, name="prewarm", daemon=True).start()
    return app


def wsgi():
    """The WSGI application for a production server: ``gunicorn --workers 4 'app:wsgi()'``."""
    return create_app().server


def main() -> None:
    """Serve on ``HOST``:``PORT`` (default 127.0.0.1:8050)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per poll of a running job
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8050"))
    create_app().run(host=host, port=port, debug=False, dev_tools_disable_version_check=True)


if __name__ == "__main__":
    main()
