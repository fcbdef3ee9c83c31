"""The gateway's OpenAPI 3.1 document (served at ``/openapi.json``; schemathesis tests against it)."""

from __future__ import annotations

from typing import Any

from tunegate._version import __version__

__all__ = ["openapi_document"]

_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {
    "type": "object", "required": ["message", "type"],
    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                   "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}}}}}

_CONTENT = {"anyOf": [{"type": "string"}, {"type": "null"},
                      {"type": "array", "items": {"type": "object", "properties": {
                          "type": {"type": "string"}, "text": {"type": "string"}}}}]}

_MESSAGE = {"type": "object", "required": ["role"], "properties": {
    "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool"]},
    "content": _CONTENT, "name": {"type": "string"}, "tool_call_id": {"type": "string"},
    "tool_calls": {"type": "array", "items": {"type": "object"}}}}

_TOOL = {"type": "object", "required": ["type", "function"], "properties": {
    "type": {"type": "string", "enum": ["function"]},
    "function": {"type": "object", "required": ["name"], "properties": {
        "name": {"type": "string"}, "description": {"type": "string"}, "parameters": {"type": "object"}}}}}

_CHAT_REQUEST = {"type": "object", "required": ["model", "messages"], "properties": {
    "model": {"type": "string", "minLength": 1, "description": "A route name (GET /v1/models)."},
    "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
    "stream": {"type": "boolean"},
    "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
    "n": {"type": "integer", "minimum": 1, "maximum": 16},
    "max_tokens": {"type": "integer", "minimum": 1},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
    "seed": {"type": "integer"},
    "stop": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "maxItems": 4}]},
    "tools": {"type": "array", "items": _TOOL},
    "tool_choice": {},
    "user": {"type": "string", "description": "Sticky rollout key when no x-tunegate-user header is sent."},
    "metadata": {"type": "object", "description": "Routing facts (cohort, user_id...) and prompt variables; "
                 "never forwarded upstream."}}}

_FEEDBACK_REQUEST = {"type": "object", "required": ["request_id"], "additionalProperties": False,
                     "description": "At least one of thumbs and score.", "properties": {
    "request_id": {"type": "string", "minLength": 1, "maxLength": 200,
                   "description": "The x-request-id the gateway returned with the completion."},
    "thumbs": {"anyOf": [{"type": "string", "enum": ["up", "down", "1", "-1"]},
                         {"type": "integer", "enum": [1, -1]}]},
    "score": {"type": "number", "minimum": 0, "maximum": 1},
    "comment": {"type": "string", "maxLength": 10000}}}

_FEEDBACK = {"type": "object", "required": ["object", "id", "request_id", "route", "arm", "cohort"], "properties": {
    "object": {"type": "string", "enum": ["feedback"]}, "id": {"type": "string"},
    "request_id": {"type": "string"}, "route": {"type": ["string", "null"]}, "arm": {"type": ["string", "null"]},
    "cohort": {"type": ["string", "null"]}}}

_COMPLETION = {"type": "object", "required": ["id", "object", "choices", "model"], "properties": {
    "id": {"type": "string"}, "object": {"type": "string"}, "created": {"type": "integer"},
    "model": {"type": "string"}, "choices": {"type": "array"}, "usage": {"type": ["object", "null"]}}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_document() -> dict[str, Any]:
    err = {"$ref": "#/components/schemas/Error"}
    errors = {str(s): _json(err, d) for s, d in (
        (400, "Bad request body"), (401, "Missing or invalid gateway key"), (403, "Key not allowed on the route"),
        (404, "Unknown model (route)"), (413, "Request body too large"), (422, "Answer blocked by a guardrail"),
        (429, "Rate limit or token budget (Retry-After)"), (502, "Every upstream attempt failed"),
        (504, "Upstream timed out"))}
    return {
        "openapi": "3.1.0",
        "info": {"title": "tunegate gateway", "version": __version__,
                 "description": "OpenAI-compatible gateway that routes only to candidates a verdict released."},
        "paths": {
            "/v1/chat/completions": {"post": {
                "operationId": "createChatCompletion",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/ChatRequest"}}}},
                "responses": {"200": {"description": "A completion, or SSE chunks when stream is true",
                                      "content": {"application/json": {"schema": _COMPLETION},
                                                  "text/event-stream": {"schema": {"type": "string"}}}},
                              **errors}}},
            "/v1/models": {"get": {"operationId": "listModels", "responses": {
                "200": _json({"type": "object", "required": ["object", "data"], "properties": {
                    "object": {"type": "string"}, "data": {"type": "array"}}}, "Public route names"),
                "401": errors["401"]}}},
            "/v1/feedback": {"post": {
                "operationId": "createFeedback",
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/FeedbackRequest"}}}},
                "responses": {"200": _json(_FEEDBACK, "Stored, joined to the request's route, arm and cohort"),
                              "400": errors["400"], "401": errors["401"], "413": errors["413"],
                              "404": _json(err, "No logged request with that id (or not logged yet: retry)"),
                              "503": _json(err, "No store, or store unavailable")}}},
            "/v1/rollout": {"get": {"operationId": "rolloutOverview", "responses": {
                "200": _json({"type": "object"}, "Per route: arms, shares, traffic, history"),
                "401": errors["401"], "503": _json(err, "Store unavailable")}}},
            "/healthz": {"get": {"operationId": "health", "responses": {
                "200": _json({"type": "object"}, "Serving")}}},
            "/metrics": {"get": {"operationId": "metrics", "responses": {
                "200": {"description": "Prometheus text format", "content": {"text/plain": {
                    "schema": {"type": "string"}}}}}}},
        },
        "components": {"schemas": {"ChatRequest": _CHAT_REQUEST, "FeedbackRequest": _FEEDBACK_REQUEST,
                                   "Error": _ERROR}},
    }
