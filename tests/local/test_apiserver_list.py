"""Lists: kind and apiVersion, the current resourceVersion, selectors, pagination."""

from __future__ import annotations

from tests.local.conftest import CONFIGMAPS, WIDGETS, Client, configmap, widget


async def test_a_list_carries_kind_api_version_and_the_current_resource_version(client: Client) -> None:
    await client.install_widgets()
    await client.ok('POST', WIDGETS, widget('w'))
    latest = await client.ok('POST', CONFIGMAPS, configmap('a'))
    listing = await client.ok('GET', WIDGETS)
    assert listing['kind'] == 'WidgetList' and listing['apiVersion'] == 'test.kubeloop.dev/v1'
    assert listing['metadata']['resourceVersion'] == latest['metadata']['resourceVersion']
    assert [item['metadata']['name'] for item in listing['items']] == ['w']
    core = await client.ok('GET', '/api/v1/namespaces')
    assert core['kind'] == 'NamespaceList' and core['apiVersion'] == 'v1'


async def test_lists_are_ordered_by_namespace_and_name_and_scoped_by_namespace(client: Client) -> None:
    for namespace, name in (('kube-system', 'b'), ('default', 'c'), ('default', 'a')):
        await client.ok('POST', f'/api/v1/namespaces/{namespace}/configmaps', configmap(name))
    everywhere = await client.ok('GET', '/api/v1/configmaps')
    assert [(i['metadata']['namespace'], i['metadata']['name']) for i in everywhere['items']] == [
        ('default', 'a'), ('default', 'c'), ('kube-system', 'b')]
    here = await client.ok('GET', CONFIGMAPS)
    assert [i['metadata']['name'] for i in here['items']] == ['a', 'c']


async def test_label_and_field_selectors_filter_lists(client: Client) -> None:
    for name, labels in (('a', {'tier': 'web'}), ('b', {'tier': 'db'}), ('c', {})):
        await client.ok('POST', CONFIGMAPS, {'metadata': {'name': name, 'labels': labels}})
    names = lambda listing: [i['metadata']['name'] for i in listing['items']]  # noqa: E731
    assert names(await client.ok('GET', CONFIGMAPS, params={'labelSelector': 'tier=web'})) == ['a']
    assert names(await client.ok('GET', CONFIGMAPS, params={'labelSelector': '!tier'})) == ['c']
    assert names(await client.ok('GET', CONFIGMAPS, params={'labelSelector': 'tier in (web,db)'})) == ['a', 'b']
    assert names(await client.ok('GET', CONFIGMAPS, params={'fieldSelector': 'metadata.name!=a'})) == ['b', 'c']
    bad = await client.get(CONFIGMAPS, params={'fieldSelector': 'spec.nope=1'})
    assert bad.status == 400 and bad.body['reason'] == 'BadRequest'
    bad_label = await client.get(CONFIGMAPS, params={'labelSelector': 'tier in web'})
    assert bad_label.status == 400


async def test_pagination_serves_a_consistent_snapshot_page_by_page(client: Client) -> None:
    for index in range(5):
        await client.ok('POST', CONFIGMAPS, configmap(f'cm{index}'))
    first = await client.ok('GET', CONFIGMAPS, params={'limit': '2'})
    assert [i['metadata']['name'] for i in first['items']] == ['cm0', 'cm1']
    assert first['metadata']['remainingItemCount'] == 3
    await client.ok('POST', CONFIGMAPS, configmap('cm9'))  # not in the snapshot
    second = await client.ok('GET', CONFIGMAPS, params={'limit': '2', 'continue': first['metadata']['continue']})
    third = await client.ok('GET', CONFIGMAPS, params={'limit': '2', 'continue': second['metadata']['continue']})
    assert [i['metadata']['name'] for i in second['items'] + third['items']] == ['cm2', 'cm3', 'cm4']
    assert 'continue' not in third['metadata']
    assert third['metadata']['resourceVersion'] == first['metadata']['resourceVersion']


async def test_an_expired_or_invalid_continue_token_is_refused(client: Client) -> None:
    for index in range(3):
        await client.ok('POST', CONFIGMAPS, configmap(f'cm{index}'))
    first = await client.ok('GET', CONFIGMAPS, params={'limit': '1'})
    token = first['metadata']['continue']
    await client.ok('GET', CONFIGMAPS, params={'limit': '5', 'continue': token})  # consumes the snapshot
    expired = await client.get(CONFIGMAPS, params={'limit': '1', 'continue': token})
    assert expired.status == 410 and expired.body['reason'] == 'Expired'
    garbage = await client.get(CONFIGMAPS, params={'limit': '1', 'continue': '!!not-a-token'})
    assert garbage.status == 400 and 'continue key is not valid' in garbage.body['message']


async def test_a_list_at_a_future_resource_version_times_out(client: Client) -> None:
    reply = await client.get(CONFIGMAPS, params={'resourceVersion': '999999'})
    assert reply.status == 504 and reply.body['reason'] == 'Timeout'
