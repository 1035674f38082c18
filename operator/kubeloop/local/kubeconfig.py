"""The kubeconfig that points kubectl, kopf and the kubernetes client at the local API server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

NAME = 'kubeloop-local'  # the cluster, the user and the context share it
TOKEN = 'kubeloop-local'  # any token is accepted: the local server does not authenticate


def kubeconfig(url: str, *, token: str = TOKEN) -> dict[str, Any]:
    return {
        'apiVersion': 'v1',
        'kind': 'Config',
        'clusters': [{'name': NAME, 'cluster': {'server': url}}],
        'users': [{'name': NAME, 'user': {'token': token}}],
        'contexts': [{'name': NAME, 'context': {'cluster': NAME, 'user': NAME, 'namespace': 'default'}}],
        'current-context': NAME,
        'preferences': {},
    }


def write_kubeconfig(path: str | os.PathLike[str], url: str, *, token: str = TOKEN) -> Path:
    """Write (atomically, readable by the owner only) a kubeconfig for the server at `url`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f'.{target.name}.tmp')
    temporary.write_text(yaml.safe_dump(kubeconfig(url, token=token), sort_keys=False))
    temporary.chmod(0o600)
    temporary.replace(target)
    return target
