"Two working copies that share only a store and a tracking server: the second's run reuses the first's stages, on a folder and on S3."
import json, os, shutil, subprocess, sys, time
from pathlib import Path

import pytest

import conftest
from team import free_port
from test_day_two import CONFIG, clone

pytestmark = pytest.mark.xdist_group('team')  # with test_day_two and test_faults: they share the team's server

@pytest.fixture(scope='module')
def s3():
    "moto's S3 server on loopback with a bucket `team`; the store options that reach it."
    port = free_port()
    env = {**os.environ, 'AWS_ACCESS_KEY_ID': 'test', 'AWS_SECRET_ACCESS_KEY': 'moto-secret-4f1c9a', 'AWS_DEFAULT_REGION': 'us-east-1'}
    proc = subprocess.Popen([str(Path(sys.executable).parent/'moto_server'), '-p', str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    import boto3
    client = boto3.client('s3', endpoint_url=f'http://127.0.0.1:{port}', region_name='us-east-1', aws_access_key_id='test',
                          aws_secret_access_key='moto-secret-4f1c9a')
    for _ in range(300):
        try: client.create_bucket(Bucket='team'); break
        except Exception: time.sleep(0.1)  # still starting
    yield {'endpoint': f'http://127.0.0.1:{port}', 'client': client, 'env': {k: env[k] for k in ('AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY')}}
    proc.terminate()

def teammates(tmp_path, store_toml, model):
    "Two clones of one project whose configuration names the shared store; the second is empty until the first has run."
    config = CONFIG.replace('model_name = "texas-median"', f'model_name = "{model}"') + store_toml
    a, b = clone(tmp_path/'clone-a'), clone(tmp_path/'clone-b')
    for root in (a, b): (root/'mlops.toml').write_text(config)
    return a, b

def share(server, store_of, a, b, **env):
    "The first clone runs; its contract is committed (copied to the second, as git would); the second runs. Both manifests."
    first = conftest.cli(a, 'run', MLFLOW_TRACKING_URI=server.url, **env)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    shutil.copy(a/'contract.toml', b/'contract.toml')
    second = conftest.cli(b, 'run', MLFLOW_TRACKING_URI=server.url, **env)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    ma, mb = conftest.latest_manifest(a), conftest.latest_manifest(b)
    assert {s['status'] for s in ma['stages']} == {'ran'}
    assert [(s['name'], s['status'], s['cached_from']) for s in mb['stages']] == [(s['name'], 'cached', ma['run_id']) for s in ma['stages']]
    for s in ma['stages']: assert f"{s['name']:<10} cached ({ma['run_id']}, from the store)" in second.stdout, second.stdout
    assert sorted(store_of('runs/*/manifest.json')) == sorted([ma['run_id'], mb['run_id']])
    lineage = conftest.cli(b, 'lineage', MLFLOW_TRACKING_URI=server.url, **env)  # the reports, as every copy finds them
    shared = [line for line in lineage.stdout.splitlines() if 'the shared store' in line]
    assert lineage.returncode == 0 and len(shared) == 4 and all('true' in line for line in shared), lineage.stdout[-3000:]
    reused = json.loads((b/'runs'/mb['run_id']/'10_data.json').read_text())
    assert all(Path(w['path']).is_relative_to(b/'data') and Path(w['path']).exists() for w in reused['outputs']['batches'])
    return ma, mb, second

def test_two_clones_share_a_folder(team_server, tmp_path):
    folder = tmp_path/'team-store'
    a, b = teammates(tmp_path, f'\n[store]\nurl = "{folder}"\n', 'texas-shared')
    ma, mb, _ = share(team_server, lambda pattern: [p.parent.name for p in folder.glob(pattern)], a, b)
    assert not (folder/'runs'/'.lock').exists()
    again = conftest.cli(a, 'run', '-p', 'train.max_iter=31', MLFLOW_TRACKING_URI=team_server.url)  # the first clone sees the second's run
    assert again.returncode == 0, again.stderr[-3000:]
    assert 'data       cached' in again.stdout and 'train      ran (parameters changed: max_iter)' in again.stdout, again.stdout

def test_two_clones_share_an_s3_bucket(team_server, tmp_path, s3):
    a, b = teammates(tmp_path, f'\n[store]\nurl = "s3://team/texas"\n[store.options]\nendpoint_url = "{s3["endpoint"]}"\n', 'texas-s3')
    def store_of(pattern):
        keys = [o['Key'] for o in s3['client'].list_objects_v2(Bucket='team', Prefix='texas/runs/').get('Contents', [])]
        return [k.split('/')[2] for k in keys if k.endswith('/manifest.json')]
    ma, mb, second = share(team_server, store_of, a, b, **s3['env'])
    keys = [o['Key'] for o in s3['client'].list_objects_v2(Bucket='team', Prefix='texas/').get('Contents', [])]
    assert 'texas/runs/.lock' not in keys and any(k.startswith('texas/data/') and k.endswith('.parquet') for k in keys)
    assert not any(s3['env']['AWS_SECRET_ACCESS_KEY'] in (b/'runs'/mb['run_id']/f).read_text() for f in ('manifest.json', 'index.html'))

def test_two_copies_run_one_at_a_time_through_the_store(project, tmp_path):
    "While one copy's run holds the store's lock, the other's is refused with who holds it, or waits with --wait; then it reuses."
    store, other = tmp_path/'toy-store', tmp_path/'other-copy'
    shutil.copytree(project, other)
    for root in (project, other): (root/'mlops.toml').write_text((root/'mlops.toml').read_text() + f'\n[store]\nurl = "{store}"\n')
    first = subprocess.Popen([conftest.MLOPS_NB, 'run', '-p', 'sleep_s=5'], cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=conftest.clean_env())
    deadline = time.time() + 60
    while time.time() < deadline and not (store/'runs'/'.lock').exists(): time.sleep(0.05)
    refused = conftest.spawn(other, 'run', '-p', 'sleep_s=5')
    assert refused.returncode == 2 and f'another mlops-nb run holds the lock in {store}' in refused.stderr, refused.stderr
    waited = conftest.spawn(other, 'run', '-p', 'sleep_s=5', '--wait')
    assert first.wait(timeout=120) == 0, first.stderr
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.count('from the store)') == 3, waited.stdout
    assert not (store/'runs'/'.lock').exists()
