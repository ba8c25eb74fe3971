"""DLP's first call in a process: loading the detector is not the payload's time.

The leak it stops is the opposite one: a fail-closed refusal of an innocent first call (the
time budget spent on loading Presidio) teaches operators to raise budgets or turn DLP off.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from agentguard.dlp import scan as scan_module
from agentguard.dlp.engine import detector as real_detector
from agentguard.dlp.errors import ScanTimeout


def test_a_slow_detector_load_does_not_eat_the_first_payloads_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def slow_load(profile: Any) -> Any:
        time.sleep(0.3)
        return real_detector(profile)

    monkeypatch.setattr(scan_module, "detector", slow_load)
    scanner = scan_module.Scanner(time_budget=0.25)
    findings = scanner.scan({"to": "bob@partner.example", "body": "see you at nine"})
    assert [(f.entity, f.path) for f in findings] == [("EMAIL_ADDRESS", "$.to")]


def test_the_budget_still_bounds_the_scan_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    scanner = scan_module.Scanner(time_budget=1e-6)
    scanner.detector  # noqa: B018 - loaded, so only the scan is timed
    with pytest.raises(ScanTimeout):
        scanner.scan({"body": "word " * 20_000})


def test_short_fields_and_digit_free_text_still_find_what_they_can_hold() -> None:
    """The fast paths (short texts skip secret rules, texts under nine digits skip Presidio)
    must not hide anything such a text can carry."""
    scanner = scan_module.Scanner()
    found = scanner.scan(
        {
            "ip": "1.2.3.4",
            "e": "a@b.io",
            "ssn": "ssn 536-22-8726",
            "card": "4111111111111111",
            "iban": "NL91ABNA0417164300",
            "k": "ghp_Zx9T2mQ4rL7vB1nK8pZ3cW6yH0dF5gS2aE4u",
        }
    )
    assert sorted((f.path, f.entity) for f in found) == [
        ("$.card", "CREDIT_CARD"),
        ("$.e", "EMAIL_ADDRESS"),
        ("$.iban", "IBAN_CODE"),
        ("$.ip", "IP_ADDRESS"),
        ("$.k", "GITHUB_TOKEN"),
        ("$.ssn", "US_SSN"),
    ]
