"""Garbage collection of dependents by ownerReferences: background, foreground, orphan."""

from __future__ import annotations

from typing import Any

from tests.local.conftest import CONFIGMAPS, Client, configmap


def owned_by(name: str, owner: dict[str, Any], *, block: bool = True) -> dict[str, Any]:
    ref = {'apiVersion': 'v1', 'kind': 'ConfigMap', 'name': owner['metadata']['name'],
           'uid': owner['metadata']['uid'], 'blockOwnerDeletion': block, 'controller': True}
    return {'metadata': {'name': name, 'ownerReferences': [ref]}}


def gone(reply: Any) -> bool:
    return reply.status == 404


async def test_background_deletion_collects_dependents_after_the_owner(client: Client, kmock: Any) -> None:
    owner = await client.ok('POST', CONFIGMAPS, configmap('owner'))
    child = await client.ok('POST', CONFIGMAPS, owned_by('child', owner))
    await client.ok('POST', CONFIGMAPS, owned_by('grandchild', child))
    reply = await client.delete(f'{CONFIGMAPS}/owner')  # background is the default
    assert reply.status == 200
    await kmock.settled()  # the garbage collector acts after the response, on the next loop turns
    assert (await client.get(f'{CONFIGMAPS}/child')).status == 404
    assert (await client.get(f'{CONFIGMAPS}/grandchild')).status == 404


async def test_a_dependent_stays_while_another_owner_lives(client: Client) -> None:
    first = await client.ok('POST', CONFIGMAPS, configmap('first'))
    second = await client.ok('POST', CONFIGMAPS, configmap('second'))
    refs = owned_by('x', first)['metadata']['ownerReferences'] + owned_by('x', second)['metadata']['ownerReferences']
    refs[1]['controller'] = False
    await client.ok('POST', CONFIGMAPS, {'metadata': {'name': 'shared', 'ownerReferences': refs}})
    await client.ok('DELETE', f'{CONFIGMAPS}/first')
    kept = await client.eventually(f'{CONFIGMAPS}/shared',
                                   lambda r: len(r.body['metadata']['ownerReferences']) == 1,
                                   what='the dangling reference dropped')
    assert kept.body['metadata']['ownerReferences'][0]['name'] == 'second'
    await client.ok('DELETE', f'{CONFIGMAPS}/second')
    await client.eventually(f'{CONFIGMAPS}/shared', gone, what='the orphan collected')


async def test_foreground_deletion_deletes_dependents_before_the_owner(client: Client) -> None:
    owner = await client.ok('POST', CONFIGMAPS, configmap('owner'))
    await client.ok('POST', CONFIGMAPS, {**owned_by('child', owner),
                                         'metadata': {**owned_by('child', owner)['metadata'],
                                                      'finalizers': ['x.io/hold']}})
    deleting = await client.ok('DELETE', f'{CONFIGMAPS}/owner', {'propagationPolicy': 'Foreground'})
    assert deleting['metadata']['finalizers'] == ['foregroundDeletion']
    assert deleting['metadata']['deletionTimestamp']
    # The child is being deleted but holds on (its finalizer): the owner must wait for it.
    await client.eventually(f'{CONFIGMAPS}/child', lambda r: r.body['metadata'].get('deletionTimestamp'),
                            what='the child deleting')
    assert (await client.get(f'{CONFIGMAPS}/owner')).status == 200
    await client.ok('PATCH', f'{CONFIGMAPS}/child', {'metadata': {'finalizers': None}},
                    content_type='application/merge-patch+json')
    await client.eventually(f'{CONFIGMAPS}/owner', gone, what='the owner deleted after its child')


async def test_orphan_deletion_keeps_dependents_without_the_reference(client: Client) -> None:
    owner = await client.ok('POST', CONFIGMAPS, configmap('owner'))
    await client.ok('POST', CONFIGMAPS, owned_by('child', owner))
    await client.ok('DELETE', f'{CONFIGMAPS}/owner', {'propagationPolicy': 'Orphan'})
    await client.eventually(f'{CONFIGMAPS}/owner', gone, what='the owner deleted')
    child = await client.eventually(f'{CONFIGMAPS}/child',
                                    lambda r: 'ownerReferences' not in r.body['metadata'],
                                    what='the child orphaned')
    assert child.status == 200


async def test_a_dependent_of_a_missing_owner_is_collected(client: Client) -> None:
    phantom = {'metadata': {'name': 'phantom', 'uid': '00000000-0000-0000-0000-000000000000'}}
    await client.ok('POST', CONFIGMAPS, owned_by('stray', phantom))
    await client.eventually(f'{CONFIGMAPS}/stray', gone, what='the stray collected')
