"""Masking of secret field values in model diffs (django-auditlog's ``mask_callable``)."""

MASK = "********"


def mask_secret(value: str) -> str:
    """Hide the whole value. auditlog's default keeps half of it, which for a password hash or a
    token hash would still leak part of the secret."""
    return MASK
