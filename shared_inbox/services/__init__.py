"""The operations views, CLI, polling and automation share: one place per business rule."""
