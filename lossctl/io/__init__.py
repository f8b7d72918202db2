"""Readers (sources), column resolution and per-sample writers (sinks)."""
