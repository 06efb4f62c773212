"""The "pets found" part of the socket API: ``petwatch pets discover``, the TUI's Pets found.

The daemon's ``DiscoveryFeature`` holds the groups (a ``petwatch.discovery.Discovery``): a
stored pet photo joins its group, a walk that changed the library clusters again; it publishes
a ``group`` event (``{"id", "size", "found"}``: found = a new group, else it grew).

    GET    /groups                every group that recurs, biggest first (?all=1: dismissed, named)
    GET    /groups/why            why no group shows: pet photos, close pairs, the rule
    GET    /groups/{id}           one group, its photos best first
    POST   /groups/{id}/name      {"name"}: a pet profile from the group's photos
    POST   /groups/{id}/dismiss   not my pet: hidden for good
    POST   /groups/{id}/merge     {"other"}: the same pet, one group
    POST   /groups/{id}/remove    {"paths"}: not this pet, out for good
    POST   /groups/refresh        cluster again now (also done after backfills, by itself)
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from petwatch import endpoints
from petwatch.daemon.features import Feature
from petwatch.daemon.routing import route
from petwatch.discovery import Discovery
from petwatch.endpoints import GroupsQuery, MergeRequest, NameRequest, RemoveRequest
from petwatch.index import IndexReport
from petwatch.pets import Pets
from petwatch.protocol import MAX_PHOTOS, DiscoveryWhyReply, GroupReply, PetReply
from petwatch.store import PhotoRow


def _id():
    return Path(..., ge=1, description="The group's id (petwatch pets discover)")


def router(discovery: Discovery, pets: Pets) -> APIRouter:
    routes = APIRouter(tags=["pets"])

    @route(routes, endpoints.GROUPS)
    def group_list(query: Annotated[GroupsQuery, Query()]) -> list[GroupReply]:
        return discovery.groups(include_all=query.all)

    @route(routes, endpoints.GROUPS_WHY)
    def group_why() -> DiscoveryWhyReply:
        return discovery.explain()

    @route(routes, endpoints.GROUPS_REFRESH)
    def group_refresh() -> list[GroupReply]:
        discovery.refresh()
        return discovery.groups()

    @route(routes, endpoints.GROUP)
    def group_show(gid: int = _id()) -> GroupReply:
        return discovery.group(gid).summary()

    @route(routes, endpoints.GROUP_NAME)
    def group_name(request: NameRequest, gid: int = _id()) -> PetReply:
        group = discovery.group(gid).summary()
        pet = pets.add(request.name, group["paths"][:MAX_PHOTOS])
        discovery.named(gid, pet["name"])
        return pet

    @route(routes, endpoints.GROUP_DISMISS)
    def group_dismiss(gid: int = _id()) -> GroupReply:
        return discovery.dismiss(gid)

    @route(routes, endpoints.GROUP_MERGE)
    def group_merge(request: MergeRequest, gid: int = _id()) -> GroupReply:
        return discovery.merge(gid, request.other)

    @route(routes, endpoints.GROUP_REMOVE)
    def group_remove(request: RemoveRequest, gid: int = _id()) -> GroupReply:
        return discovery.move_out(gid, request.paths)

    return routes


class DiscoveryFeature(Feature):
    """Pets found for you in the daemon: groups kept current as photos arrive and walks end.
    Naming a group makes a pet profile, so it knows the profiles too."""

    def __init__(self, discovery: Discovery, pets: Pets) -> None:
        self.discovery, self.pets = discovery, pets

    def routes(self) -> APIRouter:
        return router(self.discovery, self.pets)

    def stored(self, rows: list[PhotoRow]) -> None:
        self.discovery.on_stored(rows)  # a new pet photo joins its group of pets found

    def walked(self, report: IndexReport) -> None:
        if report.indexed or report.reused or report.removed or self.discovery.last_refresh_s is None:
            self.discovery.refresh_soon()  # on its own thread: indexing goes on

    def upgraded(self) -> None:
        self.discovery.drop_cache()  # the older index's vectors: read again, cluster again

    def close(self) -> None:
        self.discovery.close()  # waits for a clustering under way: it reads the library
