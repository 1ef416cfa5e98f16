"""Where the pipeline's tasks run: in this process, in a process pool, or on a Dask cluster.

An executor runs ``fn(item)`` for each item and yields ``(index, result)`` as results arrive (any order; the
pipeline stores each result as a checkpoint at once). Every task is a module-level function with picklable
arguments, so the three are interchangeable and give identical results.

- :class:`InProcess`: sequential, in this process (JAX oracles: the batching happens inside each task);
- :class:`ProcessPool`: ``concurrent.futures`` with the ``spawn`` start method (forking a process that runs
  JAX's threads can deadlock);
- :class:`DaskExecutor`: ``dask.distributed``; a running scheduler, named by its ``address`` (e.g. a dask-jobqueue
  SLURM/PBS cluster's ``cluster.scheduler_address``) or by the file that ``dask scheduler --scheduler-file F.json``
  writes (an ``address`` ending in ``.json``), or, by default, a new ``LocalCluster`` with ``workers`` workers.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed


class InProcess:
    """Run tasks one after the other in this process. ``fn(item, progress=...)`` gets the progress callback."""

    name = "in-process"

    def imap(self, fn, items, progress=None):
        for k, item in enumerate(items):
            yield k, fn(item, progress=progress)

    def close(self):
        pass


class ProcessPool:
    """A pool of ``workers`` spawned processes."""

    def __init__(self, workers: int):
        self.workers = workers
        self.name = f"process pool ({workers} workers)"
        self._pool = None

    def imap(self, fn, items, progress=None):
        if not items:
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        futures = {self._pool.submit(fn, item): k for k, item in enumerate(items)}
        try:
            for fut in as_completed(futures):
                res = fut.result()
                if progress:
                    progress(len(res))
                yield futures[fut], res
        finally:
            for fut in futures:
                fut.cancel()

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


class DaskExecutor:
    """Tasks on a Dask cluster: a running scheduler (``address``: ``tcp://host:port`` or a scheduler file ``*.json``),
    or a new ``LocalCluster`` (``address`` empty).

    A scheduler that cannot be reached within Dask's connect timeout (``distributed.comm.timeouts.connect``, 30 s by
    default), or a scheduler file that does not exist, raises :class:`~mtpjax.errors.ConfigError` naming
    ``executor.address``. Tasks wait for workers: a scheduler with none (batch jobs still queued) is not an error.
    """

    def __init__(self, address: str = "", workers: int = 2, processes: bool = True):
        self.address, self.workers, self.processes = address, workers, processes
        self.cluster = self.client = None
        self.name = f"dask ({address})" if address else f"dask LocalCluster ({workers} {'processes' if processes else 'threads'})"

    def _connect(self):
        from dask.distributed import Client, LocalCluster

        if self.client is None:
            if self.address:
                self.client = self._remote()
            else:
                self.cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=self.processes,
                                            dashboard_address=None)
                self.client = Client(self.cluster)
        return self.client

    def _remote(self):
        """A client of the running scheduler at ``address``; ConfigError if there is none."""
        from pathlib import Path

        from dask.distributed import Client

        from ..errors import ConfigError

        is_file = self.address.endswith(".json")
        if is_file and not Path(self.address).is_file():
            raise ConfigError("executor.address", f"scheduler file {self.address} does not exist (it is written by "
                              "`dask scheduler --scheduler-file FILE`; start the scheduler first)")
        try:
            return Client(scheduler_file=self.address) if is_file else Client(self.address)
        except (OSError, TimeoutError) as err:
            raise ConfigError("executor.address", f"no Dask scheduler answered at {self.address} ({err}); start one "
                              "(`dask scheduler`, or a dask-jobqueue cluster) or leave address empty for a "
                              "LocalCluster") from err

    def imap(self, fn, items, progress=None):
        from dask.distributed import as_completed as dask_completed

        if not items:
            return
        self._connect()
        futures = self.client.map(fn, items, pure=False)
        index = {f.key: k for k, f in enumerate(futures)}
        try:
            for fut in dask_completed(futures):
                res = fut.result()
                if progress:
                    progress(len(res))
                yield index[fut.key], res
        finally:
            self.client.cancel(futures)

    def close(self):
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close()
        self.client = self.cluster = None
