"""Doors: adapters between LangChain / LangGraph and the guard core. No policy logic here."""
