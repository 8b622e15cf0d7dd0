"""Deterministic (seeded) traffic for one city, and event builders with fixed instants."""
