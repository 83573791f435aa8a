"""Small template helpers for the console: icons from the sprite, labels for codes, initials."""

from __future__ import annotations

from django import template
from django.templatetags.static import static
from django.utils.html import format_html

register = template.Library()


@register.simple_tag
def icon(name: str, css_class: str = "") -> str:
    """An icon from static/adminsite/icons.svg, coloured like the surrounding text."""
    classes = f"icon {css_class}".strip()
    return format_html(
        '<svg class="{}" aria-hidden="true" focusable="false"><use href="{}#{}"></use></svg>',
        classes,
        static("adminsite/icons.svg"),
        name,
    )


@register.filter
def code_label(value) -> str:
    """``on_hold`` -> ``On hold``: a vocabulary code as words, for badges without a label."""
    text = str(value or "").replace("_", " ").strip()
    return text[:1].upper() + text[1:]


@register.filter
def initials(user) -> str:
    """Up to two letters for the avatar: first and last name, else the username."""
    first = (getattr(user, "first_name", "") or "").strip()
    last = (getattr(user, "last_name", "") or "").strip()
    if first or last:
        return ((first[:1] + last[:1]) or first[:2]).upper()
    return (user.get_username()[:2] if hasattr(user, "get_username") else str(user)[:2]).upper()


@register.filter
def elided_pages(page):
    """Page numbers around the current one, with the paginator's ELLIPSIS for gaps."""
    return page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1)
