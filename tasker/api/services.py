"""What the API's routes use: the orchestrator, the read side, the broker, the waiter."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tasker.api.auth import Authenticator
from tasker.api.waiter import FinishedWaiter
from tasker.config import Config
from tasker.messaging.broker import Broker
from tasker.state.db import Database
from tasker.state.dlq import DeadLetterRepository
from tasker.state.operations import Operations
from tasker.state.reads import ReadModel
from tasker.state.repository import StateRepository


@dataclass
class ApiServices:
    config: Config
    database: Database
    broker: Broker
    repository: StateRepository
    # The running orchestrator (`create_task`); typed loosely to keep actors out of here.
    orchestrator: Any
    reads: ReadModel = field(init=False)
    waiter: FinishedWaiter = field(init=False)
    authenticator: Authenticator = field(init=False)
    started_at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.reads = ReadModel(self.database)
        self.waiter = FinishedWaiter(self.database.url)
        self.authenticator = Authenticator(self.config)

    def operations(self) -> Operations:
        return Operations(self.database)

    def dead_letters(self) -> DeadLetterRepository:
        return DeadLetterRepository(self.database)
