"""Kubernetes API errors as the local API server answers them: `Status` objects.

The constructors mirror k8s.io/apimachinery/pkg/api/errors so that clients (kopf, the
kubernetes client, kubectl) classify our errors exactly as they classify a real cluster's:
same HTTP code, same `reason`, same message shape, same `details`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class APIError(Exception):
    """An error answered to the client as a `Status` object with this HTTP code."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            'kind': 'Status',
            'apiVersion': 'v1',
            'metadata': {},
            'status': 'Failure',
            'message': self.message,
            'reason': self.reason,
            'code': self.code,
        }
        if self.details:
            body['details'] = self.details
        return body


def qualified_resource(group: str, plural: str) -> str:
    """`configmaps` for the core group, `trainingruns.kubeloop.dev` otherwise (as kube prints it)."""
    return f"{plural}.{group}" if group else plural


def qualified_kind(group: str, kind: str) -> str:
    return f"{kind}.{group}" if group else kind


def _resource_details(group: str, plural: str, name: str | None) -> dict[str, Any]:
    # Kubernetes really puts the plural resource name into `details.kind` for these errors.
    details: dict[str, Any] = {'kind': plural}
    if group:
        details['group'] = group
    if name:
        details['name'] = name
    return details


def not_found(group: str, plural: str, name: str) -> APIError:
    return APIError(404, 'NotFound', f'{qualified_resource(group, plural)} "{name}" not found',
                    _resource_details(group, plural, name))


def unknown_path() -> APIError:
    """What kube-apiserver answers for a URL that names no served resource."""
    return APIError(404, 'NotFound', 'the server could not find the requested resource')


def already_exists(group: str, plural: str, name: str) -> APIError:
    return APIError(409, 'AlreadyExists', f'{qualified_resource(group, plural)} "{name}" already exists',
                    _resource_details(group, plural, name))


def conflict(group: str, plural: str, name: str, why: str) -> APIError:
    return APIError(409, 'Conflict',
                    f'Operation cannot be fulfilled on {qualified_resource(group, plural)} "{name}": {why}',
                    _resource_details(group, plural, name))


STALE_OBJECT = 'the object has been modified; please apply your changes to the latest version and try again'


def stale(group: str, plural: str, name: str) -> APIError:
    return conflict(group, plural, name, STALE_OBJECT)


@dataclass(frozen=True)
class Cause:
    """One entry of `details.causes`: a field and what is wrong with it."""

    field: str
    type: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {'reason': self.type, 'message': self.message, 'field': self.field}


def invalid(group: str, kind: str, name: str, causes: Iterable[Cause], message: str | None = None) -> APIError:
    """422 Invalid; `message` defaults to kube's aggregate of `field: message` per cause."""
    causes = list(causes)
    if message is None:
        parts = [f"{cause.field}: {cause.message}" for cause in causes]
        aggregate = parts[0] if len(parts) == 1 else '[' + ', '.join(parts) + ']'
        message = f'{qualified_kind(group, kind)} "{name}" is invalid: {aggregate}'
    details: dict[str, Any] = {'name': name, 'kind': kind, 'causes': [c.as_dict() for c in causes]}
    if group:
        details['group'] = group
    return APIError(422, 'Invalid', message, details)


def unprocessable(message: str) -> APIError:
    """A 422 with kube's generic shape (e.g. a JSON patch that does not apply)."""
    return APIError(422, 'Invalid', message)


def bad_request(message: str) -> APIError:
    return APIError(400, 'BadRequest', message)


def forbidden(group: str, plural: str, name: str, why: str) -> APIError:
    what = qualified_resource(group, plural)
    message = f'{what} "{name}" is forbidden: {why}' if name else f'{what} is forbidden: {why}'
    return APIError(403, 'Forbidden', message, _resource_details(group, plural, name))


def method_not_allowed(message: str = 'the server does not allow this method on the requested resource',
                       ) -> APIError:
    return APIError(405, 'MethodNotAllowed', message)


def not_acceptable(supported: Iterable[str]) -> APIError:
    return APIError(406, 'NotAcceptable',
                    'only the following media types are accepted: ' + ', '.join(supported))


def unsupported_media_type(content_type: str, supported: Iterable[str]) -> APIError:
    return APIError(415, 'UnsupportedMediaType',
                    f'the body of the request was in an unknown format ({content_type or "none"})'
                    ' - accepted media types include: ' + ', '.join(supported))


def expired(message: str) -> APIError:
    return APIError(410, 'Expired', message)


def timeout(message: str, retry_after_seconds: int = 1) -> APIError:
    return APIError(504, 'Timeout', f'Timeout: {message}', {'retryAfterSeconds': retry_after_seconds})


def internal(message: str) -> APIError:
    return APIError(500, 'InternalError', f'Internal error occurred: {message}',
                    {'causes': [{'message': message}]})
