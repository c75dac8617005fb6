"""Config values are type-checked when the config loads: a wrong type is a start-up error naming the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import pytest

from service.config import EngineKind, ServiceConfig, load_config
from service.config_types import ConfigError, build
from service.main import main


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "service.toml"
    path.write_text(text)
    return path


def test_a_quoted_number_names_the_key_and_the_expected_type(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^queue\.max_queued: expected an integer, got the string '64'$"):
        load_config(_toml(tmp_path, '[queue]\nmax_queued = "64"\n'))


def test_a_bool_is_not_an_int_and_an_int_is_not_a_bool(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"queue\.workers: expected an integer, got the boolean true"):
        load_config(_toml(tmp_path, "[queue]\nworkers = true\n"))
    with pytest.raises(ConfigError, match=r"queue\.requeue_interrupted: expected a boolean, got int 1"):
        load_config(_toml(tmp_path, "[queue]\nrequeue_interrupted = 1\n"))


def test_enums_list_their_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^engine: expected one of local, triton, got the string 'gpu'$"):
        load_config(_toml(tmp_path, 'engine = "gpu"\n'))
    assert load_config(_toml(tmp_path, 'engine = "triton"\n')).engine is EngineKind.TRITON


def test_optional_values_take_their_type_or_stay_unset(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^model\.model_dir: expected a string, got int 5$"):
        load_config(_toml(tmp_path, "[model]\nmodel_dir = 5\n"))
    config = load_config(
        _toml(tmp_path, '[model]\nmodel_dir = "/models/ltx"\n'), **{"model.config_dir": None}
    )
    assert config.model.model_dir == "/models/ltx" and config.model.config_dir is None


def test_a_section_must_be_a_table_and_unknown_keys_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^queue: expected a table, got int 3$"):
        load_config(_toml(tmp_path, "queue = 3\n"))
    with pytest.raises(ConfigError, match=r"unknown QueueConfig settings: queue\.max_queue;"):
        load_config(_toml(tmp_path, "[queue]\nmax_queue = 3\n"))


def test_integers_are_accepted_for_floats_and_good_files_load(tmp_path: Path) -> None:
    config = load_config(_toml(tmp_path, "port = 6000\n[queue]\nretention_s = 60\nmax_queued = 3\n"))
    assert config.port == 6000 and config.queue.max_queued == 3
    assert config.queue.retention_s == 60.0 and isinstance(config.queue.retention_s, float)
    assert load_config().queue == ServiceConfig().queue  # no file, no overrides: the defaults


class Color(StrEnum):
    RED = "red"


@dataclass(frozen=True)
class Inner:
    colors: tuple[Color, ...] = ()
    limits: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    path: Path | None = None


def test_nested_dataclasses_sequences_and_mappings_are_checked_item_by_item() -> None:
    built = build(Outer, {"inner": {"colors": ["red"], "limits": {"a": 1}}, "path": "/tmp/x"})
    assert built == Outer(Inner((Color.RED,), {"a": 1}), Path("/tmp/x"))
    with pytest.raises(
        ConfigError, match=r"^inner\.colors\[1\]: expected one of red, got the string 'blue'$"
    ):
        build(Outer, {"inner": {"colors": ["red", "blue"]}})
    with pytest.raises(ConfigError, match=r"^inner\.limits\.b: expected an integer, got the string 'x'$"):
        build(Outer, {"inner": {"limits": {"b": "x"}}})
    with pytest.raises(ConfigError, match=r"^path: expected a path, got int 3$"):
        build(Outer, {"path": 3})


def test_ltx_serve_exits_with_the_message_and_no_traceback(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--config", str(_toml(tmp_path, '[queue]\nmax_queued = "64"\n'))])
    assert str(exited.value) == "ltx-serve: queue.max_queued: expected an integer, got the string '64'"
