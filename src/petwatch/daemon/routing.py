"""Handlers registered against the endpoint table (``petwatch.endpoints``): its method and path,
and the model its request (a JSON body, a GET's query) is validated with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, get_args, get_origin, get_type_hints

from fastapi import APIRouter, FastAPI, params
from pydantic import BaseModel

from petwatch.endpoints import Endpoint, Query


def route(routes: APIRouter | FastAPI, endpoint: Endpoint[Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a handler to serve ``endpoint``; a handler of an endpoint with a request model
    takes that model (FastAPI validates the request with it: its limits, its messages): a body
    as it is, a GET's query as ``Annotated[Model, Query()]``.

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
        request = endpoint.request
        if request is not None and not _takes(handler, request):
            how = f"Annotated[{request.__name__}, Query()]" if issubclass(request, Query) else f"a {request.__name__}"
            raise TypeError(f"{handler.__name__} serves {endpoint.path}: it must take {how}")
        return register(handler)

    return checked


def _takes(handler: Callable[..., Any], request: type[BaseModel]) -> bool:
    """Whether a parameter of the handler is the request model: a body as it is, a query marked
    Query() (without it, FastAPI would read the model from the body)."""
    hints = get_type_hints(handler, include_extras=True).values()
    if not issubclass(request, Query):
        return any(request in (hint, *get_args(hint)) for hint in hints)
    return any(
        get_origin(hint) is Annotated
        and get_args(hint)[0] is request
        and any(isinstance(extra, params.Query) for extra in get_args(hint)[1:])
        for hint in hints
    )
