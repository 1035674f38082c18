"""Server-side printing: Tables with a CRD's printer columns, for lists, objects and watches."""

from __future__ import annotations

from typing import Any

from tests.local.conftest import CONFIGMAPS, WIDGETS, Client, Watch, configmap, widget

TABLE = 'application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json'


async def test_a_list_as_table_uses_the_crd_printer_columns(client: Client) -> None:
    await client.install_widgets()
    await client.ok('POST', WIDGETS, widget('w', size=4))
    await client.ok('PATCH', f'{WIDGETS}/w/status', {'status': {'phase': 'Ready'}},
                    content_type='application/merge-patch+json')
    table = await client.ok('GET', WIDGETS, headers={'Accept': TABLE})
    assert table['kind'] == 'Table' and table['apiVersion'] == 'meta.k8s.io/v1'
    assert [column['name'] for column in table['columnDefinitions']] == ['Name', 'Size', 'Phase']
    assert [row['cells'] for row in table['rows']] == [['w', 4, 'Ready']]
    assert table['rows'][0]['object']['kind'] == 'PartialObjectMetadata'
    assert table['metadata']['resourceVersion']


async def test_a_single_object_and_built_in_kinds_as_tables(client: Client) -> None:
    await client.ok('POST', CONFIGMAPS, configmap('a', x='1', y='2'))
    table = await client.ok('GET', f'{CONFIGMAPS}/a', headers={'Accept': TABLE},
                            params={'includeObject': 'Object'})
    assert [column['name'] for column in table['columnDefinitions']][:2] == ['Name', 'Data']
    assert table['rows'][0]['cells'][:2] == ['a', 2]
    assert table['rows'][0]['object']['data'] == {'x': '1', 'y': '2'}


async def test_a_watch_as_table_sends_column_definitions_first(client: Client, kmock: Any) -> None:
    await client.ok('POST', CONFIGMAPS, configmap('a'))
    async with kmock.get(CONFIGMAPS, params={'watch': 'true', 'resourceVersion': '0'},
                         headers={'Accept': TABLE}) as response:
        watch = Watch(response)
        first = await watch.next()
        await client.ok('POST', CONFIGMAPS, configmap('b'))
        second = await watch.next()
    assert first['object']['kind'] == 'Table' and first['object']['columnDefinitions']
    assert first['object']['rows'][0]['cells'][0] == 'a'
    assert 'columnDefinitions' not in second['object'] and second['object']['rows'][0]['cells'][0] == 'b'


async def test_partial_object_metadata_lists(client: Client) -> None:
    await client.ok('POST', CONFIGMAPS, configmap('a', x='1'))
    listing = await client.ok('GET', CONFIGMAPS, headers={
        'Accept': 'application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io'})
    assert listing['kind'] == 'PartialObjectMetadataList'
    assert listing['items'][0]['kind'] == 'PartialObjectMetadata' and 'data' not in listing['items'][0]
