"""Watch streams: from a resourceVersion, initial events, bookmarks, timeouts, 410, selectors."""

from __future__ import annotations

from typing import Any

import pytest

from tests.local.conftest import CONFIGMAPS, Client, configmap, open_watch, summary

MERGE = 'application/merge-patch+json'


async def test_a_watch_from_a_resource_version_streams_only_later_changes(client: Client, kmock: Any) -> None:
    await client.ok('POST', CONFIGMAPS, configmap('before'))
    listing = await client.ok('GET', CONFIGMAPS)
    await client.ok('POST', CONFIGMAPS, configmap('after'))  # between the list and the watch
    async with open_watch(kmock, CONFIGMAPS, resourceVersion=listing['metadata']['resourceVersion']) as watch:
        assert summary(await watch.take(1)) == [('ADDED', 'after')]
        await client.ok('PATCH', f'{CONFIGMAPS}/before', {'data': {'x': '1'}}, content_type=MERGE)
        await client.ok('DELETE', f'{CONFIGMAPS}/after')
        events = await watch.take(2)
    assert summary(events) == [('MODIFIED', 'before'), ('DELETED', 'after')]
    assert int(events[1]['object']['metadata']['resourceVersion']) > int(events[0]['object']['metadata']
                                                                         ['resourceVersion'])


@pytest.mark.parametrize('resource_version', [None, '0'])
async def test_a_watch_without_a_resource_version_starts_with_the_current_objects(
        client: Client, kmock: Any, resource_version: str | None) -> None:
    await client.ok('POST', CONFIGMAPS, configmap('a'))
    await client.ok('POST', CONFIGMAPS, configmap('b'))
    params = {} if resource_version is None else {'resourceVersion': resource_version}
    async with open_watch(kmock, CONFIGMAPS, **params) as watch:
        assert summary(await watch.take(2)) == [('ADDED', 'a'), ('ADDED', 'b')]
        await client.ok('POST', CONFIGMAPS, configmap('c'))
        assert summary(await watch.take(1)) == [('ADDED', 'c')]


async def test_bookmarks_carry_the_current_resource_version(client: Client, kmock: Any) -> None:
    kmock.bookmark_interval = 0.05
    async with open_watch(kmock, CONFIGMAPS, resourceVersion='0', allowWatchBookmarks='true') as watch:
        await client.ok('POST', '/api/v1/namespaces/kube-system/configmaps', configmap('elsewhere'))
        bookmark = await watch.next()
    assert bookmark['type'] == 'BOOKMARK'
    assert bookmark['object']['kind'] == 'ConfigMap' and bookmark['object']['apiVersion'] == 'v1'
    assert bookmark['object']['metadata']['resourceVersion'] == str(kmock.store.resource_version)


async def test_timeout_seconds_ends_the_stream(client: Client, kmock: Any) -> None:
    await client.ok('POST', CONFIGMAPS, configmap('a'))
    async with open_watch(kmock, CONFIGMAPS, timeoutSeconds='1') as watch:
        assert summary(await watch.rest()) == [('ADDED', 'a')]


@pytest.mark.kmock(change_window=3)  # a short change log, to outgrow it quickly
async def test_a_resource_version_older_than_the_log_is_410_gone(client: Client, kmock: Any) -> None:
    first = await client.ok('POST', CONFIGMAPS, configmap('a'))
    for index in range(5):
        await client.ok('POST', CONFIGMAPS, configmap(f'more{index}'))
    async with open_watch(kmock, CONFIGMAPS, resourceVersion=first['metadata']['resourceVersion']) as watch:
        events = await watch.rest()
    assert len(events) == 1 and events[0]['type'] == 'ERROR'
    status = events[0]['object']
    assert status['kind'] == 'Status' and status['code'] == 410 and status['reason'] == 'Expired'
    assert status['message'].startswith('too old resource version: ')


async def test_selectors_filter_events_and_leaving_the_selection_is_a_deletion(client: Client, kmock: Any) -> None:
    await client.ok('POST', CONFIGMAPS, {'metadata': {'name': 'a', 'labels': {'tier': 'web'}}})
    async with open_watch(kmock, CONFIGMAPS, labelSelector='tier=web', resourceVersion='0') as watch:
        assert summary(await watch.take(1)) == [('ADDED', 'a')]
        await client.ok('POST', CONFIGMAPS, {'metadata': {'name': 'other', 'labels': {'tier': 'db'}}})
        await client.ok('PATCH', f'{CONFIGMAPS}/a', {'metadata': {'labels': {'tier': 'db'}}}, content_type=MERGE)
        left = await watch.next()
        await client.ok('PATCH', f'{CONFIGMAPS}/other', {'metadata': {'labels': {'tier': 'web'}}},
                        content_type=MERGE)
        joined = await watch.next()
    assert summary([left, joined]) == [('DELETED', 'a'), ('ADDED', 'other')]
    assert left['object']['metadata']['labels'] == {'tier': 'web'}  # its last matching state


async def test_a_single_object_watch_by_field_selector(client: Client, kmock: Any) -> None:
    await client.ok('POST', CONFIGMAPS, configmap('a'))
    await client.ok('POST', CONFIGMAPS, configmap('b'))
    async with open_watch(kmock, CONFIGMAPS, fieldSelector='metadata.name=b', resourceVersion='0') as watch:
        assert summary(await watch.take(1)) == [('ADDED', 'b')]
        await client.ok('DELETE', f'{CONFIGMAPS}/a')
        await client.ok('DELETE', f'{CONFIGMAPS}/b')
        assert summary(await watch.take(1)) == [('DELETED', 'b')]


async def test_send_initial_events_ends_the_initial_state_with_a_bookmark(client: Client, kmock: Any) -> None:
    await client.ok('POST', CONFIGMAPS, configmap('a'))
    async with open_watch(kmock, CONFIGMAPS, sendInitialEvents='true', resourceVersionMatch='NotOlderThan',
                          allowWatchBookmarks='true') as watch:
        added, bookmark = await watch.take(2)
    assert summary([added]) == [('ADDED', 'a')]
    assert bookmark['type'] == 'BOOKMARK'
    assert bookmark['object']['metadata']['annotations'] == {'k8s.io/initial-events-end': 'true'}
    invalid = await client.get(CONFIGMAPS, params={'watch': 'true', 'sendInitialEvents': 'true'})
    assert invalid.status == 422 and invalid.body['reason'] == 'Invalid'
