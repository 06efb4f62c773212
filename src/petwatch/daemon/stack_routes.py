"""The stacks part of the socket API: ``petwatch stacks``, the TUI opening a stack.

A stack is the bursts, edits and copies of one moment (``petwatch.stacks``); the library keeps
them current as photos arrive and leave, daemon or not (``petwatch search`` without a daemon
shows a burst once too), so ``StacksFeature`` only serves them. Read-only: nothing here
touches a photo.

    GET  /stacks          every stack, largest first: [{"id", "kind", "cover", "members"}]
    GET  /stacks/{id}     one stack, its cover first
"""

from __future__ import annotations

from fastapi import APIRouter, Path

from petwatch import endpoints
from petwatch.daemon.features import Feature
from petwatch.daemon.routing import route
from petwatch.library import Library
from petwatch.protocol import StackReply


def router(library: Library) -> APIRouter:
    routes = APIRouter(tags=["stacks"])

    @route(routes, endpoints.STACKS)
    def stacks() -> list[StackReply]:
        return library.stacks()

    @route(routes, endpoints.STACK)
    def stack(stack_id: str = Path(..., min_length=1, max_length=64, description="A stack's id")) -> StackReply:
        return library.stack(stack_id)

    return routes


class StacksFeature(Feature):
    """Stacks in the daemon: their routes; what they hear, the Library tells them itself."""

    def __init__(self, library: Library) -> None:
        self.library = library

    def routes(self) -> APIRouter:
        return router(self.library)
