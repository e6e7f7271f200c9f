"The default project's lifecycle run by Airflow from the exported DAGs: each stage a task; a second working copy's DAG run reuses every stage through the store; the monitoring DAG monitors a file that landed."
import json, os, shutil, subprocess, sys, time
from pathlib import Path

import pytest

import conftest

AIRFLOW = 'apache-airflow>=3.1,<4'
VENV = Path.home()/'.cache'/'mlops-nb'/'airflow-venv'  # Airflow in a virtual environment of its own: its pins are not the project's

RUN_DAG = '''
import runpy, sys
dag = runpy.run_path(sys.argv[1])[sys.argv[2]]
print('DAG RUN', dag.test().state)
'''

@pytest.fixture(scope='module')
def airflow(tmp_path_factory):
    "Airflow's Python, with a throwaway SQLite metadata database; the environment to run it in."
    python = VENV/'bin'/'python'
    if not python.exists():
        made = subprocess.run([sys.executable, '-m', 'venv', str(VENV)], capture_output=True, text=True)
        made = made if made.returncode else subprocess.run([str(python), '-m', 'pip', 'install', '-q', AIRFLOW], capture_output=True, text=True)
        if made.returncode:
            shutil.rmtree(VENV, ignore_errors=True)
            if os.environ.get('CI'): pytest.fail(f'could not install {AIRFLOW}: {made.stderr[-2000:]}')
            pytest.skip(f'could not install {AIRFLOW} (no package index?): {made.stderr[-500:]}')
    home = tmp_path_factory.mktemp('airflow-home')
    env = {**os.environ, 'AIRFLOW_HOME': str(home), 'AIRFLOW__CORE__LOAD_EXAMPLES': 'False', 'AIRFLOW__CORE__UNIT_TEST_MODE': 'False'}
    migrated = subprocess.run([str(VENV/'bin'/'airflow'), 'db', 'migrate'], env=env, capture_output=True, text=True)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    (home/'run_dag.py').write_text(RUN_DAG)
    return python, home/'run_dag.py', env

def run_dag(airflow, dag_file, name, **env):
    "Run DAG `name` of `dag_file` once with `dag.test()`; the output."
    python, script, base = airflow
    env = {**base, 'AIRFLOW__CORE__DAGS_FOLDER': str(Path(dag_file).parent), **env}  # the file in the deployment's dags folder
    done = subprocess.run([str(python), str(script), str(dag_file), name], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0 and 'DAG RUN success' in done.stdout, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout + done.stderr

def export(root):
    done = conftest.cli(root, 'export', 'airflow', '--out', str(root/'dags'))
    assert done.returncode == 0, done.stderr
    return next((root/'dags').glob('*.py'))

def test_airflow_runs_the_lifecycle_a_task_a_stage(airflow, tmp_path):
    a, b, store = tmp_path/'worker-a', tmp_path/'worker-b', tmp_path/'store'
    tracking = {'MLFLOW_TRACKING_URI': f"sqlite:///{tmp_path/'team.db'}"}  # the team's tracking store, shared by both
    for root in (a, b):
        root.mkdir()
        (root/'mlops.toml').write_text(f'[store]\nurl = "{store}"\n')
    started = time.time()
    out = run_dag(airflow, export(a), 'pipeline', **tracking)
    took = time.time() - started
    first = conftest.latest_manifest(a)
    assert first['status'] == 'ok' and [s['status'] for s in first['stages']] == ['ran'] * 6, first['stages']
    assert 'manual' in first['run_id'] and first['run_id'][:8].isdigit()
    assert out.count(f"mlops-nb run {first['run_id']} (taken up again)") == 5  # one run: the later tasks take up the first's
    print(f"Airflow ran the pipeline in {took:.0f} s")

    shutil.copy(a/'contract.toml', b/'contract.toml')  # committed, as the README asks
    out = run_dag(airflow, export(b), 'pipeline', **tracking)
    second = conftest.latest_manifest(b)
    assert [(s['status'], s.get('cached_from')) for s in second['stages']] == [('cached', first['run_id'])] * 6, second['stages']
    assert f"cached ({first['run_id']}, from the store)" in out
    assert sorted(p.parent.name for p in store.glob('runs/*/manifest.json')) == sorted([first['run_id'], second['run_id']])

    landed = b/'incoming'/'2013-12.parquet'
    landed.parent.mkdir()
    shutil.copy(json.loads((a/'runs'/first['run_id']/'10_data.json').read_text())['outputs']['batches'][-1]['path'], landed)
    out = run_dag(airflow, export(b), 'monitoring', **tracking)
    assert not landed.exists() and (landed.parent/'monitored'/landed.name).exists(), out[-3000:]
    history = conftest.cli(b, 'monitoring', '--json', **tracking)
    assert '2013-12' in [batch['name'] for batch in json.loads(history.stdout)['batches']], history.stdout[-2000:]
