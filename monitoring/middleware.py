"""Request metrics: latency per route (the URL pattern's name), error rate and 5xx count."""

from __future__ import annotations

import time

from monitoring.metrics import METRICS, track_metric


class RequestMetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        if match is None:  # static files and unknown paths: not an application route
            return response
        route = match.view_name or match.route or "unnamed"
        tags = {"route": route[:200]}
        track_metric(METRICS.API_LATENCY, (time.perf_counter() - started) * 1000.0, tags=tags)
        failed = response.status_code >= 500
        # Rollups average this 0/1 per request into the share of requests that failed.
        track_metric(METRICS.ERROR_RATE, 1.0 if failed else 0.0)
        if failed:
            track_metric(METRICS.HTTP_5XX, 1.0, tags=tags)
        return response
