"""HTTP plumbing shared by every feature: errors, body and query parsing, middleware, periodic tasks, app keys."""
