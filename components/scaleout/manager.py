"""Dash's ``CeleryManager`` made to tell the user when a job can never finish.

Dash's manager polls a job until its result appears: with no worker alive, or with the worker running it killed,
that is forever, and with Redis down every poll is a server error. This manager answers such a poll with a
background-callback error naming the problem (the app's ``on_error`` turns it into a notification, see
:func:`components.callbacks.scaleout.report_job_failure`): Redis unreachable, no worker to take a queued job, or the
worker that started it gone (its heartbeat stopped, :mod:`components.scaleout.health`). The error is only
reported, never stored: the same request later runs again.
"""

from __future__ import annotations

import logging
from typing import Any

from dash import CeleryManager

from components.scaleout import health

log = logging.getLogger(__name__)


def failure(message: str) -> dict[str, Any]:
    """What Dash's polling reads as a failed background callback (raised as ``BackgroundCallbackError``)."""
    return {"background_callback_error": {"msg": message, "tb": ""}}


def failure_message(exc: Exception) -> str:
    """The sentence of a failed background job, without Dash's prefix and traceback."""
    text = str(exc).removeprefix("An error occurred inside a background callback: ")
    return text.split("\n", 1)[0].strip() or type(exc).__name__


class ScaleoutManager(CeleryManager):
    """``CeleryManager`` whose polls report a job that cannot finish instead of waiting for it forever."""

    def get_progress(self, key: str) -> Any:
        try:
            return super().get_progress(key)
        except health.REDIS_ERRORS:
            return None  # the result poll that follows reports the outage

    def get_result(self, key: str, job: Any) -> Any:
        try:
            result = super().get_result(key, job)
            if result is not self.UNDEFINED or not job:
                return result
            task = self.get_task(job)
            reason = health.lost_job(task.state, task.info, health.live_workers())
        except health.REDIS_ERRORS as exc:
            return failure(health.redis_down_message(exc))
        if reason is None:
            return self.UNDEFINED
        log.warning("job %s lost: %s", job, reason)
        return failure(reason)

    def job_running(self, job: Any) -> bool:
        try:
            return bool(super().job_running(job))
        except health.REDIS_ERRORS:
            return False

    def terminate_job(self, job: Any) -> None:
        try:
            super().terminate_job(job)
        except health.REDIS_ERRORS as exc:
            log.warning("could not revoke job %s: %s", job, exc)

    def get_updated_props(self, key: str) -> Any:
        try:
            return super().get_updated_props(key)
        except health.REDIS_ERRORS:
            return {}
