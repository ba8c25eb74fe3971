"""Human approval building blocks: consent ledger, step-up verifiers, signed approval assertions."""
