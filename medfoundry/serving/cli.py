"""`medfoundry serve` and `medfoundry query` (heavy imports stay inside the command bodies)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
    app.command("query")(query_command)


def _fail(message: str, code: int = 2) -> typer.Exit:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def serve_command(
    model: str = typer.Option(
        ..., "--model", "-m", help="models:/NAME@alias, models:/NAME/VERSION, a model folder, s3://..., or smollm2."
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (0.0.0.0 only inside a container)."),
    port: int = typer.Option(8080, "--port", min=1, max=65535),
    api_key: str = typer.Option(
        None, "--api-key", envvar="MEDFOUNDRY_API_KEY", help="Require this key (Bearer or X-API-Key); prefer the env var."
    ),
    model_name: str = typer.Option(None, "--model-name", help="Name on the endpoint (default: registered/folder name)."),
    profile: str = typer.Option(None, "--profile", "-p", help="Profile for serving limits, model dtype and tracking."),
    backend: str = typer.Option("auto", "--backend", help="auto (vLLM on a GPU when installed) | transformers | vllm."),
    max_batch_size: int = typer.Option(None, "--max-batch-size", min=1),
    max_queue: int = typer.Option(None, "--max-queue", min=1),
    max_new_tokens: int = typer.Option(None, "--max-new-tokens", min=1),
    threads: int = typer.Option(None, "--threads", min=1, help="torch threads for the in-process engine."),
    log_prompts: bool = typer.Option(False, "--log-prompts", help="Log request prompts (off: prompts are never logged)."),
) -> None:
    """Serve a model: KServe v1/v2 protocol, OpenAI-compatible /openai/v1/chat/completions, /metrics."""
    import logging

    from medfoundry.config import ProfileError, load_profile
    from medfoundry.config.release import ServingConfig

    if backend not in ("auto", "transformers", "vllm"):
        raise _fail(f"--backend {backend!r}: use auto, transformers or vllm")
    _reexec_in_vllm_env(backend)
    try:
        prof = load_profile(profile) if profile else None
    except ProfileError as err:
        raise _fail(str(err)) from None
    serving = (prof.serving if prof else ServingConfig()).model_copy()
    for field, value in {
        "max_batch_size": max_batch_size, "max_queue": max_queue, "max_new_tokens": max_new_tokens, "threads": threads
    }.items():
        if value is not None:
            setattr(serving, field, value)
    serving.log_prompts = serving.log_prompts or log_prompts
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if model.startswith("models:/"):
        from medfoundry import tracking

        tracking.configure(prof or load_profile("tiny"))
    from medfoundry.serving.model import MedVLMModel, served_name
    from medfoundry.serving.server import MedFoundryModelServer, ServerSettings

    name = model_name or served_name(model)
    medvlm = MedVLMModel(name, model, serving, model_cfg=prof.model if prof else None, backend=backend)
    settings = ServerSettings(host=host, port=port, api_key=api_key, serving=serving)
    if not api_key and host not in ("127.0.0.1", "localhost", "::1"):
        logging.getLogger("medfoundry.serving").warning("serving on %s without an API key", host)
    MedFoundryModelServer(settings).serve(medvlm)


def _reexec_in_vllm_env(backend: str) -> None:
    """The GPU image keeps vLLM in its own environment (its transformers pin differs from training's) and names its
    interpreter in MEDFOUNDRY_VLLM_PYTHON: on a CUDA machine, `serve` re-runs itself there so vLLM serves."""
    import importlib.util
    import os
    import sys

    python = os.environ.get("MEDFOUNDRY_VLLM_PYTHON")
    if backend == "transformers" or not python or importlib.util.find_spec("vllm") is not None:
        return
    if os.environ.get("MEDFOUNDRY_VLLM_REEXEC") or not os.access(python, os.X_OK):
        return
    import torch

    if not torch.cuda.is_available():
        return
    os.environ["MEDFOUNDRY_VLLM_REEXEC"] = "1"
    os.execv(python, [python, "-m", "medfoundry.cli", *sys.argv[1:]])


def query_command(
    question: str = typer.Argument(..., help="The question to ask."),
    image: Path = typer.Option(None, "--image", "-i", exists=True, dir_okay=False, help="DICOM, PNG or JPEG file."),
    endpoint: str = typer.Option("http://127.0.0.1:8080", "--endpoint", "-e", help="Server root URL."),
    api_key: str = typer.Option(None, "--api-key", envvar="MEDFOUNDRY_API_KEY"),
    model_name: str = typer.Option(None, "--model-name", help="Default: the first model the endpoint serves."),
    max_tokens: int = typer.Option(None, "--max-tokens", min=1),
    stream: bool = typer.Option(True, "--stream/--no-stream", help="Print tokens as they arrive."),
) -> None:
    """Ask a served model a question, optionally about an image."""
    import openai

    from medfoundry.serving.client import MedFoundryClient

    client = MedFoundryClient(endpoint, api_key=api_key, model=model_name)
    try:
        if stream:
            for piece in client.ask_stream(question, image, max_tokens):
                typer.echo(piece, nl=False)
            typer.echo()
        else:
            typer.echo(client.ask(question, image, max_tokens))
    except openai.APIStatusError as err:
        message = err.body.get("message") if isinstance(err.body, dict) else None
        raise _fail(f"{err.status_code}: {message or err.message}", code=1) from None
    except openai.APIConnectionError as err:
        raise _fail(f"cannot reach {endpoint}: {err}", code=1) from None
    except ValueError as err:
        raise _fail(str(err)) from None
