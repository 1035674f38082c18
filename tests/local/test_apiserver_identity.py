"""Object identity and optimistic concurrency: uid, timestamps, generation, resourceVersion."""

from __future__ import annotations

import re

from tests.local.conftest import CONFIGMAPS, WIDGETS, Client, configmap, widget


async def test_create_assigns_uid_creation_timestamp_and_generation(client: Client) -> None:
    created = await client.ok('POST', CONFIGMAPS, configmap('a', x='1'))
    meta = created['metadata']
    assert re.fullmatch(r'[0-9a-f-]{36}', meta['uid'])
    assert re.fullmatch(r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ', meta['creationTimestamp'])
    assert meta['generation'] == 1
    other = await client.ok('POST', CONFIGMAPS, configmap('b'))
    assert other['metadata']['uid'] != meta['uid']


async def test_client_supplied_system_metadata_is_replaced_on_create(client: Client) -> None:
    sent = configmap('a')
    sent['metadata'].update(uid='mine', generation=7, creationTimestamp='2000-01-01T00:00:00Z',
                            deletionTimestamp='2000-01-01T00:00:00Z')
    meta = (await client.ok('POST', CONFIGMAPS, sent))['metadata']
    assert meta['uid'] != 'mine' and meta['generation'] == 1
    assert meta['creationTimestamp'] != '2000-01-01T00:00:00Z' and 'deletionTimestamp' not in meta
    with_version = await client.post(CONFIGMAPS, {'metadata': {'name': 'b', 'resourceVersion': '999'}})
    assert with_version.status == 400
    assert with_version.body['message'] == 'resourceVersion should not be set on objects to be created'


async def test_resource_version_is_a_global_increasing_counter(client: Client) -> None:
    first = await client.ok('POST', CONFIGMAPS, configmap('a'))
    second = await client.ok('POST', '/api/v1/namespaces/kube-system/configmaps', configmap('b'))
    third = await client.ok('PATCH', f'{CONFIGMAPS}/a', {'data': {'k': 'v'}},
                            content_type='application/merge-patch+json')
    versions = [int(obj['metadata']['resourceVersion']) for obj in (first, second, third)]
    assert versions == sorted(versions) and len(set(versions)) == 3
    assert isinstance(first['metadata']['resourceVersion'], str)


async def test_generation_bumps_only_when_the_spec_changes(client: Client) -> None:
    await client.install_widgets()
    await client.ok('POST', WIDGETS, widget('w', size=1))
    relabelled = await client.ok('PATCH', f'{WIDGETS}/w', {'metadata': {'labels': {'a': 'b'}}},
                                 content_type='application/merge-patch+json')
    assert relabelled['metadata']['generation'] == 1
    resized = await client.ok('PATCH', f'{WIDGETS}/w', {'spec': {'size': 2}},
                              content_type='application/merge-patch+json')
    assert resized['metadata']['generation'] == 2


async def test_generation_of_a_kind_without_spec_counts_all_but_metadata(client: Client) -> None:
    await client.ok('POST', CONFIGMAPS, configmap('a', x='1'))
    annotated = await client.ok('PATCH', f'{CONFIGMAPS}/a', {'metadata': {'annotations': {'a': 'b'}}},
                                content_type='application/merge-patch+json')
    assert annotated['metadata']['generation'] == 1
    changed = await client.ok('PATCH', f'{CONFIGMAPS}/a', {'data': {'x': '2'}},
                              content_type='application/merge-patch+json')
    assert changed['metadata']['generation'] == 2


async def test_a_no_op_write_keeps_the_resource_version(client: Client) -> None:
    created = await client.ok('POST', CONFIGMAPS, configmap('a', x='1'))
    same = await client.ok('PATCH', f'{CONFIGMAPS}/a', {'data': {'x': '1'}},
                           content_type='application/merge-patch+json')
    assert same['metadata']['resourceVersion'] == created['metadata']['resourceVersion']


async def test_stale_resource_version_conflicts_on_update_and_patch(client: Client) -> None:
    created = await client.ok('POST', CONFIGMAPS, configmap('a', x='1'))
    stale = created['metadata']['resourceVersion']
    await client.ok('PATCH', f'{CONFIGMAPS}/a', {'data': {'x': '2'}}, content_type='application/merge-patch+json')

    replaced = await client.put(f'{CONFIGMAPS}/a', created)
    patched = await client.patch(f'{CONFIGMAPS}/a', {'metadata': {'resourceVersion': stale}, 'data': {'x': '3'}})

    for reply in (replaced, patched):
        assert reply.status == 409, reply
        assert reply.body['reason'] == 'Conflict'
        assert reply.body['message'] == ('Operation cannot be fulfilled on configmaps "a": the object has been '
                                         'modified; please apply your changes to the latest version and try again')
    assert (await client.ok('GET', f'{CONFIGMAPS}/a'))['data'] == {'x': '2'}


async def test_create_of_an_existing_name_is_already_exists(client: Client) -> None:
    await client.ok('POST', CONFIGMAPS, configmap('a'))
    reply = await client.post(CONFIGMAPS, configmap('a'))
    assert reply.status == 409
    assert reply.body['reason'] == 'AlreadyExists'
    assert reply.body['message'] == 'configmaps "a" already exists'
    assert reply.body['details'] == {'name': 'a', 'kind': 'configmaps'}


async def test_a_missing_object_is_not_found_with_a_status(client: Client) -> None:
    await client.install_widgets()
    for path, message, details in [
        (f'{CONFIGMAPS}/nope', 'configmaps "nope" not found', {'name': 'nope', 'kind': 'configmaps'}),
        (f'{WIDGETS}/nope', 'widgets.test.kubeloop.dev "nope" not found',
         {'name': 'nope', 'group': 'test.kubeloop.dev', 'kind': 'widgets'}),
    ]:
        for method in ('GET', 'PATCH', 'PUT', 'DELETE'):
            body = {'metadata': {'name': 'nope'}} if method in ('PATCH', 'PUT') else None
            reply = await client.request(method, path, body, content_type='application/merge-patch+json'
                                         if method == 'PATCH' else 'application/json')
            assert reply.status == 404, (method, reply)
            assert reply.body['kind'] == 'Status' and reply.body['reason'] == 'NotFound'
            assert reply.body['message'] == message
            assert reply.body['details'] == details
