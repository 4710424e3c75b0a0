"""`--push-to-hub`: upload a finished export folder to a Hugging Face dataset repo.

The folder already has the Hub layout (Parquet + a README.md card whose `configs` name the
splits), so it is uploaded as files with `HfApi.upload_folder`; `dataset_dict/` (the
save_to_disk copy of the same data) stays local. The token comes from HF_TOKEN (or a cached
`hf auth login`); without one the command fails with one line before any network call.
"""

from __future__ import annotations

import os
from pathlib import Path

from schemas.errors import ConfigError, EndpointError

LOCAL_ONLY = ["dataset_dict/**", ".*"]


def hub_token() -> str | None:
    """The Hugging Face token: HF_TOKEN, else the one a `hf auth login` cached."""
    token = os.environ.get("HF_TOKEN")
    if token:
        return token
    try:
        from huggingface_hub import get_token

        return get_token()
    except ImportError:
        return None


def push_to_hub(folder: Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Create the dataset repo if needed and upload `folder`; returns the commit URL."""
    if "/" not in repo_id or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ConfigError(f"--push-to-hub {repo_id!r}: expected a repo id like 'user/name'")
    token = token or hub_token()
    if not token:
        raise ConfigError("--push-to-hub needs a Hugging Face token: set HF_TOKEN (or run `hf auth login`)")
    import httpx
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
        info = api.upload_folder(
            repo_id=repo_id,
            repo_type="dataset",
            folder_path=str(folder),
            ignore_patterns=LOCAL_ONLY,
            commit_message="Upload MIFG-QA export (mifg export)",
        )
    except HfHubHTTPError as e:
        raise EndpointError(
            f"push to https://huggingface.co/datasets/{repo_id} failed: {str(e).splitlines()[0]}"
        ) from e
    except (OSError, httpx.HTTPError) as e:  # connection refused, DNS failure, timeouts
        raise EndpointError(f"push to {repo_id} failed: cannot reach the Hub ({e})") from e
    return str(getattr(info, "commit_url", info))
