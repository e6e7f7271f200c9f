"""Performance before labels: the calibration a version carries, estimates per batch with bands, untrusted estimates, batches by
window, the JSON a script reads, and the multivariate verdict as an alert."""
import json
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from conftest import cli, run_stages
from mlops_nb.alerts import unlabelled_alerts
from mlops_nb.core import load_config
from mlops_nb.estimate import Calibration, estimate, fit_calibration, outside_support, score_counts
from mlops_nb.register import move_alias, version_bundle
from mlops_nb.serve import read_bundle, save_bundle

pytestmark = pytest.mark.xdist_group('estimate')

def loans(n_days=240, per_day=40, seed=7, shift_from=None):
    "Daily loan applications: income, amount and region decide repayment; from `shift_from` on, incomes fall (the inputs move, the relation holds)."
    g, rows = np.random.default_rng(seed), []
    for i in range(n_days):
        day = date(2024, 1, 1) + timedelta(days=i)
        low = shift_from is not None and day >= shift_from
        income = g.normal(40 if low else 55, 12, per_day)
        amount = g.normal(20, 6, per_day)
        region = g.choice(['north', 'south', 'east'], per_day)
        logit = 0.08 * (income - 50) - 0.12 * (amount - 20) + np.where(region == 'east', -0.5, 0.3)
        repaid = g.random(per_day) < 1 / (1 + np.exp(-logit))
        rows += [{'application': f'{day}-{j}', 'day': f'{day} 10:00', 'income': round(float(income[j]), 1), 'amount': round(float(amount[j]), 1),
                  'region': str(region[j]), 'repaid': int(repaid[j])} for j in range(per_day)]
    return pl.DataFrame(rows)

CONFIG = '''[mlflow]
model_name = "loans"

[stages.data.params]
source = "loans.csv"
target = "repaid"
time_column = "day"
id_column = "application"
'''

@pytest.fixture(scope='session')
def project(tmp_path_factory):
    "A loan project with a champion, and three later months of applications whose labels have not arrived (and their labels apart)."
    root = tmp_path_factory.mktemp('estimate')
    loans().write_csv(root/'loans.csv')
    (root/'mlops.toml').write_text(CONFIG)
    cfg = run_stages(root)
    move_alias(cfg, 'champion', 1, 'the version to monitor')
    later = loans(n_days=335, seed=8, shift_from=date(2024, 11, 1)).filter(pl.col('day') >= '2024-09-01')
    later.drop('repaid').write_csv(root/'autumn.csv')
    later.select('application', 'repaid').write_csv(root/'autumn-labels.csv')
    return root, cfg, later

def test_calibration_is_kept_only_where_it_lowers_the_error():
    g = np.random.default_rng(0)
    truth = g.random(4000)
    y = (g.random(4000) < truth).astype(int)
    assert fit_calibration(y, truth).method == 'none'  # true probabilities: no map helps
    shy = fit_calibration(y, 0.5 + (truth - 0.5) / 3)  # ranks well, far too unsure
    assert shy.method != 'none' and shy.errors[shy.method] < shy.errors['none']
    estimated = estimate(shy, score_counts(0.5 + (truth - 0.5) / 3))['roc_auc']
    realised = roc_auc_score(y, truth)
    assert estimated['low'] <= realised <= estimated['high'] and abs(estimated['value'] - realised) < 0.01

def test_a_batch_outside_the_reference_is_flagged_untrustworthy():
    cal = Calibration('none', {}, {}, 0.5, [0.2, 0.8], {}, 100)
    inside, beyond = score_counts(np.linspace(0.25, 0.75, 1000)), score_counts(np.linspace(0.0, 1.0, 1000))
    assert outside_support(cal, inside, {'income': ('numeric', 0.01)}) == []
    assert outside_support(cal, score_counts(np.full(100, 0.2)), {}) == []  # a model's lowest score, shared by many rows, is inside
    reasons = outside_support(cal, beyond, {'income': ('numeric', 0.3), 'region': ('categorical', 0.0)})
    assert reasons[0].startswith('40.0% of the scores lie outside 0.200..0.800') and reasons[1].startswith('income: 30.0%'), reasons

def test_the_multivariate_verdict_and_a_low_estimate_raise_alerts():
    rules = {'alert_min_metric': 0.6, 'alert_max_decay': 0.05}
    low = {'roc_auc': {'value': 0.55, 'low': 0.52, 'high': 0.58}}
    kinds = [a['kind'] for a in unlabelled_alerts({'drifted': True, 'auc': 0.66, 'p_value': 1e-9}, low, [], 0.75, rules)]
    assert kinds == ['multivariate_drift', 'performance_estimate']
    assert unlabelled_alerts({'drifted': False}, low, ['income: 30.0% of the values lie outside the reference\'s range'], 0.75, rules) == []

def test_the_estimator_travels_with_the_version_to_a_fresh_clone_and_an_image(project, tmp_path):
    root, cfg, _ = project
    clone = tmp_path/'clone'
    clone.mkdir()
    (clone/'mlops.toml').write_text(CONFIG.replace('[mlflow]\n', f"[mlflow]\ntracking_uri = \"{cfg['mlflow']['tracking_uri']}\"\n"))  # shares only the server
    bundle = version_bundle(load_config(clone), 'champion')
    assert bundle.estimator and bundle.estimator['rows'] > 0 and set(bundle.estimator['estimate_error']) >= {'roc_auc', 'accuracy'}
    save_bundle(bundle, tmp_path/'image', 'champion')
    assert read_bundle(tmp_path/'image')[0].estimator == bundle.estimator
    card = cli(root, 'card')
    assert card.returncode == 0 and '## Performance before labels' in card.stdout, card.stdout[-2000:]

def test_a_file_of_three_months_is_monitored_as_three_batches_with_estimates_then_labels(project):
    root, _, later = project
    unlabelled = cli(root, 'monitor', 'autumn.csv', '--json')
    assert unlabelled.returncode in (0, 3), unlabelled.stderr
    doc = json.loads(unlabelled.stdout)
    assert [b['name'] for b in doc['batches']] == ['autumn-2024-09', 'autumn-2024-10', 'autumn-2024-11']
    for b in doc['batches']:
        assert set(b) >= {'name', 'rows', 'estimated', 'realised', 'alerts'} and b['realised'] == {}
        e = b['estimated']['roc_auc']
        assert e['low'] <= e['value'] <= e['high'], b
    assert sum(b['rows'] for b in doc['batches']) == later.height
    november = doc['batches'][2]
    assert any(a['kind'] in ('drift', 'multivariate_drift') for a in november['alerts']), november  # incomes fell
    labelled = json.loads(cli(root, 'monitor', 'autumn.csv', '--labels', 'autumn-labels.csv', '--json').stdout)
    for before, after in zip(doc['batches'], labelled['batches']):
        realised, e = after['realised']['roc_auc'], after['estimated']['roc_auc']
        assert after['estimated'] == before['estimated'] and abs(e['value'] - realised) < 0.05, (e, realised)
    history = json.loads(cli(root, 'monitoring', '--json').stdout)['batches']
    assert [h['name'] for h in history][-6:] == [b['name'] for b in doc['batches']] * 2
    assert all(h['estimated'] for h in history[-6:]) and all('roc_auc' in h['realised'] for h in history[-3:])

def cars(months, per_day=30, seed=11, tilt=lambda month: 0):
    "Used cars sold day by day: their price is harder to predict the older the car, and `tilt` moves a month's sales towards old cars."
    g, rows = np.random.default_rng(seed), []
    for month in months:
        for d in range(1, 29):
            age = 10 * g.beta(1 + tilt(month), 1, per_day)
            km, fuel = g.uniform(0, 2e5, per_day), g.choice(['petrol', 'diesel'], per_day)
            price = 30 - 2 * age - km / 2e4 + np.where(fuel == 'diesel', 1.5, 0) + g.normal(0, 0.5 + 0.4 * age)
            rows += [{'sale': f'{month}-{d:02d}-{j}', 'day': f'{month}-{d:02d} 12:00', 'age': round(float(age[j]), 2), 'km': round(float(km[j])),
                      'fuel': str(fuel[j]), 'price': round(float(price[j]), 2)} for j in range(per_day)]
    return pl.DataFrame(rows)

def test_a_regressor_gets_its_mae_and_rmse_estimated_by_its_nannies(tmp_path):
    cars([f'2024-{m:02d}' for m in range(1, 9)]).write_csv(tmp_path/'cars.csv')
    (tmp_path/'mlops.toml').write_text('[mlflow]\nmodel_name = "cars"\n\n[stages.data.params]\nsource = "cars.csv"\ntarget = "price"\n'
                                       'task = "regression"\ntime_column = "day"\nid_column = "sale"\n')
    cfg = run_stages(tmp_path)
    move_alias(cfg, 'champion', 1, 'the version to monitor')
    assert version_bundle(cfg, 'champion', load=False).estimator['method'] == 'dle'
    later = cars(['2024-09', '2024-10'], seed=12, tilt=lambda month: 0 if month == '2024-09' else 4)  # October: mostly old cars
    later.drop('price').write_csv(tmp_path/'autumn.csv')
    later.select('sale', 'price').write_csv(tmp_path/'autumn-prices.csv')
    doc = json.loads(cli(tmp_path, 'monitor', 'autumn.csv', '--json').stdout)
    september, october = (b['estimated'] for b in doc['batches'])
    assert october['mae']['value'] > september['mae']['value'] * 1.1, (september, october)  # the older cars' larger errors, seen without labels
    assert [b['realised'] for b in doc['batches']] == [{}, {}]
    labelled = json.loads(cli(tmp_path, 'monitor', 'autumn.csv', '--labels', 'autumn-prices.csv', '--json').stdout)
    for b in labelled['batches']:
        assert abs(b['estimated']['mae']['value'] - b['realised']['mae']) < 0.1 * b['realised']['mae'], b
