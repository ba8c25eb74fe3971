"""Injection signals: a fast rule-based scorer for what tools return, and a detector protocol.

Why rules: they run on every untrusted result, so they must cost microseconds, never call out,
and explain themselves (the signal codes end up in labels and audit events). A model-based
detector can run next to them (`Detector`); `combine` merges what they find.

Why it is shaped like this: on CPython a substring test (`in`) over 10 KB costs about 6 µs and
a regex that starts with an alternation far more, so neither can be repeated for a hundred
phrases. Instead the text is lowercased once and split once into a set of words; each rule is
gated by the words it needs (set lookups, nearly free), and each pattern starts with a literal
so that `re` can jump to it. Scripts without spaces (Chinese, Japanese) and markup are gated by
substring tests, which are free when the text cannot contain them. The context a phrase needs
(who is addressed, what is negated) is checked on a short window around the match. Patterns are
bounded (no nested repetition, no unbounded `.*`), so the cost stays linear in the input.
"""

# The patterns hold Cyrillic on purpose (Russian phrases), so ruff's look-alike check is off.
# ruff: noqa: RUF001

from __future__ import annotations

import base64
import binascii
import functools
import html
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import unquote

__all__ = [
    "ANNOTATE_AT",
    "BLOCK_AT",
    "QUARANTINE_AT",
    "Assessment",
    "Detector",
    "RuleDetector",
    "Signal",
    "combine",
]

# Recommended thresholds (the policy's defaults use the same figures).
ANNOTATE_AT = 0.3
QUARANTINE_AT = 0.6
BLOCK_AT = 0.85

_MAX_COUNT = 20  # matches counted per signal: enough to tell "once" from "everywhere"
_MAX_TRIES = 2000  # candidate matches examined per rule: bounds the cost of decoy padding
_EVIDENCE = 80  # characters of evidence: enough to recognise, too few to carry a payload


@dataclass(frozen=True)
class Signal:
    """One kind of evidence of an injection, with a short excerpt of what matched."""

    name: str
    weight: float
    count: int
    evidence: str


@dataclass(frozen=True)
class Assessment:
    """A detector's verdict on one text: a score in [0, 1] and the signals behind it."""

    score: float
    signals: tuple[Signal, ...]
    detector: str


@runtime_checkable
class Detector(Protocol):
    """Anything that scores text for injection (the rules, a classifier, a remote service)."""

    name: str

    def assess(self, text: str) -> Assessment: ...


def combine(assessments: Sequence[Assessment]) -> Assessment:
    """Merge detectors' verdicts: the highest score wins, signals are pooled by name."""
    if not assessments:
        return Assessment(0.0, (), "none")
    best: dict[str, Signal] = {}
    for assessment in assessments:
        for sig in assessment.signals:
            old = best.get(sig.name)
            if old is None or (sig.weight, sig.count) > (old.weight, old.count):
                best[sig.name] = sig
    return Assessment(
        score=max(a.score for a in assessments),
        signals=_ordered(best.values()),
        detector="+".join(a.detector for a in assessments),
    )


def _ordered(signals: Iterable[Signal]) -> tuple[Signal, ...]:
    return tuple(sorted(signals, key=lambda s: (-s.weight, -s.count, s.name)))


def _score(weights: Iterable[float]) -> float:
    """1 - prod(1 - w): each further family adds less, and no family alone is certainty."""
    keep = 1.0
    for w in weights:
        keep *= 1.0 - min(max(w, 0.0), 1.0)
    return round(1.0 - keep, 4)


# --------------------------------------------------------------------------------------------
# Rule machinery

# A check sees the lowercased text and the match, and returns the weight to record, or None
# to drop the match; _RULE_WEIGHT means "yes, with the rule's own weight".
Check = Callable[[str, "re.Match[str]"], "float | None"]
_RULE_WEIGHT = -1.0
_EXFIL = 0.6  # the weight of a request to send private data out

# Word splitting happens on bytes: `bytes.translate` is fast for any text, `str.translate` is
# not for non-Latin-1 text. ASCII punctuation becomes a space; other bytes stay.
_SPLIT_TABLE = bytes(32 if i < 128 and not (chr(i).isalnum()) else i for i in range(256))


@dataclass(frozen=True)
class _Rule:
    family: str
    weight: float
    words: tuple[frozenset[bytes], ...]  # every group must share a word with the text
    lits: tuple[str, ...]  # ... or one of these substrings occurs (non-Latin scripts, markup)
    chars: str  # and each of these characters occurs (memchr: nearly free)
    pattern: str  # compiled on first use: most rules never run on a given text
    check: Check | None = None
    # Requests to send data out: a check weight of _EXFIL or more means the data is private, and
    # the match is recorded as exfiltration_request instead of the rule's family.
    upgrade: bool = False
    dest: bool = False  # needs an email address or a link in the text

    def applies(self, low: str, words: set[bytes], dest: bool, foreign: bool) -> bool:
        """`foreign`: the text has Cyrillic or CJK characters (else their literals can't occur)."""
        if self.chars and not all(c in low for c in self.chars):
            return False
        if self.dest and not dest:
            return False
        if self.words and all(not g.isdisjoint(words) for g in self.words):
            return True
        if self.lits and (foreign or self.lits[0].isascii()):
            return any(lit in low for lit in self.lits)
        return not self.words and not self.lits


_RULES: list[_Rule] = []


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _group(spec: str) -> frozenset[bytes]:
    return frozenset(w.encode() for w in spec.split())


def _add(
    family: str,
    weight: float,
    words: str | tuple[str, ...],
    pattern: str,
    check: Check | None = None,
    *,
    lits: tuple[str, ...] = (),
    chars: str = "",
    upgrade: bool = False,
    dest: bool = False,
) -> None:
    """Register a rule; `words` is one group ("a b c": any of) or a tuple of groups (all of)."""
    groups = (words,) if isinstance(words, str) else words
    _RULES.append(
        _Rule(
            family,
            weight,
            tuple(_group(g) for g in groups if g),
            lits,
            chars,
            pattern,
            check,
            upgrade,
            dest,
        )
    )


def _before(rx: str, span: int = 80, weight: float = _RULE_WEIGHT) -> Check:
    """The match counts only if the text just before it matches `rx` (anchored at its end)."""
    anchored = f"(?:{rx})$"

    def check(low: str, m: re.Match[str]) -> float | None:
        s = m.start()
        return weight if _compiled(anchored).search(low, max(0, s - span), s) else None

    return check


def _both(first: Check, second: Check) -> Check:
    def check(low: str, m: re.Match[str]) -> float | None:
        return second(low, m) if first(low, m) is not None else None

    return check


def _line_start(low: str, m: re.Match[str]) -> float | None:
    """Only at the start of a line (after optional markup such as `>`, `*`, `#`, `[`)."""
    s = m.start()
    head = low[max(0, s - 8) : s].rstrip(" \t>*#[_")
    return _RULE_WEIGHT if s == 0 or head == "" or head.endswith("\n") else None


# --------------------------------------------------------------------------------------------
# override_instructions: "ignore all previous instructions" and its relatives

_ADJ = (
    r"(?:previous|prior|above|earlier|preceding|foregoing|original|initial|former|existing"
    r"|system|developer|vorherigen?|bisherigen?|obigen?|fr[üu]heren?|vorigen?|vorangegangenen?"
    r"|urspr[üu]nglichen|pr[ée]c[ée]dentes|ant[ée]rieures|ci-dessus|initiales|anteriores|previas"
    r"|pr[ée]vias|acima|iniciales|originales|iniciais|originais|precedenti|sopra|iniziali"
    r"|originali|ricevute|eerdere|vorige|voorgaande|bovenstaande|oorspronkelijke"
    r"|(?:do|del|de\s+l'|dell'|des|van\s+de|of\s+the)\s+(?:usu[áa]rio|usuario|utilisateur|utente"
    r"|benutzers|nutzers|gebruiker|user))"
)
_NOUN = (
    r"(?:instructions?|directions|prompts?|rules|guidelines|commands|directives|guidance"
    r"|descriptions|context|conversation|tasks"
    r"|constraints|guardrails|programming|restrictions|anweisungen|instruktionen|befehle|regeln"
    r"|vorgaben|richtlinien|bewertungsrichtlinien|consignes|r[èe]gles|commandes|instrucciones"
    r"|indicaciones|[óo]rdenes|reglas|directrices|instru[çc][õo]es|ordens|regras|diretrizes"
    r"|istruzioni|indicazioni|regole|direttive|instructies|aanwijzingen|opdrachten|regels)"
)
_POSS = r"(?:your|deine|ihre|tes|vos|tus|sus|suas|tuas|tue|sue|je|uw)"
_ALL = r"(?:all|alle|toutes|tous|todas|todos|tutte|tutti)"
_W = r"(?:\S{1,15}\s+)?"  # one optional filler word ("ignore ALL the previous ...")
_OBJECT = (
    rf"\s+{_W}{_W}{_W}(?:{_ADJ}\s+{_W}{_NOUN}\b|{_NOUN}\s+{_ADJ}\b|{_POSS}\s+{_W}{_NOUN}\b"
    rf"|{_ALL}\s+{_NOUN}\b)"
)
_EVERYTHING = (
    r"\s+(?:all\s+|everything\s+|(?:all\s+)?(?:of\s+)?the\s+)(?:above|before|prior|previous"
    r"|preceding|you\s+(?:were|have\s+been|'ve\s+been)\s+told|(?:that\s+)?(?:i|you)\s+(?:said"
    r"|know))\s*(?:[.,;:!\n]|and\b|$)"
)
_OVERRIDE_VERBS = (
    # (stem, word forms that gate it, weight)
    (
        "ignor",
        "ignore ignores ignored ignoring ignoriere ignorieren ignoriert ignorier ignorez "
        "ignorer ignora ignorar ignorate ignorare ignorem ignoren ignorea ignorad ignori",
        0.7,
    ),
    ("disregard", "disregard disregards disregarding", 0.7),
    ("negeer", "negeer negeren", 0.7),
    ("forget", "forget forgets forgetting", 0.6),
    ("vergiss", "vergiss vergessen vergesst", 0.6),
    ("vergeet", "vergeet vergeten", 0.6),
    ("oubli", "oublie oubliez oublier oublies", 0.6),
    ("olvid", "olvida olvide olvidar olviden olvidad", 0.6),
    ("esque", "esqueça esqueca esquecer esqueçam esquece", 0.6),
    ("dimentic", "dimentica dimenticare dimenticate dimentichi", 0.6),
    ("overrid", "override overrides overriding", 0.55),
    ("bypass", "bypass bypassing", 0.55),
    ("circumvent", "circumvent", 0.55),
)
for _stem, _forms, _weight in _OVERRIDE_VERBS:
    _add("override_instructions", _weight, _forms, rf"{_stem}[a-zçéèã]{{0,6}}{_OBJECT}")
for _stem, _forms, _ in _OVERRIDE_VERBS[:4]:
    _add("override_instructions", 0.6, _forms, rf"{_stem}[a-z]{{0,4}}{_EVERYTHING}")
for _forms, _pat in (
    ("forget", r"forget\s+everything\b(?!\s+you\s+know\s+about)"),
    ("vergiss", r"vergiss\s+alles\b"),
    ("oublie oubliez", r"oublie[sz]?\s+tout\b"),
    ("olvida", r"olvida\s+todo\b"),
    ("esqueça esqueca", r"esque[çc]a\s+tudo\b"),
    ("dimentica", r"dimentica\s+tutto\b"),
    ("vergeet", r"vergeet\s+alles\b"),
):
    _add("override_instructions", 0.6, _forms, _pat)
_NEW_END = (
    r"\s*(?::|-|follow|folgen|suivent|siguen|seguem|seguono|volgen|below"
    r"|for\s+(?:the\s+)?(?:ai|assistant|model|llm|agent))"
)
_add(
    "override_instructions",
    0.5,
    ("new", "instructions instruction"),
    rf"new\s+(?:system\s+)?instructions?{_NEW_END}",
)
_add(
    "override_instructions",
    0.5,
    (
        "neue nouvelles nuevas novas nuove nieuwe",
        "anweisungen instructions instrucciones instruções instrucoes istruzioni instructies",
    ),
    r"(?:neue|nouvelles|nuevas|novas|nuove|nieuwe)\s+(?:anweisungen|instructions|instrucciones"
    rf"|instru[çc][õo]es|istruzioni|instructies){_NEW_END}",
)
for _verb, _forms in (
    ("ignor", "ignore ignores ignoring ignora ignorez"),
    ("disregard", "disregard disregards disregarding"),
):
    _add(
        "override_instructions",
        0.6,
        (_forms, "user"),
        rf"{_verb}[a-z]{{0,3}}\s+(?:what\s+)?the\s+user(?:'s)?\s+(?:question|request|query|asks?"
        r"|instructions?|message|prompt|says|said|wants)",
    )
_add(
    "override_instructions",
    0.45,
    ("instead", "reply respond say write output answer tell print return"),
    r"instead\s*,?\s+(?:just\s+|only\s+|simply\s+)?(?:reply|respond|say|write|output|answer"
    r"|tell|print|return)\b",
)
_add(
    "override_instructions",
    0.45,
    ("remember memorize memorise", "rest future forever permanently now"),
    r"(?:remember|memori[sz]e)\s+(?:this\s+|that\s+)?(?:for\s+(?:the\s+rest\s+of|all\s+future)"
    r"|from\s+now\s+on|permanently|forever|in\s+(?:all\s+)?future)",
)
_add(
    "override_instructions",
    0.4,
    ("whenever", "user"),
    r"whenever\s+the\s+user\s+(?:asks|mentions|says|types|writes|requests)",
)
_add(
    "override_instructions",
    0.45,
    (
        "updated revised real actual true secret hidden override priority assistant",
        "instructions instruction",
    ),
    r"instructions?\s*(?:are\s*|is\s*)?:",
    _before(
        r"(?:updated|revised|real|actual|true|secret|hidden|override|priority|assistant)\s+", 30
    ),
)
_add(
    "override_instructions",
    0.6,
    ("your", "real actual true only sole", "task goal objective purpose job mission instructions"),
    r"your\s+(?:real|actual|true|only|sole)\s+(?:task|goal|objective|purpose|job|mission"
    r"|instructions?)\b",
)
_add(
    "override_instructions",
    0.6,
    (
        "aufgabe tâche tache tarea tarefa compito taak opdracht",
        "eigentliche wahre echte vraie véritable veritable réelle reelle verdadera real "
        "verdadeira vera",
    ),
    r"(?:deine|ta|tu|tua|je|sua|vostra|votre|su)\s+(?:eigentliche|wahre|echte|vraie|v[ée]ritable"
    r"|r[ée]elle|verdadera|real|verdadeira|vera)\s+(?:aufgabe|t[âa]che|tarea|tarefa|compito|taak"
    r"|opdracht)\b|(?:ta|tu|tua|sua|su|votre|il\s+tuo)\s+(?:t[âa]che|tarea|tarefa|compito|misi[óo]n"
    r"|miss[ãa]o|mission|objetivo)\s+(?:r[ée]elle|real|verdadera|verdadeira|vero|v[ée]ritable)\b",
)
_add(
    "override_instructions",
    0.6,
    (
        "now",
        "dan jailbroken unrestricted unfiltered uncensored free longer evil mode operating acting",
    ),
    r"you\s+are\s+now\s+(?:a\s+|an\s+|in\s+|the\s+|my\s+)?(?:dan\b|jailbroken|unrestricted"
    r"|unfiltered|uncensored|free\s+(?:from|of)|no\s+longer|evil|(?:developer|god|admin|debug"
    r"|maintenance|jailbreak|unrestricted)\s+mode|operating\s+(?:as|in|under)|acting\s+as)",
)
_add(
    "override_instructions",
    0.4,
    ("now", "from", "on"),
    r"from\s+now\s+on,?\s+(?:you|your|the\s+assistant|always|never|respond|reply|answer|only)",
)
_add(
    "override_instructions",
    0.6,
    ("follow following", "not t never stop longer"),
    r"follow(?:ing)?\s+(?:the\s+|your\s+|any\s+)?(?:user\b|user's|previous\s|original\s|prior\s"
    r"|system\s|earlier\s|initial\s|real\s+user)",
    _before(r"(?:\bnot|n't|never|stop|longer)\s+", 20),
)
_add(
    "override_instructions",
    0.45,
    "instead",
    r"instead\s+(?:of\s+)?(?:summari[sz]ing|translating|answering|doing\s+what|following"
    r"|responding|replying|completing|what\s+the\s+user)",
)
_add(
    "override_instructions",
    0.45,
    (
        "user",
        "wants asked would requests requested instructed authorized authorised expects needs",
    ),
    r"user\s+(?:actually\s+|really\s+|now\s+)?(?:wants|asked|has\s+asked|would\s+like"
    r"|requests|has\s+requested|instructed|has\s+instructed|authori[sz]ed|has\s+authori[sz]ed"
    r"|expects|needs)\s+you\s+to\b",
    _before(r"\bthe\s+", 8),
)
_add(
    "override_instructions",
    0.45,
    ("stop", "doing summarizing summarising translating current reading"),
    r"stop\s+(?:what\s+you\s+are\s+doing|summari[sz]ing|translating|the\s+current\s+task"
    r"|your\s+current\s+task|reading\s+and)",
)
_add(
    "override_instructions",
    0.45,
    ("new", "rule rules policy"),
    r"new\s+(?:rule|rules|policy)\s*(?:from\s+\S{1,20}\s*)?(?:[:\-—]|from)",
)
_add("override_instructions", 0.25, ("prompt", "system"), r"system\s+prompt")
_add(
    "override_instructions",
    0.5,
    (
        "mode",
        "developer dan god jailbreak debug admin unrestricted",
        "enabled activated on engaged unlocked",
    ),
    r"mode\s+(?:is\s+)?(?:now\s+)?(?:enabled|activated|on\b|engaged|unlocked)",
    _before(r"(?:developer|dan|god|jailbreak|debug|admin|unrestricted)\s+", 20),
)
_add("override_instructions", 0.35, "pretend", r"pretend\s+(?:that\s+)?(?:you\s+are|to\s+be)")
_add("override_instructions", 0.35, ("roleplay role", "as"), r"role-?play(?:ing)?\s+as\b")
_add(
    "override_instructions",
    0.35,
    ("act", "unrestricted unfiltered evil rogue jailbroken uncensored"),
    r"act\s+as\s+(?:if\s+you\s+(?:are|were)\s+)?(?:an?|my|the)\s+(?:unrestricted|unfiltered"
    r"|evil|rogue|jailbroken|uncensored)",
)
# Chinese, Japanese, Russian: one rule per leading literal (gated by it, so free elsewhere).
for _lit in ("忽略", "无视", "忘记", "忘掉", "不要理会"):
    _add(
        "override_instructions",
        0.7,
        (),
        _lit + r"[^\n。]{0,12}(?:指令|指示|说明|提示|规则|要求|问题|设定)",
        lits=(_lit,),
    )
for _lit in ("指示", "命令", "指令", "ルール", "プロンプト"):
    _add(
        "override_instructions", 0.7, (), _lit + r"[^\n。]{0,8}(?:無視|忘れ)", lits=("無視", "忘れ")
    )
for _lit in ("игнорир", "забудь", "не обращай"):
    _add(
        "override_instructions",
        0.7,
        (),
        _lit + r"[а-я]{0,4}\s+(?:\S{1,15}\s+)?(?:\S{1,15}\s+)?(?:инструкци|указани|правил|команд)",
        lits=(_lit,),
    )
for _lit, _pat in (
    ("新的指令", "新的指令"),
    ("新指令", "新指令"),
    ("新しい指示", "新しい指示"),
    ("новые инструкции", r"новые\s+инструкции"),
    ("новая инструкция", r"новая\s+инструкция"),
):
    _add("override_instructions", 0.5, (), _pat, lits=(_lit,))

# --------------------------------------------------------------------------------------------
# addressed_to_assistant: text that speaks to the model rather than to the reader

_PUNCT = ',.:;!?"()[]<>*-—/#'
# Window tokens: markup and punctuation (except apostrophes) separate words.
_SEPARATORS = '!"#$%&()*+,-./:;<=>?@[\\]^`{|}~“”„«»—–…'  # "AI-assistant" is "AI assistant"
_WINDOW_TABLE = str.maketrans({c: " " for c in _SEPARATORS})
_WORD = re.compile(r"[^\s!-&(-/:-@\[-^`{-~“”„«»—–…]+")


def _tokens(text: str) -> list[str]:
    # str.translate is fast on ASCII and slow on other text; the regex is the reverse.
    return text.translate(_WINDOW_TABLE).split() if text.isascii() else _WORD.findall(text)


def _set(spec: str) -> frozenset[str]:
    return frozenset(spec.split())


_ADDR_1 = _set(
    "dear hey hi hello attention attn calling liebe lieber liebes hallo cher chère chere bonjour "
    "salut querido querida hola olá ola caro cara ciao beste hoi todo fixme atención atencion "
    "achtung attenzione atenção atencao привет здравствуй уважаемый дорогой внимание"
)
_ADDR_2 = frozenset(
    {
        *("note to", "note for", "notes for", "message to", "message for", "instructions for"),
        *("instruction for", "summary for", "guidance for", "information for", "info for"),
        *("context for", "reminder for", "notice for", "warning for", "tip for", "hinweis für"),
        *("nachricht an", "nachricht für", "note pour", "message pour", "nota para"),
        *("mensaje para", "nota per", "mensagem para", "bericht voor", "notitie voor", "wenn du"),
        *("si eres", "se sei", "als je", "als u", "if you're", "you are", "you're"),
        *("requires that", "require that", "requests that", "expects that", "если ты", "если вы"),
    }
)
_ADDR_3 = frozenset({"if you are", "si tu es", "si vous êtes", "se você é", "se voce e"})
_ADDR_LINE = _set("to an à para per aan for für pour")
_ADDR_DET = _set(
    "the a an any all die der eine ein l' le la el una une uno un un' o um uma de een each every"
)
_QUALIFIERS = _set("ai ki ia llm automated autonomous gpt language ии")
_QUALIFIED_AFTER = re.compile(r"(?:\s+(?:de|di|d'|da|do))?\s*[-\s]?(?:ia|ai|ki|ии)\b")
# After a modifier-like noun ("AI"), the next word decides: "AI assistant" and "AI, please"
# speak to it; "AI enthusiast" does not.
_HEADS = _set(
    "assistant assistants assistent assistente asistente agent agents agente model models "
    "language system systems bot bots chatbot reading processing parsing summarizing that who "
    "please must should will here you bist bent sei eres es êtes is are"
)
_ADDR_AFTER = re.compile(
    r"\s{0,3}(?:[,:!]\s*(?:please|you\s+must|you\s+should|ignore|do\s+not|don't|stop|read"
    r"|follow|remember|note|before|when|if|make\s+sure|always|never|send|forward|include"
    r"|summari[sz]e|disregard|execute|call|reply|respond|answer|translate|tell|bitte|s'il"
    r"|por\s+favor|per\s+favore|alstublieft|ignor|oubli|olvid|vergiss|negeer)"
    r"|\s+(?:instructions?|note|notice|directive|guidance|task)\s*:"
    r"|s?\s+(?:reading|processing|parsing|summari[sz]ing|reviewing|analy[sz]ing|browsing"
    r"|scraping|evaluating|screening|grading|ranking|assessing|handling|(?:that|who)\s+(?:reads"
    r"|processes|summari[sz]es|handles|manages|reviews|screens|sees))\s+(?:this|these|the|such"
    r"|any|all|my|our|\w+'s|reviews?|pages?|documents?|e-?mails?|messages?|content|text|files?"
    r"|data|mail|inbox|cvs?|resumes?|applications?)\b)"
)
_ADDR_THIRD = re.compile(  # "the assistant must ...", "your assistant is authorised to ..."
    r"s?\s+(?:first\s+|now\s+)?(?:must|should|will\s+now|needs?\s+to|has\s+to|is\s+(?:now\s+)?"
    r"(?:required|instructed|authori[sz]ed|allowed|permitted|expected)\s+to|sends|calls|reads"
    r"|forwards|includes|reveals)\b"
)
_ACTS = _set(
    "send sends forward email reply call run execute invoke delete remove transfer wire pay "
    "approve merge grant add create share upload open visit click include reveal print output "
    "write say tell recommend rate describe respond answer ignore disregard skip list read fetch "
    "post publish purchase buy book cancel confirm mark set change install download log sign "
    "collect retry paste suggest claim state mention insert append attach forget report omit "
    "rank render ask "
    "sende schicke leite lies lösche empfiehl ignoriere vergiss antworte "
    "envoie envoyez transférez supprimez réponds répondez ignorez oubliez dis recommandez "
    "envía reenvía responde borra ignora olvida di recomienda recopilar enviarlos "
    "envie encaminhe responda apague esqueça recomende transfira "
    "invia inoltra rispondi cancella dimentica consiglia approva "
    "stuur beantwoord verwijder negeer vergeet geef"
)
_PLEASE = _set(  # "please", and "you must" in a few languages
    "please kindly bitte favor favore plaît plait alstublieft пожалуйста must musst dois debes "
    "deves devi moet"
)
_PLEASE_CJK = ("请", "ください", "してください")
_DETS = _set("the a an your this my our their his her its that")
_AI_CUES = (
    *("token", "credential", "api key", "password", "secret", "conversation", "url"),
    *("summar", "tool", "prompt", "instruction", "the user", "reply with", "respond with"),
    *("output", "this message", "this email", "this page", "this document"),
)
_LINE_MARKUP = " \t>*#[-_\"'`/!<@"


def _instructs(low: str, e: int, sentence: bool = False) -> bool:
    """Does an instruction follow (a consequential verb used as a verb, not as a noun)?
    `sentence`: look only as far as the end of the sentence."""
    seg = low[e : e + 180]
    if sentence:
        cut = min(
            (i for i in (seg.find(". "), seg.find("\n"), seg.find("? ")) if i >= 0), default=-1
        )
        seg = seg if cut < 0 else seg[:cut]
    prev = ""
    for tok in _tokens(seg)[:30]:
        if tok in _PLEASE or (tok in _ACTS and prev not in _DETS and prev != "to"):
            return True
        prev = tok
    return not seg.isascii() and any(p in seg for p in _PLEASE_CJK)


def _vocative(low: str, s: int, e: int) -> bool:
    """The noun opens a line or an element and is followed by "," or ":" ("Assistant, ...",
    "<!-- agent: ...", "AI: ..."), or is an @-mention."""
    if s > 0 and low[s - 1] == "@":
        return True
    if low[e : e + 1] not in (",", ":") and low[e : e + 2] not in (" ,", " :"):
        return False
    floor = max(0, s - 80)
    start = max(low.rfind("\n", floor, s), low.rfind(">", floor, s), floor - 1) + 1
    head = low[start:s].replace("<!--", "").replace("//", "").strip(_LINE_MARKUP)
    return len(head) <= 2


def _addressed(kind: str) -> Check:
    """A noun such as "assistant" counts when it is spoken to: "Dear AI assistant", "Note to
    the AI:", "If you are an LLM", "Assistant, please", "AI agents reading this", "the model
    must ...", "(for AI agents only):". Kinds: "ai" (a word that is often a modifier: it must
    head its phrase), "named" (unambiguous: Claude, chatbot), "assistant" (humans have
    assistants too), "strict" (agent, model: everyday words, so most contexts also need a
    qualifier such as "AI")."""

    def check(low: str, m: re.Match[str]) -> float | None:
        s, e = m.start(), m.end()
        if kind == "ai":
            nxt = _tokens(low[e : e + 24])[:1]
            if nxt and nxt[0] not in _HEADS and low[e : e + 1] not in (",", ":", "!", ";", ")"):
                return None
        toks = _tokens(low[max(0, s - 60) : s])[-6:]
        qualified = bool(_QUALIFIED_AFTER.match(low, e, e + 12))
        while toks and toks[-1] in _QUALIFIERS:
            toks.pop()
            qualified = True
        open_ = qualified or kind != "strict"
        weight = None
        if _vocative(low, s, e):
            mention = low[s - 1 : s] == "@"
            if not mention and not _instructs(low, e, sentence=True):
                return None  # "Agent: Done." is a transcript, "Copilot, Gemini and ..." a list
            weight, qualified = 0.5, qualified or mention
        elif toks:
            if toks[-1] in _ADDR_DET:
                toks.pop()
            two = " ".join(toks[-2:])
            if (
                toks
                and toks[-1] in ("for", "to", "für", "pour", "para", "per")
                and (re.match(r"s?(?:\s+only)?\s*[:)\]]", low[e : e + 10]))
            ):
                weight = 0.5  # "(for AI agents only):", "Tip for bots:"
            elif toks and (
                (open_ and (toks[-1] in _ADDR_1 or " ".join(toks[-3:]) in _ADDR_3))
                or two in _ADDR_2
            ):
                weight = 0.5
            elif open_:
                line = _tokens(low[max(low.rfind("\n", max(0, s - 80), s) + 1, s - 80, 0) : s])
                if line and line[0] in _ADDR_LINE and len(line) <= 4:
                    weight = 0.5
        if weight is None and _ADDR_AFTER.match(low, e, e + 80):
            weight = 0.45
        if weight is None and open_ and _ADDR_THIRD.match(low, e, e + 40):
            weight = 0.45
        if weight is None:
            return None
        sure = kind != "assistant" or qualified or any(c in low[e : e + 200] for c in _AI_CUES)
        if kind == "strict" and not qualified:
            sure = False  # "message to agent": maybe a support desk
        return 0.6 if sure and _instructs(low, e) else weight

    return check


for _forms, _pat, _kind in (
    # The noun is matched first (a literal, so fast); the context around it decides.
    ("assistant assistants assistent assistente assistenten", r"assist[ae]nt", "assistant"),
    ("asistente asistentes", r"asistente", "assistant"),
    ("ai ais", r"ai\b(?<![a-z0-9]ai)", "ai"),
    ("ia", r"ia\b(?<![a-z0-9']ia)", "ai"),
    ("ki", r"ki\b(?<![a-z0-9]ki)", "ai"),
    ("llm llms", r"llms?\b", "ai"),
    ("gpt chatgpt", r"gpt(?:-?\d[a-z0-9.]{0,6})?\b", "ai"),
    ("chatbot chatbots", r"chatbots?\b", "named"),
    ("claude", r"claude\b", "named"),
    ("gemini", r"gemini\b", "named"),
    ("copilot", r"copilot\b", "named"),
    ("summarizer summarizers summariser summarisers", r"summari[sz]ers?\b", "named"),
    ("bot bots", r"bots?\b", "strict"),
    ("agent agents agente agenten", r"agent(?:s|e|en)?\b", "strict"),
    ("model models modelo modelos modello", r"model(?:s|o|os)?\b", "strict"),
    ("system systems", r"systems?\b", "strict"),
):
    _add("addressed_to_assistant", 0.45, _forms, _pat, _addressed(_kind))
for _lit, _pat in (
    ("ассистент", "ассистент"),
    ("помощник", "помощник"),
    ("нейросет", "нейросет"),
    ("чат-бот", "чат-бот"),
    ("ии", r"ии\b(?<![а-яё]ии)"),
    ("бот", r"бот\b(?<![а-яё]бот)"),
):
    _add("addressed_to_assistant", 0.45, (), _pat, _addressed("named"), lits=(_lit,))
_add(
    "addressed_to_assistant",
    0.45,
    (
        "summarize summarise summarizing summarising summarizes summarises",
        "when while if before after as",
    ),
    r"summari[sz](?:e|es|ing)\s+(?:this|these|the\s+(?:page|document|email|article|text|thread"
    r"|message|file|content|review))",
    _both(
        _before(r"\b(?:when|while|if|before|after|as)\s+(?:you\s+)?(?:are\s+)?", 20),
        lambda low, m: 0.6 if _instructs(low, m.end()) else _RULE_WEIGHT,
    ),
)
_add(
    "addressed_to_assistant",
    0.45,
    ("your", "summary response answer reply output analysis"),
    r"your\s+(?:summary|response|answer|reply|output|analysis)\s*,?\s+(?:you\s+(?:must|should)"
    r"\s+)?(?:say|state|mention|include|recommend|tell|claim|write|add|describe|note|insist"
    r"|conclude|rate|call)",
    _before(r"\bin\s+", 5),
)
for _lit, _pat in (
    ("如果你是", r"如果你是[^\n。]{0,6}(?:ai|人工智能|语言模型|助手|智能体|机器人)"),
    ("如果您是", r"如果您是[^\n。]{0,6}(?:ai|人工智能|语言模型|助手|智能体|机器人)"),
    ("致ai", "致ai"),
    ("给ai", "给ai"),
    ("致人工智能", "致人工智能"),
    ("给人工智能", "给人工智能"),
    ("aiアシスタント", r"aiアシスタント(?:へ|の方|さん)"),
    ("あなたが", r"あなたが(?:ai|言語モデル)"),
    ("の方へ", r"(?:ai|言語モデル)の方へ"),
    ("если ты", r"если\s+ты\s+(?:—\s+)?(?:ии|ai|ассистент|языков|нейросет|бот|чат-бот)"),
    ("если вы", r"если\s+вы\s+(?:—\s+)?(?:ии|ai|ассистент|языков|нейросет|бот|чат-бот)"),
    ("уважаемый", r"уважаемый\s+(?:ии|ассистент|ai|бот)"),
    ("дорогой", r"дорогой\s+(?:ии|ассистент|ai|бот)"),
):
    _add("addressed_to_assistant", 0.5, (), _pat, lits=(_lit,))

# --------------------------------------------------------------------------------------------
# tool_request: text asking for tools to be called or commands run

_CALL_BEFORE = re.compile(
    r"(?:call|use|invoke|run|trigger|execute|activate)\s+(?:the\s+|your\s+|a\s+)?([`'\"]?)"
    r"([a-z][a-z0-9_.-]{1,40})[`'\"]?(?:\(\))?\s+$"
)


def _named_tool(low: str, m: re.Match[str]) -> float | None:
    """'use the crop tool' is a how-to; 'call the `send_email` tool' reads like an agent's."""
    s = m.start()
    found = _CALL_BEFORE.search(low, max(0, s - 60), s)
    if found is None:
        return None
    if m.group(0).startswith("tool") and (found.group(1) or "_" in found.group(2)):
        return 0.35
    return 0.2 if found.group(1) or "_" in found.group(2) else 0.15


_CALL_VERBS = "call use invoke run trigger execute activate"
for _noun in ("tool", "function", "plugin"):
    _add("tool_request", 0.35, (f"{_noun} {_noun}s", _CALL_VERBS), rf"{_noun}s?\b", _named_tool)


def _call_args(low: str, m: re.Match[str]) -> float | None:
    """ "call send_email ..." is a request; with an outside address and private data in the
    arguments it is exfiltration."""
    tail = low[m.end() : m.end() + 200]
    if ("@" in tail or "http" in tail) and _SENSITIVE.search(tail):
        return _EXFIL
    return 0.25


for _verb in ("call", "invoke", "trigger"):
    _add(
        "tool_request",
        0.25,
        _verb,
        rf"{_verb}\s+(?:the\s+|your\s+)?[`'\"]?[a-z][a-z0-9]{{1,20}}_[a-z0-9_]{{2,40}}\b",
        _call_args,
        chars="_",
        upgrade=True,
    )
_RUN_OBJECT = r"\s+(?:this|the\s+following|these|the\s+command|the\s+code|the\s+script)\b"
_RUN_WORDS = "this following these command code script"
_add("tool_request", 0.15, ("run", _RUN_WORDS), rf"run{_RUN_OBJECT}")
_add("tool_request", 0.15, ("execute", _RUN_WORDS), rf"execute{_RUN_OBJECT}")
for _verb, _forms in (
    ("führe", "führe führen"),
    ("exécute", "exécute exécutez"),
    ("ejecuta", "ejecuta ejecute"),
    ("esegui", "esegui eseguite"),
):
    _add(
        "tool_request",
        0.15,
        _forms,
        _verb + r"z?\s+(?:diesen|den\s+folgenden|la\s+commande|le\s+code|el\s+comando"
        r"|el\s+c[óo]digo|il\s+comando|il\s+codice|questo|este|ce)",
    )
_add(
    "tool_request",
    0.4,
    "arguments action input parameters args",
    r"\"(?:arguments|action_input|parameters|input|args)\"\s*:",
    _both(
        _before(
            r"\"(?:name|tool|function|tool_name|action|recipient_name)\"\s*:\s*\"[\w./-]{1,60}\"\s*,\s*",
            100,
        ),
        lambda low, m: _EXFIL if _call_args(low, m) == _EXFIL else _RULE_WEIGHT,
    ),
    chars='":',
    upgrade=True,
)
for _words, _pat, _chars in (
    (("tool", "call calls"), r"tool_calls?\"\s*:", '_"'),
    (("function", "call calls"), r"function_calls?\"\s*:", '_"'),
    (("tool", "use"), r"tool_use\"", '_"'),
    ("invoke", r"<invoke\s+name=", "<"),
    ("function", r"<function=", "<"),
):
    _add("tool_request", 0.4, _words, _pat, chars=_chars)
for _needs, _pat in (
    (("rm", "rf"), r"rm\s+-rf\s+[~/]"),
    (("push", "force f"), r"push\s+(?:-f|--force)\b"),
    (("drop", "table"), r"drop\s+table\b"),
):
    _add("tool_request", 0.25, _needs, _pat)
for _tool in ("curl", "wget"):
    _add("tool_request", 0.15, _tool, rf"{_tool}\s")
    _add(
        "tool_request",
        0.25,
        _tool,
        rf"{_tool}\s[^\n|]{{0,300}}\|\s{{0,3}}(?:sudo\s+)?(?:ba|z)?sh\b",
    )


# --------------------------------------------------------------------------------------------
# role_marker: fake conversation structure


def _template(low: str, m: re.Match[str]) -> float | None:
    """Chat-template tokens: documentation shows them too; orders right after them do not."""
    return 0.65 if _instructs(low, m.end()) else _RULE_WEIGHT


def _turn(low: str, m: re.Match[str]) -> float | None:
    """'Assistant:' at the start of a line; at the very end, it invites the model to go on."""
    if _line_start(low, m) is None:
        return None
    return 0.5 if len(low) - m.end() < 200 and not low[m.end() :].strip() else _RULE_WEIGHT


def _role_line(low: str, m: re.Match[str]) -> float | None:
    """'System:' at the start of a line; weak unless what follows gives orders."""
    s = m.start()
    head = low[max(0, s - 8) : s].rstrip(" \t>*#[_")
    if s and head and not head.endswith("\n"):
        return None
    return 0.45 if _instructive(low[m.end() : m.end() + 200]) else 0.15


_add(
    "role_marker",
    0.5,
    (),
    r"<\|\s{0,2}(?:im_start|im_end|im_sep|system|user|assistant|endoftext|eot_id"
    r"|start_header_id|end_header_id|begin_of_text|end)\s{0,2}\|>",
    _template,
    lits=("<|",),
    chars="<",
)
_add("role_marker", 0.5, "inst", r"\[/?inst\]", _template, chars="[")
_add("role_marker", 0.5, "sys", r"<</?sys>>", _template, chars="<")
_add(
    "role_marker",
    0.45,
    "system",
    r"</?system(?:[_-]?(?:prompt|message|instructions?))?>",
    chars="<",
)
_add("role_marker", 0.45, "system", r"system\s{0,3}:", _role_line, chars=":")
_add("role_marker", 0.2, "assistant", r"assistant\s{0,3}:", _turn, chars=":")
_add("role_marker", 0.2, "human", r"human\s{0,3}:", _line_start, chars=":")


def _bracketed(low: str, m: re.Match[str]) -> float | None:
    return _RULE_WEIGHT if m.start() > 0 and low[m.start() - 1] in "[(" else None


for _word in ("system", "admin", "administrator", "developer", "sys"):
    _add(
        "role_marker",
        0.4,
        _word,
        rf"{_word}(?:\s+(?:message|note|notice|override|instruction|prompt|alert|update))?[\])]",
        _bracketed,
    )
_add(
    "role_marker",
    0.4,
    ("system", "override instruction instructions command commands"),
    r"system\s+(?:override|instructions?|command)s?\b",
)
for _noun in ("message", "notice", "alert", "notification"):
    _add(
        "role_marker",
        0.4,
        (_noun, "system administrator admin"),
        _noun + r"\s+from\s+(?:the\s+|your\s+)?(?:system|administrator|admin|security\s+team)\b",
    )
_add(
    "role_marker",
    0.35,
    "system instruction response",
    r"###\s{0,3}(?:system|instruction|response)",
    chars="#",
)

# --------------------------------------------------------------------------------------------
# exfiltration_request and contact_third_party

_SENSITIVE = re.compile(
    r"passwor|passcode|passphrase|credential|api[\s_-]?keys?\b|apikey|access\s+tokens?|tokens?\b"
    r"|secrets?\b|private\s+keys?|ssh\s+keys?|\.env\b|\.ssh|id_rsa|cookies?\b|session\s+(?:id|key)"
    r"|conversation|chat\s+(?:history|log)|system\s+prompt|previous\s+messages|memory\b"
    r"|all\s+(?:the\s+|of\s+the\s+|your\s+|my\s+|his\s+|her\s+|their\s+)?(?:e-?mails|files"
    r"|messages|documents|contacts|attachments|data|records|notes|chats)"
    r"|every\s+(?:e-?mail|file|message|document|contact)|(?:last|recent|latest)\s+(?:\d{1,3}\s+)?"
    r"(?:e-?mails|messages|files|documents)|the\s+user's|user\s+data|personal\s+data"
    r"|customer\s+(?:data|list|records|contact)|contact\s+list|address\s+book|inbox"
    r"|browsing\s+history|login\s+details|2fa|otp\b|verification\s+code|one-time\s+code"
    r"|credit\s+card|card\s+number|\bssn\b|social\s+security|bank\s+(?:account|details)"
    r"|kennwort|passwort|zugangsdaten|kundenliste|alle\s+(?:e-?mails|dateien|nachrichten"
    r"|dokumente)|mot\s+de\s+passe|identifiants|tous\s+les\s+(?:e-?mails|fichiers|messages)"
    r"|historique|contrase[ñn]a|credenciales|todos\s+los\s+(?:correos|archivos|mensajes)|senha"
    r"|credenciais|todos\s+os\s+(?:e-?mails|arquivos)|credenziali|tutte\s+le\s+(?:e-?mail|mail)"
    r"|tutti\s+i\s+file|wachtwoord|inloggegevens|alle\s+bestanden|密码|口令|凭据|密钥|聊天记录"
    r"|对话|パスワード|認証情報|会話|履歴|пароль|парол|учетн|переписк|ключ"
)
_SEND_WORD = r"(?:\S{1,14}\s+)?"
_DEST = r"(?:[a-z0-9._%+-]{1,64}@[a-z0-9-]|https?://|www\.)"
_PREPOSITIONS = _set("to at into towards toward an nach zu à vers a al para ao naar aan")
_LOCAL_PART = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._%+-")


def _sent_to(low: str, m: re.Match[str]) -> float | None:
    """A send verb counts when an address or link follows on the same line, right after a
    preposition ("forward the report to x@y", "sende ... an x@y"). What is sent decides the
    weight: credentials, conversations or "all files" make it exfiltration."""
    e = m.end()
    stop = low.find("\n", e, e + 220)
    seg = low[e : stop if stop >= 0 else e + 220]
    found = [p for p in (seg.find("@"), seg.find("http"), seg.find("www.")) if p >= 0]
    if not found:
        return None
    p = min(found)
    if seg[p] == "@":
        while p > 0 and seg[p - 1] in _LOCAL_PART:
            p -= 1
    if any(stop in seg[:p] for stop in (". ", "! ", "? ", "; ")):
        return None  # another sentence
    if not any(t in _PREPOSITIONS for t in _tokens(seg[:p])[-5:]):
        return None
    return _EXFIL if _SENSITIVE.search(low, m.start(), e + p + 60) else 0.25


def _private(low: str, m: re.Match[str]) -> float | None:
    """Sending private data (credentials, conversations, every file) is exfiltration."""
    return _EXFIL if _SENSITIVE.search(low, m.start(), m.end() + 60) else _RULE_WEIGHT


_SEND_VERBS = (
    # (stem, the word forms that gate it); stems are literals, so `re` can jump to them
    ("send", "send sends sending"),
    ("sent", "sent"),
    ("forward", "forward forwards forwarded forwarding"),
    ("email", "email emails emailed emailing"),
    ("e-mail", "mail"),
    ("mail", "mail mails mailed"),
    ("upload", "upload uploads uploaded uploading"),
    ("post", "post posts posted posting"),
    ("submit", "submit submits submitted"),
    ("transmit", "transmit transmits transmitted"),
    ("share", "share shares shared sharing"),
    ("cop", "copy copied copies"),
    ("cc", "cc"),
    ("bcc", "bcc"),
    ("deliver", "deliver delivers delivered"),
    ("leak", "leak leaked"),
    ("exfiltrat", "exfiltrate exfiltrated"),
    ("paste", "paste pasted"),
    ("relay", "relay relayed"),
    ("dump", "dump dumped"),
    ("sync", "sync synced"),
    ("export", "export exported"),
    ("push", "push pushed"),
    ("sende", "sende senden sendet"),
    ("schick", "schick schicke schicken schickt"),
    ("leite", "leite leiten leitet"),
    ("weiterleit", "weiterleiten"),
    ("übermittl", "übermittle übermitteln übermittelt"),
    ("envo", "envoie envoyez envoyer"),
    ("transfér", "transférez transfère transférer"),
    ("transfer", "transferez"),
    ("transmet", "transmets transmettez transmettre"),
    ("enví", "envía envíe envíen envíes"),
    ("envi", "envia envie enviar"),
    ("reenví", "reenvía reenvíe"),
    ("reenvi", "reenvia reenvie"),
    ("mand", "manda mande mandate mandare"),
    ("encaminh", "encaminhe encaminha encaminhar"),
    ("invia", "invia inviate inviare"),
    ("inoltr", "inoltra inoltrate inoltrare"),
    ("stuur", "stuur stuurt"),
    ("verstuur", "verstuur verstuurt"),
    ("doorstur", "doorsturen"),
)
_LINK_WORDS = frozenset({b"http", b"https", b"www"})
for _stem, _forms in _SEND_VERBS:
    # One rule per verb keeps a literal prefix; only the verbs present run.
    _add(
        "contact_third_party",
        0.25,
        _forms,
        rf"{_stem}(?<![a-zäöüéèíáóúç-]{_stem})[a-zäöüéèíáóúçã]{{0,5}}\b",
        _sent_to,
        upgrade=True,
        dest=True,
    )
for _lit in ("отправ", "перешл", "пошли", "скинь"):
    _add(
        "contact_third_party",
        0.25,
        (),
        _lit
        + r"[а-я]{0,5}\s[^\n]{0,160}?(?:\bна|\bв|адрес)\s+"
        + f"{_SEND_WORD}{_SEND_WORD}{_DEST}",
        _private,
        lits=(_lit,),
        upgrade=True,
        dest=True,
    )
for _lit in ("发送", "转发", "发", "寄", "传", "上传", "提交"):
    _add(
        "contact_third_party",
        0.25,
        (),
        _lit + rf"(?:到|给|至)\s*{_DEST}",
        _private,
        lits=(_lit,),
        upgrade=True,
        dest=True,
    )
for _lit in ("送信", "転送", "送って", "送付", "アップロード"):
    for _particle in ("に", "へ"):
        _add(
            "contact_third_party",
            0.25,
            (),
            _particle + _lit,
            _both(_before(_DEST + r"[^\s]{0,60}\s*", 90), _private),
            lits=(_lit,),
            upgrade=True,
            dest=True,
        )
_add(
    "exfiltration_request",
    0.45,
    "webhook requestbin pipedream ngrok burpcollaborator oastify requestcatcher beeceptor "
    "hookbin pastebin interactsh",
    r"https?://[a-z0-9.-]{0,100}(?:webhook\.site|requestbin|pipedream|ngrok|burpcollaborator"
    r"|oastify|requestcatcher|beeceptor|hookbin|pastebin|interactsh)",
)
_REVEAL = (
    r"(?:reveal|print|output|repeat|show|display|leak|disclose|dump|tell\s+me|give\s+me"
    r"|write\s+out|list|share|send|recite)\s+(?:me\s+|us\s+)?(?:all\s+)?(?:of\s+)?(?:your"
    r"|the)\s+(?:full\s+|entire\s+|complete\s+|original\s+|hidden\s+|exact\s+|saved\s+"
    r"|stored\s+)?(?:system\s+|initial\s+)?"
)
_REVEAL_RX = re.compile(f"(?:{_REVEAL})$")
_NEVER = re.compile(r"(?:\bnever|\bnot|n't|\bno)\s+(?:\S{1,10}\s+)?$")


def _revealed(low: str, m: re.Match[str]) -> float | None:
    """ "reveal your system prompt", but not "never share your password"."""
    s = m.start()
    found = _REVEAL_RX.search(low, max(0, s - 70), s)
    if found is None or _NEVER.search(low, max(0, found.start() - 20), found.start()):
        return None
    return _RULE_WEIGHT


_REVEAL_VERBS = "reveal print output repeat show display leak disclose dump tell give write list "
_REVEAL_VERBS += "share send recite"
for _forms, _pat in (
    ("prompt prompts", r"prompts?\b"),
    ("instructions", r"instructions\b"),
    ("password passwords", r"passwords?\b"),
    ("secret secrets", r"secrets?\b"),
    ("credentials", r"credentials\b"),
    ("keys key", r"api[\s_-]?keys?\b"),
):
    _add("exfiltration_request", 0.55, (_forms, _REVEAL_VERBS), _pat, _revealed)
for _verb in ("include", "append", "embed", "insert", "attach", "put", "add", "pass"):
    _add(
        "exfiltration_request",
        0.6,
        (_verb, "prompt conversation history messages user"),
        rf"{_verb}\s+(?:the\s+|your\s+|all\s+|a\s+copy\s+of\s+|the\s+contents?\s+of\s+)?"
        r"(?:full\s+|entire\s+|complete\s+|whole\s+)?(?:system\s+prompt|conversation(?:\s+history)?"
        r"|chat\s+history|previous\s+messages|the\s+user's\s+(?:messages|data|emails|files"
        r"|history|last\s+message))\s+(?:\S{1,15}\s+)?(?:in|into|with|as|to)\s+",
    )
for _verb in ("include", "append", "embed", "insert", "attach"):
    _add(
        "exfiltration_request",
        0.6,
        (
            _verb,
            "prompt conversation history messages keys key passwords password credentials "
            "secrets secret tokens token user personal cookies cookie",
            "response reply answer summary output image markdown chat message link",
        ),
        rf"{_verb}\s+(?:the\s+|your\s+|all\s+|a\s+copy\s+of\s+|the\s+contents?\s+of\s+)?"
        r"(?:\S{1,15}\s+)?(?:system\s+prompt|conversation|chat\s+history|previous\s+messages"
        r"|api\s+keys?|passwords?|credentials|secrets?|tokens?|the\s+user's|personal\s+data"
        r"|session\s+cookies?)\s+(?:\S{1,15}\s+)?(?:in|into|with|at|to)\s+(?:the\s+|your\s+"
        r"|each\s+|every\s+|all\s+)?(?:\S{1,15}\s+)?(?:response|reply|answer|summary|output"
        r"|image|markdown|chat|message|link)",
    )
for _tool in ("curl", "wget"):
    _add(
        "exfiltration_request",
        0.6,
        _tool,
        rf"{_tool}\s[^\n]{{0,300}}?(?:\$\(|`|/etc/passwd|/etc/shadow|\.ssh|id_rsa|\.env\b|\.aws"
        r"|printenv|\benv\b\s*\||cat\s+~)",
    )
for _forms, _pat in (
    ("ssh", r"~/\.ssh\b"),
    ("passwd", r"/etc/passwd\b"),
    ("shadow", r"/etc/shadow\b"),
    ("rsa", r"id_rsa\b"),
    ("aws", r"\.aws/credentials\b"),
    ("env", r"\.env\b(?<![\w.]\.env)"),
):
    _add("exfiltration_request", 0.35, _forms, _pat, chars="/" if "/" in _pat else "")
_add(
    "exfiltration_request",
    0.55,
    ("ask", "user"),
    r"ask\s+(?:the\s+)?user\s+(?:for|to\s+(?:provide|enter|share|confirm|type|send))\s+(?:their\s+"
    r"|his\s+|her\s+|the\s+|a\s+)?(?:password|passcode|one-time\s+code|otp|2fa|verification\s+code"
    r"|credentials|pin\b|card\s+number|api\s+key|security\s+code|login)",
)
for _forms, _pat in (
    ("environ", r"os\.environ\b"),
    ("env", r"process\.env\b"),
    ("getenv", r"getenv\b"),
):
    _add(
        "exfiltration_request",
        0.5,
        (_forms, "post fetch axios urlopen request requests"),
        _pat,
        _before(
            r"(?:requests\.(?:post|get)|fetch|axios\.post|urlopen|http\.request)\s*\([^\n]{0,160}",
            200,
        ),
    )
_add(
    "exfiltration_request",
    0.55,
    ("read", "ssh id_rsa passwd env aws shadow"),
    r"read\s+(?:the\s+)?(?:file\s+)?[`'\"]?(?:~/\.ssh|/etc/passwd|/etc/shadow|\.env\b|~/\.aws"
    r"|id_rsa)",
)

# --------------------------------------------------------------------------------------------
# urgency, authority_claim, secrecy_request

_URGENT = (
    "urgent urgently urgente urgence immediately immediate immédiatement inmediatamente "
    "imediatamente immediatamente asap sofort dringend unverzüglich onmiddellijk subito"
)
_add(
    "urgency",
    0.1,
    _URGENT,
    "",
    lits=("срочно", "немедленно", "立即", "马上", "紧急", "至急", "すぐに", "直ちに"),
)
_add("urgency", 0.1, ("right", "now away"), r"right\s+(?:now|away)\b")
_add(
    "urgency",
    0.1,
    ("within", "minutes minute mins hours hour hrs seconds"),
    r"within\s+(?:the\s+next\s+)?(?:\d{1,3}|one|two|five|ten|fifteen|thirty)\s*"
    r"(?:minutes?|mins?|hours?|hrs?|seconds?)",
)
_AS_WHO = r"(?:\bas\s+(?:the|your|an?)\s+(?:system\s+)?|\bi\s+am\s+(?:your|the)\s+)"
for _forms, _pat in (
    ("administrator admin", r"admin(?:istrator)?\b"),
    ("developer developers", r"developers?\b"),
    ("ceo", r"ceo\b"),
    ("owner", r"owner\b"),
    ("operator", r"operator\b"),
    ("creator", r"creator\b"),
    ("team", r"security\s+team\b"),
    ("department", r"it\s+department\b"),
):
    _add("authority_claim", 0.2, (_forms, "as am"), _pat, _before(_AS_WHO, 30))
for _forms, _pat in (
    ("official", r"official\b"),
    ("authorized authorised", r"authori[sz]ed\b"),
    ("mandatory", r"mandatory\b"),
    ("verified", r"verified\b"),
):
    _add(
        "authority_claim",
        0.2,
        (_forms, "this"),
        _pat,
        _before(r"\bthis\s+is\s+(?:an?\s+|the\s+)?", 20),
    )
_add(
    "authority_claim",
    0.35,
    ("authorising authorizing authorise authorize", "exception override"),
    r"authori[sz](?:e|ing)\s+(?:an?\s+|this\s+)?(?:exception|override)",
)
_add("authority_claim", 0.2, ("order", "by"), r"order\s+of\b", _before(r"\bby\s+", 5))
_add(
    "authority_claim",
    0.2,
    "compliance",
    r"compliance\s+(?:requires|mandates|demands|policy\s+requires)",
)
for _vendor in ("openai", "anthropic", "deepmind"):
    _add(
        "authority_claim",
        0.2,
        _vendor,
        rf"{_vendor}\s+(?:team|staff|policy|requires|has\s+authori[sz]ed|security"
        r"|trust\s+(?:and|&)\s+safety)",
    )
_TELL = _set(
    "tell telling inform informing notify notifying alert alerting let letting ask asking "
    "bother bothering warn warning"
)
_DISCLOSE = _set("mention mentioning reveal revealing disclose disclosing")
_NEGATION = _set("not never without dont doesnt mustnt shouldnt cant wont")
_HUSH_AFTER = re.compile(
    r"\s+(?:must|should|need|will|may)\s+(?:not|never)\s+(?:\S{1,12}\s+)?(?:know|find\s+out"
    r"|be\s+told|notice|be\s+informed|learn|be\s+aware|suspect)"
)


def _hush(need_the: bool) -> Check:
    """ "do not tell the user", "without notifying anyone", "the user must not know"."""

    def check(low: str, m: re.Match[str]) -> float | None:
        s = m.start()
        toks = [t.strip(_PUNCT).replace("'", "") for t in low[max(0, s - 60) : s].split()[-7:]]
        if need_the:
            if not toks or toks[-1] != "the":
                return None
            toks.pop()
            if _HUSH_AFTER.match(low, m.end(), m.end() + 60):
                return _RULE_WEIGHT
        if toks and toks[-1] in ("this", "it", "about"):
            toks.pop()
        if len(toks) >= 3 and toks[-1] == "to" and toks[-3] in _DISCLOSE:
            verb = len(toks) - 3
        elif toks and toks[-1] in _TELL:
            verb = len(toks) - 1
        else:
            return None
        if any(t in _NEGATION for t in toks[max(0, verb - 3) : verb]):
            return _RULE_WEIGHT
        return None

    return check


for _forms, _pat in (("user", r"user\b"), ("human", r"human\b")):
    _add("secrecy_request", 0.45, (_forms, "not t never without must should"), _pat, _hush(True))
_add(
    "secrecy_request",
    0.25,
    ("anyone anybody", "not t never without"),
    r"any(?:one|body)\b",
    _hush(False),
)
_add(
    "secrecy_request",
    0.4,
    ("mention", "not t never"),
    r"mention\s+(?:this|these|the|that)\s+(?:e-?mail|message|instructions?|note|request|text|part"
    r"|step|guidance)",
    _before(r"(?:\bnot|n't|never)\s+", 12),
)
_add(
    "secrecy_request",
    0.2,
    ("keep", "secret confidential hidden quiet private between"),
    r"keep\s+(?:this|it|these\s+instructions)\s+(?:a\s+|strictly\s+)?(?:secret|confidential|hidden"
    r"|quiet|private|between\s+us)",
)
for _adverb in ("silently", "secretly", "covertly", "quietly"):
    _add(
        "secrecy_request",
        0.4,
        _adverb,
        rf"{_adverb}\s+(?:\S{{1,12}}\s+)?(?:send|forward|add|include|execute|run|call|copy|upload"
        r"|delete|change|modify|bcc|cc|e-?mail|transfer|exfiltrate)",
    )
for _lit, _pat in (
    *((_l, _l + "(?:用户|任何人)") for _l in ("不要告诉", "不要通知", "不要让", "别告诉", "别让")),
    ("ユーザーに", r"ユーザーに(?:は)?(?:言わない|伝えない|知らせない|気づかれない)"),
    ("не говори", r"не\s+говори(?:те)?\s+(?:об\s+этом\s+)?(?:пользовател|никому)"),
    ("не сообщай", r"не\s+сообщай(?:те)?\s+(?:об\s+этом\s+)?(?:пользовател|никому)"),
    ("втайне", "втайне"),
):
    _add("secrecy_request", 0.45, (), _pat, lits=(_lit,))
_add(
    "secrecy_request",
    0.4,
    "nichts niemandem rien personne nada nadie niets niemand nessuno",
    r"(?:sag|sagen\s+sie)\s+(?:dem\s+benutzer|niemandem|dem\s+nutzer)\s+(?:nichts|davon)"
    r"|(?:ne\s+(?:le\s+)?dis|ne\s+dites)\s+(?:rien\s+)?(?:à\s+l'utilisateur|à\s+personne)"
    r"|no\s+(?:se\s+lo\s+|le\s+)?(?:digas|diga|informes|menciones)\s+(?:nada\s+)?(?:al\s+usuario"
    r"|a\s+nadie)|non\s+dir(?:e|lo)\s+(?:all'utente|a\s+nessuno)|vertel\s+(?:het\s+)?(?:de\s+"
    r"gebruiker|niemand)\s+niets",
)

# --------------------------------------------------------------------------------------------
# hidden_text and encoded_payload: character-level work

_HIDDEN_CHARS = re.compile(
    "[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\U000e0000-\U000e007f]"
)
_ZERO_WIDTH = re.compile("[\u180e\u200b\u2060-\u2064\ufeff]")
_BIDI_OVERRIDE = re.compile("[\u202d\u202e]")
_TAG_RUN = re.compile("[\U000e0000-\U000e007f]+")
_INVISIBLE = re.compile(
    "[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\U000e0000-\U000e007f]+"
)
_B64_TABLE = bytes(
    97 if (chr(i).isascii() and chr(i).isalnum()) or chr(i) in "+/_-" else 32 for i in range(256)
)
_B64_RUN = b"a" * 78  # 80 characters with padding
_B64 = re.compile(rb"[A-Za-z0-9+/_-]{78,}={0,2}")
_PCT = re.compile(r"%[0-9a-f]{2}(?:%[0-9a-f]{2}){15,}")  # a literal first: `re` jumps to it
_UESC = re.compile(r"\\u[0-9a-f]{4}(?:\\u[0-9a-f]{4}){7,}")
_ENTITY = re.compile(r"&#x?[0-9a-f]{2,6};(?:&#x?[0-9a-f]{2,6};){7,}")
_HIDE_STYLE = re.compile(
    r"style\s*=\s*[\"'][^\"'>]{0,300}?(?:display\s*:\s*none|visibility\s*:\s*hidden"
    r"|font-size\s*:\s*(?:0(?:\.\d+)?|1(?:\.\d+)?)(?:px|pt)?\s*[;\"'!]|font-size\s*:\s*0(?:\.\d+)?"
    r"(?:em|rem|%)|opacity\s*:\s*0(?:\.0\d*)?\s*[;\"'!]|color\s*:\s*(?:#f[a-f]f[a-f]f[a-f]\b|#fff\b"
    r"|#f[a-f]f[a-f]f[a-f][0-9a-f]{0,2}\b|white\b|rgba?\(\s*25[0-5]\s*,\s*25[0-5]\s*,\s*25[0-5]"
    r"|transparent)"
    r"|(?:height|width|max-height)\s*:\s*0(?:px)?\s*[;\"'!]|(?:left|top|text-indent)\s*:\s*-\d{3,})"
    r"[^>]{0,300}>([^<]{1,1000})"
)
_MD_IMAGE = re.compile(r"\[[^\]\n]{0,200}\]\(\s{0,3}<?https?://[^\s)]{1,400}")
_IMG_TAG = re.compile(r"<img\s[^>]{0,300}?src\s*=\s*[\"']?https?://[^\s\"'>]{1,400}")
_PLACEHOLDER = re.compile(
    r"[?&][a-z0-9_]{1,30}=[^&\s)]{0,200}?(?:[{\[<$]|%7b|%5b|%3c|\.\.\.|\bdata\b|secret|passw|token"
    r"|summary|conversation|history|chat|user_?(?:data|info|input)|email|base64|key|_of_)"
)
_STRONG_CUES = (
    "assistant",
    " ai ",
    " ai,",
    " ai:",
    "llm",
    "language model",
    "chatbot",
    "instructions",
    "the user",
    "system prompt",
)
_WEAK_CUES = (
    "you must",
    "you should",
    "do not",
    "don't",
    "send",
    "forward",
    "summar",
    "recommend",
    "respond",
    "reply",
    "say ",
    "execute",
    "call ",
    "important",
    "password",
    "http",
    "agent",
    "model",
    "prompt",
    "ignore",
    "disregard",
)
_FAMILIES_THAT_MAKE_PAYLOADS = frozenset(
    {
        "override_instructions",
        "exfiltration_request",
        "addressed_to_assistant",
        "tool_request",
        "secrecy_request",
        "role_marker",
        "contact_third_party",
    }
)


def _instructive(body: str) -> bool:
    """Hidden text worth flagging: it speaks to a model or gives orders (lowercased input)."""
    padded = f" {body} "
    if any(c in padded for c in _STRONG_CUES):
        return True
    return sum(1 for c in _WEAK_CUES if c in padded) >= 2


def _clip(text: str, limit: int = _EVIDENCE) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _excerpt(low: str, s: int, e: int) -> str:
    """The match, with some context when the match alone (a single noun) says little."""
    if e - s >= 30:
        return low[s : min(e, s + _EVIDENCE)]
    pad = (40 - (e - s)) // 2
    return low[max(0, s - pad) : e + pad]


class _Hits:
    """What one text produced, per family: strongest weight, match count, evidence."""

    def __init__(self) -> None:
        self.found: dict[str, tuple[float, int, str]] = {}

    def add(self, family: str, weight: float, evidence: str, count: int = 1) -> None:
        old = self.found.get(family)
        if old is None:
            self.found[family] = (weight, min(count, _MAX_COUNT), _clip(evidence))
            return
        w, n, ev = old
        if weight > w:
            w, ev = weight, _clip(evidence)
        self.found[family] = (w, min(n + count, _MAX_COUNT), ev)


class RuleDetector:
    """Scores text with fixed rules: fast, offline, explainable (see the module docstring)."""

    name = "rules"

    def __init__(
        self,
        *,
        extra_patterns: Mapping[str, tuple[str, float]] | None = None,
        max_chars: int = 200_000,
    ) -> None:
        if max_chars < 1_000:
            raise ValueError("max_chars must be at least 1000")
        self.max_chars = max_chars
        extra: list[_Rule] = []
        for name, (pattern, weight) in (extra_patterns or {}).items():
            if not 0.0 <= weight <= 1.0:
                raise ValueError(f"weight for {name!r} must be within [0, 1]")
            re.compile(pattern)  # fail now, not on the first text
            extra.append(_Rule(name, weight, (), (), "", f"(?i:{pattern})"))
        self._rules: tuple[_Rule, ...] = (*_RULES, *extra)
        # Index the rules by the words of their first group, so that a text only visits the
        # rules it could trigger (a few dozen set lookups instead of a loop over every rule).
        self._always: tuple[int, ...] = tuple(i for i, r in enumerate(self._rules) if not r.words)
        by_word: dict[bytes, list[int]] = {}
        for i, rule in enumerate(self._rules):
            for word in rule.words[0] if rule.words else ():
                by_word.setdefault(word, []).append(i)
        self._by_word = {w: tuple(ids) for w, ids in by_word.items()}
        self._gate_words = frozenset(by_word)

    def assess(self, text: str) -> Assessment:
        if not isinstance(text, str):
            text = str(text)
        truncated = len(text) > self.max_chars
        if truncated:
            # Head and tail: padding a payload past the limit must not hide it.
            head = self.max_chars * 3 // 4
            text = text[:head] + "\n" + text[-(self.max_chars - head) :]
        hits = _Hits()
        self._assess_into(text, hits, depth=0)
        suffix = " [truncated]" if truncated else ""
        signals = _ordered(
            Signal(name, w, n, _clip(ev, _EVIDENCE - len(suffix)) + suffix)
            for name, (w, n, ev) in hits.found.items()
        )
        return Assessment(_score(s.weight for s in signals), signals, self.name)

    def _assess_into(self, text: str, hits: _Hits, depth: int) -> None:
        if not text.isascii() and _may_hide(text):
            text = _unhide(text, hits)
        # lower(), not casefold(): 2-3 times faster on mixed scripts, and the patterns are
        # written for it (German "ss", not "ß").
        low = text.lower()
        if not low.isascii():
            low = low.replace("\u2019", "'")  # a typographic apostrophe is an apostrophe
        raw = low.encode("utf-8", "surrogatepass")
        words = set(raw.translate(_SPLIT_TABLE).split())
        self._scan(low, words, hits)
        self._encoded(text, low, hits, depth)

    # -- the text as written --------------------------------------------------------------

    def _scan(self, low: str, words: set[bytes], hits: _Hits) -> None:
        dest = "@" in low or not _LINK_WORDS.isdisjoint(words)
        foreign = not low.isascii() and _foreign(low)
        candidates = set(self._always)
        for word in self._gate_words.intersection(words):
            candidates.update(self._by_word[word])
        for i in sorted(candidates):
            rule = self._rules[i]
            if not rule.applies(low, words, dest, foreign):
                continue
            if not rule.pattern:  # a list of words: count them
                _count_words(low, words, rule, hits)
                continue
            count = 0
            for tries, m in enumerate(_compiled(rule.pattern).finditer(low)):
                if tries >= _MAX_TRIES:
                    break
                w = rule.weight
                if rule.check is not None:
                    said = rule.check(low, m)
                    if said is None:
                        continue
                    if said >= 0:
                        w = said
                family = rule.family
                if rule.upgrade and w >= _EXFIL:
                    family = "exfiltration_request"
                hits.add(family, w, _excerpt(low, m.start(), m.end()))
                count += 1
                if count >= _MAX_COUNT:
                    break
        if "<" in low:  # one-character tests are nearly free; longer ones cost a scan
            if "<!--" in low:
                _comments(low, hits)
            if b"style" in words:
                for n, m in enumerate(_HIDE_STYLE.finditer(low)):
                    if _instructive(m.group(1)):
                        hits.add("hidden_text", 0.4, f"hidden element: {m.group(1).strip()}")
                    if n >= 200:
                        break
            if b"hidden" in words:
                _hidden_elements(low, hits)
        if ("]" in low and "](" in low) or ("<" in low and b"img" in words):
            # A link whose query is a slot for private data; images load by themselves.
            for rx in (_MD_IMAGE, _IMG_TAG):
                for n, m in enumerate(rx.finditer(low)):
                    if _PLACEHOLDER.search(m.group(0)):
                        image = (m.start() > 0 and low[m.start() - 1] == "!") or rx is _IMG_TAG
                        hits.add("exfiltration_request", 0.6 if image else 0.5, m.group(0))
                    if n >= 200:
                        break

    # -- encodings ------------------------------------------------------------------------

    def _encoded(self, text: str, low: str, hits: _Hits, depth: int) -> None:
        if depth > 1:
            return
        raw = text.encode("utf-8", "ignore")
        mapped = raw.translate(_B64_TABLE)
        pos, runs = 0, 0
        while runs < 20:
            pos = mapped.find(_B64_RUN, pos)
            if pos < 0:
                break
            m = _B64.match(raw, pos)
            if m is None:  # cannot happen (same alphabet), but never loop forever
                break
            pos, runs = m.end(), runs + 1
            if len(m.group(0)) >= 80:
                self._decoded(_b64decode(m.group(0)), "base64", hits, depth)
        if "%" in low:
            for n, pm in enumerate(_PCT.finditer(low)):
                self._decoded(unquote(pm.group(0)[:12_000]), "percent-encoded", hits, depth)
                if n >= 20:
                    break
            if "%20" in low:  # words joined by %20: a sentence dressed as a link
                for token in _escaped_tokens(low):
                    self._decoded(unquote(token), "percent-encoded", hits, depth)
        if "\\" in low and "\\u" in low:
            for n, um in enumerate(_UESC.finditer(low)):
                chunk = um.group(0)[:12_000]
                plain = "".join(chr(int(chunk[i + 2 : i + 6], 16)) for i in range(0, len(chunk), 6))
                self._decoded(plain, "unicode escapes", hits, depth)
                if n >= 20:
                    break
        if "&" in low and "&#" in low:
            for n, em in enumerate(_ENTITY.finditer(low)):
                self._decoded(html.unescape(em.group(0)[:12_000]), "html entities", hits, depth)
                if n >= 20:
                    break

    def _decoded(self, plain: str | None, how: str, hits: _Hits, depth: int) -> None:
        """Score what an encoding hid: an instruction inside one is a strong signal."""
        if not plain:
            return
        printable = sum(1 for c in plain if c.isprintable() or c in "\n\r\t")
        if printable < 0.85 * len(plain):
            return
        inner = _Hits()
        self._assess_into(plain, inner, depth + 1)
        strong = [
            ev
            for name, (w, _n, ev) in inner.found.items()
            if name in _FAMILIES_THAT_MAKE_PAYLOADS and w >= 0.3
        ]
        if strong:
            hits.add("encoded_payload", 0.65, f"{how}: {strong[0]}")
            for fam, (fw, fn, fev) in inner.found.items():
                hits.add(fam, fw, f"{how}: {fev}", fn)
        elif how in ("base64", "unicode escapes") or plain.isascii():
            # Plain text that was encoded for no visible reason: odd, weakly.
            hits.add("encoded_payload", 0.1, f"{how}: {plain}")


_FOREIGN_LEADS = tuple(bytes([b]) for b in (0xD0, 0xD1, 0xE3, 0xE4, 0xE5, 0xE6, 0xE7, 0xE8, 0xE9))


def _foreign(low: str) -> bool:
    """Cyrillic or CJK present? One-byte searches in the UTF-8 form are nearly free."""
    raw = low.encode("utf-8", "surrogatepass")
    return any(lead in raw for lead in _FOREIGN_LEADS)


def _count_words(low: str, words: set[bytes], rule: _Rule, hits: _Hits) -> None:
    """Rules that are only a list of words (urgency): count the ones present."""
    for group in rule.words:
        for word in group & words:
            w = word.decode()
            i = low.find(w)
            if i >= 0:
                hits.add(rule.family, rule.weight, _excerpt(low, i, i + len(w)), low.count(w))
    for lit in rule.lits:
        i = low.find(lit)
        if i >= 0:
            hits.add(rule.family, rule.weight, _excerpt(low, i, i + len(lit)), low.count(lit))


_BMP_HIDDEN = "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
_BMP_HIDDEN += "\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\ufeff"
# CPython stores a string with 1, 2 or 4 bytes per character; the size tells which, in O(1).
# One byte: only the soft hyphen can hide; two: no tag characters. Elsewhere: check it all.
_HEADER = sys.getsizeof("\u00e9") - 2


def _may_hide(text: str) -> bool:
    """Whether `text` holds an invisible character (cheap tests first)."""
    width = (sys.getsizeof(text) - _HEADER) // (len(text) + 1)
    if width == 1:
        return "\u00ad" in text
    if width == 2:
        return any(c in text for c in _BMP_HIDDEN)
    return _HIDDEN_CHARS.search(text) is not None


def _unhide(text: str, hits: _Hits) -> str:
    """Flag invisible characters, then return the text without them (tag text decoded)."""
    decoded: list[str] = []
    for m in _TAG_RUN.finditer(text):
        s = m.start()
        if s > 0 and text[s - 1] == "\U0001f3f4":  # a subdivision flag such as England's
            continue
        plain = "".join(
            chr(ord(c) - 0xE0000) for c in m.group(0)[:4000] if 0xE0020 <= ord(c) < 0xE007F
        )
        if len(plain) >= 3:
            decoded.append(plain)
        if len(decoded) >= 50:
            break
    if decoded:
        hits.add("hidden_text", 0.5, "tag characters: " + " ".join(decoded), len(decoded))
    zero = len(_ZERO_WIDTH.findall(text, 1))  # a byte-order mark first is ordinary
    if zero:
        hits.add("hidden_text", 0.3 if zero >= 8 else 0.15, f"{zero} zero-width characters", zero)
    bidi = len(_BIDI_OVERRIDE.findall(text))
    if bidi:
        hits.add("hidden_text", 0.3, f"{bidi} bidirectional override characters", bidi)
        # Text after a right-to-left override shows reversed: scan it the way it reads.
        pos = 0
        for _ in range(20):
            i = text.find("\u202e", pos)
            if i < 0:
                break
            end = min(x for x in (text.find("\u202c", i), text.find("\n", i), i + 2000) if x > i)
            decoded.append(text[i + 1 : end][::-1])
            pos = end
    clean = _INVISIBLE.sub("", text)
    return clean + "\n" + "\n".join(decoded) if decoded else clean


def _escaped_tokens(low: str) -> list[str]:
    """Whitespace-free stretches around each "%20" that hold several escapes."""
    out: list[str] = []
    pos = 0
    for _ in range(200):
        i = low.find("%20", pos)
        if i < 0:
            break
        lo = max(0, i - 2000)
        a = max(max(low.rfind(c, lo, i) for c in " \n\t\"'<>(") + 1, lo)
        b = min(
            (x for x in (low.find(c, i, i + 2000) for c in " \n\t\"'<>)") if x >= 0),
            default=i + 2000,
        )
        token = low[a:b]
        if token.count("%") >= 4 and token not in out:
            out.append(token)
            if len(out) >= 20:
                break
        pos = b
    return out


def _b64decode(run: bytes) -> str | None:
    body = run.rstrip(b"=")[:16_384].replace(b"-", b"+").replace(b"_", b"/")
    if len(body) % 4 == 1:
        body = body[:-1]
    try:
        data = base64.b64decode(body + b"=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _hidden_elements(low: str, hits: _Hits) -> None:
    """Elements marked `hidden` (attribute or class) whose text gives orders."""
    pos, n = 0, 0
    while n < 1000:
        i = low.find("hidden", pos)
        if i < 0:
            return
        pos, n = i + 6, n + 1
        lt, gt = low.rfind("<", max(0, i - 300), i), low.find(">", i, i + 300)
        if lt < 0 or gt < 0 or ">" in low[lt:i]:
            continue  # not inside a tag
        before = low[max(lt, i - 9) : i]
        if not (before.endswith(("visually-", "sr-")) or before[-1:] in " \t\n\"'"):
            continue  # aria-hidden (still visible), hidden-xs and the like
        if low[lt:i].rstrip().endswith(":"):
            continue  # overflow: hidden
        end = low.find("<", gt + 1, gt + 1001)
        body = low[gt + 1 : end if end >= 0 else gt + 1001]
        if _instructive(body):
            hits.add("hidden_text", 0.4, f"hidden element: {body.strip()}")


def _comments(low: str, hits: _Hits) -> None:
    """HTML comments that give orders: invisible on the page, read by the model."""
    pos, n = 0, 0
    while n < 1000:
        i = low.find("<!--", pos)
        if i < 0:
            return
        end = low.find("-->", i + 4)
        body = low[i + 4 : min(end if end >= 0 else len(low), i + 2004)]
        n += 1
        if _instructive(body):
            hits.add("hidden_text", 0.35, f"html comment: {body.strip()}")
        if end < 0:
            return
        pos = end + 3
