"""The comics part of the socket API: ``petwatch comic ...`` and the TUI's comic screens.

The daemon's ``ComicsFeature`` holds the jobs (a ``petwatch.daemon.comic_jobs.ComicJobs``, with
its own worker thread); every change of a job is pushed as a ``comic`` event whose data is the
job record. ``api.create_app`` includes its ``routes()``. Errors are PetwatchError, which the
app turns into ``{"error": ...}``.

    POST /comics                  {"photos", "prompt", "size"?, "quality"?, "parent"?}: queue one
    POST /comics/estimate         {"n" | "photos", "size"?, "quality"?, "parent"?}: cost, budget
    GET  /comics                  every job record, newest first
    GET  /comics/{id}             the record plus ``chain``, the refinements ending at it
    POST /comics/{id}/cancel      cancel a queued or running job
    POST /comics/{id}/refine      {"prompt", "photos"?, "size"?, "quality"?}: revise the comic
    POST /comics/{id}/retry       {"prompt"?}: a finished job again, the prompt maybe replaced
    GET  /comics/{id}/image       the comic PNG
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import Response

from petwatch import endpoints
from petwatch.daemon.comic_jobs import ComicJobs
from petwatch.daemon.features import Feature
from petwatch.daemon.routing import route
from petwatch.endpoints import ComicRequest, EstimateRequest, RefineRequest, RetryRequest
from petwatch.protocol import JOB_ID, ComicEstimateReply, ComicJobReply, ComicShowReply


# --- the routes ------------------------------------------------------------------------------
def router(jobs: ComicJobs) -> APIRouter:
    """``/comics``: errors are PetwatchError, which the app turns into {"error": ...}."""
    routes = APIRouter(tags=["comics"])
    JobId = PathParam(..., pattern=JOB_ID, description="A comic job id")  # noqa: N806

    @route(routes, endpoints.COMIC_SUBMIT)
    def submit(request: ComicRequest) -> ComicJobReply:
        return jobs.submit(**request.model_dump())

    @route(routes, endpoints.COMIC_ESTIMATE)
    def estimate(request: EstimateRequest) -> ComicEstimateReply:
        return jobs.estimate(**request.model_dump())

    @route(routes, endpoints.COMICS)
    def list_jobs() -> list[ComicJobReply]:
        return jobs.records()

    @route(routes, endpoints.COMIC)
    def show(job_id: str = JobId) -> ComicShowReply:
        return jobs.show(job_id)

    @route(routes, endpoints.COMIC_CANCEL)
    def cancel(job_id: str = JobId) -> ComicJobReply:
        return jobs.cancel(job_id)

    @route(routes, endpoints.COMIC_REFINE)
    def refine(request: RefineRequest, job_id: str = JobId) -> ComicJobReply:
        return jobs.submit(**request.model_dump(), parent=job_id)

    @route(routes, endpoints.COMIC_RETRY)
    def retry(request: RetryRequest | None = None, job_id: str = JobId) -> ComicJobReply:
        return jobs.retry(job_id, request.prompt if request else None)

    @route(routes, endpoints.COMIC_IMAGE)
    def image(job_id: str = JobId) -> Response:
        return Response(jobs.image(job_id), media_type="image/png", headers={"Cache-Control": "no-cache"})

    return routes


class ComicsFeature(Feature):
    """Comics in the daemon: the jobs' worker runs while the daemon does."""

    def __init__(self, jobs: ComicJobs) -> None:
        self.jobs = jobs

    def routes(self) -> APIRouter:
        return router(self.jobs)

    def start(self) -> None:
        self.jobs.start()

    def stopping(self) -> None:
        self.jobs.stop()  # a request in flight is abandoned: the next start says so
