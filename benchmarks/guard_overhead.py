"""How much latency agentguard adds to a tool call and to one agent loop iteration.

Run with `make bench` (or `.venv/bin/python benchmarks/guard_overhead.py`); `--quick` for a
smoke run of a few seconds. Measures, in one run:

1. the core decision (`Guard.check`) and its parts, for one allowed `send_email` call;
2. one call through LangGraph's `ToolNode` vs `GuardedToolNode` (in-memory and SQLite audit);
3. one `create_agent` loop iteration (model -> tool -> model), without and with `GuardMiddleware`.

Everything runs offline (scripted model, no-op tool). A/B variants are measured interleaved in
blocks so that drift (CPU frequency, other processes) hits every variant alike. Latencies are
taken per call with `time.perf_counter_ns`, after a warm-up, with the garbage collector disabled
inside timing windows. This is a measurement, not a test: it exits 0 whether or not the goals are
met, and non-zero only when something went wrong (an exception, or a guarded call that did not
behave as expected).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import platform
import secrets
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from _bench import BenchError, Stats
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool, tool
from langgraph.prebuilt import ToolNode
from langgraph.runtime import Runtime

from agentguard.audit import AuditLog, MemorySink, SqliteSink
from agentguard.checks.authz import AuthzRequest
from agentguard.checks.limits import MARK
from agentguard.checks.schema import validate_args
from agentguard.context import Principal
from agentguard.demo import crm
from agentguard.guard import Guard
from agentguard.identity import CallContext
from agentguard.integrations.langchain import GuardMiddleware
from agentguard.integrations.langgraph import GuardedToolNode
from agentguard.policy.loader import load_policy
from agentguard.policy.model import Policy
from agentguard.testing import ScriptedChatModel
from agentguard.verdict import Decision

GOAL_CALL_US = 100.0
GOAL_ITERATION_PCT = 10.0

PRINCIPAL = Principal(tenant="acme", user="alice", role="employee")
CONTEXT = {"principal": PRINCIPAL}
ARGS = {"to": "bob.lee@acme.example", "subject": "Meeting moved", "body": "Now at 3pm."}
BAD_ARGS = {**ARGS, "bcc": "archive@evil.example"}  # an argument the tool does not declare
TOOL_RESULT = "queued"


@tool("send_email")
def cheap_send_email(to: str, subject: str, body: str) -> str:
    """Send an email."""
    return TOOL_RESULT


def bench_tools() -> list[BaseTool]:
    """The demo CRM toolset, with `send_email` swapped for a side-effect-free twin."""
    return [cheap_send_email if t.name == "send_email" else t for t in crm.all_tools()]


@dataclass(frozen=True)
class Sizes:
    core: int  # timed iterations per core-decision row (SQLite rows get a quarter)
    node: int  # timed invokes per ToolNode variant
    agent: int  # timed invokes per create_agent variant
    block: int  # interleaving block, as a fraction of n: n // block per block

    def warmup(self, n: int) -> int:
        return max(20, n // 10)


FULL = Sizes(core=10_000, node=1_200, agent=300, block=20)
QUICK = Sizes(core=400, node=80, agent=12, block=4)


# -- measuring ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """One thing to time: `run(x)` is timed, `check(x, result)` runs outside the window."""

    name: str
    run: Callable[[Any], Any]
    check: Callable[[Any, Any], None] | None = None


#: Process CPU time (all threads) per call, by variant: unlike wall time, not inflated when other
#: work shares the machine, so the overheads it gives move less from run to run.
CPU_NS: dict[str, list[int]] = {}


def _timed(variant: Variant, inputs: Sequence[Any]) -> tuple[list[int], list[int]]:
    clock, cpu = time.perf_counter_ns, time.process_time_ns
    run, check = variant.run, variant.check
    wall_ns: list[int] = []
    cpu_ns: list[int] = []
    gc.collect()
    gc.disable()
    try:
        for x in inputs:
            c0 = cpu()
            t0 = clock()
            result = run(x)
            t1 = clock()
            c1 = cpu()
            wall_ns.append(t1 - t0)
            cpu_ns.append(c1 - c0)
            if check is not None:
                check(x, result)  # untimed; gc stays off so the next call is not billed for it
    finally:
        gc.enable()
    return wall_ns, cpu_ns


def sample(
    variants: Sequence[Variant],
    make_input: Callable[[], Any],
    n: int,
    *,
    warmup: int,
    blocks: int = 1,
) -> dict[str, list[int]]:
    """Per-call latencies (ns) for each variant, interleaved block by block.

    Inputs are built before each timing window, so their construction is never timed. CPU
    times of the same calls go to `CPU_NS`.
    """
    for v in variants:
        _timed(v, [make_input() for _ in range(warmup)])
    results: dict[str, list[int]] = {v.name: [] for v in variants}
    per_block = max(1, -(-n // max(1, blocks)))
    done = 0
    while done < n:
        k = min(per_block, n - done)
        for v in variants:
            wall_ns, cpu_ns = _timed(v, [make_input() for _ in range(k)])
            results[v.name].extend(wall_ns)
            CPU_NS.setdefault(v.name, []).extend(cpu_ns)
        done += k
    return results


def cpu_p50(name: str) -> float:
    """Median process CPU time of a variant, µs."""
    return statistics.median(CPU_NS[name]) / 1e3


# -- set-up ---------------------------------------------------------------------------------------


def demo_policy() -> Policy:
    text = resources.files("agentguard.demo").joinpath("policy.yaml").read_text(encoding="utf-8")
    return load_policy(text)


class Guards:
    """Fresh guards on demand (one audit log per guard: sinks accept a single writer)."""

    def __init__(self, sqlite_dir: Path) -> None:
        self.policy = demo_policy()
        self.sqlite_dir = sqlite_dir
        self._n = itertools.count()
        self.opened: list[Guard] = []

    def make(self, sink: str, *, dlp: bool = True) -> Guard:
        if sink == "memory":
            audit = AuditLog(MemorySink(), secrets.token_bytes(32), key_id="bench")
        elif sink == "sqlite":
            path = self.sqlite_dir / f"audit-{next(self._n)}.sqlite"
            audit = AuditLog(SqliteSink(path), secrets.token_bytes(32), key_id="bench")
        else:  # pragma: no cover - programming error
            raise ValueError(sink)
        policy = self.policy
        if not dlp:  # what the rest of the pipeline costs, DLP (on by default) aside
            policy = policy.model_copy(
                update={"dlp": policy.dlp.model_copy(update={"enabled": False})}
            )
        guard = Guard(policy, audit=audit, resources={"contact": crm.contact_owner})
        self.opened.append(guard)
        return guard

    def close(self) -> None:
        for guard in self.opened:
            guard.audit.close()


def audit_count(guard: Guard) -> int:
    head = guard.audit.head()
    return 0 if head is None else head[0] + 1


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise BenchError(message)


# -- 1. the core decision ----------------------------------------------------------------------


def bench_core(guards: Guards, sizes: Sizes) -> dict[str, Stats]:
    tools = {t.name: t for t in bench_tools()}
    ctx = CallContext(runtime_context=CONTEXT)
    ids = itertools.count()

    def allowed_call() -> dict[str, Any]:
        return {"name": "send_email", "args": dict(ARGS), "id": f"call-{next(ids)}"}

    def refused_call() -> dict[str, Any]:
        return {"name": "send_email", "args": dict(BAD_ARGS), "id": f"call-{next(ids)}"}

    mem = guards.make("memory")
    no_dlp = guards.make("memory", dlp=False)
    sql = guards.make("sqlite")
    compiled = mem.compile(tools["send_email"])
    assert compiled is not None
    limits = mem.policy.limits
    tool_policy = mem.policy.tools["send_email"]

    def schema_only(call: Mapping[str, Any]) -> Any:
        return validate_args(compiled, call["args"], limits)

    def authz_only(call: Mapping[str, Any]) -> Any:
        request = AuthzRequest(PRINCIPAL, "send_email", tool_policy, mem.policy, call["args"])
        return mem.decision_point.decide(request)

    def check_with(guard: Guard) -> Callable[[Mapping[str, Any]], Any]:
        return lambda call: guard.check(call, ctx, tools)

    def no_problems(_: Any, problems: Any) -> None:
        expect(problems == [], f"validate_args refused valid arguments: {problems}")

    def authz_ok(_: Any, result: Any) -> None:
        expect(not result.denials and result.approval is None, f"authz refused: {result}")

    def allowed(_: Any, verdict: Any) -> None:
        expect(verdict.decision is Decision.ALLOW, f"expected allow, got {verdict.decision}")

    def refused(_: Any, verdict: Any) -> None:
        code = verdict.primary_reason.code if verdict.primary_reason else None
        expect(
            verdict.decision is Decision.DENY and code == "schema.invalid",
            f"expected a schema refusal, got {verdict.decision} ({code})",
        )

    n, w = sizes.core, sizes.warmup(sizes.core)
    rows: dict[str, list[int]] = {}
    for variant, make in (
        (Variant("schema validation only (validate_args)", schema_only, no_problems), allowed_call),
        (Variant("authorization only (decision_point.decide)", authz_only, authz_ok), allowed_call),
        (Variant("check(), allowed, in-memory audit", check_with(mem), allowed), allowed_call),
        (
            Variant("check(), allowed, in-memory, DLP off", check_with(no_dlp), allowed),
            allowed_call,
        ),
        (
            Variant("check(), refused (extra arg), in-memory", check_with(mem), refused),
            refused_call,
        ),
    ):
        rows.update(sample([variant], make, n, warmup=w))
    rows.update(
        sample(
            [Variant("check(), allowed, SQLite audit", check_with(sql), allowed)],
            allowed_call,
            max(2, n // 4),
            warmup=max(20, w // 4),
        )
    )
    expect(audit_count(mem) == 2 * (n + w), "in-memory audit log missed decisions")
    order = [
        "schema validation only (validate_args)",
        "authorization only (decision_point.decide)",
        "check(), allowed, in-memory audit",
        "check(), allowed, in-memory, DLP off",
        "check(), allowed, SQLite audit",
        "check(), refused (extra arg), in-memory",
    ]
    return {name: Stats.of(rows[name]) for name in order}


# -- 2. ToolNode vs GuardedToolNode --------------------------------------------------------------


def bench_tool_node(guards: Guards, sizes: Sizes) -> dict[str, Stats]:
    tools = [cheap_send_email]
    config: Any = {"configurable": {"__pregel_runtime": Runtime(context=CONTEXT)}}
    ids = itertools.count()

    def make_input() -> dict[str, list[BaseMessage]]:
        call = {"name": "send_email", "args": dict(ARGS), "id": f"call-{next(ids)}"}
        return {"messages": [AIMessage(content="", tool_calls=[call])]}

    def invoker(node: ToolNode) -> Callable[[Any], Any]:
        return lambda state: node.invoke(state, config)

    def ran(state: Any, out: Any) -> None:
        msgs = out["messages"] if isinstance(out, dict) else out
        expect(len(msgs) == 1 and isinstance(msgs[0], ToolMessage), f"unexpected output {out!r}")
        msg = msgs[0]
        want_id = state["messages"][0].tool_calls[0]["id"]
        expect(msg.tool_call_id == want_id, "tool message answers the wrong call")
        expect(
            msg.status != "error"
            and msg.content == TOOL_RESULT
            and (msg.additional_kwargs.get(MARK) or {}).get("kind", "result") == "result",
            f"the tool did not run: {msg.content!r}",
        )

    mem, sql = guards.make("memory"), guards.make("sqlite")
    variants = [
        Variant("ToolNode (unguarded)", invoker(ToolNode(tools)), ran),
        Variant(
            "GuardedToolNode, in-memory audit", invoker(GuardedToolNode(tools, guard=mem)), ran
        ),
        Variant("GuardedToolNode, SQLite audit", invoker(GuardedToolNode(tools, guard=sql)), ran),
    ]
    n, w = sizes.node, sizes.warmup(sizes.node)
    rows = sample(variants, make_input, n, warmup=w, blocks=sizes.block)
    for guard in (mem, sql):  # decision, execution, and the (untrusted) result: 3 per call
        expect(audit_count(guard) == 3 * (n + w), "GuardedToolNode did not audit every call")
    return {name: Stats.of(s) for name, s in rows.items()}


# -- 3. one create_agent iteration -------------------------------------------------------------


class AgentLoop:
    """A `create_agent` agent whose scripted model makes exactly one tool call, then answers.

    The script is two turns long and rewound after each invoke (outside the timed region): a
    long script would make every model call slower, because LangChain serializes the model
    (turns included) for its callbacks on each call.
    """

    _ids = itertools.count()

    def __init__(self, name: str, guard: Guard | None) -> None:
        self.name = name
        self.guard = guard
        self.model = ScriptedChatModel(turns=[self._tool_turn, self._final_turn])
        middleware = [GuardMiddleware(guard)] if guard is not None else []
        self.agent = create_agent(self.model, bench_tools(), middleware=middleware)

    @classmethod
    def _tool_turn(cls, _: list[BaseMessage]) -> AIMessage:
        call = {"name": "send_email", "args": dict(ARGS), "id": f"call-{next(cls._ids)}"}
        return AIMessage(content="", tool_calls=[call])

    @staticmethod
    def _final_turn(_: list[BaseMessage]) -> AIMessage:
        return AIMessage(content="Done: Bob has the new time.")

    def run(self, state: Any) -> Any:
        return self.agent.invoke(state, context=CONTEXT)

    def check(self, _: Any, out: Any) -> None:
        msgs = out["messages"]
        kinds = [type(m).__name__ for m in msgs]
        expect(
            kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"],
            f"{self.name}: not one loop iteration: {kinds}",
        )
        tool_msg = msgs[2]
        expect(
            tool_msg.status != "error" and tool_msg.content == TOOL_RESULT,
            f"{self.name}: the tool did not run: {tool_msg.content!r}",
        )
        expect(
            self.model.calls == 2, f"{self.name}: expected 2 model turns, got {self.model.calls}"
        )
        self.model.reset()  # rewind the script for the next invoke (see class docstring)

    def variant(self) -> Variant:
        return Variant(self.name, self.run, self.check)


def bench_agent(guards: Guards, sizes: Sizes) -> dict[str, Stats]:
    loops = [
        AgentLoop("create_agent (unguarded)", None),
        AgentLoop("create_agent + GuardMiddleware, in-memory", guards.make("memory")),
        AgentLoop("create_agent + GuardMiddleware, SQLite", guards.make("sqlite")),
    ]

    def make_input() -> dict[str, list[BaseMessage]]:
        return {"messages": [HumanMessage("Email Bob that the meeting moved to 3pm.")]}

    n, w = sizes.agent, sizes.warmup(sizes.agent)
    rows = sample([lp.variant() for lp in loops], make_input, n, warmup=w, blocks=sizes.block)
    for lp in loops[1:]:
        assert lp.guard is not None
        expect(audit_count(lp.guard) == 3 * (n + w), f"{lp.name}: not every call was audited")
    return {name: Stats.of(s) for name, s in rows.items()}


# -- report ---------------------------------------------------------------------------------------


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def header(mode: str, sqlite_dir: Path) -> list[str]:
    cpus = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    return [
        "agentguard guard overhead benchmark",
        f"  python      {platform.python_implementation()} {platform.python_version()}"
        f" ({platform.system()} {platform.machine()})",
        f"  langchain   {_version('langchain')} (langchain-core {_version('langchain-core')})",
        f"  langgraph   {_version('langgraph')}"
        f" (langgraph-prebuilt {_version('langgraph-prebuilt')})",
        f"  agentguard  {_version('agentguard')}",
        f"  cpus        {cpus} (usable by this process: {usable})",
        f"  sqlite      {sqlite3.sqlite_version}, audit files in {sqlite_dir}"
        " (WAL, synchronous=FULL: one fsync per event)",
        f"  mode        {mode}",
    ]


def table(title: str, columns: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  " + "  ".join([first, *rest])

    rule = "  " + "  ".join("-" * w for w in widths)
    return ["", title, line(columns), rule, *(line(r) for r in rows)]


def us(value: float) -> str:
    return f"{value:,.1f}"


def stat_cells(s: Stats) -> list[str]:
    return [f"{s.n:,}", us(s.p50), us(s.p90), us(s.p99)]


def report(
    core: dict[str, Stats], node: dict[str, Stats], agent: dict[str, Stats]
) -> tuple[list[str], float, float]:
    out: list[str] = []
    plain_node = node["ToolNode (unguarded)"]
    rows = [[name, *stat_cells(s), f"{s.p50 / plain_node.p50:.2f}x"] for name, s in core.items()]
    out += table(
        "1. Core decision per tool call (send_email, valid arguments unless noted), µs",
        ["case", "n", "p50", "p90", "p99", "p50 / unguarded ToolNode call"],
        rows,
    )

    rows = []
    for name, s in node.items():
        if s is plain_node:
            rows.append([name, *stat_cells(s), "-", "1.00x"])
        else:
            overhead = s.p50 - plain_node.p50
            rows.append(
                [name, *stat_cells(s), f"+{us(overhead)}", f"{s.p50 / plain_node.p50:.2f}x"]
            )
    out += table(
        "2. One tool call through the node (invoked directly, unique call id, no-op tool), µs",
        ["node", "n", "p50", "p90", "p99", "overhead p50", "ratio p50"],
        rows,
    )
    call_overhead = node["GuardedToolNode, in-memory audit"].p50 - plain_node.p50

    plain_agent = agent["create_agent (unguarded)"]
    rows = []
    for name, s in agent.items():
        if s is plain_agent:
            rows.append([name, *stat_cells(s), "-", "-", "1.00x"])
        else:
            overhead = s.p50 - plain_agent.p50
            pct = 100.0 * overhead / plain_agent.p50
            rows.append(
                [
                    name,
                    *stat_cells(s),
                    f"+{us(overhead)}",
                    f"{pct:+.1f} %",
                    f"{s.p50 / plain_agent.p50:.2f}x",
                ]
            )
    out += table(
        "3. One create_agent iteration per invoke (model -> send_email -> model), µs",
        ["agent", "n", "p50", "p90", "p99", "overhead p50", "% of unguarded", "ratio p50"],
        rows,
    )
    guarded = agent["create_agent + GuardMiddleware, in-memory"]
    iteration_pct = 100.0 * (guarded.p50 - plain_agent.p50) / plain_agent.p50
    out += [
        "  (the guarded iteration also filters the 6 tools shown to the model on each of its",
        "   2 model calls, sanitizes and scores the untrusted tool result, spotlights it for",
        "   the second model call, and writes 3 audit events: decision, execution, content)",
    ]
    return out, call_overhead, iteration_pct


def goals(call_overhead: float, iteration_pct: float, check_p50: float) -> list[str]:
    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    cpu_call = cpu_p50("GuardedToolNode, in-memory audit") - cpu_p50("ToolNode (unguarded)")
    plain_cpu = cpu_p50("create_agent (unguarded)")
    cpu_pct = 100.0 * (cpu_p50("create_agent + GuardMiddleware, in-memory") - plain_cpu) / plain_cpu
    return [
        "",
        "Goals",
        f"  p50 guard overhead per call (in-memory sink): {call_overhead:.1f} µs "
        f"(goal < {GOAL_CALL_US:.0f} µs): {verdict(call_overhead < GOAL_CALL_US)}",
        f"    (GuardedToolNode p50 - ToolNode p50; Guard.check alone: p50 {check_p50:.1f} µs)",
        f"  create_agent iteration overhead: {iteration_pct:.1f} % "
        f"(goal < {GOAL_ITERATION_PCT:.0f} %): {verdict(iteration_pct < GOAL_ITERATION_PCT)}",
        "  The same on process CPU time (all threads; steadier when the machine is shared):",
        f"    per call {cpu_call:+.1f} µs, create_agent iteration {cpu_pct:+.1f} %",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a few seconds, rough figures")
    parser.add_argument(
        "--sqlite-dir",
        type=Path,
        default=None,
        help="where the SQLite audit files go (default: a new temp dir, removed afterwards); "
        "fsync cost depends on the file system",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    mode = "quick" if args.quick else "default"

    made_dir = args.sqlite_dir is None
    sqlite_dir = Path(tempfile.mkdtemp(prefix="agentguard-bench-")) if made_dir else args.sqlite_dir
    sqlite_dir.mkdir(parents=True, exist_ok=True)
    guards = Guards(sqlite_dir)
    started = time.perf_counter()
    try:
        print("\n".join(header(mode, sqlite_dir)), flush=True)
        steps: list[tuple[str, Callable[[Guards, Sizes], Any]]] = [
            ("core decision", bench_core),
            ("ToolNode vs GuardedToolNode", bench_tool_node),
            ("create_agent iteration", bench_agent),
        ]
        results: list[Any] = []
        for i, (label, step) in enumerate(steps, 1):
            t0 = time.perf_counter()
            print(
                f"  [{i}/{len(steps)}] measuring {label} ...", end="", flush=True, file=sys.stderr
            )
            results.append(step(guards, sizes))
            print(f" {time.perf_counter() - t0:.1f} s", flush=True, file=sys.stderr)
        core, node, agent = results
        lines, call_overhead, iteration_pct = report(core, node, agent)
        check_p50 = core["check(), allowed, in-memory audit"].p50
        lines += goals(call_overhead, iteration_pct, check_p50)
        lines.append(f"\n(total {time.perf_counter() - started:.1f} s)")
        print("\n".join(lines))
    except BenchError as exc:
        print(f"\nbenchmark error: {exc}", file=sys.stderr)
        return 1
    finally:
        guards.close()
        if made_dir:
            shutil.rmtree(sqlite_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
