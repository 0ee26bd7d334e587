"""Weights from the Hugging Face Hub: ``hf-hub:ORG/NAME[@REVISION]``, through huggingface_hub.

Only ``model.safetensors`` and ``config.json`` are ever fetched (no pickle file is downloaded,
let alone loaded), into the standard Hugging Face cache: huggingface_hub itself honours
``HF_HOME``, ``HF_HUB_CACHE``, ``HF_ENDPOINT``, ``HF_TOKEN`` and ``HF_HUB_OFFLINE``, shows its
progress bar on a first download and answers from the cache afterwards. Its errors (unknown or
gated repository, missing revision, no network, offline without a cache entry) become one line
naming the repository and what to do.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from zoo.errors import ZooError, shown

if TYPE_CHECKING:
    from zoo.plugins.registry import Pretrained

PREFIX = "hf-hub:"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
# Pickle weights some repositories hold instead of safetensors; named in the refusal only.
PICKLES = ("pytorch_model.bin", "model.pth", "pytorch_model.pth", "open_clip_pytorch_model.bin")
_LOGIN = "log in with `hf auth login` or set HF_TOKEN"


def pretrained_source(weights: Pretrained) -> str:
    """The ``--init`` source of an architecture's pretrained tag: its Hub repository."""
    if weights.hub_id is None:
        raise ZooError(
            f"{weights.qualified}: these weights are not on the Hugging Face Hub (only at a "
            "download URL), and zoo fetches weights from the Hub only"
        )
    filename = weights.config.get("hub_filename")
    if filename and filename != WEIGHTS:
        raise ZooError(
            f"{weights.qualified}: its weights on the Hub are {filename}, in another "
            "library's layout, which zoo does not load"
        )
    return PREFIX + weights.hub_id


@dataclass(frozen=True)
class HubRef:
    """A model repository on the Hub, at a revision (branch, tag or commit; None: main)."""

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return PREFIX + self.repo_id + (f"@{self.revision}" if self.revision else "")

    @property
    def url(self) -> str:
        from huggingface_hub import constants

        return f"{constants.ENDPOINT}/{self.repo_id}"

    @property
    def download_hint(self) -> str:
        """The command that puts this repository's files in the cache."""
        revision = f" --revision {self.revision}" if self.revision else ""
        return f"`hf download {self.repo_id} {WEIGHTS} {CONFIG}{revision}`"


def is_hub_ref(text: object) -> bool:
    """Whether ``text`` names a Hub repository (``hf-hub:...``) rather than a local path."""
    return isinstance(text, str) and text.startswith(PREFIX)


def parse_ref(text: str) -> HubRef:
    """``hf-hub:ORG/NAME[@REVISION]`` -> HubRef; a one-line error for a malformed name."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    body = text[len(PREFIX) :] if is_hub_ref(text) else text
    repo_id, sep, revision = body.partition("@")
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise ZooError(
            f"{shown(text)} is not a Hugging Face Hub model: expected hf-hub:ORG/NAME[@REVISION]"
        ) from None
    if sep and not revision:
        raise ZooError(f"{shown(text)}: give a revision after '@' (a branch, tag or commit)")
    return HubRef(repo_id, revision or None)


def fetch(ref: HubRef | str) -> Path:
    """The local folder holding the repository's ``model.safetensors`` (and its
    ``config.json`` when it has one): a snapshot in the Hugging Face cache, downloaded on first
    use. Raises ZooError (exit code 2) with what to do when that is not possible."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError

    from zoo import __version__

    ref = parse_ref(ref) if isinstance(ref, str) else ref
    options = {"revision": ref.revision, "library_name": "zoo", "library_version": __version__}
    try:
        try:
            weights = Path(hf_hub_download(ref.repo_id, WEIGHTS, **options))
        except RemoteEntryNotFoundError:
            raise ZooError(_no_safetensors(ref)) from None
        # zoo's own weights carry their metadata: a config.json is optional.
        with contextlib.suppress(RemoteEntryNotFoundError, LocalEntryNotFoundError):
            hf_hub_download(ref.repo_id, CONFIG, **options)
    except ZooError:
        raise
    except Exception as exc:
        message = explain(exc, ref)
        if message is None:
            raise
        raise ZooError(message) from None
    return weights.parent


def explain(exc: BaseException, ref: HubRef) -> str | None:
    """One line for a huggingface_hub failure concerning ``ref``; None for other exceptions."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo = ref.repo_id
    if isinstance(exc, GatedRepoError):
        return (
            f"{repo} is a gated repository on the Hugging Face Hub: accept its conditions at "
            f"{ref.url}, then {_LOGIN}"
        )
    if isinstance(exc, RepositoryNotFoundError):
        return (
            f"{repo}: no such model repository on the Hugging Face Hub, or it is private "
            f"({_LOGIN} if you have access); check the name at {ref.url}"
        )
    if isinstance(exc, RevisionNotFoundError):
        return f"{repo} has no revision {shown(ref.revision)} on the Hugging Face Hub"
    if isinstance(exc, LocalEntryNotFoundError):
        cache = constants.HF_HUB_CACHE
        pickled = _cached_pickle(ref)
        if pickled is not None:
            return _refused(ref, f"holds only {pickled} in the Hugging Face cache ({cache})")
        if constants.is_offline_mode():
            return (
                f"{ref} is not in the Hugging Face cache ({cache}) and HF_HUB_OFFLINE is set: "
                f"unset it to download, or fill the cache on a machine with network with "
                f"{ref.download_hint}"
            )
        return (
            f"cannot download {ref} from {constants.ENDPOINT} ({_reason(exc)}) and it is not "
            f"in the Hugging Face cache ({cache}): check the connection (or HF_ENDPOINT), or "
            f"fill the cache with {ref.download_hint}"
        )
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status in (401, 403):
            return f"{repo}: the Hugging Face Hub refused access (HTTP {status}); {_LOGIN}"
        return f"{repo}: the Hugging Face Hub answered HTTP {status}; try again later"
    if isinstance(exc, OSError):
        return (
            f"cannot write the Hugging Face cache ({constants.HF_HUB_CACHE}) for {ref}: "
            f"{exc.strerror or exc}; point HF_HUB_CACHE (or HF_HOME) at a writable folder"
        )
    return None


def _cached_pickle(ref: HubRef) -> str | None:
    """The pickle weights file that the cache holds for ``ref`` (where it has no
    model.safetensors), as the local-folder path names it; None when it holds none."""
    from huggingface_hub import try_to_load_from_cache

    for name in PICKLES:
        try:
            found = try_to_load_from_cache(ref.repo_id, name, revision=ref.revision)
        except Exception:  # a cache it cannot read only makes the message less specific
            return None
        if isinstance(found, str):
            return name
    return None


def _no_safetensors(ref: HubRef) -> str:
    """Why a repository without ``model.safetensors`` is refused, naming the pickle file it has
    instead when it has one (checked without downloading it)."""
    from huggingface_hub import HfApi

    api, found = HfApi(), None  # a new HfApi: the module's own keeps the endpoint of its import
    for name in PICKLES:
        try:
            if api.file_exists(ref.repo_id, name, revision=ref.revision):
                found = name
                break
        except Exception:  # a failed check only makes the message less specific
            break
    return _refused(ref, f"holds only {found}" if found else "has no model.safetensors")


def _refused(ref: HubRef, held: str) -> str:
    """Why a repository without safetensors weights cannot be used, with what it ``held``."""
    pickle = ", a pickle file" if held.startswith("holds only") else ""
    return (
        f"{ref} {held}{pickle}: zoo loads safetensors weights only and never unpickles; pick a "
        "repository with model.safetensors (timm's have one)"
    )


def _reason(exc: BaseException) -> str:
    """The network failure behind huggingface_hub's 'not in the cache' error, in a few words."""
    cause = exc.__cause__ or exc.__context__
    if cause is None:
        return "no connection"
    response = getattr(cause, "response", None)
    if response is not None:
        return f"HTTP {response.status_code}"
    return type(cause).__name__
