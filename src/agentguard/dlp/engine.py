"""The detector: Presidio's pattern recognizers plus agentguard's, offline, bounded, built once.

Profiles:
- `"patterns"` (default): Presidio's credit card (Luhn), US SSN, IBAN (checksum), phone and IP
  recognizers, agentguard's linear email recognizer and its secret recognizers. No language
  model, no download, ever.
- `"ner"`: the same plus PERSON, LOCATION, ORGANIZATION, NRP from a spaCy English model the user
  installed (see docs/dlp.md). Loading never downloads: a missing model is a configuration
  error. The pipeline is trimmed to what NER needs.

Bounded time: Presidio's regexes (cards, SSNs, IBANs) run on windows of `WINDOW` characters
(the entities they find are short), so a super-linear pattern stays cheap; a Presidio pattern
that times out, which stock Presidio would skip with a log line, makes the scan fail
(`ScanTimeout`). agentguard's own recognizers are linear and run over the whole text. A whole
scan has a deadline.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from agentguard.dlp.errors import ScanTimeout
from agentguard.errors import ConfigurationError

__all__ = ["Detector", "Hit", "Profile", "detector"]

Profile = Literal["patterns", "ner"]

WINDOW = 4096  # characters per Presidio call
OVERLAP = 160  # longer than any entity Presidio's pattern recognizers find
THRESHOLD = 0.4  # minimum score after context
CONTEXT_BOOST = 0.4
CONTEXT_CHARS = 48  # characters either side searched for a recognizer's context words
NER_ENTITIES = ("PERSON", "LOCATION", "ORGANIZATION", "NRP")
PHONE_REGIONS = ("US", "GB", "DE", "FR")
_CARD = (
    r"\b(?!1\d{12}(?!\d))((4\d{3})|(5[0-5]\d{2})|(2[2-7]\d{2})|(6\d{3})|(1\d{3})|(3\d{3}))"
    r"[- ]?(\d{3,4})[- ]?(\d{3,4})[- ]?(\d{3,5})\b"
)
_SPACY_MODELS = ("en_core_web_lg", "en_core_web_md", "en_core_web_sm", "en_core_web_trf")
# Presidio's fixed cost per call dominates the short fields of a tool call, so each of its
# recognizers runs only on a window that could hold its entity: cards (13+ digits) and SSNs
# (9) need nine digits; an IBAN needs its country code and check digits (its BBAN may be
# letters).
_NINE_DIGITS = re.compile(r"(?:\d\D*){8}\d")
_IBAN_START = re.compile(r"[A-Z]{2}\d{2}")
# No secret type is shorter than this (prefixed tokens are 20+, a generic secret needs a name
# and a value of 8+): a shorter text (a dict key, a subject) skips the secret rules.
MIN_SECRET_CHARS = 8
_INERT = re.compile(r"[^\d@]*")


@dataclass(frozen=True)
class Hit:
    """One detected entity in one text."""

    entity: str
    start: int
    end: int
    score: float


class _TimeoutWatch(logging.Filter):
    """Presidio logs a regex timeout and moves on; we notice and fail the scan instead."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        if "timed out" in record.getMessage():
            self.local.timed_out = True
        return True


_WATCH = _TimeoutWatch()


class Detector:
    """Runs every recognizer of a profile over a text; built once per profile and reused."""

    def __init__(self, profile: Profile = "patterns", *, pattern_timeout: int = 2) -> None:
        from presidio_analyzer import Pattern, pattern_recognizer
        from presidio_analyzer.predefined_recognizers import (
            CreditCardRecognizer,
            IbanRecognizer,
            UsSsnRecognizer,
        )

        from agentguard.dlp.recognizers import (
            AgentguardEmailRecognizer,
            AgentguardIpRecognizer,
            AgentguardPhoneRecognizer,
            secret_recognizers,
        )

        if profile not in ("patterns", "ner"):
            raise ConfigurationError(f"unknown DLP profile {profile!r}: use 'patterns' or 'ner'")
        self.profile = profile
        # Presidio reads this module global on every match; seconds, an int.
        pattern_recognizer.REGEX_TIMEOUT_SECONDS = pattern_timeout
        logger = logging.getLogger("presidio-analyzer")
        if _WATCH not in logger.filters:
            logger.addFilter(_WATCH)
        self._windowed: list[tuple[re.Pattern[str], Any]] = [
            # Presidio's own pattern plus the 2-series Mastercard range (2221-2720); Luhn
            # validation stays Presidio's.
            (_NINE_DIGITS, CreditCardRecognizer(patterns=[Pattern("cards", _CARD, 0.3)])),
            (_NINE_DIGITS, UsSsnRecognizer()),
            (_IBAN_START, IbanRecognizer()),
        ]
        self._contacts: list[Any] = [
            AgentguardEmailRecognizer(),
            AgentguardIpRecognizer(),
            AgentguardPhoneRecognizer(PHONE_REGIONS),
        ]
        self._secrets: list[Any] = list(secret_recognizers())
        self._whole: list[Any] = [*self._contacts, *self._secrets]
        self._ner = _ner_analyzer() if profile == "ner" else None
        self.entities: tuple[str, ...] = tuple(
            dict.fromkeys(
                e
                for r in [*(w for _, w in self._windowed), *self._whole]
                for e in r.supported_entities
                if e != "MEDICAL_LICENSE"
            )
        ) + (NER_ENTITIES if self._ner is not None else ())

    def scan(self, text: str, *, deadline: float | None = None) -> list[Hit]:
        """Every entity in `text`, overlapping duplicates resolved to the best score."""
        hits: list[Hit] = []
        if len(text) < MIN_SECRET_CHARS and self._ner is None and _INERT.fullmatch(text):
            return hits  # a key or a word: no address (no '@'), no number, too short for a secret
        whole = self._whole if len(text) >= MIN_SECRET_CHARS else self._contacts
        for recognizer in whole:
            for r in recognizer.analyze(text, []):
                score = _with_context(text, r.start, r.end, r.score, recognizer.context)
                hits.append(Hit(r.entity_type, r.start, r.end, score))
            _check(deadline)
        if self._ner is None and not any(gate.search(text) for gate, _ in self._windowed):
            return resolve([h for h in hits if _plausible(h, text)])
        _WATCH.local.timed_out = False
        for offset, window in _windows(text):
            for gate, recognizer in self._windowed:
                if gate.search(window) is None:
                    continue
                for r in recognizer.analyze(window, recognizer.supported_entities, None) or ():
                    score = _with_context(window, r.start, r.end, r.score, recognizer.context)
                    if score >= THRESHOLD:
                        hits.append(Hit(r.entity_type, r.start + offset, r.end + offset, score))
            if self._ner is not None:
                for r in self._ner.analyze(window, language="en", entities=list(NER_ENTITIES)):
                    if r.score >= THRESHOLD:
                        hits.append(Hit(r.entity_type, r.start + offset, r.end + offset, r.score))
            if getattr(_WATCH.local, "timed_out", False):
                raise ScanTimeout("a Presidio pattern timed out: the text was not fully scanned")
            _check(deadline)
        return resolve([h for h in hits if _plausible(h, text)])


def _check(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise ScanTimeout("the scan ran out of time")


def _windows(text: str) -> Iterator[tuple[int, str]]:
    if len(text) <= WINDOW:
        yield 0, text
        return
    step = WINDOW - OVERLAP
    for start in range(0, len(text), step):
        yield start, text[start : start + WINDOW]
        if start + WINDOW >= len(text):
            return


def _with_context(window: str, start: int, end: int, score: float, words: Sequence[str]) -> float:
    """Presidio's context boost, without a language model: context words near the match."""
    if not words:
        return score
    near = window[max(0, start - CONTEXT_CHARS) : end + CONTEXT_CHARS].lower()
    if any(w in near for w in words):
        return min(1.0, score + CONTEXT_BOOST)
    return score


# On the same characters, the more specific reading wins (an SSN also parses as a phone number).
_VAGUE = {"PHONE_NUMBER": 2, "GENERIC_SECRET": 1, "IP_ADDRESS": 1}


def _plausible(hit: Hit, text: str) -> bool:
    if hit.entity == "US_SSN":  # never issued: area 000, 666, 9xx (ITINs)
        area = text[hit.start : hit.start + 3]
        return not (area in ("000", "666") or area.startswith("9"))
    return True


def resolve(hits: list[Hit]) -> list[Hit]:
    """Drop duplicates, hits inside a longer or better hit, and a generic secret wherever a
    specific one was recognized (the generic rule runs on past a token it contains)."""
    from agentguard.dlp.recognizers import SECRET_ENTITIES

    specific = [h for h in hits if h.entity in SECRET_ENTITIES and h.entity != "GENERIC_SECRET"]
    if specific:
        hits = [
            h
            for h in hits
            if h.entity != "GENERIC_SECRET"
            or not any(s.start < h.end and h.start < s.end for s in specific)
        ]
    # On the same characters the more specific reading wins whatever the scores (a phone
    # recognizer boosted by a nearby "phone" outscores the SSN next to it).
    ordered = sorted(
        set(hits), key=lambda h: (h.start, -(h.end - h.start), _VAGUE.get(h.entity, 0), -h.score)
    )
    out: list[Hit] = []
    for hit in ordered:
        if any(o.start <= hit.start and hit.end <= o.end for o in out[-8:]):
            continue
        out.append(hit)
    return out


def spacy_model() -> str:
    """The spaCy English model the 'ner' profile uses: `AGENTGUARD_SPACY_MODEL` (an installed
    package's name or a model folder), else the first installed `en_core_web_*` package.
    Never downloads one."""
    import os

    import spacy.util

    chosen = os.environ.get("AGENTGUARD_SPACY_MODEL")
    if chosen:
        if spacy.util.is_package(chosen) or Path(chosen).is_dir():
            return chosen
        raise ConfigurationError(
            f"AGENTGUARD_SPACY_MODEL={chosen!r} is neither an installed spaCy model package "
            "nor a model folder; nothing is downloaded at run time"
        )
    name = next((m for m in _SPACY_MODELS if spacy.util.is_package(m)), None)
    if name is None:
        raise ConfigurationError(
            "the 'ner' DLP profile needs a spaCy English model installed (see docs/dlp.md); "
            "nothing is downloaded at run time"
        )
    return name


def _ner_analyzer() -> Any:
    import spacy
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import SpacyRecognizer

    name = spacy_model()
    # Loaded here, not by `SpacyNlpEngine.load()`, which downloads a model it cannot find.
    nlp = spacy.load(name)
    keep = {"tok2vec", "transformer", "ner"}
    for pipe in list(nlp.pipe_names):
        if pipe not in keep:
            nlp.remove_pipe(pipe)
    engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": name}])
    cast(Any, engine).nlp = {"en": nlp}
    registry = RecognizerRegistry(supported_languages=["en"])
    registry.add_recognizer(SpacyRecognizer(supported_entities=list(NER_ENTITIES)))
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=["en"])


@functools.lru_cache(maxsize=2)
def detector(profile: Profile = "patterns") -> Detector:
    """The shared detector of a profile, built on first use (Presidio loads here, not on import)."""
    return Detector(profile)
