"""Namespaces: the initial ones, existence checks, creation, and deletion that empties them."""

from __future__ import annotations

from tests.local.conftest import Client, configmap


async def test_the_usual_namespaces_exist_from_the_start(client: Client) -> None:
    listing = await client.ok('GET', '/api/v1/namespaces')
    names = {item['metadata']['name'] for item in listing['items']}
    assert {'default', 'kube-system', 'kube-public'} <= names
    default = await client.ok('GET', '/api/v1/namespaces/default')
    assert default['status'] == {'phase': 'Active'}
    assert default['metadata']['labels'] == {'kubernetes.io/metadata.name': 'default'}


async def test_creating_in_a_missing_namespace_is_not_found(client: Client) -> None:
    reply = await client.post('/api/v1/namespaces/nowhere/configmaps', configmap('a'))
    assert reply.status == 404
    assert reply.body['message'] == 'namespaces "nowhere" not found'
    assert reply.body['details'] == {'name': 'nowhere', 'kind': 'namespaces'}


async def test_namespaces_can_be_created(client: Client) -> None:
    reply = await client.post('/api/v1/namespaces', {'apiVersion': 'v1', 'kind': 'Namespace',
                                                      'metadata': {'name': 'team'}})
    assert reply.status == 201
    assert reply.body['spec'] == {'finalizers': ['kubernetes']}
    await client.ok('POST', '/api/v1/namespaces/team/configmaps', configmap('a'))


async def test_deleting_a_namespace_deletes_its_content_then_the_namespace(client: Client) -> None:
    await client.ok('POST', '/api/v1/namespaces', {'metadata': {'name': 'team'}})
    await client.ok('POST', '/api/v1/namespaces/team/configmaps', configmap('a'))
    await client.ok('POST', '/api/v1/namespaces/team/configmaps',
                    {'metadata': {'name': 'held', 'finalizers': ['x.io/f']}})
    deleting = await client.ok('DELETE', '/api/v1/namespaces/team')
    assert deleting['status']['phase'] == 'Terminating' and deleting['metadata']['deletionTimestamp']
    refused = await client.post('/api/v1/namespaces/team/configmaps', configmap('late'))
    assert refused.status == 403 and 'being terminated' in refused.body['message']
    await client.eventually('/api/v1/namespaces/team/configmaps/a', lambda r: r.status == 404, what='a deleted')
    assert (await client.get('/api/v1/namespaces/team')).status == 200  # "held" holds it
    await client.ok('PATCH', '/api/v1/namespaces/team/configmaps/held', {'metadata': {'finalizers': None}},
                    content_type='application/merge-patch+json')
    await client.eventually('/api/v1/namespaces/team', lambda r: r.status == 404, what='the namespace gone')
