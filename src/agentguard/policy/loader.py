"""Loading a policy from YAML or JSON, strictly: duplicate keys, unknown keys and wrong types
are errors with a path, never defaults."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agentguard.errors import PolicyError
from agentguard.policy.model import Policy

MAX_POLICY_BYTES = 4 * 1024 * 1024


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: YAML would silently keep the last one."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, str):
            raise yaml.constructor.ConstructorError(
                None, None, f"keys must be strings, found {key!r}", key_node.start_mark
            )
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key '{key}' (first at line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_policy_text(text: str, source: str = "<policy>") -> dict[str, Any]:
    """YAML (or JSON, which is YAML) text to a mapping, refusing duplicates and odd types."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_POLICY_BYTES:
        raise PolicyError(f"{source}: policy is larger than {MAX_POLICY_BYTES} bytes")
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PolicyError(f"{source}: not valid YAML", [str(exc).replace("\n", " ")]) from None
    if not isinstance(data, Mapping):
        raise PolicyError(f"{source}: a policy must be a mapping at the top level")
    return dict(data)


def format_validation_errors(exc: ValidationError) -> list[str]:
    """Pydantic errors as `path: message` lines a policy author can act on."""
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            problems.append(f"{loc}: unknown key (typo?)")
        else:
            problems.append(f"{loc}: {err['msg']}")
    return problems


def policy_from_mapping(data: Mapping[str, Any], source: str = "<policy>") -> Policy:
    try:
        return Policy.model_validate(dict(data))
    except ValidationError as exc:
        raise PolicyError(f"{source}: invalid policy", format_validation_errors(exc)) from None


def load_policy(source: str | Path | Mapping[str, Any]) -> Policy:
    """A Policy from a YAML/JSON file path, YAML text, or a mapping. Raises PolicyError."""
    if isinstance(source, Mapping):
        return policy_from_mapping(source)
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise PolicyError(f"{path}: cannot read policy: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise PolicyError(f"{path}: policy is not UTF-8 text") from None
        return policy_from_mapping(parse_policy_text(text, str(path)), str(path))
    return policy_from_mapping(parse_policy_text(source))
