"""What a carrier's webhook fields may hold: every id, word and count an edge reads, whole and in ASCII, exactly
as the carrier documents it (tests/fixtures/carriers/SOURCES.md, "Formats"), read before the router sees anything.

Twilio's and Plivo's signatures concatenate the names and values of the fields with nothing between them: a
request whose ``CallSid`` is ``CA…CallStatusringing`` (and no ``CallStatus``) carries the very signature of one
with both fields, and Twilio's own validator accepts it. A signature cannot say where a value ends, so the edges
do: a field read for its id, word or count holds its documented form and nothing more, so it cannot absorb the
next field's name; a request where it does not is refused (``Malformed``, 400). The same field sent twice is
refused as well (which value would count?). Phone numbers are read by ``core.phone.canonical_number``: anything
that is not a number is no number, never a refusal. Text a caller wrote (the caller's X- SIP headers) is not held
to a form: the router keeps it under ``caller_supplied`` and acts on none of it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from millis_sip.core.phone import canonical_number
from millis_sip.edges.carriers import Refusal

UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


class Malformed(Refusal):
    """A field an edge reads is missing where it is required, sent twice, or not in its documented form."""

    def __init__(self, name: str, form: str) -> None:
        super().__init__(400, f"{name[:64]} is missing or malformed: {form}")
        self.name = name


@dataclass(frozen=True, slots=True)
class Form:
    """A field's documented form: the whole value matches ``pattern``; ``says`` what that is, for the 400.
    ``counts``: a JSON body may send it as a whole number rather than as its digits (Vonage's ``duration``)."""

    pattern: re.Pattern[str]
    says: str
    counts: bool = False

    def read(self, name: str, value: object) -> str:
        if self.counts and isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            value = str(value)
        if not isinstance(value, str) or not self.pattern.fullmatch(value):
            raise Malformed(name, self.says)
        return value


def form(pattern: str, says: str, *, counts: bool = False) -> Form:
    """A ``Form`` for ``pattern`` (a regular expression of ASCII classes only: never ``\\d`` or ``\\w``)."""
    return Form(re.compile(pattern), says, counts)


def one_of(*words: str, empty: bool = False) -> Form:
    """The documented words of a field, spelled exactly; ``empty``: also an empty value (as good as none)."""
    allowed = "|".join(re.escape(word) for word in words) + ("|" if empty else "")
    return form(f"(?:{allowed})", "one of " + ", ".join(words))


# Shared forms. The keys a caller pressed (Twilio and Telnyx <Gather>, Plivo <GetInput>, Vonage input): digits,
# # and *; empty when nothing was keyed in.
DIGITS = form(r"[0-9#*]{0,64}", "the keys pressed: ASCII digits, # and *")
# A duration in whole seconds (DialCallDuration, DialBLegDuration, Duration, Vonage's duration); empty: none.
SECONDS = form(r"[0-9]{0,8}", "whole seconds in ASCII digits", counts=True)
ANY_UUID = form(UUID, "a UUID (8-4-4-4-12 hex digits)")


class Fields(Mapping[str, object]):
    """A signed request's fields (form fields, query parameters, or the members of a JSON object), each read
    through its documented form. As a mapping, the last value of each name."""

    def __init__(self, pairs: Iterable[tuple[str, object]] = ()) -> None:
        self._last: dict[str, object] = {}
        self._repeated: set[str] = set()
        for name, value in pairs:
            if name in self._last:
                self._repeated.add(name)
            self._last[name] = value

    def __getitem__(self, name: str) -> object:
        return self._last[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._last)

    def __len__(self) -> int:
        return len(self._last)

    def read(self, name: str, form: Form) -> str | None:
        """The field in its documented form; None when absent (or JSON null)."""
        if name in self._repeated:
            raise Malformed(name, "sent more than once")
        value = self._last.get(name)
        return None if value is None else form.read(name, value)

    def require(self, name: str, form: Form) -> str:
        """The field in its documented form; absent or empty is ``Malformed`` too (an id the edge needs)."""
        value = self.read(name, form)
        if not value:
            raise Malformed(name, form.says)
        return value

    def meaning[T](self, name: str, meanings: Mapping[str, T]) -> T | None:
        """What a field's documented word means (``meanings`` holds every documented word); None when absent or
        empty; ``Malformed`` for any other word."""
        word = self.read(name, one_of(*meanings, empty=True))
        return meanings[word] if word else None

    def number(self, name: str, *, placeholders: frozenset[str] = frozenset()) -> str | None:
        """A phone number field in E.164 (``core.phone.canonical_number``): None when it holds no number, in any
        spelling the carrier uses (no ``+``, ``sip:``, ``anonymous``, a placeholder for a withheld caller)."""
        if name in self._repeated:
            raise Malformed(name, "sent more than once")
        return canonical_number(self._last.get(name), placeholders=placeholders)
