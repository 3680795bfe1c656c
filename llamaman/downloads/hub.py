"""Hub metadata through huggingface_hub: a repo's commit and files (size, LFS sha256), file URLs.

The bytes themselves are fetched by transfer.py (Range resume, throttling, pause/cancel),
which huggingface_hub's own downloader cannot do.
"""
from __future__ import annotations

from dataclasses import dataclass

from llamaman.downloads.failures import DownloadFailed, http_failure

DEFAULT_ENDPOINT = "https://huggingface.co"
LIBRARY = "llamaman"
METADATA_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repository at a commit."""

    name: str  # path in the repo
    size: int | None
    sha256: str | None  # from the LFS pointer; None for small (git) files


@dataclass(frozen=True)
class RepoSnapshot:
    """A repository at one commit: every file by its path in the repo."""

    repo_id: str
    commit: str
    files: dict[str, RemoteFile]


class HubClient:
    """Talks to the Hub (or HF_ENDPOINT) for metadata and builds the file URLs."""

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT) -> None:
        self.endpoint = endpoint.rstrip("/")

    def snapshot(self, repo_id: str, token: str | None, revision: str | None = None) -> RepoSnapshot:
        """The repo's files with sizes and sha256 at `revision` (default branch when None)."""
        # Imported on first use: huggingface_hub and httpx2 cost the idle manager ~6 MB.
        import httpx2
        from huggingface_hub import HfApi
        from huggingface_hub.errors import HfHubHTTPError

        api = HfApi(endpoint=self.endpoint, library_name=LIBRARY)
        try:
            # token=False stops huggingface_hub from picking up a token on its own:
            # the service decides which token applies.
            info = api.model_info(repo_id, revision=revision, files_metadata=True, token=token or False,
                                  timeout=METADATA_TIMEOUT_S)
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            raise http_failure(status, f"repository {repo_id}") from None
        except (httpx2.TransportError, OSError) as exc:
            raise DownloadFailed(f"cannot reach the Hub at {self.endpoint}: {type(exc).__name__}",
                                 retryable=True) from None
        if not info.sha:
            raise DownloadFailed(f"the Hub gave no commit for {repo_id}")
        files = {s.rfilename: RemoteFile(s.rfilename, s.lfs.size if s.lfs else s.size,
                                         s.lfs.sha256 if s.lfs else None)
                 for s in info.siblings or []}
        return RepoSnapshot(repo_id, info.sha, files)

    def file_url(self, repo_id: str, commit: str, filename: str) -> str:
        """The resolve URL of a file at a commit."""
        from huggingface_hub import hf_hub_url

        return hf_hub_url(repo_id, filename, revision=commit, endpoint=self.endpoint)

    @staticmethod
    def headers(token: str | None) -> dict[str, str]:
        """Request headers for file downloads (user agent, and the token when there is one)."""
        from huggingface_hub.utils import build_hf_headers

        return build_hf_headers(token=token or False, library_name=LIBRARY)
