"""What signing and verifying MCP requests costs, per request and end to end over HTTP.

Run with `make bench` (or `.venv/bin/python benchmarks/mcp_signing.py`); `--quick` for a smoke
run. Measures, in one run:

1. signing one `tools/call` request (`RequestSigner.proof`) with HMAC, Ed25519 and ES256 keys,
   for small (3 arguments) and ~1 KB arguments;
2. verifying one request (`ProofVerifier.verify`, replay check included) with the in-memory
   replay store and with a real Redis (a throwaway local `redis-server`, as the tests start it),
   per call and as a throughput loop (distinct pre-made proofs back to back, one thread);
3. one `tools/call` over streamable HTTP against `examples/mcp_server.py` on 127.0.0.1, through
   an MCP `ClientSession`: unguarded server and unsigned client vs `ProofMiddleware` +
   `SigningAuth` (HMAC).

Latencies are taken per call with `time.perf_counter_ns` after a warm-up, with the garbage
collector off inside timing windows; inputs (arguments, proofs) are made outside them. Variants
are interleaved block by block. Every result is checked outside the timed region (each signature
verifies, each verification in a timed loop was accepted, a replayed proof is refused with
reason "replay", every HTTP answer names Ada Lovelace). This is a measurement, not a test: it
exits 0 whether or not the goal is met, and non-zero only when a check fails or anything raises.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from _bench import BenchError, Stats, page

from agentguard._canonical import canonical_json

ROOT = Path(__file__).resolve().parents[1]
GOAL_PER_S = 20_000  # HMAC verifications per second on one core, in-memory replay store
AUDIENCE = "mcp://crm"
TOOL = "send_invoice"
SMALL_ARGS: dict[str, Any] = {"customer_id": "c-1", "amount_cents": 1200, "memo": "March invoice"}
ALGS = ("HMAC", "Ed25519", "ES256")


def _large_args(size: int = 1024) -> dict[str, Any]:
    """The small arguments with a memo that makes their canonical JSON exactly `size` bytes."""
    room = size - len(canonical_json({**SMALL_ARGS, "memo": ""}))
    return {**SMALL_ARGS, "memo": page(room, seed=7)}


LARGE_ARGS = _large_args()
ARGS = {
    f"3 args ({len(canonical_json(SMALL_ARGS))} B)": SMALL_ARGS,
    f"~1 KB ({len(canonical_json(LARGE_ARGS))} B)": LARGE_ARGS,
}
SMALL_LABEL = next(iter(ARGS))


@dataclass(frozen=True)
class Sizes:
    sign_n: int  # signatures per variant
    verify_n: int  # per-call verifications per variant
    blocks: int
    warmup: int
    tput_hmac: int  # proofs per throughput round
    tput_asym: int
    rounds: int
    e2e_n: int  # HTTP calls per variant
    e2e_blocks: int
    e2e_warmup: int


FULL = Sizes(3000, 2000, 5, 100, 20_000, 3000, 3, 300, 30, 20)
QUICK = Sizes(300, 200, 2, 20, 2000, 300, 1, 60, 6, 5)


def timed(fn: Callable[[Any], Any], inputs: Sequence[Any]) -> tuple[list[int], list[Any]]:
    """(ns per call, results) of `fn(x)` for each input, garbage collector off."""
    clock = time.perf_counter_ns
    times: list[int] = []
    results: list[Any] = []
    gc.collect()
    gc.disable()
    try:
        for x in inputs:
            t0 = clock()
            result = fn(x)
            t1 = clock()
            times.append(t1 - t0)
            results.append(result)
    finally:
        gc.enable()
    return times, results


@contextlib.contextmanager
def quiet_rejections() -> Iterator[None]:
    """The verifier logs each refusal; the ones this script provokes on purpose stay silent."""
    log = logging.getLogger("agentguard.mcp")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


# -- keys, signers, verifiers ---------------------------------------------------------------------


class Keys:
    """One signing key per algorithm, with its signer and its verification key."""

    def __init__(self) -> None:
        from agentguard.mcp import AsymmetricKey, HmacKey, RequestSigner

        self.signing: dict[str, Any] = {
            "HMAC": HmacKey.generate("k1"),
            "Ed25519": AsymmetricKey.generate("Ed25519"),
            "ES256": AsymmetricKey.generate("ES256"),
        }
        self.signers = {alg: RequestSigner(k, audience=AUDIENCE) for alg, k in self.signing.items()}

    def verification_key(self, alg: str) -> Any:
        key = self.signing[alg]
        return key if alg == "HMAC" else key.public_key()

    def verifier(self, alg: str, replay: Any) -> Any:
        from agentguard.mcp import ProofVerifier

        return ProofVerifier(audience=AUDIENCE, keys=[self.verification_key(alg)], replay=replay)

    def metas(self, alg: str, args: Mapping[str, Any], n: int) -> list[dict[str, Any]]:
        """`n` fresh `_meta` objects, each with its own proof (made now, untimed)."""
        from agentguard.mcp import META_KEY

        signer = self.signers[alg]
        return [{META_KEY: signer.proof(TOOL, args)} for _ in range(n)]


def verify_call(verifier: Any, args: Mapping[str, Any]) -> Callable[[Any], Any]:
    """`meta -> VerifiedRequest | ProofError`: a refusal is a result, checked afterwards."""
    from agentguard.mcp import ProofError

    verify = verifier.verify

    def run(meta: Any) -> Any:
        try:
            return verify(method="tools/call", name=TOOL, arguments=args, meta=meta)
        except ProofError as exc:
            return exc

    return run


def check_accepted(what: str, metas: Sequence[Mapping[str, Any]], results: Sequence[Any]) -> int:
    """Every verification accepted, for the nonce that was sent; returns how many."""
    from agentguard.mcp import META_KEY, VerifiedRequest
    from agentguard.mcp.proof import parse_proof

    for meta, result in zip(metas, results, strict=True):
        if not isinstance(result, VerifiedRequest):
            reason = getattr(result, "reason", type(result).__name__)
            raise BenchError(f"{what}: a valid proof was refused ({reason}: {result})")
        if result.name != TOOL or result.nonce != parse_proof(meta[META_KEY]).claims.nonce:
            raise BenchError(f"{what}: verified the wrong request ({result})")
    return len(results)


@dataclass
class Tally:
    """What the checks outside the timed regions saw."""

    signatures: int = 0
    accepted: int = 0
    replays: int = 0
    e2e_calls: int = 0


# -- 1. sign --------------------------------------------------------------------------------------


def bench_sign(keys: Keys, sizes: Sizes, tally: Tally) -> dict[tuple[str, str], Stats]:
    from agentguard.mcp import META_KEY
    from agentguard.replay import InMemoryReplayStore

    checker = {alg: keys.verifier(alg, InMemoryReplayStore(max_entries=10_000_000)) for alg in ALGS}
    variants = [(alg, label) for alg in ALGS for label in ARGS]
    found: dict[tuple[str, str], list[int]] = {v: [] for v in variants}
    per_block = max(1, -(-sizes.sign_n // sizes.blocks))
    for block in range(-1, sizes.blocks):  # block -1 is the warm-up
        k = sizes.warmup if block < 0 else per_block
        order = variants if block % 2 == 0 else variants[::-1]
        for alg, label in order:
            args = ARGS[label]
            signer = keys.signers[alg]
            times, proofs = timed(lambda _, s=signer, a=args: s.proof(TOOL, a), range(k))
            # Untimed: every signature made in the timed loop verifies, for these arguments.
            metas = [{META_KEY: p} for p in proofs]
            results = [verify_call(checker[alg], args)(m) for m in metas]
            tally.signatures += check_accepted(f"sign {alg} {label}", metas, results)
            if block >= 0:
                found[(alg, label)] += times
    return {v: Stats.of(t) for v, t in found.items()}


# -- 2. verify ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Store:
    """A replay store kind: `make()` returns a store for a fresh verifier."""

    name: str
    make: Callable[[], Any]


def bench_verify(
    keys: Keys, stores: Sequence[Store], sizes: Sizes, tally: Tally
) -> dict[tuple[str, str, str], Stats]:
    from agentguard.mcp import ProofError

    variants = [(alg, s.name, label) for alg in ALGS for s in stores for label in ARGS]
    by_name = {s.name: s for s in stores}
    verifiers = {v: keys.verifier(v[0], by_name[v[1]].make()) for v in variants}
    found: dict[tuple[str, str, str], list[int]] = {v: [] for v in variants}
    last: dict[tuple[str, str, str], Any] = {}
    per_block = max(1, -(-sizes.verify_n // sizes.blocks))
    for block in range(-1, sizes.blocks):
        k = sizes.warmup if block < 0 else per_block
        order = variants if block % 2 == 0 else variants[::-1]
        for v in order:
            alg, _, label = v
            args = ARGS[label]
            metas = keys.metas(alg, args, k)
            times, results = timed(verify_call(verifiers[v], args), metas)
            tally.accepted += check_accepted(f"verify {v}", metas, results)
            last[v] = metas[-1]
            if block >= 0:
                found[v] += times
    # Untimed: a proof that was accepted once is refused the second time, for the replay reason.
    with quiet_rejections():
        for v, meta in last.items():
            result = verify_call(verifiers[v], ARGS[v[2]])(meta)
            if not isinstance(result, ProofError) or result.reason != "replay":
                raise BenchError(f"verify {v}: a replayed proof was not refused ({result!r})")
            tally.replays += 1
    return {v: Stats.of(t) for v, t in found.items()}


@dataclass
class Throughput:
    n: int  # proofs per round
    per_s: list[float]  # verifications per second, wall clock, each round
    cpu_per_s: list[float]  # the same on this process's CPU time


def bench_throughput(
    keys: Keys, stores: Sequence[Store], sizes: Sizes, tally: Tally
) -> dict[tuple[str, str], Throughput]:
    """(alg, store) -> verifications per second, N distinct proofs back to back, 3 args."""
    from agentguard.mcp import ProofError

    variants = [(alg, s) for alg in ALGS for s in stores]
    found: dict[tuple[str, str], Throughput] = {}
    for r in range(sizes.rounds):
        order = variants if r % 2 == 0 else variants[::-1]
        for alg, store in order:
            n = sizes.tput_hmac if alg == "HMAC" else sizes.tput_asym
            verifier = keys.verifier(alg, store.make())  # an empty in-memory store each round
            metas = keys.metas(alg, SMALL_ARGS, n)
            verify = verifier.verify
            ok = 0
            gc.collect()
            gc.disable()
            try:
                c0 = time.process_time_ns()
                t0 = time.perf_counter_ns()
                for meta in metas:
                    try:
                        verify(method="tools/call", name=TOOL, arguments=SMALL_ARGS, meta=meta)
                        ok += 1
                    except ProofError:
                        pass
                elapsed = time.perf_counter_ns() - t0
                cpu = time.process_time_ns() - c0
            finally:
                gc.enable()
            if ok != n:
                raise BenchError(f"throughput {alg}/{store.name}: {n - ok} of {n} refused")
            tally.accepted += ok
            row = found.setdefault((alg, store.name), Throughput(n, [], []))
            row.per_s.append(n / (elapsed / 1e9))
            row.cpu_per_s.append(n / (max(cpu, 1) / 1e9))
    return found


# -- 3. end to end over HTTP ----------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    signed: bool
    pid: int  # the server process


@dataclass(frozen=True)
class E2E:
    """One row of table 3: wall-clock latencies and CPU time per call on both ends."""

    stats: Stats
    client_cpu: float  # µs per call, this process
    server_cpu: float | None  # µs per call, the server process (all threads); None off Linux


def process_cpu_ns(pid: int) -> int | None:
    """CPU time another process's live threads have run, ns (Linux schedstat); None elsewhere.

    The server's threads (the event loop, anyio's worker threads for a Redis store) live for
    the whole run, so the difference of two readings is the CPU the calls between them took.
    """
    total = 0
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # a thread ended
                total += int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total


async def _e2e(
    endpoints: Sequence[Endpoint], guarded_url: str, sizes: Sizes, tally: Tally
) -> dict[str, E2E]:
    import httpx
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared.exceptions import McpError
    from tests.mcp.servers import AUDIENCE as SERVER_AUDIENCE
    from tests.mcp.servers import HMAC_KID, HMAC_SECRET

    from agentguard.mcp import HmacKey, RequestSigner, SigningAuth

    signer = RequestSigner(HmacKey(HMAC_KID, HMAC_SECRET), audience=SERVER_AUDIENCE)
    args = {"customer_id": "c-1"}
    clock = time.perf_counter_ns

    async with contextlib.AsyncExitStack() as stack:

        async def session(url: str, signed: bool) -> Any:
            auth = SigningAuth(signer) if signed else None
            client = await stack.enter_async_context(
                httpx.AsyncClient(auth=auth, timeout=httpx.Timeout(30, read=300))
            )
            read, write, _ = await stack.enter_async_context(
                streamable_http_client(url, http_client=client)
            )
            s = await stack.enter_async_context(ClientSession(read, write))
            await s.initialize()
            return s

        sessions = {e.name: await session(e.url, e.signed) for e in endpoints}

        # Untimed: the guarded server really checks (an unsigned call is refused).
        unsigned = await session(guarded_url, False)
        try:
            await unsigned.call_tool("lookup_customer", args)
        except McpError as exc:
            if "missing_proof" not in str(exc):
                raise BenchError(f"unsigned call refused for another reason: {exc}") from None
        else:
            raise BenchError("the guarded server ran an unsigned tools/call")

        pids = {e.name: e.pid for e in endpoints}

        async def run_block(name: str, k: int) -> tuple[list[int], int, int | None]:
            """(ns per call, client CPU ns, server CPU ns) for `k` calls."""
            call = sessions[name].call_tool
            times: list[int] = []
            results: list[Any] = []
            gc.collect()
            gc.disable()
            try:
                server0 = process_cpu_ns(pids[name])
                client0 = time.process_time_ns()
                for _ in range(k):
                    t0 = clock()
                    result = await call("lookup_customer", args)
                    t1 = clock()
                    times.append(t1 - t0)
                    results.append(result)
                client = time.process_time_ns() - client0
                server1 = process_cpu_ns(pids[name])
            finally:
                gc.enable()
            for result in results:  # untimed
                if result.isError or "Ada Lovelace" not in result.model_dump_json():
                    raise BenchError(f"{name}: unexpected tools/call result {result!r}")
            tally.e2e_calls += len(results)
            server = None if server0 is None or server1 is None else server1 - server0
            return times, client, server

        names = [e.name for e in endpoints]
        for name in names:
            await run_block(name, sizes.e2e_warmup)
        found: dict[str, list[int]] = {name: [] for name in names}
        client_ns = dict.fromkeys(names, 0)
        server_ns: dict[str, int | None] = dict.fromkeys(names, 0)
        per_block = max(1, -(-sizes.e2e_n // sizes.e2e_blocks))
        for block in range(sizes.e2e_blocks):
            order = names if block % 2 == 0 else names[::-1]
            for name in order:
                times, client, server = await run_block(name, per_block)
                found[name] += times
                client_ns[name] += client
                total = server_ns[name]
                server_ns[name] = None if total is None or server is None else total + server
    out = {}
    for name, times in found.items():
        total = server_ns[name]
        server_cpu = None if total is None else total / len(times) / 1e3
        out[name] = E2E(Stats.of(times), client_ns[name] / len(times) / 1e3, server_cpu)
    return out


def bench_e2e(sizes: Sizes, redis_url: str, tally: Tally) -> dict[str, E2E]:
    from tests.mcp.servers import http_server, server_env

    with contextlib.ExitStack() as stack:
        plain = stack.enter_context(http_server("--unguarded", env=server_env()))
        guarded = stack.enter_context(http_server(env=server_env()))
        endpoints = [
            Endpoint("unguarded server, unsigned client", plain.url, False, plain.process.pid),
            Endpoint("ProofMiddleware + SigningAuth, HMAC", guarded.url, True, guarded.process.pid),
        ]
        shared = stack.enter_context(http_server(env=server_env(redis_url=redis_url)))
        endpoints.append(
            Endpoint("  same, Redis replay store", shared.url, True, shared.process.pid)
        )
        return asyncio.run(_e2e(endpoints, guarded.url, sizes, tally))


# -- set-up, report -------------------------------------------------------------------------------


@contextlib.contextmanager
def redis() -> Iterator[str]:
    """The URL of a throwaway local redis-server, started as the tests start it."""
    from tests.services import RedisServer, ServiceError

    server = RedisServer()
    try:
        server.start()
    except ServiceError as exc:
        server.stop()
        raise BenchError(f"cannot start redis-server ({exc}); run `make services`") from None
    try:
        yield server.url
    finally:
        server.stop()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def header(mode: str) -> list[str]:
    try:
        redis_server = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, check=False
        ).stdout.split()[2]
    except (OSError, IndexError):
        redis_server = "-"
    packages = ", ".join(
        f"{p} {_version(p)}" for p in ("mcp", "joserfc", "cryptography", "redis", "uvicorn")
    )
    return [
        "MCP request signing: sign, verify, and one tools/call over HTTP",
        f"  {mode} run; Python {platform.python_version()} on {platform.machine()}, "
        f"{os.cpu_count()} CPUs; {packages}; redis-server {redis_server.removeprefix('v=')}",
        "  All latencies in µs; p50 is the median.",
    ]


def report(
    sign: Mapping[tuple[str, str], Stats],
    verify: Mapping[tuple[str, str, str], Stats],
    tput: Mapping[tuple[str, str], Throughput],
    e2e: Mapping[str, E2E],
    tally: Tally,
) -> list[str]:
    lines = ["", "1. Sign one tools/call request (RequestSigner.proof)"]
    lines.append(f"  {'key':8} {'arguments':16} {'p50':>9} {'p90':>9} {'p99':>9}")
    for (alg, label), s in sign.items():
        lines.append(f"  {alg:8} {label:16} {s.cells()}")

    lines += ["", "2. Verify one request (ProofVerifier.verify, replay check included)"]
    lines.append(
        f"  {'key':8} {'replay store':13} {'arguments':16} {'p50':>9} {'p90':>9} {'p99':>9}"
        f" {'1e6/p50 /s':>11}"
    )
    for (alg, store, label), s in verify.items():
        lines.append(f"  {alg:8} {store:13} {label:16} {s.cells()} {1e6 / s.p50:11,.0f}")

    rounds = len(next(iter(tput.values())).per_s)
    lines += [
        "",
        "   Throughput: N distinct pre-made proofs verified back to back on one thread, 3 args",
        f"   (median and best of {rounds} round{'s' if rounds > 1 else ''}; CPU: the same on "
        "this process's CPU time, which leaves out the wait for Redis)",
        f"  {'key':8} {'replay store':13} {'N':>7} {'verif./s':>10} {'best':>10} "
        f"{'CPU /s':>10} {'1e6/p50':>10}",
    ]
    for (alg, store), t in tput.items():
        p50 = verify[(alg, store, SMALL_LABEL)].p50
        lines.append(
            f"  {alg:8} {store:13} {t.n:7,} {statistics.median(t.per_s):10,.0f} "
            f"{max(t.per_s):10,.0f} {statistics.median(t.cpu_per_s):10,.0f} {1e6 / p50:10,.0f}"
        )

    base_name = next(iter(e2e))
    base = e2e[base_name]
    lines += [
        "",
        "3. One tools/call over streamable HTTP: lookup_customer through an mcp ClientSession",
        "   against examples/mcp_server.py on 127.0.0.1 (a separate process)",
        f"  {'server / client':38} {'p50':>9} {'p90':>9} {'p99':>9} {'added p50':>11} {'ratio':>6}",
    ]
    for name, row in e2e.items():
        s = row.stats
        extra = (
            ""
            if name == base_name
            else f" {s.p50 - base.stats.p50:+9.0f}µs {s.p50 / base.stats.p50:6.3f}"
            f" ({s.p50 / base.stats.p50 - 1:+.1%})"
        )
        lines.append(f"  {name:38} {s.cells()}{extra}")
    lines += [
        f"  ({base.stats.n} calls per row, interleaved blocks)",
        "   CPU time per call, µs (client: this process; server: the server process, all threads)",
        f"  {'server / client':38} {'client':>9} {'server':>9} {'total':>9} {'added':>11}",
    ]

    def total(row: E2E) -> float | None:
        return None if row.server_cpu is None else row.client_cpu + row.server_cpu

    for name, row in e2e.items():
        server = "-" if row.server_cpu is None else f"{row.server_cpu:9.0f}"
        both, base_both = total(row), total(base)
        cells = f"{row.client_cpu:9.0f} {server:>9} {'-' if both is None else f'{both:9.0f}':>9}"
        if name != base_name and both is not None and base_both is not None:
            cells += f" {both - base_both:+9.0f}µs"
        lines.append(f"  {name:38} {cells}")

    hmac_memory = tput[("HMAC", "in-memory")]
    per_s = statistics.median(hmac_memory.per_s)
    cpu_per_s = statistics.median(hmac_memory.cpu_per_s)
    per_call = 1e6 / verify[("HMAC", "in-memory", SMALL_LABEL)].p50
    met = per_s >= GOAL_PER_S
    lines += [
        "",
        "Goal",
        f"  HMAC verifications per second on one core, in-memory replay store: {per_s:,.0f} "
        f"(loop; {cpu_per_s:,.0f} on CPU time; {per_call:,.0f} as 1e6/p50)",
        f"  goal >= {GOAL_PER_S:,}/s: GOAL {'met' if met else 'not met'}",
        "  Note: each throughput round starts from an empty store. A default "
        "InMemoryReplayStore holds",
        "  at most 100,000 nonces, each for 2 x max_skew + 1 s (121 s by default): above ~826 "
        "verifications/s",
        "  sustained it fills up and refuses requests ('unavailable') until entries expire. "
        "Size max_entries",
        "  for the real rate (rate x 121).",
        "",
        f"Checks (outside the timed regions): {tally.signatures:,} signatures verified, "
        f"{tally.accepted:,} timed verifications all accepted, {tally.replays} replayed proofs "
        f"refused with reason 'replay', {tally.e2e_calls:,} HTTP results all name Ada Lovelace, "
        "an unsigned call to the guarded server refused (missing_proof).",
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a few seconds, rough figures")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    missing = [m for m in ("mcp", "joserfc", "redis") if importlib.util.find_spec(m) is None]
    if missing:
        print(
            f"cannot run: {', '.join(missing)} not installed (make bench installs the dev extras)",
            file=sys.stderr,
        )
        return 1
    sys.path.insert(0, str(ROOT))  # tests.services, tests.mcp.servers
    from agentguard.replay import InMemoryReplayStore, RedisReplayStore

    started = time.perf_counter()
    print("\n".join(header("quick" if args.quick else "default")), flush=True)
    tally = Tally()
    keys = Keys()
    try:
        with redis() as redis_url:
            stores = [
                Store("in-memory", InMemoryReplayStore),
                Store("Redis", lambda: RedisReplayStore.from_url(redis_url)),
            ]
            steps: list[tuple[str, Callable[[], Any]]] = [
                ("sign", lambda: bench_sign(keys, sizes, tally)),
                ("verify, per call", lambda: bench_verify(keys, stores, sizes, tally)),
                ("verify, throughput", lambda: bench_throughput(keys, stores, sizes, tally)),
                ("tools/call over HTTP", lambda: bench_e2e(sizes, redis_url, tally)),
            ]
            results: list[Any] = []
            for i, (label, step) in enumerate(steps, 1):
                t0 = time.perf_counter()
                print(f"  [{i}/{len(steps)}] {label} ...", end="", flush=True, file=sys.stderr)
                results.append(step())
                print(f" {time.perf_counter() - t0:.1f} s", flush=True, file=sys.stderr)
        lines = report(*results, tally)
        lines.append(f"\n(total {time.perf_counter() - started:.1f} s)")
        print("\n".join(lines))
    except BenchError as exc:
        print(f"\nbenchmark error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
