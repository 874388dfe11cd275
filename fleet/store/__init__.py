"""The fleet's storage at the bottom of the server: the SQLite connection and transactions, numbered schema
migrations, and the device/token/event tables every feature reads (:class:`fleet.store.db.FleetDB`)."""
