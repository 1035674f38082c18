"""kmock integration: bounded request history, fault injection first, subresource hooks."""

from __future__ import annotations

from typing import Any

import pytest

from kubeloop.local.apiserver import SubresourceCall
from tests.local.conftest import CONFIGMAPS, WIDGETS, Client, configmap, widget

PODS = '/api/v1/namespaces/default/pods'
POD = {'apiVersion': 'v1', 'kind': 'Pod', 'metadata': {'name': 'p'},
       'spec': {'containers': [{'name': 'main', 'image': 'busybox'}]}}


@pytest.mark.kmock(request_window=5)
async def test_only_a_bounded_window_of_requests_is_kept(client: Client, kmock: Any) -> None:
    for index in range(12):
        await client.ok('POST', CONFIGMAPS, configmap(f'cm{index}'))
    assert len(kmock._requests) == 5
    assert [request.data['metadata']['name'] for request in kmock._requests] == [f'cm{i}' for i in range(7, 12)]
    assert len(kmock['post']) == 5  # kmock's views see that window


async def test_fault_injection_reactions_take_priority_and_change_nothing(client: Client, kmock: Any) -> None:
    await client.install_widgets()
    await client.ok('POST', WIDGETS, widget('w', size=1))
    kmock['patch widgets'][:1] << 500
    failed = await client.patch(f'{WIDGETS}/w', {'spec': {'size': 2}})
    assert failed.status == 500
    assert (await client.ok('GET', f'{WIDGETS}/w'))['spec']['size'] == 1
    succeeded = await client.patch(f'{WIDGETS}/w', {'spec': {'size': 3}})  # the reaction served once
    assert succeeded.status == 200 and succeeded.body['spec']['size'] == 3


async def test_registered_subresource_handlers_serve_and_others_are_refused(client: Client, kmock: Any) -> None:
    await client.ok('POST', PODS, POD)
    calls: list[SubresourceCall] = []

    async def logs(call: SubresourceCall) -> str:
        calls.append(call)
        return f"log of {call.name}, container {call.request.params.get('container')}\n"

    unregistered = await client.get(f'{PODS}/p/log')
    assert unregistered.status == 405 and 'pods/log is not emulated' in unregistered.body['message']
    kmock.register_subresource_handler('pods', 'log', logs)
    served = await client.get(f'{PODS}/p/log', params={'container': 'main'})
    assert served.status == 200 and served.body == 'log of p, container main\n'
    assert calls[0].obj['metadata']['name'] == 'p' and calls[0].subresource == 'log'
    assert (await client.get(f'{PODS}/missing/log')).status == 404
    exec_ = await client.post(f'{PODS}/p/exec', None)
    assert exec_.status == 405
    assert (await client.get(f'{PODS}/p/nonsense')).status == 404


async def test_events_of_both_apis_can_be_created(client: Client) -> None:
    core = {'apiVersion': 'v1', 'kind': 'Event', 'metadata': {'name': 'e1'}, 'reason': 'Tested',
            'message': 'hello', 'type': 'Normal', 'involvedObject': {'kind': 'ConfigMap', 'name': 'a'}}
    modern = {'apiVersion': 'events.k8s.io/v1', 'kind': 'Event', 'metadata': {'name': 'e2'}, 'reason': 'Tested',
              'note': 'hello', 'type': 'Normal', 'action': 'Test', 'eventTime': '2026-01-01T00:00:00.000000Z',
              'reportingController': 'kubeloop', 'reportingInstance': 'x', 'regarding': {'kind': 'ConfigMap'}}
    assert (await client.post('/api/v1/namespaces/default/events', core)).status == 201
    assert (await client.post('/apis/events.k8s.io/v1/namespaces/default/events', modern)).status == 201


async def test_access_reviews_are_answered_not_stored(client: Client) -> None:
    review = {'apiVersion': 'authorization.k8s.io/v1', 'kind': 'SelfSubjectAccessReview',
              'spec': {'resourceAttributes': {'verb': 'delete', 'resource': 'pods'}}}
    reply = await client.post('/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', review)
    assert reply.status == 201 and reply.body['status']['allowed'] is True
    assert 'does not enforce RBAC' in reply.body['status']['reason']


async def test_objects_are_visible_as_a_read_only_kmock_snapshot(client: Client, kmock: Any) -> None:
    await client.ok('POST', CONFIGMAPS, configmap('a', x='1'))
    assert kmock.objects['v1/configmaps', 'default', 'a'] >= {'data': {'x': '1'}}
    with pytest.raises(TypeError, match='read-only'):
        kmock.objects['v1/configmaps', 'default', 'b'] = {}
