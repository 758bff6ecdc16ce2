"""Kubernetes label selectors: the `--querynode-selector` string form and the
`spec.querynodeSelector` object form (matchLabels + matchExpressions), one matcher for both."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_SET_EXPR = re.compile(r"^\s*(!?)([A-Za-z0-9_./-]+)\s*(?:\s(notin|in)\s*\(([^)]*)\))?\s*$")


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return labels.get(self.key) in self.values
        if self.operator == "NotIn":
            return labels.get(self.key) not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        found = labels or {}
        return all(r.matches(found) for r in self.requirements)

    def __and__(self, other: LabelSelector) -> LabelSelector:
        return LabelSelector(self.requirements + other.requirements)

    @classmethod
    def parse(cls, text: str) -> LabelSelector:
        """Parse `a=b,c!=d,e in (f,g),h notin (i),j,!k` (kubectl's syntax)."""
        reqs: list[Requirement] = []
        for part in _split_top_level(text):
            if not part.strip():
                continue
            reqs.append(_parse_one(part))
        return cls(tuple(reqs))

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any] | None) -> LabelSelector:
        if not spec:
            return cls()
        reqs = [Requirement(k, "In", frozenset([str(v)])) for k, v in (spec.get("matchLabels") or {}).items()]
        for expr in spec.get("matchExpressions") or []:
            op = str(expr["operator"])
            if op not in {"In", "NotIn", "Exists", "DoesNotExist"}:
                raise ValueError(f"unknown label selector operator {op!r}")
            reqs.append(
                Requirement(str(expr["key"]), op, frozenset(str(v) for v in expr.get("values") or []))
            )
        return cls(tuple(reqs))


def _split_top_level(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _parse_one(part: str) -> Requirement:
    if "!=" in part:
        key, _, value = part.partition("!=")
        return Requirement(key.strip(), "NotIn", frozenset([value.strip()]))
    if "==" in part or ("=" in part and "(" not in part):
        key, _, value = part.partition("==") if "==" in part else part.partition("=")
        return Requirement(key.strip(), "In", frozenset([value.strip()]))
    m = _SET_EXPR.match(part)
    if not m:
        raise ValueError(f"invalid label selector term {part.strip()!r}")
    negated, key, op, values = m.groups()
    if op is None:
        return Requirement(key, "DoesNotExist" if negated else "Exists")
    if negated:
        raise ValueError(f"invalid label selector term {part.strip()!r}")
    vals = frozenset(v.strip() for v in values.split(",") if v.strip())
    return Requirement(key, "In" if op == "in" else "NotIn", vals)
