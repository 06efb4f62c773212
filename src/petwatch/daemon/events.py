"""Server-pushed events: worker threads publish, each socket subscriber gets its own queue."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Mapping
from typing import Any

from petwatch.protocol import Event, PublishEvent

SUBSCRIBER_BACKLOG = 512


class EventBus:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribers: set[asyncio.Queue[tuple[Event | None, Mapping[str, Any] | None]]] = set()
        self._lock = threading.Lock()
        self._closed = False
        # Typed per kind by the protocol's table (an overload per kind), so mypy checks each
        # call's data against its kind; _publish itself takes any.
        self.publish: PublishEvent = self._publish

    @property
    def listened(self) -> bool:
        """Whether any front end follows the events (what only they read need not be made)."""
        return bool(self._subscribers)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def _publish(self, kind: Event, data: Mapping[str, Any]) -> None:
        """Thread-safe; never blocks the publisher."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._fan_out, kind, data)
        except RuntimeError:  # the loop closed between the check and the call
            pass

    def _fan_out(self, kind: Event | None, data: Mapping[str, Any] | None) -> None:
        for queue in list(self._subscribers):
            if queue.full():  # a slow reader loses its oldest events, never the daemon's memory
                queue.get_nowait()
            queue.put_nowait((kind, data))

    def close(self) -> None:
        """End every subscriber's stream (the daemon is stopping); call on the loop."""
        self._closed = True
        self._fan_out(None, None)

    async def subscribe(self) -> AsyncIterator[tuple[Event, Mapping[str, Any]]]:
        if self._closed:
            return
        queue: asyncio.Queue[tuple[Event | None, Mapping[str, Any] | None]] = asyncio.Queue(SUBSCRIBER_BACKLOG)
        self._subscribers.add(queue)
        try:
            while True:
                kind, data = await queue.get()
                if kind is None or data is None:  # close(): the end of the stream
                    return
                yield kind, data
        finally:
            self._subscribers.discard(queue)
