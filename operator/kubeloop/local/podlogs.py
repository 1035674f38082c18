"""`pods/log` of the local API server: proxied to the node's kubelet, as kube-apiserver does.

kube-apiserver serves `GET /api/v1/namespaces/{ns}/pods/{name}/log` by finding the pod's
node (`spec.nodeName`), that Node's kubelet port (`status.daemonEndpoints.kubeletEndpoint`)
and streaming the kubelet's `/containerLogs/{ns}/{pod}/{container}` answer back. This does
the same, always on 127.0.0.1 (local nodes listen on loopback only), with kube-apiserver's
checks and messages:

- no `container` and more than one container: 400 "a container name must be specified ...";
- an unknown container: 400 "container X is not valid for pod Y";
- a pod not bound to a node yet: an empty 200 answer (kube-apiserver's LogLocation gives no
  location, and kubectl prints nothing);
- the kubelet's own refusals (a container still waiting to start, no previous run) are
  passed on with its status code and text, which kubectl shows as "Error from server".
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import aiohttp.web

from kubeloop.local import errors
from kubeloop.local.errors import APIError

KUBELET_HOST = '127.0.0.1'
FORWARDED_PARAMETERS = ('follow', 'previous', 'timestamps', 'sinceSeconds', 'sinceTime', 'tailLines', 'limitBytes')
_REASONS = {400: 'BadRequest', 401: 'Unauthorized', 403: 'Forbidden', 404: 'NotFound', 500: 'InternalError'}

NodeLookup = Callable[[str], dict[str, Any] | None]


def container_for_logs(pod: dict[str, Any], requested: str | None) -> str:
    """The container whose log is asked for, validated as kube-apiserver validates it."""
    name = pod['metadata']['name']
    spec = pod.get('spec') or {}
    containers = [c['name'] for c in spec.get('containers') or []]
    init_containers = [c['name'] for c in spec.get('initContainers') or []]
    ephemeral = [c['name'] for c in spec.get('ephemeralContainers') or []]
    if not requested:
        if len(containers) == 1:
            return containers[0]
        message = f'a container name must be specified for pod {name}, choose one of: [{" ".join(containers)}]'
        if init_containers:
            message += f' or one of the init containers: [{" ".join(init_containers)}]'
        raise errors.bad_request(message)
    if requested not in [*containers, *init_containers, *ephemeral]:
        raise errors.bad_request(f'container {requested} is not valid for pod {name}')
    return requested


def kubelet_port(node: dict[str, Any] | None, node_name: str) -> int:
    if node is None:
        raise errors.not_found('', 'nodes', node_name)
    port = (((node.get('status') or {}).get('daemonEndpoints') or {}).get('kubeletEndpoint') or {}).get('Port')
    if not port:
        raise errors.internal(f'node "{node_name}" reports no kubelet endpoint')
    return int(port)


def pod_log_handler(node_of: NodeLookup) -> Callable[[Any], Awaitable[aiohttp.web.StreamResponse]]:
    """A `register_subresource_handler` handler for pods/log; `node_of(name)` reads a Node."""

    async def serve(call: Any) -> aiohttp.web.StreamResponse:
        raw: aiohttp.web.BaseRequest = call.raw_request
        if raw.method != 'GET':
            raise errors.method_not_allowed()
        pod = call.obj
        container = container_for_logs(pod, raw.query.get('container'))
        node_name = (pod.get('spec') or {}).get('nodeName')
        if not node_name:
            return aiohttp.web.Response(body=b'', content_type='text/plain')
        port = kubelet_port(node_of(node_name), node_name)
        params = {key: raw.query[key] for key in FORWARDED_PARAMETERS if key in raw.query}
        url = f'http://{KUBELET_HOST}:{port}/containerLogs/{pod["metadata"]["namespace"]}/{call.name}/{container}'
        return await _proxy(raw, url, params)

    return serve


async def _proxy(raw: aiohttp.web.BaseRequest, url: str, params: dict[str, str]) -> aiohttp.web.StreamResponse:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session:
        try:
            upstream = await session.get(url, params=params)
        except aiohttp.ClientError as exc:
            raise APIError(500, 'InternalError', f'Get "{url}": {exc}') from exc
        async with upstream:
            if upstream.status != 200:
                text = (await upstream.text()).strip()
                raise APIError(upstream.status, _REASONS.get(upstream.status, 'InternalError'), text)
            response = aiohttp.web.StreamResponse(headers={'Content-Type': 'text/plain'})
            await response.prepare(raw)
            with contextlib.suppress(ConnectionResetError):  # the client (kubectl logs -f) went away
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            return response
