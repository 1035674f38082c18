"""Running the local API server: in a background thread, and as `kubeloop local apiserver`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from kubeloop.local.apiserver import LocalAPIServer, RunningAPIServer
from kubeloop.local.supervisor import free_port

HANG_GUARD = 60  # seconds: only stops a hang


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=HANG_GUARD) as response:  # noqa: S310 - loopback only
        return json.loads(response.read())


def test_running_in_a_thread_serves_on_loopback_and_writes_a_kubeconfig(tmp_path: Path) -> None:
    with RunningAPIServer(kubeconfig_path=tmp_path / 'kubeconfig') as running:
        assert running.url == f'http://127.0.0.1:{running.port}'
        assert isinstance(running.server, LocalAPIServer)
        assert get_json(f'{running.url}/api/v1/namespaces/default')['metadata']['name'] == 'default'
        config = yaml.safe_load(running.kubeconfig_path.read_text())
        assert config['current-context'] == 'kubeloop-local'
        assert config['clusters'] == [{'name': 'kubeloop-local', 'cluster': {'server': running.url}}]
        assert config['users'][0]['name'] == 'kubeloop-local' and config['users'][0]['user']['token']
        assert running.kubeconfig_path.stat().st_mode & 0o077 == 0
        other = running.write_kubeconfig(tmp_path / 'elsewhere' / 'config')
        assert yaml.safe_load(other.read_text())['clusters'][0]['cluster']['server'] == running.url
        assert running.call(lambda server: server.store.resource_version) > 0


def test_main_serves_until_sigterm_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    kubeconfig = tmp_path / 'kubeconfig'
    code = 'import sys; from kubeloop.local.apiserver import main; sys.exit(main(sys.argv[1:]))'
    process = subprocess.Popen([sys.executable, '-c', code, '--port', str(port), '--kubeconfig', str(kubeconfig)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not any('listening on' in line for line in lines):
            line = process.stdout.readline()  # type: ignore[union-attr]
            assert line, f'the server exited early: {process.stderr.read()}'  # type: ignore[union-attr]
            lines.append(line)
        assert lines[-1].strip() == f'kubeloop local API server listening on http://127.0.0.1:{port}'
        assert yaml.safe_load(kubeconfig.read_text())['clusters'][0]['cluster']['server'].endswith(f':{port}')
        assert get_json(f'http://127.0.0.1:{port}/version')['minor'] == '37'
        process.send_signal(signal.SIGTERM)
        assert process.wait(HANG_GUARD) == 0
        assert 'stopped' in process.stdout.read()  # type: ignore[union-attr]
    finally:
        if process.poll() is None:
            process.kill()
