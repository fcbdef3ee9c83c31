"""``POST /v1/feedback``: user feedback joined to the request it is about, its arm and cohort.

Body: ``{"request_id": "...", "thumbs": "up"|"down"|1|-1, "score": 0..1, "comment": "..."}`` (at
least one of ``thumbs`` and ``score``). The request id is the ``x-request-id`` the gateway returned;
the join reads the request log, so feedback for a request not (yet) logged is a 404 the client may
retry after the log's flush interval. Stored rows go to every ``Gateway.feedback_hooks`` listener
(the release controller's thumbs-down-rate signal by arm and cohort).
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from tunegate.gateway.validate import error_body
from tunegate.store import online as q

if TYPE_CHECKING:
    from tunegate.gateway.service import Gateway

__all__ = ["handle_feedback", "parse_feedback"]

_log = logging.getLogger(__name__)
_THUMBS = {"up": 1, "down": -1, 1: 1, -1: -1, "1": 1, "-1": -1}


class FeedbackError(ValueError):
    def __init__(self, message: str, param: str | None) -> None:
        super().__init__(message)
        self.param = param


def parse_feedback(raw: bytes) -> dict[str, Any]:
    """Validated feedback fields, or FeedbackError naming the bad parameter."""
    try:
        body = json.loads(raw or b"null")
    except ValueError:
        raise FeedbackError("the request body is not valid JSON", None) from None
    if not isinstance(body, dict):
        raise FeedbackError("the body must be a JSON object", None)
    unknown = sorted(set(body) - {"request_id", "thumbs", "score", "comment"})
    if unknown:
        raise FeedbackError(f"unknown field {unknown[0]!r} (allowed: request_id, thumbs, score, comment)", unknown[0])
    rid = body.get("request_id")
    if not isinstance(rid, str) or not rid.strip() or len(rid) > 200:
        raise FeedbackError("request_id is required: the x-request-id the gateway returned", "request_id")
    thumbs = body.get("thumbs")
    # an object or array here is unhashable: test its type before the dict lookup (it was a 500)
    if thumbs is not None and (isinstance(thumbs, bool) or not isinstance(thumbs, str | int)
                               or thumbs not in _THUMBS):
        raise FeedbackError("thumbs must be 'up' or 'down' (or 1 / -1)", "thumbs")
    score = body.get("score")
    if score is not None and (isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1):
        raise FeedbackError("score must be a number between 0 and 1", "score")
    if thumbs is None and score is None:
        raise FeedbackError("give thumbs or score", "thumbs")
    comment = body.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > 10_000):
        raise FeedbackError("comment must be a string of at most 10,000 characters", "comment")
    return {"request_id": rid, "thumbs": _THUMBS[thumbs] if thumbs is not None else None,
            "score": float(score) if score is not None else None, "comment": comment}


def _store(store: Any, fb: dict[str, Any]) -> dict[str, Any] | None:
    req = q.request_row(store, fb["request_id"])
    if req is None:
        return None
    return q.insert_feedback(store, **fb, route=req["route"], arm=req["arm"], cohort=req["cohort"])


async def handle_feedback(gw: Gateway, raw: bytes) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) for one feedback request."""
    try:
        fb = parse_feedback(raw)
    except FeedbackError as e:
        return 400, error_body(str(e), type_="invalid_request_error", param=e.param)
    if gw.worker is None:
        return 503, error_body("the gateway runs without a store: feedback cannot be joined", type_="unavailable")
    try:
        row = await gw.worker.call(_store, fb)
    except Exception as e:
        gw.metrics.store_failures.labels("feedback").inc()
        return 503, error_body(f"store unavailable: {type(e).__name__}", type_="unavailable")
    if row is None:
        return 404, error_body(f"no logged request {fb['request_id']!r} (unknown, or not logged yet: retry in a "
                               "second)", type_="invalid_request_error", param="request_id", code="request_not_found")
    for hook in list(gw.feedback_hooks):
        try:
            await hook(row)
        except Exception as e:  # a listener's bug never fails the client's feedback
            _log.exception("feedback hook failed: %s", e)
    return 200, {"object": "feedback", "id": row["id"], "request_id": row["request_id"], "route": row["route"],
                 "arm": row["arm"], "cohort": row["cohort"]}
