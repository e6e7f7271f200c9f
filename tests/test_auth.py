"""Who may promote: a tracking server with MLflow's basic-auth app (PostgreSQL-backed where PostgreSQL is installed), an admin, an
editor and a reader; what each may do, said in words, with no traceback and no password in any output or report."""
import contextlib, os, subprocess, time, urllib.request
from pathlib import Path

import pytest

from conftest import cli, run_stages, spawn
from team import BIN, free_port, postgres, postgres_bin
from test_data_inputs import sales, sales_params

pytestmark = pytest.mark.xdist_group('auth')

ADMIN, PASSWORDS = 'admin', {'admin': 'admin-password-4711', 'editor': 'editor-password-4712', 'reader': 'reader-password-4713'}

@pytest.fixture(scope='session')
def server(tmp_path_factory):
    "MLflow's basic-auth server on loopback; readers by default; its URL."
    folder = tmp_path_factory.mktemp('auth')
    (folder/'auth.ini').write_text(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{folder/'users.db'}\n"
                                   f"admin_username = {ADMIN}\nadmin_password = {PASSWORDS[ADMIN]}\n")
    with (postgres() if postgres_bin('initdb') else contextlib.nullcontext(f"sqlite:///{folder/'mlflow.db'}")) as backend:
        port = free_port()
        proc = subprocess.Popen([BIN/'mlflow', 'server', '--app-name', 'basic-auth', '--backend-store-uri', backend, '--artifacts-destination',
                                 str(folder/'artifacts'), '--host', '127.0.0.1', '--port', str(port), '--workers', '1'],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                env={**os.environ, 'MLFLOW_AUTH_CONFIG_PATH': str(folder/'auth.ini'), 'MLFLOW_FLASK_SERVER_SECRET_KEY': 'tests-only',
                                     'MLFLOW_SERVER_ENABLE_JOB_EXECUTION': 'false'})
        url, deadline = f'http://127.0.0.1:{port}', time.time() + 120
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f'{url}/health', timeout=2).status == 200: break
            except OSError: time.sleep(0.3)
        try: yield url
        finally:
            proc.terminate(); proc.wait(timeout=30)

def as_user(url, user)->dict:
    return {'MLFLOW_TRACKING_URI': url, 'MLFLOW_TRACKING_USERNAME': user, 'MLFLOW_TRACKING_PASSWORD': PASSWORDS[user]}

@pytest.fixture(scope='session')
def project(server, tmp_path_factory):
    "A sales project whose two versions the admin registered; an editor who may edit the model; a reader."
    from mlflow.server.auth.client import AuthServiceClient
    root = tmp_path_factory.mktemp('auth-project')
    sales().write_csv(root/'sales.csv')
    (root/'mlops.toml').write_text('[mlflow]\nmodel_name = "big-sales"\n\n' + sales_params())
    saved = dict(os.environ)
    os.environ.update(as_user(server, ADMIN))
    try:
        for max_iter in (100, 20): run_stages(root, overrides=[f'train.max_iter={max_iter}'])
        admin = AuthServiceClient(server)
        for user in ('editor', 'reader'): admin.create_user(user, PASSWORDS[user])
        admin.grant_user_permission('editor', 'registered_model', 'big-sales', 'EDIT')
    finally:
        os.environ.clear(); os.environ.update(saved)
    return root

def said(r)->str: return r.stdout + r.stderr

def test_a_reader_may_look_but_not_move_the_champion(server, project):
    assert cli(project, 'versions', **as_user(server, 'reader')).returncode == 0
    refused = cli(project, 'promote', '2', '--force', **as_user(server, 'reader'))
    assert refused.returncode == 2 and 'Traceback' not in said(refused), said(refused)
    assert "refused to let user 'reader' move an alias of the registered model" in refused.stderr, refused.stderr
    assert "needs the EDIT permission on the registered model 'big-sales'" in refused.stderr and 'grant_user_permission' in refused.stderr

def test_an_editor_may_promote_and_roll_back(server, project):
    moved = cli(project, 'promote', '2', '--force', **as_user(server, 'editor'))
    assert moved.returncode == 0 and 'v1 -> v2' in moved.stdout, said(moved)
    back = cli(project, 'rollback', **as_user(server, 'editor'))
    assert back.returncode == 0 and 'v2 -> v1' in back.stdout, said(back)

def test_a_readers_run_stops_before_training_in_words_and_no_password_lands_anywhere(server, project):
    r = spawn(project, 'run', '-p', 'train.max_iter=30', **as_user(server, 'reader'))
    assert r.returncode == 1 and "train      FAILED" in r.stdout, said(r)[-3000:]
    assert "refused to let user 'reader' record a run in the experiment" in said(r) and 'Traceback' not in r.stderr, said(r)[-3000:]
    leaked = [p for p in Path(project/'runs').rglob('*') if p.is_file() and any(w.encode() in p.read_bytes() for w in PASSWORDS.values())]
    assert leaked == [] and not any(w in said(r) for w in PASSWORDS.values()), leaked
