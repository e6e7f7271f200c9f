"The data stage on users' own files: good data for both tasks, and every kind of bad input, each with a clear message or a quarantine."
import json, os, subprocess, sys
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest

from mlops_nb.contract import DataContractError
from mlops_nb.core import StageContext, load_config, notebook_parameters, stage_notebook
from mlops_nb.data import DataSourceError, data_stage

def sales(n_days=180, seed=3):
    "Six months of daily store sales: a time column, features, a class label and a numeric target."
    rows = []
    for i in range(n_days):
        for store in ('north', 'south', 'east'):
            day = date(2024, 1, 1) + timedelta(days=i)
            price = 10 + (i * 7 + len(store) * 3 + seed) % 13
            units = 50 + (i * 11 + len(store) * 5) % 37 - price
            rows.append({'day': f'{day} 09:00', 'store': store, 'price': price + 0.5, 'units': units,
                         'big': int(units > 45), 'revenue': round(units * (price + 0.5), 2)})
    return pl.DataFrame(rows)

def sales_params(source='sales.csv', id_column='')->str:
    "The `[stages.data.params]` table of a project whose data is `sales()` written to `source`."
    return (f'[stages.data.params]\nsource = "{source}"\ntarget = "big"\ntime_column = "day"\nid_column = "{id_column}"\n'
            'exclude = ["revenue", "units"]\n')

def run_data(root, **overrides):
    "Run the data stage in-process on the project at `root` with parameter overrides; its record."
    os.environ['MLOPS_NB_ROOT'] = str(root)
    try:
        cfg = load_config(root)
        contract = notebook_parameters(stage_notebook(cfg, 'data'))
        params = {n: p.default for n, p in contract.items()} | overrides
        return data_stage(StageContext('data', cfg, 'test', root/'runs'/'test', params, contract))
    finally: del os.environ['MLOPS_NB_ROOT']

OWN = dict(target='big', time_column='day', id_column='', exclude=['revenue', 'units'])

@pytest.fixture
def root(tmp_path): return tmp_path

def write_csv(root, name='sales.csv', df=None):
    (df if df is not None else sales()).write_csv(root/name)
    return name

def test_own_csv_classification_accounts_for_every_row(root):
    record = run_data(root, source=write_csv(root), **OWN)
    m = record['metrics']
    assert m['rows_read'] == 540 == m['rows_accepted'] + m['rows_quarantined']
    assert record['schema']['categorical'] == ['store'] and record['schema']['numeric'] == ['price']
    assert record['schema']['classes'] == [0, 1] and len(record['outputs']['batches']) == 2
    assert (root/'contract.toml').exists()

def test_contract_is_kept_once_written_and_edits_take_effect(root):
    src = write_csv(root)
    run_data(root, source=src, **OWN)
    text = (root/'contract.toml').read_text()
    closed = '[columns.store]\ndtype = "String"\ncategories = ["east", "south"]\nstrict = true\n'
    (root/'contract.toml').write_text(text.replace('[columns.store]\ndtype = "String"\n', closed))
    with pytest.raises(DataContractError, match=r"180 of 540 rows .* were quarantined|quarantined, above the contract's max_quarantined_share"):
        run_data(root, source=src, **OWN)
    record = run_data(root, source=src, warn_only=['quarantine'], **OWN)
    assert record['metrics']['rows_quarantined'] == 180
    q = pl.read_parquet(record['outputs']['quarantine']['path'])
    assert set(q['_reason']) == {"store: unknown category 'north'"}
    assert record['contract']['inferred_now'] is False

def test_a_first_try_with_other_settings_leaves_no_contract_in_the_way(root):
    "A contract inferred for a try the person then corrected is inferred again while nobody edited it; an edited one is theirs."
    src = write_csv(root, df=sales().with_columns(pl.col('day').str.slice(0, 4).alias('year'), pl.col('day').str.slice(5, 2).alias('month')))
    run_data(root, source=src, **OWN | {'time_column': '', 'window': 'rows'})  # the first try: no time column
    corrected = run_data(root, source=src, **OWN | {'time_column': 't', 'time_parts': ['year', 'month']})
    assert corrected['contract']['inferred_now'] and 't' in corrected['contract']['columns']
    assert any('inferred again' in n for n in corrected['notes']), corrected['notes']
    text = (root/'contract.toml').read_text()
    (root/'contract.toml').write_text(text.replace('[columns.price]\ndtype = "Float64"\n', '[columns.price]\ndtype = "Float64"\nmin = 0\n'))
    with pytest.raises(DataContractError, match=r"column\(s\) \['t2'\] of sales.csv are not in the contract"):
        run_data(root, source=src, **OWN | {'time_column': 't2', 'time_parts': ['year', 'month']})

def test_own_parquet_regression(root):
    sales().with_columns(pl.col('day').str.to_datetime()).write_parquet(root/'sales.parquet')
    record = run_data(root, source='sales.parquet', target='revenue', task='regression', time_column='day', id_column='', exclude=['big', 'units'])
    assert record['metrics']['rows_read'] == record['metrics']['rows_accepted'] == 540
    assert record['schema']['task'] == 'regression' and 'classes' not in record['schema']

def test_own_ndjson_and_a_glob_of_files(root):
    df = sales()
    df.head(270).write_ndjson(root/'part-1.ndjson')
    df.tail(270).write_ndjson(root/'part-2.ndjson')
    assert run_data(root, source='part-*.ndjson', **OWN)['metrics']['rows_read'] == 540

def test_own_csv_runs_through_the_pipeline_with_configuration_only(root):
    write_csv(root)
    (root/'mlops.toml').write_text('[pipeline]\nstages = ["data"]\n\n[stages.data.params]\nsource = "sales.csv"\ntarget = "revenue"\n'
                                   'task = "regression"\ntime_column = "day"\nid_column = ""\nexclude = ["big", "units"]\n')
    r = subprocess.run([Path(sys.executable).parent/'mlops-nb', 'run'], cwd=root, capture_output=True, text=True,
                       env={k: v for k, v in os.environ.items() if not k.startswith('MLOPS_NB_')})
    assert r.returncode == 0, r.stderr[-2000:]
    manifest = json.loads(next((root/'runs').glob('*/manifest.json')).read_text())
    assert manifest['stages'][0]['metrics']['rows_accepted'] == 540

def bad(root, name, content, **params):
    path = root/name
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    return run_data(root, **(OWN | {'source': name} | params))

HEADER = 'day,store,price,units,big,revenue\n'

@pytest.mark.parametrize('case, expected', [
    ('missing file', "no file matches 'nowhere.csv'"),
    ('empty file', 'empty.csv is empty (0 bytes)'),
    ('corrupt parquet', 'broken.parquet: cannot read as parquet'),
    ('ragged rows', 'ragged.csv line 3: 7 fields, but the header has 6'),
    ('bad quoting', 'quoted.csv line 4: unexpected end of data (check the quoting)'),
    ('wrong delimiter', "semi.csv has a single column 'day;store;price;units;big;revenue': is the separator something other than ','?"),
    ('non-UTF-8 bytes', 'latin.csv is not UTF-8: byte 0xe9 on line 3'),
    ('missing target', "target column 'big' is not in notarget.csv; its columns are: 'day', 'store', 'price', 'units', 'revenue'"),
    ('single-class target', "target 'big' has a single class (0) in the reference window; a classifier needs two"),
    ('unparseable time', "time column 'day': none of its 3 values parse as a date/time (e.g. 'yesterday')"),
    ('all-null target', "column 'big' is entirely null in the reference window"),
    ('duplicate column names', 'dups.csv has duplicate column names: price'),
])
def test_bad_input_gets_a_clear_message(root, case, expected):
    good = sales().write_csv()
    lines = good.splitlines(keepends=True)
    def edit(n, old, new): return ''.join(lines[:n - 1]) + lines[n - 1].replace(old, new, 1) + ''.join(lines[n:])
    run = {
        'missing file': lambda: run_data(root, **(OWN | {'source': 'nowhere.csv'})),
        'empty file': lambda: bad(root, 'empty.csv', ''),
        'corrupt parquet': lambda: bad(root, 'broken.parquet', b'PAR1 this is not parquet at all PAR1'),
        'ragged rows': lambda: bad(root, 'ragged.csv', edit(3, '\n', ',extra\n')),
        'bad quoting': lambda: bad(root, 'quoted.csv', edit(4, ',east,', ',"east,')),
        'wrong delimiter': lambda: bad(root, 'semi.csv', good.replace(',', ';')),
        'non-UTF-8 bytes': lambda: bad(root, 'latin.csv', edit(3, 'south', 'Montréal').encode('latin-1')),
        'missing target': lambda: bad(root, 'notarget.csv', sales().drop('big').write_csv()),
        'single-class target': lambda: bad(root, 'oneclass.csv', sales().with_columns(pl.lit(0).alias('big')).write_csv()),
        'unparseable time': lambda: bad(root, 'when.csv', HEADER + ''.join(f'yesterday,north,10.5,30,{i % 2},315\n' for i in range(3))),
        'all-null target': lambda: bad(root, 'nulls.csv', sales().with_columns(pl.lit(None, pl.Int64).alias('big')).write_csv()),
        'duplicate column names': lambda: bad(root, 'dups.csv', good.replace('day,store,price,units', 'day,store,price,price', 1)),
    }[case]
    with pytest.raises((DataSourceError, DataContractError)) as err: run()
    assert expected in str(err.value)

def test_a_feature_with_nothing_to_learn_from_is_left_out_with_its_reason(root):
    "An empty column and a column of free text are not features; the run goes on and its record says why."
    notes = sales().with_columns(pl.lit(None, pl.String).alias('note'), pl.format('order {} of the day', pl.int_range(pl.len())).alias('memo'))
    record = run_data(root, source=write_csv(root, df=notes), **OWN)
    assert record['schema']['categorical'] == ['store'] and record['schema']['numeric'] == ['price']
    assert "note is empty in the reference window, so it is not a feature (name it in include to use it anyway)" in record['notes']
    assert any(n.startswith('memo holds 273 different texts in 273 rows, like an id or free text') for n in record['notes']), record['notes']

def test_mixed_types_in_a_column_are_quarantined_not_lost(root):
    mixed = sales().with_columns(pl.when(pl.int_range(pl.len()) % 50 == 7).then(pl.lit('n/a')).otherwise(pl.col('price').cast(pl.String)).alias('price'))
    src = write_csv(root, df=mixed)
    with pytest.raises(DataContractError, match=r"quarantined, above the contract's max_quarantined_share of 1.0%; top reasons: price: not Float64"):
        run_data(root, source=src, **OWN)
    record = run_data(root, source=src, warn_only=['quarantine'], **OWN)
    m = record['metrics']
    assert m['rows_quarantined'] == 11 and m['rows_read'] == m['rows_accepted'] + m['rows_quarantined'] == 540
    q = pl.read_parquet(record['outputs']['quarantine']['path'])
    assert set(q['_reason']) == {"price: 'n/a' is not Float64"}
    assert sorted(q['source_row'].to_list())[:2] == [7, 57]

def test_nulls_that_rise_are_counted_and_fail_only_when_a_person_made_it_a_rule(root):
    src = write_csv(root)
    run_data(root, source=src, **OWN)
    gappy = sales().with_columns(pl.when(pl.col('day') > '2024-05-01').then(None).otherwise(pl.col('price')).alias('price'))
    write_csv(root, df=gappy)
    record = run_data(root, source=src, **OWN)
    assert record['metrics']['rows_quarantined'] == 0
    may = next(b for b in record['batches'] if b['batch'] == '2024-05')
    assert [d['expectation'] for d in may['departures'] if d['column'] == 'price'] == ['null rate above the expected 10.0%']
    text = (root/'contract.toml').read_text()
    (root/'contract.toml').write_text(text.replace('[columns.price]\ndtype = "Float64"\n', '[columns.price]\ndtype = "Float64"\nmax_null_rate = 0.25\n'))
    with pytest.raises(DataContractError, match=r"batch 2024-05: column 'price' is 100.0% null; the contract allows 25.0%"):
        run_data(root, source=src, **OWN)
    assert run_data(root, source=src, warn_only=['null_rate'], **OWN)['metrics']['warnings'] == 2

def test_data_without_a_time_column_uses_row_order(root):
    record = run_data(root, source=write_csv(root, df=sales().drop('day')), target='big', time_column='', id_column='',
                      window='rows', batch_rows=90, exclude=['revenue', 'units'])
    assert [b['batch'] for b in record['batches']] == [f'rows-{i:06d}' for i in range(6)]
    assert record['metrics']['reference_rows'] == 270 and record['metrics']['holdout_rows'] == 90

def test_times_written_as_epoch_seconds_or_in_a_declared_format(root):
    "Epoch seconds are read as times by their size; a format the person declares wins over the one found."
    epoch = sales().with_columns(pl.col('day').str.to_datetime().dt.epoch('s').alias('day'))
    record = run_data(root, source=write_csv(root, 'epoch.csv', epoch), **OWN)
    assert [b['name'] for b in record['outputs']['batches']] == ['2024-05', '2024-06'] and record['metrics']['rows_quarantined'] == 0
    european = sales().with_columns(pl.col('day').str.to_datetime().dt.strftime('%d/%m/%Y %H:%M').alias('day'))
    (root/'contract.toml').unlink()
    record = run_data(root, source=write_csv(root, 'eu.csv', european), **OWN | {'time_format': '%d/%m/%Y %H:%M'})
    assert record['contract']['columns']['day']['format'] == '%d/%m/%Y %H:%M' and record['metrics']['rows_quarantined'] == 0
    assert [b['name'] for b in record['outputs']['batches']] == ['2024-05', '2024-06']
    (root/'contract.toml').unlink()
    with pytest.raises(DataSourceError, match=r"time column 'day' holds numbers such as 2024, not times: for a year, build the time with time_parts"):
        run_data(root, source=write_csv(root, 'years.csv', sales().with_columns(pl.col('day').str.slice(0, 4))), **OWN)

def test_init_finds_an_id_by_what_it_holds_and_a_previous_models_columns_by_name(root):
    from mlops_nb.data import propose_config
    scored = sales().with_row_index('#', offset=1).with_columns((pl.col('big') * 0.9).alias('big_pred_proba'))
    p = propose_config(write_csv(root, 'scored.csv', scored), root)
    assert (p['id_column'], p['target'], p['time_column']) == ('#', 'price', 'day')
    assert 'big_pred_proba' in p['exclude'] and "big_pred_proba: named like a model's output" in p['why']['exclude']
