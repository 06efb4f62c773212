"""Settings and locations as a user meets them: PETWATCH_HOME, the config file, bad values."""

from __future__ import annotations

import json

from tests.conftest import run_cli

from petwatch import locations, settings


def test_petwatch_home_holds_every_location(home, monkeypatch):
    monkeypatch.delenv(locations.MODELS_ENV)  # the tests' shared export cache (conftest)
    for name, path in locations.all_paths().items():
        assert str(path).startswith(str(home)), name


def test_config_file_and_env_both_apply_env_wins(home):
    locations.config_file().parent.mkdir(parents=True)
    locations.config_file().write_text("batch_size = 12\ntop_k = 7\n")
    loaded = settings.load()
    assert (loaded.batch_size, loaded.top_k) == (12, 7)


def test_env_overrides_config_file(home, monkeypatch):
    locations.config_file().parent.mkdir(parents=True)
    locations.config_file().write_text("top_k = 7\n")
    monkeypatch.setenv("PETWATCH_TOP_K", "9")
    assert settings.load().top_k == 9


def test_bad_value_is_one_line_naming_the_setting(home):
    result = run_cli("config", env={"PETWATCH_BATCH_SIZE": "many"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "batch_size" in lines[0] and "Traceback" not in result.stderr


def test_unknown_key_in_config_file_is_named(home):
    locations.config_file().parent.mkdir(parents=True)
    locations.config_file().write_text("top_kk = 8\n")
    result = run_cli("config")
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "unknown setting top_kk" in result.stderr and "did you mean top_k?" in result.stderr
    locations.config_file().write_text("flavour = 8\n")  # nothing close: where the list is
    assert "`petwatch config` lists every setting" in run_cli("config").stderr


def test_config_prints_every_setting_and_path(home):
    result = run_cli("config", "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert set(shown["settings"]) == set(settings.Settings.model_fields)
    assert shown["paths"]["socket"].startswith(str(home))
    plain = run_cli("config").stdout
    for name, description in settings.describe():
        assert name in plain and description.split()[0] in plain


def test_update_config_file_keeps_comments(home):
    locations.config_file().parent.mkdir(parents=True)
    locations.config_file().write_text("# my comment\ntop_k = 5\n")
    settings.update_config_file(folders=[str(home)])
    text = locations.config_file().read_text()
    assert "# my comment" in text and settings.load().folders == [home]
