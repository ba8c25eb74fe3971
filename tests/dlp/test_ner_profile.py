"""The `ner` profile with a real spaCy pipeline, built here: no model is downloaded, ever.

No official English model can be fetched offline, so the test builds a small pipeline whose
`ner` component is spaCy's entity ruler (deterministic), saves it to a folder and points
`AGENTGUARD_SPACY_MODEL` at it: the loading, trimming and Presidio wiring are the real ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentguard.dlp import engine
from agentguard.dlp.scan import Scanner
from agentguard.errors import ConfigurationError


@pytest.fixture
def ner_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    import spacy
    import spacy.cli

    nlp = spacy.blank("en")
    ruler: Any = nlp.add_pipe("entity_ruler", name="ner")
    ruler.add_patterns(
        [
            {"label": "PERSON", "pattern": "Carol Jones"},
            {"label": "GPE", "pattern": "Lisbon"},
        ]
    )
    nlp.add_pipe("sentencizer")  # not needed for NER: must be trimmed away
    folder = tmp_path / "model"
    nlp.to_disk(folder)

    def no_download(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a spaCy model download was attempted")

    monkeypatch.setattr(spacy.cli, "download", no_download)
    monkeypatch.setenv("AGENTGUARD_SPACY_MODEL", str(folder))
    engine.detector.cache_clear()
    try:
        yield folder
    finally:
        engine.detector.cache_clear()


def test_names_and_places_come_from_the_installed_model(ner_model: Path) -> None:
    scanner = Scanner("ner")
    found = scanner.scan({"body": "Carol Jones flies to Lisbon; mail carol@customer.example"})
    assert sorted(f.entity for f in found) == ["EMAIL_ADDRESS", "LOCATION", "PERSON"]
    nlp = scanner.detector._ner.nlp_engine.nlp["en"]  # type: ignore[union-attr]
    assert nlp.pipe_names == ["ner"]


def test_a_model_that_is_not_there_is_a_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTGUARD_SPACY_MODEL", str(tmp_path / "missing"))
    engine.detector.cache_clear()
    try:
        with pytest.raises(ConfigurationError, match="nothing is downloaded"):
            Scanner("ner").scan({"body": "x"})
    finally:
        engine.detector.cache_clear()
