"""What every model actor of the Ray Data jobs does (``pipelines.inpaint.model_stage``,
``pipelines.evaluate.stage``): device resolution, its share of the node's threads, and
the per-record fallback when a batch fails."""
from __future__ import annotations

import os
from typing import Callable, Sequence, TypeVar

T = TypeVar("T")


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; any other device name
    as given. The one resolver of ``device="auto"``."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def start_model_actor(num_threads: int) -> None:
    """What a model actor does first: ask for normal priority (Ray starts workers at nice
    15; on a shared machine that starves the model) and use ``num_threads`` torch threads,
    its share of the node's cores (decode/encode tasks run beside it)."""
    import torch

    try:
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    except (OSError, AttributeError):
        pass  # lowering niceness needs privileges: keep Ray's
    torch.set_num_threads(max(1, num_threads))


def run_per_record(todo: Sequence[int], run: Callable[[list[int]], list[T]],
                   fail: Callable[[int, Exception], None]) -> dict[int, T]:
    """``{row: result}`` of ``run`` over the rows ``todo`` of a batch: one call for them
    all; when that raises, cached GPU memory is freed and every row is run alone, so only
    a row that fails by itself is lost, reported as ``fail(row, exception)``. ``run(rows)``
    returns one result per row, in order."""
    import torch

    if not todo:
        return {}
    try:
        return dict(zip(todo, run(list(todo))))
    except Exception:  # noqa: BLE001 - find the record that broke the batch (e.g. out of memory on one)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    done: dict[int, T] = {}
    for i in todo:
        try:
            done[i] = run([i])[0]
        except Exception as exc:  # noqa: BLE001 - that record's failure, reported by the caller
            fail(i, exc)
    return done
