"""The tickets JSON API (DESIGN.md): thin views, validation in serializers, writes via services.

    POST  /api/admin/support/tickets                 create (201 with the ticket)
    GET   /api/admin/support/tickets                 list: filters, ordering, pagination
    GET   /api/admin/support/tickets/<id>            read
    PATCH /api/admin/support/tickets/<id>            status, priority, category, assignee, subject, tags
    GET   /api/admin/support/tickets/<id>/comments   list
    POST  /api/admin/support/tickets/<id>/comments   add (comment, isInternal, parentId)

Staff need the ticket permissions of their role. Customers (signed-in non-staff users) may
open tickets for themselves, read their own and add public comments: another customer's
ticket answers 404, never 403, and internal notes never appear in their JSON.
"""

from __future__ import annotations

from functools import partial

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.paginator import Paginator as DjangoPaginator
from django.db import transaction
from django.http import QueryDict
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.decorators import api_view, permission_classes, renderer_classes
from rest_framework.pagination import PageNumberPagination
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.response import Response

from adminsite.api import CamelCased, CamelCasedRenderer, iso
from adminsite.permissions import preload_permissions
from adminsite.users import user_label
from tickets import queries, services
from tickets.filters import DEFAULT_API_ORDERING, ORDERINGS, FilterError, parse_filters
from tickets.models import (
    BODY_MAX_LENGTH,
    MAX_TAGS,
    SUBJECT_MAX_LENGTH,
    TAG_MAX_LENGTH,
    Category,
    Channel,
    Comment,
    Priority,
    Status,
)

User = get_user_model()
MAX_PAGE_SIZE = 500


# --- permissions ---------------------------------------------------------------------------


def ticket_access(**perms_by_method: str) -> type[BasePermission]:
    """Signed-in active users; staff must also hold the Django permission named for the
    request method. Customers pass here and are confined to their own tickets by
    ``queries.ticket_for`` / ``Ticket.objects.visible_to``."""

    class TicketAccess(BasePermission):
        message = "You do not have permission to perform this action."

        def has_permission(self, request, view):
            user = request.user
            if not (user and user.is_authenticated and user.is_active):
                return False
            if not user.is_staff:
                return True
            perm = perms_by_method.get(request.method) or perms_by_method.get("GET")
            preload_permissions(user)
            return user.has_perm(perm)

    return TicketAccess


# --- serializers: input --------------------------------------------------------------------


class StrictSerializer(serializers.Serializer):
    """Rejects keys it does not know, naming each, instead of ignoring a typo."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                known = ", ".join(sorted(self.fields))
                raise serializers.ValidationError(
                    {name: [f"Unknown field. Allowed fields: {known}."] for name in unknown}
                )
        return super().to_internal_value(data)


class ChoiceOrError(serializers.CharField):
    """A vocabulary field whose error names the allowed values."""

    def __init__(self, *, choices, noun: str, **kwargs):
        self.allowed = list(choices)
        self.noun = noun
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if value not in self.allowed:
            raise serializers.ValidationError(
                f"Unknown {self.noun} {value!r}. Allowed values: {', '.join(self.allowed)}."
            )
        return value


class CategoryField(serializers.CharField):
    """A category slug; the error lists the categories in use."""

    def to_internal_value(self, data):
        slug = super().to_internal_value(data)
        categories = {c.slug: c for c in queries.category_choices()}
        if slug not in categories:
            raise serializers.ValidationError(
                f"Unknown category {slug!r}. Allowed values: {', '.join(categories)}."
            )
        return categories[slug]


@extend_schema_field(
    {"oneOf": [{"type": "integer"}, {"type": "string", "enum": ["me"]}], "nullable": True}
)
class AssigneeField(serializers.Field):
    """A user id, ``"me"``, or null to unassign."""

    default_error_messages = {"invalid": 'Use a staff user\'s id, "me", or null to unassign.'}

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_null", True)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        request = self.context["request"]
        if not request.user.is_staff:
            raise serializers.ValidationError("Only staff can set this field.")
        if data == "me":
            user = request.user
        else:
            if isinstance(data, bool):
                self.fail("invalid")
            try:
                pk = int(data)
            except (TypeError, ValueError):
                self.fail("invalid")
            if not 0 < pk < 2**63:
                self.fail("invalid")
            user = User.objects.filter(pk=pk).first()
            if user is None:
                raise serializers.ValidationError(f"No user with id {pk}.")
        if not services.is_assignable(user):
            raise serializers.ValidationError(
                f"User {user.pk} is not an active staff member who works tickets."
            )
        return user

    def to_representation(self, value):
        return value.pk if value else None


def _tags_field():
    return serializers.ListField(
        child=serializers.CharField(max_length=TAG_MAX_LENGTH), max_length=MAX_TAGS, required=False
    )


def _validate_tags(value):
    try:
        return services.clean_tags(value)
    except DjangoValidationError as error:
        raise serializers.ValidationError(error.message_dict["tags"]) from None


class TicketCreateSerializer(StrictSerializer):
    subject = serializers.CharField(max_length=SUBJECT_MAX_LENGTH)
    description = serializers.CharField(max_length=BODY_MAX_LENGTH)
    category = CategoryField(required=False, help_text="A category slug; default 'other'.")
    priority = ChoiceOrError(
        choices=Priority.values, noun="priority", required=False, default=Priority.NORMAL
    )
    tags = _tags_field()
    requester_email = serializers.EmailField(
        required=False, help_text="Staff only: the customer's email."
    )
    requester_id = serializers.IntegerField(
        required=False, min_value=1, help_text="Staff only: the customer's id."
    )
    assignee = AssigneeField(required=False, help_text='Staff only: a staff user\'s id or "me".')

    def validate_tags(self, value):
        return _validate_tags(value)

    def validate(self, attrs):
        user = self.context["request"].user
        by_email, by_id = attrs.pop("requester_email", None), attrs.pop("requester_id", None)
        if not user.is_staff:
            forbidden = {
                "requester_email": by_email is not None,
                "requester_id": by_id is not None,
            }
            errors = {
                name: ["Only staff can set this field."] for name, sent in forbidden.items() if sent
            }
            if errors:
                raise serializers.ValidationError(errors)
            attrs["requester"] = user
        else:
            if by_email is None and by_id is None:
                raise serializers.ValidationError(
                    {
                        "requester_email": [
                            "Staff creating a ticket must name the customer: requesterEmail or requesterId."
                        ]
                    }
                )
            if by_email is not None and by_id is not None:
                raise serializers.ValidationError(
                    {"requester_id": ["Give requesterEmail or requesterId, not both."]}
                )
            if by_email is not None:
                matches = list(
                    User.objects.filter(email__iexact=by_email, is_staff=False, is_active=True)[:2]
                )
                if len(matches) != 1:
                    reason = (
                        "No active customer has" if not matches else "More than one customer has"
                    )
                    raise serializers.ValidationError(
                        {"requester_email": [f"{reason} the email {by_email}."]}
                    )
                attrs["requester"] = matches[0]
            else:
                requester = User.objects.filter(pk=by_id, is_staff=False, is_active=True).first()
                if requester is None:
                    raise serializers.ValidationError(
                        {"requester_id": [f"No active customer with id {by_id}."]}
                    )
                attrs["requester"] = requester
        if "category" not in attrs:
            attrs["category"] = Category.objects.filter(slug="other", is_active=True).first()
            if attrs["category"] is None:
                raise serializers.ValidationError({"category": ["This field is required."]})
        return attrs


class TicketUpdateSerializer(StrictSerializer):
    status = ChoiceOrError(choices=Status.values, noun="status", required=False)
    priority = ChoiceOrError(choices=Priority.values, noun="priority", required=False)
    category = CategoryField(required=False)
    assignee = AssigneeField(required=False)
    subject = serializers.CharField(max_length=SUBJECT_MAX_LENGTH, required=False)
    tags = _tags_field()

    def validate_tags(self, value):
        return _validate_tags(value)

    def validate(self, attrs):
        if not attrs:
            names = ", ".join(sorted(self.fields))
            raise serializers.ValidationError(
                {"non_field_errors": [f"Nothing to change: send at least one of {names}."]}
            )
        return attrs


class CommentCreateSerializer(StrictSerializer):
    comment = serializers.CharField(max_length=BODY_MAX_LENGTH)
    is_internal = serializers.BooleanField(required=False, default=False)
    parent_id = serializers.IntegerField(required=False, allow_null=True, min_value=1)


# --- serializers: output -------------------------------------------------------------------


class UserSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.SerializerMethodField()
    email = serializers.EmailField()

    def get_name(self, user) -> str:
        return user_label(user)


class StaffNameSerializer(serializers.Serializer):
    """What a customer sees of the agent on their ticket: a name."""

    name = serializers.SerializerMethodField()

    def get_name(self, user) -> str:
        return user_label(user)


class TicketSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    ticket_number = serializers.IntegerField()
    subject = serializers.CharField()
    description = serializers.CharField()
    category = serializers.CharField(source="category.slug")
    category_name = serializers.CharField(source="category.name")
    priority = serializers.CharField()
    status = serializers.CharField()
    channel = serializers.CharField()
    requester = UserSummarySerializer()
    assignee = UserSummarySerializer(allow_null=True)
    tags = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    first_response_due_at = serializers.DateTimeField(allow_null=True)
    resolution_due_at = serializers.DateTimeField(allow_null=True)
    first_responded_at = serializers.DateTimeField(allow_null=True)
    resolved_at = serializers.DateTimeField(allow_null=True)
    closed_at = serializers.DateTimeField(allow_null=True)
    sla_breached = serializers.BooleanField()
    merged_into_id = serializers.IntegerField(allow_null=True)


class CustomerTicketSerializer(serializers.Serializer):
    """A customer's view of their ticket: no tags, SLA internals or staff emails."""

    id = serializers.IntegerField()
    ticket_number = serializers.IntegerField()
    subject = serializers.CharField()
    description = serializers.CharField()
    category = serializers.CharField(source="category.slug")
    category_name = serializers.CharField(source="category.name")
    priority = serializers.CharField()
    status = serializers.CharField()
    channel = serializers.CharField()
    requester = UserSummarySerializer()
    assignee = StaffNameSerializer(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    first_responded_at = serializers.DateTimeField(allow_null=True)
    resolved_at = serializers.DateTimeField(allow_null=True)
    closed_at = serializers.DateTimeField(allow_null=True)
    merged_into_id = serializers.IntegerField(allow_null=True)


class CommentAuthorSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.SerializerMethodField()
    is_staff = serializers.BooleanField()

    def get_name(self, user) -> str:
        return user_label(user)


class CommentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    ticket_id = serializers.IntegerField()
    comment = serializers.CharField(source="body")
    is_internal = serializers.BooleanField()
    parent_id = serializers.IntegerField(allow_null=True)
    author = CommentAuthorSerializer()
    created_at = serializers.DateTimeField()


# The serializers above document the JSON (OpenAPI schema); the functions below write it.
# Building plain dicts with camelCase keys is several times faster than DRF field objects
# plus the camel-case renderer's walk over every key, which is most of a list page's time.
# tests/tickets/test_api.py checks both describe the same keys.


# What a ticket's JSON is made of, as ``QuerySet.values()`` names it. The list reads these
# columns straight into dicts (no model instances: most of a page's time otherwise); the
# detail view maps its model instance onto the same names, so one function writes both.
TICKET_COLUMNS = (
    "id", "ticket_number", "subject", "description", "category__slug", "category__name",
    "priority", "status", "channel", "tags", "created_at", "updated_at",
    "first_response_due_at", "resolution_due_at", "first_responded_at", "resolved_at",
    "closed_at", "sla_breached", "merged_into_id",
    "requester_id", "requester__first_name", "requester__last_name", "requester__username", "requester__email",
    "assignee_id", "assignee__first_name", "assignee__last_name", "assignee__username", "assignee__email",
)  # fmt: skip
_USER_PARTS = ("first_name", "last_name", "username", "email")


def ticket_columns(ticket) -> dict:
    """A ticket instance (with category, requester and assignee loaded) as TICKET_COLUMNS."""
    row = {name: getattr(ticket, name) for name in TICKET_COLUMNS if "__" not in name}
    row["category__slug"], row["category__name"] = ticket.category.slug, ticket.category.name
    for relation in ("requester", "assignee"):
        user = getattr(ticket, relation)
        for part in _USER_PARTS:
            row[f"{relation}__{part}"] = getattr(user, part) if user is not None else None
    return row


def _user_from(row, relation: str) -> dict | None:
    pk = row[f"{relation}_id"]
    if pk is None:
        return None
    full = f"{row[f'{relation}__first_name']} {row[f'{relation}__last_name']}".strip()
    return {
        "id": pk,
        "name": full or row[f"{relation}__username"],
        "email": row[f"{relation}__email"],
    }


def ticket_json(row, *, staff: bool) -> dict:
    """The JSON of one ticket from its TICKET_COLUMNS (see ``ticket_columns``)."""
    assignee = _user_from(row, "assignee")
    data = {
        "id": row["id"],
        "ticketNumber": row["ticket_number"],
        "subject": row["subject"],
        "description": row["description"],
        "category": row["category__slug"],
        "categoryName": row["category__name"],
        "priority": row["priority"],
        "status": row["status"],
        "channel": row["channel"],
        "requester": _user_from(row, "requester"),
    }
    if staff:
        data.update(
            assignee=assignee,
            tags=list(row["tags"]),
            createdAt=iso(row["created_at"]),
            updatedAt=iso(row["updated_at"]),
            firstResponseDueAt=iso(row["first_response_due_at"]),
            resolutionDueAt=iso(row["resolution_due_at"]),
            firstRespondedAt=iso(row["first_responded_at"]),
            resolvedAt=iso(row["resolved_at"]),
            closedAt=iso(row["closed_at"]),
            slaBreached=row["sla_breached"],
            mergedIntoId=row["merged_into_id"],
        )
    else:
        data.update(
            assignee={"name": assignee["name"]} if assignee else None,
            createdAt=iso(row["created_at"]),
            updatedAt=iso(row["updated_at"]),
            firstRespondedAt=iso(row["first_responded_at"]),
            resolvedAt=iso(row["resolved_at"]),
            closedAt=iso(row["closed_at"]),
            mergedIntoId=row["merged_into_id"],
        )
    return data


def comment_json(comment) -> dict:
    author = comment.author
    return {
        "id": comment.pk,
        "ticketId": comment.ticket_id,
        "comment": comment.body,
        "isInternal": comment.is_internal,
        "parentId": comment.parent_id,
        "author": {"id": author.pk, "name": user_label(author), "isStaff": author.is_staff},
        "createdAt": iso(comment.created_at),
    }


def _ticket_response(ticket, user, **kwargs) -> Response:
    return Response(CamelCased(ticket_json(ticket_columns(ticket), staff=user.is_staff)), **kwargs)


# --- helpers -------------------------------------------------------------------------------


class _TicketPaginator(DjangoPaginator):
    """Told its count up front (from the facet counters) instead of running COUNT(*), and
    slicing deep pages through ``queries.page_slice`` (ids first, then the rows)."""

    def __init__(
        self, object_list, per_page, *, count: int | None = None, id_source=None, **kwargs
    ):
        super().__init__(object_list, per_page, **kwargs)
        self.id_source = id_source
        if count is not None:
            self.__dict__["count"] = count  # the cached_property's slot

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = min(bottom + self.per_page, self.count)
        rows = queries.page_slice(self.object_list, bottom, top, id_source=self.id_source)
        return self._get_page(rows, number, self)


class _Pagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "pageSize"
    max_page_size = MAX_PAGE_SIZE

    def __init__(self, *, count: int | None = None, id_source=None):
        self.django_paginator_class = partial(_TicketPaginator, count=count, id_source=id_source)

    def response(self, results: list[dict]) -> Response:
        return Response(
            CamelCased(
                count=self.page.paginator.count,
                next=self.get_next_link(),
                previous=self.get_previous_link(),
                results=results,
            )
        )


def _page_params(params: QueryDict) -> None:
    """400 for a page or pageSize that is not a positive number (DRF would ignore it)."""
    errors = {}
    for name, limit in (("page", None), ("pageSize", MAX_PAGE_SIZE)):
        value = params.get(name)
        if value is None:
            continue
        if not value.isdigit() or int(value) < 1 or (limit and int(value) > limit):
            errors[name] = [f"Use a whole number from 1{f' to {limit}' if limit else ''}."]
    if errors:
        raise exceptions.ValidationError(errors)


def _call(service, **kwargs):
    """Run a service, turning its rule errors into API errors (400 naming the field, 403)."""
    try:
        return service(**kwargs)
    except DjangoValidationError as error:
        if hasattr(error, "error_dict"):
            raise exceptions.ValidationError(error.message_dict) from None
        raise exceptions.ValidationError({"non_field_errors": error.messages}) from None
    except DjangoPermissionDenied as error:
        raise exceptions.PermissionDenied(str(error) or None) from None


def _validated(serializer_class, request, **context):
    serializer = serializer_class(data=request.data, context={"request": request, **context})
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# --- views ---------------------------------------------------------------------------------

LIST_PARAMETERS = [
    OpenApiParameter(
        "status",
        str,
        description=f"Comma-separated: {', '.join(Status.values)}, or active / all (default all).",
    ),
    OpenApiParameter(
        "priority", str, description=f"Comma-separated: {', '.join(Priority.values)}."
    ),
    OpenApiParameter("category", str, description="Comma-separated category slugs."),
    OpenApiParameter("assignee", str, description="Staff only: me, none, or a user id."),
    OpenApiParameter("breached", bool, description="Staff only: SLA breached or not."),
    OpenApiParameter(
        "search", str, description="Staff only: full text over subject, description and comments."
    ),
    OpenApiParameter("tag", str, description="Staff only: tickets carrying every given tag."),
    OpenApiParameter("requester", int, description="Staff only: the customer's user id."),
    OpenApiParameter(
        "createdAfter", OpenApiTypes.DATETIME, description="Date or date-time, inclusive."
    ),
    OpenApiParameter(
        "createdBefore",
        OpenApiTypes.DATETIME,
        description="Date (inclusive) or date-time (exclusive).",
    ),
    OpenApiParameter(
        "ordering",
        str,
        description=f"One of {', '.join(ORDERINGS)}; default {DEFAULT_API_ORDERING}.",
    ),
    OpenApiParameter("page", int),
    OpenApiParameter("pageSize", int, description=f"1 to {MAX_PAGE_SIZE}, default 50."),
]


@extend_schema(
    methods=["GET"],
    summary="List tickets",
    parameters=LIST_PARAMETERS,
    responses=TicketSerializer(many=True),
    tags=["support"],
)
@extend_schema(
    methods=["POST"],
    summary="Create a ticket",
    request=TicketCreateSerializer,
    responses={201: TicketSerializer},
    tags=["support"],
)
@api_view(["GET", "POST"])
@renderer_classes([CamelCasedRenderer])
@permission_classes([ticket_access(GET="tickets.view_ticket", POST="tickets.add_ticket")])
def tickets_collection(request):
    if request.method == "POST":
        data = _validated(TicketCreateSerializer, request)
        ticket = _call(
            services.create_ticket,
            actor=request.user,
            subject=data["subject"],
            description=data["description"],
            category=data["category"],
            priority=data["priority"],
            requester=data["requester"],
            tags=data.get("tags", ()),
            assignee=data.get("assignee"),
            channel=Channel.API,
        )
        ticket = queries.ticket_for(request.user, ticket.pk)
        return _ticket_response(ticket, request.user, status=status.HTTP_201_CREATED)

    _page_params(request.query_params)
    try:
        filters = parse_filters(
            request.query_params,
            user=request.user,
            default_statuses=tuple(Status.values),
            default_ordering=DEFAULT_API_ORDERING,
            extra_params=frozenset({"page", "pageSize"}),
        )
    except FilterError as error:
        raise exceptions.ValidationError(
            {name: [message] for name, message in error.errors.items()}
        ) from None
    rows = queries.ticket_queue(user=request.user, filters=filters).values(*TICKET_COLUMNS)
    paginator = _Pagination(
        count=queries.ticket_count(user=request.user, filters=filters),
        id_source=queries.ticket_queue_ids(user=request.user, filters=filters),
    )
    page = paginator.paginate_queryset(rows, request)
    staff = request.user.is_staff
    return paginator.response([ticket_json(row, staff=staff) for row in page])


@extend_schema(
    methods=["GET"], summary="Read a ticket", responses=TicketSerializer, tags=["support"]
)
@extend_schema(
    methods=["PATCH"],
    summary="Update a ticket",
    request=TicketUpdateSerializer,
    responses=TicketSerializer,
    tags=["support"],
)
@api_view(["GET", "PATCH"])
@renderer_classes([CamelCasedRenderer])
@permission_classes([ticket_access(GET="tickets.view_ticket", PATCH="tickets.change_ticket")])
def ticket_detail(request, pk):
    ticket = queries.ticket_for(request.user, pk)
    if request.method in SAFE_METHODS:
        return _ticket_response(ticket, request.user)
    if not request.user.is_staff:
        raise exceptions.PermissionDenied("Customers cannot change tickets; add a comment instead.")
    data = _validated(TicketUpdateSerializer, request)
    actor = request.user
    # One transaction: if any part is refused (say a forbidden status change after a valid
    # priority change), nothing of the PATCH is saved.
    with transaction.atomic():
        if {"subject", "priority", "category", "tags"} & set(data):
            ticket = _call(
                services.update_ticket,
                actor=actor,
                ticket=ticket,
                subject=data.get("subject"),
                priority=data.get("priority"),
                category=data.get("category"),
                tags=data.get("tags"),
            )
        if "assignee" in data:
            ticket = _call(
                services.assign_ticket, actor=actor, ticket=ticket, assignee=data["assignee"]
            )
        if "status" in data:
            ticket = _call(
                services.change_status, actor=actor, ticket=ticket, status=data["status"]
            )
    ticket = queries.ticket_for(request.user, ticket.pk)
    return _ticket_response(ticket, request.user)


@extend_schema(
    methods=["GET"],
    summary="List a ticket's comments",
    responses=CommentSerializer(many=True),
    parameters=[OpenApiParameter("page", int), OpenApiParameter("pageSize", int)],
    tags=["support"],
)
@extend_schema(
    methods=["POST"],
    summary="Add a comment or internal note",
    request=CommentCreateSerializer,
    responses={201: CommentSerializer},
    tags=["support"],
)
@api_view(["GET", "POST"])
@renderer_classes([CamelCasedRenderer])
@permission_classes([ticket_access(GET="tickets.view_comment", POST="tickets.add_comment")])
def ticket_comments(request, pk):
    ticket = queries.ticket_for(request.user, pk)
    staff = request.user.is_staff
    if request.method == "POST":
        data = _validated(CommentCreateSerializer, request)
        if data["is_internal"] and not staff:
            raise exceptions.ValidationError(
                {"is_internal": ["Only staff can add internal notes."]}
            )
        parent = None
        if data.get("parent_id"):
            parent = Comment.objects.filter(pk=data["parent_id"], ticket_id=ticket.pk).first()
            if parent is None or (parent.is_internal and not staff):
                raise exceptions.ValidationError(
                    {"parent_id": [f"No comment {data['parent_id']} on this ticket."]}
                )
        comment = _call(
            services.add_comment,
            actor=request.user,
            ticket=ticket,
            body=data["comment"],
            is_internal=data["is_internal"],
            parent=parent,
        )
        comment = Comment.objects.select_related("author").get(pk=comment.pk)
        return Response(CamelCased(comment_json(comment)), status=status.HTTP_201_CREATED)

    _page_params(request.query_params)
    unknown = sorted(set(request.query_params) - {"page", "pageSize"})
    if unknown:
        raise exceptions.ValidationError(
            {name: ["Unknown parameter. Allowed parameters: page, pageSize."] for name in unknown}
        )
    queryset = (
        Comment.objects.filter(ticket_id=ticket.pk)
        .select_related("author")
        .only(
            "id",
            "ticket_id",
            "body",
            "is_internal",
            "parent_id",
            "created_at",
            *(f"author__{name}" for name in queries.USER_FIELDS),
        )
        .order_by("created_at", "id")
    )
    if not staff:
        queryset = queryset.filter(is_internal=False)
    paginator = _Pagination()
    page = paginator.paginate_queryset(queryset, request)
    return paginator.response([comment_json(comment) for comment in page])
