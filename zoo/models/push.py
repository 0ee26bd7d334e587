"""Publishing a run to the Hugging Face Hub (``zoo push``), through huggingface_hub.

What goes up is what someone else needs to use the model: the weights (``model.safetensors``,
``model_ema.safetensors``), timm's ``config.json``, the model card ``README.md`` (rendered for
the repository, so that its examples load ``hf-hub:ORG/NAME``), the plots, ``metrics.jsonl``
and ``eval.json``. The training state (``checkpoints/``) stays local unless asked for, and so do
``config.toml`` and ``summary.json``, which hold local paths. The files go up in one commit
(``HfApi.create_commit``); the token is huggingface_hub's own (``hf auth login``, ``HF_TOKEN``).

A plan is made and checked without any network (``--dry-run`` stops there): the run must hold
zoo's weights and ``config.json``, and the card must parse as the Hub parses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zoo.errors import ZooError, shown
from zoo.models import card
from zoo.models.hub import HubRef, explain, parse_ref

# The run's files that are published, as globs relative to the run directory.
PUBLISHED = (
    "model.safetensors",
    "model_ema.safetensors",
    "config.json",
    "*.png",
    "metrics.jsonl",
    "eval.json",
)
STATE = ("checkpoints/*.safetensors",)


@dataclass
class Plan:
    """What ``zoo push`` uploads: the run's files (relative paths) and the card's text."""

    run: Path
    ref: HubRef
    files: list[Path]
    card: str

    @property
    def uploads(self) -> list[tuple[str, int]]:
        """Every file of the commit with its size in bytes, the card included."""
        sizes = [(str(f), (self.run / f).stat().st_size) for f in self.files]
        return sorted([*sizes, (card.FILE, len(self.card.encode()))])


def plan(
    run: Path,
    repo_id: str,
    *,
    revision: str | None = None,
    with_state: bool = False,
    license_id: str | None = None,
) -> Plan:
    """Check the run and the card, offline, and list what would be uploaded."""
    from zoo.models.weights import read_header

    run = Path(run)
    ref = parse_ref(repo_id)
    if "/" not in ref.repo_id:
        raise ZooError(
            f"{shown(repo_id)}: give the repository as ORG/NAME (your user name or an org)"
        )
    if ref.revision:
        raise ZooError(f"{shown(repo_id)}: give the branch with --revision, not after '@'")
    ref = HubRef(ref.repo_id, revision)
    weights = run / "model.safetensors"
    if not run.is_dir() or not weights.is_file():
        raise ZooError(f"{run} is not a zoo run directory (no model.safetensors)")
    if read_header(weights).info is None:
        raise ZooError(f"{weights} has no zoo metadata: zoo push publishes zoo runs")
    if not (run / "config.json").is_file():
        raise ZooError(f"{run} has no config.json: train or evaluate it with this zoo first")
    patterns = PUBLISHED + (STATE if with_state else ())
    files = sorted({p.relative_to(run) for pattern in patterns for p in run.glob(pattern)})
    readme = run / card.FILE
    zoos = not readme.is_file() or card.is_zoos(readme)
    # The user's own card goes up as it is; zoo's is rendered for the repository.
    text = card.render(run, ref.repo_id, license_id) if zoos else readme.read_text()
    card.validate(text, zoos=zoos)
    return Plan(run, ref, files, text)


def push(plan: Plan, *, private: bool = False) -> str:
    """Create the repository (and branch) if needed and upload the plan in one commit; returns
    the commit's URL. huggingface_hub's failures become one-line errors."""
    from huggingface_hub import CommitOperationAdd, HfApi, get_token
    from huggingface_hub.errors import LocalTokenNotFoundError

    ref = plan.ref
    if get_token() is None:
        raise _no_token(ref)
    operations = [CommitOperationAdd(str(f), str(plan.run / f)) for f in plan.files]
    operations.append(CommitOperationAdd(card.FILE, plan.card.encode()))
    api = HfApi()
    try:
        api.create_repo(ref.repo_id, private=private, exist_ok=True)
        if ref.revision:
            api.create_branch(ref.repo_id, branch=ref.revision, exist_ok=True)
        info = api.create_commit(
            ref.repo_id,
            operations,
            commit_message=f"Upload {plan.run.resolve().name} with zoo",
            revision=ref.revision,
        )
    except LocalTokenNotFoundError:
        raise _no_token(ref) from None
    except Exception as exc:
        message = explain(exc, ref)
        if message is None:
            raise
        raise ZooError(message) from None
    return str(info.commit_url)


def _no_token(ref: HubRef) -> ZooError:
    return ZooError(
        f"zoo push needs a Hugging Face token with write access to {ref.repo_id}: log in with "
        "`hf auth login` or set HF_TOKEN"
    )
