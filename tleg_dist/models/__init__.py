"""Pure model code: no I/O, no distribution."""
