"The Spark engine against the polars engine on a real dataset the project never trained on: the same rows quarantined for the same reasons, the same predictions, the same drift p-values, performance and alerts."
import json, re, shutil
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from conftest import cli, run_stages
from mlops_nb.contract import DataContractError
from mlops_nb.data import DataSourceError
from mlops_nb.deploy import score_file
from mlops_nb.monitor import monitor_file
from mlops_nb.spark import spark_session
from test_own_data import package_file

pytestmark = pytest.mark.xdist_group('spark')

CONFIG = '''
[mlflow]
model_name = "seattle-temp"

[stages.data.params]
source = "seattle-weather.csv"
target = "temp_max"
task = "regression"
time_column = "date"
window = "quarter"
'''

@pytest.fixture(scope='session')
def project(tmp_path_factory):
    "Seattle's daily weather 2012-2015 (vega_datasets), a regression of the day's high with a deployed champion; and one Spark session for the tests."
    root = tmp_path_factory.mktemp('seattle')
    shutil.copy(package_file('vega_datasets', '_data', 'seattle-weather.csv'), root/'seattle-weather.csv')
    (root/'mlops.toml').write_text(CONFIG)
    cfg = run_stages(root, ('data', 'train', 'evaluate', 'register', 'deploy'))
    spark = spark_session(cfg)
    yield root, cfg
    spark.stop()

def later_year(root, broken:int=3)->pl.DataFrame:
    "2015 as text, as a new batch would arrive: a new kind of weather, a missing wind, and `broken` rows no contract accepts."
    df = pl.read_csv(root/'seattle-weather.csv', infer_schema=False).filter(pl.col('date').str.starts_with('2015'))
    df = df.with_columns(pl.when(pl.int_range(pl.len()) == 10).then(pl.lit('hail')).otherwise(pl.col('weather')).alias('weather'),
                         pl.when(pl.int_range(pl.len()) == 11).then(None).otherwise(pl.col('wind')).alias('wind'))
    bad = [('precipitation', 'n/a'), ('temp_min', 'inf'), ('date', '2015/13/45'), ('wind', '4,5')]
    for i in range(broken):
        column, value = bad[i % len(bad)]
        df = df.with_columns(pl.when(pl.int_range(pl.len()) == 40 + 7 * i).then(pl.lit(value)).otherwise(pl.col(column)).alias(column))
    return df

def outputs(result)->tuple[pl.DataFrame, pl.DataFrame|None]:
    "The predictions and the quarantine a scoring wrote (a file with polars, a folder of parts with Spark), in row order."
    read = lambda p: pl.read_parquet(f'{p}/*.parquet' if result['engine'] == 'spark' else p)
    quarantine = read(result['quarantine']).with_columns(pl.col('_row').cast(pl.Int64)).sort('_row') if result['quarantine'] else None
    return read(result['predictions']).drop('scored_at').sort(pl.col('id').cast(pl.Int64)), quarantine

def logged(cfg)->pl.DataFrame:
    "The batch rows of the project's prediction log."
    parts = [pl.read_parquet(p) for p in sorted(Path(cfg['paths']['predictions']).glob('part-*.parquet'))]
    return pl.concat(parts, how='diagonal_relaxed').filter(pl.col('source') == 'batch') if parts else pl.DataFrame()

@pytest.mark.parametrize('fmt', ['csv', 'parquet'])
def test_both_engines_quarantine_the_same_rows_for_the_same_reasons_and_predict_the_same(project, fmt):
    root, cfg = project
    batch = later_year(root)
    if fmt == 'csv': batch.write_csv(root/'2015.csv')
    else: batch.with_columns(pl.col('date').str.to_datetime(strict=False), pl.exclude('date', 'weather').cast(pl.Float64, strict=False)).write_parquet(root/'2015.parquet')
    before = logged(cfg).height
    on_polars = score_file(cfg, f'2015.{fmt}', out=root/f'polars-{fmt}.predictions.parquet')
    on_spark = score_file(cfg, f'2015.{fmt}', out=root/f'spark-{fmt}.predictions.parquet', engine='spark')
    for key in ('rows_in', 'scored', 'quarantined', 'model', 'version'): assert on_spark[key] == on_polars[key], key
    assert on_spark['rows_in'] == 365 and on_spark['quarantined'] == (3 if fmt == 'csv' else 2)
    (p_pred, p_quar), (s_pred, s_quar) = outputs(on_polars), outputs(on_spark)
    assert_frame_equal(s_pred, p_pred, check_exact=False, rel_tol=1e-12)
    assert_frame_equal(s_quar, p_quar)
    assert 'not a finite number' in p_quar['_reason'][-2 if fmt == 'csv' else 0]
    if fmt == 'csv': assert "'n/a' is not Float64" in p_quar['_reason'][0] and "'2015/13/45' is not Datetime" in p_quar['_reason'][2]
    log = logged(cfg)
    assert log.height == before + 2 * on_polars['scored']
    assert set(log.filter(pl.col('logged_at') == log['logged_at'].max()).columns) == set(log.columns)

def test_mlops_nb_score_with_spark_chosen_in_the_configuration_gives_the_deploy_stages_predictions(project, tmp_path):
    root, cfg = project
    data, deploy = (json.loads(sorted((root/'runs').glob(f'*/{n}.json'))[-1].read_text()) for n in ('10_data', '50_deploy'))
    assert deploy['scoring']['engine'] == 'polars'
    batch = pl.read_parquet(data['outputs']['batches'][-1]['path'])
    batch.drop('temp_max', 'source_row').write_csv(tmp_path/'last-quarter.csv')
    (tmp_path/'spark.toml').write_text(CONFIG + '\n[engine]\nname = "spark"\n')
    on_spark = cli(root, 'score', str(tmp_path/'last-quarter.csv'), '--out', str(tmp_path/'spark.parquet'), MLOPS_NB_CONFIG=str(tmp_path/'spark.toml'))
    assert on_spark.returncode == 0, on_spark.stderr[-3000:]
    assert f' {batch.height} ' in on_spark.stdout and 'spark' in on_spark.stdout and 'Traceback' not in on_spark.stderr
    in_order = lambda df: df.sort(pl.col('id').cast(pl.Int64)).drop('scored_at', 'id')  # the file has no id column: ids are row numbers
    assert_frame_equal(in_order(pl.read_parquet(tmp_path/'spark.parquet'/'*.parquet')), in_order(pl.read_parquet(deploy['outputs']['scored'])))

def test_monitoring_on_spark_gives_the_same_drift_p_values_performance_and_alerts(project):
    root, cfg = project
    later_year(root).write_csv(root/'2015-monitored.csv')
    on_polars = monitor_file(cfg, '2015-monitored.csv')
    on_spark = monitor_file(cfg, '2015-monitored.csv', engine='spark')
    assert (on_polars['engine'], on_spark['engine']) == ('polars', 'spark')
    p_drift, s_drift = pl.DataFrame(on_polars['drift']), pl.DataFrame(on_spark['drift'])
    assert (s_drift['p_value'] - p_drift['p_value']).abs().max() <= 1e-6
    assert_frame_equal(s_drift, p_drift, check_exact=False, rel_tol=1e-9)
    assert on_spark['drifted'] == on_polars['drifted'] and on_spark['multivariate'] == on_polars['multivariate']
    assert on_spark['performance'] == on_polars['performance'] and on_spark['performance']['rows'] == 362
    assert on_spark['labels'] == on_polars['labels']
    assert [a['kind'] for a in on_spark['alerts']] == [a['kind'] for a in on_polars['alerts']]
    assert on_spark['departures'] == on_polars['departures'] and any(d['column'] == 'weather' for d in on_spark['departures'])
    assert on_spark['quarantine']['digest'] == on_polars['quarantine']['digest'] and on_spark['quarantined'] == 3

def test_labels_that_arrive_in_their_own_file_join_on_spark_as_on_polars(project):
    root, cfg = project
    batch = later_year(root, broken=0).with_row_index('source_row')
    batch.drop('temp_max').write_csv(root/'2015-unlabelled.csv')
    batch.select('source_row', 'temp_max').filter(pl.col('source_row') % 4 != 0).write_csv(root/'2015-labels.csv')
    on_polars, on_spark = (monitor_file(cfg, '2015-unlabelled.csv', '2015-labels.csv', engine=e) for e in ('polars', 'spark'))
    assert on_spark['labels'] == on_polars['labels'] == {'predictions': 365, 'labels': 273, 'joined': 273, 'awaiting_label': 92,
                                                         'label_without_prediction': 0, 'label_null': 0}
    assert on_spark['performance'] == on_polars['performance'] and on_spark['performance']['rows'] == 273

def test_a_batch_that_quarantines_too_much_fails_on_spark_as_on_polars_and_keeps_both_outputs(project):
    root, cfg = project
    later_year(root, broken=12).write_csv(root/'2015-worse.csv')
    said = {}
    for engine in ('polars', 'spark'):
        with pytest.raises(DataContractError) as refused: score_file(cfg, '2015-worse.csv', out=root/f'worse-{engine}.predictions.parquet', engine=engine)
        said[engine] = str(refused.value).replace(f'worse-{engine}', 'worse')
    assert said['spark'] == said['polars']
    assert said['spark'].startswith("12 of 365 rows (3.3%) of 2015-worse.csv were quarantined, above the contract's max_quarantined_share of 1.0%: ")
    assert 'precipitation: not Float64 (3 rows)' in said['spark'] and 'the 353 valid rows were scored into' in said['spark']
    assert pl.read_parquet(root/'worse-spark.predictions.parquet'/'*.parquet').height == 353
    assert pl.read_parquet(root/'worse-spark.predictions.quarantine.parquet'/'*.parquet').height == 12

def test_broken_files_are_refused_on_spark_with_the_reason_and_no_java_trace(project, capfd):
    root, cfg = project
    good = later_year(root, broken=0).write_csv()
    lines = good.splitlines(keepends=True)
    cases = {'corrupt.parquet': (b'PAR1 not parquet at all PAR1', 'corrupt.parquet: cannot read as parquet'),
             'late-latin.csv': ((good * 40).encode()[:-300] + b'\xe9' + (good * 40).encode()[-300:], 'late-latin.csv is not UTF-8: 1 row with bytes'),
             'long.csv': (''.join(lines[:3] + [lines[3].replace('\n', ',9\n')] + lines[4:]).encode(), 'long.csv: 1 line not fitting its 6 columns, e.g. row 2:'),
             'bad.ndjson': (b'{"date": "2015-01-01"\n', 'bad.ndjson: cannot read as ndjson'),
             'header.csv': (lines[0].encode(), 'header.csv has a header but no rows')}
    for name, (content, says) in cases.items():
        (root/name).write_bytes(content)
        with pytest.raises(DataSourceError, match=re.escape(says)): score_file(cfg, name, engine='spark')
    assert "at org.apache" not in capfd.readouterr().err
