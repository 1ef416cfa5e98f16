"""Progress on long work: a tqdm bar on a terminal, otherwise a line now and then (a batch job's log file).

One mechanism for the command line (``mtpjax fit``, ``mtpjax efs``) and ``mtpjax run``'s fit stage. Light: tqdm is
imported only when a bar is drawn, and nothing here imports JAX.
"""
from __future__ import annotations

import sys
import time

#: Without a terminal (a batch job's log file), a fit prints a progress line every this many steps ...
FIT_LOG_EVERY_STEPS = 10
#: ... or when this many seconds have passed since the last one.
FIT_LOG_EVERY_S = 30.0


class NoBar:
    """A do-nothing stand-in for a tqdm bar (context manager, ``n``, ``update``, ``set_postfix``)."""
    n = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        self.n += n

    def set_postfix(self, *a, **k):
        pass


def progress_bar(total: int, desc: str, unit: str, quiet: bool):
    """A tqdm bar on a terminal (stderr); otherwise a :class:`NoBar`."""
    if quiet or not sys.stderr.isatty():
        return NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit)


def fit_progress(max_steps: int, quiet: bool, stream=None, every_steps: int = FIT_LOG_EVERY_STEPS,
                 every_s: float = FIT_LOG_EVERY_S, bar: bool | None = None, emit=None):
    """(context manager, ``progress(k, loss)`` callback) for a fit: a tqdm bar on ``stream`` (default stderr) when
    ``bar`` (default: ``stream`` is a terminal); otherwise one line "fit: step K/MAX, loss L, T s" at step 1, then
    every ``every_steps`` steps or ``every_s`` seconds, and at the last step, written to ``stream`` or passed to
    ``emit(line)``; nothing when ``quiet``. ``loss`` may be an array (several models fitted together)."""
    stream = sys.stderr if stream is None else stream
    if quiet:
        return NoBar(), (lambda k, val: None)
    if stream.isatty() if bar is None else bar:
        from tqdm import tqdm

        tq = tqdm(total=max_steps, desc="fit", unit="step", file=stream)

        def progress(k, val):
            tq.n = k + 1
            tq.set_postfix(loss=f"{val:.4g}", refresh=False)
            tq.update(0)

        return tq, progress
    emit = emit or (lambda line: print(line, file=stream, flush=True))
    t0 = time.perf_counter()
    last = [t0]

    def log(k, val):
        now = time.perf_counter()
        step = k + 1
        if step == 1 or step % every_steps == 0 or step >= max_steps or now - last[0] >= every_s:
            last[0] = now
            try:
                loss = f"{float(val):.6g}"
            except TypeError:  # several models fitted together: one loss each
                loss = " ".join(f"{float(v):.6g}" for v in val)
            emit(f"fit: step {step}/{max_steps}, loss {loss}, {now - t0:.1f} s")

    return NoBar(), log
