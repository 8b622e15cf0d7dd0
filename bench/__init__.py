"""Benchmarks (``make bench``): throughput, latency percentiles, peak RSS."""
