"""The entity types agentguard's DLP reports: one list for the policy, the recognizers, the
evaluation set and the benchmark (importing this loads nothing else)."""

from __future__ import annotations

__all__ = ["ALL_TYPES", "NER_TYPES", "PII_TYPES", "SECRET_TYPES"]

PII_TYPES = ("EMAIL_ADDRESS", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "PHONE_NUMBER", "IP_ADDRESS")
SECRET_TYPES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "GCP_API_KEY",
    "GCP_SERVICE_ACCOUNT_KEY",
    "AZURE_STORAGE_KEY",
    "AZURE_CLIENT_SECRET",
    "GITHUB_TOKEN",
    "GITLAB_TOKEN",
    "SLACK_TOKEN",
    "SLACK_WEBHOOK",
    "STRIPE_KEY",
    "OPENAI_API_KEY",
    "JWT",
    "PRIVATE_KEY",
    "URL_PASSWORD",
    "GENERIC_SECRET",
)
# Name-like types, found only with the `ner` profile (a spaCy model the user installs).
NER_TYPES = ("PERSON", "LOCATION", "ORGANIZATION", "NRP")
ALL_TYPES = frozenset(PII_TYPES + SECRET_TYPES + NER_TYPES)
