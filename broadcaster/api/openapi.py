"""The OpenAPI 3.1 document, generated from the route declarations and their pydantic models."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

import broadcaster
from broadcaster.api.framework import API_PREFIX, Route

_STATUS_TEXT = {
    400: "The body is not valid JSON.",
    401: "Not signed in: missing, unknown, expired or revoked token.",
    403: "Your role, or the approval policy, does not allow this (the rule is named).",
    404: "No such resource.",
    409: "Not possible in the current state (the state is named).",
    413: "The body is too large.",
    415: "The body is not application/json.",
    422: "Invalid input; `errors` names each field.",
    429: "Too many requests; wait as Retry-After says.",
    502: "The platform refused or failed the request; its error is named.",
    503: "Busy; send it again after Retry-After.",
}
_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem document.",
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                "required": ["field", "message"],
            },
        },
    },
    "required": ["title", "status"],
}


def build_openapi(routes: list[Route]) -> dict[str, Any]:
    models = sorted(
        {model for route in routes for model in (route.body, route.response) if model is not None},
        key=lambda model: model.__name__,
    )
    refs, definitions = _schemas(models)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(API_PREFIX + route.path, {})[route.method.lower()] = _operation(
            route, refs
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Crisis Broadcaster API",
            "version": broadcaster.__version__,
            "description": "Emergency alerts through chain-of-command approval.",
        },
        "paths": paths,
        "components": {
            "schemas": {**definitions, "Problem": _PROBLEM_SCHEMA},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _schemas(models: list[type[BaseModel]]) -> tuple[dict[type[BaseModel], Any], dict[str, Any]]:
    if not models:
        return {}, {}
    keyed, top = models_json_schema(
        [(model, "validation") for model in models],
        ref_template="#/components/schemas/{model}",
    )
    refs = {model: keyed[(model, "validation")] for model in models}
    return refs, top.get("$defs", {})


def _operation(route: Route, refs: dict[type[BaseModel], Any]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": route.summary,
        "operationId": route.handler.__name__,
        "tags": [route.tag],
        "parameters": [
            {
                "name": name,
                "in": "path",
                "required": True,
                # Ids are numbers; other path parts are names (e.g. a channel target's).
                "schema": {"type": "integer" if name.endswith("_id") else "string"},
            }
            for name in re.findall(r"{(\w+)}", route.path)
        ]
        + _query_parameters(route),
    }
    success: dict[str, Any] = {"description": "Done."}
    if route.response is not None:
        success["content"] = {"application/json": {"schema": refs[route.response]}}
    operation["responses"] = {str(route.status): success}
    errors = set(route.errors) | ({400, 413, 415, 422} if route.body else set())
    if route.query is not None:
        errors.add(422)
    if route.public:
        operation["security"] = []
    else:
        operation["security"] = [{"bearer": []}]
        operation["description"] = f"Needs the permission `{route.permission}`."
        errors |= {401, 403}
    for status in sorted(errors):
        operation["responses"][str(status)] = {
            "description": _STATUS_TEXT[status],
            "content": {"application/problem+json": {"schema": _PROBLEM}},
        }
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[route.body]}},
        }
    return operation


def _query_parameters(route: Route) -> list[dict[str, Any]]:
    if route.query is None:
        return []
    schema = route.query.model_json_schema()
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": property_schema}
        for name, property_schema in schema.get("properties", {}).items()
    ]
