"Day two on a team server: MLflow backed by PostgreSQL (SQLite where it is not installed) with proxied artifacts, two clones, the next run, the next batch, the next teammate."
import json, shutil, time
from pathlib import Path

import httpx
import polars as pl
import pytest

import conftest

from mlops_nb.core import load_config
from mlops_nb.serve import Server, make_app
from mlops_nb.register import alias_history, deployments
from test_own_data import package_file

pytestmark = pytest.mark.xdist_group('team')  # with test_faults: they share the team's server

CONFIG = '''
[mlflow]
model_name = "texas-median"

[stages.data.params]
source = "txhousing.csv"
target = "median"
task = "regression"
time_column = "period"
time_parts = ["year", "month"]
window = "year"
exclude = ["date"]

[stages.train.params]
max_iter = 30

[stages.monitor.params]
retrain_cooldown = 50
'''

def clone(folder:Path)->Path:
    "A fresh clone of the project: its configuration, its data and its committed contract, if any."
    folder.mkdir(parents=True)
    (folder/'mlops.toml').write_text(CONFIG)
    shutil.copy(package_file('plotnine', 'data', 'txhousing.csv'), folder/'txhousing.csv')
    return folder

def cli(root, server, *args):
    "Run `mlops-nb` in `root` against the team's tracking server."
    return conftest.cli(root, *args, MLFLOW_TRACKING_URI=server.url)

def record(root, stage):
    return json.loads(sorted((root/'runs').glob(f'*/{stage}.json'))[-1].read_text())

def batch(root, year, name, scale=1.2):
    "A later year of the data as a new batch file, its prices risen by `scale`, labels included."
    df = pl.read_csv(root/'txhousing.csv', null_values='NA', infer_schema_length=None).filter(pl.col('year') == year)
    df.with_columns(pl.col('median') * scale, pl.col('volume') * scale).write_csv(root/name)
    return name

def follows(url, version, seconds=30):
    "Whether the service at `url` serves `version` within `seconds`."
    deadline = time.time() + seconds
    while time.time() < deadline:
        if httpx.get(f'{url}/health').json()['version'] == str(version): return True
        time.sleep(0.2)
    return False

def test_the_next_run_the_next_batch_and_the_next_teammate(team_server, tmp_path):
    server = team_server
    a, b = clone(tmp_path/'clone-a'), tmp_path/'clone-b'
    first = cli(a, server, 'run')
    assert first.returncode == 0, first.stderr[-3000:]
    assert record(a, '40_register')['champion'] == {'before': None, 'after': '1'} and record(a, '50_deploy')['deployment']['version'] == '1'
    assert not (a/'mlflow.db').exists() and not (a/'mlartifacts').exists()
    cfg_a = load_config(a)
    cfg_a['mlflow']['tracking_uri'] = server.url
    with Server(make_app(cfg_a, log_folder=tmp_path/'log', reload_seconds=0.3)) as service:
        assert follows(service.url, 1)
        better = cli(a, server, 'run', '-p', 'train.max_iter=200')
        assert better.returncode == 0, better.stderr[-3000:]
        evaluate = record(a, '30_evaluate')
        assert evaluate['comparison']['on'] == 'the holdout' and evaluate['gate']['passed'], evaluate['gate']
        assert evaluate['comparison']['scores']['challenger']['r2'] > evaluate['comparison']['scores']['champion']['r2']
        assert record(a, '50_deploy')['deployment']['version'] == '2' and follows(service.url, 2)
        weaker = cli(a, server, 'run', '-p', 'train.max_iter=3')
        assert weaker.returncode == 0, weaker.stderr[-3000:]
        refused = record(a, '40_register')
        assert refused['metrics'] == {'version': 3, 'champion': 2, 'promoted': False}
        assert any('vs champion' in r for r in refused['refused']), refused['refused']
        monitored = cli(a, server, 'monitor', batch(a, 2015, 'new-2015.csv'))
        assert monitored.returncode == 3 and 'ALERT [drift] new-2015' in monitored.stdout, monitored.stdout[-2000:] + monitored.stderr[-2000:]
        again = cli(a, server, 'run')  # the first run's parameters again: its model, but today's champion is v2, so the gate runs again
        assert again.returncode == 0, again.stderr[-3000:]
        why = {s['name']: s.get('why') for s in conftest.latest_manifest(a)['stages']}
        assert why['train'] is None and why['evaluate'] == 'texas-median@champion moved: unset -> v2', why
        assert str(record(a, '30_evaluate')['champion_version']) == '2'
        assert record(a, '40_register')['metrics'] == {'version': 1, 'champion': 2, 'promoted': False}
        clone(b)
        shutil.copy(a/'contract.toml', b/'contract.toml')
        retrained = cli(b, server, 'monitor', batch(b, 2014, 'new-2014.csv'), '--retrain')
        assert retrained.returncode == 3 and 'retrained: v4' in retrained.stdout, retrained.stdout[-3000:] + retrained.stderr[-2000:]
        assert not (b/'runs'/'10_data.json').exists() and not list((b/'runs').glob('*/10_data.json'))
        rec = json.loads((Path(retrained.stdout.split('record: ')[-1].strip())/'65_monitor.json').read_text())
        assert rec['retraining']['windows'] == ['champion training data', 'new-2015']
        if not rec['retraining']['promoted']: assert cli(b, server, 'promote', '4', '--reason', 'retrained on 2015', '--force').returncode == 0
        assert follows(service.url, 4)
        back = cli(b, server, 'rollback', '--reason', 'checking the rollback')
        assert back.returncode == 0 and 'v4 -> v2' in back.stdout, back.stdout + back.stderr
        assert follows(service.url, 2)
        cfg_b = load_config(b)
        cfg_b['mlflow']['tracking_uri'] = server.url
        history = alias_history(cfg_a)
        assert history == alias_history(cfg_b)
        assert [(e['from'], e['to'], e['kind']) for e in history if e['alias'] == 'champion'] == \
               [(None, '1', 'gate'), ('1', '2', 'gate'), ('2', '4', 'retrain' if rec['retraining']['promoted'] else 'promote'), ('4', '2', 'rollback')]
        swaps = [(d['replaced'], d['version']) for d in deployments(cfg_a) if d['event'] == 'service swap']
        assert swaps == [('1', '2'), ('2', '4'), ('4', '2')]
        assert cli(a, server, 'versions').stdout == cli(b, server, 'versions').stdout
        assert 'new-2015' in cli(b, server, 'monitoring').stdout
        lineage = cli(b, server, 'lineage')
        assert lineage.returncode == 0, lineage.stdout + lineage.stderr
