"""Handlers: one module per OpenAI tag, async functions named after their operationId.

Handlers stay thin: they ask the runtime's registry and adapters, and raise
``localai_runtime.errors`` exceptions for anything that goes wrong.
"""
