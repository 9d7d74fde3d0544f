"""Log in with operator name and secret; a limited number of tries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
)

from station.errors import AuthError

MAX_TRIES = 3


class LoginDialog(QDialog):
    """`authenticate(name, secret)` returns the operator or raises AuthError (its message is shown
    as it is: specific, without saying which of name or secret was wrong)."""

    def __init__(
        self,
        authenticate: Callable[[str, str], Any],
        *,
        station_name: str,
        max_tries: int = MAX_TRIES,
        parent: Any = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Station {station_name} — log in")
        self.authenticate = authenticate
        self.max_tries = max_tries
        self.failures = 0
        self._refused = ""  # why the last attempt was refused
        self.operator: Any = None
        self.name = QLineEdit()
        self.name.setObjectName("name")
        self.secret = QLineEdit()
        self.secret.setObjectName("secret")
        self.secret.setEchoMode(QLineEdit.EchoMode.Password)
        self.error = QLabel("")
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        self.button = QPushButton("Log in (Enter)")
        self.button.setObjectName("pass")
        self.button.clicked.connect(self.try_login)
        self.secret.returnPressed.connect(self.try_login)
        self.name.returnPressed.connect(self.secret.setFocus)
        title = QLabel(f"STATION {station_name}")
        title.setObjectName("status")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        form = QFormLayout()
        form.addRow("Operator", self.name)
        form.addRow("Secret", self.secret)
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(self.button)
        self.resize(720, 420)

    def try_login(self) -> None:
        name, secret = self.name.text().strip(), self.secret.text()
        if not name or not secret:
            # After a refusal the secret field is empty: keep saying what went wrong and how
            # many tries are left, rather than a generic prompt.
            missing = "operator name" if not name else "secret"
            self.error.setText(
                f"{self._refused} {self.max_tries - self.failures} attempt(s) left: type the "
                f"{missing} again."
                if self._refused
                else "Enter your operator name and secret."
            )
            return
        try:
            self.operator = self.authenticate(name, secret)
        except AuthError as e:
            self.failures += 1
            self.secret.clear()
            left = self.max_tries - self.failures
            if left <= 0:
                self.error.setText(f"{e}. Too many failed attempts: ask your supervisor.")
                self.button.setEnabled(False)
                self.name.setEnabled(False)
                self.secret.setEnabled(False)
                self.reject()
                return
            self._refused = f"{e}."
            self.error.setText(f"{e}. {left} attempt(s) left.")
            return
        self.accept()
