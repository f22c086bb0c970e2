"""Turn parsed YAML into typed dataclasses, with the file and key path in every error.

A schema is an ordinary dataclass. Field types drive the checks (``int``, ``float``, ``str``,
``bool``, ``Literal[...]``, ``list[X]``, ``tuple[X, Y]``, nested dataclasses, unions tried in
order); ``field(metadata=...)`` adds ``min``, ``max`` and ``help`` (shown as the fix). A class may
define ``validate(self, where)`` for checks that involve several fields.

A field whose metadata has ``sections`` (a function returning ``{key: dataclass}``, asked at each
build so that plugins registered later count) is not a key itself: each of those keys the file has is
built with its dataclass, and the field gets them as ``{key: object}`` (a target's ``loihi2:``
section, read with the dataclass its hardware engine registered).
"""

from __future__ import annotations

import dataclasses
import math
import reprlib
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from codesign.errors import SpecError

__all__ = ["Where", "read_yaml", "build"]

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Where:
    """A place in an input file: the file and the dotted key path inside it."""

    file: str | None
    key: str = ""

    def child(self, name: str | int) -> Where:
        if isinstance(name, int):
            return Where(self.file, f"{self.key}[{name}]")
        return Where(self.file, f"{self.key}.{name}" if self.key else name)

    def error(self, message: str, fix: str | None = None) -> SpecError:
        return SpecError(message, file=self.file, key=self.key or None, fix=fix)


#: Limits on an input file, far above any real study, target or rule file (a few kB, under ten
#: levels deep): past them PyYAML would take minutes, recurse out of the stack, or hand back a
#: small document of aliases that expands to billions of values for whatever walks it.
MAX_FILE_BYTES = 1_000_000
MAX_DEPTH = 100
MAX_NODES = 1_000_000


class _Refused(Exception):
    """A document over one of the limits: what is wrong and the fix."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(message)
        self.message, self.fix = message, fix


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing documents nested or expanding past :data:`MAX_DEPTH` and
    :data:`MAX_NODES` before anything is built from them (it overrides two Composer methods, public
    but undocumented, whose signatures have been stable since PyYAML 3)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels at line {mark.line + 1}",
                               fix="write the file flat, as in the examples in studies/ and hw_targets/")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> Any:
        node = super().compose_document()
        nodes, depth = _expanded_size(node)
        if nodes > MAX_NODES or depth > MAX_DEPTH:
            raise _Refused(f"its aliases (*name) expand to more than {MAX_NODES:,} values or {MAX_DEPTH} levels",
                           fix="write the values out instead of repeating aliases of aliases")
        return node


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def _expanded_size(root: yaml.Node) -> tuple[int, int]:
    """(values, depth) of the document once its aliases are expanded: computed once per node, without
    recursion, so a small graph of aliases that expands to billions costs only its own size here."""
    done: dict[int, tuple[int, int]] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            open_nodes.discard(key)
            sizes = [done[id(child)] for child in _children(node)]
            done[key] = (min(1 + sum(n for n, _ in sizes), MAX_NODES + 1), 1 + max((d for _, d in sizes), default=0))
        elif key not in done:
            if key in open_nodes:
                raise _Refused("an alias (*name) refers to a node that contains it",
                               fix="remove the recursive alias")
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node) if id(child) not in done)
    return done[id(root)]


def read_yaml(path: str | Path, what: str = "file") -> Any:
    """Parse a YAML file, turning a missing, unreadable, oversized, non-UTF-8 or malformed file into a
    :class:`SpecError`."""
    path = Path(path)
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError as exc:
        raise SpecError(f"{what} not found", file=str(path),
                        fix="check the path; it is read relative to the current directory") from exc
    except OSError as exc:
        raise SpecError(f"cannot read {what}: {exc.strerror}", file=str(path),
                        fix="give the path of a file you can read") from exc
    if len(data) > MAX_FILE_BYTES:
        raise SpecError(f"{what} is larger than {MAX_FILE_BYTES:,} bytes", file=str(path),
                        fix=f"is this the right file? A {what} is a few kB of YAML")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise SpecError(f"not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line}", file=str(path),
                        fix="save the file as UTF-8; is this the right file?") from None
    try:
        return yaml.load(text, Loader=_BoundedLoader)
    except _Refused as exc:
        raise SpecError(exc.message, file=str(path), fix=exc.fix) from None
    except yaml.reader.ReaderError as exc:
        line = text[:exc.position].count("\n") + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise SpecError(f"character U+{code:04X} at line {line} is not allowed in YAML", file=str(path),
                        fix="remove it; is this the right file?") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise SpecError(f"malformed YAML{line}: {problem}", file=str(path),
                        fix="correct the YAML syntax (indentation, colons, quotes)") from exc


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if origin is tuple:
        return f"a list of {len(typing.get_args(tp))} numbers"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _container(tp: Any) -> type | None:
    """The YAML container a schema type is written as: list, dict, or None for a scalar."""
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        return list
    return dict if origin is dict or dataclasses.is_dataclass(tp) else None


def _convert(value: Any, tp: Any, where: Where, finite: bool = True) -> Any:
    """``value`` as type ``tp``; floats must be finite unless ``finite`` is False (a field's
    ``metadata={"finite": False}``): no input of a simulation means anything as NaN or infinity."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        return _convert_union(value, tp, where, finite)
    if tp is type(None):
        if value is None:
            return None
        raise where.error(f"expected null, got {_show(value)}")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise where.error(f"expected {_type_name(tp)}, got {_show(value)}",
                          fix=f"use one of: {', '.join(map(str, typing.get_args(tp)))}")
    if origin in (list, dict, tuple):
        return _convert_container(value, tp, where, finite)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    return _convert_scalar(value, tp, where, finite)


def _convert_union(value: Any, tp: Any, where: Where, finite: bool) -> Any:
    """``value`` as the first option of the union ``tp`` that takes it."""
    options = [o for o in typing.get_args(tp) if o is not type(None)]
    if value is None and len(options) < len(typing.get_args(tp)):
        return None
    shaped = [o for o in options if _container(o) is type(value)]
    if len(options) == 1 or len(shaped) == 1:
        # Optional[X], or a list (mapping) where one option is a list (mapping): its own error
        # ("[0][1]: expected a finite number") says more than "expected X or Y".
        return _convert(value, options[0] if len(options) == 1 else shaped[0], where, finite)
    for option in options:
        try:
            return _convert(value, option, where, finite)
        except SpecError:
            continue
    raise _type_error(value, tp, where)


def _convert_container(value: Any, tp: Any, where: Where, finite: bool) -> Any:
    """``value`` as ``list[X]``, ``dict[K, V]`` or ``tuple[X, Y, ...]``, item by item."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        if not isinstance(value, list):
            raise _type_error(value, tp, where)
        (item,) = args
        return [_convert(v, item, where.child(i), finite) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _type_error(value, tp, where)
        key_type, value_type = args
        return {_convert(k, key_type, where): _convert(v, value_type, where.child(str(k)), finite)
                for k, v in value.items()}
    if not isinstance(value, (list, tuple)) or len(value) != len(args):
        raise _type_error(value, tp, where)
    return tuple(_convert(v, t, where.child(i), finite) for i, (v, t) in enumerate(zip(value, args)))


def _convert_scalar(value: Any, tp: Any, where: Where, finite: bool) -> Any:
    """``value`` as ``bool``, ``int``, ``float`` or ``str``; no bool passes as a number."""
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        number = _number(value)
        if number is not None:
            if finite and not math.isfinite(number):
                raise where.error(f"expected a finite number, got {_show(value)}", fix="write a finite number")
            return number
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a schema bug, not a user error
        raise TypeError(f"unsupported schema type {tp!r}")
    raise _type_error(value, tp, where)


def _number(value: Any) -> float | None:
    """``value`` as a float if it is a number (not a bool) or a string Python reads as one."""
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # An integer past the largest float (10**400) is as good as infinite (float() of it overflows).
        if abs(value) > sys.float_info.max:
            return math.inf if value > 0 else -math.inf
        return float(value)
    if isinstance(value, str):
        # YAML 1.1 reads 26e-12 (no dot) as a string; accept what Python reads as a number.
        try:
            return float(value)
        except ValueError:
            return None
    return None


_SHORT = reprlib.Repr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlevel = 60, 60, 3


def _show(value: Any) -> str:
    """A value for an error message, cut short: a document of aliases can make it billions long."""
    return _SHORT.repr(value)


def _type_error(value: Any, tp: Any, where: Where):
    return where.error(f"expected {_type_name(tp)}, got {_show(value)}", fix=f"write {_type_name(tp)} here")


def _check_range(value: Any, meta: typing.Mapping[str, Any], where: Where) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    low, high = meta.get("min"), meta.get("max")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if low is not None and high is not None else (
            f"at least {low}" if low is not None else f"at most {high}")
        raise where.error(f"must be {bounds}, got {value!r}", fix=meta.get("help") or f"use a value {bounds}")


def build(cls: type[T], data: Any, where: Where) -> T:
    """Build the dataclass ``cls`` from ``data`` (a parsed YAML mapping), checking every field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise where.error(f"expected a mapping of keys to values, got {_show(data)}",
                          fix="write key: value lines (see the examples in studies/ and hw_targets/)")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    sections = {name: f.metadata["sections"]() for name, f in fields.items() if "sections" in f.metadata}
    known = [name for name in fields if name not in sections] + [key for keys in sections.values() for key in keys]
    for key in data:
        if key not in known:
            raise where.child(str(key)).error(
                "unknown key", fix=f"spelling error? known keys here: {', '.join(known)}")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name in sections:
            values[name] = {key: build(section, data[key], where.child(key))
                            for key, section in sections[name].items() if key in data}
            continue
        here = where.child(name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise here.error("missing required key", fix=f.metadata.get("help") or
                                 f"add {name}: <{_type_name(hints[name])}>")
            continue
        value = _convert(data[name], hints[name], here, f.metadata.get("finite", True))
        _check_range(value, f.metadata, here)
        if isinstance(value, tuple):
            for i, v in enumerate(value):
                _check_range(v, f.metadata, here.child(i))
        values[name] = value
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate(where)
    return obj
