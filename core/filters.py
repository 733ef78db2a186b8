"""containerd's filter language: parse a filter once per request, match it per object.

Grammar (containerd ``pkg/filters``)::

    selectors := selector ("," selector)*          "," is AND
    selector  := fieldpath [operator value]        no operator: presence test
    fieldpath := field ("." field)*
    field     := quoted | [A-Za-z0-9_]+
    operator  := "==" | "!=" | "~="
    value     := quoted | [^\\s,]+
    quoted    := Go string syntax, "..."; for "~=" only also /.../ or |...|

API requests carry ``repeated string filters``; :func:`parse_all` ORs them.

Semantics, as containerd's:

* ``==`` holds when the field is present and equal; ``!=`` compares the value the adaptor
  returns even when the field is absent (an absent field is ``""``, so ``labels.x!=y`` holds
  for objects without that label); ``~=`` searches (unanchored) the returned value, absent
  fields included.
* Inside a quoted field or value the escapes are Go's (``\\n``, ``\\t``, ``\\\\``, ``\\xHH``,
  ``\\uHHHH``, octal ...) plus an escaped delimiter. A regex quoted with ``/.../`` or ``|...|``
  is unquoted with the same rules, so ``\\d`` there is an illegal escape: write the regex
  unquoted (``name~=^a\\d+``) or double the backslash (``name~=/^a\\\\d+/``).
* An unquoted value may contain ``=``, ``.``, ``/`` and other punctuation after its first
  character; it ends at ``,`` or whitespace. Its first character may not be one of ``,.=!~``
  or a quote (``/``, ``|``, ``"``), so ``labels.k==/v`` is an unterminated quote, as upstream.
* Label keys with dots may be quoted (``labels."io.kubernetes.pod.name"``); adaptors built on
  :func:`adapt_labels` join the remaining path with ``.``, so the unquoted form finds the same
  key.

Differences from containerd, on purpose:

* Whitespace is insignificant between tokens (containerd rejects it before ``,`` and at the
  end). Every filter containerd accepts means the same here; a whitespace-only filter is
  empty and matches everything.
* Regexes are Python ``re`` (containerd: Go RE2) and are compiled at parse time: an invalid
  one is InvalidArgument instead of a filter that silently matches nothing.
* An illegal escape is reported at the escape itself rather than at the opening quote.

Parse errors are :class:`FilterSyntaxError` (an InvalidArgument) with containerd's message
shape, which marks the offending character inside the input::

    filters: parse error: [labels. >|?|< "x"==y]: expected field or quoted
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import attrs

from pycontainerd.core import errdefs

__all__ = [
    "ALWAYS",
    "Adaptor",
    "AdaptorLike",
    "All",
    "AnyOf",
    "FieldAdaptor",
    "FieldFn",
    "Filter",
    "FilterSyntaxError",
    "Operator",
    "Selector",
    "adapt_labels",
    "parse",
    "parse_all",
]

#: ``(fieldpath) -> (value, present)``.
FieldFn = Callable[[list[str]], tuple[str, bool]]


@runtime_checkable
class FieldAdaptor(Protocol):
    """An object that resolves a field path to ``(value, present)``."""

    def field(self, fieldpath: list[str]) -> tuple[str, bool]: ...


#: What :meth:`Filter.match` accepts: a :class:`FieldAdaptor` or a bare :data:`FieldFn`.
AdaptorLike = FieldAdaptor | FieldFn


def _field_fn(adaptor: AdaptorLike) -> FieldFn:
    fn = getattr(adaptor, "field", None)
    if fn is not None:
        return fn  # type: ignore[no-any-return]
    if callable(adaptor):
        return adaptor
    raise TypeError(f"filters: cannot adapt {type(adaptor).__name__}: need .field() or a callable")


# --------------------------------------------------------------------------- filters


class Filter:
    """A parsed filter. ``match`` takes an adaptor for one object."""

    __slots__ = ()

    def match(self, adaptor: AdaptorLike) -> bool:
        return self._match(_field_fn(adaptor))

    def _match(self, field: FieldFn) -> bool:
        raise NotImplementedError


class _Always(Filter):
    __slots__ = ()

    def _match(self, field: FieldFn) -> bool:
        return True

    def match(self, adaptor: AdaptorLike) -> bool:
        return True

    def __repr__(self) -> str:
        return "ALWAYS"


#: Matches every object (the empty filter).
ALWAYS: Filter = _Always()


class Operator(enum.Enum):
    PRESENT = "?"
    EQUAL = "=="
    NOT_EQUAL = "!="
    MATCHES = "~="


@attrs.frozen(kw_only=True)
class Selector(Filter):
    """One ``fieldpath [op value]`` term."""

    fieldpath: tuple[str, ...]
    operator: Operator
    value: str = ""
    regex: re.Pattern[str] | None = attrs.field(default=None, eq=False, repr=False)

    def _match(self, field: FieldFn) -> bool:
        value, present = field(list(self.fieldpath))
        op = self.operator
        if op is Operator.PRESENT:
            return present
        if op is Operator.EQUAL:
            return present and value == self.value
        if op is Operator.NOT_EQUAL:
            return value != self.value
        assert self.regex is not None
        return self.regex.search(value) is not None


@attrs.frozen
class All(Filter):
    """AND of its filters (the ``,`` of one filter string)."""

    filters: tuple[Filter, ...]

    def _match(self, field: FieldFn) -> bool:
        return all(f._match(field) for f in self.filters)


@attrs.frozen
class AnyOf(Filter):
    """OR of its filters (the repeated filter strings of a request)."""

    filters: tuple[Filter, ...]

    def _match(self, field: FieldFn) -> bool:
        return any(f._match(field) for f in self.filters)


# --------------------------------------------------------------------------- adaptors


def adapt_labels(fieldpath: Sequence[str], labels: Mapping[str, str] | None) -> tuple[str, bool]:
    """Look up a map field. ``fieldpath`` is the path *after* the map's own name
    (``labels.a.b`` -> ``["a", "b"]``), joined with ``.`` to form the key. A key that is
    present with an empty value is present."""
    if not fieldpath or not labels:
        return "", False
    key = fieldpath[0] if len(fieldpath) == 1 else ".".join(fieldpath)
    value = labels.get(key)
    if value is None:
        return "", False
    return value, True


@attrs.frozen(kw_only=True)
class Adaptor:
    """A ready-made adaptor for the common "some string fields + labels" objects.

    ``fields`` maps a dotted path (``"name"``, ``"target.digest"``) to its value; a scalar field
    is present when its value is non-empty (proto3, as containerd's adaptors). ``labels`` and
    ``annotations`` answer ``labels.<key>`` and ``annotations.<key>``."""

    fields: Mapping[str, str]
    labels: Mapping[str, str] | None = None
    annotations: Mapping[str, str] | None = None

    @classmethod
    def from_mapping(
        cls,
        fields: Mapping[str, str],
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> Adaptor:
        return cls(fields=fields, labels=labels, annotations=annotations)

    def field(self, fieldpath: list[str]) -> tuple[str, bool]:
        if not fieldpath:
            return "", False
        head = fieldpath[0]
        if head == "labels":
            return adapt_labels(fieldpath[1:], self.labels)
        if head == "annotations":
            return adapt_labels(fieldpath[1:], self.annotations)
        key = head if len(fieldpath) == 1 else ".".join(fieldpath)
        value = self.fields.get(key)
        if not value:
            return "", False
        return value, True


# --------------------------------------------------------------------------- errors


class FilterSyntaxError(errdefs.InvalidArgument):
    """A filter that does not parse. ``position`` is a character offset into ``input``."""

    def __init__(self, input: str, position: int, reason: str) -> None:
        self.input = input
        self.position = position
        self.reason = reason
        if position < len(input):
            where = f"{input[:position]} >|{input[position]}|< {input[position + 1 :]}"
        else:
            where = input
        super().__init__(f"filters: parse error: [{where}]: {reason}")


# --------------------------------------------------------------------------- scanner


class _Tok(enum.Enum):
    EOF = enum.auto()
    QUOTED = enum.auto()
    VALUE = enum.auto()
    FIELD = enum.auto()
    COMMA = enum.auto()
    DOT = enum.auto()
    OPERATOR = enum.auto()
    ILLEGAL = enum.auto()
    OTHER = enum.auto()


_QUOTES = frozenset('"/|')
_OPERATOR_CHARS = frozenset("=!~")
_FIELD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
}
_HEX = frozenset("0123456789abcdefABCDEF")
_OCT = frozenset("01234567")
_OPERATORS = {"==": Operator.EQUAL, "!=": Operator.NOT_EQUAL, "~=": Operator.MATCHES}


def _is_value_char(ch: str) -> bool:
    return ch != "," and not ch.isspace() and ch.isprintable()


@attrs.frozen
class _Token:
    kind: _Tok
    start: int
    text: str
    reason: str = ""  # for ILLEGAL


class _Parser:
    __slots__ = ("_input", "_pos", "_n")

    def __init__(self, text: str) -> None:
        self._input = text
        self._pos = 0
        self._n = len(text)

    # -- scanning

    def _skip_space(self) -> None:
        s, i, n = self._input, self._pos, self._n
        while i < n and s[i].isspace():
            i += 1
        self._pos = i

    def _scan(self, value_mode: bool = False) -> _Token:
        self._skip_space()
        s, start, n = self._input, self._pos, self._n
        if start >= n:
            return _Token(_Tok.EOF, n, "")
        ch = s[start]
        i = start + 1
        if ch == "\0":
            self._pos = i
            return _Token(_Tok.ILLEGAL, start, ch, "unexpected null")
        if ch in _QUOTES:
            while True:
                if i >= n or s[i] == "\n":
                    self._pos = i
                    return _Token(_Tok.ILLEGAL, start, s[start:i], "quoted literal not terminated")
                c = s[i]
                if c == ch:
                    i += 1
                    break
                i += 2 if c == "\\" else 1
            self._pos = i
            return _Token(_Tok.QUOTED, start, s[start:i])
        if ch == ",":
            self._pos = i
            return _Token(_Tok.COMMA, start, ch)
        if ch == ".":
            self._pos = i
            return _Token(_Tok.DOT, start, ch)
        if ch in _OPERATOR_CHARS:
            while i < n and s[i] in _OPERATOR_CHARS:
                i += 1
            self._pos = i
            return _Token(_Tok.OPERATOR, start, s[start:i])
        if value_mode:
            while i < n and _is_value_char(s[i]):
                i += 1
            self._pos = i
            return _Token(_Tok.VALUE, start, s[start:i])
        if ch in _FIELD_CHARS:
            while i < n and s[i] in _FIELD_CHARS:
                i += 1
            self._pos = i
            return _Token(_Tok.FIELD, start, s[start:i])
        self._pos = i
        return _Token(_Tok.OTHER, start, ch)

    def _peek(self) -> _Token:
        saved = self._pos
        tok = self._scan()
        self._pos = saved
        return tok

    def _error(self, position: int, reason: str) -> FilterSyntaxError:
        return FilterSyntaxError(self._input, position, reason)

    # -- grammar

    def parse(self) -> Filter:
        terms = [self._selector()]
        while True:
            tok = self._peek()
            if tok.kind is _Tok.EOF:
                break
            if tok.kind is not _Tok.COMMA:
                raise self._error(tok.start, f"unexpected input: {tok.text[:1]}")
            self._scan()
            terms.append(self._selector())
        return terms[0] if len(terms) == 1 else All(tuple(terms))

    def _selector(self) -> Selector:
        fieldpath = self._fieldpath()
        if self._peek().kind in (_Tok.COMMA, _Tok.EOF):
            return Selector(fieldpath=fieldpath, operator=Operator.PRESENT)
        op = self._operator()
        tok = self._scan(value_mode=True)
        if tok.kind in (_Tok.VALUE, _Tok.FIELD):
            value = tok.text
        elif tok.kind is _Tok.QUOTED:
            value = self._unquote(tok, allow_alt=op is Operator.MATCHES)
        elif tok.kind is _Tok.ILLEGAL:
            raise self._error(tok.start, tok.reason)
        else:
            raise self._error(tok.start, "expected value or quoted")
        regex = None
        if op is Operator.MATCHES:
            try:
                regex = re.compile(value)
            except re.error as e:
                raise self._error(tok.start, f"invalid regular expression {value!r}: {e}") from e
        return Selector(fieldpath=fieldpath, operator=op, value=value, regex=regex)

    def _fieldpath(self) -> tuple[str, ...]:
        fields = [self._field()]
        while self._peek().kind is _Tok.DOT:
            self._scan()
            fields.append(self._field())
        return tuple(fields)

    def _field(self) -> str:
        tok = self._scan()
        if tok.kind is _Tok.FIELD:
            return tok.text
        if tok.kind is _Tok.QUOTED:
            return self._unquote(tok, allow_alt=False)
        if tok.kind is _Tok.ILLEGAL:
            raise self._error(tok.start, tok.reason)
        raise self._error(tok.start, "expected field or quoted")

    def _operator(self) -> Operator:
        tok = self._scan()
        if tok.kind is _Tok.OPERATOR:
            op = _OPERATORS.get(tok.text)
            if op is None:
                raise self._error(tok.start, f"unsupported operator {tok.text!r}")
            return op
        if tok.kind is _Tok.ILLEGAL:
            raise self._error(tok.start, tok.reason)
        raise self._error(tok.start, 'expected an operator ("=="|"!="|"~=")')

    def _unquote(self, tok: _Token, *, allow_alt: bool) -> str:
        """Decode a scanned quoted token with Go's escapes (the delimiter may be escaped)."""
        raw = tok.text
        quote = raw[0]
        if quote != '"' and not allow_alt:
            raise self._error(tok.start, "invalid quote encountered")
        body = raw[1:-1]
        if "\\" not in body:
            return body
        out = bytearray()
        i, n = 0, len(body)
        while i < n:
            c = body[i]
            if c != "\\":
                out += c.encode("utf-8", "surrogateescape")
                i += 1
                continue
            at = tok.start + 1 + i  # the backslash, for error positions
            e = body[i + 1] if i + 1 < n else ""
            i += 2
            if e in _SIMPLE_ESCAPES:
                out += _SIMPLE_ESCAPES[e].encode()
            elif e == quote:
                out += e.encode()
            elif e in ("x", "u", "U"):
                width = {"x": 2, "u": 4, "U": 8}[e]
                digits = body[i : i + width]
                if len(digits) != width or not all(d in _HEX for d in digits):
                    raise self._error(at, "illegal numeric escape sequence")
                i += width
                code = int(digits, 16)
                if e == "x":
                    out.append(code)
                elif code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                    raise self._error(at, "illegal numeric escape sequence")
                else:
                    out += chr(code).encode("utf-8")
            elif e in _OCT:
                digits = body[i - 1 : i + 2]
                if len(digits) != 3 or not all(d in _OCT for d in digits):
                    raise self._error(at, "illegal numeric escape sequence")
                code = int(digits, 8)
                if code > 255:
                    raise self._error(at, "illegal numeric escape sequence")
                i += 2
                out.append(code)
            else:
                raise self._error(at, "illegal escape sequence")
        return out.decode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------- entry points


def parse(s: str) -> Filter:
    """Parse one filter string (selectors joined by ``,``). Empty: :data:`ALWAYS`."""
    if not s or s.isspace():
        return ALWAYS
    return _Parser(s).parse()


def parse_all(filters: Iterable[str] | None) -> Filter:
    """Parse a request's repeated filters, OR-ed. No filters, or an empty one: matches all."""
    parsed = [parse(s) for s in filters or ()]  # every one parsed: errors are never hidden
    if not parsed or any(f is ALWAYS for f in parsed):
        return ALWAYS
    return parsed[0] if len(parsed) == 1 else AnyOf(tuple(parsed))
