"""Batch scoring at scale: 10 million rows validated against the contract and scored by the polars engine and by Spark local[2], side by side.

A scratch copy of the default project (the bundled flights, its stages run in-process) gives the champion and its contract; the batch is the
flights resampled with replacement to 10 million rows with fresh ids, written as Parquet. Each scoring is `score_file` in a fresh process:
wall time, and the peak resident memory of the driver (the Python process that runs it), of Spark's JVM, and of the whole process tree
(the JVM and Spark's Python workers included), sampled every 0.1 s. Spark is then run with its input split into fewer and more partitions
(`spark.sql.files.maxPartitionBytes`). The predictions of every Spark run are compared with the polars engine's, row by row.
Run: `python benchmarks/spark.py [rows] [partitions ...]` (default: 10,000,000 rows; 2, 8 and 32 partitions besides Spark's own choice)."""
import json, os, subprocess, sys, tempfile, threading, time
from pathlib import Path

import polars as pl
import psutil

TRAIN = '''
import os
from pathlib import Path
from mlops_nb.core import StageContext, load_config, new_run_id, notebook_parameters, resolve_params, run_stage_function, stage_notebook
cfg, run_id = load_config(), new_run_id()
params = resolve_params(cfg, stages=['data', 'train', 'evaluate', 'register'])
for stage in ('data', 'train', 'evaluate', 'register'):
    run_stage_function(StageContext(stage, cfg, run_id, Path(cfg['paths']['runs'])/run_id, params[stage], notebook_parameters(stage_notebook(cfg, stage))))
'''

SCORE = '''
import json, sys, time
from mlops_nb.core import load_config
from mlops_nb.deploy import score_file
cfg = load_config()
result = score_file(cfg, sys.argv[1], out=sys.argv[2], engine=sys.argv[3])
print(json.dumps(result))
'''

def write_batch(root:Path, rows:int)->Path:
    "The flights (every window the data stage kept) resampled to `rows` rows with fresh ids, as Parquet."
    record = json.loads(next((root/'runs').glob('*/10_data.json')).read_text())
    out = record['outputs']
    flights = pl.concat([pl.read_parquet(b['path']) for b in [out['reference'], out['holdout'], *out['batches']]], how='diagonal_relaxed')
    batch = flights.drop('source_row').sample(rows, with_replacement=True, seed=0).with_columns(pl.int_range(rows, dtype=pl.Int64).alias('flight_id'))
    path = root/'batch.parquet'
    batch.write_parquet(path, row_group_size=100_000)  # row groups small enough for Spark to split the file 32 ways
    return path

def measured(cmd:list, cwd:Path, env:dict)->dict:
    "Run `cmd`; its wall time, stdout, and peak RSS (MB) of the process itself, of any Java child, and of the whole tree."
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peaks = {'driver_mb': 0.0, 'jvm_mb': 0.0, 'tree_mb': 0.0}
    def sample():
        top = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                procs = [top, *top.children(recursive=True)]
                rss = {p.pid: p.memory_info().rss / 2**20 for p in procs}
                peaks['driver_mb'] = max(peaks['driver_mb'], rss[top.pid])
                peaks['jvm_mb'] = max([peaks['jvm_mb'], *[rss[p.pid] for p in procs if p.name() == 'java']])
                peaks['tree_mb'] = max(peaks['tree_mb'], sum(rss.values()))
            except psutil.Error: pass
            time.sleep(0.1)
    watcher = threading.Thread(target=sample)
    watcher.start()
    stdout, _ = proc.communicate()
    watcher.join()
    if proc.returncode: raise RuntimeError(f"{' '.join(map(str, cmd))} failed with exit code {proc.returncode}")
    return {'seconds': round(time.perf_counter() - start, 1), **{k: round(v) for k, v in peaks.items()}, 'result': json.loads(stdout.strip().splitlines()[-1])}

def read(result:dict)->pl.DataFrame:
    p = result['predictions']
    return pl.read_parquet(f'{p}/*.parquet' if result['engine'] == 'spark' else p).select('id', 'probability').sort('id')

def main(rows:int=10_000_000, partitions:tuple=(2, 8, 32)):
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        env = {k: v for k, v in os.environ.items() if not k.startswith(('MLOPS_NB_', 'MLFLOW_'))}
        subprocess.run([sys.executable, '-c', TRAIN], cwd=root, env=env, check=True, capture_output=True)
        batch = write_batch(root, rows)
        size_mb = batch.stat().st_size / 2**20
        print(f'{rows:,} rows, {size_mb:.0f} MB of Parquet; 2 cores', flush=True)
        runs = [('polars', None, env)] + [('spark', None, env)] + [
            ('spark', n, env | {'MLOPS_NB_CONFIG': str(root/f'spark-{n}.toml')}) for n in partitions]
        for n in partitions:
            (root/f'spark-{n}.toml').write_text(f'[engine.spark.conf]\n"spark.sql.files.maxPartitionBytes" = "{max(1, int(batch.stat().st_size / n))}b"\n'
                                                 f'"spark.sql.files.openCostInBytes" = "0b"\n')
        table, polars_predictions = [], None
        for engine, n, run_env in runs:
            out = root/f'{engine}-{n}.predictions.parquet'
            m = measured([sys.executable, '-c', SCORE, str(batch), str(out), engine], root, run_env)
            r = m.pop('result')
            predictions = read(r)
            if engine == 'polars': polars_predictions, same = predictions, ''
            else: same = bool(predictions.equals(polars_predictions))
            table.append({'engine': engine, 'partitions': str(n) if n else ('Spark default' if engine == 'spark' else ''), 'seconds': m['seconds'], 'rows_per_second': round(rows / m['seconds']),
                          'driver_peak_mb': m['driver_mb'], 'jvm_peak_mb': m['jvm_mb'] or None, 'all_processes_peak_mb': m['tree_mb'],
                          'scored': r['scored'], 'same_predictions_as_polars': same})
            print(json.dumps(table[-1]), flush=True)
        with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, tbl_hide_dataframe_shape=True):
            print(pl.DataFrame(table))

if __name__ == '__main__':
    args = [int(a) for a in sys.argv[1:]]
    main(*(args[:1] or [10_000_000]), *([tuple(args[1:])] if len(args) > 1 else []))
