"""Typed SQLAlchemy models of every table; `Base.metadata` is what migrations are checked against."""

from shared.models.base import Base
from shared.models.console import ConsoleAudit
from shared.models.domain import (
    ProactiveMessage,
    Post,
    PostPublication,
    Proxy,
    ProxyHealthLog,
    SocialAccount,
    TelegramConnection,
    User,
)
from shared.models.platform import (
    Job,
    JobDependency,
    JobExecution,
    JobLog,
    JobMetric,
    Lease,
    Queue,
    QueueMetric,
    Schedule,
    Worker,
)

__all__ = [
    "Base", "ConsoleAudit", "Job", "JobDependency", "JobExecution", "JobLog", "JobMetric", "Lease", "Queue",
    "QueueMetric", "Schedule", "Worker", "ProactiveMessage", "Post", "PostPublication", "Proxy",
    "ProxyHealthLog", "SocialAccount", "TelegramConnection", "User",
]
