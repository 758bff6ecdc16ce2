"""Filter expressions an attacker sends (the Milvus boolean expression language, which the
querynode evaluates and the proxy passes through): the issue's classes by hand, and random ones
from a small grammar over the target's fields, valid and broken.

`fields` names the target's fields by kind: `int`, `float`, `bool`, `varchar` (schema fields) and
`meta` (keys of the dynamic field `$meta`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

Fields = Mapping[str, Sequence[str]]
DEFAULT_FIELDS: Fields = {"int": ["id"], "float": [], "bool": [], "varchar": [], "meta": ["key"]}


def _one(fields: Fields, kind: str, fallback: str = "x") -> str:
    names = list(fields.get(kind, ()))
    return names[0] if names else fallback


def fixed_hostile(fields: Fields) -> list[tuple[str, str]]:
    """(filter, label): one of each hostile shape."""
    text = _one(fields, "varchar", _one(fields, "meta"))
    num = _one(fields, "int")
    flag = _one(fields, "bool", f"{num} > 0")
    meta = _one(fields, "meta")
    out = [
        (f"{text} like '" + "%a" * 40 + "%b'", "like with 41 %"),
        (f"{text} like '" + "%" * 1000 + "'", "like with 1000 % in a row"),
        (f"{text} like '" + "_%" * 200 + "'", "like with 200 _%"),
        (f"{text} like '%a_a%" * 10 + "1'", "like with _ inside % pieces"),
        (f"{text} like '\\\\'", "like ending with a backslash"),
        (f"{text} like '\\%\\_%'", "like with escapes"),
        (f"{meta} like '" + "%a" * 40 + "%'", "like with 41 % on a $meta key"),
        ("(" * 100 + flag + ")" * 100, "100 parentheses"),
        ("(" * 5000 + flag + ")" * 5000, "5000 parentheses"),
        ("not " * 300 + flag, "300 nots"),
        ("(" * 70_000, "70,000 open parentheses"),
        (f"{num} in [" + ",".join(str(i) for i in range(70_000)) + "]", "a 70,000-item list"),
        (f"{num} in [" + ",".join(str(i) for i in range(5000)) + "]", "a 5,000-item list"),
        (f"{num} == 9223372036854775808", "an integer beyond int64"),
        (f"{num} == -9223372036854775809", "an integer below int64"),
        (f"{num} == 1" + "0" * 5000, "an integer beyond Python's digit limit"),
        (f"{num} > 1e999", "a float beyond float range"),
        (f"{num} > -1e999", "a float below float range"),
        (f"{num} > 1e-999", "a float below float resolution"),
        (f"{num} > 0x10", "a hex literal"),
        (" or ".join(f"{num} == {i}" for i in range(3000)), "3,000 ors"),
        (" and ".join(f"{flag}" for _ in range(3000)), "3,000 ands"),
        ("x" * 70_000, "a 70,000-character name"),
        (f'{text} == "' + "\\" * 1001, "an unterminated string of backslashes"),
        (f"{text} == '\x00'", "a NUL in a string"),
        (f"{text} == '\ud800'", "a lone surrogate"),
        (f'$meta["{meta}"] == 1', "$meta[key]"),
        ('$meta["' + "k" * 10_000 + '"] == 1', "$meta with a 10,000-character key"),
        ('$meta[""] == 1', "$meta with an empty key"),
        ("$meta == 1", "$meta compared whole"),
        ("1 == 1", "literals only"),
        ("true", "a bare literal"),
        (f"{num} == {num}", "field against field"),
        ("", "empty"),
        ("   ", "blank"),
        (f"{num} = 1", "single ="),
        (f"{num} === 1", "triple ="),
        (f"{num} == ", "a missing operand"),
        ("and or not", "keywords only"),
        ("[[[[", "brackets"),
        (f"{num} in {num}", "in without a list"),
        (f"{num} in [{num}]", "a name inside a list"),
        (f"{text} like 5", "like with a number"),
        (f"{flag} > true", "ordering booleans"),
        ("😀 == 1", "an emoji name"),
        ("\u202e" + f"{num} == 1", "a bidi override"),
        (f"{num} == 1 ;; drop", "trailing garbage"),
        ("__import__('os')", "Python"),
    ]
    out += [(f"unknown_key_{i} == {i}", "a distinct unknown $meta key") for i in range(50)]
    return out


_OPS = ["==", "!=", "<", "<=", ">", ">="]


def _literal(rng: random.Random, kind: str) -> str:
    if kind == "int":
        return rng.choice([str(rng.randint(-5, 3000)), str(rng.randint(-(2**63), 2**63 - 1)), "0", "-0"])
    if kind == "float":
        return rng.choice([f"{rng.uniform(-10, 10):.3f}", "1e30", "3.5e38", "-1e-30", "0.0"])
    if kind == "bool":
        return rng.choice(["true", "false", "True", "FALSE"])
    return repr("".join(rng.choice("abcdeé %_\\'\"") for _ in range(rng.randint(0, 12))))


def _predicate(rng: random.Random, fields: Fields) -> str:
    kinds = [k for k in ("int", "float", "bool", "varchar", "meta") if fields.get(k)]
    kind = rng.choice(kinds)
    name = rng.choice(list(fields[kind]))
    if kind == "meta":
        name = rng.choice([name, f'$meta["{name}"]', f"rnd_{rng.randrange(10**6)}"])
        kind = rng.choice(["int", "varchar", "bool"])
    shape = rng.randrange(5)
    if kind == "bool" and shape < 2:
        return name if rng.random() < 0.5 else f"{name} == {_literal(rng, 'bool')}"
    if shape == 0:
        return f"{name} {rng.choice(_OPS)} {_literal(rng, kind)}"
    if shape == 1:
        items = ", ".join(_literal(rng, kind) for _ in range(rng.randint(0, 8)))
        return f"{name} {rng.choice(['in', 'not in'])} [{items}]"
    if shape == 2:
        pattern = "".join(rng.choice(["%", "_", "a", "b", "\\%", "é"]) for _ in range(rng.randint(0, 20)))
        return f"{name} {rng.choice(['like', 'not like'])} '{pattern}'"
    if shape == 3:
        return f"{_literal(rng, kind)} {rng.choice(_OPS)} {name}"
    return f"{name} {rng.choice(_OPS)} {_literal(rng, rng.choice(['int', 'float', 'bool', 'varchar']))}"


def _expression(rng: random.Random, fields: Fields, depth: int) -> str:
    if depth <= 0 or rng.random() < 0.35:
        return _predicate(rng, fields)
    shape = rng.randrange(4)
    if shape == 0:
        return f"({_expression(rng, fields, depth - 1)})"
    if shape == 1:
        return f"{rng.choice(['not ', '!'])}{_expression(rng, fields, depth - 1)}"
    joiner = rng.choice([" and ", " or ", " && ", " || ", " AND "])
    return joiner.join(_expression(rng, fields, depth - 1) for _ in range(rng.randint(2, 4)))


def _mutate(rng: random.Random, text: str) -> str:
    if not text:
        return text
    how = rng.randrange(4)
    i = rng.randrange(len(text))
    if how == 0:
        return text[:i]
    if how == 1:
        return text[:i] + rng.choice(["(", ")", "'", '"', "[", "]", ",", "\\", "&", "|", "=", "!"]) + text[i:]
    if how == 2:
        return text[:i] + text[i + 1 :]
    return text[:i] + text[i:] * rng.randint(2, 5)


def random_filter(rng: random.Random, fields: Fields) -> tuple[str, str]:
    """(filter, label): a random expression, sometimes broken."""
    text = _expression(rng, fields, rng.randint(0, 6))
    if rng.random() < 0.4:
        return _mutate(rng, text), "random, mutated"
    return text, "random"
