"""Performance estimated without labels: mlops_nb's CBPE against NannyML's, on identical inputs.

NannyML's own synthetic car-loan files (50,000 reference rows with labels, 50,000 analysis rows whose labels come apart), using the
scores already in the data, in chunks of 5,000 rows as NannyML's documentation does: for each chunk, ROC AUC and accuracy estimated by
each, against the realised values from the labels (the decision is the score at 0.5 for both estimators and for the realised accuracy:
the files' own `y_pred` column is not a threshold of their rounded scores); mean and largest absolute error, and wall time (fit and estimate, imports excluded).
NannyML (0.13.1, which needs Python < 3.13 and its own dependencies) is installed by this script into its own virtual environment,
~/.cache/mlops-nb/nannyml-venv, from PyPI; the files are read from inside its wheel.

`dle` does the same for a regressor, direct loss estimation against NannyML's DLE on its synthetic car-price files (60,000 reference
rows, 60,000 analysis rows with drift): estimated against realised MAE and RMSE per 5,000-row chunk, and wall time.

`census` runs mlops_nb's own lifecycle on real data it never saw, NannyML's US Census employment files for Massachusetts (68,785 labelled
rows of 2015 to train on; 208,892 rows of 2016-2018 to monitor, their labels apart): `mlops-nb run` on the first, then
`mlops-nb monitor` on the second in blocks of 5,000 rows, first without labels, then with them; estimated against realised ROC AUC per
block (NannyML reports a mean absolute error of 0.004 for its own CBPE on these blocks).

Run: `path/to/.venv/bin/python benchmarks/estimation.py [dle|census]`."""
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
        subprocess.run([python, '-m', 'pip', 'install', '-q', 'nannyml==0.13.1', 'statsmodels', 'pandas<3'], check=True)  # statsmodels: imported, undeclared; pandas 3 breaks its DLE
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

NANNYML_DLE = r'''
import json, time
import nannyml as nml
reference, analysis, _ = nml.load_synthetic_car_price_dataset()
features = ['car_age', 'km_driven', 'price_new', 'accident_count', 'door_count', 'fuel', 'transmission']
started = time.perf_counter()
dle = nml.DLE(feature_column_names=features, y_pred='y_pred', y_true='y_true', metrics=['mae', 'rmse'], chunk_size=5000, tune_hyperparameters=False)
dle.fit(reference)
result = dle.estimate(analysis).filter(period='analysis').to_df()
print(json.dumps({'seconds': time.perf_counter() - started, 'mae': result[('mae', 'value')].tolist(), 'rmse': result[('rmse', 'value')].tolist()}))
'''

def dle():
    "mlops_nb's nannies against NannyML's DLE on the car-price chunks: errors of the estimated MAE and RMSE, and time."
    from mlops_nb.estimate import estimate_errors, fit_nannies, nanny_sums
    data = Path(subprocess.run([nannyml_python(), '-c', 'import nannyml, pathlib; print(pathlib.Path(nannyml.__file__).parent/"datasets"/"data")'],
                               capture_output=True, text=True, check=True).stdout.strip())
    reference = pl.read_csv(data/'regression_synthetic_reference.csv')
    analysis = pl.read_csv(data/'regression_synthetic_analysis.csv').join(pl.read_csv(data/'regression_synthetic_analysis_targets.csv'), on='id')
    categorical, numeric = ['fuel', 'transmission'], ['car_age', 'km_driven', 'price_new', 'accident_count', 'door_count']
    started = time.perf_counter()
    nannies = fit_nannies(reference.select(*categorical, *numeric).to_pandas(), reference['y_pred'].to_numpy(), reference['y_true'].to_numpy(),
                          categorical, numeric)
    parts = [analysis[i:i + CHUNK] for i in range(0, analysis.height, CHUNK)]
    mine = [estimate_errors(nannies, nanny_sums(nannies, p.select(*categorical, *numeric).to_pandas(), p['y_pred'].to_numpy())) for p in parts]
    seconds = time.perf_counter() - started
    theirs = json.loads(subprocess.run([nannyml_python(), '-c', NANNYML_DLE], capture_output=True, text=True, check=True,
                                       env=os.environ | {'NML_DISABLE_USAGE_LOGGING': '1'}).stdout.strip().splitlines()[-1])
    truth = {'mae': [float(np.abs(p['y_true'] - p['y_pred']).mean()) for p in parts],
             'rmse': [float(np.sqrt(((p['y_true'] - p['y_pred']) ** 2).mean())) for p in parts]}
    rows = []
    for who, est, secs in (('NannyML 0.13.1 DLE', theirs, theirs['seconds']), ('mlops_nb nannies', {m: [e[m]['value'] for e in mine] for m in truth}, seconds)):
        for m in truth:
            rel = np.abs(np.array(est[m]) - np.array(truth[m])) / np.array(truth[m])
            rows.append({'estimator': who, 'metric': m, 'chunks': len(rel), 'mean relative error': f'{rel.mean():.2%}', 'max': f'{rel.max():.2%}',
                         'seconds': round(secs, 2)})
    with pl.Config(tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, tbl_width_chars=160): print(pl.DataFrame(rows))
    print(pl.DataFrame({'chunk': range(len(parts)), 'realised MAE': np.round(truth['mae'], 1), 'nannyml': np.round(theirs['mae'], 1),
                        'mlops_nb': [e['mae']['value'] for e in mine], 'low': [e['mae']['low'] for e in mine], 'high': [e['mae']['high'] for e in mine]}))

CENSUS = """[mlflow]
model_name = "employment"

[stages.data.params]
source = "employment.parquet"
target = "employed"
id_column = "id"
window = "rows"
batch_rows = 5000
exclude = ["year", "prediction", "predicted_probability"]
"""

def census():
    "mlops_nb's lifecycle on the census files: estimates per block before labels, then realised; the error of the estimates."
    import tempfile
    data = Path(subprocess.run([nannyml_python(), '-c', 'import nannyml, pathlib; print(pathlib.Path(nannyml.__file__).parent/"datasets"/"data")'],
                               capture_output=True, text=True, check=True).stdout.strip())
    root = Path(tempfile.mkdtemp())
    pl.read_parquet(data/'employment_MA_reference.pq').write_parquet(root/'employment.parquet')
    pl.read_parquet(data/'employment_MA_analysis.pq').write_parquet(root/'later.parquet')
    pl.read_parquet(data/'employment_MA_analysis_target.pq').write_parquet(root/'later-labels.parquet')
    (root/'mlops.toml').write_text(CENSUS)
    mlops = lambda *a: subprocess.run([Path(sys.executable).parent/'mlops-nb', *a], cwd=root, capture_output=True, text=True)
    started = time.perf_counter(); ran = mlops('run'); print(ran.stdout[-1500:]); print(f'run: {time.perf_counter() - started:.0f} s')
    started = time.perf_counter(); before = json.loads(mlops('monitor', 'later.parquet', '--json').stdout)
    print(f"monitor without labels: {len(before['batches'])} batches in {time.perf_counter() - started:.0f} s")
    after = json.loads(mlops('monitor', 'later.parquet', '--labels', 'later-labels.parquet', '--json').stdout)
    rows = [{'batch': a['name'], 'rows': a['rows'], 'estimated': b['estimated']['roc_auc']['value'], 'low': b['estimated']['roc_auc']['low'],
             'high': b['estimated']['roc_auc']['high'], 'realised': a['realised'].get('roc_auc'), 'untrusted': len(b['estimate_untrusted']),
             'alerts': ', '.join(x['kind'] for x in b['alerts'])} for b, a in zip(before['batches'], after['batches'])]
    table = pl.DataFrame(rows).with_columns(error=(pl.col('estimated') - pl.col('realised')).abs())
    with pl.Config(tbl_rows=60, tbl_hide_column_data_types=True, tbl_width_chars=200): print(table)
    inside = table.filter((pl.col('low') <= pl.col('realised')) & (pl.col('realised') <= pl.col('high'))).height
    print(f"ROC AUC estimated before labels vs realised: mean absolute error {table['error'].mean():.4f}, max {table['error'].max():.4f}, "
          f"correlation {np.corrcoef(table['estimated'], table['realised'])[0, 1]:.2f}; realised inside the band in {inside} of {table.height}")

if __name__ == '__main__': {'census': census, 'dle': dle}.get(sys.argv[1] if sys.argv[1:] else '', main)()
