"""Local stand-ins for what AWS runs: a moto server, MLflow, Feast's feature server, and their helpers.

Used by the demo, `mlops train local` and the local pipeline run alike, and (the moto server and
its CloudFormation handlers) by the CDK side's local deploy; so it imports no CLI and no room above it.
"""


class StandInError(RuntimeError):
    """A stand-in could not start or answer; the message says why and what to do."""
