"""The default lifecycle run by Airflow from the exported DAG, against `mlops-nb run`, side by side.

Airflow 3 in a virtual environment of its own (`~/.cache/mlops-nb/airflow-venv`, installed and timed when missing), a throwaway
SQLite metadata database, `dag.test()`; each side in a fresh project on the bundled flights with its own tracking store, so neither
reuses the other's stages. Run: `path/to/.venv/bin/python benchmarks/orchestrator.py` (about three minutes)."""
import os, subprocess, sys, tempfile, time
from pathlib import Path

BIN, VENV = Path(sys.executable).parent, Path.home()/'.cache'/'mlops-nb'/'airflow-venv'
RUN_DAG = "import runpy, sys; print('DAG RUN', runpy.run_path(sys.argv[1])['pipeline'].test().state)"

def timed(cmd:list, **kw)->float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)
    return time.perf_counter() - started

def main():
    folder = Path(tempfile.mkdtemp(prefix='mlops-nb-orchestrator-'))
    install = None
    if not (VENV/'bin'/'python').exists():
        install = timed([sys.executable, '-m', 'venv', str(VENV)]) + timed([VENV/'bin'/'python', '-m', 'pip', 'install', '-q', 'apache-airflow>=3.1,<4'])
    home = folder/'airflow'
    project_env = {k: v for k, v in os.environ.items() if not k.startswith(('MLOPS_NB_', 'MLFLOW_'))}  # as a user's shell has it
    env = {**project_env, 'AIRFLOW_HOME': str(home), 'AIRFLOW__CORE__LOAD_EXAMPLES': 'False', 'AIRFLOW__CORE__DAGS_FOLDER': str(folder/'dags')}
    migrate = timed([VENV/'bin'/'airflow', 'db', 'migrate'], env=env)
    plain, dag = folder/'plain', folder/'dag'
    for root in (plain, dag):
        root.mkdir()
        (root/'mlops.toml').write_text(f'[store]\nurl = "{root}/store"\n')
    run = timed([BIN/'mlops-nb', 'run'], cwd=plain, env=project_env)
    subprocess.run([BIN/'mlops-nb', 'export', 'airflow', '--out', str(folder/'dags')], cwd=dag, check=True, capture_output=True, env=project_env)
    dag_file = next((folder/'dags').glob('*.py'))
    (home/'run_dag.py').write_text(RUN_DAG)
    by_airflow = timed([VENV/'bin'/'python', home/'run_dag.py', dag_file], env=env)  # Airflow's start and the DAG's parse included
    print('the default lifecycle on the bundled flights, fresh project each, 2 cores')
    print(f"{'Airflow install':<34}{f'{install:.0f} s' if install else 'already installed':>20}")
    print(f"{'airflow db migrate (SQLite)':<34}{migrate:>19.1f}s")
    print(f"{'mlops-nb run':<34}{run:>19.1f}s")
    print(f"{'Airflow DAG, a task per stage':<34}{by_airflow:>19.1f}s")

if __name__ == '__main__': main()
