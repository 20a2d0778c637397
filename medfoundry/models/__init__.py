"""Models: tokenizer training, tiny VLMs from config, loading (path, s3://, hf id, GGUF), batched generation.

Import the submodules directly (`medfoundry.models.loading`, `.generation`, `.tokenizer`); this package stays light.
"""
