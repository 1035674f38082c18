"""PATCH in its four content types, as kube-apiserver accepts and refuses them."""

from __future__ import annotations

import json

from tests.local.conftest import CONFIGMAPS, WIDGETS, Client, configmap, widget

MERGE = 'application/merge-patch+json'
JSON_PATCH = 'application/json-patch+json'
STRATEGIC = 'application/strategic-merge-patch+json'
APPLY = 'application/apply-patch+yaml'
DEPLOYMENTS = '/apis/apps/v1/namespaces/default/deployments'


def deployment(*containers: dict[str, str]) -> dict:
    return {'apiVersion': 'apps/v1', 'kind': 'Deployment', 'metadata': {'name': 'd'},
            'spec': {'selector': {'matchLabels': {'app': 'd'}},
                     'template': {'metadata': {'labels': {'app': 'd'}}, 'spec': {'containers': list(containers)}}}}


async def test_merge_patch_merges_objects_and_removes_nulls(client: Client) -> None:
    await client.ok('POST', CONFIGMAPS, configmap('a', x='1', y='2'))
    patched = await client.ok('PATCH', f'{CONFIGMAPS}/a', {'data': {'x': None, 'z': '3'}}, content_type=MERGE)
    assert patched['data'] == {'y': '2', 'z': '3'}


async def test_json_patch_applies_operations_in_order(client: Client) -> None:
    created = await client.ok('POST', CONFIGMAPS, configmap('a', x='1'))
    ops = [{'op': 'test', 'path': '/metadata/resourceVersion', 'value': created['metadata']['resourceVersion']},
           {'op': 'add', 'path': '/metadata/finalizers', 'value': ['example.com/f']},
           {'op': 'replace', 'path': '/data/x', 'value': '2'}]
    patched = await client.ok('PATCH', f'{CONFIGMAPS}/a', ops, content_type=JSON_PATCH)
    assert patched['metadata']['finalizers'] == ['example.com/f'] and patched['data'] == {'x': '2'}


async def test_a_failed_json_patch_test_is_422_and_changes_nothing(client: Client) -> None:
    created = await client.ok('POST', CONFIGMAPS, configmap('a', x='1'))
    ops = [{'op': 'test', 'path': '/metadata/resourceVersion', 'value': '1'},
           {'op': 'replace', 'path': '/data/x', 'value': '2'}]
    reply = await client.patch(f'{CONFIGMAPS}/a', ops, content_type=JSON_PATCH)
    assert reply.status == 422 and reply.body['reason'] == 'Invalid'
    assert 'testing value /metadata/resourceVersion failed' in reply.body['message']
    assert await client.ok('GET', f'{CONFIGMAPS}/a') == created
    malformed = await client.patch(f'{CONFIGMAPS}/a', [{'path': '/data'}], content_type=JSON_PATCH)
    assert malformed.status == 400


async def test_strategic_merge_patch_merges_lists_by_key_for_built_in_kinds(client: Client) -> None:
    await client.ok('POST', DEPLOYMENTS, deployment({'name': 'a', 'image': 'a:1'}, {'name': 'b', 'image': 'b:1'}))
    patch = {'spec': {'template': {'spec': {
        '$setElementOrder/containers': [{'name': 'a'}, {'name': 'b'}],
        'containers': [{'name': 'b', 'image': 'b:2'}]}}}}
    patched = await client.ok('PATCH', f'{DEPLOYMENTS}/d', patch, content_type=STRATEGIC)
    assert patched['spec']['template']['spec']['containers'] == [{'name': 'a', 'image': 'a:1'},
                                                                 {'name': 'b', 'image': 'b:2'}]
    assert '$setElementOrder/containers' not in json.dumps(patched)


async def test_strategic_merge_patch_of_a_custom_resource_is_unsupported_media_type(client: Client) -> None:
    await client.install_widgets()
    await client.ok('POST', WIDGETS, widget('w'))
    reply = await client.patch(f'{WIDGETS}/w', {'spec': {'size': 2}}, content_type=STRATEGIC)
    assert reply.status == 415 and reply.body['reason'] == 'UnsupportedMediaType'
    assert 'application/merge-patch+json' in reply.body['message']


async def test_an_unknown_patch_content_type_is_unsupported_media_type(client: Client) -> None:
    await client.ok('POST', CONFIGMAPS, configmap('a'))
    reply = await client.patch(f'{CONFIGMAPS}/a', {'data': {}}, content_type='application/json')
    assert reply.status == 415


async def test_server_side_apply_creates_then_merges(client: Client) -> None:
    await client.install_widgets()
    first = 'apiVersion: test.kubeloop.dev/v1\nkind: Widget\nmetadata:\n  name: w\nspec:\n  size: 2\n'
    created = await client.patch(f'{WIDGETS}/w', first, content_type=APPLY, params={'fieldManager': 'me'})
    assert created.status == 201 and created.body['spec'] == {'size': 2, 'color': 'blue'}
    second = ('apiVersion: test.kubeloop.dev/v1\nkind: Widget\nmetadata:\n  name: w\n  labels: {a: b}\n'
              'spec:\n  size: 3\n  parts: [{name: p, count: 1}]\n')
    merged = await client.patch(f'{WIDGETS}/w', second, content_type=APPLY, params={'fieldManager': 'me'})
    assert merged.status == 200
    assert merged.body['spec'] == {'size': 3, 'color': 'blue', 'parts': [{'name': 'p', 'count': 1}]}
    assert merged.body['metadata']['labels'] == {'a': 'b'}
    assert merged.body['metadata']['uid'] == created.body['metadata']['uid']


async def test_server_side_apply_requires_a_field_manager(client: Client) -> None:
    body = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n'
    reply = await client.patch(f'{CONFIGMAPS}/a', body, content_type=APPLY)
    assert reply.status == 400 and 'fieldManager is required' in reply.body['message']
