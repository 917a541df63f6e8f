"""Stream shards through Dask with a bounded window of tasks in flight and a progress bar."""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

from cavnet.extract.config import ExtractConfig, RunOptions
from cavnet.pipelines.dask_cluster import dask_client
from cavnet.pipelines.extract_worker import ShardSpec, run_shard


def run_shards(todo: Sequence[ShardSpec], config: ExtractConfig, opts: RunOptions, total: int,
               skipped: int, echo: Callable[[str], None], progress: bool) -> dict[str, int]:
    """Run every shard of ``todo``; a shard whose worker died is redone with each video isolated."""
    from distributed import as_completed
    from tqdm import tqdm

    counts: dict[str, int] = {}
    config_json = config.to_json()
    with dask_client(opts.scheduler, opts.workers, opts.device, echo) as client:
        window = opts.window or 2 * max(1, len(client.scheduler_info()["workers"]))
        queue = list(todo)
        done_videos = total - sum(len(s.rows) for s in todo)
        bar = tqdm(total=total, initial=done_videos, unit="video", disable=not progress, dynamic_ncols=True,
                   desc="extract")
        specs = {}

        def submit(spec: ShardSpec):
            fut = client.submit(run_shard, spec, config_json, opts, pure=False,
                                key=f"cavnet-shard-{spec.index}-{'iso' if spec.isolate else 'run'}")
            specs[fut.key] = spec
            return fut

        pending = as_completed([submit(queue.pop(0)) for _ in range(min(window, len(queue)))])
        for fut in pending:
            spec = specs.pop(fut.key)
            if fut.status == "error":
                if spec.isolate:
                    raise fut.exception()
                echo(f"shard {spec.index}: worker lost ({type(fut.exception()).__name__}); redoing it video by video")
                pending.add(submit(dataclasses.replace(spec, isolate=True)))
                continue
            result = fut.result()
            fut.release()
            for status, k in result.counts.items():
                counts[status] = counts.get(status, 0) + k
            bar.update(sum(result.counts.values()))
            bar.set_postfix(failed=sum(k for s, k in counts.items() if s not in ("ok", "no_audio")))
            if queue:
                pending.add(submit(queue.pop(0)))
        bar.close()
    return counts
