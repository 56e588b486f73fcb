"""The Celery worker of the scale-out mode: ``celery -A components.scaleout.worker:celery_app worker``.

Importing this module builds the web app once (without serving it) so that every background callback is
registered as a Celery task on :data:`celery_app`, exactly as in the web processes (Dash names the tasks by the
callback's source, so workers and web processes must run the same code: restart the workers after a deploy).
The backtest tasks come with the app's ``include``. Each worker writes a heartbeat to Redis while it consumes
(:class:`components.scaleout.health.Heartbeat`), which is how the web app knows it is alive.
"""

from __future__ import annotations

from app import create_app
from components.scaleout.celery_app import get_celery
from components.scaleout.health import Heartbeat

celery_app = get_celery()
celery_app.steps["consumer"].add(Heartbeat)
dash_app = create_app(warm=False)
