"""The job's own console: image counts with rate and ETA, one line per training report."""
import io
import time

import ray

from pipelines.cluster.progress import (JobProgress, ProgressCounter, ReportLog, follow_reports, progress_line,
                                training_report_line)


def test_progress_line_counts_images_with_rate_and_eta():
    assert progress_line("inpaint", 30, 120, 10.0) == "inpaint: 30/120 images (25%), 3.00 images/s, ETA 30s"
    assert progress_line("inpaint", 0, 7, 2.0) == "inpaint: 0/7 images (0%), 0.00 images/s"  # no ETA yet
    assert "ETA" not in progress_line("inpaint", 7, 7, 3.0)


def test_training_report_line_names_step_losses_and_rate():
    line = training_report_line({"step": 10, "gen_l1": 0.12345, "images_per_s": 22.5, "generator_lr": 1e-3,
                                 "start_generator_digest": "abc"}, 40)
    assert line == "step 10/40  gen_l1 0.1235  22.5 images/s"


def test_job_progress_and_report_follower_print_what_the_stages_send(ray_local):
    counter, stream = ProgressCounter.remote(), io.StringIO()
    with JobProgress("inpaint", 5, counter, stream=stream, every_s=0.0, poll_s=0.05):
        ray.get([counter.add.remote(2), counter.add.remote(3)])
    lines = stream.getvalue().strip().splitlines()
    assert lines and lines[-1].startswith("inpaint: 5/5 images (100%)")  # the last line, at exit, is final
    assert sum(line.startswith("inpaint: 5/5") for line in lines) == 1  # and it is printed once
    # A count seen by a periodic line is not printed again at the exit.
    counter, stream = ProgressCounter.remote(), io.StringIO()
    with JobProgress("inpaint", 2, counter, stream=stream, every_s=0.2, poll_s=0.05):
        ray.get(counter.add.remote(2))
        time.sleep(0.5)
    assert stream.getvalue().strip().splitlines() == [line for line in stream.getvalue().strip().splitlines()
                                                      if line.startswith("inpaint: 2/2")][:1]

    log, out = ReportLog.remote(), io.StringIO()
    with follow_reports(log, stream=out, poll_s=0.05):
        ray.get([log.push.remote("step 1/2"), log.push.remote("step 2/2")])
    assert out.getvalue().splitlines() == ["step 1/2", "step 2/2"]


def test_model_stage_counts_every_batch_it_finishes(ray_local):
    # Counted where images are finished (the model actor), batch by batch: Ray Data passes an
    # actor task's output on only when the task ends, so a count at the writer stood at 0/N.
    import numpy as np

    from pipelines.cluster.actor_pool import ActorPlan
    from pipelines.inpaint.model_stage import InpaintStage, ModelStage

    counter = ProgressCounter.remote()
    plan = ActorPlan(actors=1, cpus=1.0, threads=1, gpus=0.0, device="cpu", codec_cpus=0.5)
    stage = InpaintStage(ModelStage(model="small", seed=0, precision="fp32", max_pixels=0, hd_strategy="windows",
                                    batch_size=2, endpoint_url=None, keep_masks=False, actors=plan), counter)
    image, mask = np.zeros((64, 64, 3), np.uint8), np.zeros((64, 64), np.uint8)
    mask[16:32, 16:32] = 255
    batch = {"id": np.array(["a", "b"], dtype=object), "status": np.array(["ok", "error"], dtype=object),
             "error": np.array([None, "unreadable"], dtype=object), "error_kind": np.array([None, "input"], dtype=object),
             "source": np.array(["a.png", "b.png"], dtype=object), "image": [image, image], "mask": [mask, mask],
             "reduced": np.zeros(2, bool), "seconds": np.zeros(2), "mask_generated": np.zeros(2, bool)}
    stage(batch)
    assert ray.get(counter.value.remote()) == 2
    stage({key: value[:1] for key, value in batch.items()})
    assert ray.get(counter.value.remote()) == 3
