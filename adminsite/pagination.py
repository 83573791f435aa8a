from rest_framework.pagination import PageNumberPagination


class StandardPagination(PageNumberPagination):
    """``{"count", "next", "previous", "results"}``; ``page`` and ``pageSize`` (max 500)."""

    page_size = 50
    page_size_query_param = "pageSize"
    max_page_size = 500
