"The default lifecycle end to end on the real NYC flights data, as a new user runs it."
import json, os, sqlite3, subprocess, sys, time
from pathlib import Path

import pytest
from mlflow import MlflowClient

MLOPS_NB = Path(sys.executable).parent/'mlops-nb'
TOKEN = 'tok-e2e-5c1f0a9d7b'

@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    "A fresh project (a git repository) run twice with a secret in the environment: the two runs' outputs and times."
    root = tmp_path_factory.mktemp('flights')
    subprocess.run(['git', 'init', '-q'], cwd=root, check=True)
    (root/'README.md').write_text('my project\n')
    subprocess.run(['git', 'add', 'README.md'], cwd=root, check=True)
    subprocess.run(['git', '-c', 'user.email=t@example.com', '-c', 'user.name=t', 'commit', '-qm', 'start'], cwd=root, check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(('MLOPS_NB_', 'MLFLOW_'))} | {'MLOPS_NB_API_TOKEN': TOKEN}
    out = []
    for _ in range(2):
        t = time.time()
        r = subprocess.run([MLOPS_NB, 'run'], cwd=root, env=env, capture_output=True, text=True)
        out.append((r, time.time() - t))
    return root, out

def manifest(root, n):
    return json.loads(sorted((root/'runs').glob('*/manifest.json'))[n].read_text())

def test_the_first_run_writes_every_report(runs):
    root, [(first, _), _] = runs
    assert first.returncode == 0, first.stderr[-3000:]
    assert 'stage' in first.stdout and 'register' in first.stdout
    m = manifest(root, 0)
    assert m['status'] == 'ok' and [s['status'] for s in m['stages']] == ['ran'] * 4
    run_dir = root/'runs'/m['run_id']
    for s in m['stages']:
        for ext in ('ipynb', 'html', 'json'): assert (run_dir/f"{Path(s['notebook']).stem}.{ext}").exists()
    assert (run_dir/'index.html').exists()
    assert m['git']['commit'] and m['git']['dirty'] is False

def test_the_registry_holds_a_champion_traced_to_run_commit_and_data(runs):
    root, _ = runs
    m = manifest(root, 0)
    client = MlflowClient(tracking_uri=f"sqlite:///{root/'mlflow.db'}")
    mv = client.get_model_version_by_alias('flights-late', 'champion')
    data = next(s for s in m['stages'] if s['name'] == 'data')
    assert mv.tags['mlops_nb.run_id'] == m['run_id']
    assert mv.tags['mlops_nb.git_commit'] == m['git']['commit']
    assert mv.tags['mlops_nb.data_digest'] == data['outputs']['reference']['digest']
    assert Path(mv.tags['mlops_nb.data_path']).exists()

def test_an_immediate_second_run_reuses_every_stage_in_a_tenth_of_the_time(runs):
    root, [(_, t1), (second, t2)] = runs
    assert second.returncode == 0, second.stderr[-3000:]
    assert [s['status'] for s in manifest(root, 1)['stages']] == ['cached'] * 4
    assert t2 < t1 / 10, (t1, t2)

def test_the_secret_from_the_environment_is_nowhere_on_disk(runs):
    root, _ = runs
    files = [p for d in ('runs', 'mlartifacts', 'data') for p in (root/d).rglob('*') if p.is_file()] + [root/'mlflow.db']
    assert len(files) > 20
    leaked = [p for p in files if TOKEN.encode() in p.read_bytes()]
    assert leaked == []
