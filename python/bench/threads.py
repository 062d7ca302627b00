"""Forwards from one Python thread against two: the GIL is released during
each C call, so two threads (one worker thread per forward) finish the same
work in about half the time on two free cores. Prints medians of 5 rounds,
both measured in the same run.

    PYTHONPATH=python /usr/bin/python3 python/bench/threads.py
"""

import statistics
import sys
import threading
import time

import numpy as np

import mech


def main():
    m = mech.Model.random(seed=4, n_layers=6, d_model=256, n_heads=4, d_head=64, d_mlp=1024, d_vocab=1000, n_ctx=256)
    m.threads = 1  # one worker per forward: the parallelism measured is the threads'
    ids = np.arange(256) % 1000
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 8
    m(ids)

    def one():
        t0 = time.perf_counter()
        for _ in range(n):
            m(ids)
        return time.perf_counter() - t0

    def two():
        def work():
            for _ in range(n // 2):
                m(ids)
        ts = [threading.Thread(target=work) for _ in range(2)]
        t0 = time.perf_counter()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return time.perf_counter() - t0

    a, b = [], []
    for _ in range(5):
        a.append(one())
        b.append(two())
    ma, mb = statistics.median(a), statistics.median(b)
    print("%d forwards (B=1, T=256, 6 layers, d_model 256): 1 thread %.3f s, 2 threads %.3f s, speed-up %.2fx"
          % (n, ma, mb, ma / mb))


if __name__ == "__main__":
    main()
