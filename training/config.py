"""YAML configs mapped onto pydantic models: unknown keys fail, naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

__all__ = ["ConfigError", "load_config", "read_yaml"]

ConfigT = TypeVar("ConfigT", bound=BaseModel)


class ConfigError(ValueError):
    """A config file is unreadable or does not fit its schema."""


def read_yaml(path: str | Path) -> dict:
    """The mapping a YAML file holds (an empty file gives {}).

    Raises:
        ConfigError: if the file is missing, is not valid YAML, or holds no mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load_config(path: str | Path | None, schema: type[ConfigT], **overrides) -> ConfigT:
    """Read a YAML file into `schema` (defaults when `path` is None), then apply `overrides`.

    Raises:
        ConfigError: naming the file and the offending key, e.g. `model.layrs: Extra inputs
            are not permitted`.
    """
    data = {} if path is None else read_yaml(path)
    data.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        problems = [
            f"{'.'.join(str(part) for part in item['loc']) or '(top)'}: {item['msg']}"
            for item in error.errors()
        ]
        raise ConfigError(f"{path or 'config'}: " + "; ".join(problems)) from None
