"""PUT, DELETE (preconditions, finalizers, deletionTimestamp) and delete-collection."""

from __future__ import annotations

from tests.local.conftest import CONFIGMAPS, Client, configmap, open_watch, summary

JSON_PATCH = 'application/json-patch+json'
MERGE = 'application/merge-patch+json'


async def test_put_replaces_the_whole_object(client: Client) -> None:
    created = await client.ok('POST', CONFIGMAPS, configmap('a', x='1', y='2'))
    replaced = await client.ok('PUT', f'{CONFIGMAPS}/a', {**created, 'data': {'z': '3'}})
    assert replaced['data'] == {'z': '3'}
    assert replaced['metadata']['uid'] == created['metadata']['uid']
    unconditional = await client.ok('PUT', f'{CONFIGMAPS}/a', configmap('a', w='4'))  # no resourceVersion sent
    assert unconditional['data'] == {'w': '4'}


async def test_put_of_a_missing_object_or_another_name_is_refused(client: Client) -> None:
    assert (await client.put(f'{CONFIGMAPS}/nope', configmap('nope'))).status == 404
    await client.ok('POST', CONFIGMAPS, configmap('a'))
    renamed = await client.put(f'{CONFIGMAPS}/a', configmap('b'))
    assert renamed.status == 400
    assert renamed.body['message'] == 'the name of the object (b) does not match the name on the URL (a)'


async def test_delete_honours_uid_and_resource_version_preconditions(client: Client) -> None:
    created = await client.ok('POST', CONFIGMAPS, configmap('a'))
    for preconditions in ({'uid': 'other'}, {'resourceVersion': '1'}):
        reply = await client.delete(f'{CONFIGMAPS}/a', {'kind': 'DeleteOptions', 'apiVersion': 'v1',
                                                       'preconditions': preconditions})
        assert reply.status == 409 and reply.body['reason'] == 'Conflict'
        assert 'Precondition failed' in reply.body['message'] or 'precondition' in reply.body['message']
    reply = await client.delete(f'{CONFIGMAPS}/a', {'preconditions': {'uid': created['metadata']['uid']}})
    assert reply.status == 200
    assert reply.body['kind'] == 'Status' and reply.body['status'] == 'Success'
    assert reply.body['details']['uid'] == created['metadata']['uid']
    assert (await client.get(f'{CONFIGMAPS}/a')).status == 404


async def test_delete_with_finalizers_only_marks_the_object_until_they_are_removed(client: Client, kmock) -> None:
    await client.ok('POST', CONFIGMAPS, {**configmap('a'), 'metadata': {'name': 'a', 'finalizers': ['x.io/f']}})
    async with open_watch(kmock, CONFIGMAPS, resourceVersion='0') as watch:
        assert summary(await watch.take(1)) == [('ADDED', 'a')]
        deleting = await client.ok('DELETE', f'{CONFIGMAPS}/a')
        assert deleting['metadata']['deletionTimestamp']
        assert deleting['metadata']['deletionGracePeriodSeconds'] == 0
        assert deleting['metadata']['generation'] == 2
        modified = await watch.next()
        assert modified['type'] == 'MODIFIED' and modified['object']['metadata']['deletionTimestamp']
        assert (await client.get(f'{CONFIGMAPS}/a')).status == 200

        again = await client.ok('DELETE', f'{CONFIGMAPS}/a')  # deleting twice changes nothing
        assert again['metadata']['resourceVersion'] == deleting['metadata']['resourceVersion']

        released = await client.ok('PATCH', f'{CONFIGMAPS}/a', {'metadata': {'finalizers': None}}, content_type=MERGE)
        assert 'finalizers' not in released['metadata']
        gone = await watch.next()
        assert gone['type'] == 'DELETED' and gone['object']['metadata']['name'] == 'a'
    assert (await client.get(f'{CONFIGMAPS}/a')).status == 404


async def test_no_new_finalizers_can_be_added_while_deleting(client: Client) -> None:
    await client.ok('POST', CONFIGMAPS, {'metadata': {'name': 'a', 'finalizers': ['x.io/f']}})
    await client.ok('DELETE', f'{CONFIGMAPS}/a')
    reply = await client.patch(f'{CONFIGMAPS}/a', {'metadata': {'finalizers': ['x.io/f', 'y.io/g']}})
    assert reply.status == 422
    assert reply.body['details']['causes'][0]['field'] == 'metadata.finalizers'
    assert 'no new finalizers can be added if the object is being deleted' in reply.body['message']


async def test_delete_collection_deletes_what_the_selectors_select(client: Client) -> None:
    for name, tier in (('a', 'web'), ('b', 'web'), ('c', 'db')):
        await client.ok('POST', CONFIGMAPS, {'metadata': {'name': name, 'labels': {'tier': tier}}})
    reply = await client.delete(CONFIGMAPS, params={'labelSelector': 'tier=web'})
    assert reply.status == 200 and reply.body['kind'] == 'ConfigMapList'
    assert sorted(item['metadata']['name'] for item in reply.body['items']) == ['a', 'b']
    await client.delete(CONFIGMAPS, params={'fieldSelector': 'metadata.name=zzz'})
    remaining = await client.ok('GET', CONFIGMAPS)
    assert [item['metadata']['name'] for item in remaining['items']] == ['c']
