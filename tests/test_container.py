"""The champion as a container: packaged from a fresh project, built without a daemon, run with podman, and called over HTTP on
/predict and the Open Inference Protocol (through tritonclient, a client nobody here wrote); its manifests valid, its Dockerfile clean."""
import json, os, shutil, subprocess, sys, time
from pathlib import Path

import httpx
import kubernetes_validate
import numpy as np
import pytest
import yaml

from conftest import cli, run_stages
from mlops_nb.register import move_alias
from mlops_nb.serve import free_port
from test_data_inputs import sales, sales_params

pytestmark = pytest.mark.xdist_group('container')

BASE = 'localhost/mlops-nb-base:bookworm'
LIMITS = ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=4096:4096']  # these machines refuse podman's default ulimits
PODMAN = ['podman', '--runtime', 'runc']  # crun fails on the machines' mixed cgroups; runc works
TOKEN = 'container-test-token'

def cannot_run_containers()->str|None:
    "Why this machine cannot build and run the image, or None."
    missing = [t for t in ('podman', 'mmdebstrap', 'runc') if shutil.which(t) is None]
    if missing: return f"{', '.join(missing)} not installed (apt-get install podman buildah mmdebstrap runc)"
    probe = subprocess.run([*PODMAN, 'info'], capture_output=True, text=True)
    return None if probe.returncode == 0 else f'podman info failed: {probe.stderr.strip()[-300:]}'

def podman(*args, check=True)->subprocess.CompletedProcess:
    done = subprocess.run([*PODMAN, *args], capture_output=True, text=True)
    if check and done.returncode: raise AssertionError(f"podman {' '.join(args[:2])} failed: {done.stderr[-2000:]}")
    return done

def base_image()->str:
    "A Debian bookworm root file system with Python, made with mmdebstrap (no registry is reachable here), as a local image."
    if podman('image', 'exists', BASE, check=False).returncode:
        with subprocess.Popen(['mmdebstrap', '--quiet', '--variant=minbase', '--include=python3,python3-venv', 'bookworm', '-'],
                              stdout=subprocess.PIPE) as rootfs:
            subprocess.run([*PODMAN, 'import', '-', BASE], stdin=rootfs.stdout, check=True, capture_output=True)
    return BASE

@pytest.fixture(scope='session')
def image(tmp_path_factory):
    "A fresh project's champion packaged by `mlops-nb package` and built into an image: (image, build context, project config)."
    if reason := cannot_run_containers():
        message = f'containers cannot run on this machine: {reason}'
        pytest.fail(message) if os.environ.get('CI') else pytest.skip(message)
    root = tmp_path_factory.mktemp('container')
    sales().write_csv(root/'sales.csv')
    (root/'mlops.toml').write_text('[mlflow]\nmodel_name = "big-sales"\n\n' + sales_params())
    cfg = run_stages(root)
    move_alias(cfg, 'champion', 1, 'the version to package')
    packaged = cli(root, 'package', '--out', 'context')
    assert packaged.returncode == 0, packaged.stderr
    name = 'localhost/mlops-nb/big-sales-test:v1'
    podman('build', *LIMITS, '--format', 'docker', '--build-arg', f'BASE={base_image()}', '-t', name, str(root/'context'))
    yield name, root/'context', cfg
    podman('rmi', '-f', name, check=False)

@pytest.fixture(scope='session')
def container(image, tmp_path_factory):
    "The image running with podman on a loopback port, its prediction log in a host folder: (url, log folder, name)."
    logs = tmp_path_factory.mktemp('predictions')
    logs.chmod(0o777)  # the image's user, 10001, writes there
    port, name = free_port(), f'mlops-nb-test-{os.getpid()}'
    subprocess.run([*PODMAN, 'run', '-d', '--name', name, *LIMITS, '--no-healthcheck', '-p', f'127.0.0.1:{port}:8080',
                    '-e', 'MLOPS_NB_API_TOKEN', '-v', f'{logs}:/var/lib/mlops-nb/predictions', image[0]],
                   env={**os.environ, 'MLOPS_NB_API_TOKEN': TOKEN}, check=True, capture_output=True)  # the token never on a command line
    url, deadline = f'http://127.0.0.1:{port}', time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f'{url}/v2/health/ready', timeout=1).status_code == 200: break
        except httpx.HTTPError: time.sleep(0.1)
    else: raise AssertionError(f"the container never became ready: {podman('logs', name, check=False).stderr[-2000:]}")
    yield url, logs, name
    podman('rm', '-f', name, check=False)

AUTH = {'Authorization': f'Bearer {TOKEN}'}
ROWS = [{'store': 'north', 'price': 10.5}, {'store': 'south', 'price': 21.5}]

def test_the_image_answers_valid_and_malformed_requests_on_predict(container):
    url = container[0]
    ok = httpx.post(f'{url}/predict', json={'records': ROWS}, headers=AUTH)
    assert ok.status_code == 200 and len(ok.json()['predictions']) == 2 and ok.json()['version'] == '1', ok.text
    assert httpx.post(f'{url}/predict', json={'records': ROWS}).status_code == 401
    assert httpx.post(f'{url}/predict', content=b'{"records": [', headers={**AUTH, 'content-type': 'application/json'}).status_code == 400
    wrong = httpx.post(f'{url}/predict', json={'records': [{'store': 'north', 'price': 'cheap'}]}, headers=AUTH)
    assert wrong.status_code == 422 and wrong.json()['errors'][0]['field'] == 'price', wrong.text
    assert httpx.get(f'{url}/health').json()['version'] == '1'
    assert 'mlops_nb_requests_total' in httpx.get(f'{url}/metrics', headers=AUTH).text

def test_tritonclient_infers_through_the_open_inference_protocol(container):
    import tritonclient.http as triton
    from tritonclient.utils import InferenceServerException
    url = container[0]
    client = triton.InferenceServerClient(url.removeprefix('http://'))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready('big-sales', headers=AUTH)
    meta = client.get_model_metadata('big-sales', headers=AUTH)
    assert {t['name']: t['datatype'] for t in meta['inputs']} == {'store': 'BYTES', 'price': 'FP64'}, meta
    def tensors(binary):
        store, price = triton.InferInput('store', [2], 'BYTES'), triton.InferInput('price', [2], 'FP64')
        store.set_data_from_numpy(np.array([r['store'] for r in ROWS], dtype=object), binary_data=binary)
        price.set_data_from_numpy(np.array([r['price'] for r in ROWS]), binary_data=binary)
        return [store, price]
    expected = [p['probability'] for p in httpx.post(f'{url}/predict', json={'records': ROWS}, headers=AUTH).json()['predictions']]
    for binary in (True, False):  # tritonclient sends bytes by default; JSON on request
        result = client.infer('big-sales', tensors(binary), headers=dict(AUTH), request_id=f'binary-{binary}')  # tritonclient writes into the dict it is given
        assert result.as_numpy('probability').tolist() == expected and result.get_response()['id'] == f'binary-{binary}'
    bad = tensors(False)[:1]
    with pytest.raises(InferenceServerException, match=r'\[400\].*price: missing'): client.infer('big-sales', bad, headers=dict(AUTH))
    with pytest.raises(InferenceServerException, match=r'\[404\]'): client.infer('other-model', tensors(True), headers=dict(AUTH))
    with pytest.raises(InferenceServerException, match=r'\[401\]'): client.infer('big-sales', tensors(True))
    hostile = httpx.post(f'{url}/v2/models/big-sales/infer', content=b'{"inputs": ' + b'[' * 50_000, headers=AUTH)
    assert hostile.status_code == 400 and 'error' in hostile.json()

def test_the_image_runs_serving_alone_as_a_user_without_secrets(image, container):
    inspect = json.loads(podman('image', 'inspect', image[0]).stdout)[0]['Config']
    assert inspect['User'] == '10001' and not any(TOKEN in e or 'TOKEN=' in e for e in inspect.get('Env', [])), inspect
    found = podman('exec', container[2], 'python3', '-c', "import importlib.util as u, json; print(json.dumps([m for m in "
                   "('papermill', 'jupyterlab', 'pyspark', 'alibi_detect', 'nbdev', 'sqlalchemy') if u.find_spec(m)]))").stdout
    assert json.loads(found) == [], found

def test_the_prediction_log_is_written_off_the_request_path(container):
    url, logs, name = container
    assert httpx.post(f'{url}/predict', json={'records': ROWS * 10}, headers=AUTH).status_code == 200
    import polars as pl
    logged, deadline = lambda: pl.concat([pl.read_parquet(p) for p in logs.rglob('*.parquet')], how='diagonal_relaxed'), time.time() + 15
    while time.time() < deadline and (not list(logs.rglob('*.parquet')) or logged().height < 20): time.sleep(0.2)  # written off the request path
    assert logged().height >= 20 and set(logged()['version'].unique()) == {'1'}, logged()

def test_the_manifests_are_valid_kubernetes_and_the_dockerfile_is_clean(image):
    context = image[1]
    for path in sorted((context/'k8s').glob('*.yaml')):
        manifest = yaml.safe_load(path.read_text())
        if manifest['kind'] == 'ServiceMonitor':  # a Prometheus Operator resource: no schema in kubernetes-validate
            assert manifest['spec']['endpoints'][0]['path'] == '/metrics'
        else: kubernetes_validate.validate(manifest, '1.30', strict=True)
    isvc = yaml.safe_load((context/'kserve'/'inference-service.yaml').read_text())
    assert isvc['spec']['predictor']['containers'][0]['image'] == yaml.safe_load((context/'k8s'/'deployment.yaml').read_text())[
        'spec']['template']['spec']['containers'][0]['image']
    lint = subprocess.run([Path(sys.executable).parent/'hadolint', str(context/'Dockerfile')], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
