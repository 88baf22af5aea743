"""A role with one job: grants on prefixes, each wildcard it grants recorded with the reason it is needed.

cdk-nag's AwsSolutions-IAM5 reports every wildcard resource a policy names. A `JobRole` records the
exact wildcard resources it grants (`wildcards`) so that `infra.nag` acknowledges those and nothing
else, on the role's own default policy; statements whose actions have no resource-level permissions
(so must name `*`) live in a separate policy (`no_resource_level`), the only place `Resource::*` is
acknowledged. A wildcard added any other way is an unacknowledged finding and fails synth.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct, IConstruct


def nag_spelling(stack: Stack, value: str) -> str:
    """A resource as cdk-nag writes it in a finding id: `{"Ref": X}` becomes `<X>`."""
    resolved = stack.resolve(value)
    if isinstance(resolved, str):
        return resolved
    parts = resolved.get("Fn::Join", [None, None])[1] if isinstance(resolved, dict) else None
    if not isinstance(parts, list):
        raise ValueError(f"cannot spell {resolved!r} as cdk-nag does: expected a string or an Fn::Join")
    out = []
    for part in parts:
        if isinstance(part, dict) and set(part) == {"Ref"}:
            out.append(f"<{part['Ref']}>")
        elif isinstance(part, str):
            out.append(part)
        else:
            raise ValueError(f"cannot spell {part!r} of {value!r} as cdk-nag does")
    return "".join(out)


class JobRole(Construct):
    """An IAM role assumed by one service for one job, and the wildcards its policies name."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        role_name: str | None,
        assumed_by: iam.IPrincipal,
        description: str,
    ) -> None:
        """Create the role (no managed policies) and its separate policy for resource-less actions."""
        super().__init__(scope, construct_id)
        self.stack = Stack.of(self)
        self.role = iam.Role(
            self, "Role", role_name=role_name, assumed_by=assumed_by, description=description
        )
        self.no_resource_level: iam.Policy | None = None
        self.no_resource_level_reasons: list[str] = []
        # Finding resource (cdk-nag's spelling) -> why this wildcard is needed.
        self.wildcards: dict[str, str] = {}

    @property
    def default_policy(self) -> IConstruct:
        """The role's default policy (created by the first grant)."""
        return self.role.node.find_child("DefaultPolicy")

    def allow(
        self, sid: str, actions: list[str], resources: list[str], **conditions: dict[str, object]
    ) -> None:
        """Add one statement to the role's default policy."""
        self.role.add_to_policy(
            iam.PolicyStatement(sid=sid, actions=actions, resources=resources, conditions=conditions or None)
        )

    def allow_wildcard(
        self, sid: str, actions: list[str], resource: str, reason: str, **conditions: dict[str, object]
    ) -> None:
        """One statement on a resource pattern with a wildcard, recorded with its reason."""
        self.allow(sid, actions, [resource], **conditions)
        self.record(resource, reason)

    def record(self, resource: str, reason: str) -> None:
        """Record a wildcard resource this role is granted, as cdk-nag spells it in a finding."""
        self.wildcards[f"Resource::{nag_spelling(self.stack, resource)}"] = reason

    def read(self, sid: str, bucket: s3.IBucket, prefix: str, reason: str) -> None:
        """GetObject under `prefix` (`*` for the whole bucket), ListBucket on the bucket."""
        self.allow(f"{sid}List", ["s3:ListBucket"], [bucket.bucket_arn])
        self._objects(sid, ["s3:GetObject"], bucket, prefix, reason)

    def write(self, sid: str, bucket: s3.IBucket, prefix: str, reason: str) -> None:
        """PutObject under `prefix`: never DeleteObject*, so a versioned bucket keeps every version."""
        self._objects(sid, ["s3:PutObject", "s3:AbortMultipartUpload"], bucket, prefix, reason)

    def _objects(self, sid: str, actions: list[str], bucket: s3.IBucket, prefix: str, reason: str) -> None:
        self.allow_wildcard(sid, actions, bucket.arn_for_objects(prefix), reason)

    def use_key(self, key: kms.IKey) -> None:
        """Encrypt and decrypt with the project key; grants only for AWS resources (job volumes)."""
        self.allow(
            "KeyUse", ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"], [key.key_arn]
        )
        self.allow(
            "KeyGrantForVolumes",
            ["kms:CreateGrant"],
            [key.key_arn],
            Bool={"kms:GrantIsForAWSResource": "true"},
        )

    def logs(self, group: str, reason: str) -> None:
        """Write to one CloudWatch Logs group (streams are named per job or instance)."""
        resource = self.stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"{group}:*",
            # CloudWatch Logs ARNs separate the resource type with a colon.
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.allow_wildcard(
            "Logs",
            ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resource,
            reason,
        )

    def resourceless(
        self, sid: str, actions: list[str], reason: str, **conditions: dict[str, object]
    ) -> None:
        """Actions without resource-level permissions, on `*`, in the separate policy."""
        if self.no_resource_level is None:
            self.no_resource_level = iam.Policy(self, "NoResourceLevel", roles=[self.role])
        self.no_resource_level.add_statements(
            iam.PolicyStatement(sid=sid, actions=actions, resources=["*"], conditions=conditions or None)
        )
        self.no_resource_level_reasons.append(f"{', '.join(actions)}: {reason}")
