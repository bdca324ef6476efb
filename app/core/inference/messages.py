"""Chat messages as immutable values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["system", "user", "assistant"]
ROLES: tuple[Role, ...] = ("system", "user", "assistant")


@dataclass(frozen=True)
class Message:
    """One message of a conversation, as the model sees it."""

    role: Role
    content: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown role {self.role!r}; expected one of {', '.join(ROLES)}")

    def as_dict(self) -> dict[str, str]:
        """OpenAI-style {"role", "content"} mapping, as chat templates expect."""
        return {"role": self.role, "content": self.content}
