"""The benchmark of issue 13: gemini-server beside LiteLLM proxy on the same fake Gemini upstream.

Run it with `scripts/bench` (full, ~15 min) or `scripts/bench --quick` (the CI smoke). It starts
its own PostgreSQL cluster, Redis, fake upstream, server(s) and LiteLLM on loopback, and talks
to them only as a client does.
"""
