"""Performance estimated without labels: mlops_nb's CBPE against NannyML's, on identical inputs.

NannyML's own synthetic car-loan files (50,000 reference rows with labels, 50,000 analysis rows whose labels come apart), using the
scores already in the data, in chunks of 5,000 rows as NannyML's documentation does: for each chunk, ROC AUC and accuracy estimated by
each, against the realised values from the labels (the decision is the score at 0.5 for both estimators and for the realised accuracy:
the files' own `y_pred` column is not a threshold of their rounded scores); mean and largest absolute error, and wall time (fit and estimate, imports excluded).
NannyML (0.13.1, which needs Python < 3.13 and its own dependencies) is installed by this script into its own virtual environment,
~/.cache/mlops-nb/nannyml-venv, from PyPI; the files are read from inside its wheel.

Run: `path/to/.venv/bin/python benchmarks/estimation.py`."""
import json, os, subprocess, sys, time
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.metrics import accuracy_score, roc_auc_score

from mlops_nb.estimate import estimate, fit_calibration, score_counts

VENV = Path.home()/'.cache'/'mlops-nb'/'nannyml-venv'
CHUNK = 5000

NANNYML = r'''
import json, sys, time
import nannyml as nml
reference, analysis, _ = nml.load_synthetic_car_loan_dataset()
for df in (reference, analysis): df['y_pred'] = (df['y_pred_proba'] >= 0.5).astype(int)  # the decision both estimators are told
started = time.perf_counter()
cbpe = nml.CBPE(y_pred_proba='y_pred_proba', y_pred='y_pred', y_true='repaid', metrics=['roc_auc', 'accuracy'], chunk_size=5000,
                problem_type='classification_binary')
cbpe.fit(reference)
result = cbpe.estimate(analysis).filter(period='analysis').to_df()
seconds = time.perf_counter() - started
print(json.dumps({'seconds': seconds, 'roc_auc': result[('roc_auc', 'value')].tolist(), 'accuracy': result[('accuracy', 'value')].tolist()}))
'''

def nannyml_python()->Path:
    "The Python of NannyML's own virtual environment, made on first use."
    python = VENV/'bin'/'python'
    if not python.exists():
        subprocess.run([sys.executable, '-m', 'venv', str(VENV)], check=True)
        subprocess.run([python, '-m', 'pip', 'install', '-q', 'nannyml==0.13.1', 'statsmodels'], check=True)  # it imports statsmodels undeclared
    return python

def car_loans()->tuple[pl.DataFrame, pl.DataFrame]:
    "NannyML's car-loan reference and analysis rows, the analysis with its labels joined, read from inside NannyML's installed package."
    out = subprocess.run([nannyml_python(), '-c', 'import nannyml, pathlib; print(pathlib.Path(nannyml.__file__).parent/"datasets"/"data")'],
                         capture_output=True, text=True, check=True).stdout.strip()
    data = Path(out)
    decided = lambda df: df.with_columns(y_pred=(pl.col('y_pred_proba') >= 0.5).cast(pl.Int64))
    reference = decided(pl.read_csv(data/'synthetic_car_loan_reference.csv'))
    analysis = pl.read_csv(data/'synthetic_car_loan_analysis.csv').join(pl.read_csv(data/'synthetic_car_loan_analysis_target.csv'), on='id')
    return reference, decided(analysis)

def ours(reference:pl.DataFrame, analysis:pl.DataFrame)->dict:
    "mlops_nb's estimate per chunk, and the seconds it took to calibrate and estimate."
    started = time.perf_counter()
    cal = fit_calibration(reference['repaid'].to_numpy(), reference['y_pred_proba'].to_numpy(), threshold=0.5)
    chunks = [estimate(cal, score_counts(analysis['y_pred_proba'][i:i + CHUNK].to_numpy())) for i in range(0, analysis.height, CHUNK)]
    seconds = time.perf_counter() - started
    return {'seconds': seconds, 'method': cal.method, **{m: [c[m]['value'] for c in chunks] for m in ('roc_auc', 'accuracy')},
            'inside': [c['roc_auc']['low'] <= r <= c['roc_auc']['high'] for c, r in zip(chunks, realised(analysis)['roc_auc'])]}

def realised(analysis:pl.DataFrame)->dict:
    "ROC AUC and accuracy of each chunk, from its labels."
    parts = [analysis[i:i + CHUNK] for i in range(0, analysis.height, CHUNK)]
    return {'roc_auc': [roc_auc_score(p['repaid'], p['y_pred_proba']) for p in parts],
            'accuracy': [accuracy_score(p['repaid'], p['y_pred']) for p in parts]}

def main():
    reference, analysis = car_loans()
    truth = realised(analysis)
    theirs = json.loads(subprocess.run([nannyml_python(), '-c', NANNYML], capture_output=True, text=True, check=True, env=os.environ |
                                       {'NML_DISABLE_USAGE_LOGGING': '1', 'OMP_NUM_THREADS': '1'}).stdout.strip().splitlines()[-1])
    mine = ours(reference, analysis)
    rows = []
    for who, est in (('NannyML 0.13.1 CBPE', theirs), (f"mlops_nb ({mine['method']} calibration)", mine)):
        for m in ('roc_auc', 'accuracy'):
            err = np.abs(np.array(est[m]) - np.array(truth[m]))
            rows.append({'estimator': who, 'metric': m, 'chunks': len(err), 'mean abs error': round(float(err.mean()), 4),
                         'max abs error': round(float(err.max()), 4), 'seconds': round(est['seconds'], 3)})
    with pl.Config(tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, tbl_width_chars=160): print(pl.DataFrame(rows))
    print(f"realised ROC AUC inside mlops_nb's 95% band in {sum(mine['inside'])} of {len(mine['inside'])} chunks; "
          f"speed: {theirs['seconds'] / mine['seconds']:.1f}x NannyML's")
    print(pl.DataFrame({'chunk': range(len(truth['roc_auc'])), 'realised': np.round(truth['roc_auc'], 4),
                        'nannyml': np.round(theirs['roc_auc'], 4), 'mlops_nb': np.round(mine['roc_auc'], 4)}))

if __name__ == '__main__': main()
