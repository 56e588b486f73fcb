"""Smilescope web app: ``create_app()`` builds the Dash app; ``python app.py`` serves it.

Safe defaults: binds 127.0.0.1 (``HOST``/``PORT`` from the environment), debug off, no remote version check,
every asset served locally (nothing is fetched from a CDN).
"""

from __future__ import annotations

import os

from dash import Dash

from components.layout import build_layout


def create_app() -> Dash:
    """Build the app: layout and callbacks, all assets served locally."""
    import components.callbacks.snapshot  # noqa: F401  (registers the callbacks)

    app = Dash(
        __name__,
        title="Smilescope",
        update_title=None,
        serve_locally=True,
        suppress_callback_exceptions=False,
    )
    app.layout = build_layout
    return app


def main() -> None:
    """Serve on ``HOST``:``PORT`` (default 127.0.0.1:8050)."""
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8050"))
    create_app().run(host=host, port=port, debug=False, dev_tools_disable_version_check=True)


if __name__ == "__main__":
    main()
