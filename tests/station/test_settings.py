"""Settings: defaults work, precedence is file < env < flag, bad keys and values are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from station.errors import SettingsError
from station.settings import load_settings


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "station.toml"
    path.write_text(text)
    return path


def test_defaults_work_out_of_the_box(isolated_env: Path) -> None:
    settings, sources = load_settings()
    assert settings.data_dir == isolated_env
    assert settings.effective_database_url == f"sqlite:///{isolated_env / 'station.db'}"
    assert settings.levels.blind_share_assist == pytest.approx(0.10)
    assert sources["levels.audit_share_full"] == "default"


def test_precedence_is_file_then_env_then_flag(tmp_path: Path, monkeypatch) -> None:
    cfg = _toml(tmp_path, 'station_name = "FILE"\n[levels]\nblind_share_assist = 0.2\n')
    settings, sources = load_settings(cfg)
    assert settings.station_name == "FILE" and sources["station_name"] == f"file {cfg}"

    monkeypatch.setenv("STATION_STATION_NAME", "ENV")
    settings, sources = load_settings(cfg)
    assert settings.station_name == "ENV" and sources["station_name"] == "env STATION_STATION_NAME"
    assert settings.levels.blind_share_assist == pytest.approx(0.2)  # untouched by env

    settings, sources = load_settings(cfg, {"station_name": "FLAG"})
    assert settings.station_name == "FLAG" and sources["station_name"] == "flag"


def test_nested_env_and_json_values(monkeypatch) -> None:
    monkeypatch.setenv("STATION_THRESHOLDS__NEVER_PASS_ABOVE", '{"crack": 0.0, "missing": 0.05}')
    monkeypatch.setenv("STATION_DEFECT_CLASSES", '["crack", "scratch", "missing"]')
    settings, _ = load_settings()
    assert settings.thresholds.never_pass_above == {"crack": 0.0, "missing": 0.05}
    assert settings.defect_classes == ["crack", "scratch", "missing"]


def test_unknown_key_in_file_is_named_with_a_suggestion(tmp_path: Path) -> None:
    cfg = _toml(tmp_path, "[levels]\nblind_shar_assist = 0.2\n")
    with pytest.raises(
        SettingsError, match=r"'levels.blind_shar_assist'.*did you mean levels.blind_share_assist"
    ):
        load_settings(cfg)


def test_unknown_section_in_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="unknown setting 'camera.fps'"):
        load_settings(_toml(tmp_path, "[camera]\nfps = 30\n"))


def test_unknown_env_variable_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("STATION_STATON_NAME", "typo")
    with pytest.raises(
        SettingsError, match="STATION_STATON_NAME.*did you mean STATION_STATION_NAME"
    ):
        load_settings()


def test_bad_value_names_key_value_source_and_expectation(tmp_path: Path) -> None:
    cfg = _toml(tmp_path, "[levels]\naudit_share_full = 1.5\n")
    with pytest.raises(SettingsError) as info:
        load_settings(cfg)
    message = str(info.value)
    assert "levels.audit_share_full" in message and "1.5" in message
    assert str(cfg) in message and "less than or equal to 1" in message


def test_bad_level_name_lists_the_levels(monkeypatch) -> None:
    monkeypatch.setenv("STATION_LEVELS__DEFAULT", "turbo")
    with pytest.raises(SettingsError, match="'turbo'.*human_only.*shadow"):
        load_settings()


def test_invalid_toml_and_missing_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(_toml(tmp_path, "station_name = \n"))
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_user_config_file_is_read_when_present(tmp_path: Path) -> None:
    user_cfg = tmp_path / "xdg-config" / "inspection-station" / "config.toml"
    user_cfg.parent.mkdir(parents=True)
    user_cfg.write_text('station_name = "USERCFG"\n')
    settings, sources = load_settings()
    assert settings.station_name == "USERCFG" and sources["station_name"] == f"file {user_cfg}"


def test_config_show_prints_values_and_sources(cli, tmp_path: Path) -> None:
    cfg = _toml(tmp_path, 'station_name = "A3"\n')
    result = cli(
        "config",
        "show",
        "--config",
        str(cfg),
        "--json",
        env={"STATION_LEVELS__AUDIT_SHARE_FULL": "0.03"},
    )
    assert result.code == 0, result.err
    import json

    shown = json.loads(result.out)
    assert shown["station_name"] == {"value": "A3", "source": f"file {cfg}"}
    assert shown["levels.audit_share_full"]["source"] == "env STATION_LEVELS__AUDIT_SHARE_FULL"
    assert shown["database_url"]["value"].startswith("sqlite:///")


def test_config_show_names_only_a_settings_file_it_read(cli, tmp_path: Path) -> None:
    """Issue 19: without a file, the title says none was read (and where one would be)."""
    plain = cli("config", "show")
    assert plain.code == 0, plain.err
    assert "no settings file; one would be read from" in plain.out.replace("\n", " ")
    cfg = _toml(tmp_path, 'station_name = "A3"\n')
    named = cli("config", "show", "--config", str(cfg))
    assert named.code == 0 and "file:" in named.out and "no settings file" not in named.out


def test_config_show_with_a_bad_file_exits_nonzero_in_one_line(cli, tmp_path: Path) -> None:
    result = cli("config", "show", "--config", str(_toml(tmp_path, "colour = 'red'\n")))
    assert result.code == 2
    assert result.err.startswith("error: unknown setting 'colour'")
    assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1


def test_a_typo_in_a_safety_cap_is_refused(monkeypatch) -> None:
    monkeypatch.setenv("STATION_THRESHOLDS__NEVER_PASS_ABOVE", '{"crak": 0.01}')
    with pytest.raises(SettingsError, match="crak.*not defect classes"):
        load_settings()


def test_ok_class_cannot_be_a_defect_class(monkeypatch) -> None:
    monkeypatch.setenv("STATION_DEFECT_CLASSES", '["ok", "crack"]')
    with pytest.raises(SettingsError, match="also listed in defect_classes"):
        load_settings()


def test_the_default_level_cannot_skip_the_gates(monkeypatch) -> None:
    monkeypatch.setenv("STATION_LEVELS__DEFAULT", "full")
    with pytest.raises(SettingsError, match="levels.default"):
        load_settings()


def test_config_show_hides_the_database_password(cli) -> None:
    url = "postgresql://station:S3cret@db.plant.local/inspection"
    result = cli("config", "show", "--json", env={"STATION_DATABASE_URL": url})
    assert result.code == 0, result.err
    assert "S3cret" not in result.out and "station:***@db.plant.local" in result.out
