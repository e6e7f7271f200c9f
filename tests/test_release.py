"The service at the limit and in a release: hostile requests, shadow and canary, the traffic comparison and the promotion on it, workers, metrics."
import json, random, shutil, signal, subprocess, threading, time
from pathlib import Path

import httpx
import polars as pl
import pytest

from conftest import MLOPS_NB, clean_env, cli, run_stages
from mlflow import MlflowClient
from mlops_nb.traffic import TRAFFIC_TAG, monitor_traffic
from mlops_nb.register import alias_history, alias_version, move_alias
from mlops_nb.serve import Server, free_port, make_app
from test_data_inputs import sales, sales_params

pytestmark = pytest.mark.xdist_group('release')

@pytest.fixture(scope='session')
def project(tmp_path_factory):
    "A sales project with an order id and two versions: v1 the champion, v2 the challenger."
    root = tmp_path_factory.mktemp('release')
    sales().with_row_index('order').write_csv(root/'sales.csv')
    (root/'mlops.toml').write_text('[mlflow]\nmodel_name = "orders"\n\n' + sales_params(id_column='order'))
    for max_iter in (100, 20): cfg = run_stages(root, overrides=[f'train.max_iter={max_iter}'])
    move_alias(cfg, 'challenger', 2, 'tests: v2 is the challenger', kind='challenger')
    pl.read_csv(root/'sales.csv').select('order', 'big').write_csv(root/'labels.csv')
    return root, cfg

@pytest.fixture
def fresh(project):
    "The project with v1 the champion again, no traffic comparison and an empty prediction log."
    root, cfg = project
    move_alias(cfg, 'champion', 1, 'tests start from v1')
    if TRAFFIC_TAG in MlflowClient().get_model_version('orders', '2').tags: MlflowClient().delete_model_version_tag('orders', '2', TRAFFIC_TAG)
    shutil.rmtree(root/'predictions', ignore_errors=True)
    return root, cfg

def orders(root):
    return pl.read_csv(root/'sales.csv').select('order', 'store', 'price').to_dicts()

def send_all(url, rows, size=10):
    "Every row, `size` to a request; each record's answer by order id."
    answered = {}
    with httpx.Client(base_url=url, timeout=30) as c:
        for i in range(0, len(rows), size):
            r = c.post('/predict', json={'records': rows[i:i + size]})
            assert r.status_code == 200, r.text
            answered |= {p['id']: p for p in r.json()['predictions']}
    return answered

def test_a_canary_answers_a_sticky_share_by_id_and_the_log_says_which_version_answered(fresh):
    root, cfg = fresh
    rows = orders(root)
    with Server(make_app(cfg, second='challenger', mode='canary', share=0.5)) as s:
        first, again = send_all(s.url, rows), send_all(s.url, rows[::-1], size=7)
        health = httpx.get(f'{s.url}/health').json()
    assert {o: p['version'] for o, p in first.items()} == {o: p['version'] for o, p in again.items()}, 'the same order must meet the same version'
    share = sum(p['version'] == '2' for p in first.values()) / len(first)
    assert 0.35 < share < 0.65, share
    assert health['second'] == {'alias': 'challenger', 'mode': 'canary', 'version': '2', 'refused_version': None, 'share': 0.5}
    logged = pl.read_parquet(root/'predictions'/'*.parquet')
    assert logged.height == 2 * len(rows)
    assert dict(logged.select(pl.col('id').cast(pl.Int64), 'version').unique().iter_rows()) == {o: p['version'] for o, p in first.items()}
    seen = monitor_traffic(cfg, 'labels.csv')
    assert seen['mode'] == 'canary' and seen['champion']['rows'] + seen['challenger']['rows'] == len(rows)

def test_a_shadow_is_logged_never_returned_and_its_comparison_on_labels_is_the_evidence_for_a_promotion(fresh):
    root, cfg = fresh
    rows = orders(root)
    with Server(make_app(cfg, second='challenger', mode='shadow')) as s:
        answered = send_all(s.url, rows)
        metrics = httpx.get(f'{s.url}/metrics').text
    assert {p['version'] for p in answered.values()} == {'1'} and all('shadow' not in k for p in answered.values() for k in p)
    assert 'mlops_nb_served{alias="challenger",role="shadow",version="2"} 1.0' in metrics
    logged = pl.read_parquet(root/'predictions'/'*.parquet')
    assert logged.height == len(rows) and set(logged['shadow_version']) == {'2'} and logged['shadow_probability'].null_count() == 0

    refused = cli(root, 'promote', '2', '--evidence', 'traffic')
    assert refused.returncode == 2 and 'has no comparison on live traffic' in refused.stderr, refused.stderr
    strict = cli(root, 'monitor', 'labels.csv', '--traffic', '-p', 'max_drop=-1.0')
    assert strict.returncode == 3 and 'does not hold up' in strict.stdout, strict.stdout + strict.stderr
    assert 'did not hold up on live traffic' in cli(root, 'promote', '2', '--evidence', 'traffic').stderr
    assert alias_version('orders', 'champion') == '1'

    judged = cli(root, 'monitor', 'labels.csv', '--traffic', '-p', 'max_drop=1.0')
    assert judged.returncode == 0 and 'shadow: challenger v2 roc_auc' in judged.stdout and f'on {len(rows)} and {len(rows)} labelled' in judged.stdout, judged.stdout
    promoted = cli(root, 'promote', '2', '--evidence', 'traffic')
    assert promoted.returncode == 0, promoted.stderr
    assert alias_version('orders', 'champion') == '2'
    assert 'live traffic (shadow: challenger v2' in alias_history(cfg)[-1]['reason']

HOSTILE = [  # (kind, request keywords, expected status)
    ('nested 100,000 deep', {'content': b'[' * 100_000 + b']' * 100_000}, 400),
    ('integer beyond a float', {'content': b'{"order": 1, "store": "north", "price": 1' + b'0' * 400 + b'}'}, 422),
    ('integer of 5,000 digits', {'content': b'{"order": 1, "store": "north", "price": 1' + b'0' * 5000 + b'}'}, 400),
    ('NaN', {'content': b'{"order": 1, "store": "north", "price": NaN}'}, 400),
    ('1e999', {'content': b'{"order": 1, "store": "north", "price": 1e999}'}, 422),
    ('lone surrogate in a field', {'content': b'{"order": 1, "store": "\\ud800", "price": 1.5}'}, 422),
    ('lone surrogate in the id', {'content': b'{"order": "\\udfff", "store": "north", "price": 1.5}'}, 422),
    ('id that is an object', {'content': b'{"order": {"a": 1}, "store": "north", "price": 1.5}'}, 422),
    ('invalid UTF-8', {'content': b'{"order": 1, "store": "\xff\xfe", "price": 1.5}'}, 400),
    ('wrong type', {'content': b'{"order": 1, "store": 7, "price": 1.5}'}, 422),
    ('boolean as a number', {'content': b'{"order": 1, "store": "north", "price": true}'}, 422),
    ('missing field', {'content': b'{"order": 1, "store": "north"}'}, 422),
    ('many unexpected fields', {'content': json.dumps({f'x{i}': i for i in range(5000)}).encode()}, 422),
    ('records not objects', {'content': b'[1, "two", null]'}, 422),
    ('empty body', {'content': b''}, 400),
    ('truncated JSON', {'content': b'{"records": [{"order": 1'}, 400),
    ('no records', {'content': b'{"records": []}'}, 400),
    ('too many records', {'content': json.dumps([{'order': 1, 'store': 'north', 'price': 1.5}] * 10_001).encode()}, 413),
    ('oversized body', {'content': b'[' + b' ' * 1_100_000 + b']'}, 413),
    ('oversized chunked body', {'content': lambda: (b' ' * 65_536 for _ in range(20))}, 413),  # a fresh stream each time
    ('wrong content type', {'content': b'order=1', 'headers': {'content-type': 'text/plain'}}, 415),
]

def rss_kib(pid:int)->int:
    return int(next(l for l in Path(f'/proc/{pid}/status').read_text().splitlines() if l.startswith('VmRSS')).split()[1])

def test_ten_thousand_hostile_and_valid_requests_get_no_5xx_and_the_log_holds_exactly_the_valid_rows(fresh):
    root, cfg = fresh
    port = free_port()
    server = subprocess.Popen([MLOPS_NB, 'serve', '--no-auth', '--port', str(port)], cwd=root, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url, rows = f'http://127.0.0.1:{port}', orders(root)
    try:
        for _ in range(120):
            try:
                if httpx.get(f'{url}/health').status_code == 200: break
            except httpx.HTTPError: time.sleep(0.5)
        statuses, valid_rows, errors, rss = {}, [0], [], []
        plan = [('valid', None, 200)] * 5000 + HOSTILE * (5000 // len(HOSTILE) + 1)
        plan = plan[:10_000]
        random.Random(0).shuffle(plan)
        lock = threading.Lock()
        def client(part):
            with httpx.Client(base_url=url, timeout=60, headers={'content-type': 'application/json'}) as c:
                for i, (kind, kw, expected) in enumerate(part):
                    try:
                        if kind == 'valid':
                            n = 1 + i % 5
                            r = c.post('/predict', json={'records': random.Random(i).sample(rows, n)})
                        else: r = c.post('/predict', **{k: v() if callable(v) else v for k, v in kw.items()})
                    except httpx.HTTPError as e:
                        errors.append(f'{kind}: {type(e).__name__}: {e}'); continue
                    with lock:
                        statuses[(kind, r.status_code)] = statuses.get((kind, r.status_code), 0) + 1
                        if r.status_code == 200: valid_rows[0] += len(r.json()['predictions'])
                        if kind != 'valid' and r.status_code != expected: errors.append(f'{kind}: {r.status_code} instead of {expected}: {r.text[:200]}')
                        if sum(statuses.values()) in (2000, 10_000): rss.append(rss_kib(server.pid))
        threads = [threading.Thread(target=client, args=(plan[k::4],)) for k in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        health = httpx.get(f'{url}/health').json()
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=60)
    assert not errors, errors[:10]
    assert sum(statuses.values()) == 10_000 and not any(s >= 500 for _, s in statuses)
    assert len({k for k, _ in statuses}) >= 13, statuses
    assert health['status'] == 'ok' and health['prediction_log']['rejected'] == 0
    assert len(rss) == 2 and rss[1] - rss[0] < 60_000, f'RSS grew from {rss[0]} to {rss[1]} KiB'
    logged = pl.read_parquet(root/'predictions'/'*.parquet')
    assert logged.height == valid_rows[0] and logged['request_id'].n_unique() == statuses[('valid', 200)]
    assert not (root/'predictions'/'rejects.jsonl').exists()

def test_workers_share_the_port_the_prediction_log_and_the_metrics(fresh):
    root, cfg = fresh
    port = free_port()
    server = subprocess.Popen([MLOPS_NB, 'serve', '--no-auth', '--port', str(port), '--workers', '2'], cwd=root, env=clean_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url, rows, answered = f'http://127.0.0.1:{port}', orders(root), []
    try:
        for _ in range(120):
            try:
                if httpx.get(f'{url}/health').status_code == 200: break
            except httpx.HTTPError: time.sleep(0.5)
        def client(k):
            for i in range(50):  # a new connection each time, so the kernel spreads them over both workers
                r = httpx.post(f'{url}/predict', json={'records': rows[(k * 50 + i) * 2:(k * 50 + i) * 2 + 2]})
                answered.append(r.status_code)
        threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        metrics = httpx.get(f'{url}/metrics').text
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=60)
    assert answered == [200] * 200, answered
    served = [l for l in metrics.splitlines() if l.startswith('mlops_nb_served{')]
    assert len({l.split('pid="')[1].split('"')[0] for l in served}) == 2, served
    total = next(float(l.split()[-1]) for l in metrics.splitlines() if l.startswith('mlops_nb_requests_total{path="/predict",status="200"}'))
    assert total == 200
    logged = pl.read_parquet(root/'predictions'/'*.parquet')
    assert logged.height == 400 and logged['id'].n_unique() == 400

def test_the_open_inference_protocol_gets_the_canary_and_the_shadow_too(fresh):
    root, cfg = fresh
    rows = orders(root)[:60]
    def infer(url):
        body = {'inputs': [{'name': 'order', 'shape': [len(rows)], 'datatype': 'INT64', 'data': [r['order'] for r in rows]},
                           {'name': 'store', 'shape': [len(rows)], 'datatype': 'BYTES', 'data': [r['store'] for r in rows]},
                           {'name': 'price', 'shape': [len(rows)], 'datatype': 'FP64', 'data': [r['price'] for r in rows]}]}
        r = httpx.post(f'{url}/v2/models/orders/infer', json=body, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()
    with Server(make_app(cfg, second='challenger', mode='canary', share=0.5)) as s:
        canary, predict = infer(s.url), send_all(s.url, rows, size=60)
    assert set(canary['model_version'].split(',')) == {'1', '2'}  # both versions answered, as on /predict
    assert canary['outputs'][1]['data'] == [predict[r['order']]['probability'] for r in rows], 'the same rows, the same versions, the same answers'
    with Server(make_app(cfg, second='challenger', mode='shadow', log_folder=root/'predictions')) as s:
        shadowed = infer(s.url)
    assert shadowed['model_version'] == '1'
    deadline = time.time() + 10
    while time.time() < deadline and not list((root/'predictions').glob('*.parquet')): time.sleep(0.2)
    logged = pl.concat([pl.read_parquet(p) for p in (root/'predictions').glob('*.parquet')], how='diagonal_relaxed')
    assert logged.filter(pl.col('shadow_version') == '2').height >= len(rows), 'the shadow scored every row the protocol sent'
