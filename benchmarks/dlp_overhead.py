"""What DLP costs a guarded call, against the same guard with `dlp.enabled: false`, same run.

- `Guard.check` of an egress call (`send_email`) with a clean body of 200 B, 1 KB and 10 KB;
- the same with a customer address in the body (`approve`: the reviewer's pseudonymized view
  is built too);
- a call whose arguments carry two pseudonyms the guard re-fills before checking;
- the way back for one untrusted 10 KB result, with `dlp.results` off and on (pseudonymize);
- a model reply screened by `dlp.answers`;
- pseudonym vault `token` + `values` in memory and in SQLite;
- one `create_agent` iteration (model -> send_email -> model), DLP on vs off.

Variants are interleaved in blocks so that drift on a noisy VM hits both sides alike.
Run: `python benchmarks/dlp_overhead.py` (`--quick` for a smoke run).
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _bench import BenchError, Stats, page
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool

from agentguard import Guard, GuardMiddleware, Principal
from agentguard.audit import AuditLog, MemorySink
from agentguard.dlp.pseudonyms import vault_scope
from agentguard.dlp.vault import MemoryPseudonymVault, SqlitePseudonymVault
from agentguard.identity import CallContext
from agentguard.integrations._enact import receive_result
from agentguard.policy import load_policy
from agentguard.testing import ScriptedChatModel

ALICE = Principal(tenant="acme", user="alice", role="employee")
CUSTOMER = "carol.jones@customer.example"


@tool
def send_email(to: str, subject: str, body: str) -> str:
    """Send an email."""
    return "sent"


@tool
def read_page(url: str) -> str:
    """Read a web page."""
    return "ok"


TOOLS = {"send_email": send_email, "read_page": read_page}


def policy(**dlp: Any) -> Any:
    return load_policy(
        {
            "version": "bench-dlp",
            "tools": {
                "send_email": {
                    "risk": "medium",
                    "scopes": ["mail:send"],
                    "egress": True,
                    "args": {"to": {"format": "email"}},
                },
                "read_page": {"risk": "low", "scopes": ["web:read"]},
            },
            "dlp": dlp,
        }
    )


def guard(**dlp: Any) -> Guard:
    return Guard(policy(**dlp), audit=AuditLog(MemorySink(), b"k" * 32, key_id="bench"))


def clean(n: int, seed: int) -> str:
    """Business prose with the address and phone number of the shared prose taken out."""
    text = page(n + 200, seed).replace("dana@partner.example", "dana").replace("+49", "tel")
    return text.replace("30 1234567", "")[:n]


def compare(variants: dict[str, Callable[[], Any]], n: int, block: int = 20) -> dict[str, Stats]:
    """Nanosecond samples per variant, interleaved in blocks of `block`, GC off while timing."""
    samples: dict[str, list[int]] = {k: [] for k in variants}
    for fn in variants.values():
        for _ in range(5):
            fn()  # warm-up
    done = 0
    while done < n:
        for name, fn in variants.items():
            gc.disable()
            try:
                for _ in range(min(block, n - done)):
                    t0 = time.perf_counter_ns()
                    fn()
                    samples[name].append(time.perf_counter_ns() - t0)
            finally:
                gc.enable()
        done += block
    return {k: Stats.of(v) for k, v in samples.items()}


def show(title: str, stats: dict[str, Stats], base: str | None = None) -> None:
    print(f"\n{title}")
    print(f"  {'variant':<44} {'p50 µs':>9} {'p90 µs':>9} {'p99 µs':>9}   vs baseline")
    ref = stats[base].p50 if base else None
    for name, s in stats.items():
        extra = ""
        if ref is not None and name != base:
            extra = f"   {s.p50 - ref:+9.1f} µs ({s.p50 / ref:.2f}x)"
        print(f"  {name:<44} {s.cells()}{extra}")


def main(argv: list[str]) -> int:
    n = 60 if "--quick" in argv else 400
    print(f"python {sys.version.split()[0]}; {n} samples per variant, interleaved")
    off, on = guard(enabled=False), guard()
    ctx = CallContext(runtime_context={"principal": ALICE}, thread_id="t", run_id="r")

    def call(body: str) -> dict[str, Any]:
        return {
            "name": "send_email",
            "args": {"to": "dan@partner.example", "subject": "Q3", "body": body},
            "id": "c",
        }

    # sanity: the guard with DLP finds what it must, the one without finds nothing
    probe = call(f"forwarding {CUSTOMER}")
    if on.check(probe, ctx, TOOLS).decision.value != "approve_first":
        raise BenchError("DLP did not flag an address in the body")
    if off.check(probe, ctx, TOOLS).decision.value != "allow":
        raise BenchError("the baseline guard is not a baseline")

    for size in (200, 1_000, 10_000):
        body = clean(size, size)
        if on.check(call(body), ctx, TOOLS).decision.value != "allow":
            raise BenchError(f"the clean {size}-byte body is not clean")
        with_pii = body[: size - 60] + f" forwarding {CUSTOMER} as asked"
        show(
            f"Guard.check(send_email), body {size} bytes",
            compare(
                {
                    "DLP off (baseline)": lambda b=body: off.check(call(b), ctx, TOOLS),
                    "DLP on, clean body": lambda b=body: on.check(call(b), ctx, TOOLS),
                    "DLP on, address in body (approve + view)": lambda b=with_pii: on.check(
                        call(b), ctx, TOOLS
                    ),
                },
                n,
            ),
            "DLP off (baseline)",
        )

    # re-filling pseudonyms the model copied from a screened result
    results = guard(results={"scan": True, "entities": {"EMAIL_ADDRESS": "pseudonymize"}})
    assert results.dlp is not None
    scope = vault_scope(ALICE, "t")
    t1 = results.dlp.vault.token(scope, "EMAIL_ADDRESS", CUSTOMER)
    results.dlp.vault.token(scope, "EMAIL_ADDRESS", "dan@partner.example")
    body = clean(1_000, 7)
    tokened = {
        "name": "send_email",
        "args": {"to": t1, "subject": "Q3", "body": body + " cc <EMAIL_ADDRESS_2>"},
        "id": "c",
    }
    plain = {
        "name": "send_email",
        "args": {"to": CUSTOMER, "subject": "Q3", "body": body + " cc dan@partner.example"},
        "id": "c",
    }
    show(
        "Guard.check with two pseudonyms to re-fill (1 KB body)",
        compare(
            {
                "the same call with the values": lambda: results.check(plain, ctx, TOOLS),
                "with pseudonyms, re-filled first": lambda: results.check(tokened, ctx, TOOLS),
            },
            n,
        ),
        "the same call with the values",
    )

    # the way back
    text = clean(10_000, 3) + f" reply to {CUSTOMER}"
    verdict = off.check({"name": "read_page", "args": {"url": "https://x"}, "id": "r"}, ctx, TOOLS)
    message = ToolMessage(content=text, tool_call_id="r", name="read_page")
    screened = receive_result(results, verdict, ctx, message)
    if CUSTOMER in str(screened.content):
        raise BenchError("the result was not pseudonymized")
    show(
        "the way back for one untrusted 10 KB result",
        compare(
            {
                "dlp.results off (baseline)": lambda: receive_result(off, verdict, ctx, message),
                "dlp.results on, pseudonymize": lambda: receive_result(
                    results, verdict, ctx, message
                ),
            },
            n,
        ),
        "dlp.results off (baseline)",
    )

    answers = guard(answers={"scan": True})
    reply = clean(1_000, 5)
    show(
        "a 1 KB model reply",
        compare(
            {
                "dlp.answers off (baseline)": lambda: off.screen_answer(reply, ctx),
                "dlp.answers on": lambda: answers.screen_answer(reply, ctx),
            },
            n,
        ),
        "dlp.answers off (baseline)",
    )

    with tempfile.TemporaryDirectory() as tmp:
        sqlite = SqlitePseudonymVault(Path(tmp) / "v.db", key=b"v" * 32)
        memory = MemoryPseudonymVault()
        counter = iter(range(10**9))

        def use(vault: Any) -> None:
            i = next(counter) % 200  # 200 distinct values: mostly known, as in a conversation
            token = vault.token(scope, "EMAIL_ADDRESS", f"user{i}@customer.example")
            vault.values(scope, [token])

        show(
            "pseudonym vault: token + values for one value",
            compare({"memory": lambda: use(memory), "SQLite (WAL, FULL)": lambda: use(sqlite)}, n),
            "memory",
        )
        sqlite.close()

    def agent(g: Guard) -> Callable[[], Any]:
        turn = AIMessage(
            content="",
            tool_calls=[
                {
                    "name": "send_email",
                    "args": {"to": "dan@partner.example", "subject": "Q3", "body": clean(1_000, 1)},
                    "id": "s",
                }
            ],
        )
        model = ScriptedChatModel(turns=[turn, "done"])
        graph = create_agent(model, [send_email], middleware=[GuardMiddleware(g)])

        def once() -> Any:
            model.reset()
            return graph.invoke({"messages": [("user", "send it")]}, context={"principal": ALICE})

        return once

    show(
        "one create_agent iteration, 1 KB email body",
        compare(
            {"DLP off (baseline)": agent(off), "DLP on (default)": agent(on)},
            max(n // 4, 20),
            block=5,
        ),
        "DLP off (baseline)",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
