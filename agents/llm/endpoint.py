"""Check a model endpoint before any work: reachable, key accepted, model served; one clear line if not."""

from __future__ import annotations

import os

import httpx
import openai

from schemas.errors import EndpointError


def _one_line(text: object, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_endpoint(base_url: str, model: str, api_key: str | None = None, timeout: float = 10.0) -> None:
    """Raise EndpointError (one line) unless `base_url` answers, accepts `api_key` and serves `model`.

    Lists the models (GET /models); if the server has no model list, a 1-token completion decides.
    """
    if not base_url or not base_url.startswith(("http://", "https://")):
        raise EndpointError(f"model endpoint URL must start with http:// or https://, got {base_url!r}")
    if not model:
        raise EndpointError("no model name given (--model)")
    key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
    where = f"model endpoint {base_url}"
    with openai.OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=timeout) as client:
        try:
            served = [m.id for m in client.models.list()]
        except openai.NotFoundError:
            served = None  # no /models route on this server: ask the model itself
        except openai.APIError as e:
            raise _endpoint_error(e, where, model, timeout) from None
        except httpx.HTTPError as e:
            raise EndpointError(f"cannot reach {where}: {_one_line(e)}") from None
        if served is not None:
            if model not in served:
                have = ", ".join(served[:8]) + (" ..." if len(served) > 8 else "") if served else "none"
                raise EndpointError(f"{where} does not serve model {model!r} (it serves: {have})")
            return
        try:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "ping"}], max_tokens=1)
        except openai.NotFoundError as e:
            if "model" not in str(e.message).lower():  # a bare 404 on both routes: not an OpenAI API at all
                raise EndpointError(
                    f"{where} has no OpenAI API (HTTP 404 on /models and /chat/completions); "
                    "check --base-url, it usually ends in /v1"
                ) from None
            raise _endpoint_error(e, where, model, timeout) from None
        except openai.APIError as e:
            raise _endpoint_error(e, where, model, timeout) from None


def _endpoint_error(e: openai.APIError, where: str, model: str, timeout: float) -> EndpointError:
    if isinstance(e, openai.APITimeoutError):
        return EndpointError(f"{where} did not answer within {timeout:g}s")
    if isinstance(e, openai.APIConnectionError):
        cause = e.__cause__ or e
        return EndpointError(f"cannot reach {where}: {_one_line(cause) or type(cause).__name__}")
    if isinstance(e, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return EndpointError(
            f"{where} refused the API key (HTTP {e.status_code}); set OPENAI_API_KEY or pass the right key"
        )
    if isinstance(e, openai.NotFoundError):
        return EndpointError(f"{where} does not know model {model!r} (HTTP 404: {_one_line(e.message)})")
    if isinstance(e, openai.APIStatusError):
        return EndpointError(f"{where} answered HTTP {e.status_code}: {_one_line(e.message)}")
    return EndpointError(f"{where} failed: {_one_line(e)}")
