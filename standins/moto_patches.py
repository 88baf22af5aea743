"""Patches for what moto's CloudFormation mishandles in resource types it does know.

Bucket configuration beyond encryption and tags, bucket-policy Conditions, KMS key template shapes,
outputs and exports of stacks deployed through change sets, and template-given SageMaker names.
Each replaces a moto internal named in `standins.moto_internals.MOTO_INTERNALS`.
"""

from __future__ import annotations

import json
from typing import Any


def _props(cloudformation_json: dict[str, Any]) -> dict[str, Any]:
    props = cloudformation_json.get("Properties", {})
    assert isinstance(props, dict)
    return props


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule in the shape moto's S3 API parser produces."""
    out: dict[str, Any] = {
        "ID": rule.get("Id"),
        "Status": rule["Status"],
        "Filter": {"Prefix": rule.get("Prefix", "")},
    }
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": rule["ExpirationInDays"]}
    if "NoncurrentVersionExpiration" in rule:
        out["NoncurrentVersionExpiration"] = {
            "NoncurrentDays": rule["NoncurrentVersionExpiration"]["NoncurrentDays"]
        }
    if "NoncurrentVersionTransitions" in rule:
        out["NoncurrentVersionTransition"] = [
            {"NoncurrentDays": t["TransitionInDays"], "StorageClass": t["StorageClass"]}
            for t in rule["NoncurrentVersionTransitions"]
        ]
    if "AbortIncompleteMultipartUpload" in rule:
        out["AbortIncompleteMultipartUpload"] = rule["AbortIncompleteMultipartUpload"]
    return out


def _bucket_configuration() -> None:
    """moto's CloudFormation bucket applies only encryption and tags: apply the rest through the S3 backend.

    Versioning, public access block, lifecycle rules and access logging, each as the S3 API would.
    """
    from moto.s3.models import FakeBucket, s3_backends  # noqa: PLC0415  heavy: loads moto only when called

    original = FakeBucket.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create(
        cls: type[Any],
        /,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        bucket = original(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        backend = s3_backends[account_id]["aws"]
        props = _props(cloudformation_json)
        status = props.get("VersioningConfiguration", {}).get("Status")
        if status:
            backend.put_bucket_versioning(bucket.name, status)
        if "PublicAccessBlockConfiguration" in props:
            block = {k: str(v).lower() for k, v in props["PublicAccessBlockConfiguration"].items()}
            backend.put_public_access_block(bucket.name, block)
        rules = props.get("LifecycleConfiguration", {}).get("Rules")
        if rules:
            backend.put_bucket_lifecycle(bucket.name, [_lifecycle_rule(rule) for rule in rules])
        logging = props.get("LoggingConfiguration")
        if logging:
            target = {"TargetBucket": logging["DestinationBucketName"]}
            if "LogFilePrefix" in logging:
                target["TargetPrefix"] = logging["LogFilePrefix"]
            if target["TargetBucket"] not in backend.buckets:
                raise ValueError(
                    f"bucket {bucket.name}: access-log target {target['TargetBucket']} does not exist"
                )
            # Not put_bucket_logging: moto checks the target's policy at once, but the template creates
            # that policy after the buckets it names (it refers to their ARNs), as CloudFormation allows.
            bucket.logging = target
        return bucket

    setattr(FakeBucket, "create_from_cloudformation_json", classmethod(create))  # noqa: B010


def _conditional_statements_neutral() -> None:
    """moto evaluates bucket policies ignoring Conditions, so a TLS-only Deny denies every request.

    It cannot evaluate the conditions (aws:SecureTransport and the like) at all, so here a statement
    with a Condition neither allows nor denies; the stored policy is left exactly as deployed.
    """
    from moto.iam.access_control import IAMPolicy, PermissionResult  # noqa: PLC0415  heavy: loads moto only when called
    from moto.s3.models import FakeBucket  # noqa: PLC0415  heavy: loads moto only when called

    def get_permission(self: Any, action: str, resource: str) -> Any:
        if self.policy is None:
            return PermissionResult.NEUTRAL
        document = json.loads(self.policy.decode())
        statements = document.get("Statement", [])
        if isinstance(statements, dict):
            statements = [statements]
        kept = [statement for statement in statements if "Condition" not in statement]
        if not kept:
            return PermissionResult.NEUTRAL
        return IAMPolicy(json.dumps({**document, "Statement": kept})).is_action_permitted(action, resource)

    FakeBucket.get_permission = get_permission  # type: ignore[method-assign]


def _kms_key_template_shapes() -> None:
    """moto's CloudFormation key passes template Tags ({Key, Value}); its backend wants TagKey/TagValue."""
    from moto.kms.models import Key  # noqa: PLC0415  heavy: loads moto only when called

    original = Key.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def create(
        cls: type[Any],
        /,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        props = dict(_props(cloudformation_json))
        props["Tags"] = [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in props.get("Tags", [])]
        if isinstance(props.get("KeyPolicy"), dict):
            props["KeyPolicy"] = json.dumps(props["KeyPolicy"])
        key = original(
            cls, resource_name, {**cloudformation_json, "Properties": props}, account_id, region_name
        )
        return key

    setattr(Key, "create_from_cloudformation_json", classmethod(create))  # noqa: B010


def _change_sets_export_outputs() -> None:
    """moto's ExecuteChangeSet creates resources but never evaluates Outputs, so exports are missing.

    `cdk deploy` always deploys through change sets and passes cross-stack values as exports.
    """
    from moto.cloudformation.models import CloudFormationBackend, Stack, cloudformation_backends  # noqa: PLC0415  heavy: loads moto only when called

    # A stack made by CreateChangeSet gets no view of the region's exports, so Fn::ImportValue fails.
    stack_init = Stack.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        if kwargs.get("cross_stack_resources") is None:
            backend = cloudformation_backends[kwargs["account_id"]][kwargs["region_name"]]
            kwargs["cross_stack_resources"] = backend.exports
        stack_init(self, *args, **kwargs)

    Stack.__init__ = init  # type: ignore[method-assign]
    original = CloudFormationBackend.execute_change_set

    def execute_change_set(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
        original(self, change_set_name, stack_name)
        change_set = self.change_sets.get(change_set_name) or next(
            cs for cs in self.change_sets.values() if cs.change_set_name == change_set_name
        )
        stack = self.stacks[change_set.stack_id]
        stack._parse_template()
        stack.output_map = stack._create_output_map()
        self._validate_export_uniqueness(stack)
        for export in stack.exports:
            self.exports[export.name] = export

    CloudFormationBackend.execute_change_set = execute_change_set  # type: ignore[method-assign]


def _sagemaker_names_from_template() -> None:
    """moto's CloudFormation ignores EndpointName, EndpointConfigName and ModelName and makes up names."""
    from moto.sagemaker import models  # noqa: PLC0415  heavy: loads moto only when called

    for cls, prop in (
        (models.FakeEndpoint, "EndpointName"),
        (models.FakeEndpointConfig, "EndpointConfigName"),
        (models.Model, "ModelName"),
    ):
        setattr(cls, "cloudformation_name_type", staticmethod(lambda prop=prop: prop))  # noqa: B010


def apply() -> None:
    """Apply every patch (once per process, before the first stack is created)."""
    _bucket_configuration()
    _conditional_statements_neutral()
    _kms_key_template_shapes()
    _change_sets_export_outputs()
    _sagemaker_names_from_template()
