"""The fleet's storage at the bottom of the server: SQLite (the default) or PostgreSQL behind one connection surface
(:mod:`fleet.store.connection`, :mod:`fleet.store.pg`), transactions, numbered schema migrations, the
device/token/event tables every feature reads (:class:`fleet.store.db.FleetDB`), and what several workers share
through PostgreSQL: wake-ups (:mod:`fleet.store.signals`) and periodic work's leadership
(:mod:`fleet.store.leader`)."""
