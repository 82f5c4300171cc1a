"""The HTTP edge's error table is looked up along the exception's MRO: the most specific class listed wins,
whatever the order of the table."""

from __future__ import annotations

from millis_sip.core.errors import BridgeError, MillisError, MillisUnavailable
from millis_sip.edges.http.errors import DOMAIN_ERRORS, spec_of


class Base(BridgeError):
    code = "base"


class Specific(Base):
    code = "specific"


class Unlisted(Specific):
    code = "unlisted"


def test_the_most_specific_class_wins_in_either_order() -> None:
    base_first: dict[type[BridgeError], tuple[int, str | None]] = {Base: (400, "base"), Specific: (409, "specific")}
    specific_first: dict[type[BridgeError], tuple[int, str | None]] = {Specific: (409, "specific"), Base: (400, "base")}
    for table in (base_first, specific_first):
        assert spec_of(Specific("x"), table) == (409, "specific")
        assert spec_of(Unlisted("x"), table) == (409, "specific")  # its nearest listed ancestor
        assert spec_of(Base("x"), table) == (400, "base")


def test_an_error_no_class_of_which_is_listed_is_a_500() -> None:
    assert spec_of(BridgeError("x"), {Base: (400, None)}) == (500, None)


def test_the_stacks_table_answers_millis_unavailable_503_not_its_bases() -> None:
    assert MillisError not in DOMAIN_ERRORS
    assert spec_of(MillisUnavailable("down"))[0] == 503
