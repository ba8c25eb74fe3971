"""Untrusted content: what tools and retrievers return is data, never instructions.

- `sanitize`: remove invisible characters, neutralize fake role markers and tool-call syntax,
  defang links and images to hosts not allowed.
- `spotlight`: mark data for the model (delimiting with a per-run boundary, datamarking, base64).
- `signals`: a fast rule-based injection scorer, and a protocol for model-based detectors.
- `taint`: values that arrived in untrusted content, found again in later tool arguments.
"""
