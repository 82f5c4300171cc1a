"""Call records and the values they hold: plain dataclasses and enums, no pydantic, so that the SIP media
application (which validates nothing with pydantic) does not pay for importing it at cold start."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum

# lookup_key, call_id and agent_id: visible ASCII, no spaces, 1-128 characters. That admits E.164
# numbers, SIP Call-IDs (local@host) and carrier references.
TOKEN_PATTERN = r"^[\x21-\x7e]{1,128}$"  # noqa: S105 - a regex, not a secret


class CallStatus(StrEnum):
    """Where a call is (README, "Call status"). Moves only forward:
    registered -> claimed -> bridged -> ended, and registered/claimed/bridged -> failed.
    ``expired`` is never stored: it is how a ``registered`` record reads once it has lapsed."""

    REGISTERED = "registered"  # registered with Millis, waiting for a carrier or a phone call
    CLAIMED = "claimed"  # a Chime phone call took it and is being bridged to Millis
    BRIDGED = "bridged"  # the phone call is connected to the Millis agent
    ENDED = "ended"  # the phone call is over
    FAILED = "failed"  # the call could not be bridged (see reason)
    EXPIRED = "expired"


class CallSource(StrEnum):
    HTTP = "http"  # POST /calls
    CHIME = "chime"  # registered by the SIP media application for an inbound phone call


@dataclass(frozen=True, slots=True)
class CallRecord:
    """A registered call as the bridge stores it. Never holds the Millis key, agent_config or metadata."""

    call_id: str
    sip_uri: str
    millis_region: str
    status: CallStatus
    created_at: datetime
    expires_at: datetime
    lookup_key: str | None = None
    agent_id: str | None = None
    source: str = CallSource.HTTP
    # Filled in when a Chime phone call uses the registration.
    transaction_id: str | None = None
    caller_number: str | None = None
    dialed_number: str | None = None
    leg_b_call_id: str | None = None
    bridged_at: datetime | None = None
    ended_at: datetime | None = None
    duration_seconds: int | None = None
    reason: str | None = None
    # From Millis' session_data_webhook, when the session ends.
    millis_call_status: str | None = None
    millis_duration_seconds: int | None = None

    def as_seen_at(self, now: datetime) -> CallRecord:
        """The record with ``expired`` status once its registration has lapsed (TTL deletion lags)."""
        if self.status is CallStatus.REGISTERED and now >= self.expires_at:
            return replace(self, status=CallStatus.EXPIRED)
        return self


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
