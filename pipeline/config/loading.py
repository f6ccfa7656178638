"""Reading a params file: YAML text (repeated keys refused, as DVC does) to a validated
:class:`~pipeline.config.params.Params`, every problem a one-line :class:`ConfigError`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipeline.config.params import Params
from pipeline.schema import first_error


class ConfigError(ValueError):
    """A params file that cannot be used; ``str(err)`` is the one-line message for the user."""


def _format_error(err: ValidationError, source: str) -> str:
    path, msg = first_error(err)
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{source}: {path or '<root>'}: {msg}{more}"


def parse_params(raw: Any, source: str = "params.yaml") -> Params:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None


class DuplicateKeyError(yaml.YAMLError):
    """A key given twice in one mapping."""

    def __init__(self, path: str, line: int, first: int):
        super().__init__(f"line {line}: {path}: duplicate key (first given on line {first})")
        self.path, self.line, self.first = path, line, first


_FAST = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser where PyYAML has it: ~20x faster


def refuse_repeated_keys(node: yaml.Node, keys: tuple = ()) -> None:
    """Raise :class:`DuplicateKeyError` for a key given twice in one mapping at any depth, as DVC
    does (PyYAML would keep the last value silently). Keys beside a merge key (``<<: *train``)
    override the merged ones: they are not repeats, since the check runs on the mappings as
    written (the composed nodes), before merging. An anchor's node is checked where it is defined."""
    seen: set[int] = set()
    stack = [(node, keys)]
    while stack:
        node, keys = stack.pop()
        if id(node) in seen:  # an alias: the same node again
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    earlier = first.setdefault((key.tag, key.value), key)
                    if earlier is not key:
                        path = ".".join(str(k) for k in [*keys, key.value])
                        raise DuplicateKeyError(path, key.start_mark.line + 1, earlier.start_mark.line + 1)
                stack.append((value, (*keys, key.value if isinstance(key, yaml.ScalarNode) else "?")))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, (*keys, i)) for i, item in enumerate(node.value))


def read_yaml(text: str, source: str) -> Any:
    """``text`` parsed as YAML, refusing repeated keys (:func:`refuse_repeated_keys`); any problem is
    a one-line ConfigError."""
    try:
        loader = _FAST(text)  # parsed once: the check reads the nodes the values are built from
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            refuse_repeated_keys(node)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except DuplicateKeyError as err:
        raise ConfigError(f"{source}: {err}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{source}:{where}: not valid YAML") from None


def require_device(device: str, source: str) -> None:
    """Fail at validation rather than when a stage starts: ``device: cuda`` needs a CUDA device here."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{source}: device: 'cuda' requested but no CUDA device is available")


def load_params(path: str | Path = "params.yaml") -> Params:
    """The params file at ``path``, validated, on a machine that can run it (its device exists)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; give the params file (a YAML file such as params.yaml)") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file; a params file is YAML text (such as params.yaml)") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read: {err.strerror or err}") from None
    params = parse_params(read_yaml(text, str(path)), str(path))
    require_device(params.device, str(path))
    return params
