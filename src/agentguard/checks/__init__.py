"""One module per check. Each is pure: a call and a principal in, reasons out."""
