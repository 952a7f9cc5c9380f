"""legacy-stream-proxy: keeps Anthropic API 2023-01-01 clients working on a 2023-06-01 upstream."""

__version__ = "0.1.0"
