from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "shop"
    verbose_name = "Shop"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from auditlog.registry import auditlog
        from django.contrib.auth.signals import user_logged_in

        from adminsite.dashboard import Panel, register_panel
        from shop import models, signals

        # Field diffs for the audit trail, for the rows staff change by hand. Orders are not
        # registered: every change of an order is an explicit ``order.*`` entry with its
        # changes (services.OrderChanges), and batches of Stripe events update orders in bulk,
        # which model signals would not see anyway. Products and prices change only from
        # Stripe: what changed them is kept as the Stripe event (WebhookEvent, with its
        # payload) or the sync run (CatalogueSync).
        auditlog.register(models.Refund, exclude_fields=["updated_at"])

        user_logged_in.connect(signals.merge_cart_at_login, dispatch_uid="shop.merge_cart")

        def panel_context(request) -> dict:
            from shop.queries import panel_context

            return panel_context()

        register_panel(
            Panel(
                key="shop",
                title="Shop",
                permission="shop.view_order",
                template="shop/panels/shop.html",
                context=panel_context,
                link="/admin/shop/",
                icon="cart",
            )
        )
