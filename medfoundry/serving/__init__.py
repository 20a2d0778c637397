"""Serving: a KServe model server for the medical VLM with OpenAI-compatible routes, dynamic batching, hardening,
and a query client.

Import the submodules directly (`medfoundry.serving.server`, `.client`, ...); this package stays light.
"""
