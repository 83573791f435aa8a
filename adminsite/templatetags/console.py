"""Small template helpers for the console: icons from the sprite, labels for codes, initials."""

from __future__ import annotations

from functools import lru_cache

from django import template
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.templatetags.static import static
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.html import format_html

register = template.Library()


@lru_cache(maxsize=256)
def icon_html(name: str, css_class: str = "") -> str:
    """The markup of one icon, built once per process per (name, class): pages show the same
    few icons many times, and resolving the sprite's static URL is the costly part."""
    classes = f"icon {css_class}".strip()
    return format_html(
        '<svg class="{}" aria-hidden="true" focusable="false"><use href="{}#{}"></use></svg>',
        classes,
        static("adminsite/icons.svg"),
        name,
    )


@lru_cache(maxsize=256)
def _fixed_url(name: str, prefix: str, urlconf, current_app) -> str:
    return reverse(name, urlconf=urlconf, current_app=current_app)


@receiver(setting_changed)
def _forget_icons(*, setting, **kwargs) -> None:
    # The sprite's URL follows the static files settings (tests override them).
    if setting in {"STATIC_URL", "STORAGES", "FORCE_SCRIPT_NAME"}:
        icon_html.cache_clear()
    if setting in {"ROOT_URLCONF", "FORCE_SCRIPT_NAME"}:
        _fixed_url.cache_clear()


@register.simple_tag(takes_context=True)
def fixed_url(context, name) -> str:
    """``{% fixed_url "admin:index" %}``: what ``{% url "admin:index" %}`` gives for a URL
    without arguments, reversed once per process (per script prefix, URL configuration and
    current app, as the url tag would use them): the console shell links to the same few
    pages on every page."""
    request = context.get("request")
    current_app = getattr(request, "current_app", None)
    if current_app is None:
        current_app = getattr(getattr(request, "resolver_match", None), "namespace", None)
    return _fixed_url(str(name), get_script_prefix(), get_urlconf(), current_app)


@register.simple_tag
def icon(name, css_class="") -> str:
    """An icon from static/adminsite/icons.svg, coloured like the surrounding text."""
    return icon_html(str(name), str(css_class))


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
