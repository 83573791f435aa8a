"""The console's own API endpoints: who the caller is, for token checks and clients."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import api_view
from rest_framework.response import Response

from adminsite.models import ApiToken


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    email = serializers.CharField(allow_blank=True)
    is_staff = serializers.BooleanField()
    roles = serializers.ListField(
        child=serializers.CharField(), help_text="Names of the user's groups."
    )
    auth_method = serializers.ChoiceField(choices=["token", "session"])


@extend_schema(summary="The authenticated caller", responses=MeSerializer, tags=["console"])
@api_view(["GET"])
def me(request):
    user = request.user
    data = {
        "id": user.pk,
        "username": user.get_username(),
        "email": user.email,
        "is_staff": user.is_staff,
        "roles": sorted(user.groups.values_list("name", flat=True)),
        "auth_method": "token" if isinstance(request.auth, ApiToken) else "session",
    }
    return Response(MeSerializer(data).data)
