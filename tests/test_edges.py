"Edges of a project's life: a batch with no valid rows, a five-row batch, monitoring before and after runs, labels that arrive in their own file, twice; and retraining held to the same leakage checks as training."
import json

import numpy as np
import polars as pl
import pytest

from conftest import cli
from mlops_nb.core import load_config, scratch_config
from mlops_nb.retrain import retrain
from mlops_nb.register import VersionBundle
from test_data_inputs import sales, sales_params

pytestmark = pytest.mark.xdist_group('edges')

CONFIG = '''
[mlflow]
model_name = "orders"

''' + sales_params('orders.csv', 'order_id') + 'warn_only = ["quarantine", "dtype"]\n'

def orders():
    "Six months of orders; June's prices are unreadable (every June row is quarantined), and July has five orders."
    df = sales().with_row_index('order_id', offset=1).with_columns(pl.col('order_id').cast(pl.Int64), pl.col('price').cast(pl.String))
    df = df.with_columns(pl.when(pl.col('day') >= '2024-06').then(pl.lit('n/a')).otherwise(pl.col('price')).alias('price'))
    july = df.filter(pl.col('day') < '2024-01-03').head(5).with_columns((pl.col('order_id') + 10_000).alias('order_id'),
                                                                           pl.col('day').str.replace('2024-01', '2024-07'))
    return pl.concat([df, july])


@pytest.fixture(scope='session')
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp('edges')
    orders().write_csv(root/'orders.csv')
    (root/'mlops.toml').write_text(CONFIG)
    first = cli(root, 'run')
    return root, first

def record(root, stage):
    return json.loads(sorted((root/'runs').glob(f'*/{stage}.json'))[-1].read_text())

def test_a_batch_with_no_valid_row_is_shown_and_passes_deploy_and_monitor(project):
    root, first = project
    assert first.returncode == 0, first.stderr[-3000:]
    data, n, total = record(root, '10_data'), orders().filter(pl.col('day').str.starts_with('2024-06')).height, orders().height
    june = next(b for b in data['batches'] if b['batch'] == '2024-06')
    assert (june['rows_read'], june['accepted'], june['quarantined']) == (n, 0, n)
    assert f'QUARANTINE data: {n} of {total} rows ({n / total:.2%}) held back: price: not Float64 ({n})' in first.stdout
    run = sorted((root/'runs').glob('*/manifest.json'))[-1].parent
    assert "class='quarantine'" in (run/'index.html').read_text()
    deploy = record(root, '50_deploy')
    assert deploy['scoring']['batch'] == 'production batch 2024-07' and deploy['scoring']['scored'] == 5
    assert 'production batch 2024-06' in deploy['scoring']['empty_batches'] and deploy['deployment']['smoke_passed']
    monitor = record(root, '65_monitor')
    by_batch = {b['batch']: b for b in monitor['batches']}
    assert by_batch['2024-06']['nothing_to_monitor'].startswith('nothing left to monitor')

def test_a_five_row_batch_is_monitored_but_neither_alerts_on_performance_nor_retrains(project):
    root, _ = project
    july = {b['batch']: b for b in record(root, '65_monitor')['batches']}['2024-07']
    assert july['rows'] == 5 and july['performance']['too_few_rows'] == '5 labelled rows, fewer than min_rows (100)'
    assert not [a for a in july['alerts'] if a['kind'] == 'performance'] and july['retraining'] is None

def test_monitor_and_run_follow_each_other_and_late_labels_retrain_twice(project):
    root, _ = project
    batch = orders().filter(pl.col('day') < '2024-05-01').filter(pl.col('day') >= '2024-04-01')
    batch.drop('big').write_parquet(root/'april.parquet')
    batch.select('big', 'order_id').write_csv(root/'april-labels.csv')
    assert cli(root, 'monitor', 'april.parquet').returncode in (0, 3)
    again = cli(root, 'run')
    assert again.returncode == 0, again.stderr[-3000:]
    for _ in range(2):
        labelled = cli(root, 'monitor', 'april.parquet', '--labels', 'april-labels.csv', '--retrain', '-p', 'min_rows=50', '-p', 'retrain_on=["drift", "performance", "data_quality"]',
                       '-p', 'retrain_cooldown=0', '-p', 'alert_min_metric=0.99')
        assert labelled.returncode == 3, labelled.stdout[-2000:] + labelled.stderr[-2000:]
        assert 'Traceback' not in labelled.stderr and ('retrain' in labelled.stdout)
    history = cli(root, 'monitoring')
    assert history.returncode == 0 and history.stdout.count('april') == 3, history.stdout + history.stderr
    after = cli(root, 'run')
    assert after.returncode == 0, after.stderr[-3000:]

def test_a_retrained_model_meets_the_same_leakage_checks_as_the_first(tmp_path):
    g = np.random.default_rng(0)
    def month(i, n=400):
        a, b = g.normal(10, 2, n), g.normal(5, 1, n)
        return pl.DataFrame({'row': range(i * n, (i + 1) * n), 'a': a, 'b': b, 'noise': g.normal(size=n), 'total': a + b})
    schema = {'id': 'row', 'target': 'total', 'task': 'regression', 'categorical': [], 'numeric': ['a', 'b', 'noise']}
    cfg = scratch_config(load_config(tmp_path))
    settings = {'estimator': 'hist_gradient_boosting', 'hyperparameters': {'max_iter': 50, 'learning_rate': 0.1, 'max_leaf_nodes': 15, 'l2_regularization': 0.0},
                'seed': 0, 'leakage_threshold': 0.95, 'leakage_exact': 0.99}
    gate = {'threshold': 0.5, 'slices': [], 'min_slice_rows': 100, 'directional': {}, 'min_roc_auc': 0.6, 'min_r2': 0.0, 'max_drop': 0.01,
            'max_relative_drop': 0.02, 'max_slice_drop': 0.05, 'min_compare_rows': 200, 'beat_baseline': True}
    constant = type('Constant', (), {'predict': lambda self, X: np.full(len(X), 15.0)})()
    champion = VersionBundle('leak', '0', {}, [], 0, '', constant, schema, {}, None, None, settings)
    result = retrain(cfg, 'leak', tmp_path/'leak', schema, [('m0', month(0)), ('m1', month(1))], ('m2', month(2)), champion,
                     settings, gate, 'drift', 'test')
    assert not result['promoted'] and any('a linear fit of' in r and 'a' in r and 'b' in r for r in result['refused']), result['refused']
