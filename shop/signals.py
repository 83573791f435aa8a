"""Signal receivers of the shop, connected in :class:`shop.apps.ShopConfig`."""

from __future__ import annotations

from shop import services


def merge_cart_at_login(sender, request, user, **kwargs) -> None:
    """The anonymous visitor's cart (kept in the session, which survives the sign-in) joins
    the customer's own cart."""
    session = getattr(request, "session", None)
    if session is not None and services.SESSION_CART_KEY in session:
        services.merge_session_cart(user=user, session=session)
