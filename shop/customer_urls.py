"""Customer pages of the shop, included at ``shop/``."""

from django.urls import path

from shop import customer_views

app_name = "store"

urlpatterns = [
    path("", customer_views.catalogue, name="catalogue"),
    path("cart/", customer_views.cart, name="cart"),
    path("cart/add/", customer_views.cart_add, name="cart-add"),
    path("cart/update/", customer_views.cart_update, name="cart-update"),
    path("checkout/", customer_views.checkout, name="checkout"),
    path("orders/", customer_views.orders, name="orders"),
    path("orders/<int:pk>/", customer_views.order, name="order"),
]
