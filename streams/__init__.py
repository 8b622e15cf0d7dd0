"""Engines and I/O around the pure core: Faust agents, sinks, command side, relay."""
