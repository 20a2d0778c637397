"""`medfoundry model build|generate` (heavy imports inside commands)."""

from __future__ import annotations

from pathlib import Path

import typer

model_app = typer.Typer(help="Build a base model or generate with one.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")


def _fail(message: str) -> typer.Exit:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(2)


@model_app.command("build")
def build_command(
    out: Path = typer.Option(..., "--out", help="Folder to save the model to."),
    data: Path = typer.Option(None, "--data", help="Dataset folder whose texts train the tiny tokenizer."),
    profile: str = typer.Option("tiny", "--profile", "-p", help="Profile name or YAML (its model section)."),
    set_: list[str] = typer.Option(None, "--set", help="Override a profile field, e.g. --set model.hidden_size=128."),
) -> None:
    """The profile's base model: tiny (tokenizer trained on --data, random init) or a loaded checkpoint."""
    from rich.console import Console

    from medfoundry.cli import load_profile_or_exit
    from medfoundry.data.records import read_records
    from medfoundry.models.loading import ModelLoadError, build_base_model

    resolved = load_profile_or_exit(profile, set_)
    if resolved.model.source == "tiny" and data is None:
        raise _fail("model source 'tiny' trains its tokenizer on a corpus: pass --data DATASET_DIR")
    texts = (t for r in read_records(data) for t in (r.text, r.question or "") if t) if data else []
    try:
        with Console().status("building the base model..."):
            loaded = build_base_model(resolved.model, texts, out)
    except (ValueError, ModelLoadError) as err:
        raise _fail(str(err)) from None
    params = sum(p.numel() for p in loaded.model.parameters())
    Console().print(f"{loaded.family} ({'vision' if loaded.is_vision else 'text'}), {params:,} parameters -> {out}")


@model_app.command("generate")
def generate_command(
    model: str = typer.Argument(..., help="Model: folder, s3://, hf id, smollm2."),
    prompt: list[str] = typer.Option(..., "--prompt", help="User message; repeat for a batch."),
    image: Path = typer.Option(None, "--image", help="Image attached to every prompt (vision models)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", min=1),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
) -> None:
    """Greedy chat completions, one per --prompt."""
    from PIL import Image
    from rich.console import Console

    from medfoundry.models.generation import ChatPrompt, generate
    from medfoundry.models.loading import ModelLoadError, load_model

    try:
        loaded = load_model(model)
    except ModelLoadError as err:
        raise _fail(str(err)) from None
    picture = Image.open(image).convert("RGB") if image else None
    outputs = generate(loaded, [ChatPrompt(text=p, image=picture) for p in prompt], max_new_tokens, batch_size)
    console = Console()
    for text, out in zip(prompt, outputs, strict=True):
        console.print(f"[bold]{text}[/]\n{out}\n", highlight=False)
