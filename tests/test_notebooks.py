"Every notebook in nbs/ runs top to bottom under nbdev-test: the lessons are the package's tests."
import re, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT/'nbs').rglob('*.ipynb'))

# The Spark notebook takes as long as all the others together, most of it its JVM compiling Spark's code on first use. So it runs in
# the Spark tests' worker, in that worker's own process, before them (it stops its session; conftest orders it first), and leaves them a
# JVM already compiled. The others run in one nbdev-test process.
SPARK = ROOT/'nbs'/'67_spark.ipynb'

@pytest.mark.xdist_group('spark')
def test_the_spark_notebook(capsys):
    "The Spark notebook as nbdev-test runs it (the same flags skipped), in this process."
    from nbdev.config import get_config
    from nbdev.test import test_nb
    cfg = get_config(ROOT)
    flags = cfg.tst_flags.split() if isinstance(cfg.tst_flags, str) else list(cfg.tst_flags)
    passed, _ = test_nb(SPARK, skip_flags=flags, basepath=cfg.config_path, cell_timeout=cfg.cell_timeout or None)
    assert passed, capsys.readouterr().err[-6000:]

def test_notebooks():
    "Every other notebook in one nbdev-test process (the libraries are imported once, each notebook still runs in a fresh namespace)."
    notebooks = [nb for nb in NOTEBOOKS if nb != SPARK]
    names = '|'.join(re.escape(nb.name) for nb in notebooks)
    # nbdev-test's own function, then `gc.freeze()`: at exit IPython collects the whole heap once for each notebook's shell, and those
    # 25 collections of a heap holding every notebook's namespace, with the teardown after them, took about 20 of this test's 70 s.
    code = (f"import gc\nfrom nbdev.test import nbdev_test\n"
            f"nbdev_test({str(ROOT/'nbs')!r}, n_workers=0, timing=True, file_re={f'^({names})$'!r})\ngc.freeze()")
    r = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-6000:]
    ran = {line.split(':')[0] for line in (r.stdout + r.stderr).splitlines() if line.endswith(' secs')}
    assert ran == {nb.name for nb in notebooks}, sorted(ran ^ {nb.name for nb in notebooks})

def test_a_stage_notebook_opened_alone_trains_on_its_projects_own_data(tmp_path, monkeypatch):
    "A clone whose mlops.toml points at the user's own file: nbs/20_train.ipynb opened alone (as JupyterLab runs it) trains on that file."
    import nbformat, shutil
    from nbclient import NotebookClient
    from test_data_inputs import sales, sales_params
    shutil.copytree(ROOT/'nbs', tmp_path/'nbs', ignore=shutil.ignore_patterns('labs', 'tutorials', '.ipynb_checkpoints'))
    sales().write_csv(tmp_path/'sales.csv')
    (tmp_path/'mlops.toml').write_text(sales_params() + '\n[stages.train.params]\nmax_iter = 40\n')
    for var in ('MLOPS_NB_ROOT', 'MLOPS_NB_CONFIG', 'MLOPS_NB_RUN_DIR', 'MLOPS_NB_RUN_ID', 'MLFLOW_TRACKING_URI'): monkeypatch.delenv(var, raising=False)
    nb = nbformat.read(tmp_path/'nbs'/'20_train.ipynb', as_version=4)
    NotebookClient(nb, timeout=600, kernel_name='python3', resources={'metadata': {'path': str(tmp_path/'nbs')}}).execute()
    shown = '\n'.join(str(o.get('data', {}).get('text/markdown', '')) + str(o.get('data', {}).get('text/plain', '')) + str(o.get('text', ''))
                      for c in nb.cells for o in c.get('outputs', []))
    assert '`max_iter` | int | `40` | default' in shown or "`max_iter` | int | `40`" in shown, shown[:3000]
    assert '│ store ' in shown and '│ price ' in shown and 'visib' not in shown
    assert not (tmp_path/'runs').exists() and not (tmp_path/'mlflow.db').exists()
