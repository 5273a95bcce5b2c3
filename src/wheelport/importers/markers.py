"""Markers in source locks: evaluated for a target and the user's selection.

A lock may test, beside the PEP 508 environment, what the user selected: ``extra`` (PEP 508),
``extras`` and ``dependency_groups`` (PEP 751 lock-file markers; current pipenv writes
``'dev' in dependency_groups`` into Pipfile.lock too). :func:`marker_holds` evaluates all of them
with ``packaging``; :func:`for_target_lock` is what of a marker that held is left for
wheelport's own lock, which serves one selection: the selection's comparisons are decided, the
environment's stay (``('dev' in dependency_groups) and (sys_platform == 'win32')`` becomes
``sys_platform == "win32"``). A plain installer reading that lock selects no group, so a
``dependency_groups`` test left in it would drop the package.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping

from packaging.markers import (
    InvalidMarker,
    Marker,
    UndefinedComparison,
    UndefinedEnvironmentName,
)
from packaging.utils import canonicalize_name

from wheelport.errors import UsageError

#: the marker names that describe the selection, not the environment
SELECTION_NAMES = frozenset({"extra", "extras", "dependency_groups"})

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'[^']*'|"[^"]*")
      | (?P<op>===|==|!=|<=|>=|~=|<|>|not\s+in\b|in\b)
      | (?P<bool>and\b|or\b)
      | (?P<paren>[()])
      | (?P<name>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)


def checked_marker(marker: str | None) -> str | None:
    """A marker as the lock writes it, parsed once so that a bad one is refused when the lock is
    read (:class:`InvalidMarker`, which :func:`wheelport.importers.load` turns into one line)."""
    if marker:
        try:
            Marker(marker)
        except InvalidMarker as exc:
            first = str(exc).splitlines()[0] if str(exc) else "invalid"
            raise InvalidMarker(f"marker {marker!r}: {first}") from None
    return marker or None


def _context(
    env: Mapping[str, str], extras: Collection[str], groups: Collection[str]
) -> dict[str, str | frozenset[str]]:
    return {
        **env,
        "extras": frozenset(canonicalize_name(e) for e in extras),
        "dependency_groups": frozenset(canonicalize_name(g) for g in groups),
    }


def _evaluate(
    marker: str, context: Mapping[str, str | frozenset[str]], extras: Collection[str]
) -> bool:
    m = Marker(marker)
    return any(
        m.evaluate({**context, "extra": e}, "lock_file")
        for e in ["", *(canonicalize_name(x) for x in extras)]
    )


def marker_holds(
    marker: str | None,
    env: Mapping[str, str],
    *,
    extras: Collection[str] = (),
    groups: Collection[str] = (),
    origin: str = "",
) -> bool:
    """Does a marker hold for the target's environment and the selection? ``extra`` is tried
    with each selected extra; ``extras`` and ``dependency_groups`` are the selected sets. A
    marker that cannot be evaluated is bad input naming the lock."""
    if not marker:
        return True
    try:
        return _evaluate(marker, _context(env, extras, groups), extras)
    except (InvalidMarker, UndefinedComparison, UndefinedEnvironmentName) as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise UsageError(
            f"{origin}: marker {marker!r} cannot be evaluated: {type(exc).__name__}: {first}",
            hint="regenerate the lock with its tool",
            path=origin or None,
        ) from None


def for_target_lock(
    marker: str | None, *, extras: Collection[str] = (), groups: Collection[str] = ()
) -> str | None:
    """What is left of a marker once the selection's comparisons are decided (None: nothing,
    the package is needed unconditionally). The marker must be valid (:func:`checked_marker`)."""
    if not marker or not any(n in marker for n in SELECTION_NAMES):
        return marker or None
    context = _context({}, extras, groups)
    rest = _Partial(marker, lambda atom: _evaluate(atom, context, extras)).result()
    if rest is True:
        return None
    if rest is False:  # the marker never holds for this selection: keep it as the lock says
        return marker
    return str(Marker(rest))


class _Partial:
    """Reads a marker (``or`` binds looser than ``and``; parentheses group) and writes it back
    with each comparison on a selection name replaced by its truth value, then simplified."""

    def __init__(self, text: str, decide: Callable[[str], bool]) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos, text = 0, text.strip()
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None or m.lastgroup is None:
                raise InvalidMarker(f"unexpected {text[pos:]!r} in marker {text!r}")
            kind = m.lastgroup
            value = m.group(kind)
            self.tokens.append((kind, " ".join(value.split())))
            pos = m.end()
        self.pos = 0
        self.decide = decide

    def result(self) -> str | bool:
        out = self._or()
        if self.pos != len(self.tokens):
            raise InvalidMarker(f"unexpected {self.tokens[self.pos][1]!r} in marker")
        return out

    def _take(self, kind: str, value: str | None = None) -> str | None:
        if self.pos < len(self.tokens):
            k, v = self.tokens[self.pos]
            if k == kind and value in (None, v):
                self.pos += 1
                return v
        return None

    def _or(self) -> str | bool:
        terms = [self._and()]
        while self._take("bool", "or"):
            terms.append(self._and())
        if any(t is True for t in terms):
            return True
        rest = [t for t in terms if isinstance(t, str)]
        return " or ".join(rest) if rest else False

    def _and(self) -> str | bool:
        factors = [self._atom()]
        while self._take("bool", "and"):
            factors.append(self._atom())
        if any(f is False for f in factors):
            return False
        rest = [f for f in factors if isinstance(f, str)]
        return " and ".join(rest) if rest else True

    def _atom(self) -> str | bool:
        if self._take("paren", "("):
            inner = self._or()
            if not self._take("paren", ")"):
                raise InvalidMarker("unbalanced parentheses in marker")
            return f"({inner})" if isinstance(inner, str) else inner
        left, left_sel = self._value()
        op = self._take("op")
        if op is None:
            raise InvalidMarker("a marker comparison lacks its operator")
        right, right_sel = self._value()
        atom = f"{left} {op} {right}"
        return self.decide(atom) if left_sel or right_sel else atom

    def _value(self) -> tuple[str, bool]:
        """A comparison's side, and whether it names the selection."""
        string = self._take("string")
        if string is not None:
            return string, False
        name = self._take("name")
        if name is None:
            raise InvalidMarker("a marker comparison lacks a value")
        return name, name in SELECTION_NAMES
