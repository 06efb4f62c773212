"""The stacks part of the socket API: ``petwatch stacks``, the TUI opening a stack.

A stack is the bursts, edits and copies of one moment (``petwatch.stacks``); the library keeps
them current as photos arrive and leave. Read-only: nothing here touches a photo.

    GET  /stacks          every stack, largest first: [{"id", "kind", "cover", "members"}]
    GET  /stacks/{id}     one stack, its cover first
"""

from __future__ import annotations

from fastapi import APIRouter, Path

from petwatch.library import Library
from petwatch.protocol import StackReply


def router(library: Library) -> APIRouter:
    # Replies typed (petwatch.protocol), sent as made (response_model), not validated again.
    routes = APIRouter(prefix="/stacks", tags=["stacks"])

    @routes.get("", response_model=list[dict])
    def stacks() -> list[StackReply]:
        return library.stacks()

    @routes.get("/{stack_id}", response_model=dict)
    def stack(stack_id: str = Path(..., min_length=1, max_length=64, description="A stack's id")) -> StackReply:
        return library.stack(stack_id)

    return routes
