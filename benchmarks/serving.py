"""Serving and batch scoring of the project's champion.

1. The same champion served by mlops_nb (`mlops-nb serve`, micro-batching) and by MLflow (`mlflow models serve --env-manager local`),
   each in its own process on loopback with one worker, driven by the same load: 16 concurrent clients for a fixed time, with
   1-row and 100-row requests. Prints requests/s, rows/s and p50/p99 latency side by side, and the ratio.
2. The same two servers driven by `wrk` (16 connections), an independent load generator, when it is installed (Debian: `wrk`).
3. Batch scoring of 1 million rows from a Parquet file (`mlops_nb.deploy.score_file`: contract validation, scoring, output and
   prediction log included) against the limit: the model's own `predict_proba` on the same rows already in memory, one call.

Run from a project that has a champion (after `mlops-nb run`), from any shell: `path/to/.venv/bin/python benchmarks/serving.py [seconds per load]`."""
import asyncio, json, os, re, shutil, subprocess, sys, tempfile, time
from pathlib import Path

import httpx
import polars as pl

from mlops_nb.core import load_config
from mlops_nb.deploy import score_file
from mlops_nb.serve import PredictionLog, free_port, load_served
from mlops_nb.train import predict

BIN = Path(sys.executable).parent

def wait(url, deadline=120):
    end = time.time() + deadline
    while time.time() < end:
        try:
            if httpx.get(url, timeout=2).status_code == 200: return
        except httpx.HTTPError: pass
        time.sleep(0.5)
    raise RuntimeError(f'{url} did not come up')

async def load(url, body, seconds, clients=16):
    "Requests per second and latencies (ms) of `clients` concurrent clients posting `body` for `seconds`."
    latencies, failures, end = [], 0, time.perf_counter() + seconds
    async def client(c):
        nonlocal failures
        while time.perf_counter() < end:
            t = time.perf_counter()
            r = await c.post(url, content=body, headers={'content-type': 'application/json'})
            latencies.append((time.perf_counter() - t) * 1000)
            failures += r.status_code != 200
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=clients)) as c:
        start = time.perf_counter()
        await asyncio.gather(*(client(c) for _ in range(clients)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {'rps': len(latencies) / elapsed, 'p50': latencies[len(latencies) // 2], 'p99': latencies[int(len(latencies) * .99)], 'failed': failures}

WRK_POST = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open(os.getenv("WRK_BODY"), "rb"):read()
"""

def wrk(url, body, seconds, connections=16):
    "Requests per second and p50/p99 latency (ms) that `wrk` measures."
    with tempfile.TemporaryDirectory() as d:
        (Path(d)/'post.lua').write_text(WRK_POST); (Path(d)/'body.json').write_bytes(body)
        out = subprocess.run(['wrk', '-t2', f'-c{connections}', f'-d{seconds}s', '--latency', '-s', str(Path(d)/'post.lua'), url],
                             capture_output=True, text=True, env=os.environ | {'WRK_BODY': str(Path(d)/'body.json')}, check=True).stdout
    ms = lambda v, unit: float(v) * {'us': 0.001, 'ms': 1, 's': 1000}[unit]
    pct = {p: ms(*re.search(rf'^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$', out, re.M).groups()) for p in ('50', '99')}
    bad = re.search(r'Non-2xx or 3xx responses: (\d+)', out)
    return {'rps': float(re.search(r'Requests/sec:\s+([\d.]+)', out).group(1)), 'p50': pct['50'], 'p99': pct['99'], 'failed': int(bad.group(1)) if bad else 0}

def serving(cfg, seconds):
    served = load_served(cfg)
    data = json.loads(sorted(Path(cfg['paths']['runs']).glob('*/10_data.json'))[-1].read_text())
    rows = pl.read_parquet(data['outputs']['holdout']['path']).head(100).select(list(served.fields)).to_dicts()
    env = os.environ | {'MLFLOW_TRACKING_URI': cfg['mlflow']['tracking_uri'], 'PATH': f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    ours_port, mlflow_port = free_port(), free_port()
    procs = [subprocess.Popen([BIN/'mlops-nb', 'serve', '--no-auth', '--port', str(ours_port)], cwd=cfg['root'], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
             subprocess.Popen([BIN/'mlflow', 'models', 'serve', '-m', f"models:/{served.name}@champion", '--env-manager', 'local', '--host', '127.0.0.1',
                               '--port', str(mlflow_port), '--workers', '1'], cwd=cfg['root'], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        wait(f'http://127.0.0.1:{ours_port}/health'); wait(f'http://127.0.0.1:{mlflow_port}/ping')
        drivers = [('python, 16 clients', lambda url, body: asyncio.run(load(url, body, seconds)))]
        if shutil.which('wrk'): drivers.append(('wrk, 16 connections', lambda url, body: wrk(url, body, seconds)))
        else: print('wrk is not installed (Debian: apt-get install wrk): only the Python load generator is used')
        print(f"serving {served.name} v{served.version}: {seconds} s per load, one server process each")
        print(f"{'load':<22}{'server':<24}{'rows/request':>13}{'requests/s':>12}{'rows/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}{'ratio':>8}")
        for driver, run in drivers:
            for n in (1, 100):
                ours = run(f'http://127.0.0.1:{ours_port}/predict', json.dumps({'records': rows[:n]}).encode())
                theirs = run(f'http://127.0.0.1:{mlflow_port}/invocations', json.dumps({'dataframe_records': rows[:n]}).encode())
                for name, r in (('mlops_nb (FastAPI)', ours), ('mlflow models serve', theirs)):
                    ratio = f"{ours['rps'] / theirs['rps']:.1f}x" if r is ours and theirs['rps'] else ''
                    print(f"{driver:<22}{name:<24}{n:>13}{r['rps']:>12.0f}{r['rps'] * n:>10.0f}{r['p50']:>9.1f}{r['p99']:>9.1f}{r['failed']:>8}{ratio:>8}")
    finally:
        for p in procs: p.terminate(); p.wait(timeout=30)

def batch(cfg, rows=1_000_000):
    served = load_served(cfg)
    data = json.loads(sorted(Path(cfg['paths']['runs']).glob('*/10_data.json'))[-1].read_text())
    ref = pl.read_parquet(data['outputs']['reference']['path'])
    big = pl.concat([ref] * (rows // ref.height + 1)).head(rows).with_columns(pl.int_range(rows).alias(data['schema']['id']))
    with tempfile.TemporaryDirectory() as d:
        big.write_parquet(Path(d)/'million.parquet')
        X = big.select(list(served.fields)).to_pandas()
        start = time.perf_counter(); predict(served.model, X); limit = rows / (time.perf_counter() - start)
        log = PredictionLog(Path(d)/'log')
        result = score_file(cfg, str(Path(d)/'million.parquet'), out=Path(d)/'scored.parquet', log=log)
        log.close()
    print(f"\nbatch scoring {rows:,} rows")
    print(f"{'what':<62}{'rows/s':>12}")
    print(f"{'limit: predict_proba on the rows already in memory, one call':<62}{limit:>12,.0f}")
    print(f"{'score_file: read + validate + score + write + prediction log':<62}{result['rows_per_second']:>12,.0f}   ({result['rows_per_second'] / limit:.0%} of the limit; {result['scored']:,} scored, {result['quarantined']} quarantined)")

if __name__ == '__main__':
    cfg = load_config()
    serving(cfg, int(sys.argv[1]) if len(sys.argv) > 1 else 10)
    batch(cfg)
