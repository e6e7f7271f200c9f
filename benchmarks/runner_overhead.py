"""Runner overhead: a cold `mlops-nb run` against the same stage functions called in one plain Python process.

Each is timed from outside, as a whole command in a fresh empty project (its own data store and MLflow database),
so interpreter start and imports count for both. Run: `python benchmarks/runner_overhead.py [repeats]`."""
import statistics, subprocess, sys, tempfile, time
from pathlib import Path

BIN = Path(sys.executable).parent
IN_ONE_PROCESS = '''
from pathlib import Path
from mlops_nb.core import StageContext, load_config, new_run_id, notebook_parameters, resolve_params, run_stage_function, stage_notebook
from mlops_nb.pipeline import stage_order
cfg, run_id = load_config(), new_run_id()
params = resolve_params(cfg, stages=stage_order(cfg))
for stage in stage_order(cfg):
    contract = notebook_parameters(stage_notebook(cfg, stage))
    run_stage_function(StageContext(stage, cfg, run_id, Path(cfg['paths']['runs'])/run_id, params[stage], contract))
'''

def timed(*cmds):
    "Seconds each of `cmds` takes, one after the other, in a fresh empty project folder."
    with tempfile.TemporaryDirectory() as root:
        out = []
        for cmd in cmds:
            start = time.perf_counter()
            subprocess.run(cmd, cwd=root, check=True, capture_output=True)
            out.append(time.perf_counter() - start)
        return out

def main(repeats=3):
    runner = [timed([BIN/'mlops-nb', 'run'], [BIN/'mlops-nb', 'run']) for _ in range(repeats)]
    plain = [timed([sys.executable, '-c', IN_ONE_PROCESS])[0] for _ in range(repeats)]
    cold, cached = [c for c, _ in runner], [c for _, c in runner]
    r, p = statistics.median(cold), statistics.median(plain)
    print(f'{"what":<46}{"median s":>10}   all runs')
    print(f'{"mlops-nb run, cold (6 stages, papermill)":<46}{r:>10.1f}   {", ".join(f"{x:.1f}" for x in cold)}')
    print(f'{"same stage functions, one Python process":<46}{p:>10.1f}   {", ".join(f"{x:.1f}" for x in plain)}')
    print(f'{"runner overhead (ratio)":<46}{r / p:>10.2f}x  (+{r - p:.1f} s: kernels, HTML reports, manifest, secret scan)')
    print(f'{"mlops-nb run again, every stage cached":<46}{statistics.median(cached):>10.2f}   {", ".join(f"{x:.2f}" for x in cached)}')

if __name__ == '__main__': main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
