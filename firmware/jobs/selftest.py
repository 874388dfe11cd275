"""The ``self_test`` job: the model this start runs (or the factory model) loads and runs in a child process."""

from __future__ import annotations

import logging
import re

from firmware.jobs.context import JobContext
from firmware.jobs.hooks import SelfTestOutcome
from wardsight import wire
from wardsight.errors import WardSightError
from wardsight.fetch import ArtifactStore

log = logging.getLogger("wardsight.device.jobs")


def factory_self_test(store: ArtifactStore, model: str = "movenet-multipose", *, threads: int = 1) -> SelfTestOutcome:
    """The pose model loads and runs on the built-in synthetic frame within the time bound
    (``firmware.ota.selftest``, in a child process so a crash or hang only fails the test)."""
    from accelerators.catalog import get_model
    from firmware.ota.selftest import factory_build, run_selftest

    try:
        path = store.require(get_model(model).artifact)
    except WardSightError as exc:
        return SelfTestOutcome(False, "model_missing", str(exc))
    result = run_selftest(path, factory_build(), threads=threads)
    return SelfTestOutcome(result.ok, result.reason, result.detail)


def self_test(ctx: JobContext, job: wire.Job) -> wire.JobReport:
    test = ctx.hooks.self_test
    if test is None:
        if ctx.hooks.store is None:
            return ctx.reports.fail(job, "self_test_unavailable")
        store = ctx.hooks.store
        model = ctx.hooks.config.model if ctx.hooks.config else "movenet-multipose"

        def test() -> SelfTestOutcome:
            return factory_self_test(store, model)

    outcome = test()
    log.info("self-test: %s (%s)", "passed" if outcome.ok else "failed", outcome.detail)
    if outcome.ok:
        return ctx.reports.ok(job)
    reason = outcome.reason if re.fullmatch(r"[a-z][a-z0-9_]{0,63}", outcome.reason) else "self_test_failed"
    return ctx.reports.fail(job, reason)
