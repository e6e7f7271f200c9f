"An atomic write killed at any moment leaves the old file or the new one, never a partial one."
import signal, subprocess, sys, time

WRITER = '''
import sys
from mlops_nb.core import atomic_write
target, size = sys.argv[1], int(sys.argv[2])
i = 0
while True:
    atomic_write(target, (b'AB'[i % 2:i % 2 + 1]) * size)
    i += 1
'''

def test_a_killed_writer_never_leaves_a_partial_file(tmp_path):
    target, size = tmp_path/'snapshot.bin', 8 << 20
    for attempt in range(5):
        writer = subprocess.Popen([sys.executable, '-c', WRITER, str(target), str(size)])
        deadline = time.time() + 30
        while not target.exists() and time.time() < deadline: time.sleep(0.01)
        time.sleep(0.05 * attempt)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        data = target.read_bytes()
        assert len(data) == size and data in (b'A' * size, b'B' * size)
