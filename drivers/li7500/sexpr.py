"""LI-COR's configuration grammar: parenthesised s-expressions (LI-7500RS/LI-7200RS instruction
manual, App. D).

Frame layout (one message per line, LF terminated; the instrument may be set to send CR LF)::

    (Data (Ndx 2210)(DiagVal 248)(CO2D 1.6874e1)(H2OD 5.2310e2)(Temp 1.8352e1)(Pres 9.7125e1))
    └─head┘└─────────── one (Label value) pair per output, in the instrument's order ─────────┘

Grammar (what `parse` accepts)::

    message := ws* list ws*
    list    := "(" ws* item (ws* item)* ws* ")"
    item    := list | atom | string
    atom    := one or more characters other than "(", ")", '"', space, tab, CR, LF
    string  := '"' any characters except '"' '"'          (e.g. (EOL "0D0A"))

Labels are case sensitive (`(Data ...)` is a record, `(data ...)` is not). Numbers are plain atoms converted by
`number()`: decimal or exponent notation, signed (`-1.25e-3`, `9.7125e1`, `248`). This is a real tokenizer
because regular expressions like `([\\d.]+)` silently miss exponents and signs (a public
SmartFlux plugin's regexes do).

Unlike the instrument, which ignores stray characters around a command, the parser is strict: a received line
that is not exactly one balanced list raises SExprError, because on our side stray characters mean a truncated
or corrupted record (e.g. the first line after connecting to the TCP stream mid-record).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

SExpr = tuple["SExpr | str", ...]
"""A parsed list: its items in order; atoms and strings are `str` (a string keeps its quotes off)."""

_DELIMITERS = frozenset("()\" \t\r\n")
_WHITESPACE = " \t\r\n"


class SExprError(ValueError):
    """The text is not one well-formed s-expression; the message says where."""


#: LI-COR's deepest message nests 4 levels ((Outputs (RS232 (Freq 10)))); anything far deeper is garbage, and an
#: unbounded depth would let one line exhaust the recursion of repr(), render() and comparisons downstream.
MAX_DEPTH = 32


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "(", ")", "atom", "string"
    text: str
    position: int


def tokenize(text: str) -> list[_Token]:
    """Split `text` into parentheses, atoms and quoted strings; whitespace separates and is dropped."""
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char in _WHITESPACE:
            i += 1
        elif char in "()":
            tokens.append(_Token(char, char, i))
            i += 1
        elif char == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise SExprError(f"unterminated string starting at character {i}")
            tokens.append(_Token("string", text[i + 1 : end], i))
            i = end + 1
        else:
            start = i
            while i < n and text[i] not in _DELIMITERS:
                i += 1
            tokens.append(_Token("atom", text[start:i], start))
    return tokens


def parse(text: str) -> SExpr:
    """Parse exactly one list (nested to any depth); raise SExprError for anything else."""
    tokens = tokenize(text)
    if not tokens:
        raise SExprError("empty message")
    if tokens[0].kind != "(":
        raise SExprError(f"message does not start with '(' but with {tokens[0].text!r}")
    stack: list[list[SExpr | str]] = []
    result: SExpr | None = None
    for token in tokens:
        if result is not None:
            raise SExprError(f"characters after the end of the message at character {token.position}")
        if token.kind == "(":
            if len(stack) >= MAX_DEPTH:
                raise SExprError(f"lists nested deeper than {MAX_DEPTH} levels at character {token.position}")
            stack.append([])
        elif token.kind == ")":
            if not stack:
                raise SExprError(f"unbalanced ')' at character {token.position}")
            finished = tuple(stack.pop())
            if not finished:
                raise SExprError(f"empty list '()' ending at character {token.position}")
            if stack:
                stack[-1].append(finished)
            else:
                result = finished
        else:
            stack[-1].append(token.text)
    if result is None:
        raise SExprError(f"truncated message: {len(stack)} unclosed '('")
    return result


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_NOT_A_NUMBER = frozenset(("nan", "+nan", "-nan"))


def number(atom: str) -> float:
    """An atom as a float: `248`, `-0.456`, `1.6874e1`, `1.5386712e-1`, `-2.5E-03`; ValueError otherwise.

    Stricter than float(), which would also take `1_000`, `inf` or ` 12 `. A `nan` spelling returns NaN (how an
    LI-COR marks a missing value is not documented; the driver maps NaN to None).
    """
    if _NUMBER.fullmatch(atom):
        return float(atom)
    if atom.lower() in _NOT_A_NUMBER:
        return math.nan
    raise ValueError(f"{atom!r} is not a number")


def pairs(expression: SExpr) -> dict[str, SExpr | str]:
    """The `(Label value)` items of a list (its head excluded): label -> value atom, or -> the nested list's tail
    when the item has more than one value. Items that are bare atoms are ignored. Later duplicates win."""
    found: dict[str, SExpr | str] = {}
    for item in expression[1:]:
        if isinstance(item, tuple) and isinstance(item[0], str):
            found[item[0]] = item[1] if len(item) == 2 else item[1:]
    return found


def format_number(value: float, digits: int = 7) -> str:
    """LI-COR's exponent notation: `16.874` -> `1.6874000e1` (mantissa with `digits` decimals, bare exponent).

    Python's `1.6874e+01` is turned into `1.6874e1` as in the manual's records; 0 stays `0.0000000e0`.
    """
    mantissa, exponent = f"{value:.{digits}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def render(expression: SExpr | str, *, space_after_head: bool = False) -> str:
    """The inverse of `parse`: `("Outputs", ("BW", "10"))` -> `(Outputs(BW 10))`.

    Atoms in a list are separated by one space; nested lists follow without one, as in the manual's commands.
    `space_after_head` puts one space between the head and the first nested list, as in its data records
    (`(Data (Ndx 1545)(DiagVal 250)...)`); it applies to the outer list only.
    """
    if isinstance(expression, str):
        return expression if expression and not (_DELIMITERS & set(expression)) else f'"{expression}"'
    parts: list[str] = []
    for index, item in enumerate(expression):
        if parts and (isinstance(item, str) or (index == 1 and space_after_head)):
            parts.append(" ")
        parts.append(render(item))
    return "(" + "".join(parts) + ")"
