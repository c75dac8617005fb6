"""The stage runner: prepare -> generate -> finish overlap across jobs, with bounded FIFO pools."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from service.config import LoraConfig, QueueConfig, ServiceConfig, StagesConfig, load_config
from service.domain.errors import Cancelled, ErrorType, JobError
from service.domain.job_context import JobContext
from service.domain.outputs import GeneratedVideo, StoredFile
from service.domain.specs import LoraSpec, TextToVideoSpec, spec_to_json
from service.engines.slots import Slots
from service.inputs import InputPreparer, PreparedJob
from service.jobs.queue import CancelOutcome, JobQueue
from service.jobs.records import JobState
from service.jobs.runner import WAITING_MESSAGE, JobRunner
from service.jobs.store import JobStore
from service.models.lora import FetchedLora
from service.pipelines.endpoint_inputs import EndpointInputs
from service.storage.local import LocalStorage

WAIT_S = 20.0  # a stage that waits this long for another job's stage means the stages did not overlap

SPEC = TextToVideoSpec(
    prompt="p",
    negative_prompt="n",
    width=16,
    height=16,
    num_frames=2,
    num_inference_steps=1,
    frame_rate=24,
    seed=0,
    enable_safety_checker=False,
)


class Counter:
    """A count that threads can wait on."""

    def __init__(self) -> None:
        self.value = 0
        self._changed = threading.Condition()

    def add(self) -> None:
        with self._changed:
            self.value += 1
            self._changed.notify_all()

    def wait_for(self, at_least: int) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.value >= at_least, WAIT_S)


class InterlockedStages:
    """Job k's stages wait on the neighbouring jobs' stages, so the burst only completes if they overlap:
    prepare of job k waits until job k-1 is on the accelerator; generate of job k-1 waits until job k is
    prepared; generate of job k waits until job k-1 has been finished (stored)."""

    def __init__(self) -> None:
        self.generating = Counter()  # jobs whose generate stage has started
        self.prepared = Counter()
        self.stored = Counter()
        self.waits_met: list[bool] = []
        self.engine_busy = threading.Lock()
        self.overlapping_generates = 0

    # the preparer
    def prepare(self, spec: TextToVideoSpec, ctx: JobContext) -> PreparedJob:
        if spec.seed > 0:
            self.waits_met.append(self.generating.wait_for(spec.seed))
        self.prepared.add()
        return PreparedJob(EndpointInputs(spec), checker=None)

    # the engine
    applies_loras = False

    def generate(
        self,
        inputs: EndpointInputs,
        loras: Sequence[FetchedLora],
        ctx: JobContext,
    ) -> GeneratedVideo:
        if not self.engine_busy.acquire(blocking=False):
            self.overlapping_generates += 1
            self.engine_busy.acquire()
        try:
            seed = inputs.spec.seed
            self.generating.add()
            self.waits_met.append(self.prepared.wait_for(seed + 2) if seed < 2 else True)
            if seed > 0:
                self.waits_met.append(self.stored.wait_for(seed))
            frames = np.full((2, 16, 16, 3), 40 * seed, dtype=np.uint8)
            return GeneratedVideo(frames=frames, frame_rate=24.0, prompt=inputs.spec.prompt, seed=seed)
        finally:
            self.engine_busy.release()

    def ready(self) -> bool:
        return True


class CountingStorage(LocalStorage):
    def __init__(self, root: Path, stored: Counter) -> None:
        super().__init__(root, "http://127.0.0.1:1")
        self.stored = stored

    def publish(self, job_id: str, path: Path, content_type: str) -> StoredFile:
        stored = super().publish(job_id, path, content_type)
        self.stored.add()
        return stored


def _queue(tmp_path: Path, stages: InterlockedStages, config: ServiceConfig) -> tuple[JobQueue, JobStore]:
    storage = CountingStorage(tmp_path / "results", stages.stored)
    runner = JobRunner(stages, storage, config, preparer=stages)  # type: ignore[arg-type]
    store = JobStore(tmp_path / "jobs.sqlite3")
    queue = JobQueue(
        store,
        config.queue,
        runner,
        workers=runner.max_in_flight,
        before_accelerator=runner.before_accelerator,
    )
    return queue, store


async def _finished(queue: JobQueue, job_id: str) -> JobState:
    async for view in queue.follow(job_id):
        last = view
    return last.record.state


def test_next_job_is_prepared_and_last_one_finished_while_one_generates(tmp_path: Path) -> None:
    stages = InterlockedStages()

    async def scenario() -> list[JobState]:
        queue, _store = _queue(tmp_path, stages, ServiceConfig())
        await queue.start()
        ids = [
            (await queue.submit("ltx-video-lora", spec_to_json(dataclasses.replace(SPEC, seed=k))))[0]
            for k in range(4)
        ]
        states = [await _finished(queue, job_id) for job_id in ids]
        await queue.stop()
        return states

    assert asyncio.run(scenario()) == [JobState.SUCCEEDED] * 4
    assert stages.waits_met and all(stages.waits_met)
    assert stages.overlapping_generates == 0  # one accelerator slot: never two jobs on it


def test_a_job_waiting_for_the_accelerator_is_cancelled_at_once(tmp_path: Path) -> None:
    release = threading.Event()
    generated: list[int] = []

    class BlockingEngine(InterlockedStages):
        def prepare(self, spec, ctx):
            return PreparedJob(EndpointInputs(spec), checker=None)

        def generate(self, inputs, loras, ctx):
            generated.append(inputs.spec.seed)
            release.wait(WAIT_S)
            frames = np.zeros((2, 16, 16, 3), dtype=np.uint8)
            return GeneratedVideo(frames=frames, frame_rate=24.0, prompt="p", seed=inputs.spec.seed)

    stages = BlockingEngine()

    async def scenario() -> tuple[JobState, JobState, list[str]]:
        queue, store = _queue(tmp_path, stages, ServiceConfig())
        await queue.start()
        first, _ = await queue.submit("ltx-video-lora", spec_to_json(SPEC))
        second, _ = await queue.submit("ltx-video-lora", spec_to_json(dataclasses.replace(SPEC, seed=1)))
        while WAITING_MESSAGE not in [entry.message for entry in store.logs(second)]:
            await asyncio.sleep(0.02)
        assert await queue.cancel(second) is CancelOutcome.CANCELLED  # queued, to the client: ends now
        assert store.get(second).state is JobState.CANCELLED  # type: ignore[union-attr]
        second_state = await asyncio.wait_for(_finished(queue, second), 10)
        release.set()
        first_state = await _finished(queue, first)
        await queue.stop()
        return first_state, second_state, [entry.message for entry in store.logs(second)]

    first_state, second_state, second_logs = asyncio.run(scenario())
    assert (first_state, second_state) == (JobState.SUCCEEDED, JobState.CANCELLED)
    assert generated == [0]  # the cancelled job never reached the accelerator
    assert WAITING_MESSAGE in second_logs


def test_queue_runs_one_job_per_slot_of_every_stage(tmp_path: Path) -> None:
    config = ServiceConfig(
        queue=QueueConfig(workers=2), stages=StagesConfig(prepare_workers=3, finish_workers=2)
    )
    stages = InterlockedStages()
    runner = JobRunner(stages, LocalStorage(tmp_path, "http://127.0.0.1:1"), config, preparer=stages)  # type: ignore[arg-type]
    assert runner.max_in_flight == 7


def test_slots_are_taken_first_come_first_served() -> None:
    slots = Slots(1, poll_s=0.01)
    order: list[int] = []
    with slots.held():
        threads = []
        for k in range(4):
            thread = threading.Thread(target=lambda k=k: _hold(slots, order, k))
            thread.start()
            threads.append(thread)
            while slots.waiting < k + 1:  # k is in line before k + 1 arrives
                time.sleep(0.005)
    for thread in threads:
        thread.join(WAIT_S)
    assert order == [0, 1, 2, 3]


def _hold(slots: Slots, order: list[int], k: int) -> None:
    with slots.held():
        order.append(k)


def test_a_cancelled_waiter_leaves_the_line_and_the_next_one_gets_the_slot() -> None:
    slots = Slots(1, poll_s=0.01)
    cancelled = threading.Event()
    outcome: list[str] = []

    def wait_cancellable() -> None:
        try:
            with slots.held(cancelled.is_set):
                outcome.append("got the slot")
        except Cancelled:
            outcome.append("cancelled")

    with slots.held():
        waiter = threading.Thread(target=wait_cancellable)
        waiter.start()
        while slots.waiting < 1:
            time.sleep(0.005)
        cancelled.set()
        waiter.join(WAIT_S)
    assert outcome == ["cancelled"]
    assert slots.free() and slots.waiting == 0


def test_stages_config_is_read_from_toml_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "service.toml"
    path.write_text("[stages]\nprepare_workers = 2\nfinish_workers = 3\n")
    assert load_config(path).stages == StagesConfig(prepare_workers=2, finish_workers=3)
    path.write_text("[stages]\nprepare_workers = 0\n")
    with pytest.raises(ValueError, match=r"stages\.prepare_workers must be an integer of at least 1, got 0"):
        load_config(path)


def test_prepare_resolves_lora_files_before_the_accelerator(tmp_path: Path) -> None:
    lora = tmp_path / "style.safetensors"
    lora.write_bytes(b"not read until the generate stage applies it")
    spec = dataclasses.replace(SPEC, loras=(LoraSpec(str(lora), 0.5),))
    config = ServiceConfig(lora=LoraConfig(allow_local_paths=True, local_roots=(str(tmp_path),)))
    prepared = InputPreparer(config).prepare(spec, JobContext.create())
    assert prepared.loras == (FetchedLora(0, spec.loras[0], lora.resolve()),)
    # An engine that applies no LoRA (Triton) gets none fetched.
    assert InputPreparer(config, fetch_lora_files=False).prepare(spec, JobContext.create()).loras == ()
    missing = dataclasses.replace(SPEC, loras=(LoraSpec(str(tmp_path / "absent.safetensors")),))
    with pytest.raises(JobError) as caught:
        InputPreparer(config).prepare(missing, JobContext.create())
    # Not getting the file is input_fetch_failed (the error table's row for inputs), before the accelerator.
    assert caught.value.error_type is ErrorType.INPUT_FETCH_FAILED and "loras[0]" in caught.value.message
