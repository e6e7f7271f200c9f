"Shared helpers: the `mlops-nb` command as a user runs it, stages run in-process, and a toy project whose three quick stage notebooks exercise the runner."
import contextlib, io, json, os, subprocess, sys
from pathlib import Path

import nbformat
import pytest

from mlops_nb.core import StageContext, load_config, new_run_id, notebook_parameters, resolve_params, run_stage_function, stage_notebook

# Two test workers share two cores: one OpenMP thread each, or scikit-learn's gradient boosting in both oversubscribes the cores
# and each slows down many times over. Subprocesses (notebooks, pipeline runs) inherit the setting.
if os.environ.get('PYTEST_XDIST_WORKER'): os.environ.setdefault('OMP_NUM_THREADS', '1')

# About how many seconds each takes here (two workers, two cores). The longest start first, so that neither worker is left running a
# long one at the end while the other idles; xdist's own order (groups with the most tests first) would start them last.
# The Spark notebook weighs more than the Spark tests so that it runs before them: it stops its session at its end.
SECONDS = {'test_lifecycle.py': 130, 'test_airflow.py': 140, 'test_store.py': 115, 'test_container.py': 100, 'test_auth.py': 85, 'test_estimate.py': 60, 'test_day_two.py': 110, 'test_notebooks.py::test_the_spark_notebook': 80, 'test_spark.py': 75,
           'test_release.py': 65, 'test_notebooks.py::test_notebooks': 45, 'test_faults.py': 55, 'test_own_data.py': 40,
           'test_broken_files.py': 30, 'test_edges.py': 30, 'test_layers.py': 1}

def pytest_collection_modifyitems(items):
    "Order the tests longest first (with `--no-loadscope-reorder`, xdist hands them out in this order)."
    weight = lambda item: max((s for k, s in SECONDS.items() if item.nodeid.split('/')[-1].startswith(k)), default=0)
    items.sort(key=weight, reverse=True)

CONFIG = '''
[pipeline]
stages = ["source", "double", "report"]

[stages.source]
notebook = "source.ipynb"

[stages.double]
notebook = "double.ipynb"
needs = ["source"]

[stages.report]
notebook = "report.ipynb"
needs = ["double"]
'''

HEADER = "import os\nfrom pathlib import Path\nfrom mlops_nb.core import file_digest, stage_context"

STAGES = {
    'source': ('numbers: str = "numbers.txt"  # file of numbers, one per line, under the project root\nsleep_s: float = 0.0  # seconds to pause, to hold the run lock',
               "import time; time.sleep(sleep_s)\nctx = stage_context('source', globals())\n"
               "path = Path(ctx.cfg['root'])/numbers\n"
               "total = sum(int(x) for x in path.read_text().split())\n"
               "ctx.save_record({'inputs': {'numbers': {'path': str(path), 'digest': file_digest(path)}},\n"
               "                 'outputs': {'total': total}, 'metrics': {'total': total}})"),
    'double': ('factor: int = 2  # multiplier\nlabel: str = "doubled"  # a name shown in the report',
               "ctx = stage_context('double', globals())\n"
               "assert not (Path(ctx.cfg['root'])/'FAIL').exists(), 'the FAIL file asks this stage to fail'\n"
               "value = ctx.upstream('source')['outputs']['total'] * factor\n"
               "ctx.save_record({'outputs': {'value': value}, 'metrics': {'value': value, 'factor_type': type(factor).__name__}})"),
    'report': ('show_env: str = ""  # an environment variable to print into the report; empty prints none',
               "ctx = stage_context('report', globals())\n"
               "if show_env: print(os.environ[show_env])\n"
               "ctx.save_record({'outputs': {}, 'metrics': {'value': ctx.upstream('double')['outputs']['value']}})"),
}

def write_stage(path, params, body):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(HEADER), nbformat.v4.new_code_cell(params, metadata={'tags': ['parameters']}),
                                         nbformat.v4.new_code_cell(body)])
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
    nbformat.write(nb, path)

@pytest.fixture
def project(tmp_path, monkeypatch):
    "A fresh toy project as the working directory."
    (tmp_path/'mlops.toml').write_text(CONFIG)
    (tmp_path/'numbers.txt').write_text('1\n2\n3\n')
    (tmp_path/'nbs').mkdir()
    for name, (params, body) in STAGES.items(): write_stage(tmp_path/'nbs'/f'{name}.ipynb', params, body)
    monkeypatch.chdir(tmp_path)
    for var in ('MLOPS_NB_ROOT', 'MLOPS_NB_CONFIG', 'MLOPS_NB_RUN_DIR', 'MLOPS_NB_RUN_ID', 'MLFLOW_TRACKING_URI'): monkeypatch.delenv(var, raising=False)
    return tmp_path

@pytest.fixture(scope='session')
def team_server(tmp_path_factory):
    "A team's MLflow tracking server on loopback, with proxied artifacts: PostgreSQL for the metadata where it is installed, else SQLite."
    from team import TrackingServer, postgres, postgres_bin
    artifacts = tmp_path_factory.mktemp('team-artifacts')
    with (postgres() if postgres_bin('initdb') else contextlib.nullcontext(f"sqlite:///{artifacts/'server.db'}")) as uri:
        s = TrackingServer(uri, artifacts/'store').start()
        yield s
        s.stop()

def statuses(manifest):
    return {s['name']: s['status'] for s in manifest['stages']}

def latest_manifest(root):
    return json.loads(sorted((Path(root)/'runs').glob('*/manifest.json'))[-1].read_text())

MLOPS_NB = Path(sys.executable).parent/'mlops-nb'

def clean_env(**extra)->dict:
    "This environment without mlops_nb's and MLflow's variables (as a user's shell has them), plus `extra`."
    return {k: v for k, v in os.environ.items() if not k.startswith(('MLOPS_NB_', 'MLFLOW_'))} | extra

def spawn(root, *args, **extra)->subprocess.CompletedProcess:
    "Run `mlops-nb` in a fresh process in the project `root`, as a user would; `extra` sets environment variables."
    return subprocess.run([MLOPS_NB, *args], cwd=root, env=clean_env(**extra), capture_output=True, text=True)

def in_process(root, *args, **extra)->subprocess.CompletedProcess:
    "Run `mlops-nb` in this process, with the working directory and environment `spawn` gives it; what it printed and its exit code."
    from mlops_nb.cli import main
    saved, here, out, err = dict(os.environ), os.getcwd(), io.StringIO(), io.StringIO()
    os.environ.clear()
    os.environ.update(clean_env(**extra))
    os.chdir(root)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try: code = main(list(args))
            except SystemExit as e: code = e.code if isinstance(e.code, int) else 2  # argparse refusing the arguments
    finally:
        os.chdir(here)
        os.environ.clear()
        os.environ.update(saved)
    return subprocess.CompletedProcess(['mlops-nb', *args], code, out.getvalue(), err.getvalue())

def cli(root, *args, **extra)->subprocess.CompletedProcess:
    "Run `mlops-nb` in the project `root`: `run` and `serve` (which start kernels and servers) in a fresh process, the others in this one."
    return (spawn if args[0] in ('run', 'serve') else in_process)(root, *args, **extra)

def run_stages(root, stages=('data', 'train', 'evaluate', 'register'), overrides=())->dict:
    "Run stages of the project at `root` in this process, on its configuration (and `overrides`); the configuration."
    os.environ['MLOPS_NB_ROOT'] = str(root)
    try:
        cfg, run_id = load_config(root), new_run_id()
        for stage in stages:
            params = resolve_params(cfg, [o for o in overrides if o.startswith(f'{stage}.')], [stage])[stage]
            run_stage_function(StageContext(stage, cfg, run_id, Path(root)/'runs'/run_id, params, notebook_parameters(stage_notebook(cfg, stage))))
    finally: del os.environ['MLOPS_NB_ROOT']
    return cfg
