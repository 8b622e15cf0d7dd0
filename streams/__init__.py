"""Engines and I/O around the pure core: the worker and its agents, sinks, replay, command side, relay."""
