"""Handlers registered against the endpoint table (``petwatch.endpoints``): its method and path,
and the model its JSON body is validated with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, get_args, get_origin, get_type_hints

from fastapi import APIRouter, FastAPI

from petwatch.endpoints import Endpoint


def route(routes: APIRouter | FastAPI, endpoint: Endpoint[Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a handler to serve ``endpoint``; a handler of an endpoint with a request model
    takes that model (FastAPI validates the body with it: its limits, its messages).

    The JSON replies are typed (petwatch.protocol) but sent as they are made: response_model
    dict or list[dict] says so, instead of FastAPI validating each against its TypedDict. An
    image or a stream is the handler's own Response.
    """
    if endpoint.reply in (bytes, None):
        model: Any = None
    else:
        model = list[dict] if get_origin(endpoint.reply) is list else dict
    register = routes.api_route(endpoint.path, methods=[endpoint.method], response_model=model)

    def checked(handler: Callable[..., Any]) -> Callable[..., Any]:
        body = endpoint.request
        if body is not None and not any(body in (t, *get_args(t)) for t in get_type_hints(handler).values()):
            raise TypeError(f"{handler.__name__} serves {endpoint.path}: it must take a {body.__name__}")
        return register(handler)

    return checked
