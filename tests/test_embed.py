"""The embedder's number formats: bfloat16 (the default on CPUs that compute it natively) must
find the same photos as float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TEST_MODEL, bundled_photos, embed_images
from petwatch.embed import Embedder
from petwatch.engine import pick_dtype


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return [Image.fromarray(array) for array in bundled_photos().values()]


def test_bfloat16_vectors_match_float32_and_rank_the_same(photos):
    exact = Embedder(TEST_MODEL, precision="float32", engine="torch")
    fast = Embedder(TEST_MODEL, precision="bfloat16")  # bfloat16 runs on torch
    assert exact.session.dtype == torch.float32 and fast.session.dtype == torch.bfloat16
    a, b = embed_images(exact, photos), embed_images(fast, photos)
    assert a.dtype == b.dtype == np.float32  # stored as float32 either way
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-4)
    assert (a * b).sum(axis=1).min() > 0.99  # the same photo, the same direction
    # Every similarity between two photos moves by less than a hundredth: scores, thresholds and
    # rankings (bar near-ties) stay as they were; bench_quality.py measures the mAP.
    assert np.abs(a @ a.T - b @ b.T).max() < 0.01


def test_auto_precision_is_float32_on_cuda_and_where_bfloat16_is_emulated(monkeypatch):
    import petwatch.engine as embed

    assert pick_dtype("float32", torch.device("cpu")) == torch.float32
    assert pick_dtype("auto", torch.device("cuda")) == torch.float32
    monkeypatch.setattr(embed, "cpu_has_native_bf16", lambda: False)
    assert pick_dtype("auto", torch.device("cpu")) == torch.float32
    monkeypatch.setattr(embed, "cpu_has_native_bf16", lambda: True)
    assert pick_dtype("auto", torch.device("cpu")) == torch.bfloat16
