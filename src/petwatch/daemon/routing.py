"""Handlers registered against the endpoint table (``petwatch.endpoints``): its method and path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_origin

from fastapi import APIRouter, FastAPI

from petwatch.endpoints import Endpoint


def route(routes: APIRouter | FastAPI, endpoint: Endpoint[Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a handler to serve ``endpoint``.

    The JSON replies are typed (petwatch.protocol) but sent as they are made: response_model
    dict or list[dict] says so, instead of FastAPI validating each against its TypedDict. An
    image or a stream is the handler's own Response.
    """
    if endpoint.reply in (bytes, None):
        model: Any = None
    else:
        model = list[dict] if get_origin(endpoint.reply) is list else dict
    return routes.api_route(endpoint.path, methods=[endpoint.method], response_model=model)
