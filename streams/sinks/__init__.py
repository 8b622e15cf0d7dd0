"""Sinks: buffer with ``add``, write once per batch with ``flush``; idempotent writes."""
