"""Pure data and protocols: no I/O happens in this package."""
