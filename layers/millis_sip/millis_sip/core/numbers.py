"""Number routes: which agent takes the calls to a phone number (E.164) when no registration is waiting for
them. Every edge's calls go through them (docs/router.md; the API: docs/api.md)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from millis_sip.core.calls import E164
from millis_sip.core.errors import BridgeError, InvalidRequest

if TYPE_CHECKING:
    from millis_sip.core.ports import Clock, NumberRoutes

MAX_PAGE_SIZE = 100
MAX_CALLS_PER_HOUR = 1_000_000  # the most a cap may be set to
OUTBOUND_CARRIERS = ("twilio", "signalwire", "telnyx", "vonage", "plivo", "chime")  # who can place a call


class NumberNotFound(BridgeError):
    code = "number_not_found"


@dataclass(frozen=True, slots=True)
class NumberRoute:
    """The Millis fields a fresh registration for a call to ``number`` is made with."""

    number: str
    agent_id: str | None = None
    agent_config: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    include_metadata_in_prompt: bool | None = None
    # The most fresh Millis sessions calls to this number may start in one clock hour (None: no cap). A cap
    # bounds what strangers dialing the number can spend; registrations a backend made are not counted.
    max_calls_per_hour: int | None = None
    # Outbound calls (docs/outbound.md): the carriers this number may place calls through (none: it places none),
    # and the most it may place in one clock hour (None: the stack's OUTBOUND_CALLS_PER_HOUR_PER_NUMBER).
    outbound_carriers: tuple[str, ...] = ()
    max_outbound_calls_per_hour: int | None = None
    # Transfers (docs/transfers.md): where this number's calls may be handed to a person, E.164 prefixes and SIP
    # domains (none: the stack's TRANSFER_ALLOWED_TARGETS).
    transfer_targets: tuple[str, ...] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        # A set, in one order: as DynamoDB's string sets hold it.
        object.__setattr__(self, "outbound_carriers", tuple(sorted(set(self.outbound_carriers))))
        object.__setattr__(self, "transfer_targets", tuple(sorted(set(self.transfer_targets))))

    def millis_fields(self) -> dict[str, Any]:
        """agent_id / agent_config / include_metadata_in_prompt as given (the metadata is merged by the router)."""
        fields = {
            "agent_id": self.agent_id,
            "agent_config": dict(self.agent_config) if self.agent_config is not None else None,
            "include_metadata_in_prompt": self.include_metadata_in_prompt,
        }
        return {name: value for name, value in fields.items() if value is not None}


# A transfer target rule: an E.164 prefix, or a SIP domain (any user at that host).
TRANSFER_RULE_PATTERN = r"^(?:\+[1-9][0-9]{0,14}|sips?:[A-Za-z0-9][A-Za-z0-9.-]{0,252})$"
TRANSFER_RULE = re.compile(TRANSFER_RULE_PATTERN)


def check_number(number: str) -> str:
    if not E164.match(number):
        raise InvalidRequest(f"{number!r} is not an E.164 number (e.g. +14155550100; URL-encode + as %2B in a query).")
    return number


class NumberDirectory:
    """The management API's use cases for number routes."""

    def __init__(self, routes: NumberRoutes, *, clock: Clock) -> None:
        self._routes = routes
        self._clock = clock

    def put(self, route: NumberRoute) -> tuple[NumberRoute, bool]:
        """Create or replace the route; True when it was created."""
        check_number(route.number)
        if route.agent_id is None and route.agent_config is None:
            raise InvalidRequest("A number route needs agent_id or agent_config.")
        if route.max_calls_per_hour is not None and not 1 <= route.max_calls_per_hour <= MAX_CALLS_PER_HOUR:
            raise InvalidRequest(f"max_calls_per_hour must be 1 to {MAX_CALLS_PER_HOUR}, or left out for no cap.")
        outbound_cap = route.max_outbound_calls_per_hour
        if outbound_cap is not None and not 1 <= outbound_cap <= MAX_CALLS_PER_HOUR:
            raise InvalidRequest(
                f"max_outbound_calls_per_hour must be 1 to {MAX_CALLS_PER_HOUR}, or left out for the stack's default."
            )
        unknown = [c for c in route.outbound_carriers if c not in OUTBOUND_CARRIERS]
        if unknown:
            raise InvalidRequest(f"outbound_carriers: {unknown[0]!r} is not one of {', '.join(OUTBOUND_CARRIERS)}.")
        wrong = [t for t in route.transfer_targets if not TRANSFER_RULE.fullmatch(t)]
        if wrong:
            raise InvalidRequest(
                f"transfer_targets: {wrong[0][:64]!r} is neither an E.164 prefix (+1415) nor a SIP domain "
                "(sip:pbx.example.com)."
            )
        now = self._clock.now()
        previous = self._routes.get(route.number)
        stored = replace(route, created_at=previous.created_at if previous else now, updated_at=now)
        created = self._routes.put(stored)
        return stored, created

    def get(self, number: str) -> NumberRoute:
        route = self._routes.get(check_number(number))
        if route is None:
            raise NumberNotFound(f"No route for {number}.")
        return route

    def delete(self, number: str) -> None:
        if not self._routes.delete(check_number(number)):
            raise NumberNotFound(f"No route for {number}.")

    def page(self, *, limit: int, after: str | None) -> tuple[list[NumberRoute], str | None]:
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise InvalidRequest(f"limit must be between 1 and {MAX_PAGE_SIZE}.")
        return self._routes.page(limit=limit, after=after)


ROUTE_CACHE_SECONDS = 30.0  # how long a phone function reuses a number's route (or its absence)
MAX_CACHED_ROUTES = 10_000  # numbers a warm function remembers (then it starts afresh)


class CachedNumberRoutes:
    """Number routes as the phone path reads them: each number's route (or that it has none) is kept for
    ``seconds`` per execution environment, so that a warm function spends no round trip on it. A change made
    through the API reaches every phone call within that time."""

    def __init__(self, routes: NumberRoutes, *, clock: Clock, seconds: float = ROUTE_CACHE_SECONDS) -> None:
        self._routes = routes
        self._clock = clock
        self._seconds = seconds
        self._cache: dict[str, tuple[NumberRoute | None, float]] = {}

    def cached(self, number: str) -> tuple[bool, NumberRoute | None]:
        """(True, the route or None) when the number's route is in memory and fresh: no request needed."""
        cached = self._cache.get(number)
        if cached is not None and self._clock.monotonic() - cached[1] < self._seconds:
            return True, cached[0]
        return False, None

    def get(self, number: str) -> NumberRoute | None:
        now = self._clock.monotonic()
        cached = self._cache.get(number)
        if cached is not None and now - cached[1] < self._seconds:
            return cached[0]
        route = self._routes.get(number)  # StoreUnavailable propagates and nothing is cached
        if len(self._cache) >= MAX_CACHED_ROUTES:
            self._cache.clear()
        self._cache[number] = (route, now)
        return route

    def put(self, route: NumberRoute) -> bool:
        self._cache.pop(route.number, None)
        return self._routes.put(route)

    def delete(self, number: str) -> bool:
        self._cache.pop(number, None)
        return self._routes.delete(number)

    def page(self, *, limit: int, after: str | None) -> tuple[list[NumberRoute], str | None]:
        return self._routes.page(limit=limit, after=after)
