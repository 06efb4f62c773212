"""What checking the daemon's replies costs the client: pydantic against plain json.loads.

    python bench/bench_contract.py [--hits 1000] [--rounds 200]

The client (petwatch.client) parses each JSON reply and checks it against its endpoint's
reply type (petwatch.protocol's TypedDicts, one TypeAdapter built per endpoint), so that a
daemon of another version is named instead of failing somewhere in the CLI or the TUI. This
times, in one run, a SearchReply of ``--hits`` hits (the largest page a search may ask for)
and the other replies: json.loads alone (what the client did), json.loads + validate_python
(what it does) and, for reference, validate_json (pydantic's parser: faster, but it refuses the
\\udcxx escapes a file name that is not UTF-8 is sent as), in ms per reply, and the ratio of
the check to json.loads. Budget: 5 ms for a 1,000-hit search reply.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter

from _common import table, write_results
from petwatch.protocol import (
    MAX_TOP_K,
    ComicJobReply,
    FolderReply,
    GroupReply,
    PetAlbumReply,
    SearchReply,
    StatusReply,
)
from petwatch.search import hit_reply
from petwatch.store import Hit, photo_record

BUDGET_MS = 5.0


def _hit(i: int) -> dict[str, Any]:
    photo = photo_record(  # the record as the index keeps it; fields not named here at their defaults
        path=f"/home/user/Pictures/2024/summer/IMG_{i:05d}.jpg",
        content_hash=f"{i:032x}",
        size=3_400_000 + i,
        mtime_ns=1_700_000_000_000_000_000 + i,
        width=4000,
        height=3000,
        taken_at=1_700_000_000 + i,
        indexed_at=1_700_100_000 + i,
        pet_score=0.93,
        species="dog",
        label="golden retriever",
        camera="Apple iPhone 12 Pro",
        city="Lisbon",
        region="Lisbon",
        country="Portugal",
        classes={207: 0.81, 208: 0.09, 222: 0.03},
    )
    # As the search makes a hit of it (when, where, what it shows), so a new field cannot leave it behind.
    hit = hit_reply(Hit(photo, score=0.9 - i / 10_000), plugged_in=["/home/user/Pictures"])
    hit["stack"] = {"id": f"s{i:08x}", "size": 3} if i % 7 == 0 else None
    return dict(hit)


def _job(i: int) -> dict[str, Any]:
    return {
        "id": f"job{i}",
        "prompt": "a comic of the dog at the beach",
        "photos": ["/p/a.jpg", "/p/b.jpg"],
        "parent": None,
        "model": "gpt-image-1",
        "size": "1024x1024",
        "quality": "medium",
        "input_fidelity": None,
        "created_at": "2026-01-01T00:00:00Z",
        "full_prompt": "...",
        "references": ["/p/a.jpg"],
        "state": "succeeded",
        "progress": "",
        "started_at": None,
        "finished_at": None,
        "attempts": 1,
        "image": "/data/comics/job.png",
        "estimated_cost_usd": 0.05,
        "usage": {"input_tokens": 100},
        "cost_usd": 0.04,
        "spent_usd": 0.04,
        "error": None,
        "error_kind": None,
    }


def replies(hits: int) -> list[tuple[str, Any, Any]]:
    """(name, reply type, a reply of that shape) for the endpoints whose replies are largest or most asked."""
    folder = {"path": "/home/user/Pictures", "mode": "events", "online": True, "photos": 12_000}
    status = {
        "state": "idle",
        "indexed": 12_000,
        "queued": 0,
        "failed": 3,
        "folders": [folder],
        "model": "efficientnet_lite2",
        "engine": "onnx (ONNX Runtime 1.32.0, CPU, float32)",
        "dim": 768,
        "dogs": 4000,
        "cats": 900,
        "uptime_s": 3600.0,
        "progress": None,
        "pid": 1234,
        "version": "0.1.0",
        "db": "/home/user/.local/share/petwatch/index.db",
        "write_error": None,
        "upgrade": None,
        "config_problem": None,
        "top_k": 20,
        "min_score": -1.0,
    }
    search = {
        "query": "/tmp/q.jpg",
        "hits": [_hit(i) for i in range(hits)],
        "took_ms": 40.0,
        "upgrade": None,
        "partial": False,
        "readings": [{"words": "beach", "kind": "concept", "meaning": "seashore, sandbar (ImageNet classes)"}],
    }
    album_hit = {"path": "/p/x.jpg", "score": 0.8, "content_hash": "ab" * 32, "mark": None, "stack": None}
    pet = {
        "name": "Cola",
        "created_at": 1.7e9,
        "examples": 3,
        "confirmed": 10,
        "rejected": 2,
        "threshold": 0.6,
        "count": 500,
        "stale": [],
        "example_paths": ["/p/a.jpg"],
        "offset": 0,
        "hits": [album_hit] * 500,
    }
    group = {
        "id": 1,
        "size": 40,
        "status": "new",
        "name": None,
        "cover": "/p/a.jpg",
        "paths": ["/p/a.jpg"] * 40,
        "species": "dog",
        "breed": "beagle",
        "first_day": "2024-01-01",
        "last_day": "2024-06-01",
        "reason": "seen on 14 days over 1 year",
        "evidence": 1.5,
        "lookalikes": False,
    }
    return [
        (f"search, {hits} hits", SearchReply, search),
        ("status", StatusReply, status),
        ("pet album, 500 photos", PetAlbumReply, pet),
        ("groups, 50", list[GroupReply], [group] * 50),
        ("comics, 100 jobs", list[ComicJobReply], [_job(i) for i in range(100)]),
        ("folders, 10", list[FolderReply], [folder] * 10),
    ]


def _ms(works: list[Callable[[], object]], rounds: int, batches: int = 7) -> list[float]:
    """ms per call of each work: batches taken in turn (the machine is shared: each sees the
    same load), the best batch of each."""
    best = [float("inf")] * len(works)
    for work in works:
        work()  # warm
    for _ in range(batches):
        for i, work in enumerate(works):
            started = time.perf_counter()
            for _ in range(rounds):
                work()
            best[i] = min(best[i], (time.perf_counter() - started) / rounds * 1000)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hits", type=int, default=MAX_TOP_K, help="hits in the search reply (default %(default)s)")
    parser.add_argument("--rounds", type=int, default=50, help="replies per timing batch (default %(default)s)")
    args = parser.parse_args()

    rows, results = [], []
    for name, reply_type, reply in replies(args.hits):
        adapter = TypeAdapter(reply_type)  # built once, as the client does per endpoint
        text = json.dumps(reply).encode()
        adapter.validate_python(json.loads(text))  # the sample is of the right shape
        plain, checked, direct = _ms(
            [
                lambda text=text: json.loads(text),
                lambda text=text, a=adapter: a.validate_python(json.loads(text)),
                lambda text=text, a=adapter: a.validate_json(text),
            ],
            args.rounds,
        )
        size = f"{len(text) / 1024:.0f} KiB"
        rows.append([name, size, f"{plain:.3f}", f"{checked:.3f}", f"{checked / plain:.2f}x", f"{direct:.3f}"])
        results.append(
            {"reply": name, "bytes": len(text), "json_ms": plain, "checked_ms": checked, "validate_json_ms": direct}
        )
    headers = ["reply", "size", "json.loads ms", "json.loads + validate ms", "ratio", "validate_json ms"]
    print(table(headers, rows, "Checking a reply: ms per reply (the best of 7 batches, taken in turn)"))
    search = results[0]
    checked, plain = search["checked_ms"], search["json_ms"]
    ok = checked <= BUDGET_MS
    print(
        f"\n{search['reply']}: {checked:.2f} ms checked vs {plain:.2f} ms json.loads ({checked / plain:.2f}x; "
        f"the check itself {checked - plain:.2f} ms); budget {BUDGET_MS} ms: {'ok' if ok else 'OVER'}"
    )
    write_results("contract", {"hits": args.hits, "rounds": args.rounds, "budget_ms": BUDGET_MS, "replies": results})


if __name__ == "__main__":
    main()
