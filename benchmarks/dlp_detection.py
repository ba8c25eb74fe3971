"""How well, and how fast, the DLP scanner finds PII and secrets, beside plain Presidio and
LangChain's `PIIMiddleware` detectors.

Quality is measured on the labelled set `benchmarks/dlp_eval/samples.jsonl` (made by
`benchmarks/dlp_eval/generate.py`, described in `benchmarks/dlp_eval/README.md`): faker-based
sentences and JSON payloads, config files, curl and shell commands, stack traces, logs, raw
emails, code and chat pastes with known spans, plus hard negatives with none), which the
recognizers were tuned on; held-out round 1 `heldout.jsonl` (`generate.py --heldout`: another
seed, a share of the same templates, and templates of contexts the tuning set never uses),
which was looked at after round 1 and used for the round-2 fixes, so it is now a second tuning
set; held-out round 2 `heldout2.jsonl` (`generate.py --heldout2`: a third seed, shares of
both, and templates neither uses), scored once after round 2 and then used for the round-3
fixes, so it is a third tuning set now; held-out round 3 `heldout3.jsonl` (`generate.py
--heldout3`: a fourth seed, shares of all earlier templates, and templates of contexts none of
them uses), scored once after round 3 and then used for the round-4 fixes, so it is a fourth
tuning set now; and held-out round 4 `heldout4.jsonl` (`generate.py --heldout4`: a fifth seed,
shares of all earlier templates, and templates of contexts none of them uses), written and
generated before any scanner result on it and never tuned on. Held-out figures are also split
by template origin.

False positives on benign text: the scanner also runs on text of the repository's own that
holds no labelled PII or secret: the `benign` items of `benchmarks/corpus/injection.jsonl` and
the prose paragraphs of `README.md`, `docs/*.md` and `benchmarks/README.md` (fenced code blocks
and inline code spans, where the documented example secrets and addresses are, removed first).
Every finding there is listed and counted per 1,000 texts and per MB by type; a finding whose
value is a documented example (an address under a reserved name such as `*.example` or
`example.com`, a private or documentation IP address) is counted apart from the rest.

Matching is span-level and lenient. A prediction is *correct* when it has the gold span's entity
and overlaps it by at least 50 % of the gold span's length. Recall counts gold spans with at
least one correct prediction; precision counts correct predictions among all predictions of
labelled entity types. A prediction over a gold span whose `also` list names its type (a GCP
service-account key also reported as PRIVATE_KEY, any secret also reported as GENERIC_SECRET) is
neither correct nor false: it is left out. Predictions of types the set never labels (URL,
DATE_TIME, UUID, MAC_ADDRESS, ...) are left out of precision and listed separately with counts.

Speed: p50 / p90 per call on payloads of exactly 1,024 and 10,240 characters cut from the
concatenated eval texts (200 different payloads per size), for `Scanner().scan_text`, plain
Presidio `AnalyzerEngine.analyze` (its default pattern recognizers, no NLP model) and the five
`PIIMiddleware` detector functions run one after the other. Variants are interleaved in blocks;
each call is timed with `perf_counter_ns`, the garbage collector off.

Exits non-zero when a sanity check fails (malformed set, offsets outside the text, a detector
that is not deterministic or finds nothing in a canary), never for a missed goal.

Run: `python benchmarks/dlp_detection.py` (`--quick` for a smoke run, `--misses` to list every
miss and false positive of the scanner).
"""

from __future__ import annotations

import os

# Before anything imports presidio: tldextract (used by its URL recognizer) must never fetch
# the public suffix list.
os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] = ""

import gc
import ipaddress
import json
import random
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _bench import BenchError, Stats

from agentguard.dlp.entities import SECRET_TYPES

SAMPLES = Path(__file__).parent / "dlp_eval" / "samples.jsonl"
# Held-out round 1: another seed, a share of the tuning templates and templates of contexts
# the tuning set never uses. Looked at after round 1 and used for the round-2 fixes.
HELDOUT = Path(__file__).parent / "dlp_eval" / "heldout.jsonl"
HELDOUT_NOTE = "held-out:"  # note prefix of the round-1 templates
# Held-out round 2: a third seed, shares of the tuning and round-1 templates, and templates
# neither uses; scored once after round 2, then used for the round-3 fixes.
HELDOUT2 = Path(__file__).parent / "dlp_eval" / "heldout2.jsonl"
HELDOUT2_NOTE = "held-out-2:"  # note prefix of the round-2 templates
# Held-out round 3: a fourth seed, shares of all earlier templates, and templates of contexts
# none of them uses; scored once after round 3, then used for the round-4 fixes.
HELDOUT3 = Path(__file__).parent / "dlp_eval" / "heldout3.jsonl"
HELDOUT3_NOTE = "held-out-3:"  # note prefix of the round-3 templates
# Held-out round 4: a fifth seed, shares of all earlier templates, and templates of contexts
# none of them uses; written and generated before any scanner result on it, never tuned on.
HELDOUT4 = Path(__file__).parent / "dlp_eval" / "heldout4.jsonl"
HELDOUT4_NOTE = "held-out-4:"  # note prefix of the round-4 templates
# Benign text of the repository's own (no labelled PII or secret): the benign items of the
# injection corpus and the prose of the Markdown docs.
ROOT = Path(__file__).resolve().parent.parent
INJECTION_CORPUS = Path(__file__).parent / "corpus" / "injection.jsonl"
BENIGN_DOCS = ("README.md", "docs/*.md", "benchmarks/README.md")
SECRETS = SECRET_TYPES
GOALS = ("EMAIL_ADDRESS", "CREDIT_CARD", "US_SSN", "IBAN_CODE", *SECRETS)
RECALL_GOAL, PRECISION_GOAL = 0.98, 0.95
P50_GOAL_US = {1024: 1500.0, 10240: 10000.0}
SIZES = (1024, 10240)
N_PAYLOADS = 200
MIN_OVERLAP = 0.5  # of the gold span's length

# PIIMiddleware's built-in detector names -> entity names of this set
LC_TYPES = {
    "email": "EMAIL_ADDRESS",
    "credit_card": "CREDIT_CARD",
    "ip": "IP_ADDRESS",
    "mac_address": "MAC_ADDRESS",
    "url": "URL",
}

# Why "PIIMiddleware misses tool arguments" (langchain 1.4, langchain/agents/middleware/pii.py):
# `PIIMiddleware.before_model` scans the last HumanMessage (`apply_to_input`) and the
# ToolMessages after the last AIMessage (`apply_to_tool_results`); `PIIMiddleware.after_model`
# (`apply_to_output`) scans only the last AIMessage's `.content` and returns early when that
# content is empty, as it is for a message that only calls a tool. Neither hook reads
# `AIMessage.tool_calls[*].args`, which is what `ToolNode` executes. `_PIIStreamTransformer`
# (installed with `apply_to_output=True`) does walk tool-call args, but only in the copy that is
# streamed to consumers (`_redact_tool_call_list` on events), never in graph state.
PII_MIDDLEWARE_NOTE = (
    "PIIMiddleware scans messages (before_model: last HumanMessage and ToolMessages; after_model:"
    " the last AIMessage's .content), not tool-call arguments: AIMessage.tool_calls[*].args reach"
    " the tool unscanned (its stream transformer only redacts the streamed copy)."
)


@dataclass(frozen=True)
class Pred:
    entity: str
    start: int
    end: int


@dataclass
class Score:
    """Counts for one entity (or a group of them)."""

    gold: int = 0
    found: int = 0  # gold spans with a correct prediction
    preds: int = 0  # predictions of this type (labelled types only, alternates left out)
    correct: int = 0  # predictions that match a gold span
    alternates: int = 0  # predictions left out because a gold span's `also` allows them

    @property
    def fn(self) -> int:
        return self.gold - self.found

    @property
    def fp(self) -> int:
        return self.preds - self.correct

    @property
    def recall(self) -> float | None:
        return self.found / self.gold if self.gold else None

    @property
    def precision(self) -> float | None:
        return self.correct / self.preds if self.preds else None

    def add(self, other: Score) -> None:
        self.gold += other.gold
        self.found += other.found
        self.preds += other.preds
        self.correct += other.correct
        self.alternates += other.alternates


@dataclass
class Result:
    """Per-entity scores of one detector, what it predicted outside the labels, its errors."""

    name: str
    per_entity: dict[str, Score] = field(default_factory=lambda: defaultdict(Score))
    other_types: Counter[str] = field(default_factory=Counter)
    misses: list[dict[str, Any]] = field(default_factory=list)
    false_positives: list[dict[str, Any]] = field(default_factory=list)
    by_encoding: dict[str, Score] = field(default_factory=lambda: defaultdict(Score))
    by_kind: dict[str, Score] = field(default_factory=lambda: defaultdict(Score))


# -- the set -----------------------------------------------------------------------------------


def load(path: Path = SAMPLES) -> list[dict[str, Any]]:
    if not path.exists():
        raise BenchError(f"{path} is missing: run python benchmarks/dlp_eval/generate.py")
    samples = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    ids = [s["id"] for s in samples]
    if len(ids) != len(set(ids)) or not samples:
        raise BenchError("the eval set is empty or its ids are not unique")
    for s in samples:
        for sp in s["spans"]:
            if not 0 <= sp["start"] < sp["end"] <= len(s["text"]):
                raise BenchError(f"{s['id']}: span {sp} lies outside the text")
    return samples


def payloads(samples: list[dict[str, Any]], size: int, n: int, seed: int) -> list[str]:
    """`n` different texts of exactly `size` characters: eval texts in random order, joined."""
    texts = [s["text"] for s in samples]
    out = []
    for i in range(n):
        rng = random.Random(seed * 100_003 + i)
        parts: list[str] = []
        length = 0
        while length < size:
            t = rng.choice(texts)
            length += len(t) + (1 if parts else 0)
            parts.append(t)
        out.append("\n".join(parts)[:size])
    if len(set(out)) < n * 0.9 or any(len(p) != size for p in out):
        raise BenchError("could not build distinct payloads")
    return out


# -- detectors ---------------------------------------------------------------------------------


def presidio_engine() -> Any:
    """Presidio's AnalyzerEngine with its predefined (pattern) recognizers and no NLP model.

    `AnalyzerEngine()` with no arguments would load (and try to download) a spaCy model; the
    no-op NLP engine loads nothing, and the registry then holds the default pattern recognizers.
    """
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NoOpNlpEngine

    nlp = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "no_op"}])
    return AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])


def presidio_detect(engine: Any) -> Callable[[str], list[Pred]]:
    def detect(text: str) -> list[Pred]:
        return [Pred(r.entity_type, r.start, r.end) for r in engine.analyze(text, language="en")]

    return detect


def langchain_detect(text: str) -> list[Pred]:
    from langchain.agents.middleware._redaction import BUILTIN_DETECTORS

    return [
        Pred(LC_TYPES[name], m["start"], m["end"])
        for name, fn in BUILTIN_DETECTORS.items()
        for m in fn(text)
    ]


def _json_leaves(value: Any, path: str, out: dict[str, str]) -> None:
    """Every string the scanner walks in a JSON value, by the scanner's path syntax."""
    if isinstance(value, dict):
        for key, item in value.items():
            k = str(key)
            child = f"{path}.{k}" if k.isidentifier() else f"{path}[{json.dumps(k)}]"
            out[f"{child}<key>"] = k
            _json_leaves(item, child, out)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _json_leaves(item, f"{path}[{i}]", out)
    elif isinstance(value, str):
        out[path] = value
        _inner_json(value, path, out)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        out[path] = str(value)


def _inner_json(text: str, path: str, out: dict[str, str]) -> None:
    stripped = text.strip()
    if stripped[:1] in ("{", "[") and len(stripped) >= 2:
        try:
            inner = json.loads(stripped)
        except (ValueError, RecursionError):
            return
        _json_leaves(inner, f"{path}<json>", out)


class ScannerAdapter:
    """`Scanner.scan_text` as text offsets.

    Findings on the text itself (path `$`, or `$<form>.<field>` for a form body) carry offsets
    into the text. Findings the scanner made while walking JSON inside the text (path
    `$<json>...`) carry offsets into that JSON string leaf; they are mapped back by looking for
    the leaf's JSON-escaped value in the text, and counted as `unmapped` when that fails.
    """

    def __init__(self, scanner: Any) -> None:
        self.scanner = scanner
        self.mapped = 0
        self.unmapped = 0

    def __call__(self, text: str) -> list[Pred]:
        findings = self.scanner.scan_text(text)
        preds = []
        leaves: dict[str, str] | None = None
        for f in findings:
            base = f.path.split("<form>")[0]
            if base == "$":
                preds.append(Pred(f.entity, f.start, f.end))
                continue
            if leaves is None:
                leaves = {}
                _inner_json(text, "$", leaves)
            leaf = leaves.get(base)
            start = -1
            if leaf is not None:
                value = leaf[f.start : f.end]
                escaped = json.dumps(value, ensure_ascii=False)[1:-1]
                start = text.find(escaped) if escaped else -1
            if start < 0:
                self.unmapped += 1
                continue
            self.mapped += 1
            preds.append(Pred(f.entity, start, start + len(escaped)))
        return preds


# -- scoring -----------------------------------------------------------------------------------


def overlap(a_start: int, a_end: int, b_start: int, b_end: int) -> int:
    return max(0, min(a_end, b_end) - max(a_start, b_start))


def matches(p: Pred, g: dict[str, Any]) -> bool:
    need = MIN_OVERLAP * (g["end"] - g["start"])
    return p.entity == g["entity"] and overlap(p.start, p.end, g["start"], g["end"]) >= need


def snippet(text: str, start: int, end: int, width: int = 40) -> str:
    value = text[start:end]
    if len(value) > 60:
        value = value[:28] + "…" + value[-28:]
    before = text[max(0, start - width) : start]
    after = text[end : end + width]
    return (before + "[" + value + "]" + after).replace("\n", "⏎")


def score(
    name: str,
    samples: list[dict[str, Any]],
    predictions: list[list[Pred]],
    labelled: set[str],
    supported: set[str] | None = None,
) -> Result:
    """Lenient span matching; `supported` limits recall to the entities a detector knows."""
    result = Result(name)
    for sample, preds in zip(samples, predictions, strict=True):
        text, gold = sample["text"], sample["spans"]
        for g in gold:
            if supported is not None and g["entity"] not in supported:
                continue
            hit = any(matches(p, g) for p in preds)
            for table, key in (
                (result.per_entity, g["entity"]),
                (result.by_encoding, g.get("encoded", "plain")),
                (result.by_kind, sample["kind"]),
            ):
                table[key].gold += 1
                table[key].found += hit
            if not hit:
                over = [p for p in preds if overlap(p.start, p.end, g["start"], g["end"])]
                same = [p for p in over if p.entity == g["entity"]]
                if same:
                    cause = "boundary: overlaps < 50 %"
                elif over:
                    cause = "reported as " + "/".join(sorted({p.entity for p in over}))
                else:
                    cause = "not found"
                result.misses.append(
                    {
                        "id": sample["id"],
                        "kind": sample["kind"],
                        "note": sample["note"],
                        "entity": g["entity"],
                        "encoded": g.get("encoded", "plain"),
                        "cause": cause,
                        "snippet": snippet(text, g["start"], g["end"]),
                    }
                )
        for p in preds:
            if p.entity not in labelled:
                result.other_types[p.entity] += 1
                continue
            s = result.per_entity[p.entity]
            if any(matches(p, g) for g in gold):
                s.preds += 1
                s.correct += 1
                result.by_kind[sample["kind"]].preds += 1
                result.by_kind[sample["kind"]].correct += 1
                continue
            over = [g for g in gold if overlap(p.start, p.end, g["start"], g["end"])]
            if any(p.entity in g.get("also", ()) for g in over):
                s.alternates += 1
                continue
            s.preds += 1
            result.by_kind[sample["kind"]].preds += 1
            if any(g["entity"] == p.entity for g in over):
                cause = "boundary: overlaps < 50 %"
            elif over:
                cause = "type confusion with gold " + "/".join(sorted({g["entity"] for g in over}))
            elif sample["kind"] == "negative":
                cause = "hard negative"
            else:
                cause = "unlabelled text"
            result.false_positives.append(
                {
                    "id": sample["id"],
                    "kind": sample["kind"],
                    "note": sample["note"],
                    "entity": p.entity,
                    "cause": cause,
                    "snippet": snippet(text, p.start, p.end),
                }
            )
    return result


def total(result: Result, entities: Iterator[str] | tuple[str, ...] | set[str]) -> Score:
    out = Score()
    for e in entities:
        if e in result.per_entity:
            out.add(result.per_entity[e])
    return out


def check_offsets(name: str, samples: list[dict[str, Any]], predictions: list[list[Pred]]) -> None:
    for sample, preds in zip(samples, predictions, strict=True):
        for p in preds:
            if not 0 <= p.start < p.end <= len(sample["text"]):
                raise BenchError(f"{name}: {p} lies outside the text of {sample['id']}")


# -- printing ----------------------------------------------------------------------------------


def pct(x: float | None) -> str:
    return "    -" if x is None else f"{100 * x:5.1f}"


def print_goal_table(result: Result, labelled: list[str]) -> list[str]:
    """Per-entity TP/FN/FP for the scanner, goal marks; returns the entities that miss a goal."""
    print(
        f"{'entity':<24} {'gold':>5} {'TP':>5} {'FN':>4} {'FP':>4} {'alt':>4} "
        f"{'recall':>7} {'prec.':>7}  goal (R >= {RECALL_GOAL:.2f}, P >= {PRECISION_GOAL:.2f})"
    )
    missed = []
    for e in labelled:
        s = result.per_entity[e]
        if e in GOALS:
            r_ok = s.recall is not None and s.recall >= RECALL_GOAL
            p_ok = s.precision is not None and s.precision >= PRECISION_GOAL
            mark = "met" if r_ok and p_ok else "NOT met"
            if not (r_ok and p_ok):
                missed.append(e)
                mark += (
                    " ("
                    + ", ".join(w for w, ok in (("recall", r_ok), ("precision", p_ok)) if not ok)
                    + ")"
                )
        else:
            mark = "(no goal)"
        print(
            f"{e:<24} {s.gold:>5} {s.found:>5} {s.fn:>4} {s.fp:>4} {s.alternates:>4} "
            f"{pct(s.recall):>7} {pct(s.precision):>7}  {mark}"
        )
    for title, group in (("goal entities", GOALS), ("all labelled", labelled)):
        t = total(result, tuple(group))
        print(
            f"{title:<24} {t.gold:>5} {t.found:>5} {t.fn:>4} {t.fp:>4} {t.alternates:>4} "
            f"{pct(t.recall):>7} {pct(t.precision):>7}  (micro-average)"
        )
    return missed


def print_comparison(results: list[Result], supported: list[set[str]], labelled: list[str]) -> None:
    head = "".join(f"{r.name[:22]:>24}" for r in results)
    print(f"{'entity':<24} {'gold':>5}{head}")
    print(f"{'':<30}" + "".join(f"{'recall  prec.':>24}" for _ in results))
    for e in labelled:
        cells = ""
        for r, sup in zip(results, supported, strict=True):
            s = r.per_entity[e]
            if e not in sup:
                cells += f"{'(not detected)':>24}"
            else:
                cells += f"{pct(s.recall):>17} {pct(s.precision):>6}"
        print(f"{e:<24} {results[0].per_entity[e].gold:>5}{cells}")
    for title, pick in (
        ("all labelled entities", lambda sup: labelled),
        ("entities it supports", lambda sup: [e for e in labelled if e in sup]),
    ):
        cells = ""
        for r, sup in zip(results, supported, strict=True):
            t = total(r, tuple(pick(sup)))
            cells += f"{pct(t.recall):>17} {pct(t.precision):>6}"
        print(f"{title:<30}{cells}")


def print_errors(result: Result, show_all: bool) -> None:
    """Misses and false positives grouped by cause (entity, why, encoding or negative note)."""
    for title, rows, key in (
        ("misses", result.misses, lambda m: (m["entity"], m["cause"], m["encoded"], m["note"])),
        (
            "false positives",
            result.false_positives,
            lambda f: (f["entity"], f["cause"], f["note"], ""),
        ),
    ):
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            groups[key(row)].append(row)
        print(f"{result.name} {title}: {len(rows)} in {len(groups)} groups (entity | cause | ...)")
        ordered = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        limit = len(ordered) if show_all else 25
        for k, items in ordered[:limit]:
            label = " | ".join(x for x in k if x)
            print(f"  {len(items):>4}  {label}")
            for row in items if show_all else items[:1]:
                print(f"        {row['id']}: {row['snippet']}")
        if len(ordered) > limit:
            print(f"  ... {len(ordered) - limit} more groups (--misses lists all)")
        print()


# -- timing ------------------------------------------------------------------------------------


def time_variants(
    variants: dict[str, Callable[[str], Any]], texts: list[str], passes: int
) -> dict[str, Stats]:
    """Per-call latency of each variant over all `texts`, interleaved in blocks of 20 texts."""
    for fn in variants.values():  # warm up
        for t in texts[:10]:
            fn(t)
    samples: dict[str, list[int]] = {name: [] for name in variants}
    names = list(variants)
    block = 20
    clock = time.perf_counter_ns
    for p in range(passes):
        for b, lo in enumerate(range(0, len(texts), block)):
            chunk = texts[lo : lo + block]
            order = names if (b + p) % 2 == 0 else names[::-1]
            for name in order:
                fn = variants[name]
                out = samples[name]
                gc.disable()
                try:
                    for t in chunk:
                        t0 = clock()
                        fn(t)
                        out.append(clock() - t0)
                finally:
                    gc.enable()
    return {name: Stats.of(ns) for name, ns in samples.items()}


# -- main --------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    show_all = "--misses" in argv
    samples = load()
    heldout = load(HELDOUT)
    heldout2 = load(HELDOUT2)
    heldout3 = load(HELDOUT3)
    heldout4 = load(HELDOUT4)
    labelled = sorted(
        {
            sp["entity"]
            for s in [*samples, *heldout, *heldout2, *heldout3, *heldout4]
            for sp in s["spans"]
        },
        key=_order,
    )
    labelled_set = set(labelled)

    # Presidio first: importing agentguard.dlp before building a default registry can make
    # Presidio resolve its recognizer classes by name to agentguard's subclasses.
    t0 = time.perf_counter()
    engine = presidio_engine()
    presidio_build_s = time.perf_counter() - t0
    presidio = presidio_detect(engine)
    presidio_supported = set(engine.get_supported_entities("en")) & labelled_set

    from agentguard.dlp import Scanner

    t0 = time.perf_counter()
    scanner = Scanner()
    scanner.scan_text("warm-up: jane.doe@example.com")
    scanner_build_s = time.perf_counter() - t0
    adapter = ScannerAdapter(scanner)
    lc_supported = {v for v in LC_TYPES.values()} & labelled_set

    detectors: list[tuple[str, Callable[[str], list[Pred]], set[str]]] = [
        ("Scanner (patterns)", adapter, labelled_set),
        ("Presidio analyze", presidio, presidio_supported),
        ("PIIMiddleware detectors", langchain_detect, lc_supported),
    ]

    canary = "mail jane.doe@example.com, key AKIA" + "Q" * 16
    for name, fn, _ in detectors:
        first, second = fn(canary), fn(canary)
        if first != second:
            raise BenchError(f"{name} is not deterministic on the canary text")
        if not any(p.entity == "EMAIL_ADDRESS" for p in first):
            raise BenchError(f"{name} finds no email address in the canary text")

    print(
        f"python {sys.version.split()[0]}; build: Scanner {scanner_build_s:.1f} s, "
        f"Presidio {presidio_build_s:.1f} s"
    )
    missed: dict[str, list[str]] = {}
    for title, path, data, about in (
        ("TUNING SET", SAMPLES, samples, "the recognizers were tuned on this set"),
        (
            "HELD-OUT ROUND 1",
            HELDOUT,
            heldout,
            "looked at after round 1 and used for the round-2 fixes: a second tuning set",
        ),
        (
            "HELD-OUT ROUND 2",
            HELDOUT2,
            heldout2,
            "scored once after round 2, then used for round-3 fixes: a third tuning set",
        ),
        (
            "HELD-OUT ROUND 3",
            HELDOUT3,
            heldout3,
            "scored once after round 3, then used for round-4 fixes: a fourth tuning set",
        ),
        (
            "HELD-OUT ROUND 4",
            HELDOUT4,
            heldout4,
            "written and generated before any scanner result on it, never tuned on",
        ),
    ):
        origins = _origins(data)
        print(
            f"\n#### {title}: {path.name}, {len(data)} samples, "
            f"{sum(len(s['spans']) for s in data)} labelled spans, "
            f"{sum(1 for s in data if not s['spans'])} without any ({about})"
            + "".join(f"; {len(idx)} from {label}" for label, idx in origins.items())
            + " ####\n"
        )
        adapter.mapped = adapter.unmapped = 0
        results = []
        split: dict[str, Result] = {}
        for name, fn, _ in detectors:
            predictions = [fn(s["text"]) for s in data]
            check_offsets(name, data, predictions)
            again = [fn(s["text"]) for s in data[:200]]
            if again != predictions[:200]:
                raise BenchError(f"{name} gives different results on the same texts")
            results.append(score(name, data, predictions, labelled_set, None))
            if len(origins) > 1 and name.startswith("Scanner"):
                split = {
                    label: score(
                        name,
                        [data[i] for i in idx],
                        [predictions[i] for i in idx],
                        labelled_set,
                        None,
                    )
                    for label, idx in origins.items()
                }
        scanner_result = results[0]
        print(
            f"== {title} · {scanner_result.name}: per entity "
            "(lenient match: same type, >= 50 % of gold) =="
        )
        missed[title] = print_goal_table(scanner_result, labelled)
        print(
            f"\nscanner findings inside JSON strings mapped back to text offsets: "
            f"{adapter.mapped}, unmapped (dropped): {adapter.unmapped}"
        )
        enc = ", ".join(
            f"{k} {pct(v.recall).strip()} % of {v.gold}"
            for k, v in sorted(scanner_result.by_encoding.items())
        )
        print(f"recall by encoding: {enc}")
        print("by sample kind:       gold  recall   preds  prec.")
        for kind, s in sorted(scanner_result.by_kind.items()):
            print(f"  {kind:<16} {s.gold:>7} {pct(s.recall):>7} {s.preds:>7} {pct(s.precision):>6}")
        if split:
            print_split(split, labelled)
        print()

        print(f"== {title} · comparison (recall / precision in %, on all labelled entities) ==")
        print_comparison(results, [sup for _, _, sup in detectors], labelled)
        print("\nother predicted types (not labelled, left out of precision):")
        for r in results:
            others = ", ".join(f"{k} {v}" for k, v in r.other_types.most_common()) or "none"
            print(f"  {r.name}: {others}")
        print()
        print(f"== {title} · errors ==")
        print_errors(scanner_result, show_all)

    benign_findings = print_benign(scanner, show_all)

    print(f"note: {PII_MIDDLEWARE_NOTE}")
    print(f"      check: {verify_pii_middleware_gap()}\n")

    n = 40 if quick else N_PAYLOADS
    passes = {1024: 1 if quick else 3, 10240: 1}
    variants: dict[str, Callable[[str], Any]] = {
        "Scanner().scan_text": scanner.scan_text,
        "Scanner(decode=False).scan_text": Scanner(decode=False).scan_text,
        "Presidio AnalyzerEngine.analyze": lambda t: engine.analyze(t, language="en"),
        "PIIMiddleware detectors (all 5)": langchain_detect,
    }
    variants["Scanner(decode=False).scan_text"]("warm-up")
    print(f"== latency per call, µs ({n} payloads per size, interleaved) ==")
    print(f"{'variant':<34} {'size':>7} {'p50':>9} {'p90':>9} {'p99':>9}")
    p50s = {}
    for size in SIZES:
        texts = payloads(samples, size, n, seed=size)
        expected = [len(scanner.scan_text(t)) for t in texts[:20]]
        stats = time_variants(variants, texts, passes[size])
        if [len(scanner.scan_text(t)) for t in texts[:20]] != expected:
            raise BenchError("the scanner's results changed between runs on the same payloads")
        for name, st in stats.items():
            print(f"{name:<34} {size:>7} {st.cells()}")
        p50s[size] = stats["Scanner().scan_text"].p50
    print()
    for size in SIZES:
        goal = P50_GOAL_US[size]
        verdict = "met" if p50s[size] < goal else "NOT met"
        print(
            f"goal: Scanner p50 on {size:,} chars under {goal / 1000:g} ms -> {verdict} "
            f"({p50s[size] / 1000:.2f} ms)"
        )
    for title, missed_goals in missed.items():
        verdict = "met" if not missed_goals else "NOT met for " + ", ".join(missed_goals)
        print(
            f"goal ({title.lower()}): recall >= {RECALL_GOAL:.2f} and precision >= "
            f"{PRECISION_GOAL:.2f} for {len(GOALS)} goal entities -> {verdict}"
        )
    print(
        "benign text: "
        + (
            ", ".join(f"{k} {v}" for k, v in sorted(benign_findings.items()))
            or "no finding that is not a documented example"
        )
    )
    return 0


def _origins(data: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Sample indices by the set whose templates made them (tuning, round 1, 2, 3, 4)."""
    out: dict[str, list[int]] = {}
    for i, s in enumerate(data):
        note = s["note"]
        label = (
            "round-4 templates"
            if note.startswith(HELDOUT4_NOTE)
            else "round-3 templates"
            if note.startswith(HELDOUT3_NOTE)
            else "round-2 templates"
            if note.startswith(HELDOUT2_NOTE)
            else "round-1 templates"
            if note.startswith(HELDOUT_NOTE)
            else "tuning templates"
        )
        out.setdefault(label, []).append(i)
    return out


def print_split(split: dict[str, Result], labelled: list[str]) -> None:
    """Recall / precision per entity by the set whose templates made the samples."""
    names = list(split)
    print("by template origin:" + "".join(f"{n:>26}" for n in names))
    print(f"{'':<24}" + "".join(f"{'gold  recall   prec.':>26}" for _ in names))
    for e in labelled:
        cells = ""
        for n in names:
            sc = split[n].per_entity[e]
            cells += f"{sc.gold:>11} {pct(sc.recall):>7} {pct(sc.precision):>7}"
        print(f"  {e:<22}{cells}")
    for title, group in (("goal entities", GOALS), ("all labelled", tuple(labelled))):
        cells = ""
        for n in names:
            t = total(split[n], group)
            cells += f"{t.gold:>11} {pct(t.recall):>7} {pct(t.precision):>7}"
        print(f"  {title:<22}{cells}")


# -- false positives on benign text ------------------------------------------------------------

_FENCE = re.compile(r"^(```|~~~)[^\n]*\n.*?^\1[^\n]*$", re.M | re.S)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
# Names reserved for documentation (RFC 2606 / 6761): addresses under them are examples
_RESERVED_TLDS = ("example", "test", "invalid", "localhost")
_RESERVED_DOMAINS = ("example.com", "example.org", "example.net")


def benign_texts() -> list[tuple[str, str]]:
    """(source, text) for text of the repository's own that holds no labelled PII or secret:
    the benign items of the injection corpus, and the prose paragraphs of the Markdown docs
    with fenced code blocks and inline code spans (the documented examples) removed."""
    out = []
    for line in INJECTION_CORPUS.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["label"] == "benign":
            out.append((f"corpus:{row['id']}", row["text"]))
    docs = sorted({p for pattern in BENIGN_DOCS for p in ROOT.glob(pattern)})
    for path in docs:
        prose = _INLINE_CODE.sub("", _FENCE.sub("", path.read_text(encoding="utf-8")))
        for n, para in enumerate(re.split(r"\n[ \t]*\n", prose)):
            if para.strip():
                out.append((f"{path.relative_to(ROOT)}¶{n}", para))
    return out


def documented_example(entity: str, value: str) -> bool:
    """A value that documentation uses as an example: an address under a reserved name, a
    private, loopback or documentation IP address."""
    if entity == "EMAIL_ADDRESS":
        domain = value.rsplit("@", 1)[-1].lower().rstrip(".")
        return domain.rsplit(".", 1)[-1] in _RESERVED_TLDS or any(
            domain == d or domain.endswith("." + d) for d in _RESERVED_DOMAINS
        )
    if entity == "IP_ADDRESS":
        try:
            ip = ipaddress.ip_address(value.strip("[]"))
        except ValueError:
            return False
        doc_nets = ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
        return (
            ip.is_private or ip.is_loopback or any(ip in ipaddress.ip_network(n) for n in doc_nets)
        )
    return False


def print_benign(scanner: Any, show_all: bool) -> Counter[str]:
    """Scan benign text; print findings per 1,000 texts and per MB by type, and list them.
    Returns the count by type of findings that are not documented examples."""
    texts = benign_texts()
    n_corpus = sum(1 for src, _ in texts if src.startswith("corpus:"))
    size_mb = sum(len(t.encode("utf-8")) for _, t in texts) / 1e6
    everything: Counter[str] = Counter()
    real: Counter[str] = Counter()
    listing: list[str] = []
    for src, text in texts:
        for f in scanner.scan_text(text):
            everything[f.entity] += 1
            value = text[f.start : f.end] if f.path == "$" else ""
            example = documented_example(f.entity, value)
            if not example:
                real[f.entity] += 1
            where = snippet(text, f.start, f.end) if f.path == "$" else f"(in {f.path})"
            listing.append(
                f"  {f.entity:<16} {'example' if example else 'FINDING':<8} {src:<34} {where}"
            )
    print(
        f"== FALSE POSITIVES ON BENIGN TEXT: {len(texts)} texts ({n_corpus} benign corpus items, "
        f"{len(texts) - n_corpus} Markdown prose paragraphs), {size_mb:.3f} MB ==\n"
        "(code blocks and inline code removed from the docs first; 'example' = a documented "
        "example value: reserved-name address, private / documentation IP)"
    )
    print(f"{'type':<20} {'all':>5} {'/1k texts':>10} {'/MB':>8} {'not examples':>13} {'/1k':>7}")
    for entity in sorted(everything, key=_order):
        a, r = everything[entity], real[entity]
        print(
            f"  {entity:<18} {a:>5} {a / len(texts) * 1000:>10.1f} {a / size_mb:>8.1f} "
            f"{r:>13} {r / len(texts) * 1000:>7.1f}"
        )
    secrets = sum(v for k, v in everything.items() if k in SECRETS)
    print(f"  {'secret types':<18} {secrets:>5} {secrets / len(texts) * 1000:>10.1f}")
    shown = listing if show_all else [x for x in listing if "FINDING" in x] + listing[:5]
    more = "" if show_all else " (all non-examples, the first 5 overall; --misses: all)"
    print("what fires" + more)
    for line in dict.fromkeys(shown):
        print(line)
    print()
    return real


def _order(entity: str) -> tuple[int, str]:
    order = ("EMAIL_ADDRESS", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "PHONE_NUMBER", "IP_ADDRESS")
    if entity in order:
        return (order.index(entity), entity)
    if entity in SECRETS:
        return (len(order) + SECRETS.index(entity), entity)
    return (100, entity)


def verify_pii_middleware_gap() -> str:
    """Run PIIMiddleware's hooks on a tool call that carries an email address in its args."""
    from langchain.agents.middleware import PIIMiddleware
    from langchain_core.messages import AIMessage, HumanMessage

    mw = PIIMiddleware("email", strategy="block", apply_to_input=True, apply_to_output=True)
    call = {"name": "send_email", "args": {"to": "jane.doe@example.com"}, "id": "c1"}
    state: Any = {"messages": [HumanMessage("hi"), AIMessage(content="", tool_calls=[call])]}
    try:
        before = mw.before_model(state, None)  # type: ignore[arg-type]
        after = mw.after_model(state, None)  # type: ignore[arg-type]
    except Exception as exc:  # PIIDetectionError: the hooks did see the address
        return f"NO LONGER TRUE: a hook raised {type(exc).__name__} on tool-call args"
    if before is None and after is None:
        return (
            "confirmed: with strategy='block', before_model and after_model let an AIMessage "
            "calling send_email(to='jane.doe@example.com') through unchanged"
        )
    return "NO LONGER TRUE: a hook changed the state for a tool call"


if __name__ == "__main__":
    try:
        raise SystemExit(main(sys.argv[1:]))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1)
