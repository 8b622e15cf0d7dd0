"""The city-scale load test (``make load``, ``python -m bench.load``): docs/load.md."""
