"The stage runner on a toy project: caching, invalidation, failure and resume, parameters, secrets, locking."
import json, subprocess, sys, time
from pathlib import Path

import pytest

from conftest import latest_manifest, statuses
from mlops_nb.cli import main
from mlops_nb.pipeline import StageFailed, run_pipeline

def quiet(*a): pass

def test_second_run_reuses_every_stage(project):
    first = run_pipeline(echo=quiet)
    assert statuses(first) == {'source': 'ran', 'double': 'ran', 'report': 'ran'}
    second = run_pipeline(echo=quiet)
    assert statuses(second) == {'source': 'cached', 'double': 'cached', 'report': 'cached'}
    assert {s['cached_from'] for s in second['stages']} == {first['run_id']}
    run_dir = project/'runs'/second['run_id']
    for stem in ('source', 'double', 'report'):
        for ext in ('ipynb', 'html', 'json'): assert (run_dir/f'{stem}.{ext}').exists()
    assert (run_dir/'manifest.json').exists() and (run_dir/'index.html').exists()
    assert second['duration_s'] < first['duration_s'] / 10

def test_a_changed_parameter_reruns_exactly_its_stage_and_what_follows(project):
    run_pipeline(echo=quiet)
    changed = run_pipeline(params=['double.factor=3'], echo=quiet)
    assert statuses(changed) == {'source': 'cached', 'double': 'ran', 'report': 'ran'}
    double = next(s for s in changed['stages'] if s['name'] == 'double')
    assert double['why'] == 'parameters changed: factor'
    assert double['metrics'] == {'value': 18, 'factor_type': 'int'}

def test_a_changed_source_file_reruns_everything_downstream(project):
    run_pipeline(echo=quiet)
    (project/'numbers.txt').write_text('10\n')
    changed = run_pipeline(echo=quiet)
    assert statuses(changed) == {'source': 'ran', 'double': 'ran', 'report': 'ran'}
    assert changed['stages'][0]['why'] == 'source file changed: numbers'
    assert changed['stages'][2]['metrics']['value'] == 20

def test_a_failing_stage_stops_the_run_and_the_next_run_resumes_there(project, capsys):
    (project/'FAIL').write_text('')
    assert main(['run']) == 1
    err = capsys.readouterr().err
    assert "stage 'double' failed in cell" in err and 'AssertionError: the FAIL file asks this stage to fail' in err
    failed = latest_manifest(project)
    assert failed['status'] == 'failed' and statuses(failed) == {'source': 'ran', 'double': 'failed', 'report': 'not run'}
    assert (project/'runs'/failed['run_id']/'double.ipynb').exists()
    (project/'FAIL').unlink()
    resumed = run_pipeline(echo=quiet)
    assert statuses(resumed) == {'source': 'cached', 'double': 'ran', 'report': 'ran'}
    assert resumed['stages'][1]['why'] == 'previous attempt failed'

def test_unknown_parameter_is_refused_before_any_stage_runs(project, capsys):
    assert main(['run', '-p', 'factr=3']) == 2
    err = capsys.readouterr().err
    assert "unknown parameter 'factr'" in err and 'double.factor' in err and 'source.numbers' in err
    assert not (project/'runs').exists() or not list((project/'runs').glob('*/*.ipynb'))

def test_values_are_coerced_to_the_declared_type_or_refused(project, capsys):
    assert main(['run', '-p', 'double.factor=three']) == 2
    assert "parameter 'double.factor' expects int, got 'three'" in capsys.readouterr().err
    manifest = run_pipeline(params=['factor=4'], echo=quiet)
    assert manifest['stages'][1]['params'] == {'factor': 4, 'label': 'doubled'}
    assert manifest['stages'][0]['params'] == {'numbers': 'numbers.txt', 'sleep_s': 0.0}

def test_a_secret_in_a_report_fails_the_run_and_is_scrubbed(project, monkeypatch):
    token = 'tok-9f8e7d6c5b4a'
    monkeypatch.setenv('MLOPS_NB_API_TOKEN', token)
    with pytest.raises(StageFailed, match=r'SecretLeak: secret values found and scrubbed in report.ipynb: MLOPS_NB_API_TOKEN'):
        run_pipeline(params=['report.show_env=MLOPS_NB_API_TOKEN'], echo=quiet)
    for p in (project/'runs').rglob('*'):
        if p.is_file(): assert token not in p.read_text(errors='replace'), p

def test_a_secret_cannot_be_passed_as_a_parameter(project, monkeypatch, capsys):
    monkeypatch.setenv('MLOPS_NB_API_TOKEN', 'tok-123456')
    assert main(['run', '-p', 'double.label=tok-123456']) == 2
    assert 'would write a secret into the report' in capsys.readouterr().err

def test_a_second_concurrent_run_is_refused_and_can_wait(project, capsys):
    first = subprocess.Popen([Path(sys.executable).parent/'mlops-nb', 'run', '-p', 'sleep_s=5'], cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = project/'runs'/'.lock'
    deadline = time.time() + 60
    while time.time() < deadline and not (lock.exists() and lock.read_text().startswith('run ')): time.sleep(0.05)
    assert main(['run']) == 2
    assert 'another mlops-nb run holds' in capsys.readouterr().err
    assert main(['run', '--wait']) == 0
    assert first.wait(timeout=120) == 0
    runs = sorted(p for p in (project/'runs').iterdir() if p.is_dir())
    assert [json.loads((r/'manifest.json').read_text())['status'] for r in runs] == ['ok', 'ok']

def changed_value(value):
    "A different value of the same type."
    if isinstance(value, bool): return not value
    if isinstance(value, (int, float)): return value * 2 + 1
    if isinstance(value, str): return value + 'x'
    if isinstance(value, list): return [*value, 'x']
    return {**value, 'x': 1}

def test_every_data_and_train_parameter_reruns_every_stage_downstream_of_it():
    "The cache property: a changed setting re-runs its stage and every stage that depends on it, even where no data digest moves."
    from mlops_nb.core import load_config, resolve_params
    from mlops_nb.pipeline import cache_decision, downstream, stage_key, stage_order
    cfg = load_config(Path(__file__).parent.parent)
    values = resolve_params(cfg)
    records = {n: {'inputs': {'file': 'same'}, 'outputs': {'snapshot': 'same'}, 'schema': {'features': ['same']}} for n in stage_order(cfg)}
    keys = lambda v: {n: stage_key(cfg, n, v, records, 'code', {'packages': {}}) for n in stage_order(cfg)}
    before = keys(values)
    runs = [{'run_id': 'r1', 'stages': [{'name': n, 'notebook': cfg['stages'][n]['notebook'], 'status': 'ran', 'key': k} for n, k in before.items()]}]
    checked = 0
    for stage in ('data', 'train'):
        for name, value in values[stage].items():
            after = keys({**values, stage: {**values[stage], name: changed_value(value)}})
            for later in downstream(cfg, stage):
                hit, why = cache_decision(runs, Path('/nonexistent'), later, after[later])
                assert hit is None and f'{stage}.{name}' in why or (later == stage and name in why), (stage, name, later, why)
                checked += 1
            for other in set(stage_order(cfg)) - set(downstream(cfg, stage)): assert after[other] == before[other], (stage, name, other)
    assert checked > 100

def test_an_orchestrators_tasks_fill_one_run_a_stage_each(project, capsys):
    "`run --stage NAME --run-id ID`, as the exported Airflow tasks call it: one run folder, one manifest, a stage per call, retries resume."
    assert main(['run', '--stage', 'double', '--run-id', 'dag-1']) == 1  # its upstream stage has not run anywhere yet
    assert "stage 'source' has no reusable earlier result" in capsys.readouterr().err
    assert main(['run', '--stage', 'source', '--run-id', 'manual__2026-12-06T10:00:00+00:00']) == 0
    run_dir = project/'runs'/'manual__2026-12-06T10-00-00-00-00'
    assert [(s['name'], s['status']) for s in json.loads((run_dir/'manifest.json').read_text())['stages']] == \
           [('source', 'ran'), ('double', 'pending'), ('report', 'pending')]
    (project/'FAIL').write_text('')
    assert main(['run', '--stage', 'double', '--run-id', 'manual__2026-12-06T10:00:00+00:00']) == 1
    (project/'FAIL').unlink()
    for stage in ('double', 'report'): assert main(['run', '--stage', stage, '--run-id', 'manual__2026-12-06T10:00:00+00:00']) == 0
    manifest = json.loads((run_dir/'manifest.json').read_text())
    assert manifest['status'] == 'ok' and [(s['status'], s.get('why')) for s in manifest['stages']] == \
           [('ran', 'no earlier run'), ('ran', 'previous attempt failed'), ('ran', 'no earlier run')]
    assert sorted(p.name for p in (project/'runs').iterdir() if p.is_dir()) == ['dag-1', run_dir.name]
