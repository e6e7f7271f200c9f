"Every notebook in nbs/ runs top to bottom under nbdev-test: the lessons are the package's tests."
import subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT/'nbs').rglob('*.ipynb'))

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[nb.name for nb in NOTEBOOKS])
def test_notebook(nb):
    r = subprocess.run([Path(sys.executable).parent/'nbdev-test', str(nb)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
