"""Configuration: defaults < TOML file < TASKER_* environment < CLI flags; bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasker.config import Config, ConfigError, load_config, with_overrides


def test_defaults_apply_when_nothing_is_set() -> None:
    config = load_config(environ={})

    assert config == Config()
    assert config.broker == "pgmq"


def test_file_then_environment_then_flags_take_precedence(tmp_path: Path) -> None:
    config_file = tmp_path / "tasker.toml"
    config_file.write_text('broker = "rabbitmq"\nconcurrency = 2\nenv = "staging"\n')
    environ = {"TASKER_CONCURRENCY": "8", "TASKER_ENV": "production"}

    config = load_config(config_file=str(config_file), environ=environ, overrides={"env": "test"})

    assert config.broker == "rabbitmq"  # from the file
    assert config.concurrency == 8  # the environment beats the file
    assert config.env == "test"  # a flag beats both


def test_config_file_can_come_from_the_environment(tmp_path: Path) -> None:
    config_file = tmp_path / "tasker.toml"
    config_file.write_text('database_url = "postgresql://db.example/tasker"\n')

    config = load_config(environ={"TASKER_CONFIG": str(config_file)})

    assert config.database_url == "postgresql://db.example/tasker"


def test_list_settings_split_on_commas() -> None:
    config = load_config(environ={"TASKER_NAMESPACES": "payments, shipping,"})

    assert config.namespaces == ("payments", "shipping")


def test_unset_flags_do_not_override() -> None:
    config = load_config(environ={"TASKER_BROKER": "rabbitmq"}, overrides={"broker": None})

    assert config.broker == "rabbitmq"


@pytest.mark.parametrize(
    ("environ", "setting"),
    [
        ({"TASKER_BROKER": "kafka"}, "broker"),
        ({"TASKER_CONCURRENCY": "many"}, "concurrency"),
        ({"TASKER_CONCURRENCY": "0"}, "concurrency"),
        ({"TASKER_BACKOFF_JITTER": "2"}, "backoff_jitter"),
    ],
)
def test_an_invalid_setting_fails_naming_it(environ: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load_config(environ=environ)

    assert raised.value.setting == setting
    assert setting in str(raised.value)
    assert f"TASKER_{setting.upper()}" in str(raised.value)


def test_an_unknown_key_in_the_file_is_named(tmp_path: Path) -> None:
    config_file = tmp_path / "tasker.toml"
    config_file.write_text("brokr = 'pgmq'\n")

    with pytest.raises(ConfigError, match="brokr"):
        load_config(config_file=str(config_file), environ={})


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(config_file=str(tmp_path / "absent.toml"), environ={})


def test_config_is_frozen_and_overrides_make_validated_copies() -> None:
    config = Config()

    with pytest.raises(AttributeError):
        config.broker = "rabbitmq"  # type: ignore[misc]
    assert with_overrides(config, broker="rabbitmq").broker == "rabbitmq"
    with pytest.raises(ConfigError):
        with_overrides(config, concurrency=-1)
