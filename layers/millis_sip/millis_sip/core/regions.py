"""Which Millis region serves a Lambda running in a given AWS region.

Millis has two API regions, ``us-west`` and ``eu-west``, and does not say where they run. The data file
``data/regions.csv`` holds measured round-trip times from every AWS region to two stand-ins per Millis
region (see its header for the source). The rule, in order:

1. A measured region picks the Millis region with the lower mean RTT to its two stand-ins.
2. A known but unmeasured region takes the choice of its nearest measured neighbour (great-circle
   distance between regions), not the raw distance to Millis: from Asia and South America the US west
   coast is nearer in milliseconds than Europe, though not on the map.
3. An unknown code (new regions launch every year) takes the majority choice of the known regions that
   share its prefix (``ap-southeast``, then ``ap``), and a warning; ``us-west`` when nothing matches.

Nothing here raises: a Lambda in a brand-new region must still place calls.
"""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from importlib import resources


class MillisRegion(StrEnum):
    US_WEST = "us-west"
    EU_WEST = "eu-west"

    @property
    def other(self) -> MillisRegion:
        return MillisRegion.EU_WEST if self is MillisRegion.US_WEST else MillisRegion.US_WEST


DEFAULT_REGION = MillisRegion.US_WEST
_REGION_CODE = re.compile(r"(?P<prefix>[a-z]+(?:-[a-z]+)*)-[0-9]+\Z")


@dataclass(frozen=True, slots=True)
class RegionChoice:
    """The Millis regions to try, in order, and why the first was chosen."""

    primary: MillisRegion
    basis: str  # "override", "measured", "neighbour:<region>", "prefix:<prefix>", "default"
    warning: str | None = None

    @property
    def fallback(self) -> MillisRegion:
        return self.primary.other

    @property
    def order(self) -> tuple[MillisRegion, MillisRegion]:
        return (self.primary, self.fallback)


@dataclass(frozen=True, slots=True)
class _Row:
    latitude: float
    longitude: float
    us_west_ms: float | None
    eu_west_ms: float | None


@cache
def _table() -> dict[str, _Row]:
    text = resources.files(__package__).joinpath("data/regions.csv").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    rows: dict[str, _Row] = {}
    for rec in csv.DictReader(lines):

        def mean(*cols: str, rec: dict[str, str] = rec) -> float | None:
            values = [float(rec[c]) for c in cols if rec[c]]
            return sum(values) / len(values) if len(values) == len(cols) else None

        rows[rec["aws_region"]] = _Row(
            latitude=float(rec["latitude"]),
            longitude=float(rec["longitude"]),
            us_west_ms=mean("rtt_us_west_2", "rtt_us_west_1"),
            eu_west_ms=mean("rtt_eu_west_1", "rtt_eu_west_2"),
        )
    return rows


def _measured_choice(row: _Row) -> MillisRegion | None:
    if row.us_west_ms is None or row.eu_west_ms is None:
        return None
    return MillisRegion.US_WEST if row.us_west_ms <= row.eu_west_ms else MillisRegion.EU_WEST


def _distance_km(a: _Row, b: _Row) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (a.latitude, a.longitude, b.latitude, b.longitude))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


@cache
def known_choices() -> dict[str, RegionChoice]:
    """Every AWS region in the data file with its choice (measured, or by nearest measured neighbour)."""
    table = _table()
    measured = {code: c for code, row in table.items() if (c := _measured_choice(row)) is not None}
    choices = {code: RegionChoice(choice, "measured") for code, choice in measured.items()}
    for code, row in table.items():
        if code in measured:
            continue
        neighbour = min(measured, key=lambda other: _distance_km(row, table[other]))
        choices[code] = RegionChoice(measured[neighbour], f"neighbour:{neighbour}")
    return choices


def _by_prefix(aws_region: str, choices: dict[str, RegionChoice]) -> RegionChoice | None:
    match = _REGION_CODE.match(aws_region)
    if not match:
        return None
    parts = match["prefix"].split("-")
    # "ap-southeast" first, then "ap"; "us-gov-west" -> "us-gov" -> "us".
    for size in range(len(parts), 0, -1):
        prefix = "-".join(parts[:size])
        votes = Counter(c.primary for code, c in choices.items() if code.startswith(prefix + "-"))
        if votes:
            (winner, _), *rest = votes.most_common()
            if rest and rest[0][1] == votes[winner]:
                winner = DEFAULT_REGION  # a tie: no better evidence than the default
            return RegionChoice(winner, f"prefix:{prefix}")
    return None


def choose_millis_region(aws_region: str | None, override: str = "auto") -> RegionChoice:
    """The Millis region nearest to ``aws_region``; ``override`` ("us-west"/"eu-west") wins when set."""
    if override and override != "auto":
        return RegionChoice(MillisRegion(override), "override")
    code = (aws_region or "").strip().lower()
    choices = known_choices()
    if code in choices:
        return choices[code]
    by_prefix = _by_prefix(code, choices)
    if by_prefix is not None:
        return RegionChoice(
            by_prefix.primary,
            by_prefix.basis,
            warning=f"AWS region {code!r} has no latency data; chose {by_prefix.primary} from regions "
            f"sharing its prefix. Set MILLIS_REGION to pin it.",
        )
    return RegionChoice(
        DEFAULT_REGION,
        "default",
        warning=f"AWS region {aws_region!r} is not a known region code; defaulting to {DEFAULT_REGION}. "
        "Set MILLIS_REGION to pin it.",
    )
