from __future__ import annotations

import pytest

from millis_sip.core.regions import MillisRegion, choose_millis_region, known_choices

US, EU = MillisRegion.US_WEST, MillisRegion.EU_WEST


@pytest.mark.parametrize(
    ("aws_region", "expected"),
    [
        ("us-west-2", US),
        ("us-east-1", US),  # close call (64 vs 74 ms mean): the lower mean wins
        ("ca-central-1", US),
        ("eu-west-1", EU),
        ("eu-central-1", EU),
        ("af-south-1", EU),
        ("ap-south-1", EU),
        ("il-central-1", EU),
        # Latency, not the map: Singapore, Jakarta and Sao Paulo reach the US west coast faster.
        ("ap-southeast-1", US),
        ("ap-southeast-3", US),
        ("sa-east-1", US),
        ("ap-east-1", US),
    ],
)
def test_measured_regions_pick_the_lower_latency(aws_region: str, expected: MillisRegion) -> None:
    choice = choose_millis_region(aws_region)
    assert choice.primary is expected
    assert choice.basis == "measured"
    assert choice.warning is None


@pytest.mark.parametrize(
    ("aws_region", "neighbour", "expected"),
    [
        ("me-west-1", "me-south-1", EU),
        ("ap-southeast-6", "ap-southeast-2", US),
        ("ap-east-2", "ap-east-1", US),
        ("sa-west-1", "sa-east-1", US),
        ("eusc-de-east-1", "eu-central-1", EU),
    ],
)
def test_unmeasured_regions_follow_their_nearest_measured_neighbour(
    aws_region: str, neighbour: str, expected: MillisRegion
) -> None:
    choice = choose_millis_region(aws_region)
    assert (choice.primary, choice.basis) == (expected, f"neighbour:{neighbour}")


@pytest.mark.parametrize(
    ("aws_region", "expected", "basis"),
    [
        ("ap-south-7", EU, "prefix:ap-south"),
        ("ap-southeast-9", US, "prefix:ap-southeast"),
        ("eu-west-9", EU, "prefix:eu-west"),
        ("us-gov-west-1", US, "prefix:us"),
        ("me-north-4", EU, "prefix:me"),
    ],
)
def test_unknown_codes_choose_by_prefix_with_a_warning(aws_region: str, expected: MillisRegion, basis: str) -> None:
    choice = choose_millis_region(aws_region)
    assert (choice.primary, choice.basis) == (expected, basis)
    assert choice.warning is not None
    assert aws_region in choice.warning


@pytest.mark.parametrize("aws_region", ["", None, "local", "cn-north-1", "XX-??-1", "x" * 500])
def test_nonsense_never_raises_and_defaults_with_a_warning(aws_region: str | None) -> None:
    choice = choose_millis_region(aws_region)
    assert choice.primary is US
    assert choice.basis == "default"
    assert choice.warning


def test_override_wins_over_measurement() -> None:
    choice = choose_millis_region("eu-west-1", "us-west")
    assert (choice.primary, choice.basis) == (US, "override")


def test_the_other_region_is_the_fallback() -> None:
    assert choose_millis_region("eu-west-2").order == (EU, US)
    assert choose_millis_region("us-west-2").order == (US, EU)


def test_every_region_in_the_data_has_a_choice() -> None:
    choices = known_choices()
    assert len(choices) >= 37
    assert {"me-west-1", "ap-southeast-6", "eusc-de-east-1"} <= choices.keys()
