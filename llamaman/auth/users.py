"""User accounts: first-run setup, password checks with rate limiting."""
from __future__ import annotations

import time
import uuid

from werkzeug.security import check_password_hash, generate_password_hash

from llamaman.auth.ratelimit import FailureLimiter
from llamaman.errors import Conflict, Invalid, TooManyRequests, Unauthorized
from llamaman.storage.base import Record, UserRepository
from llamaman.validation import get_str

MIN_PASSWORD = 8
MAX_PASSWORD = 1024
# Verified against when the username is unknown, so timing does not reveal which users exist.
_DUMMY_HASH = generate_password_hash("llamaman-timing-equaliser")


class UserService:
    """Creates the first admin and authenticates users."""

    def __init__(self, users: UserRepository, per_client: FailureLimiter, per_user: FailureLimiter) -> None:
        self.users = users
        self.per_client = per_client
        self.per_user = per_user

    def needs_setup(self) -> bool:
        """True while no user account exists."""
        return self.users.count() == 0

    def create_first_admin(self, form: dict) -> Record:
        """Create the admin account; Conflict once any user exists."""
        username, password = _read_credentials(form, check_policy=True)
        user = {
            "id": uuid.uuid4().hex,
            "username": username,
            "password_hash": generate_password_hash(password),
            "role": "admin",
            "created_at": time.time(),
        }
        if not self.users.add(user["id"], user, only_if_empty=True):
            raise Conflict("setup is already complete; log in instead")
        return user

    def authenticate(self, form: dict, client: str) -> Record:
        """Return the user for these credentials, or raise Unauthorized / TooManyRequests."""
        username, password = _read_credentials(form, check_policy=False)
        user_key = username.lower()
        wait = max(self.per_client.retry_after(client), self.per_user.retry_after(user_key))
        if wait > 0:
            raise TooManyRequests("too many failed login attempts; try again later",
                                  retry_after=int(wait) + 1)
        user = self.users.get_by_username(username)
        password_ok = check_password_hash(user["password_hash"] if user else _DUMMY_HASH, password)
        if user is None or not password_ok:
            self.per_client.record_failure(client)
            self.per_user.record_failure(user_key)
            raise Unauthorized("invalid username or password")
        self.per_user.reset(user_key)
        return user

    def get(self, user_id: str) -> Record | None:
        return self.users.get(user_id)


def _read_credentials(form: dict, *, check_policy: bool) -> tuple[str, str]:
    """Read username and password; setup enforces the password policy, login does not."""
    username = get_str(form, "username", required=True, allow_empty=False)
    password = form.get("password")
    low = MIN_PASSWORD if check_policy else 1
    if not isinstance(password, str) or not low <= len(password) <= MAX_PASSWORD:
        if check_policy:
            raise Invalid(f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
        raise Unauthorized("invalid username or password")
    return username, password
