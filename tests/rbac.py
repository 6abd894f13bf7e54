"""Kubernetes RBAC, evaluated offline over rendered manifests.

No API server runs here (../shared/ENVIRONMENT.md), so `kubectl auth can-i` is not
available. This follows the RBAC authorizer's documented semantics
(https://kubernetes.io/docs/reference/access-authn-authz/rbac/, and its rule matching in
kubernetes pkg/apis/rbac/v1/evaluation_helpers.go), for resource requests only:

* RBAC is purely additive: a request is allowed when one rule of one role bound to the
  subject matches it; nothing denies.
* A RoleBinding grants its role's rules in the binding's own namespace only, whether it
  refers to a Role (of that namespace) or a ClusterRole. A ClusterRoleBinding grants a
  ClusterRole's rules in every namespace and for cluster-scoped resources.
* A ServiceAccount subject is ``system:serviceaccount:<namespace>:<name>``; a subject
  without a namespace is in the binding's namespace. Group subjects
  ``system:serviceaccounts`` and ``system:serviceaccounts:<namespace>`` match service
  accounts (all, or those of that namespace); ``system:authenticated`` matches everyone
  here.
* A rule matches when its apiGroups, resources, verbs and (if set) resourceNames all do:
  ``*`` in apiGroups, resources or verbs matches anything; a resource is
  ``<resource>`` or ``<resource>/<subresource>``, ``pods`` does NOT cover ``pods/exec``;
  ``*/<subresource>`` matches that subresource of any resource. A rule with resourceNames
  matches only requests that name one of them, so never ``list``, ``watch`` (without a
  name) or ``create`` (the name is not known when the request is authorized).
* A binding whose roleRef points at a role that does not exist grants nothing.

Not modelled (not used by these manifests): aggregated ClusterRoles' aggregationRule,
nonResourceURLs, escalate/bind/impersonate checks, users other than service accounts.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Request:
    """One API request as the authorizer sees it (resource attributes)."""

    verb: str
    group: str  # "" is the core group
    resource: str  # "pods", or "pods/exec" for a subresource
    namespace: str  # "" for a cluster-scoped resource
    name: str = ""

    def __str__(self) -> str:
        what = f"{self.group or 'core'}/{self.resource}"
        where = self.namespace or "(cluster)"
        return f"{self.verb} {what}{' ' + self.name if self.name else ''} in {where}"


@dataclass
class Decision:
    allowed: bool
    # "<Kind>/<role> rule <index> via <BindingKind>/<binding>" for every rule that matched
    because: list[str] = field(default_factory=list)


def service_account(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def _subject_matches(subject: dict, binding_namespace: str, user: str) -> bool:
    kind = subject.get("kind")
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return user == service_account(namespace, subject["name"])
    if kind == "Group":
        parts = user.split(":")
        if subject["name"] == "system:authenticated":
            return True
        if user.startswith("system:serviceaccount:"):
            return subject["name"] in (
                "system:serviceaccounts",
                f"system:serviceaccounts:{parts[2]}",
            )
        return False
    if kind == "User":
        return subject["name"] == user
    raise ValueError(f"unknown subject kind {kind!r}")


def _has(values: list[str], value: str) -> bool:
    return "*" in values or value in values


def _resource_matches(rule_resources: list[str], resource: str) -> bool:
    if "*" in rule_resources or resource in rule_resources:
        return True
    if "/" in resource:
        subresource = resource.split("/", 1)[1]
        return f"*/{subresource}" in rule_resources
    return False


def rule_matches(rule: dict, request: Request) -> bool:
    """One PolicyRule against one request (evaluation_helpers.go RuleAllows)."""
    if not _has(rule.get("verbs", []), request.verb):
        return False
    if not _has(rule.get("apiGroups", []), request.group):
        return False
    if not _resource_matches(rule.get("resources", []), request.resource):
        return False
    names = rule.get("resourceNames") or []
    if names:
        return bool(request.name) and request.name in names
    return True


class Policy:
    """The roles and bindings among ``docs`` (rendered manifests)."""

    def __init__(self, docs: list[dict]):
        self.roles: dict[tuple[str, str, str], dict] = {}
        self.bindings: list[dict] = []
        for doc in docs:
            kind = doc.get("kind")
            meta = doc.get("metadata", {})
            if kind == "Role":
                self.roles[("Role", meta.get("namespace", ""), meta["name"])] = doc
            elif kind == "ClusterRole":
                self.roles[("ClusterRole", "", meta["name"])] = doc
            elif kind in ("RoleBinding", "ClusterRoleBinding"):
                self.bindings.append(doc)

    def _role(self, binding: dict) -> dict | None:
        ref = binding["roleRef"]
        if ref["kind"] == "ClusterRole":
            return self.roles.get(("ClusterRole", "", ref["name"]))
        # a RoleBinding's Role is in the binding's namespace
        return self.roles.get(("Role", binding["metadata"].get("namespace", ""), ref["name"]))

    def decide(self, user: str, request: Request) -> Decision:
        decision = Decision(False)
        for binding in self.bindings:
            namespace = binding["metadata"].get("namespace", "")
            # a RoleBinding never grants outside its namespace, nor cluster-scoped access
            if binding["kind"] == "RoleBinding" and (
                not request.namespace or request.namespace != namespace
            ):
                continue
            if not any(_subject_matches(s, namespace, user) for s in binding.get("subjects", [])):
                continue
            role = self._role(binding)
            if role is None:
                continue
            for index, rule in enumerate(role.get("rules") or []):
                if rule_matches(rule, request):
                    decision.allowed = True
                    decision.because.append(
                        f"{role['kind']}/{role['metadata']['name']} rule {index} via "
                        f"{binding['kind']}/{binding['metadata']['name']}"
                    )
        return decision

    def allowed(self, user: str, request: Request) -> bool:
        return self.decide(user, request).allowed

    def grants(self, user: str) -> list[tuple[str, dict, dict]]:
        """(namespace or "*", role, rule) for every rule bound to ``user``."""
        out = []
        for binding in self.bindings:
            namespace = binding["metadata"].get("namespace", "")
            if not any(_subject_matches(s, namespace, user) for s in binding.get("subjects", [])):
                continue
            role = self._role(binding)
            for rule in (role or {}).get("rules") or []:
                out.append((namespace if binding["kind"] == "RoleBinding" else "*", role, rule))
        return out
