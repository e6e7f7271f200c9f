"Faults: a run killed with SIGKILL, a tracking server that goes away in the middle of an alias move, and every command in a place where it cannot do its job."
import json, os, signal, socket, subprocess, threading, time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import MLOPS_NB, clean_env, cli, run_stages
from mlops_nb.cli import main
from team import free_port
from test_data_inputs import sales, sales_params

pytestmark = pytest.mark.xdist_group('team')  # with test_day_two: they share the team's server

CONFIG = '''
[pipeline]
stages = ["data", "train", "evaluate", "register"]

''' + sales_params()

def project(root:Path, config:str=CONFIG)->Path:
    root.mkdir(parents=True, exist_ok=True)
    sales().write_csv(root/'sales.csv')
    (root/'mlops.toml').write_text(config)
    return root

def test_a_run_killed_in_training_reads_as_interrupted_and_the_next_run_resumes_there(tmp_path):
    root = project(tmp_path/'killed')
    proc = subprocess.Popen([MLOPS_NB, 'run'], cwd=root, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    client, deadline, running = MlflowClient(f"sqlite:///{root/'mlflow.db'}"), time.time() + 180, []
    while time.time() < deadline and not running and proc.poll() is None:
        time.sleep(0.05)
        try:
            exp = client.get_experiment_by_name('mlops-nb') if (root/'mlflow.db').exists() else None
            running = client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'") if exp else []
        except Exception: running = []
    assert running, 'the train stage never had an MLflow run open'
    # the whole run dies at once, as when the machine stops: the runner's session and its kernel (which runs in a session of its own,
    # and would otherwise notice its parent gone only at its next poll, a second later, time enough to finish the stage)
    kernels = Path(f'/proc/{proc.pid}/task/{proc.pid}/children').read_text().split()
    for pid in kernels: os.kill(int(pid), signal.SIGKILL)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = json.loads(next((root/'runs').glob('*/manifest.json')).read_text())
    assert killed['status'] == 'running' and [s['status'] for s in killed['stages']][:2] == ['ran', 'running']
    again = cli(root, 'run')
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"run {killed['run_id']} was interrupted in stage train: marked so (MLflow runs closed: 1)" in again.stdout
    after = json.loads((root/'runs'/killed['run_id']/'manifest.json').read_text())
    assert after['status'] == 'interrupted' and [s['status'] for s in after['stages']] == ['ran', 'interrupted', 'not run', 'not run']
    assert 'interrupted' in (root/'runs'/killed['run_id']/'index.html').read_text()
    assert client.get_run(running[0].info.run_id).info.status == 'KILLED'
    resumed = json.loads(sorted((root/'runs').glob('*/manifest.json'))[-1].read_text())
    assert [(s['status'], s.get('why')) for s in resumed['stages'][:2]] == [('cached', None), ('ran', 'previous attempt interrupted')]

class Proxy:
    "A TCP proxy to a tracking server that goes away (stops listening) at the first request containing `trip`."
    def __init__(self, port:int, trip:bytes=b'/registered-models/alias'):
        self.target, self.trip, self.tripped = port, trip, threading.Event()
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(16)
        self.url = f'http://127.0.0.1:{self.sock.getsockname()[1]}'
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.tripped.is_set():
            try: client, _ = self.sock.accept()
            except OSError: return
            threading.Thread(target=self.handle, args=(client,), daemon=True).start()

    def handle(self, client):
        upstream = socket.create_connection(('127.0.0.1', self.target))
        def back():
            try:
                while data := upstream.recv(65536): client.sendall(data)
            except OSError: pass
        threading.Thread(target=back, daemon=True).start()
        try:
            while data := client.recv(65536):
                if self.trip in data and data.startswith(b'POST'):
                    self.tripped.set(); self.sock.close(); break
                upstream.sendall(data)
        except OSError: pass
        for s in (client, upstream): s.close()

def test_a_server_that_goes_away_mid_move_leaves_no_half_move_and_register_resumes_without_a_duplicate(team_server, tmp_path):
    server = team_server
    root = project(tmp_path/'away', CONFIG.replace('[pipeline]', '[mlflow]\nmodel_name = "away"\n\n[pipeline]'))
    proxy = Proxy(server.port)
    failed = cli(root, 'run', MLFLOW_TRACKING_URI=proxy.url)
    assert failed.returncode == 1 and proxy.tripped.is_set(), failed.stderr[-3000:]
    assert "stage 'register' failed" in failed.stderr and f'the tracking server at {proxy.url} could not be reached' in failed.stderr
    assert 'Traceback' not in failed.stderr
    client = MlflowClient(server.url)
    [version] = client.search_model_versions("name = 'away'")
    assert version.aliases == [] and not [k for k in client.get_registered_model('away').tags if k.startswith('mlops_nb.alias.')]
    resumed = cli(root, 'run', MLFLOW_TRACKING_URI=server.url)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    register = json.loads(sorted((root/'runs').glob('*/40_register.json'))[-1].read_text())
    assert register['registered_before'] and register['outputs']['model']['version'] == '1'
    assert [v.version for v in client.search_model_versions("name = 'away'")] == ['1']
    assert sorted(client.get_model_version('away', '1').aliases) == ['challenger', 'champion']

def call(capsys, *args):
    "Run a command in this process; its exit code and everything it printed. An exception that escapes is a traceback, and fails the test."
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out + out.err

COMMANDS = [('run', '--only', 'deploy'), ('versions',), ('rollback',), ('lineage',), ('reproduce', '20260101T000000Z-abcdef'),
            ('score', 'batch.csv'), ('serve', '--port', '0'), ('deployed',), ('monitor', 'batch.csv'), ('monitoring',), ('scorecard',),
            ('init', 'nowhere.csv'), ('card',), ('diff',), ('promote', '1')]
SUCCEED = {'a project with no champion': {'versions', 'promote'}}

@pytest.fixture(scope='session')
def refused(tmp_path_factory):
    "A project whose only model the gate refused: no champion."
    root = project(tmp_path_factory.mktemp('refused'), CONFIG + '\n[stages.evaluate.params]\nmin_roc_auc = 0.999\n')
    sales().head(60).write_csv(root/'batch.csv')
    run_stages(root)
    return root

@pytest.mark.parametrize('where', ['an empty folder', 'a project with no champion', 'a stopped tracking server'])
def test_every_command_names_the_problem_without_a_traceback(where, refused, tmp_path, monkeypatch, capsys):
    for var in ('MLOPS_NB_ROOT', 'MLOPS_NB_CONFIG', 'MLFLOW_TRACKING_URI'): monkeypatch.delenv(var, raising=False)
    root = refused if where == 'a project with no champion' else tmp_path
    if where == 'a stopped tracking server':
        monkeypatch.setenv('MLFLOW_TRACKING_URI', f'http://127.0.0.1:{free_port()}')
        monkeypatch.setenv('MLFLOW_HTTP_REQUEST_MAX_RETRIES', '0')
        project(root)
        sales().head(60).write_csv(root/'batch.csv')
    monkeypatch.chdir(root)
    for args in COMMANDS:
        code, said = call(capsys, *args, *(['--root', str(root)] if args[0] != 'run' else []))
        assert said.strip(), args
        if code == 0 and (args[0] in ('monitoring', 'scorecard') or args[0] in SUCCEED.get(where, ())): continue
        assert code in (1, 2), (args, code, said)
        assert 'mlops-nb: error:' in said or 'has no reusable earlier result' in said, (args, said)
        if where == 'a stopped tracking server' and args[0] not in ('run', 'init', 'reproduce', 'diff'):
            assert 'cannot be reached' in said, (args, said)
