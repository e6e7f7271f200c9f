"""The server tells the service: an MLflow server with webhooks calls the service when an alias moves, signed; the service checks and
swaps at once, long before its next look at the registry; a forged call is refused; the secret lands nowhere."""
import time

import httpx
import pytest

from conftest import cli, run_stages
from mlops_nb.core import load_config
from mlops_nb.register import deployments
from mlops_nb.serve import Server, make_app
from team import TrackingServer
from test_data_inputs import sales, sales_params

pytestmark = pytest.mark.xdist_group('auth')  # a server of its own, light: beside the auth tests

SECRET = 'webhook-secret-5151'
HOOKED = {'MLFLOW_WEBHOOK_ALLOWED_SCHEMES': 'http,https', 'MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS': 'true',  # the service is on loopback
          'MLFLOW_WEBHOOK_CACHE_TTL': '1', 'MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY': 'x3Ie2xG1pq7Zhb5m3cA0yVdCHi7c9Yy7u8R0xJbV7lU='}

def serves(url, version, seconds):
    "Seconds until the service at `url` answers with `version`, or None after `seconds`."
    started = time.time()
    while time.time() - started < seconds:
        if httpx.get(f'{url}/health').json()['version'] == str(version): return time.time() - started
        time.sleep(0.02)
    return None

def test_a_moved_alias_is_served_at_once_when_the_server_says_so(tmp_path):
    server = TrackingServer(f"sqlite:///{tmp_path/'mlflow.db'}", tmp_path/'artifacts', HOOKED).start()
    try:
        root = tmp_path/'project'
        root.mkdir()
        sales().write_csv(root/'sales.csv')
        (root/'mlops.toml').write_text(f'[mlflow]\nmodel_name = "big-sales"\ntracking_uri = "{server.url}"\n\n' + sales_params())
        for max_iter in (100, 20): run_stages(root, overrides=[f'train.max_iter={max_iter}'])
        cfg = load_config(root)
        with Server(make_app(cfg, log_folder=tmp_path/'log', reload_seconds=600, hook_secret=SECRET)) as service:  # a look every 10 minutes
            hook = cli(root, 'webhook', f'{service.url}/hooks/registry', MLOPS_NB_WEBHOOK_SECRET=SECRET)
            assert hook.returncode == 0 and 'now POSTs every alias move of big-sales' in hook.stdout, hook.stdout + hook.stderr
            assert cli(root, 'webhook', 'http://127.0.0.1:1/hooks/registry').returncode == 2  # no secret: refused before asking the server
            time.sleep(1.5)  # the server caches its list of webhooks for MLFLOW_WEBHOOK_CACHE_TTL seconds
            moved = cli(root, 'promote', '2', '--force', '--reason', 'told by webhook')
            assert moved.returncode == 0, moved.stdout + moved.stderr
            assert serves(service.url, 2, 30) is not None  # with a 10-minute poll, only the webhook can have said so
            assert cli(root, 'rollback', '--reason', 'and back').returncode == 0
            assert serves(service.url, 1, 30) is not None
            forged = httpx.post(f'{service.url}/hooks/registry', json={'entity': 'model_version_alias', 'data': {'name': 'big-sales', 'alias': 'champion'}},
                                headers={'x-mlflow-signature': 'v1,AAAA', 'x-mlflow-delivery-id': 'x', 'x-mlflow-timestamp': str(int(time.time()))})
            assert forged.status_code == 401 and forged.json() == {'error': 'refused: a wrong signature'}
        swaps = [(d['replaced'], d['version']) for d in deployments(cfg) if d['event'] == 'service swap']
        assert swaps == [('1', '2'), ('2', '1')], swaps
        written = [p for p in root.rglob('*') if p.is_file() and SECRET.encode() in p.read_bytes()]
        assert written == [] and SECRET not in hook.stdout + hook.stderr
    finally:
        server.stop()
