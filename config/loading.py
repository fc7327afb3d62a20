"""Loading: the YAML read with ruamel.yaml's round-trip loader so every mapping and
sequence remembers where it was written, validated by pydantic, every problem reported
at once with its line."""

from __future__ import annotations

import difflib
import hashlib
import re
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ValidationError,
)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from liaison.config.checks import _cross_check, _metrics_warnings
from liaison.config.errors import ConfigError, ConfigProblem, Loc
from liaison.config.model import Config
from liaison.config.secrets import _check_secrets


def load_config(path: Path, *, check_secrets: bool = True) -> Config:
    """Read and validate the configuration file at `path`; raise ConfigError on any problem.

    Relative paths in the file (data_dir, secret files) are taken relative to
    the file's directory. With `check_secrets` (the default, as at start-up)
    every referenced secret must be readable now; it is not kept.
    """
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _file_error(source, f"configuration file {path} does not exist") from None
    except IsADirectoryError:
        raise _file_error(source, f"{path} is a directory, not a configuration file") from None
    except UnicodeDecodeError:
        raise _file_error(source, f"configuration file {path} is not UTF-8 text") from None
    except OSError as error:
        reason = error.strerror or str(error)
        raise _file_error(source, f"cannot read configuration file {path}: {reason}") from None
    absolute = path.resolve()
    config = parse_config(
        text, source=source, base_dir=absolute.parent, check_secrets=check_secrets
    )
    config._config_path = absolute
    return config


def parse_config(
    text: str,
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    check_secrets: bool = False,
) -> Config:
    """Validate configuration text; raise ConfigError listing every problem with its line.

    `source` names the text in messages. Relative paths are resolved against
    `base_dir` when given and left relative otherwise. `check_secrets` also
    reads every referenced secret (and warns about loosely protected files);
    it is off here so that parsing touches neither the environment nor files.
    """
    root = _load_yaml(text, source)
    problems: list[ConfigProblem] = []
    data: dict[str, Any] = _plain(root, (), root, problems)
    context = {"base_dir": base_dir}
    warnings: list[ConfigProblem] = []

    config: Config | None = None
    try:
        config = Config.model_validate(data, context=context)
    except ValidationError as error:
        problems.extend(_problems_from_validation(error, root))
    cross_problems, cross_warnings = _cross_check(data)
    problems.extend(_at(root, loc, message) for loc, message in cross_problems)
    warnings.extend(_at(root, loc, message) for loc, message in cross_warnings)
    if config is not None:
        warnings.extend(_at(root, loc, message) for loc, message in _metrics_warnings(config))
    if check_secrets:
        secret_problems, secret_warnings = _check_secrets(data, context)
        problems.extend(_at(root, loc, message) for loc, message in secret_problems)
        warnings.extend(_at(root, loc, message) for loc, message in secret_warnings)

    if problems or config is None:
        raise ConfigError(_in_file_order(problems), source=source)
    config._warnings = [warning.render(source) for warning in _in_file_order(warnings)]
    config._source_sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return config


def _file_error(source: str, message: str) -> ConfigError:
    return ConfigError([ConfigProblem(path="", line=None, message=message)], source=source)


def _load_yaml(text: str, source: str) -> Any:
    yaml = YAML(typ="rt")
    try:
        root = yaml.load(text)
    except MarkedYAMLError as error:
        raise ConfigError([_yaml_problem(error)], source=source) from None
    except YAMLError as error:
        raise ConfigError(
            [ConfigProblem("", None, f"YAML error: {error}")], source=source
        ) from None
    if root is None:
        raise ConfigError([ConfigProblem("", None, "the configuration is empty")], source=source)
    if not isinstance(root, CommentedMap):
        raise ConfigError(
            [ConfigProblem("", 1, "the configuration must be a mapping of sections (key: value)")],
            source=source,
        )
    return root


def _yaml_problem(error: MarkedYAMLError) -> ConfigProblem:
    mark = error.problem_mark or error.context_mark
    line = mark.line + 1 if mark is not None else None
    if isinstance(error, DuplicateKeyError):
        # ruamel's message quotes both values, which may be a secret: name only the key.
        match = re.search(r'found duplicate key "(.*?)" with value', str(error.problem))
        key = f" {match.group(1)!r}" if match else ""
        return ConfigProblem("", line, f"duplicate key{key}; each key may appear once")
    message = f"YAML syntax error: {error.problem or error.context}"
    if error.problem and "'@'" in error.problem:
        message += ' (quote Matrix user ids: "@name:server")'
    return ConfigProblem("", line, message)


def _plain(node: Any, loc: Loc, root: CommentedMap, problems: list[ConfigProblem]) -> Any:
    """Turn the round-trip tree into plain dicts, lists and scalars for pydantic."""
    if isinstance(node, CommentedMap):
        return {key: _plain(value, (*loc, key), root, problems) for key, value in node.items()}
    if isinstance(node, CommentedSeq):
        return [_plain(item, (*loc, index), root, problems) for index, item in enumerate(node)]
    if isinstance(node, TaggedScalar):
        # `room: !abc:server` unquoted: YAML reads the leading "!" as a tag.
        intended = f"{node.tag}{node.value or ''}"
        problems.append(
            _at(
                root,
                loc,
                f"YAML reads a value starting with '!' as a tag; quote it: {intended!r}",
            )
        )
        return intended
    if isinstance(node, str):
        return str(node)
    return node


def _problems_from_validation(error: ValidationError, root: CommentedMap) -> list[ConfigProblem]:
    problems = []
    for detail in error.errors(include_url=False, include_input=False):
        loc: Loc = tuple(detail["loc"])
        if detail["type"] == "extra_forbidden":
            message = _unknown_field_message(loc)
        elif detail["type"] == "value_error" and "error" in detail.get("ctx", {}):
            message = str(detail["ctx"]["error"])
        else:
            message = detail["msg"]
        problems.append(_at(root, loc, message))
    return problems


def _unknown_field_message(loc: Loc) -> str:
    name = loc[-1]
    known = _field_names_at(loc[:-1])
    if not known:
        return f"unknown field {name!r}"
    close = difflib.get_close_matches(str(name), known, n=1)
    if close:
        return f"unknown field {name!r}; did you mean {close[0]!r}?"
    return f"unknown field {name!r}; expected one of: {', '.join(known)}"


def _field_names_at(loc: Loc) -> list[str]:
    """The field names of the model found at `loc` in Config, if it is a model."""
    model: type[BaseModel] = Config
    for step in loc:
        if isinstance(step, int):
            continue
        field = model.model_fields.get(step)
        inner = _model_in(field.annotation) if field is not None else None
        if inner is None:
            return []
        model = inner
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside `X`, `X | None`, `list[X]` or `tuple[X, ...]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType, list, tuple, Annotated):
        for arg in get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


# --------------------------------------------------------------------------- lines


def _at(root: CommentedMap, loc: Loc, message: str) -> ConfigProblem:
    return ConfigProblem(path=format_path(loc), line=_line_of(root, loc), message=message)


def format_path(loc: Iterable[str | int]) -> str:
    """`("posts", 3, "room")` -> `posts[3].room`."""
    text = ""
    for step in loc:
        if isinstance(step, int):
            text += f"[{step}]"
        else:
            text += f".{step}" if text else str(step)
    return text


def _line_of(root: CommentedMap, loc: Loc) -> int | None:
    """The 1-based line of the deepest node on `loc` that exists in the file.

    A missing field therefore points at its parent mapping; a key reached
    through a YAML merge (`<<: *defaults`) points at the mapping that merged it.
    """
    node: Any = root
    line: int | None = root.lc.line + 1
    for step in loc:
        try:
            if isinstance(node, CommentedMap) and step in node:
                position = node.lc.key(step)
            elif isinstance(node, CommentedSeq) and isinstance(step, int) and step < len(node):
                position = node.lc.item(step)
            else:
                break
        except (KeyError, TypeError, IndexError):
            break
        line = position[0] + 1
        node = node[step]
    return line


def _in_file_order(problems: Iterable[ConfigProblem]) -> list[ConfigProblem]:
    unique = list(dict.fromkeys(problems))
    return sorted(unique, key=lambda problem: (problem.line is None, problem.line or 0))
