"""Maintenance jobs on the device: fetched by long poll, verified, run at most once, reported.

The device only connects outwards: :class:`firmware.jobs.runner.JobRunner` runs a thread that asks
``GET /api/v1/device/jobs?wait=25`` and backs off on errors (it never lets a failure reach the agent). Each job is
a compact JWS signed by the server's job key (``job_key`` in ``identity.json``). Before anything runs, a job must

- verify with that key (else refused ``bad_signature``) and be of a known kind (``unknown_kind``);
- name this device (``wrong_device``);
- be new: executed job ids are kept in ``<device dir>/jobs.db`` (SQLite, :mod:`firmware.jobs.ledger`), written
  *before* a job runs, so a job runs at most once across restarts and crashes; a job seen again is refused
  ``replayed`` (unless its final report has not reached the server yet: then only that report is sent again);
- not be expired by the **server's** clock (``FleetClient.server_now()``; the device clock may be years off).

Final reports wait in the same database until the server has them (offline devices catch up;
:mod:`firmware.jobs.reports`). Jobs that end the process (restart, a pushed configuration, a reboot) record where
they are and are reported after the next start (:meth:`JobRunner.resume`).

Modules, one per job kind or group: :mod:`~firmware.jobs.lifecycle` (restart_agent, reboot, factory_reset),
:mod:`~firmware.jobs.config` (push_config: validation with :class:`DeviceConfig` and the environment overrides, a
dry run, a privacy check (a change that removes, shrinks or moves a privacy region or changes the camera source is
applied only with the two-person approval the signed job carries; else ``privacy_change_not_approved``), and
:func:`~firmware.jobs.config.recover_pushed_config` restoring the previous file when the agent does not start with
the new one; with params ``merge = "zones"`` the zone editor's edit, which
:mod:`~firmware.jobs.layout` applies to the device's own file, changing only its zones and privacy regions),
:mod:`~firmware.jobs.diagnostics` (collect_diagnostics), :mod:`~firmware.jobs.selftest` (self_test),
:mod:`~firmware.jobs.rotation` (rotate_key) and :mod:`~firmware.jobs.loglevel` (set_log_level).
:mod:`~firmware.jobs.hooks` says what the runner needs of the device's client and what the agent gives it;
:mod:`~firmware.jobs.context` what a job kind works with.
"""
