from __future__ import annotations

import pytest

from millis_sip.config import DEFAULT_MILLIS_URLS, Settings
from millis_sip.core.errors import ConfigurationError
from millis_sip.core.regions import MillisRegion


def test_defaults_use_the_documented_hosts_and_the_nearest_region() -> None:
    settings = Settings.from_env(
        {"CALLS_TABLE_NAME": "calls", "NUMBERS_TABLE_NAME": "numbers", "AWS_REGION": "eu-central-1"}
    )
    assert settings.millis_urls == DEFAULT_MILLIS_URLS
    assert settings.millis_urls[MillisRegion.US_WEST] == "https://api-west.millis.ai"
    assert settings.millis_urls[MillisRegion.EU_WEST] == "https://api-eu-west.millis.ai"
    assert settings.millis_region.order == (MillisRegion.EU_WEST, MillisRegion.US_WEST)
    assert settings.call_ttl_seconds == 3600
    assert settings.default_agent_id is None
    assert settings.api_key_secret_arn is None


def test_overrides_are_read() -> None:
    settings = Settings.from_env(
        {
            "CALLS_TABLE_NAME": "calls",
            "NUMBERS_TABLE_NAME": "numbers",
            "AWS_REGION": "eu-central-1",
            "MILLIS_REGION": "us-west",
            "MILLIS_US_WEST_URL": "http://127.0.0.1:8080/us-west/",
            "DEFAULT_AGENT_ID": "agent-1",
            "CALL_TTL_SECONDS": "300",
            "MILLIS_API_KEY_SECRET_ARN": "arn:aws:secretsmanager:eu-central-1:123456789012:secret:millis-AbCdEf",
        }
    )
    assert settings.millis_region.primary is MillisRegion.US_WEST
    assert settings.millis_urls[MillisRegion.US_WEST] == "http://127.0.0.1:8080/us-west"
    assert settings.default_agent_id == "agent-1"
    assert settings.call_ttl_seconds == 300
    assert settings.api_key_secret_arn is not None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "CALLS_TABLE_NAME"),
        ({"CALLS_TABLE_NAME": "t"}, "NUMBERS_TABLE_NAME"),
        ({"CALLS_TABLE_NAME": "t", "NUMBERS_TABLE_NAME": "n", "MILLIS_REGION": "ap-south"}, "MILLIS_REGION"),
        ({"CALLS_TABLE_NAME": "t", "NUMBERS_TABLE_NAME": "n", "MILLIS_US_WEST_URL": "ftp://x"}, "MILLIS_US_WEST_URL"),
        ({"CALLS_TABLE_NAME": "t", "NUMBERS_TABLE_NAME": "n", "CALL_TTL_SECONDS": "ten"}, "CALL_TTL_SECONDS"),
        ({"CALLS_TABLE_NAME": "t", "NUMBERS_TABLE_NAME": "n", "CALL_TTL_SECONDS": "5"}, "CALL_TTL_SECONDS"),
    ],
)
def test_bad_configuration_fails_at_start_up_with_the_variable_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Settings.from_env(env)


def test_a_ringback_tone_is_a_bucket_and_a_key_or_nothing() -> None:
    from millis_sip.config import ChimeSettings

    assert ChimeSettings.from_env({}).ringback is None
    tone = ChimeSettings.from_env({"RINGBACK_TONE_BUCKET": "my-tones", "RINGBACK_TONE_KEY": "ring/us.wav"})
    assert tone.ringback == ("my-tones", "ring/us.wav")
    for broken in (
        {"RINGBACK_TONE_BUCKET": "my-tones"},
        {"RINGBACK_TONE_BUCKET": "Not_A_Bucket", "RINGBACK_TONE_KEY": "k"},
    ):
        with pytest.raises(ConfigurationError, match="RINGBACK_TONE"):
            ChimeSettings.from_env(broken)


def test_the_default_agent_cap_is_a_count_or_none() -> None:
    base = {"CALLS_TABLE_NAME": "t", "NUMBERS_TABLE_NAME": "n"}
    assert Settings.from_env(base).default_agent_calls_per_hour is None
    assert Settings.from_env({**base, "DEFAULT_AGENT_CALLS_PER_HOUR": "0"}).default_agent_calls_per_hour is None
    assert Settings.from_env({**base, "DEFAULT_AGENT_CALLS_PER_HOUR": "120"}).default_agent_calls_per_hour == 120


# --- one list of variables -----------------------------------------------------------------------------------


def _read_in_code() -> set[str]:
    """Every upper-case name the functions' code hands to the environment reader (or to a credential source
    that reads it): string constants given to Env's methods, to ``get``, or to ``*_source``/``credential``, and
    a carrier descriptor's ``credential_variable``."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readers = {"text", "optional", "number", "switch", "flag", "get", "credential", "carrier_credential_source"}
    found: set[str] = set()
    for path in [*(root / "layers" / "millis_sip" / "millis_sip").rglob("*.py"), *(root / "functions").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            named = [k.value for k in node.keywords if k.arg and k.arg.endswith("_variable")]
            if name not in readers and not named:
                continue
            for arg in [*node.args, *named] if name in readers else named:
                value = arg.value if isinstance(arg, ast.Constant) and isinstance(arg.value, str) else ""
                if value.isupper() and value.replace("_", "").isalnum() and "_" in value:
                    found.add(value)
    return found


def test_every_variable_the_code_reads_is_listed() -> None:
    from millis_sip.environment import KNOWN

    read = _read_in_code()
    assert {"CALLS_TABLE_NAME", "MILLIS_API_KEY", "TWILIO_AUTH_TOKEN", "PIN_PROMPT"} <= read  # the scan sees them
    assert read <= KNOWN, sorted(read - KNOWN)


def test_every_variable_the_template_sets_is_listed_and_every_listed_one_is_set_or_local() -> None:
    from dev.template import load_template
    from millis_sip.environment import KNOWN, VARIABLES

    template = load_template()
    names = set(template["Globals"]["Function"]["Environment"]["Variables"])
    for resource in template["Resources"].values():
        if resource.get("Type") == "AWS::Serverless::Function":
            names |= set(resource["Properties"].get("Environment", {}).get("Variables", {}))
    assert names <= KNOWN, sorted(names - KNOWN)
    provided_by_lambda = {"AWS_REGION", "AWS_DEFAULT_REGION"}
    tuning = {"MILLIS_API_KEY_MAX_AGE", "MILLIS_HTTP_DEADLINE"}  # defaults only; set them to tune a deployment
    local_only = {v.name for v in VARIABLES if v.secret} - names
    assert KNOWN - names - provided_by_lambda - tuning - local_only == set()


def test_reading_an_unlisted_variable_is_a_programming_error() -> None:
    from millis_sip.environment import Env

    with pytest.raises(KeyError, match=r"not in config\.VARIABLES"):
        Env({"SOMETHING_ELSE": "x"}).text("SOMETHING_ELSE")


def test_the_documented_variables_are_the_listed_ones() -> None:
    from pathlib import Path

    from millis_sip.environment import VARIABLES

    text = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    missing = [v.name for v in VARIABLES if f"`{v.name}`" not in text]
    assert missing == []
