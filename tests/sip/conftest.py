"""Fixtures for the real-SIP tests: one Kamailio (examples/kamailio/kamailio.cfg) + SIPp UAS per module, asking a
stand-in route API. Without kamailio, its http_client module or sipp the tests skip, unless
MILLIS_SIP_TESTS=required (CI), where they fail."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.sip.harness import INSTALL_HINT, MillisRoute, RouteServer, SipHarness, missing_tools

API_KEY = "sip-test-route-key"


def require_sip_tools() -> None:
    missing = missing_tools()
    if not missing:
        return
    reason = f"missing {', '.join(missing)}: install with `{INSTALL_HINT}`"
    if os.environ.get("MILLIS_SIP_TESTS", "").lower() == "required":
        pytest.fail(f"MILLIS_SIP_TESTS=required but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def sip_tools() -> None:
    require_sip_tools()


@pytest.fixture(scope="module")
def route_server(sip_tools: None) -> Iterator[RouteServer]:
    """The stand-in /route API (swap the responder per test)."""
    with RouteServer() as server:
        yield server


@pytest.fixture(scope="module")
def sip_harness(route_server: RouteServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SipHarness]:
    """Kamailio + the Millis SIP stand-in, started once per module. A 1 s route timeout keeps the timeout test short
    (the example's default is 3 s)."""
    with SipHarness(route_server.base_url, API_KEY, tmp_path_factory.mktemp("sip"), http_timeout=1) as harness:
        yield harness


@pytest.fixture
def route(route_server: RouteServer, sip_harness: SipHarness) -> MillisRoute:
    """A fresh Millis-like route behaviour for each test; route_server.requests starts empty."""
    behaviour = MillisRoute(API_KEY, sip_harness.uas_host, sip_harness.uas_port)
    route_server.reset(behaviour)
    return behaviour


@pytest.fixture
def sip(sip_harness: SipHarness, route: MillisRoute) -> SipHarness:
    """The running harness, with the UAS's earlier messages forgotten."""
    sip_harness.clear()
    return sip_harness


class HarnessFactory:
    """Starts extra harnesses (another route URL, key or way of configuring Kamailio); all stopped after the test."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[SipHarness] = []

    def __call__(self, route_base_url: str, api_key: str, **options: Any) -> SipHarness:
        harness = SipHarness(route_base_url, api_key, self.workdir / f"harness-{len(self.started)}", **options)
        self.started.append(harness)
        return harness.start()

    def close(self) -> None:
        for harness in self.started:
            harness.close()


@pytest.fixture
def start_harness(sip_tools: None, tmp_path: Path) -> Iterator[HarnessFactory]:
    factory = HarnessFactory(tmp_path)
    yield factory
    factory.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing SIP test's report carries Kamailio's log, the UAS's log and the last SIPp call's output."""
    report: pytest.TestReport = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        seen: set[int] = set()
        for name, value in funcargs.items():
            harnesses = value.started if isinstance(value, HarnessFactory) else [value]
            for harness in harnesses:
                if isinstance(harness, SipHarness) and id(harness) not in seen:
                    seen.add(id(harness))
                    report.sections.append(
                        (f"SIP harness ({name}, port {harness.kamailio_port})", harness.diagnostics())
                    )
        route_server = funcargs.get("route_server")
        if isinstance(route_server, RouteServer):
            lines = "\n".join(repr(r) for r in route_server.requests) or "(none)"
            report.sections.append(("route API requests", lines))
    return report
