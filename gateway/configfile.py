"""Loading YAML config files into typed models, with errors that name the file, the key and the problem."""

from __future__ import annotations

import difflib
import errno
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

if TYPE_CHECKING:  # pydantic is imported by the models themselves; the `sinkwatch` command starts without it
    from pydantic import BaseModel, ValidationError, ValidationInfo

ModelT = TypeVar("ModelT", bound="BaseModel")


class ConfigError(Exception):
    """A config file is unusable; the message is meant to be shown to the user as is."""


def key_path(location: Sequence[int | str], prefix: str = "") -> str:
    """Render a pydantic error location as a YAML key path: ('sensors', 0, 'port') -> sensors[0].port."""
    text = prefix
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The one pydantic model a field's type holds (`Model`, `Model | None`, `list[Model]`, ...), else None."""
    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    found = {m for m in (_model_in(a) for a in typing.get_args(annotation)) if m is not None}
    return found.pop() if len(found) == 1 else None


def _holds_mapping(annotation: Any) -> bool:
    if typing.get_origin(annotation) in (dict, Mapping):
        return True
    return any(_holds_mapping(a) for a in typing.get_args(annotation))


def known_keys(model: type[BaseModel], location: Sequence[int | str]) -> list[str]:
    """The keys a mapping at `location` (a pydantic error location without its last part) may hold, found by
    walking `model`'s fields; empty when the location leads to no single model."""
    current = model
    in_mapping = False  # the model came from a `dict[str, Model]` field: the next part is one of its keys
    for part in location:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part)
        if field is None and in_mapping:
            in_mapping = False
            continue
        nested = _model_in(field.annotation) if field is not None else None
        if field is None or nested is None:
            return []
        in_mapping = _holds_mapping(field.annotation)
        current = nested
    return sorted(f.alias or name for name, f in current.model_fields.items())


def _unknown_key_message(key: object, known: list[str]) -> str:
    close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6) if known else []
    if close:
        return f"unknown key; did you mean {close[0]}? (check the spelling against the sample config)"
    if known:
        return f"unknown key; the keys here are {', '.join(known)} (check the spelling against the sample config)"
    return "unknown key (check the spelling against the sample config)"


def describe_validation_error(path: Path | str, error: ValidationError, prefix: str = "",
                              model: type[BaseModel] | None = None) -> str:
    """One line per problem: `file: invalid configuration` then `  key.path: problem`. With `model` (the model
    that was validated), a misspelt key names the key it most likely means, or the keys allowed there."""
    lines = [f"{path}: invalid configuration"]
    listed: set[tuple[int | str, ...]] = set()  # locations whose allowed keys were listed: listed once, not per key
    for item in error.errors():
        message = item["msg"]
        where = key_path(item["loc"], prefix)
        if item["type"] == "extra_forbidden":
            location = item["loc"]
            known = known_keys(model, location[:-1]) if model is not None and location else []
            message = _unknown_key_message(location[-1] if location else "", known)
            if message.startswith("unknown key; the keys here are"):
                if tuple(location[:-1]) in listed:
                    message = "unknown key (the keys allowed here are listed above)"
                listed.add(tuple(location[:-1]))
        elif item["type"] == "missing":
            message = "required key is missing"
        elif item["type"] == "value_error":
            message = message.removeprefix("Value error, ")  # pydantic's prefix says nothing to the reader
            if message.startswith(f"{where}."):  # a section's check names its own key: `mqtt: mqtt.password_file:`
                lines.append(f"  {message}")
                continue
        lines.append(f"  {where}: {message}")
    return "\n".join(lines)


def _takes(annotation: Any, kinds: tuple[type, ...]) -> bool:
    """Whether a field's type accepts one of `kinds` (through `Annotated`, unions, `Optional`)."""
    if annotation in kinds:
        return True
    return any(_takes(a, kinds) for a in typing.get_args(annotation))


def refuse_bool_for_number(cls: type[BaseModel], value: object, info: ValidationInfo) -> object:
    """A "before" validator of every field of a config model (`field_validator("*", mode="before")`): a boolean for
    a key whose type is a number and not a boolean is refused. YAML reads yes/no/on/off/true/false as booleans and
    pydantic takes a boolean for a number (true = 1), so `interval_s: yes` polled every second, `port: on` dialled
    port 1, and nothing said so."""
    if type(value) is bool and info.field_name is not None:
        field = cls.model_fields.get(info.field_name)
        if field is not None and _takes(field.annotation, (int, float)) and not _takes(field.annotation, (bool,)):
            raise ValueError(f"must be a number, not {str(value).lower()} (YAML reads yes/no/on/off/true/false as "
                             "a boolean): write the number")
    return value


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping names the same key twice; YAML itself would silently keep the last one."""


MAX_YAML_DEPTH = 64
"""Lists and mappings nested deeper than this are refused. A config or metadata file needs fewer than ten levels;
PyYAML composes recursively, and left to reach Python's recursion limit it spends 1-2 s of CPU on a 3-kB file of
brackets before failing (a pushed config is outside input)."""


class TooDeepError(yaml.composer.ComposerError):
    """Lists or mappings nested deeper than MAX_YAML_DEPTH."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key that appears twice in one mapping (a merge key `<<` may still be
    overridden, as YAML intends) and collections nested deeper than MAX_YAML_DEPTH."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise TooDeepError(None, None, f"lists or mappings nested deeper than {MAX_YAML_DEPTH} levels "
                                   "(nested too deeply)", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                seen = first_line.get(key)
            except TypeError:  # an unhashable key: PyYAML reports it itself below
                continue
            if seen is not None:
                raise DuplicateKeyError(
                    None, None,
                    f"key {key!r} appears twice in one mapping (first at line {seen + 1}); YAML would silently "
                    "keep only the last: remove or rename one",
                    key_node.start_mark,
                )
            first_line[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, path: Path | str) -> Any:
    """Parse YAML text with the safe loader, refusing duplicate keys; ConfigError names file, line and problem."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        if "'\\t'" in problem:  # PyYAML: "found character '\t' that cannot start any token"
            problem += " (a tab: YAML indents with spaces only; replace the tab with spaces)"
        kind = "duplicate key" if isinstance(exc, DuplicateKeyError) else "not valid YAML"
        raise ConfigError(f"{path}: {kind}{where}: {problem}") from None
    except RecursionError:  # PyYAML composes nested collections recursively (kept: a deep stack on entry)
        raise ConfigError(f"{path}: not valid YAML: lists or mappings nested too deeply") from None
    except (ValueError, IndexError, TypeError, OverflowError) as exc:
        # PyYAML's constructors raise these for malformed tagged scalars (`!!int x`, an empty `!!float`)
        raise ConfigError(f"{path}: not valid YAML: a tagged value cannot be converted ({exc})") from None


MAX_TEXT_BYTES = 16 * 2**20
"""The most a config, metadata or settings file is read of: the largest such file is some kB. A path to /dev/zero
(or /dev/urandom, or a multi-gigabyte data file given by mistake) was read until memory ran out."""


def read_small_text(path: Path, limit: int = MAX_TEXT_BYTES) -> str:
    """`path.read_text(encoding="utf-8")` of a file that is at most `limit` characters; longer, OSError (EFBIG) whose
    `strerror` says so, which the callers' `except OSError` turn into their own error naming the file."""
    with path.open(encoding="utf-8") as fh:
        text = fh.read(limit + 1)
    if len(text) > limit:
        raise OSError(errno.EFBIG, f"longer than {limit // 2**20} MiB, which no config or metadata file is: a device "
                                   "such as /dev/zero, or the wrong file? give the path of the file itself")
    return text


def read_yaml_mapping(path: Path | str, sample: str = "") -> dict[str, Any]:
    """The top-level mapping of a YAML config file; ConfigError naming the file and the problem. `sample` says where
    a config of this kind to start from is (for an empty file)."""
    path = Path(path)
    try:
        text = read_small_text(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        inside = sorted(p.name for p in path.glob("*.yaml"))[:5]
        hint = f" (this folder holds {', '.join(inside)})" if inside else ""
        raise ConfigError(f"{path}: is a folder, not a config file; give the path of the YAML file itself{hint}") \
            from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        line = exc.object[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: not UTF-8 text (line {line}, byte {exc.start} is 0x{exc.object[exc.start]:02x}); "
                          "save the file as UTF-8") from None
    data = load_yaml(text, path)
    if data is None:
        start = f"; {sample}" if sample else ""
        raise ConfigError(f"{path}: config file is empty (or holds only comments){start}")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def load_model(path: Path | str, model: type[ModelT], sample: str = "") -> ModelT:
    from pydantic import ValidationError

    data = read_yaml_mapping(path, sample)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(path, exc, model=model)) from None


def check_inline_secrets(path: Path | str, keys: Sequence[str]) -> None:
    """A secret written into a config file is only as private as the file: refuse one in a file that group or
    others may read, naming the keys and both fixes (docs/security.md, "Secrets")."""
    if not keys:
        return
    path = Path(path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        listed = ", ".join(keys)
        raise ConfigError(
            f"{path}: {listed} written into this file, which group/others may read (mode {mode:04o}); move each "
            f"secret into its own file ({keys[0]}_file, mode 0600) or the environment ({keys[0].split('.')[-1]}: "
            f"${{VAR}}), or run: chmod 600 {path}"
        )
