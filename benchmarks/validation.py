"""Validation of a generated Parquet file (default 10 million rows: 15 numeric + 5 categorical columns) against its contract.

mlops_nb's `validate_file` (streaming: batch statistics, and the row-level quarantine written with reasons; once more with a copy of
the accepted rows written too) side by side with
pandera's polars backend doing the same checks (types, nulls, ranges, categories) on the frame read into memory.
Each contender runs in a fresh process; peak memory is that process's resident high-water mark (VmHWM, interpreter included;
not ru_maxrss, which a child inherits from the parent that generated the file).
Run: `python benchmarks/validation.py [rows]`."""
import json, subprocess, sys, tempfile
from pathlib import Path

import numpy as np
import polars as pl

NUMERIC, CATEGORICAL, CATEGORIES = [f'x{i:02d}' for i in range(15)], [f'c{i}' for i in range(5)], ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h']

def generate(path, rows, seed=0):
    "Write the test file: a few values per column out of range, some nulls where allowed, a few unknown categories."
    rng = np.random.default_rng(seed)
    cols = {}
    for i, c in enumerate(NUMERIC):
        x = rng.normal(0, 2, rows)
        x[rng.integers(0, rows, 50)] = 1e6
        cols[c] = pl.Series(c, x).scatter(rng.integers(0, rows, rows // 100), None) if i >= 10 else pl.Series(c, x)
    for c in CATEGORICAL:
        codes = rng.integers(0, len(CATEGORIES), rows)
        s = pl.Series(c, np.array(CATEGORIES)[codes])
        cols[c] = s.scatter(rng.integers(0, rows, 20), 'zz')
    pl.DataFrame(cols).write_parquet(path)

def contract():
    "The file's contract: numbers in [-20, 20] (the last five may be 2 % null), categories strict."
    columns = {c: {'dtype': 'Float64', 'required': i < 10, 'max_null_rate': 0.02, 'min': -20.0, 'max': 20.0} for i, c in enumerate(NUMERIC)}
    columns |= {c: {'dtype': 'String', 'required': True, 'max_null_rate': 0.0, 'categories': CATEGORIES, 'strict': True} for c in CATEGORICAL}
    return {'dataset': {'source': 'generated', 'target': '', 'time_column': '', 'id_column': '', 'rows_min': 1, 'rows_max': 10**10}, 'columns': columns}

OURS = '''
import json, sys, time
import polars as pl
from mlops_nb.contract import validate_file
path, out, contract, copy = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4] == 'copy'
start = time.perf_counter()
v = validate_file(pl.scan_parquet(path), contract, out + '/quarantine.parquet', out + '/accepted.parquet' if copy else None)
seconds = time.perf_counter() - start
quarantined = pl.scan_parquet(out + '/quarantine.parquet').select(pl.len()).collect().item()
hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))
print(json.dumps({'seconds': seconds, 'peak_mb': hwm / 1024, 'rows': v.rows_read,
                  'flagged': quarantined, 'quarantine written': True, 'batch failures': len(v.failures)}))
'''

PANDERA = '''
import json, sys, time
import polars as pl
import pandera.polars as pa
path, contract = sys.argv[1], json.loads(sys.argv[3])
def column(spec):
    if spec['dtype'] == 'String': return pa.Column(pl.String, pa.Check.isin(spec['categories']), nullable=not spec['required'])
    return pa.Column(pl.Float64, pa.Check.in_range(spec['min'], spec['max']), nullable=not spec['required'])
schema = pa.DataFrameSchema({c: column(s) for c, s in contract['columns'].items()})
start = time.perf_counter()
df = pl.read_parquet(path)
try:
    schema.validate(df, lazy=True)
    flagged = 0
except pa.errors.SchemaErrors as e: flagged = e.failure_cases.height
seconds = time.perf_counter() - start
hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))
print(json.dumps({'seconds': seconds, 'peak_mb': hwm / 1024, 'rows': df.height,
                  'flagged': flagged, 'quarantine written': False, 'batch failures': None}))
'''

def run(code, path, out, copy=''):
    r = subprocess.run([sys.executable, '-c', code, str(path), str(out), json.dumps(contract()), copy], capture_output=True, text=True)
    if r.returncode: return {'error': (r.stderr.strip().splitlines() or ['failed'])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])

def main(rows=10_000_000):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d)/'batch.parquet'
        generate(path, rows)
        print(f'{rows:,} rows x 20 columns, {path.stat().st_size / 2**20:.0f} MiB of Parquet')
        results = {'mlops_nb validate_file (streaming)': run(OURS, path, d),
                   '  same, plus a copy of the accepted rows': run(OURS, path, d, 'copy')}
        try:
            import pandera  # noqa: F401  (only to say when the peer is missing)
            results['pandera polars backend'] = run(PANDERA, path, d)
        except ImportError: results['pandera polars backend'] = {'error': 'pandera is not installed: pip install "pandera[polars]"'}
    print(f"{'contender':<38}{'seconds':>9}{'rows/s':>14}{'peak MiB':>10}{'flagged':>10}  quarantine written")
    for name, r in results.items():
        if 'error' in r: print(f'{name:<38}  {r["error"]}'); continue
        print(f"{name:<38}{r['seconds']:>9.2f}{r['rows'] / r['seconds']:>14,.0f}{r['peak_mb']:>10.0f}{r['flagged']:>10}  {r['quarantine written']}")
    ours, peer = results['mlops_nb validate_file (streaming)'], results['pandera polars backend']
    if 'error' not in ours and 'error' not in peer:
        print(f"speed: {peer['seconds'] / ours['seconds']:.2f}x pandera's; peak memory: {ours['peak_mb'] / peer['peak_mb']:.2f} of pandera's")

if __name__ == '__main__': main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000)
