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
    assert m['status'] == 'ok' and [s['status'] for s in m['stages']] == ['ran'] * 5
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
    assert [s['status'] for s in manifest(root, 1)['stages']] == ['cached'] * 5
    assert t2 < t1 / 10, (t1, t2)

def test_the_secret_from_the_environment_is_nowhere_on_disk(runs):
    root, _ = runs
    files = [p for d in ('runs', 'mlartifacts', 'data') for p in (root/d).rglob('*') if p.is_file()] + [root/'mlflow.db']
    assert len(files) > 20
    leaked = [p for p in files if TOKEN.encode() in p.read_bytes()]
    assert leaked == []

def cli(root, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith(('MLOPS_NB_', 'MLFLOW_'))}
    return subprocess.run([MLOPS_NB, *args], cwd=root, env=env, capture_output=True, text=True)

def champion(root):
    return MlflowClient(tracking_uri=f"sqlite:///{root/'mlflow.db'}").get_model_version_by_alias('flights-late', 'champion').version

def test_a_weakened_challenger_is_refused_with_its_reasons_and_the_champion_stays(runs):
    root, _ = runs
    before = champion(root)
    r = cli(root, 'run', '-p', 'train.max_iter=3', '-p', 'train.learning_rate=0.01')
    assert r.returncode == 0, r.stderr[-3000:]
    m = manifest(root, -1)
    register = json.loads((root/'runs'/m['run_id']/'40_register.json').read_text())
    assert register['metrics']['promoted'] is False and register['refused']
    assert any('champion' in reason for reason in register['refused'])
    assert champion(root) == before

def test_promote_then_rollback_moves_the_champion_back_and_the_ledger_shows_both(runs):
    root, _ = runs
    before = champion(root)
    weak = manifest(root, -1)['stages'][3]['metrics']['version']
    assert cli(root, 'promote', str(weak), '--reason', 'trying it').returncode == 0
    assert champion(root) == weak
    r = cli(root, 'rollback', '--reason', 'worse on April')
    assert r.returncode == 0 and f'v{weak} -> v{before}' in r.stdout
    assert champion(root) == before
    ledger = [json.loads(l) for l in (root/'runs'/'alias_ledger.jsonl').read_text().splitlines()]
    assert [(e['kind'], e['from'], e['to']) for e in ledger[-2:]] == [('promote', str(before), str(weak)), ('rollback', str(weak), str(before))]
    assert cli(root, 'rollback').returncode == 2

def test_lineage_of_the_champion_resolves_every_link(runs):
    root, _ = runs
    r = cli(root, 'lineage')
    assert r.returncode == 0, r.stdout + r.stderr
    for link in ('MLflow run', 'git commit', 'data digest', 'data snapshot', 'run manifest', 'train report', 'gate record'):
        assert link in r.stdout

def test_reproduce_reports_identical_predictions_and_metrics(runs):
    root, _ = runs
    r = cli(root, 'reproduce', manifest(root, 0)['run_id'])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert 'identical predictions and metrics' in r.stdout
