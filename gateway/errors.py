"""Errors that carry their HTTP meaning, rendered as OpenAI-shaped JSON by one handler."""

from __future__ import annotations

import orjson


class GatewayError(Exception):
    status = 500
    error_type = "server_error"  # the "type" field of OpenAI's error JSON
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        # Added by code that knows more than the raiser, e.g. how many upstream attempts were made.
        self.extra_headers: dict[str, str] = {}

    def headers(self) -> dict[str, str]:
        return dict(self.extra_headers)

    def body(self) -> bytes:
        return error_body(self.message, self.error_type, self.param, self.code)


def error_body(message: str, error_type: str, param: str | None = None, code: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": error_type, "param": param, "code": code}})


class BadRequest(GatewayError):
    status = 400
    error_type = "invalid_request_error"


class Unauthorized(GatewayError):
    status = 401
    error_type = "invalid_request_error"
    code = "invalid_api_key"


class Forbidden(GatewayError):
    status = 403
    error_type = "invalid_request_error"
    code = "forbidden"


class NotFound(GatewayError):
    status = 404
    error_type = "invalid_request_error"
    code = "not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    error_type = "invalid_request_error"
    code = "method_not_allowed"


class ModelNotFound(NotFound):
    code = "model_not_found"


class Conflict(GatewayError):
    status = 409
    error_type = "invalid_request_error"
    code = "conflict"


class BodyTooLarge(GatewayError):
    status = 413
    error_type = "invalid_request_error"
    code = "request_too_large"


class RateLimited(GatewayError):
    status = 429
    error_type = "rate_limit_exceeded"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after_s: float, *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "retry-after": retry_after(self.retry_after_s)}


def retry_after(seconds: float) -> str:
    """Whole seconds, rounded up and at least 1: Retry-After has no fractions (RFC 9110 §10.2.3)."""
    return str(max(1, int(-(-seconds // 1))))


class QuotaExceeded(GatewayError):
    """A key's monthly budget is spent: no retry helps before the month ends, so clients are told not to."""

    status = 429
    error_type = "insufficient_quota"
    code = "insufficient_quota"

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "retry-after": retry_after(self.retry_after_s), "x-should-retry": "false"}


class UpstreamFailed(GatewayError):
    """No backend could answer. The gateway already retried, so clients should not."""

    status = 502
    error_type = "upstream_error"
    code = "upstream_error"

    def __init__(self, message: str, status: int = 502, *, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.status = status

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "x-should-retry": "false"}
