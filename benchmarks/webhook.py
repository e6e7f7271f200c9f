"""Promote-to-serve latency: the time from `promote` to the first answer by the new version, with the tracking server's webhook and
with the service's poll alone (every 2 s, the default).

A SQLite-backed MLflow server on loopback with webhooks allowed to reach it; a fresh project on the bundled flights with two registered
versions (`mlops-nb run`, then `mlops-nb run -p train.max_iter=50`, stages up to register); a service for `champion`; then the champion
moved between the two versions `n` times, at random points of the poll's cycle, each time timing until /health says the new version is served (it swaps only after
loading and checking the version, so that is when its answers come from it).

Run: `path/to/.venv/bin/python benchmarks/webhook.py [n]` (about two minutes)."""
import os, random, statistics, subprocess, sys, tempfile, time, urllib.request
from pathlib import Path

import httpx

from mlops_nb.core import load_config
from mlops_nb.register import alias_version, alias_webhook, promote, use_mlflow
from mlops_nb.serve import Server, free_port, make_app

BIN, SECRET = Path(sys.executable).parent, 'benchmark-webhook-secret'
HOOKED = {'MLFLOW_WEBHOOK_ALLOWED_SCHEMES': 'http,https', 'MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS': 'true', 'MLFLOW_WEBHOOK_CACHE_TTL': '1',
          'MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY': 'x3Ie2xG1pq7Zhb5m3cA0yVdCHi7c9Yy7u8R0xJbV7lU=', 'MLFLOW_SERVER_ENABLE_JOB_EXECUTION': 'false'}

def tracking_server(folder:Path)->tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([BIN/'mlflow', 'server', '--backend-store-uri', f"sqlite:///{folder/'mlflow.db'}", '--artifacts-destination',
                             str(folder/'artifacts'), '--host', '127.0.0.1', '--port', str(port), '--workers', '1'],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **HOOKED})
    url = f'http://127.0.0.1:{port}'
    for _ in range(600):
        try:
            if urllib.request.urlopen(f'{url}/health', timeout=2).status == 200: return proc, url
        except OSError: time.sleep(0.2)
    raise RuntimeError('the MLflow server did not start')

def served_after(url:str, version:str, started:float, limit:float=60)->float:
    "Seconds from `started` until the service at `url` serves `version`."
    while time.perf_counter() - started < limit:
        if httpx.get(f'{url}/health').json()['version'] == version: return time.perf_counter() - started
        time.sleep(0.005)
    raise RuntimeError(f'v{version} was not served within {limit} s')

def moves(cfg:dict, url:str, n:int)->list[float]:
    "Move the champion between v1 and v2 `n` times; the seconds until each move was served."
    out, pause = [], random.Random(0)
    for _ in range(n):
        target = '1' if alias_version(cfg['mlflow']['model_name'], 'champion') == '2' else '2'
        started = time.perf_counter()
        promote(cfg, target, 'benchmark', force=True)
        out.append(served_after(url, target, started))
        time.sleep(pause.uniform(0.5, 2.5))  # moves at any point of the poll's cycle, not in step with it
    return out

def main(n:int=10):
    folder = Path(tempfile.mkdtemp(prefix='mlops-nb-webhook-'))
    proc, tracking = tracking_server(folder)
    try:
        root = folder/'project'
        root.mkdir()
        (root/'mlops.toml').write_text(f'[mlflow]\ntracking_uri = "{tracking}"\n\n[pipeline]\nstages = ["data", "train", "evaluate", "register"]\n')
        for extra in ([], ['-p', 'train.max_iter=50']):
            subprocess.run([BIN/'mlops-nb', 'run', *extra], cwd=root, check=True, capture_output=True)
        cfg = load_config(root)
        use_mlflow(cfg)
        rows = []
        for name, hooked in (('poll every 2 s', False), ('webhook', True)):
            with Server(make_app(cfg, log_folder=folder/'log', reload_seconds=600 if hooked else 2, hook_secret=SECRET if hooked else None)) as s:
                if hooked:
                    alias_webhook(cfg, f'{s.url}/hooks/registry', SECRET)
                    time.sleep(1.5)  # the server's webhook cache (MLFLOW_WEBHOOK_CACHE_TTL)
                took = moves(cfg, s.url, n)
            rows.append((name, statistics.median(took), sorted(took)[int(0.9 * (n - 1))], max(took)))
        print(f'promote -> first answer by the new version, {n} moves each (flights champion, SQLite-backed MLflow server, 2 cores)')
        print(f"{'':<16}{'median s':>10}{'p90 s':>10}{'max s':>10}")
        for name, med, p90, top in rows: print(f'{name:<16}{med:>10.2f}{p90:>10.2f}{top:>10.2f}')
    finally:
        proc.terminate()

if __name__ == '__main__': main(*map(int, sys.argv[1:]))
