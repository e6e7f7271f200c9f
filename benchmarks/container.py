"""The champion in a container, against the same service as a bare process.

1. `mlops-nb package` (wheels fetched) and `podman build` from a Debian root file system made with mmdebstrap: time and image size.
2. Time from `podman run` to a ready service (`/v2/health/ready` answers 200), three starts, and the same for the bare process.
3. Throughput under `wrk` (16 connections, 1-row requests, bearer token): the bare process (`uvicorn --factory
   mlops_nb.serve:packaged_app` on the same bundle) and the container (podman, port published on loopback), side by side; then, in
   the container, the Open Inference Protocol's /v2/models/NAME/infer against /predict, the same rows.

Run from a project that has a champion (after `mlops-nb run`), as root on a machine with podman, runc, mmdebstrap and wrk:
`path/to/.venv/bin/python benchmarks/container.py [seconds per load]`."""
import json, os, re, statistics, subprocess, sys, tempfile, time
from pathlib import Path

import httpx
import polars as pl

from mlops_nb.core import load_config
from mlops_nb.package import package
from mlops_nb.serve import free_port, load_served

BIN, TOKEN = Path(sys.executable).parent, 'benchmark-token'
PODMAN, LIMITS = ['podman', '--runtime', 'runc'], ['--ulimit', 'nofile=1024:1024', '--ulimit', 'nproc=4096:4096']
BASE = 'localhost/mlops-nb-base:bookworm'

def ready_after(start:float, url:str, limit:float=120)->float:
    "Seconds from `start` until `url`/v2/health/ready answers 200."
    while time.perf_counter() - start < limit:
        try:
            if httpx.get(f'{url}/v2/health/ready', timeout=1).status_code == 200: return time.perf_counter() - start
        except httpx.HTTPError: pass
        time.sleep(0.02)
    raise RuntimeError(f'{url} was not ready after {limit} s')

WRK_POST = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer """ + TOKEN + """"
wrk.body = io.open(os.getenv("WRK_BODY"), "rb"):read()
"""

def wrk(url:str, body:bytes, seconds:int)->dict:
    "Requests per second and p50/p99 latency (ms) that `wrk` measures, 16 connections."
    with tempfile.TemporaryDirectory() as d:
        (Path(d)/'post.lua').write_text(WRK_POST); (Path(d)/'body.json').write_bytes(body)
        out = subprocess.run(['wrk', '-t2', '-c16', f'-d{seconds}s', '--latency', '-s', str(Path(d)/'post.lua'), url], capture_output=True,
                             text=True, env=os.environ | {'WRK_BODY': str(Path(d)/'body.json')}, check=True).stdout
    ms = lambda v, unit: float(v) * {'us': 0.001, 'ms': 1, 's': 1000}[unit]
    pct = {p: ms(*re.search(rf'^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$', out, re.M).groups()) for p in ('50', '99')}
    bad = re.search(r'Non-2xx or 3xx responses: (\d+)', out)
    return {'requests/s': float(re.search(r'Requests/sec:\s+([\d.]+)', out).group(1)), 'p50 ms': pct['50'], 'p99 ms': pct['99'],
            'failed': int(bad.group(1)) if bad else 0}

def build(cfg:dict, out:Path)->dict:
    "Package the champion and build its image; the image name, and the times and size."
    started = time.perf_counter()
    done = package(cfg, 'champion', out)
    packaged = time.perf_counter() - started
    if subprocess.run([*PODMAN, 'image', 'exists', BASE]).returncode:
        with subprocess.Popen(['mmdebstrap', '--quiet', '--variant=minbase', '--include=python3,python3-venv', 'bookworm', '-'],
                              stdout=subprocess.PIPE) as rootfs:
            subprocess.run([*PODMAN, 'import', '-', BASE], stdin=rootfs.stdout, check=True, capture_output=True)
    started = time.perf_counter()
    subprocess.run([*PODMAN, 'build', *LIMITS, '--format', 'docker', '--build-arg', f'BASE={BASE}', '-t', done['image'], str(out)],
                   check=True, capture_output=True)
    size = json.loads(subprocess.run([*PODMAN, 'image', 'inspect', done['image']], capture_output=True, check=True).stdout)[0]['Size']
    return {'image': done['image'], 'name': done['model'], 'package s': round(packaged, 1), 'build s': round(time.perf_counter() - started, 1),
            'image MB': round(size / 1e6), 'base MB': round(json.loads(subprocess.run([*PODMAN, 'image', 'inspect', BASE], capture_output=True,
                                                                                       check=True).stdout)[0]['Size'] / 1e6)}

def bare(bundle:Path, port:int)->subprocess.Popen:
    "The packaged service as a process on this machine, as the image runs it."
    env = os.environ | {'MLOPS_NB_API_TOKEN': TOKEN, 'MLOPS_NB_BUNDLE': str(bundle), 'MLOPS_NB_LOG_FOLDER': tempfile.mkdtemp(), 'OMP_NUM_THREADS': '1'}
    return subprocess.Popen([BIN/'uvicorn', '--factory', 'mlops_nb.serve:packaged_app', '--host', '127.0.0.1', '--port', str(port),
                             '--no-access-log'], env=env, cwd=bundle.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def container(image:str, port:int, name:str)->None:
    subprocess.run([*PODMAN, 'run', '-d', '--name', name, *LIMITS, '--no-healthcheck', '-p', f'127.0.0.1:{port}:8080', '-e', 'MLOPS_NB_API_TOKEN',
                    image], env=os.environ | {'MLOPS_NB_API_TOKEN': TOKEN}, check=True, capture_output=True)

def starts(image:str, bundle:Path)->dict:
    "Median seconds to ready over three starts, container and bare process."
    out = {'container': [], 'bare process': []}
    for i in range(3):
        port, name = free_port(), f'mlops-nb-bench-start-{i}'
        t = time.perf_counter(); container(image, port, name)
        out['container'].append(ready_after(t, f'http://127.0.0.1:{port}'))
        subprocess.run([*PODMAN, 'rm', '-f', name], capture_output=True)
        port = free_port(); t = time.perf_counter(); p = bare(bundle, port)
        out['bare process'].append(ready_after(t, f'http://127.0.0.1:{port}'))
        p.terminate(); p.wait()
    return {k: round(statistics.median(v), 2) for k, v in out.items()}

def main(seconds:int=15):
    cfg = load_config()
    served = load_served(cfg)
    data = json.loads(sorted(Path(cfg['paths']['runs']).glob('*/10_data.json'))[-1].read_text())
    row = pl.read_parquet(data['outputs']['holdout']['path']).head(1).select(list(served.fields)).to_dicts()[0]
    with tempfile.TemporaryDirectory() as d:
        built = build(cfg, Path(d)/'context')
        print('image:', built)
        print('seconds to ready (median of 3):', starts(built['image'], Path(d)/'context'/'bundle'))
        types = {'string': 'BYTES', 'double': 'FP64', 'float': 'FP32', 'long': 'INT64', 'integer': 'INT32', 'boolean': 'BOOL'}
        predict = json.dumps({'records': [row]}).encode()
        infer = json.dumps({'inputs': [{'name': f, 'datatype': types.get(t, 'BYTES'), 'shape': [1], 'data': [row[f]]}
                                       for f, (t, _) in served.fields.items()]}).encode()
        port_bare, port_box, name = free_port(), free_port(), 'mlops-nb-bench-load'
        p = bare(Path(d)/'context'/'bundle', port_bare); container(built['image'], port_box, name)
        try:
            for port in (port_bare, port_box): ready_after(time.perf_counter(), f'http://127.0.0.1:{port}')
            rows = [('bare process', '/predict', wrk(f'http://127.0.0.1:{port_bare}/predict', predict, seconds)),
                    ('container', '/predict', wrk(f'http://127.0.0.1:{port_box}/predict', predict, seconds)),
                    ('container', '/v2 infer', wrk(f"http://127.0.0.1:{port_box}/v2/models/{built['name']}/infer", infer, seconds))]
        finally:
            p.terminate(); subprocess.run([*PODMAN, 'rm', '-f', name], capture_output=True)
    table = pl.DataFrame([{'where': w, 'route': r, **m} for w, r, m in rows])
    with pl.Config(tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True): print(table)
    print(f"container / bare process throughput: {rows[1][2]['requests/s'] / rows[0][2]['requests/s']:.2f}; "
          f"OIP infer / predict in the container: {rows[2][2]['requests/s'] / rows[1][2]['requests/s']:.2f}")

if __name__ == '__main__': main(*(int(a) for a in sys.argv[1:2]))
