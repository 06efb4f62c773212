"""The engine behind the embedder (engine.py): ONNX Runtime and torch give the same vectors on
real photos, the export is made once and rebuilt when it is damaged, a network that cannot be
exported runs on torch with one line in the log, and a cached export loads without torch."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import TEST_MODEL, dataset, run_cli
from petwatch import engine, locations
from petwatch.embed import Embedder


def _real_photos(count: int = 16) -> list[Image.Image]:
    """Pet photos of several breeds and camera photos of other sizes and orientations."""
    pets = sorted(dataset("oxford-pets-sample").rglob("*.jpg"))[:: max(1, 200 // count)][: count - 4]
    landscapes = sorted(dataset("landscapes").rglob("*.jpg"))[:4]
    return [Image.open(path).convert("RGB") for path in [*pets, *landscapes]]


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return _real_photos()


def _embed(embedder: Embedder, images: list[Image.Image]):
    return embedder.embed_prepared([embedder.prepare(image) for image in images])


def test_onnx_and_torch_store_the_same_vectors_and_labels_for_real_photos(photos):
    onnx = Embedder(TEST_MODEL, engine="onnx", region_views=True)
    torch_ = Embedder(TEST_MODEL, engine="torch", precision="float32", region_views=True)
    assert onnx.session.engine == "onnx" and torch_.session.engine == "torch"
    assert onnx.identity == torch_.identity and onnx.recipe == torch_.recipe  # no reindex
    a, b = _embed(onnx, photos), _embed(torch_, photos)
    for x, y in zip(a, b, strict=True):
        for recipe in (onnx.recipe, "petfocus1", "whole"):  # every kind a collection stores
            for u, v in zip(x.vectors_for(recipe), y.vectors_for(recipe), strict=True):
                assert float(u @ v) >= 0.9999
        assert x.pet.species == y.pet.species and x.pet.label == y.pet.label
        assert abs(x.pet.pet_score - y.pet.pet_score) < 1e-3
    assert any(x.pet.pet_score >= 0.2 for x in a)  # pet focus (the crop pass) was exercised


def test_the_numpy_preprocessing_equals_timms_transform(photos):
    import timm.data

    module, _, _ = engine.build_model(TEST_MODEL, None)
    config = timm.data.resolve_data_config({}, model=module)
    embedder = Embedder(TEST_MODEL, engine="onnx", region_views=True)
    ours = (embedder.transform, embedder.crop_transform, embedder.region_transform)
    for image in [*photos[:6], photos[0].resize((292, 400)), photos[1].transpose(Image.Transpose.ROTATE_90)]:
        for transform in ours:
            size = (3, transform.size, transform.size)
            timms = timm.data.create_transform(**{**config, "crop_pct": transform.crop_pct, "input_size": size})
            assert np.abs(transform(image) - timms(image).numpy()).max() < 1e-5


def test_the_labels_read_without_torch_are_timms():
    """concepts reads timm's class files without importing it: the same names, in the model's class order."""
    from timm.data import ImageNetInfo

    from petwatch.concepts import concept_name

    info = ImageNetInfo()
    assert [concept_name(i) for i in range(1000)] == [info.index_to_description(i).split(",")[0] for i in range(1000)]


def test_a_damaged_export_is_rebuilt(home, monkeypatch, photos):
    first = Embedder(TEST_MODEL, engine="onnx")  # cached in the tests' shared folder
    shared = engine.export_folder(TEST_MODEL, None)
    monkeypatch.setenv(locations.MODELS_ENV, str(home / "models"))  # a copy of it to damage
    folder = engine.export_folder(TEST_MODEL, None)
    shutil.copytree(shared, folder)
    graph = folder / f"{first.input_size}.onnx"
    graph.write_bytes(graph.read_bytes()[:1000])  # a disk that filled up mid-write
    again = Embedder(TEST_MODEL, engine="onnx")
    assert again.session.engine == "onnx" and graph.stat().st_size > 1_000_000  # made anew
    assert float(_embed(first, photos[:1])[0].vector @ _embed(again, photos[:1])[0].vector) > 0.9999
    (folder / "meta.json").write_text("{")  # and a torn spec
    assert Embedder(TEST_MODEL, engine="onnx").session.engine == "onnx"


def test_a_network_that_cannot_be_exported_runs_on_torch_with_one_line(home, monkeypatch, caplog, photos):
    import torch

    monkeypatch.setenv(locations.MODELS_ENV, str(home / "models"))  # nothing cached

    tries = []

    def refuse(*args, **kwargs):
        tries.append(1)
        raise RuntimeError("Exporting the operator 'aten::fancy' to ONNX opset 17 is not supported\nmore detail")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    with caplog.at_level(logging.INFO, logger="petwatch.engine"):
        embedder = Embedder(TEST_MODEL, engine="onnx")
    said = [r for r in caplog.records if r.name == "petwatch.engine"]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    assert "runs on torch" in said[0].getMessage() and "aten::fancy" in said[0].getMessage()
    assert embedder.session.engine == "torch"
    assert not list((home / "models").glob("*/meta.json"))  # no half export left to trust
    assert _embed(embedder, photos[:2])[0].vector.shape == (embedder.dim,)  # indexing goes on
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="petwatch.engine"):
        again = Embedder(TEST_MODEL, engine="onnx")  # the next start: not tried again
    assert again.session.engine == "torch" and len(tries) == 1
    assert ["aten::fancy" in r.getMessage() for r in caplog.records if r.name == "petwatch.engine"] == [True]


def test_engine_torch_is_obeyed_and_auto_picks_onnx_on_this_cpu(monkeypatch):
    assert engine.pick_engine("torch", "auto", "auto") == "torch"
    assert engine.pick_engine("auto", "cuda", "auto") == "torch"  # CUDA stays with torch
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: True)
    assert engine.pick_engine("auto", "cpu", "auto") == "torch"  # native bf16: as before
    assert engine.pick_engine("onnx", "cpu", "auto") == "onnx"
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(engine, "_may_have_cuda", lambda: False)
    assert engine.pick_engine("auto", "auto", "auto") == "onnx"


def test_each_engine_gets_its_own_batch_size_and_runs_unless_a_batch_size_is_set(home):
    """batch_size = 0 (the default): ONNX Runtime small batches, two at once on two cores;
    torch one batch of 16 on every core, as before the engine. A batch size set is obeyed."""
    from petwatch import settings

    assert settings.Settings().batch_size == 0
    onnx, torch_ = Embedder(TEST_MODEL, engine="onnx"), Embedder(TEST_MODEL, engine="torch")
    assert (onnx.batch_size, torch_.batch_size) == (4, 16)
    assert onnx.parallel_runs == (2 if (os.cpu_count() or 1) >= 2 else 1) and torch_.parallel_runs == 1
    assert Embedder(TEST_MODEL, engine="onnx", batch_size=7).batch_size == 7


def test_a_cached_export_loads_without_torch_and_config_says_the_engine(home):
    Embedder(TEST_MODEL, engine="onnx")  # cached (shared between the tests)
    code = (
        "import sys\n"
        "from petwatch.embed import Embedder\n"
        f"e = Embedder({TEST_MODEL!r}, engine='onnx')\n"
        "from PIL import Image\n"
        "v = e.embed_query(Image.new('RGB', (640, 480), (200, 120, 40))).vector\n"
        "print(e.engine, v.shape, [m for m in ('torch', 'timm', 'torchvision') if m in sys.modules])\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip().endswith("[]") and ran.stdout.startswith("onnx (ONNX Runtime"), ran.stdout
    config = run_cli("config")
    assert config.returncode == 0 and "engine           onnx (ONNX Runtime" in config.stdout, config.stdout
    assert 'engine = "auto"' in config.stdout
    forced = run_cli("config", env={"PETWATCH_ENGINE": "torch"})
    assert "engine           torch" in forced.stdout


@pytest.mark.parametrize("command", [["config"], ["status"], ["folders", "list"], ["--help"]])
def test_commands_that_need_no_model_import_neither_torch_nor_the_engine(home, command):
    code = (
        "import sys\n"
        "from petwatch import cli\n"
        "try:\n"
        f"    cli.main({command!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print([m for m in ('torch', 'timm', 'onnxruntime', 'petwatch.embed') if m in sys.modules], file=sys.stderr)\n"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert ran.stderr.strip().splitlines()[-1] == "[]", ran.stderr
