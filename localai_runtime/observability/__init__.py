"""Observability: Prometheus metrics under vLLM's names, plus this server's own ``localai_`` series.

``metrics`` holds one registry per server (no module globals) and the per-request observer
that the serving code feeds. Serving code, the HTTP layer and the app factory may import this
package; it imports nothing from ``localai_runtime`` but :mod:`localai_runtime.errors`.
"""
