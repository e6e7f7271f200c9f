"A team's set-up: a real MLflow tracking server on loopback (SQLite backend), and regression on the user's own data end to end."
import json, socket, subprocess, sys, time, urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

import conftest

from test_data_inputs import sales

pytestmark = pytest.mark.xdist_group('mlflow_server')

BIN = Path(sys.executable).parent

def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

@pytest.fixture(scope='session')
def server(tmp_path_factory):
    "An MLflow server on 127.0.0.1, stopped after the module."
    d, port = tmp_path_factory.mktemp('server'), free_port()
    proc = subprocess.Popen([BIN/'mlflow', 'server', '--backend-store-uri', f"sqlite:///{d/'server.db'}", '--host', '127.0.0.1',
                             '--port', str(port), '--workers', '1'], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url, deadline = f'http://127.0.0.1:{port}', time.time() + 120
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f'{url}/health', timeout=2).status == 200: break
        except OSError: time.sleep(0.5)
    else: proc.kill(); pytest.fail('the MLflow server did not start within 120 s')
    yield url
    proc.terminate(); proc.wait(timeout=30)

def cli(root, url, *args):
    "Run `mlops-nb` in `root` against the tracking server at `url`."
    return conftest.cli(root, *args, MLFLOW_TRACKING_URI=url)

CONFIG = '''
[mlflow]
model_name = "store-revenue"

[stages.data.params]
source = "sales.csv"
target = "revenue"
task = "regression"
time_column = "day"
id_column = ""
exclude = ["big", "units"]

[stages.monitor.params]
retrain_on = []
min_rows = 50
'''

def test_regression_on_own_data_registers_promotes_and_rolls_back_on_a_tracking_server(server, tmp_path):
    sales().write_csv(tmp_path/'sales.csv')
    (tmp_path/'mlops.toml').write_text(CONFIG)
    first = cli(tmp_path, server, 'run')
    assert first.returncode == 0, first.stderr[-3000:]
    m = json.loads(next((tmp_path/'runs').glob('*/manifest.json')).read_text())
    evaluate = json.loads((tmp_path/'runs'/m['run_id']/'30_evaluate.json').read_text())
    assert evaluate['task'] == 'regression' and {'r2', 'mae', 'rmse'} <= set(evaluate['scores']['challenger'])
    assert evaluate['scores']['challenger']['r2'] > evaluate['scores']['baseline']['r2']
    assert m['mlflow']['tracking_uri'] == server and not (tmp_path/'mlflow.db').exists()
    monitor = json.loads((tmp_path/'runs'/m['run_id']/'65_monitor.json').read_text())
    assert monitor['timeline'] and all(t['r2'] is not None for t in monitor['timeline']) and monitor['retrains'] == []
    second = cli(tmp_path, server, 'run', '-p', 'train.max_iter=50')
    assert second.returncode == 0, second.stderr[-3000:]
    client = MlflowClient(tracking_uri=server)
    assert client.get_model_version_by_alias('store-revenue', 'challenger').version == '2'
    assert cli(tmp_path, server, 'promote', '2', '--reason', 'fewer rounds').returncode == 0
    assert client.get_model_version_by_alias('store-revenue', 'champion').version == '2'
    assert cli(tmp_path, server, 'rollback').returncode == 0
    assert client.get_model_version_by_alias('store-revenue', 'champion').version == '1'
    history = [json.loads(v) for k, v in sorted(client.get_registered_model('store-revenue').tags.items()) if k.startswith('mlops_nb.alias.')]
    moves = [(e['from'], e['to'], e['kind']) for e in history if e['alias'] == 'champion']
    assert moves[0] == (None, '1', 'gate') and moves[-1] == ('2', '1', 'rollback') and moves[-2][1] == '2', moves
