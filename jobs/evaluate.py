"""Evaluate checkpoints on mask sets: ``python jobs/evaluate.py model=URI-glob-or-list
mask_kind=[thick_512,thin_512] input=URI output=URI metrics=[psnr,ssim,l1,lpips,fid] watch=false``.

For every (checkpoint, mask set) pair not yet in ``OUTPUT/summary/``, inpaints every image
of ``input`` (ground truth: a folder/prefix of png/jpg/webp, or Parquet shards with ``id``,
``image``; empty = scikit-image's sample photos) with the mask set's masks and scores the
results. A mask set is a kind (``thick_512``, ``thin_256``, ...: mask ``i`` drawn for image
``i`` in sorted id order with ``mask_seed``) or a folder written by ``jobs/make_masks.py``
(image ``i`` <-> ``{i:06d}_mask000.png``). ``model`` is one URI, a glob
(``runs/exp/checkpoint_*``, also ``s3://...``) or a list ``[a,b]``; each is anything
``lama_core.load_generator`` reads. Writes ``OUTPUT/per_image/*.parquet`` (one row per image ×
checkpoint × mask set), ``OUTPUT/summary/*.parquet`` (per checkpoint × mask set × hole-area
bin, plus ``all``: n, metric means, FID), ``OUTPUT/plots/<mask set>.png`` (metrics against
training step) and ``OUTPUT/samples/*.png`` (input | output | ground truth).
``--help`` lists every key with its type, default and description.

Metric weights are never downloaded: ``weights_dir=URI`` (default ``$TORCH_HOME/hub/checkpoints``)
holds ``pt_inception-2015-12-05-6726825d.pth`` for fid and ``vgg16-397923af.pth`` (or
``alexnet-owt-7be5be79.pth`` with ``lpips_net=alex``) plus the LPIPS heads for lpips; metrics
whose files are missing are skipped, every missing file named at once, before any work.
``metrics=[psnr,ssim]`` (or ``l1``) needs no weights.

Scheduled sweeps. Reruns are incremental: a pair already in ``OUTPUT/summary/`` is skipped
(key: checkpoint URI + mask set name), so a cron entry evaluates only the checkpoints that
appeared since its last run; a checkpoint that failed to load is retried next time::

    # crontab: every 30 minutes, new checkpoints of a training run in S3
    */30 * * * * cd /opt/lama && .venv/bin/python jobs/evaluate.py \\
        'model=s3://bucket/runs/exp/checkpoint_*' 'mask_kind=[thick_512,thin_512]' \\
        input=s3://bucket/eval/places512 output=s3://bucket/runs/exp/eval >> eval.log 2>&1

Or keep one process watching the glob (``poll_seconds``, default 300; ``max_polls=N`` stops
after N polls, 0 = until interrupted with Ctrl-C / SIGINT, which exits 0)::

    python jobs/evaluate.py 'model=outputs/train/lama/checkpoint_*' watch=true poll_seconds=600

Both run unchanged under ``ray job submit -- python jobs/evaluate.py ...`` (the cluster in
``RAY_ADDRESS``; otherwise a local Ray). Exit code 0 when the sweep ran, even with error rows or
checkpoints that failed to load; 1 with one line on stderr when it could not run (bad config,
missing weights, unreachable data or output, no checkpoint matching outside watch mode).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from a plain checkout

from pipelines.evaluate.config import EvaluateConfig  # noqa: E402  (light: parsing never waits for torch/Ray)
from pipelines.common.cli import run_job  # noqa: E402


def main(cfg: EvaluateConfig) -> None:
    from pipelines.evaluate.job import run_evaluation

    try:
        reports = run_evaluation(cfg)
    except KeyboardInterrupt:
        print("evaluate: interrupted; pairs finished so far are in the output (rerun to resume)")
        return
    evaluated = sum(len(r.evaluated) for r in reports)
    failed = sum(len(r.failed) for r in reports)
    print(f"evaluate: {evaluated} pairs evaluated ({failed} failed) in {len(reports)} sweep(s); "
          f"output {cfg.output}")


if __name__ == "__main__":
    run_job(main, EvaluateConfig)
