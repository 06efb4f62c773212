"""Argument parsing and printing; the work is done by the daemon (or, without one, the library).

Exit codes: 0 ok, 2 usage error, 1 failure (one line on stderr saying what to do).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import queue
import re
import sys
import threading
import time
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from petwatch import __version__, locations
from petwatch import settings as settings_module
from petwatch.client import STARTING, DaemonClient, DaemonStarting, DaemonUnavailable, daemon_present
from petwatch.errors import PetwatchError
from petwatch.format import comic_cost, no_pets_found
from petwatch.format import size as human_bytes
from petwatch.progress import ProgressLine
from petwatch.protocol import (
    COMIC_FINAL_STATES,
    MAX_REFERENCES,
    MAX_TOP_K,
    PET_SPECIES,
    SPECIES,
    ComicEstimateReply,
    ComicJobReply,
    ComicShowReply,
    Event,
    FolderReply,
    GroupReply,
    PetAlbumReply,
    PetHitReply,
    PetReply,
    ReportReply,
    SearchReply,
    StackReply,
    UpgradeProgress,
)

if TYPE_CHECKING:
    from petwatch.endpoints import SearchRequest


def _print_json(data) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    # A file name that is not valid UTF-8 is a str with lone surrogates (os.fsdecode); written
    # as is, it put raw non-UTF-8 bytes into the JSON, which JSON readers (jq, json.loads on
    # the bytes) refuse. Escaped as \udcXX it stays valid JSON, and json.loads gives back the
    # same str (os.fsencode: the same bytes). Other names stay readable.
    text = "".join(f"\\u{ord(c):04x}" if "\udc80" <= c <= "\udcff" else c for c in text)
    sys.stdout.write(text + "\n")


IN_PROCESS_NOTE = "With the daemon running this asks it; without one it opens the index itself."


STARTING_WAIT_SECONDS = 120.0  # a first start (cold caches, a big library) can take a minute


class _WaitingClient(DaemonClient):
    """The CLI's client: a daemon that is starting is waited for, up to STARTING_WAIT_SECONDS
    (it owns the database, so working in-process beside it is not an option), and a config
    file problem the daemon reports (on each reply) is told once. No request is made for
    these: the command's own request finds them."""

    def __init__(self) -> None:
        super().__init__()
        self._deadline: float | None = None
        self._told: str | None = None

    def request(self, method: str, url: str, **kwargs: typing.Any):
        while True:
            try:
                response = super().request(method, url, **kwargs)
                break
            except DaemonStarting:
                self._wait_for_start()
        problem = self.config_problem
        if problem and problem != self._told:  # the daemon runs on, but the user's edit did not (all) take
            self._told = problem
            print(f"petwatch: note: {problem}", file=sys.stderr)
        return response

    def _wait_for_start(self) -> None:
        if self._deadline is None:
            print(f"petwatch: the daemon is {STARTING} waiting for it", file=sys.stderr)
            self._deadline = time.monotonic() + STARTING_WAIT_SECONDS
        elif time.monotonic() > self._deadline:
            raise PetwatchError(
                f"the daemon is still starting after {STARTING_WAIT_SECONDS:.0f}s: "
                f"see its log ({locations.log_file()}, or journalctl --user -u "
                "petwatch) and `petwatch status`"
            ) from None
        time.sleep(0.25)


def _daemon() -> DaemonClient | None:
    """A client when the daemon runs or is starting (then its first request waits), else None
    (the caller works in-process)."""
    client = _WaitingClient()
    if daemon_present(client.socket):
        return client
    client.close()
    return None


def _require_daemon() -> DaemonClient:
    client = _daemon()
    if client is None:
        raise DaemonUnavailable(locations.socket_path())
    return client


def _open_library():
    from petwatch.library import Library  # torch + Milvus: only on the in-process path

    logging.getLogger("pymilvus").setLevel(logging.ERROR)
    return Library(settings_module.load(), lazy_model=True)  # loaded only if something needs embedding


# --- commands ----------------------------------------------------------------------------
def cmd_index(args) -> int:
    folders = [os.path.abspath(f) for f in args.folders]
    for folder in folders:
        if not os.path.isdir(folder):
            raise PetwatchError(f"not a directory: {folder}")
    progress = ProgressLine("indexing")
    client = _daemon()
    if client is not None:
        follower = threading.Thread(target=_follow_progress, args=(progress,), daemon=True)
        follower.start()
        report = client.index(folders)
    else:
        library = _open_library()
        try:
            indexed = library.reconcile(folders, progress.update)
            if library.upgrade is not None:  # the daemon does this in the background
                progress.finish()
                print(_upgrade_note(library.upgrade_status()), file=sys.stderr)
                progress = ProgressLine("upgrading")
                indexed.merge(library.run_upgrade(progress.update))
            report = indexed.to_dict()
        finally:
            library.close()
    progress.finish()
    if args.json:
        _print_json(report)
    else:
        _print_report(report)
    return 0


def _follow_progress(progress: ProgressLine) -> None:
    with DaemonClient() as follower:
        while True:
            try:
                for kind, data in follower.events():
                    if kind == Event.PROGRESS and data.get("total"):
                        progress.update(data["done"], data["total"], data.get("current", ""))
                return
            except DaemonStarting:
                time.sleep(0.25)  # the index request waits for it too
            except PetwatchError:
                return


def _print_report(report: ReportReply) -> None:
    print(
        f"indexed {report['indexed']}, reused {report['reused']} (renamed or copied), "
        f"unchanged {report['unchanged']}, removed {report['removed']}, "
        f"skipped {len(report['skipped'])}, failed {len(report['failed'])} "
        f"in {report['seconds']:.1f}s"
    )
    for label in ("skipped", "failed"):
        for path, reason in sorted(report[label].items()):
            print(f"  {label}: {path}: {reason}")
    for folder in report.get("offline", []):
        print(f"  offline (missing, photos kept): {folder}")


# What each embedding recipe (embed.*_RECIPE, named in UpgradeProgress) is called in a note.
_RECIPE_WORDS = {"petfocus1": "pet-focused vectors", "petfocus1_white1": "whitened pet-focused vectors"}


def _upgrade_note(upgrade: UpgradeProgress | None, partial: bool = False) -> str:
    if upgrade is None:
        return ""
    done = f"{upgrade['done']:,} of {upgrade['total']:,} photos"
    words = _RECIPE_WORDS.get(upgrade["to"], f"{upgrade['to']} vectors")
    if partial:
        return (
            f"note: the index is being upgraded to {words} ({done} so far), and only "
            "those carry species: these results are from them alone"
        )
    return (
        f"note: the index is being upgraded to {words} ({done} so far); until it "
        "finishes, searches use the previous vectors of every photo"
    )


def _species(args) -> list[str] | None:
    chosen = set(args.species or ())
    if args.pets_only:
        chosen.update(PET_SPECIES)
    return sorted(chosen) or None


def _search_request(args) -> SearchRequest:
    """The request the flags ask, daemon or not (search.query_from reads it)."""
    from petwatch.endpoints import SearchRequest

    if args.image and not os.path.exists(args.image):
        raise PetwatchError(f"query image not found: {args.image}")
    if not (args.image or args.text or args.pet or args.taken or args.near):
        raise PetwatchError('give a photo, words (--text "rex at the beach 2023"), or --pet/--taken/--near')
    # Built as is, not validated: a path here may be any file name, a non-UTF-8 one included
    # (the client encodes it for the socket; the flags were checked by argparse).
    return SearchRequest.model_construct(
        image=os.path.abspath(args.image) if args.image else None,
        photo=None,
        offset=0,
        text=args.text,
        pet=args.pet,
        taken=args.taken,
        near=args.near,
        top_k=args.top_k,
        min_score=args.min_score,
        species=_species(args),
        stacks=args.stacks,
        expand=args.expand,
    )


def cmd_search(args) -> int:
    request = _search_request(args)
    client = _daemon()
    reply: SearchReply
    if client is not None:
        reply = client.search(**request.model_dump(exclude_unset=True, exclude_none=True))
    else:
        started = time.monotonic()
        reply = _search_in_process(request)
        _suggest_the_daemon(time.monotonic() - started, args.json)
    hits = reply["hits"]
    if reply["upgrade"]:
        print(_upgrade_note(reply["upgrade"], reply["partial"]), file=sys.stderr)
    if args.explain:
        for reading in reply["readings"]:
            print(
                f"{reading['words']!r}: {reading['kind']}, {reading['meaning']}", file=sys.stderr if args.json else None
            )
    if args.json:
        _print_json(hits)
        return 0
    if not hits:
        print("no matches (index some folders with `petwatch index FOLDER`, or lower --min-score)")
    for rank, hit in enumerate(hits, 1):
        stack = hit["stack"]
        more = f"  (+{stack['size'] - 1} in stack {stack['id']})" if stack and args.stacks else ""
        print(f"{rank:4d}  {hit['score']:.3f}  {hit['path']}{more}")
    return 0


def _search_in_process(request: SearchRequest) -> SearchReply:
    """The daemon's search without a daemon: the same Library and search code, the pets read
    from the state DB."""
    from petwatch.pets import Pets
    from petwatch.search import query_from

    library = _open_library()
    try:
        pets = Pets(library, locations.state_db())
        try:
            query = query_from(request, pets=pets.names(), places_known=library.places(), album=pets.album_paths)
            return library.search(query, [str(f) for f in library.settings.folders])
        finally:
            pets.close()
    finally:
        library.close()


def cmd_stacks(args) -> int:
    """Bursts, edits and copies of one moment. A list to act on with your own tools:
    petwatch never deletes or moves a photo."""
    client = _daemon()
    stacks: list[StackReply]
    if client is not None:
        stacks = [client.stack(args.id)] if args.id else client.stacks()
    else:
        library = _open_library()
        try:
            stacks = [library.stack(args.id)] if args.id else library.stacks()
        finally:
            library.close()
    if args.json:
        _print_json(stacks[0] if args.id else stacks)
        return 0
    if not stacks:
        print("no stacks: no bursts or copies among the indexed photos")
    for stack in stacks:
        print(f"{stack['id']}  {stack['kind']:6s}  {len(stack['members']):3d} photos  {stack['cover']}")
        if args.id:
            for path in stack["members"][1:]:
                print(f"{'':>34}{path}")
    return 0


def _suggest_the_daemon(seconds: float, json_output: bool) -> None:
    """Once per user, on a terminal only (not for scripts: --json or piped): why that search was
    slow, and how to make the next ones fast."""
    marker = locations.daemon_hint_shown()
    if json_output or not (sys.stdout.isatty() and sys.stderr.isatty()) or marker.exists():
        return
    print(
        f"petwatch: that took {seconds:.1f}s because no daemon runs, so the model and the index were "
        "loaded for this one search; start the daemon (`petwatch daemon`, or `petwatch service "
        "install` to keep it running) and searches answer in about half a second",
        file=sys.stderr,
    )
    try:
        locations.ensure_private_dir(marker.parent)
        marker.touch()
    except OSError:
        pass  # said again next time: no harm


def cmd_stats(args) -> int:
    client = _daemon()
    if client is not None:
        stats = client.stats()
    else:
        library = _open_library()
        try:
            stats = library.stats()
        finally:
            library.close()
    if args.json:
        _print_json(stats)
    else:
        print(f"photos indexed  {stats['photos']}   showing a dog {stats['dogs']}, a cat {stats['cats']}")
        print(f"model           {stats['model']} ({stats['dim']}-d, cosine, {stats['recipe']} vectors)")
        if stats.get("upgrade"):
            print(f"upgrade         {_upgrade_note(stats['upgrade'])}")
        print(f"database        {stats['db']} ({human_bytes(stats['db_bytes'])})")
        print(f"failures        {stats['failures']}")
    return 0


def cmd_status(args) -> int:
    client = DaemonClient()
    try:
        status = client.status()
    except DaemonStarting as starting:  # said at once, not waited for
        if args.json:
            _print_json({"state": "starting", "pid": starting.pid, "uptime_s": starting.uptime_s})
        else:
            print(f"state     {STARTING}  (pid {starting.pid}, up {starting.uptime_s:.0f}s)")
        return 0
    failures = client.failures()
    if args.json:
        _print_json({**status, "failures": failures})
        return 0
    print(f"state     {status['state']}  (pid {status['pid']}, up {status['uptime_s']:.0f}s)")
    print(f"indexed   {status['indexed']}   queued {status['queued']}   failed {status['failed']}")
    print(f"model     {status['model']} ({status['dim']}-d) on {status.get('engine', '?')}")
    if "dogs" in status:
        print(f"pets      {status['dogs']} photos show a dog, {status['cats']} a cat")
    if status.get("upgrade"):
        print(f"upgrade   {_upgrade_note(status['upgrade'])}")
    if status.get("write_error"):  # disk full, server gone: what to do is in the message
        print(f"error     {status['write_error']}")
    if status.get("config_problem"):
        print(f"config    {status['config_problem']}")
    progress = status.get("progress")
    if progress and progress.get("total"):
        print(f"progress  {progress['done']}/{progress['total']} at {progress['rate']}/s, ETA {progress['eta_s']}s")
    for folder in status["folders"]:
        print(f"folder    {folder['path']}  [{folder['mode']}]  {folder['photos']} photos")
    for failure in failures[:20]:
        print(f"failed    {failure['path']}: {failure['reason']}")
    if len(failures) > 20:
        print(f"          ... {len(failures) - 20} more (petwatch status --json)")
    return 0


def cmd_folders(args) -> int:
    client = _daemon()
    if args.action == "list":
        if client is not None:
            folders = client.folders()
        else:
            folders = [
                {"path": str(f), "mode": "daemon not running", "online": f.is_dir(), "photos": None}
                for f in settings_module.load().folders
            ]
    else:
        path = os.path.abspath(os.path.expanduser(args.path))
        if client is not None:
            folders = client.add_folder(path) if args.action == "add" else client.remove_folder(path)
        else:
            folders = _edit_folders_offline(args.action, path)
    if args.json:
        _print_json(folders)
    else:
        if not folders:
            print("no folders watched: add one with `petwatch folders add PATH`")
        for folder in folders:
            count = "" if folder.get("photos") is None else f"  {folder['photos']} photos"
            print(f"{folder['path']}  [{folder['mode']}]{count}")
    return 0


def _edit_folders_offline(action: str, path: str) -> list[FolderReply]:
    current = [str(f) for f in settings_module.load().folders]
    if action == "add":
        if not os.path.isdir(path):
            raise PetwatchError(f"{path} is not a directory")
        if path not in current:
            current.append(path)
    else:
        if path not in current:
            raise PetwatchError(f"{path} is not a watched folder (see `petwatch folders list`)")
        current.remove(path)
    settings_module.update_config_file(folders=current)
    print("saved; the daemon is not running: start it with `petwatch daemon` to index", file=sys.stderr)
    return [{"path": f, "mode": "daemon not running", "online": os.path.isdir(f), "photos": None} for f in current]


def cmd_rescan(args) -> int:
    _require_daemon().rescan()
    print("rescan queued; follow it with `petwatch status`")
    return 0


def cmd_reindex(args) -> int:
    if _daemon() is not None:
        raise PetwatchError("stop the daemon first (it owns the index), then run `petwatch reindex`")
    from petwatch.library import Library

    settings = settings_module.load()
    library = Library.reset(settings)
    progress = ProgressLine("re-indexing")
    try:
        report = library.reconcile([str(f) for f in settings.folders], progress.update)
    finally:
        library.close()
    progress.finish()
    _print_report(report.to_dict())
    return 0


def cmd_config(args) -> int:
    from petwatch.engine import engine_summary  # numpy: only for this command

    settings = settings_module.load()
    values = settings.model_dump(mode="json")
    for secret in ("openai_api_key", "milvus_token"):
        if values.get(secret):
            values[secret] = "***"
    if args.json:
        engine = engine_summary(settings.engine, settings.device, settings.precision)
        _print_json(
            {"settings": values, "paths": {k: str(v) for k, v in locations.all_paths().items()}, "engine": engine}
        )
        return 0
    print("# paths")
    for name, path in locations.all_paths().items():
        print(f"{name:<16} {path}")
    # What `engine = auto` picks on this machine, said without loading the model.
    print(f"\n# this machine\nengine           {engine_summary(settings.engine, settings.device, settings.precision)}")
    print(f"\n# settings (PETWATCH_<NAME> env > {locations.config_file()} > default)")
    for name, description in settings_module.describe():
        print(f"{name} = {json.dumps(values[name])}")
        print(f"    {description}")
    return 0


# --- comics (the daemon owns the jobs) -----------------------------------------------------
COMIC_POLL_SECONDS = 2.0  # a status read between events, so a missed event cannot stall us


def _comic_choices(setting: str) -> tuple[str, ...]:
    return typing.get_args(settings_module.Settings.model_fields[setting].annotation)


def cmd_comic(args) -> int:
    client = _require_daemon()
    photos = [os.path.abspath(os.path.expanduser(p)) for p in args.photo or []]
    if args.pet and args.text:  # the pet's photos the words describe best
        found = client.search(text=args.text, pet=args.pet, top_k=args.pet_photos)["hits"]
        photos += [hit["path"] for hit in found if hit["path"] not in photos]
    elif args.pet:  # the best photos of the pet's album (petwatch pets show NAME)
        photos += [p for p in client.pet_paths(args.pet, args.pet_photos) if p not in photos]
    elif args.text:
        raise PetwatchError("--text picks among a pet's photos: give --pet NAME too")
    if not photos and not args.refine:
        raise PetwatchError(f"select your pet: give at least one --photo PATH (up to {MAX_REFERENCES})")
    estimate = client.comic_estimate(photos=photos or None, size=args.size, quality=args.quality, parent=args.refine)
    refining = f" (the comic {args.refine} first, then the photos)" if args.refine else ""
    _ask_to_spend(estimate, refining, args.yes)
    if args.refine:
        job = client.comic_refine(args.refine, args.prompt, photos, size=args.size, quality=args.quality)
    else:
        job = client.comic_submit(photos, args.prompt, size=args.size, quality=args.quality)
    return _comic_outcome(client, job, args)


def _ask_to_spend(estimate: ComicEstimateReply, refining: str, yes: bool) -> None:
    """No key: said before anyone is asked to spend. Else the cost, and a confirmation (over
    the daily cap the daemon refuses the job itself and says why)."""
    if estimate.get("no_key"):
        raise PetwatchError(str(estimate["no_key"]))
    _print_comic_estimate(estimate, refining)
    if estimate["within_budget"]:
        _confirm_spending(yes)


def _print_comic_estimate(estimate: ComicEstimateReply, refining: str = "") -> None:
    print(
        f"comic: {estimate['references']} reference image(s){refining}, {estimate['size']}, "
        f"{estimate['quality']} quality, {estimate['model']}",
        file=sys.stderr,
    )
    line = (
        f"estimated cost: about ${estimate['usd']:.2f} (image ${estimate['output_usd']:.3f} "
        f"+ inputs ${estimate['input_usd']:.3f}); today ${estimate['spent_today_usd']:.2f} "
        f"spent or queued of the ${estimate['budget_usd']:.2f} daily cap"
    )
    print(line, file=sys.stderr)
    if not estimate["within_budget"]:
        print("this comic would go over today's cap (comic_daily_budget_usd)", file=sys.stderr)


def _confirm_spending(yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise PetwatchError("not sent: a comic costs money; confirm with --yes (there is no terminal to ask on)")
    print("send it? [y/N] ", end="", file=sys.stderr, flush=True)
    if sys.stdin.readline().strip().lower() not in ("y", "yes"):
        raise PetwatchError("not sent")


def _comic_outcome(client: DaemonClient, job: ComicJobReply, args) -> int:
    """After submitting: follow the job unless --no-wait, print the PNG path or the failure."""
    print(f"queued comic {job['id']}", file=sys.stderr)
    if args.no_wait:
        if args.json:
            _print_json(job)
        else:
            print(job["id"])
            print(f"follow it with `petwatch comics show {job['id']}`", file=sys.stderr)
        return 0
    try:
        job = _follow_comic(client, job["id"])
    except KeyboardInterrupt:
        print(
            f"\nstopped waiting; comic {job['id']} goes on in the daemon: see "
            f"`petwatch comics show {job['id']}` (or `petwatch comics cancel {job['id']}`)",
            file=sys.stderr,
        )
        return 130
    if args.json:
        _print_json(job)
    if job["state"] == "succeeded":
        cost = job.get("cost_usd")
        print(
            f"cost ${cost:.3f} (the API's reported usage)"
            if cost is not None
            else f"cost about ${job['estimated_cost_usd']:.2f} (estimate)",
            file=sys.stderr,
        )
        if not args.json:
            print(job["image"])
        return 0
    if job["state"] == "cancelled":
        print(f"petwatch: comic {job['id']} was cancelled", file=sys.stderr)
        return 1
    print(
        f"petwatch: comic {job['id']} failed: {job.get('error') or 'unknown error'} "
        f'Retry with `petwatch comics retry {job["id"]}` (add --prompt "..." to change the words).',
        file=sys.stderr,
    )
    return 1


def _follow_comic(client: DaemonClient, job_id: str) -> ComicJobReply:
    """Wait for the job to finish, showing its progress; events, with a status read between."""
    updates: queue.Queue[ComicJobReply | None] = queue.Queue()

    def listen() -> None:
        try:
            with DaemonClient(client.socket) as listener:
                for kind, data in listener.events():
                    if kind == Event.COMIC and data.get("id") == job_id:
                        updates.put(cast(ComicJobReply, data))
        except PetwatchError:
            pass
        updates.put(None)  # the stream ended: reads alone from now on

    threading.Thread(target=listen, name="comic-events", daemon=True).start()
    shown = ""
    try:
        job: ComicJobReply = client.comic(job_id)
        while job["state"] not in COMIC_FINAL_STATES:
            if job.get("progress") and job["progress"] != shown:
                shown = job["progress"]
                print(f"comic {job_id}: {shown}", file=sys.stderr)
            try:
                job = updates.get(timeout=COMIC_POLL_SECONDS) or client.comic(job_id)
            except queue.Empty:
                job = client.comic(job_id)
    except DaemonUnavailable:
        raise PetwatchError(
            f"the daemon stopped while making comic {job_id}; start it again "
            f"(`petwatch daemon`) and see `petwatch comics show {job_id}`"
        ) from None
    return job


def cmd_comics(args) -> int:
    client = _require_daemon()
    if args.action == "list":
        jobs = client.comics()
        if args.json:
            _print_json(jobs)
            return 0
        if not jobs:
            print('no comics yet: make one with `petwatch comic --photo PATH --prompt "..."`')
        for job in jobs:
            cost = comic_cost(job.get("spent_usd"), job["estimated_cost_usd"])
            prompt = job["prompt"] if len(job["prompt"]) <= 60 else job["prompt"][:57] + "..."
            print(f"{job['id']}  {job['state']:<9}  {cost:<24}  {prompt}")
        return 0
    if args.action == "show":
        job = client.comic(args.id)
        if args.json:
            _print_json(job)
        else:
            _print_comic(job)
        return 0
    if args.action == "cancel":
        job = client.comic_cancel(args.id)
        if args.json:
            _print_json(job)
        else:
            print(f"comic {job['id']}: {job['state']} ({job['progress']})")
        return 0
    # retry: the old selection, size, quality and parent, optionally new words
    old = client.comic(args.id)
    estimate = client.comic_estimate(
        photos=old["photos"], size=old["size"], quality=old["quality"], parent=old["parent"]
    )
    _ask_to_spend(estimate, f" (again, as comic {args.id})", args.yes)
    return _comic_outcome(client, client.comic_retry(args.id, args.prompt), args)


def _print_comic(job: ComicShowReply) -> None:
    print(f"comic     {job['id']}  [{job['state']}]  {job['progress']}")
    print(f"prompt    {job['prompt']}")
    for number, photo in enumerate(job["photos"]):
        print(f"{'photos' if number == 0 else '':<10}{photo}")
    print(f"drawing   {job['size']}, {job['quality']} quality, {job['model']}")
    cost = job.get("cost_usd")
    reported = f" (reported usage ${cost:.3f})" if cost is not None else ""
    print(f"cost      {comic_cost(job.get('spent_usd'), job['estimated_cost_usd'])}{reported}")
    print(f"created   {job['created_at']}" + (f", finished {job['finished_at']}" if job.get("finished_at") else ""))
    if job.get("image"):
        print(f"image     {job['image']}")
    if job.get("error"):
        print(f"error     {job['error']}")
    chain = job.get("chain") or []
    if len(chain) > 1:
        for number, link in enumerate(chain):
            print(f"{'chain' if number == 0 else '':<10}{link['id']}  [{link['state']}]  {link['prompt']}")


# --- pet profiles (the daemon owns them) -------------------------------------------------
def cmd_pets(args) -> int:
    client = _require_daemon()
    if args.action == "list":
        pets = client.pets()
        if args.json:
            _print_json(pets)
        elif not pets:
            print("no pets yet: `petwatch pets add NAME --photo PHOTO --photo PHOTO --photo PHOTO`")
        for pet in [] if args.json else pets:
            print(_pet_line(pet))
        return 0
    if args.action == "remove":
        print(f"removed {client.pet_remove(args.name)['removed']} (its photos are untouched)")
        return 0
    if args.action in ("discover", "dismiss", "merge", "ungroup"):
        return _pets_found(client, args)
    if args.action == "add" and args.group is not None:
        pet = client.group_action(args.group, "name", {"name": args.name})
    elif args.action == "add":
        if not args.photo:
            raise PetwatchError(
                "give example photos (--photo PATH...) or a group found for you "
                "(--group ID, see `petwatch pets discover`)"
            )
        pet = client.pet_add(args.name, args.photo)
    elif args.action == "mark":
        pet = client.pet_mark(args.name, args.paths, args.mark)
    else:  # show / album
        pet = client.pet(args.name, limit=args.top or 0)
        if args.paths:
            for hit in pet["hits"]:
                print(hit["path"])
            return 0
    if args.json:
        _print_json(pet)
        return 0
    print(_pet_line(pet))
    for path in pet.get("stale", []):
        print(f"  stale mark (made by another model, photo gone): {path}")
    hits: list[PetHitReply] = pet.get("hits", [])  # type: ignore[assignment]  # an album has hits, a summary none
    for rank, hit in enumerate(hits, 1):
        mark = f"  [{hit['mark']}]" if hit.get("mark") else ""
        print(f"{rank:5d}  {hit['score']:.3f}  {hit['path']}{mark}")
    if args.action in ("add", "mark"):
        print(f"see the album with `petwatch pets show {pet['name']}`")
    return 0


def _pets_found(client: DaemonClient, args) -> int:
    if args.action == "discover":
        groups = client.groups(include_all=args.all)
        if args.json:
            _print_json(groups)
        elif not groups:
            print(no_pets_found(client.groups_why()))
        else:
            pets = [g for g in groups if not g.get("lookalikes")]
            alike = [g for g in groups if g.get("lookalikes")]
            print(
                f"found {len(pets)} pet{'s' if len(pets) != 1 else ''} in your photos, likeliest yours first; "
                "name one with `petwatch pets add NAME --group ID`, or `petwatch pets dismiss ID` if it is not yours"
            )
            for group in pets:
                print(_group_line(group))
            if alike:
                print(f"look-alikes ({len(alike)} group{'s' if len(alike) != 1 else ''}: alike, but not seen again):")
                for group in alike:
                    print(_group_line(group))
        return 0
    if args.action == "dismiss":
        group = client.group_action(args.id, "dismiss")
    elif args.action == "merge":
        group = client.group_action(args.id, "merge", {"other": args.other})
    else:
        group = client.group_action(args.id, "remove", {"paths": args.paths})
    if args.json:
        _print_json(group)
    else:
        print(_group_line(group))
    return 0


def _group_line(group: GroupReply) -> str:
    named = f": {group['name']}" if group.get("name") else ""
    status = f"  [{group['status']}{named}]" if group["status"] != "open" else ""
    return (
        f"group {group['id']:>4}  {group['size']:>5} photos  {group['species']}, {group['breed']}  "
        f"{group['reason']} ({group['first_day']} - {group['last_day']})  cover {group['cover']}{status}"
    )


def _pet_line(pet: PetReply | PetAlbumReply) -> str:
    return (
        f"{pet['name']}: {pet['count']} photos (threshold {pet['threshold']:.3f}; "
        f"{pet['examples']} examples, {pet['confirmed']} confirmed, {pet['rejected']} rejected)"
    )


def cmd_daemon(args) -> int:
    from petwatch.daemon.run import main as run_daemon

    return run_daemon()


def cmd_service(args) -> int:
    from petwatch.daemon import systemd

    if args.action == "install":
        path = systemd.install(start=not args.no_start)
        print(f"installed {path}" + ("" if args.no_start else " and started it"))
        print("to keep it running while you are logged out: loginctl enable-linger $USER")
    elif args.action == "uninstall":
        print(f"removed {systemd.uninstall()}")
    else:
        print(systemd.render_unit(), end="")
    return 0


def cmd_tui(args) -> int:
    # Without a terminal on both ends (piped to head, run from cron, stdin from /dev/null) the
    # TUI cannot draw or read keys, and Textual would spin at full CPU instead of stopping.
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        print(
            "petwatch: the terminal UI needs a terminal (stdin and stdout); in scripts use "
            "the commands, e.g. `petwatch search IMAGE --json` (see `petwatch --help`)",
            file=sys.stderr,
        )
        return 2
    if isinstance(sys.stderr, io.TextIOWrapper):  # Textual draws there: file names as on stdout
        sys.stderr.reconfigure(errors="surrogateescape")
    from petwatch.tui.app import run as run_tui

    return run_tui()


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line that names the command and where its help is, instead of
    argparse's usage dump (subcommands' parsers are made of this class too)."""

    def error(self, message: str) -> typing.NoReturn:
        message = re.sub(r"^argument (\S+): must", r"\1 must", message)
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="petwatch", description="Find every photo of your pet from one example photo.")
    parser.add_argument("--version", action="version", version=f"petwatch {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, handler: Callable, help: str, in_process: bool = False) -> argparse.ArgumentParser:
        # The commands that also run without a daemon say so: they then open the index themselves.
        description = f"{help}. {IN_PROCESS_NOTE}" if in_process else help
        sub = commands.add_parser(
            name, help=f"{help} (also without a daemon)" if in_process else help, description=description
        )
        sub.set_defaults(handler=handler)
        return sub

    def with_json(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--json", action="store_true", help="machine-readable output on stdout")
        return sub

    index = with_json(command("index", cmd_index, "index every photo under FOLDER(s), once", in_process=True))
    index.add_argument("folders", nargs="+", metavar="FOLDER")

    search = with_json(
        command("search", cmd_search, "the indexed photos most like IMAGE, or that words describe", in_process=True)
    )
    search.add_argument("image", metavar="IMAGE", nargs="?", help="a photo (with --text: the words filter, it ranks)")
    search.add_argument(
        "--text", metavar="WORDS", help='what, when, where, who: "rex at the beach in lisbon 2023" (README: words)'
    )
    search.add_argument("--pet", metavar="NAME", help="only this pet's photos (its album: petwatch pets)")
    search.add_argument("--taken", metavar="WHEN", help='only photos taken then: "2023", "june 2023", "2021 to 2023"')
    search.add_argument("--near", metavar="PLACE", help="only photos taken in this city, region or country")
    search.add_argument("--explain", action="store_true", help="say how each word of --text was read")
    search.add_argument(
        "--top-k",
        type=_whole_number(1, MAX_TOP_K),
        default=None,
        metavar="K",
        help=f"number of hits (1-{MAX_TOP_K}; default: the top_k setting)",
    )
    search.add_argument(
        "--min-score",
        type=_score,
        default=None,
        metavar="S",
        help="minimum score (-1..1; default: the min_score setting): by photo, the cosine similarity to "
        "your photo (with query expansion too); words alone, the probability of their concepts (0..1)",
    )
    search.add_argument(
        "--pets-only", action="store_true", help="only photos that show a dog or a cat (filtered inside the index)"
    )
    search.add_argument(
        "--species",
        action="append",
        choices=SPECIES,
        metavar="SPECIES",
        help=f"only photos of this species ({', '.join(SPECIES)}); repeatable",
    )
    search.add_argument(
        "--no-stacks",
        dest="stacks",
        action="store_false",
        help="every photo of a burst or of copies as its own hit (default: one hit per stack)",
    )
    search.add_argument(
        "--no-expand",
        dest="expand",
        action="store_const",
        const=False,
        default=None,
        help="search with the photo alone: no second search with the query expanded by its first 3 hits "
        "(on by default with whitened vectors, where it measured better)",
    )

    stacks = with_json(
        command("stacks", cmd_stacks, "bursts, edits and copies of one moment (read-only)", in_process=True)
    )
    stacks.add_argument("id", nargs="?", metavar="ID", help="one stack: its photos, the cover first")

    with_json(command("stats", cmd_stats, "photos indexed, model, database", in_process=True))
    with_json(command("status", cmd_status, "what the daemon is doing, and failures"))
    with_json(command("config", cmd_config, "effective settings and paths"))

    folders = commands.add_parser("folders", help="album folders the daemon watches")
    folder_actions = folders.add_subparsers(dest="action", metavar="ACTION", required=True)
    for action, help_text in (("add", "watch a folder"), ("remove", "stop watching a folder")):
        sub = with_json(folder_actions.add_parser(action, help=help_text))
        sub.add_argument("path", metavar="PATH")
        sub.set_defaults(handler=cmd_folders)
    with_json(folder_actions.add_parser("list", help="watched folders")).set_defaults(handler=cmd_folders)

    command("rescan", cmd_rescan, "walk every folder now (the daemon does it hourly anyway)")
    command("reindex", cmd_reindex, "rebuild the index from scratch, e.g. after changing model (daemon stopped)")
    command("daemon", cmd_daemon, "run the daemon in the foreground")
    command("tui", cmd_tui, "the terminal UI (also: petwatch with no command)")

    comic = with_json(
        command("comic", cmd_comic, "draw a comic of your pet from reference photos (OpenAI image API; costs money)")
    )
    comic.add_argument(
        "--photo",
        action="append",
        metavar="PATH",
        help=f"a reference photo of the pet; repeat for more (1-{MAX_REFERENCES})",
    )
    comic.add_argument("--prompt", required=True, help="what should happen in the comic")
    comic.add_argument("--size", choices=_comic_choices("comic_size"), help="default: comic_size")
    comic.add_argument(
        "--quality", choices=_comic_choices("comic_quality"), help="default: comic_quality (higher costs more)"
    )
    comic.add_argument(
        "--refine", metavar="ID", help="revise comic ID (sent first as a reference); --photo defaults to its photos"
    )
    comic.add_argument("--yes", "-y", action="store_true", help="send without asking about the cost")
    comic.add_argument(
        "--pet", metavar="NAME", help="add the best photos of this pet's album as references (petwatch pets)"
    )
    comic.add_argument(
        "--text", metavar="WORDS", help='with --pet: the pet\'s photos these words describe ("beach", "2023")'
    )
    comic.add_argument(
        "--pet-photos",
        type=_whole_number(1, MAX_REFERENCES),
        default=4,
        metavar="N",
        help="how many of the pet's photos --pet adds (default 4)",
    )
    comic.add_argument("--no-wait", action="store_true", help="print the job id and return at once")

    comics = commands.add_parser("comics", help="comic jobs: list, show, retry, cancel")
    comic_actions = comics.add_subparsers(dest="action", metavar="ACTION", required=True)
    with_json(comic_actions.add_parser("list", help="every comic, newest first")).set_defaults(handler=cmd_comics)
    for action, help_text in (
        ("show", "one comic: record, refinement chain, image path"),
        ("cancel", "cancel a queued or running comic"),
        ("retry", "submit a finished comic again (after a failure, say)"),
    ):
        sub = with_json(comic_actions.add_parser(action, help=help_text))
        sub.add_argument("id", metavar="ID")
        sub.set_defaults(handler=cmd_comics)
        if action == "retry":
            sub.add_argument("--prompt", help="new words instead of the old prompt")
            sub.add_argument("--yes", "-y", action="store_true", help="send without asking about the cost")
            sub.add_argument("--no-wait", action="store_true", help="print the job id and return at once")

    pets = commands.add_parser("pets", help="pet profiles: every photo of your pet, learning from you")
    pet_actions = pets.add_subparsers(dest="action", metavar="ACTION", required=True)
    add = with_json(pet_actions.add_parser("add", help="create a pet from example photos (or add examples)"))
    add.add_argument("name", metavar="NAME")
    add.add_argument(
        "--photo",
        action="extend",
        nargs="+",
        metavar="PATH",
        help="example photos of the pet (three or more work best)",
    )
    add.add_argument(
        "--group",
        type=int,
        metavar="ID",
        help="instead of --photo: a group of pets found for you (petwatch pets discover)",
    )
    with_json(pet_actions.add_parser("list", help="every pet, with its album's size"))
    show = with_json(
        pet_actions.add_parser(
            "show", aliases=["album"], help="the album: every photo of the pet, best first, with scores"
        )
    )
    show.add_argument("name", metavar="NAME")
    show.add_argument("--top", type=_whole_number(1, None), default=None, metavar="N", help="only the N best photos")
    show.add_argument(
        "--paths", action="store_true", help="print only the paths, one a line (e.g. for `petwatch comic --photo`)"
    )
    mark = with_json(pet_actions.add_parser("mark", help="teach a pet: --not (not my pet), --yes (my pet)"))
    mark.add_argument("name", metavar="NAME")
    mark.add_argument("paths", nargs="+", metavar="PATH")
    which = mark.add_mutually_exclusive_group(required=True)
    which.add_argument("--not", dest="mark", action="store_const", const="not", help="not this pet")
    which.add_argument(
        "--yes", dest="mark", action="store_const", const="yes", help="this pet (also adds a photo the album missed)"
    )
    which.add_argument("--forget", dest="mark", action="store_const", const="forget", help="drop the mark")
    pet_actions.add_parser("remove", help="remove a pet profile (its photos are untouched)").add_argument(
        "name", metavar="NAME"
    )
    discover = with_json(
        pet_actions.add_parser("discover", help="the pets found in your photos: groups of one individual that recur")
    )
    discover.add_argument("--all", action="store_true", help="dismissed and named groups too")
    dismiss = with_json(pet_actions.add_parser("dismiss", help="a group found is not your pet: hide it for good"))
    dismiss.add_argument("id", type=int, metavar="ID")
    merge = with_json(pet_actions.add_parser("merge", help="two groups found are the same pet"))
    merge.add_argument("id", type=int, metavar="ID")
    merge.add_argument("other", type=int, metavar="OTHER", help="the group whose photos join ID")
    ungroup = with_json(pet_actions.add_parser("ungroup", help="photos that are not the pet of group ID"))
    ungroup.add_argument("id", type=int, metavar="ID")
    ungroup.add_argument("paths", nargs="+", metavar="PATH")
    pets.set_defaults(handler=cmd_pets)

    service = commands.add_parser("service", help="the systemd user service")
    service_actions = service.add_subparsers(dest="action", metavar="ACTION", required=True)
    install = service_actions.add_parser("install", help="install, enable and start the user unit")
    install.add_argument("--no-start", action="store_true", help="only write the unit file")
    service_actions.add_parser("uninstall", help="stop, disable and remove the user unit")
    service_actions.add_parser("show", help="print the unit this install would use")
    service.set_defaults(handler=cmd_service)
    return parser


def _whole_number(low: int, high: int | None) -> Callable[[str], int]:
    """An argparse type whose errors say what is allowed, in the user's words (a bare ``int``
    says `invalid int value`, a function its internal name)."""
    allowed = f"a whole number from {low} to {high}" if high is not None else f"a whole number, at least {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be {allowed}, not {text!r}")
        return value

    return parse


def _score(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number from -1 to 1, not {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    # A file name that is not UTF-8 is printed as its own bytes, as ls does, in any locale
    # (Python does so by itself only in the C locale; elsewhere printing it would fail).
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="surrogateescape")
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None) or cmd_tui
    try:
        return handler(args)
    except PetwatchError as error:
        print(f"petwatch: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("petwatch: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
