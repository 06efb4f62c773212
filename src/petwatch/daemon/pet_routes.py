"""The pet-profile part of the socket API: ``petwatch pets ...`` and the TUI's pet screens.

The daemon's ``PetsFeature`` holds the profiles (a ``petwatch.pets.Pets`` in the state SQLite):
it matches each newly stored photo against them and publishes a ``pet`` event
(``{"name": ..., "new": [paths], "count": album size}``) when a photo joins an album.
``api.create_app`` includes its ``routes()``.

    GET    /pets                      every profile's summary
    POST   /pets                      {"name", "photos"}: create, or add examples
    GET    /pets/{name}?offset&limit  summary + the album, best first (limit 0 = all of it)
    GET    /pets/{name}/paths?top=N   the N best photos' paths (e.g. a comic's references)
    POST   /pets/{name}/marks         {"paths", "mark": "yes" | "not" | "forget"}
    DELETE /pets/{name}               remove the profile and its marks (photos untouched)
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from petwatch import endpoints
from petwatch.daemon.events import EventBus
from petwatch.daemon.features import Feature
from petwatch.daemon.routing import route
from petwatch.endpoints import PetAddRequest, PetAlbumQuery, PetMarkRequest, PetPathsQuery
from petwatch.pets import Pets
from petwatch.protocol import MAX_NAME, Event, PetAlbumReply, PetPathsReply, PetRemovedReply, PetReply
from petwatch.store import PhotoRow


def _name():
    return Path(..., min_length=1, max_length=MAX_NAME, description="The pet's name (any case)")


def router(pets: Pets) -> APIRouter:
    """The /pets routes over the daemon's profiles."""
    routes = APIRouter(tags=["pets"])

    @route(routes, endpoints.PETS)
    def pet_list() -> list[PetReply]:
        return pets.summaries()

    @route(routes, endpoints.PET_ADD)
    def pet_add(request: PetAddRequest) -> PetReply:
        return pets.add(request.name, request.photos)

    @route(routes, endpoints.PET)
    def pet_album(query: Annotated[PetAlbumQuery, Query()], name: str = _name()) -> PetAlbumReply:
        return pets.album(name, query.offset, query.limit or None)

    @route(routes, endpoints.PET_PATHS)
    def pet_paths(query: Annotated[PetPathsQuery, Query()], name: str = _name()) -> PetPathsReply:
        return {"name": name, "paths": pets.top_paths(name, query.top)}

    @route(routes, endpoints.PET_MARK)
    def pet_mark(request: PetMarkRequest, name: str = _name()) -> PetReply:
        return pets.mark(name, request.paths, request.mark)

    @route(routes, endpoints.PET_REMOVE)
    def pet_remove(name: str = _name()) -> PetRemovedReply:
        return pets.remove(name)

    return routes


class PetsFeature(Feature):
    """Pet profiles in the daemon: a stored photo of a pet joins its album, announced."""

    def __init__(self, pets: Pets, bus: EventBus) -> None:
        self.pets, self.bus = pets, bus

    def routes(self) -> APIRouter:
        return router(self.pets)

    def stored(self, rows: list[PhotoRow]) -> None:
        for event in self.pets.on_stored(rows):  # a new photo of a pet joins its album
            self.bus.publish(Event.PET, event)

    def upgraded(self) -> None:
        self.pets.drop_cache()  # vectors and thresholds of the older index are stale now

    def close(self) -> None:
        self.pets.close()
