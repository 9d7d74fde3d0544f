"""What each role may do: the one role table, used by the station's commands and windows and by
review (which may not import the station). An action is named, never a role compared by hand."""

from __future__ import annotations

from db.models import Operator, Role

# action -> roles allowed
PERMISSIONS: dict[str, frozenset[Role]] = {
    "inspect": frozenset({Role.inspector, Role.qa_lead, Role.engineer}),
    "review": frozenset({Role.qa_lead, Role.engineer}),
    "adjudicate": frozenset({Role.qa_lead}),
    "register_golden": frozenset({Role.qa_lead}),
    "set_level": frozenset({Role.engineer}),
    "override_gate": frozenset({Role.engineer}),
    "deploy_model": frozenset({Role.engineer}),
    "set_thresholds": frozenset({Role.engineer}),
    "manage_users": frozenset({Role.engineer}),
}


def allowed(operator: Operator, action: str) -> bool:
    """Whether `operator` (active) may do `action`; an unknown action is a programming error."""
    if action not in PERMISSIONS:
        raise KeyError(f"unknown action {action!r}; known: {', '.join(sorted(PERMISSIONS))}")
    return bool(operator.active) and Role(operator.role) in PERMISSIONS[action]


def refusal(operator: Operator, action: str) -> str:
    """Why `operator` may not do `action`, in words (for the caller's own error)."""
    roles = " or ".join(sorted(r.value for r in PERMISSIONS[action]))
    if not operator.active:
        return f"{operator.name} is deactivated; {action.replace('_', ' ')} needs an active {roles}"
    return (
        f"{operator.name} is {Role(operator.role).value}; {action.replace('_', ' ')} needs {roles}"
    )
