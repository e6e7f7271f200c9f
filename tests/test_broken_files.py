"Broken files through every entry point: `mlops-nb run`, `mlops-nb score` and `mlops-nb monitor` read them with one reader, give the same diagnosis, never a traceback, and account for every row they read."
import json
from pathlib import Path

import polars as pl
import pytest

from conftest import cli, run_stages
from mlops_nb.cli import main
from test_data_inputs import sales, sales_params

pytestmark = pytest.mark.xdist_group('broken_files')

CONFIG = '''
[mlflow]
model_name = "orders"

''' + sales_params(id_column='order_id')

def orders():
    return sales().with_row_index('order_id', offset=1).with_columns(pl.col('order_id').cast(pl.Int64))

@pytest.fixture(scope='session')
def project(tmp_path_factory):
    "A project on its own data with a champion, its stages run in-process; and a folder for broken files."
    root = tmp_path_factory.mktemp('broken')
    orders().write_csv(root/'sales.csv')
    (root/'mlops.toml').write_text(CONFIG)
    (root/'broken').mkdir()
    run_stages(root)
    return root

GOOD = orders().head(300).write_csv()
LINES = GOOD.splitlines(keepends=True)
HEADER = LINES[0]

def edit(n, old, new):
    "The good batch with line `n` (1-based) edited."
    return ''.join(LINES[:n - 1]) + LINES[n - 1].replace(old, new, 1) + ''.join(LINES[n:])

def fewer(n):
    "The good batch with line `n` (1-based) missing its last field."
    return ''.join(LINES[:n - 1]) + ','.join(LINES[n - 1].rstrip('\n').split(',')[:-1]) + '\n' + ''.join(LINES[n:])

def column(name, values):
    "The good batch with one column replaced."
    return orders().head(300).with_columns(pl.Series(name, values)).write_csv()

# name -> (file name, content, the diagnosis every entry point gives, or None for a file whose rows are read)
CASES = {
    'empty file': ('empty.csv', '', 'empty.csv is empty (0 bytes)'),
    'header only': ('header.csv', HEADER, 'header.csv has a header but no rows'),
    'corrupt parquet': ('corrupt.parquet', b'PAR1 not parquet at all PAR1', 'corrupt.parquet: cannot read as parquet'),
    'unclosed quote': ('quoted.csv', edit(4, ',east,', ',"east,'), 'quoted.csv line 4: unexpected end of data (check the quoting)'),
    'wrong separator': ('semi.csv', GOOD.replace(',', ';'), "semi.csv has a single column 'order_id;day;store;price;units;big;revenue'"),
    'latin-1 bytes': ('latin.csv', edit(3, 'south', 'Montréal').encode('latin-1'), 'latin.csv is not UTF-8: byte 0xe9 on line 3'),
    'duplicate columns': ('dups.csv', GOOD.replace('units,big', 'price,big', 1), 'dups.csv has duplicate column names: price'),
    'a field too many': ('long.csv', edit(3, '\n', ',9\n'), 'long.csv line 3: 8 fields, but the header has 7'),
    'a field too few': ('short.csv', fewer(5), 'short.csv line 5: 6 fields, but the header has 7'),
    'unknown format': ('orders.xlsx', b'PK\x03\x04 a spreadsheet', "orders.xlsx: unknown format '.xlsx'"),
    'binary garbage': ('garbage.csv', bytes(range(256)) * 4, 'garbage.csv is not UTF-8'),
    'missing file': ('nowhere.csv', None, "no file matches 'broken/nowhere.csv'"),
    'malformed NDJSON': ('bad.ndjson', '{"order_id": 1, "day": "2024-01-01"\n', 'bad.ndjson: cannot read as ndjson'),
    'words in a number column': ('words.csv', column('price', ['cheap'] * 300), None),
    'infinite numbers': ('inf.csv', column('price', ['inf'] * 3 + ['10.5'] * 297), None),
    'a time that never parses': ('when.csv', column('day', ['yesterday'] * 300), None),
    'an all-null feature': ('nulls.csv', column('price', [None] * 300), None),
    'an extra column': ('extra.csv', orders().head(300).with_columns(pl.lit('x').alias('surprise')).write_csv(), None),
    'duplicated ids': ('dupids.csv', column('order_id', [1, 1, 2] + list(range(3, 300))), None),
    'missing values written as NA': ('na.csv', column('price', ['NA'] * 5 + ['10.5'] * 295), None),
    'a byte-order mark': ('bom.csv', '\ufeff' + GOOD, None),
}

def write(root, name, content):
    path = root/'broken'/name
    if content is not None: path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return f'broken/{name}'

# Through `mlops-nb run` end to end (its kernel, its report, its message); the other cases run the same data stage in this process
END_TO_END = {'empty file', 'latin-1 bytes', 'a field too many', 'words in a number column', 'duplicated ids'}

def run(root, source, case)->tuple[int, str, dict]:
    "The data stage on `source`: its exit code (1 when it fails), what it said, and its metrics."
    if case in END_TO_END:
        r = cli(root, 'run', '--only', 'data', '-p', f'data.source={source}')
        if r.returncode: return r.returncode, r.stdout + r.stderr, {}
        run_id = r.stdout.split('mlops-nb run ', 1)[1].split(':', 1)[0]
        return 0, r.stdout + r.stderr, json.loads((root/'runs'/run_id/'manifest.json').read_text())['stages'][0]['metrics']
    try: run_stages(root, ['data'], [f'data.source={source}'])
    except Exception as e: return 1, f'{type(e).__name__}: {e}', {}
    return 0, '', json.loads(sorted((root/'runs').glob('*/10_data.json'), key=lambda p: p.stat().st_mtime)[-1].read_text())['metrics']

def command(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err

@pytest.mark.parametrize('case', CASES)
def test_every_entry_point_explains_a_broken_file_and_loses_no_row(project, capsys, case):
    name, content, diagnosis = CASES[case]
    source = write(project, name, content)
    code, said, metrics = run(project, source, case)
    score = command(capsys, 'score', source, '--root', str(project), '--out', str(project/'broken'/f'{name}.predictions.parquet'))
    monitor = command(capsys, 'monitor', source, '--root', str(project))
    for text in (said, score[1] + score[2], monitor[1] + monitor[2]): assert 'Traceback' not in text, text[-3000:]
    if diagnosis:
        assert code == 1 and diagnosis in said, said[-2000:]
        assert score[0] == 2 and diagnosis in score[2], score
        assert monitor[0] == 2 and diagnosis in monitor[2], monitor
        return
    rows = 300
    if code == 0: assert metrics['rows_read'] == rows == metrics['rows_accepted'] + metrics['rows_quarantined']
    else: assert 'contract' in said or 'time column' in said, said[-2000:]
    if score[0] == 0:
        scored = pl.read_parquet(project/'broken'/f'{name}.predictions.parquet').height
        held = pl.read_parquet(project/'broken'/f'{name}.predictions.quarantine.parquet').height if (project/'broken'/f'{name}.predictions.quarantine.parquet').exists() else 0
        assert scored + held == rows
    else: assert score[0] == 2 and 'were quarantined, above' in score[2], score
    assert monitor[0] in (0, 3), monitor
    record = json.loads((Path(monitor[1].split('record: ')[-1].strip())/'65_monitor.json').read_text())
    assert record['accepted'] + record['quarantined'] == rows
    reasons = pl.read_parquet(record['quarantine']['path'])['_reason'].to_list() if record['quarantine'] else []
    assert all(reasons), reasons
    if case == 'duplicated ids': assert reasons == ["order_id: duplicate id '1'"]
    if case == 'words in a number column':
        assert "price: 'cheap' is not Float64" in reasons[0] and 'price: not Float64' in score[2] and 'price: not Float64' in said
        assert any(a['kind'] == 'data_quality' and 'quarantined' in a['detail'] for a in record['alerts'])
    if case == 'an all-null feature': assert any(a['kind'] == 'data_quality' and 'price' in a['detail'] for a in record['alerts'])
    if case in ('missing values written as NA', 'a byte-order mark'): assert record['quarantined'] == 0 and score[0] == 0

def test_an_id_repeated_in_a_later_chunk_is_quarantined_as_a_duplicate(project):
    "Batch scoring reads a file in chunks; an id seen in an earlier chunk is a duplicate, as it is within one chunk and on Spark."
    from mlops_nb.core import load_config
    from mlops_nb.deploy import score_file
    ids = list(range(1, 301))
    ids[250] = 5
    (project/'broken'/'repeat.csv').write_text(column('order_id', ids))
    result = score_file(load_config(project), 'broken/repeat.csv', out=project/'broken'/'repeat.predictions.parquet', chunk_rows=100)
    assert (result['rows_in'], result['scored'], result['quarantined']) == (300, 299, 1)
    held = pl.read_parquet(result['quarantine'])
    assert held['_reason'].to_list() == ["order_id: duplicate id '5'"] and held['source_row'].to_list() == [250]
