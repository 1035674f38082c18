"""The status subresource: /status writes only status; the main endpoint never writes it."""

from __future__ import annotations

from tests.local.conftest import WIDGETS, Client, widget


async def test_the_status_endpoint_writes_only_status(client: Client) -> None:
    await client.install_widgets()
    created = await client.ok('POST', WIDGETS, widget('w', size=1))
    attempt = {**created, 'spec': {'size': 5}, 'status': {'phase': 'Running'},
               'metadata': {**created['metadata'], 'labels': {'sneaky': 'yes'}}}
    replaced = await client.ok('PUT', f'{WIDGETS}/w/status', attempt)
    assert replaced['status'] == {'phase': 'Running'}
    assert replaced['spec'] == created['spec'] and 'labels' not in replaced['metadata']
    assert int(replaced['metadata']['resourceVersion']) > int(created['metadata']['resourceVersion'])

    patched = await client.ok('PATCH', f'{WIDGETS}/w/status', {'spec': {'size': 9}, 'status': {'phase': 'Done'}},
                              content_type='application/merge-patch+json')
    assert patched['status'] == {'phase': 'Done'} and patched['spec']['size'] == 1
    assert await client.ok('GET', f'{WIDGETS}/w/status') == patched


async def test_the_main_endpoint_ignores_status(client: Client) -> None:
    await client.install_widgets()
    created = await client.ok('POST', WIDGETS, widget('w'))
    await client.ok('PATCH', f'{WIDGETS}/w/status', {'status': {'phase': 'Running'}},
                    content_type='application/merge-patch+json')
    patched = await client.ok('PATCH', f'{WIDGETS}/w', {'spec': {'size': 3}, 'status': {'phase': 'Hacked'}},
                              content_type='application/merge-patch+json')
    assert patched['status'] == {'phase': 'Running'} and patched['spec']['size'] == 3
    replaced = await client.ok('PUT', f'{WIDGETS}/w', {**created, 'metadata': {'name': 'w'}, 'status': {}})
    assert replaced['status'] == {'phase': 'Running'}


async def test_status_writes_do_not_bump_the_generation(client: Client) -> None:
    await client.install_widgets()
    await client.ok('POST', WIDGETS, widget('w'))
    for phase in ('A', 'B', 'C'):
        updated = await client.ok('PATCH', f'{WIDGETS}/w/status', {'status': {'phase': phase}},
                                  content_type='application/merge-patch+json')
        assert updated['metadata']['generation'] == 1


async def test_a_status_subresource_that_does_not_exist_is_not_found(client: Client) -> None:
    await client.ok('POST', '/api/v1/namespaces/default/configmaps', {'metadata': {'name': 'a'}})
    reply = await client.patch('/api/v1/namespaces/default/configmaps/a/status', {'status': {}})
    assert reply.status == 404 and reply.body['reason'] == 'NotFound'
