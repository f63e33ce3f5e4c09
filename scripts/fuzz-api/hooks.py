"""Schemathesis hooks for scripts/fuzz-api.sh (loaded through SCHEMATHESIS_HOOKS).

A map that keeps the run's own token alive (see `map_case`), and one check, `error_shape`: every 4xx and 5xx answer, whatever the route, method or
status (documented or not, axum's own rejections included), is the contract's error
object (docs/contract.md section 2): a JSON object with the string members `error`,
`code` and `message` and the object member `details`.
"""

import json

import schemathesis

# The user the run is authenticated as (scripts/fuzz-api.sh creates it).
RUN_USER = "fuzz-manager"
# Another user of the run's tenant (also created by scripts/fuzz-api.sh).
OTHER_USER = "fuzz-store"


@schemathesis.hook
def map_case(ctx, case):
    """Never give the run's own user a new password: that ends its token, and every
    request after it would be 401 and test nothing (as logout would; the server refuses
    the other ways a manager could end its own session from the API: disabling itself,
    revoking or releasing its own device). Such a case goes to the store user instead
    (a map, not a filter: Hypothesis's optimiser failed on the rejections a filter
    makes)."""
    path = getattr(case.operation, "path", "")
    params = case.path_parameters
    if path.endswith("/password") and params and params.get("username") == RUN_USER:
        params["username"] = OTHER_USER
    return case


@schemathesis.check
def error_shape(ctx, response, case):
    """Every error answer has the contract's error shape."""
    if response.status_code < 400:
        return None
    where = f"{case.method} {case.path} answered {response.status_code}"
    content_type = response.headers.get("content-type", [""])
    if isinstance(content_type, list):
        content_type = content_type[0] if content_type else ""
    if not content_type.startswith("application/json"):
        raise AssertionError(f"{where} with Content-Type {content_type!r}, not JSON")
    try:
        body = json.loads(response.content or b"")
    except ValueError as e:
        raise AssertionError(f"{where} with a body that is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise AssertionError(f"{where} with {body!r}, not an object")
    for key in ("error", "code", "message"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise AssertionError(f"{where}: `{key}` is missing or not a string in {body!r}")
    if not isinstance(body.get("details"), dict):
        raise AssertionError(f"{where}: `details` is missing or not an object in {body!r}")
    return None
