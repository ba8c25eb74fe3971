"""Building blocks for human approval of risky tool calls.

- `ledger`: the append-only consent ledger (memory, SQLite, PostgreSQL) and `agentguard consent`.
- `stepup`: fresh verification of the acting user (TOTP, an identity provider's signed token).
- `assertions`: decisions signed by a key the guard trusts, bound to one call and used once.

The approval flow that puts these behind LangGraph interrupts builds on them.
"""
