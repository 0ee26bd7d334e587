"""``zoo push``: publish a run to the Hugging Face Hub (``zoo.models.push``)."""

from __future__ import annotations

from pathlib import Path

import typer

from zoo.cli.common import command, stdout


def register(app: typer.Typer) -> None:
    app.command("push")(push)


@command
def push(
    run: str = typer.Argument(..., metavar="RUN", help="The run directory to publish."),
    repo: str = typer.Argument(..., metavar="ORG/NAME", help="The Hub model repository."),
    private: bool = typer.Option(False, "--private", help="Create the repository private."),
    revision: str | None = typer.Option(
        None, "--revision", metavar="BRANCH", help="Upload to this branch (created if needed)."
    ),
    with_state: bool = typer.Option(
        False, "--with-state", help="Also upload the training checkpoints (checkpoints/)."
    ),
    license_id: str | None = typer.Option(
        None,
        "--license",
        metavar="ID",
        help="The card's licence, a Hub licence id such as apache-2.0 (default: that of the "
        "pretrained weights the run started from, else other).",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List the files and check the model card; upload nothing."
    ),
) -> None:
    """Upload a run to the Hugging Face Hub: weights, config.json, the model card (README.md),
    plots and metrics, in one commit; timm and zoo.load("hf-hub:ORG/NAME") then load it. The
    token is huggingface_hub's (hf auth login, or HF_TOKEN)."""
    from zoo.errors import ZooError
    from zoo.models import push as publish
    from zoo.train.rundir import writer

    holder = writer(Path(run))
    if holder is not None:  # its weights and card are about to change
        raise ZooError(
            f"{run} is being written by another zoo process ({holder}); push it once that "
            "process has ended"
        )
    plan = publish.plan(
        Path(run), repo, revision=revision, with_state=with_state, license_id=license_id
    )
    console = stdout()
    branch = f" (branch {revision})" if revision else ""
    verb = "would upload" if dry_run else "uploading"
    console.print(f"{verb} to {plan.ref.url}{branch}:")
    for name, size in plan.uploads:
        console.print(f"  {name}  {_size(size)}")
    console.print("model card: valid")
    if dry_run:
        return
    url = publish.push(plan, private=private)
    console.print(f"pushed: {url}")


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)
