"""OpenAPI v3 for kubectl: the index with hashed URLs, one document per group version."""

from __future__ import annotations

from tests.local.conftest import GROUP, Client


async def test_the_index_links_every_served_group_version_by_hash(client: Client) -> None:
    await client.install_widgets()
    index = await client.ok('GET', '/openapi/v3')
    assert {'api/v1', 'apis/apps/v1', f'apis/{GROUP}/v1'} <= set(index['paths'])
    url = index['paths'][f'apis/{GROUP}/v1']['serverRelativeURL']
    assert url.startswith(f'/openapi/v3/apis/{GROUP}/v1?hash=')
    document = await client.ok('GET', url)
    assert document['openapi'].startswith('3.')
    patch = document['paths'][f'/apis/{GROUP}/v1/namespaces/{{namespace}}/widgets/{{name}}']['patch']
    assert patch['x-kubernetes-group-version-kind'] == {'group': GROUP, 'version': 'v1', 'kind': 'Widget'}
    assert any(parameter.get('name') == 'fieldValidation' for parameter in patch.get('parameters', []))


async def test_the_index_changes_when_a_crd_changes_and_v2_is_not_served(client: Client) -> None:
    crd = await client.install_widgets()
    before = (await client.ok('GET', '/openapi/v3'))['paths'][f'apis/{GROUP}/v1']['serverRelativeURL']
    crd['spec']['versions'][0]['schema']['openAPIV3Schema']['properties']['spec']['properties']['extra'] = {
        'type': 'string'}
    await client.ok('PUT', f'/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd["metadata"]["name"]}', crd)
    after = (await client.ok('GET', '/openapi/v3'))['paths'][f'apis/{GROUP}/v1']['serverRelativeURL']
    assert before != after
    assert (await client.get('/openapi/v2')).status == 404
    assert (await client.get('/openapi/v3/apis/nowhere.io/v1')).status == 404
