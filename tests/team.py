"A team's tracking server for tests: MLflow on loopback, backed by PostgreSQL (or SQLite), with proxied artifact storage."
import glob, os, shutil, socket, subprocess, sys, tempfile, time, urllib.request
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent

def free_port()->int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

def postgres_bin(name:str)->str|None:
    "A PostgreSQL server program: on PATH, or where Debian's `postgresql` package puts it."
    found = shutil.which(name) or next(iter(sorted(glob.glob(f'/usr/lib/postgresql/*/bin/{name}'), reverse=True)), None)
    return found

def as_postgres(cmd:list)->list:
    "`cmd`, run as the postgres user when this process is root (PostgreSQL refuses to run as root)."
    return ['runuser', '-u', 'postgres', '--', *cmd] if os.geteuid() == 0 else cmd

# A throwaway cluster need not survive a crash: skip the disk flushes that would make it.
NO_FSYNC = '-c fsync=off -c synchronous_commit=off -c full_page_writes=off'

@contextmanager
def postgres():
    "A throwaway PostgreSQL cluster on a free loopback port; its connection URI."
    if not (postgres_bin('initdb') and postgres_bin('pg_ctl')): raise RuntimeError('PostgreSQL is not installed (Debian: apt-get install postgresql)')
    folder = Path(tempfile.mkdtemp(prefix='mlops-nb-pg-'))
    folder.chmod(0o777)
    data, port = folder/'data', free_port()
    subprocess.run(as_postgres([postgres_bin('initdb'), '-D', str(data), '-U', 'mlflow', '--auth=trust', '-E', 'UTF8']), check=True, capture_output=True)
    subprocess.run(as_postgres([postgres_bin('pg_ctl'), '-D', str(data), '-l', str(folder/'server.log'), '-w', 'start',
                                '-o', f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 {NO_FSYNC}"]), check=True, capture_output=True)
    try:
        subprocess.run(as_postgres([postgres_bin('createdb') or 'createdb', '-h', '127.0.0.1', '-p', str(port), '-U', 'mlflow', 'mlflow']),
                       check=True, capture_output=True)
        yield f'postgresql://mlflow@127.0.0.1:{port}/mlflow'
    finally:
        subprocess.run(as_postgres([postgres_bin('pg_ctl'), '-D', str(data), '-m', 'fast', 'stop']), capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)

class TrackingServer:
    "`mlflow server` on a free loopback port with proxied artifacts; stop and start it again on the same port."
    def __init__(self, backend:str, artifacts:Path, env:dict|None=None):
        self.backend, self.artifacts, self.port, self.env = backend, Path(artifacts), free_port(), env or {}
        self.url, self.proc = f'http://127.0.0.1:{self.port}', None

    def start(self):
        # Without job execution: mlops-nb uses none of MLflow's server jobs (GenAI scorers and optimizers), which start a job runner and
        # seven task consumers beside the server, 10 CPU-seconds at each start.
        self.proc = subprocess.Popen([BIN/'mlflow', 'server', '--backend-store-uri', self.backend, '--artifacts-destination', str(self.artifacts),
                                      '--host', '127.0.0.1', '--port', str(self.port), '--workers', '1'],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                                     env={**os.environ, 'MLFLOW_SERVER_ENABLE_JOB_EXECUTION': 'false', **self.env})
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f'{self.url}/health', timeout=2).status == 200: return self
            except OSError: time.sleep(0.3)
        self.stop()
        raise RuntimeError(f'the MLflow server did not start within 120 s on {self.url}')

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            self.proc.wait(timeout=30)
        self.proc = None
