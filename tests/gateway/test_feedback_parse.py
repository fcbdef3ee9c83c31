"""``parse_feedback`` refuses every malformed body with a named parameter (a 400), never an exception
the app turns into a 500: schemathesis found ``{"thumbs": {}}`` raising TypeError (unhashable)."""

from __future__ import annotations

import json

import pytest

from tunegate.gateway.feedback import FeedbackError, parse_feedback


@pytest.mark.parametrize(("body", "param"), [
    ({"request_id": "r", "thumbs": {}}, "thumbs"),
    ({"request_id": "r", "thumbs": []}, "thumbs"),
    ({"request_id": "r", "thumbs": True}, "thumbs"),
    ({"request_id": "r", "thumbs": "sideways"}, "thumbs"),
    ({"request_id": "r", "score": 1.5}, "score"),
    ({"request_id": "r", "score": [0.5]}, "score"),
    ({"request_id": "", "score": 0.5}, "request_id"),
    ({"request_id": "r"}, "thumbs"),
    ({"request_id": "r", "score": 0.5, "comment": {}}, "comment"),
    ({"request_id": "r", "score": 0.5, "extra": 1}, "extra"),
])
def test_bad_bodies_name_the_parameter(body: dict[str, object], param: str) -> None:
    with pytest.raises(FeedbackError) as e:
        parse_feedback(json.dumps(body).encode())
    assert e.value.param == param


def test_good_body_is_normalised() -> None:
    fb = parse_feedback(b'{"request_id": "r1", "thumbs": "down", "score": 1}')
    assert fb == {"request_id": "r1", "thumbs": -1, "score": 1.0, "comment": None}
