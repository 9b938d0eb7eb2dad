"""Job-type declarations shared by every process."""

from shared.jobtypes.registry import EmptyPayload, JobType, Payload, Registry, declare, load_declarations, registry

__all__ = ["EmptyPayload", "JobType", "Payload", "Registry", "declare", "load_declarations", "registry"]
