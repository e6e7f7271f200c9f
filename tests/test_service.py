"The real model service over HTTP on loopback, and batch scoring: valid and bad requests, auth, alias moves under load, the prediction log."
import threading, time

import httpx
import polars as pl
import pytest

from conftest import run_stages
from mlops_nb.deploy import score_file
from mlops_nb.serve import Server, make_app
from mlops_nb.contract import DataContractError
from mlops_nb.register import deployments, move_alias
from test_data_inputs import sales, sales_params

pytestmark = pytest.mark.xdist_group('service')

CONFIG = '''
[mlflow]
model_name = "big-sales"

''' + sales_params()

@pytest.fixture(scope='session')
def project(tmp_path_factory):
    "A project with two registered versions of a sales model; v1 is the champion."
    root = tmp_path_factory.mktemp('service')
    sales().write_csv(root/'sales.csv')
    (root/'mlops.toml').write_text(CONFIG)
    for max_iter in (100, 20): cfg = run_stages(root, overrides=[f'train.max_iter={max_iter}'])
    move_alias(cfg, 'champion', 1, 'tests start from v1')
    return root, cfg

def records(n=3):
    return [{'store': s, 'price': 10.5 + i} for i, s in zip(range(n), ['north', 'south', 'east'] * n)]

def test_valid_requests_get_one_prediction_per_record(project):
    root, cfg = project
    with Server(make_app(cfg, log_folder=root/'log-valid')) as s:
        one = httpx.post(f'{s.url}/predict', json={'records': records(1)})
        many = httpx.post(f'{s.url}/predict', json=records(50))
        meta = httpx.get(f'{s.url}/metadata').json()
    assert one.status_code == 200 and len(one.json()['predictions']) == 1
    assert many.status_code == 200 and [p['id'] for p in many.json()['predictions']] == list(range(50))
    assert {'prediction', 'probability'} <= set(one.json()['predictions'][0])
    assert meta['model'] == 'big-sales' and meta['version'] == '1' and meta['data_digest'] and meta['git_commit']

@pytest.mark.parametrize('name, kwargs, status, says', [
    ('wrong type', {'json': {'records': [{'store': 7, 'price': 10.5}]}}, 422, {'field': 'store', 'error': 'expected a string, got 7'}),
    ('missing field', {'json': {'records': [{'store': 'north'}]}}, 422, {'field': 'price', 'error': 'missing'}),
    ('extra field', {'json': {'records': [{'store': 'north', 'price': 1.0, 'coupon': 'X'}]}}, 422, {'field': 'coupon', 'error': 'unexpected field'}),
    ('empty body', {'content': b'', 'headers': {'content-type': 'application/json'}}, 400, {}),
    ('not JSON', {'content': b'{"records": [', 'headers': {'content-type': 'application/json'}}, 400, {}),
    ('no records', {'json': {'records': []}}, 400, {}),
    ('wrong content type', {'content': b'store=north', 'headers': {'content-type': 'application/x-www-form-urlencoded'}}, 415, {}),
    ('oversized body', {'content': b'[' + b' ' * 20_000 + b']', 'headers': {'content-type': 'application/json'}}, 413, {}),
    ('too many records', {'json': records(101)}, 413, {}),
])
def test_bad_requests_get_a_4xx_naming_each_problem(project, name, kwargs, status, says):
    root, cfg = project
    with Server(make_app(cfg, log_folder=root/'log-bad', max_bytes=10_000, max_records=100)) as s:
        r = httpx.post(f'{s.url}/predict', **kwargs)
    assert r.status_code == status, r.text
    errors = r.json()['errors']
    assert errors and all(e.get('error') for e in errors)
    if says: assert any(says.items() <= e.items() for e in errors), errors

def test_a_missing_feature_value_is_scored_because_the_contract_allows_it(project):
    root, cfg = project
    with Server(make_app(cfg, log_folder=root/'log-null')) as s:
        r = httpx.post(f'{s.url}/predict', json={'records': [{'store': None, 'price': 1.0}, {'store': 'north', 'price': None}]})
    assert r.status_code == 200 and len(r.json()['predictions']) == 2, r.text

def test_every_bad_field_of_every_record_is_reported(project):
    root, cfg = project
    with Server(make_app(cfg, log_folder=root/'log-bad')) as s:
        r = httpx.post(f'{s.url}/predict', json=[{'store': 1, 'price': 'cheap'}, {'price': 2.0}])
    assert r.status_code == 422
    assert [(e['record'], e['field']) for e in r.json()['errors']] == [(0, 'store'), (0, 'price'), (1, 'store')]

def test_a_bearer_token_is_required_when_set(project):
    root, cfg = project
    with Server(make_app(cfg, token='s3cret-token', log_folder=root/'log-auth')) as s:
        assert httpx.get(f'{s.url}/health').status_code == 200
        assert httpx.post(f'{s.url}/predict', json=records(1)).status_code == 401
        assert httpx.post(f'{s.url}/predict', json=records(1), headers={'Authorization': 'Bearer wrong'}).status_code == 401
        assert httpx.get(f'{s.url}/metadata').status_code == 401
        ok = httpx.post(f'{s.url}/predict', json=records(1), headers={'Authorization': 'Bearer s3cret-token'})
    assert ok.status_code == 200

def test_the_service_follows_an_alias_move_under_load_without_a_failed_request(project):
    root, cfg = project
    log = root/'log-move'
    statuses, versions, stop = [], [], threading.Event()
    def client(url):
        with httpx.Client(base_url=url, timeout=30) as c:
            while not stop.is_set():
                r = c.post('/predict', json=records(5))
                statuses.append(r.status_code)
                if r.status_code == 200: versions.append(r.json()['version'])
    with Server(make_app(cfg, log_folder=log, reload_seconds=0.2)) as s:
        threads = [threading.Thread(target=client, args=(s.url,)) for _ in range(4)]
        for t in threads: t.start()
        time.sleep(1.5)
        move_alias(cfg, 'champion', 2, 'test: promote under load')
        time.sleep(2.5)
        stop.set()
        for t in threads: t.join()
    move_alias(cfg, 'champion', 1, 'test: back to v1')
    swaps = [d for d in deployments(cfg) if d['event'] == 'service swap']
    assert swaps and swaps[-1]['version'] == '2' and swaps[-1]['replaced'] == '1' and all(c['passed'] for c in swaps[-1]['checks'])
    assert statuses and set(statuses) == {200}
    assert versions[0] == '1' and versions[-1] == '2'
    logged = pl.read_parquet(log/'*.parquet')
    assert logged.height == 5 * len(statuses)
    assert set(logged['version']) == {'1', '2'} and {'store', 'price', 'probability', 'logged_at', 'request_id'} <= set(logged.columns)

def priced(every:int):
    "The sales with every `every`-th price unreadable."
    return sales().with_columns(pl.when(pl.int_range(pl.len()) % every == 3).then(pl.lit('n/a')).otherwise(pl.col('price').cast(pl.String)).alias('price'))

def test_batch_scoring_accounts_for_every_row(project):
    root, cfg = project
    priced(200).write_csv(root/'incoming.csv')
    result = score_file(cfg, 'incoming.csv', chunk_rows=100)
    assert result['rows_in'] == 540 == result['scored'] + result['quarantined'] and result['quarantined'] == 3
    scored = pl.read_parquet(result['predictions'])
    assert scored.height == result['scored'] and set(scored['version']) == {'1'}
    assert pl.read_parquet(result['quarantine'])['_reason'].str.contains("'n/a' is not Float64").all()

def test_batch_scoring_that_quarantines_too_much_fails_naming_the_reason_and_keeps_both_outputs(project):
    root, cfg = project
    priced(20).write_csv(root/'worse.csv')
    with pytest.raises(DataContractError, match=r"27 of 540 rows \(5.0%\) of worse.csv were quarantined, above the contract's max_quarantined_share of 1.0%: "
                                                 r"price: not Float64 \(27 rows\); the 513 valid rows were scored into"):
        score_file(cfg, 'worse.csv', out=root/'worse.predictions.parquet')
    assert pl.read_parquet(root/'worse.predictions.parquet').height == 513 and pl.read_parquet(root/'worse.predictions.quarantine.parquet').height == 27
