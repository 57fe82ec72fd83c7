"""Helpers for session and workspace tests: the error-shape check."""


def error_of(response) -> dict:
    """The contract's error object, after checking the whole body has the one error shape."""
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    return body["error"]
