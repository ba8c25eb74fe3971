"""How well, and how fast, the rule-based injection scorer separates injections from ordinary text.

The corpus (`benchmarks/corpus/injection.jsonl`) holds labelled tool results: injections in many
wrappings (plain, polite, hidden in HTML, tag characters, base64, buried in long documents,
non-English) and benign text chosen to be hard (how-tos full of imperatives, emails that ask
for forwarding, security training that quotes injections, code, news about AI).

For each recommended threshold it prints recall on injections, the false-positive rate on
benign text and precision; a per-kind and per-language breakdown at the quarantine threshold;
the hardest misses and false positives; and latency for 1 KB / 10 KB / 100 KB texts.

Read the figures with care. The corpus was written by the scorer's authors, and most of it was
used to tune the rules, so the "all items" figures are a regression baseline, not a claim
about unseen attacks. Items whose note starts with "holdout:" were written after all tuning and
never used for it: their figures, printed separately, are the better guide to new text.

Run: `python benchmarks/injection_detection.py` (`--json` for machine-readable figures).
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from _bench import page

from agentguard.content.signals import (
    ANNOTATE_AT,
    BLOCK_AT,
    QUARANTINE_AT,
    Assessment,
    RuleDetector,
)

CORPUS = Path(__file__).parent / "corpus" / "injection.jsonl"
LATENCY_GOAL_10KB_US = 300.0
Scored = list[tuple[dict[str, str], Assessment]]


def load(path: Path = CORPUS) -> list[dict[str, str]]:
    items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    ids = [i["id"] for i in items]
    if len(ids) != len(set(ids)):
        raise SystemExit("corpus ids are not unique")
    return items


def rates(scored: Scored, at: float) -> dict[str, Any]:
    tp = sum(1 for i, a in scored if i["label"] == "injection" and a.score >= at)
    fn = sum(1 for i, a in scored if i["label"] == "injection" and a.score < at)
    fp = sum(1 for i, a in scored if i["label"] == "benign" and a.score >= at)
    tn = sum(1 for i, a in scored if i["label"] == "benign" and a.score < at)
    return {
        "threshold": at,
        "recall": tp / (tp + fn) if tp + fn else None,
        "fpr": fp / (fp + tn) if fp + tn else None,
        "precision": tp / (tp + fp) if tp + fp else None,
        "tp": tp,
        "fn": fn,
        "fp": fp,
        "tn": tn,
    }


def breakdown(scored: Scored, field: str, at: float) -> dict[str, dict[str, Any]]:
    groups: dict[str, Scored] = defaultdict(list)
    for item, a in scored:
        groups[item[field]].append((item, a))
    return {key: rates(group, at) for key, group in sorted(groups.items())}


def corpus_text(items: list[dict[str, str]], n_chars: int, seed: int) -> str:
    """Benign corpus items, shuffled and joined: real wording, dense in trigger words."""
    texts = [i["text"] for i in items if i["label"] == "benign"]
    random.Random(seed).shuffle(texts)
    joined = "\n\n".join(texts)
    while len(joined) < n_chars:
        joined += "\n\n" + joined
    return joined[:n_chars]


def latency(detector: RuleDetector, texts: list[str], n: int, size: int) -> dict[str, float]:
    for t in texts:  # warm up
        detector.assess(t)
    samples: list[float] = []
    for i in range(n):
        text = texts[i % len(texts)]
        t0 = time.perf_counter_ns()
        detector.assess(text)
        samples.append((time.perf_counter_ns() - t0) / 1000.0)
    deciles = statistics.quantiles(samples, n=10)
    return {"bytes": size, "p50_us": statistics.median(samples), "p90_us": deciles[-1]}


def fmt(x: float | None) -> str:
    return "   n/a" if x is None else f"{100 * x:5.1f}%"


def print_rates(title: str, table: dict[str, dict[str, Any]]) -> None:
    print(f"{title:<20} {'recall':>7} {'FPR':>7} {'precision':>9}   (tp/fn/fp/tn)")
    for name, r in table.items():
        label = f"{name} {r['threshold']:.2f}"
        print(
            f"{label:<20} {fmt(r['recall']):>7} {fmt(r['fpr']):>7} {fmt(r['precision']):>9}"
            f"   ({r['tp']}/{r['fn']}/{r['fp']}/{r['tn']})"
        )
    print()


def main(argv: list[str]) -> int:
    as_json = "--json" in argv
    detector = RuleDetector()
    items = load()
    scored = [(item, detector.assess(item["text"])) for item in items]
    thresholds = {"annotate": ANNOTATE_AT, "quarantine": QUARANTINE_AT, "block": BLOCK_AT}
    overall = {name: rates(scored, at) for name, at in thresholds.items()}
    held = [(i, a) for i, a in scored if i["note"].startswith("holdout:")]
    holdout = {name: rates(held, at) for name, at in thresholds.items()}
    by_kind = breakdown(scored, "kind", QUARANTINE_AT)
    by_lang = breakdown(scored, "lang", QUARANTINE_AT)
    missed = sorted((a.score, i["id"], i["style"]) for i, a in scored if i["label"] == "injection")
    misses = [m for m in missed if m[0] < QUARANTINE_AT][:10]
    flagged = sorted(
        ((a.score, i["id"], i["style"]) for i, a in scored if i["label"] == "benign"),
        reverse=True,
    )
    false_pos = [f for f in flagged if f[0] >= ANNOTATE_AT][:10]

    sizes = ((1_000, 2000), (10_000, 1000), (100_000, 100))
    timing = [latency(detector, [page(n, s) for s in range(8)], reps, n) for n, reps in sizes]
    timing_corpus = [
        latency(detector, [corpus_text(items, n, s) for s in range(8)], max(reps // 4, 25), n)
        for n, reps in sizes
    ]
    big = page(1_000_000, 99)
    t0 = time.perf_counter_ns()
    detector.assess(big)
    one_mb_ms = (time.perf_counter_ns() - t0) / 1e6

    n_inj = sum(1 for i in items if i["label"] == "injection")
    figures = {
        "corpus": {
            "items": len(items),
            "injection": n_inj,
            "benign": len(items) - n_inj,
            "holdout_items": len(held),
            "kinds": sorted({i["kind"] for i in items}),
            "langs": sorted({i["lang"] for i in items}),
        },
        "thresholds": overall,
        "holdout_thresholds": holdout,
        "by_kind_at_quarantine": by_kind,
        "by_lang_at_quarantine": by_lang,
        "hardest_misses": [{"id": i, "score": s, "style": st} for s, i, st in misses],
        "false_positives": [{"id": i, "score": s, "style": st} for s, i, st in false_pos],
        "latency_prose": timing,
        "latency_corpus_text": timing_corpus,
        "one_mb_ms": one_mb_ms,
    }
    if as_json:
        print(json.dumps(figures, indent=2))
        return 0

    print(
        f"python {sys.version.split()[0]}; corpus {len(items)} items "
        f"({n_inj} injection, {len(items) - n_inj} benign)\n"
    )
    print_rates("all items", overall)
    print_rates(f"held out ({len(held)})", holdout)
    for title, table in (("kind", by_kind), ("language", by_lang)):
        print(f"by {title} at quarantine {QUARANTINE_AT:.2f}")
        print(f"{title:<12} {'inj':>4} {'recall':>7} {'benign':>6} {'FPR':>7}")
        for key, r in table.items():
            print(
                f"{key:<12} {r['tp'] + r['fn']:>4} {fmt(r['recall']):>7} {r['fp'] + r['tn']:>6} "
                f"{fmt(r['fpr']):>7}"
            )
        print()
    print(f"hardest misses (injections below {QUARANTINE_AT:.2f}, lowest first)")
    for s, i, st in misses:
        print(f"  {s:5.2f}  {i}  ({st})")
    print(f"\nfalse positives (benign at or above {ANNOTATE_AT:.2f}, highest first)")
    for s, i, st in false_pos:
        print(f"  {s:5.2f}  {i}  ({st})")
    print("\nlatency per assess(), µs    business prose p50 / p90    benign corpus text p50 / p90")
    for t, c in zip(timing, timing_corpus, strict=True):
        print(
            f"  {t['bytes'] // 1000:>4} KB {t['p50_us']:22.1f} / {t['p90_us']:<10.1f}"
            f"{c['p50_us']:18.1f} / {c['p90_us']:.1f}"
        )
    print(f"  1 MB of prose (cut to {detector.max_chars:,} characters): {one_mb_ms:.1f} ms")
    verdict = "met" if timing[1]["p50_us"] <= LATENCY_GOAL_10KB_US else "NOT met"
    print(f"\ngoal: 10 KB of prose at most {LATENCY_GOAL_10KB_US:.0f} µs p50 -> {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
