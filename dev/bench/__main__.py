"""`make bench`: cold start, warm hot path, failover cost and footprint, each as a ratio against a floor
measured in the same run (machines here are shared and noisy: absolute numbers move, ratios much less).
Prints a table, writes benchmarks.json and draws benchmarks.png into bench-results/ (untracked; --out docs
publishes them as the committed results that docs/performance.md shows)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from dev.bench import TABLES, cold_start, failover, footprint, function_config, hot_path
from dev.build import sam_build
from dev.dynamodb_local import DynamoDBLocal
from dev.functions import load_function
from dev.latency_proxy import LatencyProxy
from dev.millis_simulator import Fault, MillisSimulator
from dev.template import ROOT, create_tables

# The targets, each against its floor measured in the same run (docs/performance.md).
TARGETS = {
    "cold start ApiFunction (x floor)": 1.25,
    "cold start SipMediaAppFunction (x floor)": 1.10,
    "cold start InboundFunction (x floor)": 1.10,
    "cold-start CPU with bytecode / without, ApiFunction": 0.45,
    "cold-start CPU with bytecode / without, SipMediaAppFunction": 0.45,
    "cold-start CPU with bytecode / without, InboundFunction": 0.45,
    "warm overhead POST /calls p50 (us)": 500.0,
    "warm overhead NEW_INBOUND_CALL p50 (us)": 300.0,
    "warm overhead Twilio webhook p50 (us)": 300.0,
    "warm overhead GET /route p50 (us)": 300.0,
    "NEW_INBOUND_CALL vs transactional floor p50 (us)": 500.0,
    "Twilio webhook vs transactional floor p50 (us)": 500.0,
    "GET /route vs transactional floor p50 (us)": 500.0,
    "NEW_INBOUND_CALL vs four-round-trip floor p50 (us)": 300.0,
    "Twilio webhook vs four-round-trip floor p50 (us)": 300.0,
    "GET /route vs four-round-trip floor p50 (us)": 300.0,
    "NEW_INBOUND_CALL vs four-round-trip floor, 5 ms network, p50 (us)": 300.0,
    "Twilio webhook vs four-round-trip floor, 5 ms network, p50 (us)": 300.0,
    "GET /route vs four-round-trip floor, 5 ms network, p50 (us)": 300.0,
    "peak memory above floor ApiFunction (MiB)": 8.0,
    "peak memory above floor SipMediaAppFunction (MiB)": 3.0,
    "peak memory above floor InboundFunction (MiB)": 3.0,
    "failover after refused (ms)": 50.0,
}
DEFAULT_OUT = ROOT / "bench-results"  # untracked (.gitignore); docs/ holds the published results


@contextmanager
def rig() -> Iterator[tuple[DynamoDBLocal, MillisSimulator, dict[str, str]]]:
    with ExitStack() as stack:
        ddb = stack.enter_context(DynamoDBLocal())
        sim = stack.enter_context(MillisSimulator())
        create_tables(ddb.endpoint, TABLES)
        env = function_config(sim.env(), ddb.endpoint)
        yield ddb, sim, env


def loader(env: dict[str, str], module: str) -> Any:
    def load(**overrides: str) -> ModuleType:
        os.environ.update({**env, **overrides})
        loaded = load_function(module)
        os.environ.update(env)
        return loaded

    return load


def run(repeats: int, invocations: int, build: Path) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    }
    print("cold start ...", flush=True)
    results["cold_start"] = cold_start.measure(build, repeats)
    results["cold_start_breakdown_ms"] = {t: cold_start.breakdown(build, t, top=10) for t in cold_start.TARGETS}
    results["cold_start_tracing_active"] = cold_start.measure(
        build, max(3, repeats // 3), {"POWERTOOLS_TRACE_DISABLED": "false"}
    )
    print("bytecode ...", flush=True)
    results["bytecode_cpu"] = cold_start.bytecode_cpu(build, repeats=max(5, repeats // 2))
    with rig() as (ddb, sim, env):
        block = max(30, invocations // 3)
        floors = (sim, ddb.endpoint, TABLES.calls, block)
        print("hot path ...", flush=True)
        api = loader(env, "api_handler")()
        results["hot_path_api"] = hot_path.report(
            *hot_path.interleaved(lambda: hot_path.api_path(api, block), lambda: hot_path.api_floor(*floors))
        )
        sma = loader(env, "sma_handler")()
        inbound = loader(env, "inbound_handler")()
        phone_paths = {
            "hot_path_chime": lambda: hot_path.sma_path(sma, block),
            "hot_path_twilio": lambda: hot_path.inbound_path(inbound, hot_path.twilio_event(), block),
            "hot_path_route": lambda: hot_path.inbound_path(inbound, hot_path.route_event(), block),
        }
        for key, path in phone_paths.items():
            results[key] = hot_path.report(*hot_path.interleaved(path, lambda: hot_path.phone_floor(*floors)))
            # Against the floor whose last write is the same two-item transaction as the stack's.
            tx = hot_path.report(*hot_path.interleaved(path, lambda: hot_path.transactional_floor(*floors)))
            results[key]["vs_transactional_floor_p50_us"] = tx["vs_floor_p50_us"]
            results[key]["transactional_floor_p50_us"] = tx["floor_p50_us"]
        print("hot path over a network ...", flush=True)
        results.update(networked(env, sim, ddb.endpoint, block))
        print("time to answer a carrier ...", flush=True)
        sim.set_fault("us-west", Fault(delay=MILLIS_LATENCY))  # Millis answering at a fixed latency
        # load_function reloads the module in place: networked() left it pointing at its proxies, now closed
        inbound = loader(env, "inbound_handler")()
        results["answer_twilio_warm"] = hot_path.report(
            *hot_path.interleaved(
                lambda: hot_path.inbound_path(inbound, hot_path.twilio_event(), block),
                lambda: hot_path.answer_floor(*floors),
            )
        )
        make = hot_path.twilio_event()
        events = [json.dumps(make()) for _ in range(repeats)]
        floor = {"url": sim.base_url("us-west") + "/register_sip_call", "key": sim.api_key, "table": TABLES.calls}
        results["answer_twilio_cold"] = cold_start.first_answer(build, env, events, floor, repeats=repeats)
        results["answer_twilio_cold"]["millis_latency_ms"] = MILLIS_LATENCY * 1000
        sim.clear()
        print("failover ...", flush=True)
        results["failover"] = failover.measure(loader(env, "api_handler"), read_timeout=0.5)
        print("footprint ...", flush=True)
        results["peak_memory"] = footprint.peak_memory_mb(build, env)
    results["zipped_mb"] = footprint.zipped_sizes(build)
    results["layer_packages_mb"] = footprint.unzipped_layer_packages(build)
    results["targets"] = targets(results)
    return results


MILLIS_LATENCY = 0.02  # seconds the simulator takes to register, for the time to answer a carrier
NETWORK_ONE_WAY = 0.0025  # seconds each way between the function and DynamoDB or Millis (a 5 ms round trip)


def networked(env: dict[str, str], sim: MillisSimulator, endpoint: str, block: int) -> dict[str, Any]:
    """The call path and its four-round-trip floor with a network between the function and DynamoDB and
    Millis (a proxy adding NETWORK_ONE_WAY each way), where requests that overlap overlap their round trips."""
    found: dict[str, Any] = {}
    millis_target = sim.base_url("us-west").rsplit("/", 1)[0]
    with LatencyProxy(endpoint, NETWORK_ONE_WAY) as ddb, LatencyProxy(millis_target, NETWORK_ONE_WAY) as millis:
        over = {
            "AWS_ENDPOINT_URL_DYNAMODB": ddb.url,
            "MILLIS_US_WEST_URL": f"{millis.url}/us-west",
            "MILLIS_EU_WEST_URL": f"{millis.url}/eu-west",
        }
        sma = loader({**env, **over}, "sma_handler")()
        inbound = loader({**env, **over}, "inbound_handler")()

        def floor() -> hot_path.Timings:
            return hot_path.phone_floor(sim, ddb.url, TABLES.calls, block, millis_base=f"{millis.url}/us-west")

        paths = {
            "network_chime": lambda: hot_path.sma_path(sma, block),
            "network_twilio": lambda: hot_path.inbound_path(inbound, hot_path.twilio_event(), block),
            "network_route": lambda: hot_path.inbound_path(inbound, hot_path.route_event(), block),
        }
        for key, path in paths.items():
            found[key] = hot_path.report(*hot_path.interleaved(path, floor))
    os.environ.update(env)
    return found


def targets(results: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """Each target's measured value beside its limit."""
    cold, cpu, memory = results["cold_start"], results["bytecode_cpu"], results["peak_memory"]
    measured = {
        "cold start ApiFunction (x floor)": cold["ApiFunction"]["ratio"],
        "cold start SipMediaAppFunction (x floor)": cold["SipMediaAppFunction"]["ratio"],
        "cold start InboundFunction (x floor)": cold["InboundFunction"]["ratio"],
        **{f"cold-start CPU with bytecode / without, {name}": cpu[name]["ratio"] for name in cpu},
        "warm overhead POST /calls p50 (us)": results["hot_path_api"]["overhead_p50_us"],
        "warm overhead NEW_INBOUND_CALL p50 (us)": results["hot_path_chime"]["overhead_p50_us"],
        "warm overhead Twilio webhook p50 (us)": results["hot_path_twilio"]["overhead_p50_us"],
        "warm overhead GET /route p50 (us)": results["hot_path_route"]["overhead_p50_us"],
        "NEW_INBOUND_CALL vs transactional floor p50 (us)": results["hot_path_chime"]["vs_transactional_floor_p50_us"],
        "Twilio webhook vs transactional floor p50 (us)": results["hot_path_twilio"]["vs_transactional_floor_p50_us"],
        "GET /route vs transactional floor p50 (us)": results["hot_path_route"]["vs_transactional_floor_p50_us"],
        "NEW_INBOUND_CALL vs four-round-trip floor p50 (us)": results["hot_path_chime"]["vs_floor_p50_us"],
        "Twilio webhook vs four-round-trip floor p50 (us)": results["hot_path_twilio"]["vs_floor_p50_us"],
        "GET /route vs four-round-trip floor p50 (us)": results["hot_path_route"]["vs_floor_p50_us"],
        "NEW_INBOUND_CALL vs four-round-trip floor, 5 ms network, p50 (us)": results["network_chime"][
            "vs_floor_p50_us"
        ],
        "Twilio webhook vs four-round-trip floor, 5 ms network, p50 (us)": results["network_twilio"]["vs_floor_p50_us"],
        "GET /route vs four-round-trip floor, 5 ms network, p50 (us)": results["network_route"]["vs_floor_p50_us"],
        **{
            f"peak memory above floor {name} (MiB)": memory[f"{name}_mb"] - memory["floor_mb"]
            for name in ("ApiFunction", "SipMediaAppFunction", "InboundFunction")
        },
        "failover after refused (ms)": results["failover"]["refused_extra_ms"],
    }
    found = {name: (value, TARGETS[name]) for name, value in measured.items()}
    found["failover after black hole (ms)"] = (
        results["failover"]["black_hole_extra_ms"],
        results["failover"]["read_timeout_ms"] * 1.1,
    )
    return found


def table(results: dict[str, Any]) -> str:
    lines = [f"machine: {results['machine']}", "", "cold start (init inside a fresh interpreter, median)"]
    for name, r in results["cold_start"].items():
        lines.append(f"  {name:<28} {r['median_ms']:8.1f} ms   x{r['ratio']:.2f}")
    for name, r in results["cold_start_tracing_active"].items():
        if name != "floor":
            lines.append(f"  {name + ' +X-Ray':<28} {r['median_ms']:8.1f} ms   x{r['ratio']:.2f}")
    lines += ["", "cold-start CPU of the import: shipped bytecode vs the same artifact without (median)"]
    for name, r in results["bytecode_cpu"].items():
        lines.append(
            f"  {name:<28} {r['shipped_cpu_ms']:8.1f} ms vs {r['without_bytecode_cpu_ms']:8.1f} ms   x{r['ratio']:.2f}"
        )
    paths = (
        ("POST /calls", "hot_path_api", "floor: Millis + one conditional put"),
        ("NEW_INBOUND_CALL", "hot_path_chime", "floor: query, conditional put, Millis, put"),
        ("Twilio webhook", "hot_path_twilio", "floor: query, conditional put, Millis, put"),
        ("GET /route", "hot_path_route", "floor: query, conditional put, Millis, put"),
        ("NEW_INBOUND_CALL over a 5 ms network", "network_chime", "floor: query, conditional put, Millis, put"),
        ("Twilio webhook over a 5 ms network", "network_twilio", "floor: query, conditional put, Millis, put"),
        ("GET /route over a 5 ms network", "network_route", "floor: query, conditional put, Millis, put"),
        ("time to answer Twilio, warm", "answer_twilio_warm", "floor: Millis + one put; Millis at a fixed latency"),
    )
    for label, key, floor in paths:
        r = results[key]
        lines += [
            "",
            f"warm: {label} (per invocation; {floor})",
            f"  path   p50 {r['path_p50_us']:9.0f} us  p99 {r['path_p99_us']:9.0f} us",
            f"  floor  p50 {r['floor_p50_us']:9.0f} us  p99 {r['floor_p99_us']:9.0f} us",
            f"  vs floor p50 {r['vs_floor_p50_us']:+8.0f} us   x{r['ratio_p50']:.3f}",
            *(
                [f"  vs the transactional floor p50 {r['vs_transactional_floor_p50_us']:+8.0f} us"]
                if "vs_transactional_floor_p50_us" in r
                else []
            ),
            f"  overhead (each invocation minus its own network calls) p50 {r['overhead_p50_us']:6.0f} us,"
            f" p99 {r['overhead_p99_us']:6.0f} us",
        ]
        for stage, us in r["stages_p50_us"].items():
            lines.append(f"    {stage:<62} {us:8.0f} us")
    a = results["answer_twilio_cold"]
    lines += [
        "",
        "time to answer Twilio, cold (a fresh process: import + first webhook; "
        f"Millis {a['millis_latency_ms']:.0f} ms)",
        f"  InboundFunction {a['inbound_ms']:8.1f} ms   floor {a['floor_ms']:8.1f} ms   x{a['ratio']:.2f}",
    ]
    f = results["failover"]
    lines += [
        "",
        "failover (POST /calls, median)",
        f"  nearest region            {f['nearest_ms']:8.1f} ms",
        f"  nearest refuses           {f['refused_ms']:8.1f} ms  (+{f['refused_extra_ms']:.1f})",
        f"  nearest black-holes       {f['black_hole_ms']:8.1f} ms  (+{f['black_hole_extra_ms']:.1f},"
        f" read timeout {f['read_timeout_ms']:.0f})",
    ]
    lines += ["", "footprint"] + [f"  peak RSS {k:<26} {v:7.1f} MiB" for k, v in results["peak_memory"].items()]
    lines += [f"  zipped   {k:<26} {v * 1024:9.1f} KiB" for k, v in results["zipped_mb"].items()]
    lines += ["", "targets"]
    for name, (value, limit) in results["targets"].items():
        lines.append(f"  {'met ' if value <= limit else 'MISS'} {name:<58} {value:10.2f}  (target <= {limit:.2f})")
    return "\n".join(lines)


WARM_PLOTTED = (
    ("POST /calls", "hot_path_api"),
    ("Chime", "hot_path_chime"),
    ("Twilio", "hot_path_twilio"),
    ("GET /route", "hot_path_route"),
)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cold, hot) = plt.subplots(1, 2, figsize=(15, 5.5), gridspec_kw={"width_ratios": [1.3, 1], "wspace": 0.45})
    packages: list[str] = []
    for breakdown in results["cold_start_breakdown_ms"].values():
        packages += [p for p in breakdown if p not in packages]
    targets = list(results["cold_start_breakdown_ms"])
    left = [0.0] * len(targets)
    colours = plt.get_cmap("tab20")
    for i, package in enumerate(packages):
        values = [results["cold_start_breakdown_ms"][t].get(package, 0.0) for t in targets]
        cold.barh(targets, values, left=left, label=package, color=colours(i % 20))
        left = [a + b for a, b in zip(left, values, strict=True)]
    cold.set_xlabel("import time, ms (each module's own time, by package)")
    cold.set_title("Cold start: where the import time goes")
    cold.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    cold.invert_yaxis()

    labels: list[str] = []
    stages: dict[str, list[float]] = {}
    for label, key in WARM_PLOTTED:
        labels.append(label)
        for stage, us in results[key]["stages_p50_us"].items():
            if not stage.startswith("network"):
                stages.setdefault(stage, []).append(us)
    bottom = [0.0] * len(labels)
    for j, (stage, values) in enumerate(stages.items()):
        hot.bar(labels, values, bottom=bottom, label=stage, color=colours(2 * j + 2), width=0.5)
        bottom = [a + b for a, b in zip(bottom, values, strict=True)]
    for i, (_, key) in enumerate(WARM_PLOTTED):
        paired = results[key]["overhead_p50_us"]
        hot.plot(
            [i - 0.3, i + 0.3],
            [paired, paired],
            color="black",
            linewidth=2,
            label="each invocation minus its own network calls" if i == 0 else None,
        )
        hot.annotate(
            f"{paired:.0f} us",
            (i, paired),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=8,
        )
    hot.axhline(500, color="red", linestyle="--", linewidth=1, label="target, POST /calls: 500 us")
    hot.axhline(300, color="orange", linestyle="--", linewidth=1, label="target, the call path: 300 us")
    hot.set_ylabel("us per invocation (p50), network excluded")
    hot.set_title("Warm hot path: what the function adds to its network calls")
    hot.set_ylim(0, max(results[k]["overhead_p50_us"] for _, k in WARM_PLOTTED) * 1.25)
    hot.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.savefig(path, dpi=100, bbox_inches="tight")


def write(results: dict[str, Any], out: Path) -> tuple[Path, Path]:
    """benchmarks.json and benchmarks.png in ``out`` (created if missing)."""
    out.mkdir(parents=True, exist_ok=True)
    data, image = out / "benchmarks.json", out / "benchmarks.png"
    data.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, image)
    return data, image


def replot(out: Path) -> None:
    plot(json.loads((out / "benchmarks.json").read_text()), out / "benchmarks.png")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=11, help="cold starts per target")
    parser.add_argument("--invocations", type=int, default=600, help="warm invocations per path")
    parser.add_argument("--build-dir", type=Path, help="reuse a `sam build` (host architecture) instead of building")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="folder for the results (default bench-results/; docs publishes)"
    )
    args = parser.parse_args()
    print(f"results go to {args.out}/ (about fifteen minutes)", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        build = args.build_dir or sam_build(Path(scratch) / "build")
        results = run(args.repeats, args.invocations, build)
    data, image = write(results, args.out)
    print(table(results))
    print(f"\nwrote {data} and {image}")
    if args.out.resolve() != (ROOT / "docs").resolve():
        print("to publish them as the results docs/performance.md shows: make bench BENCH_OUT=docs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
