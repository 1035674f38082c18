"""Creating objects: 201, namespaces from the URL, status dropped, generateName, dry runs."""

from __future__ import annotations

import re

from tests.local.conftest import CONFIGMAPS, WIDGETS, Client, configmap, widget


async def test_post_answers_201_with_the_stored_object(client: Client) -> None:
    reply = await client.post(CONFIGMAPS, configmap('a', x='1'))
    assert reply.status == 201
    stored = await client.ok('GET', f'{CONFIGMAPS}/a')
    assert reply.body == stored
    assert stored['apiVersion'] == 'v1' and stored['kind'] == 'ConfigMap' and stored['data'] == {'x': '1'}


async def test_the_namespace_comes_from_the_url(client: Client) -> None:
    created = await client.ok('POST', '/api/v1/namespaces/kube-system/configmaps', configmap('a'))
    assert created['metadata']['namespace'] == 'kube-system'
    mismatched = configmap('b')
    mismatched['metadata']['namespace'] = 'kube-public'
    reply = await client.post(CONFIGMAPS, mismatched)
    assert reply.status == 400
    assert reply.body['reason'] == 'BadRequest'
    assert reply.body['message'] == ('the namespace of the provided object does not match the namespace sent on '
                                     'the request')


async def test_status_is_dropped_on_create_when_status_is_a_subresource(client: Client) -> None:
    await client.install_widgets()
    created = await client.ok('POST', WIDGETS, {**widget('w'), 'status': {'phase': 'Done'}})
    assert 'status' not in created
    # Without a status subresource, status is an ordinary field and is kept.
    kept = await client.ok('POST', CONFIGMAPS, {**configmap('c'), 'status': {'anything': 'x'}})
    assert kept['status'] == {'anything': 'x'}


async def test_generate_name_appends_a_random_five_character_suffix(client: Client) -> None:
    names = set()
    for _ in range(3):
        created = await client.ok('POST', CONFIGMAPS, {'metadata': {'generateName': 'job-'}})
        assert re.fullmatch(r'job-[bcdfghjklmnpqrstvwxz2456789]{5}', created['metadata']['name'])
        names.add(created['metadata']['name'])
    assert len(names) == 3


async def test_a_name_or_generate_name_is_required(client: Client) -> None:
    reply = await client.post(CONFIGMAPS, {'data': {}})
    assert reply.status == 422
    assert reply.body['details']['causes'] == [
        {'reason': 'FieldValueRequired', 'message': 'Required value: name or generateName is required',
         'field': 'metadata.name'}]


async def test_an_invalid_name_is_refused_with_the_field_named(client: Client) -> None:
    reply = await client.post(CONFIGMAPS, configmap('Not_Valid'))
    assert reply.status == 422
    assert reply.body['message'].startswith('ConfigMap "Not_Valid" is invalid: metadata.name: Invalid value: '
                                            '"Not_Valid": a lowercase RFC 1123 subdomain')
    namespace = await client.post('/api/v1/namespaces', {'metadata': {'name': 'a.b'}})
    assert namespace.status == 422 and 'RFC 1123 label' in namespace.body['message']


async def test_dry_run_validates_but_persists_nothing(client: Client) -> None:
    params = {'dryRun': 'All'}
    dry = await client.post(CONFIGMAPS, configmap('a', x='1'), params=params)
    assert dry.status == 201 and dry.body['metadata']['name'] == 'a'
    assert (await client.get(f'{CONFIGMAPS}/a')).status == 404
    invalid = await client.post(CONFIGMAPS, configmap('Bad'), params=params)
    assert invalid.status == 422

    stored = await client.ok('POST', CONFIGMAPS, configmap('a', x='1'))
    patched = await client.patch(f'{CONFIGMAPS}/a', {'data': {'x': '2'}}, params=params)
    replaced = await client.put(f'{CONFIGMAPS}/a', {**stored, 'data': {'x': '3'}}, params=params)
    deleted = await client.delete(f'{CONFIGMAPS}/a', params=params)
    assert (patched.status, replaced.status, deleted.status) == (200, 200, 200)
    assert patched.body['data'] == {'x': '2'} and replaced.body['data'] == {'x': '3'}
    assert await client.ok('GET', f'{CONFIGMAPS}/a') == stored


async def test_an_unsupported_dry_run_value_is_refused(client: Client) -> None:
    reply = await client.post(CONFIGMAPS, configmap('a'), params={'dryRun': 'Some'})
    assert reply.status == 400
    assert reply.body['message'] == 'dryRun: Unsupported value: "Some": supported values: "All"'


async def test_a_body_of_another_kind_is_refused(client: Client) -> None:
    reply = await client.post(CONFIGMAPS, {'apiVersion': 'v1', 'kind': 'Secret', 'metadata': {'name': 'a'}})
    assert reply.status == 400 and 'kind' in reply.body['message']
    shape = await client.post(CONFIGMAPS, {'metadata': {'name': 'a', 'labels': {'x': 1}}})
    assert shape.status == 400
    assert 'cannot unmarshal number into Go struct field ObjectMeta.metadata.labels' in shape.body['message']
