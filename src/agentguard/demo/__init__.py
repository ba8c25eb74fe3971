"""`agentguard demo`: an offline agent, a scripted model, and the guard in front of a small CRM."""
