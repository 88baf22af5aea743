"""`cdk deploy` of the dev stacks, with the real CDK CLI, to a moto server; then boto3 checks what exists.

Runs from .venv (the ML side, which has moto and the pipeline builder); the CDK side runs by subprocess in
.venv-cdk. No Docker needed. A missing CDK environment or CLI fails the test, never skips it.

What this proves, and what it does not. Most checks read back properties that moto, or our own
CloudFormation handlers (`standins/cfn_handlers.py`), only store: the same code that wrote them
answers, so they prove the templates deploy and carry the values, not that AWS would act on them.
Stored only, not enforced by moto: bucket encryption (objects written without SSE headers stay
unencrypted), the public access block (moto accepts a public-read ACL and a public bucket policy on
such a bucket), the TLS-only bucket policy (moto has no TLS and cannot evaluate aws:SecureTransport;
it would deny every request, so the local launcher makes conditional statements neutral), lifecycle
rules, access logging, KMS key rotation, the SNS topic's key, alarms (never evaluated from metric
data), data capture, autoscaling, the retraining schedule (never fires), feature groups and the
pipeline (executions report Succeeded at once).

Two checks ask moto to act, where its behaviour does not depend on our handlers: the raw bucket
keeps every version of an object (moto's S3 versioning), and the deployed registry rule's pattern,
matched by moto's EventBridge, lets only an Approved state change of our group through.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from infra.local.deploy import REGION, aws_env, start_server
from infra.pipeline_body import ROLES, DeployValues, definition_body, role_arn, role_name
from infra.settings import EnvironmentSettings, parse_environment

ROOT = Path(__file__).resolve().parents[2]
CDK_PYTHON = ROOT / ".venv-cdk" / "bin" / "python"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def deployed() -> Iterator[tuple[dict[str, object], str]]:
    assert CDK_PYTHON.exists(), f"{CDK_PYTHON} is missing: run `make setup-cdk`"
    assert (ROOT / "node_modules" / ".bin" / "cdk").exists(), "the CDK CLI is missing: run `make setup-node`"
    server, endpoint_url = start_server()
    try:
        proc = subprocess.run(
            [str(CDK_PYTHON), "-m", "infra.local.deploy", "--endpoint-url", endpoint_url, "--json"],
            cwd=ROOT,
            env=aws_env(endpoint_url),
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert proc.returncode == 0, f"local deploy failed:\n{proc.stderr[-4000:]}"
        yield json.loads(proc.stdout), endpoint_url
    finally:
        server.kill()
        server.wait(timeout=30)


@pytest.fixture(scope="module")
def settings(deployed: tuple[dict[str, object], str]) -> EnvironmentSettings:
    result, _ = deployed
    raw = json.loads((ROOT / "cdk.json").read_text())["context"]["environments"]["dev"]
    return parse_environment(
        "dev",
        raw,
        {
            "training_image_uri": str(result["training_image_uri"]),
            "serving_image_uri": str(result["serving_image_uri"]),
            "model_package_arn": str(result["model_package_arn"]),
        },
    )


def _client(deployed: tuple[dict[str, object], str], service: str):  # type: ignore[no-untyped-def]
    _, url = deployed
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_every_stack_is_complete(deployed) -> None:
    cloudformation = _client(deployed, "cloudformation")
    names = {s["StackName"]: s["StackStatus"] for s in cloudformation.describe_stacks()["Stacks"]}
    for stack in ("data", "features", "ml-platform", "observability", "serving"):
        assert names.get(f"mlops-movielens-dev-{stack}") == "CREATE_COMPLETE", names


def test_buckets_and_key(deployed, settings: EnvironmentSettings) -> None:
    s3 = _client(deployed, "s3")
    kms = _client(deployed, "kms")
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    key_id = aliases[f"alias/{settings.prefix}"]
    key = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    for purpose in ("raw", "artifacts", "capture"):
        name = settings.bucket_name(purpose)
        rule = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"][0]
        assert rule["ApplyServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": key["Arn"],
        }
        block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
        assert all(block.values()), block
        policy = json.loads(s3.get_bucket_policy(Bucket=name)["Policy"])
        assert any(
            st["Effect"] == "Deny" and st.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
            for st in policy["Statement"]
        ), policy
        logging = s3.get_bucket_logging(Bucket=name)["LoggingEnabled"]
        assert logging["TargetBucket"] == settings.bucket_name("access-logs")
        assert s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]
    assert s3.get_bucket_versioning(Bucket=settings.bucket_name("raw"))["Status"] == "Enabled"


def test_feature_group_per_feature_view(deployed, settings: EnvironmentSettings) -> None:
    from features.definition import FEATURE_VIEWS

    sagemaker = _client(deployed, "sagemaker")
    for view in FEATURE_VIEWS:
        group = sagemaker.describe_feature_group(FeatureGroupName=settings.feature_group_name(view.name))
        names = {f["FeatureName"] for f in group["FeatureDefinitions"]}
        assert set(view.feature_names) | {view.join_key, view.event_time_column} == names
        assert group["RecordIdentifierFeatureName"] == view.join_key
        assert group["EventTimeFeatureName"] == view.event_time_column
        offline = group["OfflineStoreConfig"]
        assert offline["S3StorageConfig"]["S3Uri"].startswith(f"s3://{settings.bucket_name('artifacts')}/")
        assert offline["TableFormat"] == "Iceberg"


def test_model_package_group_and_pipeline_definition(
    deployed, settings: EnvironmentSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    sagemaker = _client(deployed, "sagemaker")
    group = sagemaker.describe_model_package_group(ModelPackageGroupName=settings.model_package_group_name)
    assert group["ModelPackageGroupName"] == settings.model_package_group_name
    stored = sagemaker.describe_pipeline(PipelineName=settings.pipeline_name)["PipelineDefinition"]
    monkeypatch.setenv("AWS_DEFAULT_REGION", os.environ.get("AWS_DEFAULT_REGION", REGION))
    expected = definition_body(
        settings,
        DeployValues(
            artifact_bucket=settings.bucket_name("artifacts"),
            training_image=settings.images.training_uri if settings.images else "",
            serving_image=settings.images.serving_uri if settings.images else "",
            # The jobs' volumes and outputs are encrypted with the Data stack's key.
            kms_key=_client(deployed, "kms").describe_key(KeyId=f"alias/{settings.prefix}")["KeyMetadata"][
                "Arn"
            ],
        ),
    )
    assert stored == expected


def test_one_role_per_job_is_deployed(deployed, settings: EnvironmentSettings) -> None:
    iam = _client(deployed, "iam")
    sagemaker = _client(deployed, "sagemaker")
    for job in ROLES:
        role = iam.get_role(RoleName=role_name(settings, job))["Role"]
        assert role["Arn"] == role_arn(settings, job)
        assert iam.list_attached_role_policies(RoleName=role["RoleName"])["AttachedPolicies"] == []
        assert iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"], job
    iam.get_role(RoleName=f"{settings.prefix}-model-approver")
    pipeline = sagemaker.describe_pipeline(PipelineName=settings.pipeline_name)
    assert pipeline["RoleArn"] == role_arn(settings, "pipeline")
    endpoint = sagemaker.describe_endpoint(EndpointName=settings.endpoint_name)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    assert model["ExecutionRoleArn"] == role_arn(settings, "model")


def test_endpoint_config_captures_data_with_kms(deployed, settings: EnvironmentSettings) -> None:
    sagemaker = _client(deployed, "sagemaker")
    kms = _client(deployed, "kms")
    endpoint = sagemaker.describe_endpoint(EndpointName=settings.endpoint_name)
    config = sagemaker.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    capture = config["DataCaptureConfig"]
    assert capture["EnableCapture"] is True
    assert capture["InitialSamplingPercentage"] == settings.data_capture_percent
    assert capture["DestinationS3Uri"].startswith(f"s3://{settings.bucket_name('capture')}/")
    assert capture["KmsKeyId"] == kms.describe_key(KeyId=f"alias/{settings.prefix}")["KeyMetadata"]["Arn"]
    model = sagemaker.describe_model(ModelName=config["ProductionVariants"][0]["ModelName"])
    assert model["PrimaryContainer"]["ModelPackageName"] == settings.model_package_arn
    targets = _client(deployed, "application-autoscaling").describe_scalable_targets(
        ServiceNamespace="sagemaker"
    )
    (target,) = targets["ScalableTargets"]
    assert target["ResourceId"] == f"endpoint/{settings.endpoint_name}/variant/AllTraffic"
    assert (target["MinCapacity"], target["MaxCapacity"]) == (
        settings.endpoint_min_instances,
        settings.endpoint_max_instances,
    )


def test_alarms_notify_the_topic(deployed, settings: EnvironmentSettings) -> None:
    alarms = _client(deployed, "cloudwatch").describe_alarms(AlarmNamePrefix=settings.prefix)["MetricAlarms"]
    topic = f"arn:aws:sns:{REGION}:{settings.account}:{settings.prefix}-notifications"
    names = {a["AlarmName"] for a in alarms}
    for suffix in ("5xx", "4xx-rate", "p99-latency", "invocations-low", "cpu", "memory"):
        assert f"{settings.prefix}-endpoint-{suffix}" in names, names
    assert f"{settings.prefix}-pipeline-failed" in names
    for alarm in alarms:
        assert alarm["ActionsEnabled"] is True
        assert alarm["AlarmActions"] == [topic], alarm["AlarmName"]
    attributes = _client(deployed, "sns").get_topic_attributes(TopicArn=topic)["Attributes"]
    assert attributes["KmsMasterKeyId"]


def test_registry_rule_fires_on_approved_only(deployed, settings: EnvironmentSettings) -> None:
    events = _client(deployed, "events")
    rule = events.describe_rule(Name=f"{settings.prefix}-model-approved")
    pattern = json.loads(rule["EventPattern"])
    assert pattern["detail-type"] == ["SageMaker Model Package State Change"]
    assert pattern["detail"] == {
        "ModelPackageGroupName": [settings.model_package_group_name],
        "ModelApprovalStatus": ["Approved"],
    }
    (target,) = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
    assert target["Arn"].endswith(f":{settings.prefix}-notifications")


def test_raw_bucket_keeps_every_version(deployed, settings: EnvironmentSettings) -> None:
    """Enforced: moto's S3 keeps a second version of an overwritten key in a versioned bucket."""
    s3 = _client(deployed, "s3")
    bucket, key = settings.bucket_name("raw"), "versioning-probe/u.data"
    for body in (b"first", b"second"):
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    try:
        versions = s3.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
        assert len(versions) == 2, versions
        (older,) = [v for v in versions if not v["IsLatest"]]
        kept = s3.get_object(Bucket=bucket, Key=key, VersionId=older["VersionId"])["Body"].read()
        assert kept == b"first"
    finally:
        for version in s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", []):
            s3.delete_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])


def test_registry_rule_lets_only_approved_through(deployed, settings: EnvironmentSettings) -> None:
    """Enforced: moto's EventBridge matches the deployed pattern; a probe queue sees what it lets through."""
    events, sqs = _client(deployed, "events"), _client(deployed, "sqs")
    rule = f"{settings.prefix}-model-approved"
    queue_url = sqs.create_queue(QueueName=f"{settings.prefix}-rule-probe")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    # moto's EventBridge cannot deliver to SNS (put_events fails with a 500), so the deployed topic
    # target steps aside for the probe queue while the deployed pattern stays as it is.
    deployed_targets = events.list_targets_by_rule(Rule=rule)["Targets"]
    events.remove_targets(Rule=rule, Ids=[t["Id"] for t in deployed_targets])
    events.put_targets(Rule=rule, Targets=[{"Id": "probe", "Arn": queue_arn}])
    try:
        sent = [
            (settings.model_package_group_name, "PendingManualApproval"),
            (settings.model_package_group_name, "Rejected"),
            ("someone-elses-group", "Approved"),
            (settings.model_package_group_name, "Approved"),
        ]
        for group, status in sent:
            detail = {"ModelPackageGroupName": group, "ModelApprovalStatus": status}
            events.put_events(
                Entries=[
                    {
                        "Source": "aws.sagemaker",
                        "DetailType": "SageMaker Model Package State Change",
                        "Detail": json.dumps(detail),
                    }
                ]
            )
        received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        details = [json.loads(m["Body"])["detail"] for m in received.get("Messages", [])]
        assert details == [
            {"ModelPackageGroupName": settings.model_package_group_name, "ModelApprovalStatus": "Approved"}
        ]
    finally:
        events.remove_targets(Rule=rule, Ids=["probe"])
        events.put_targets(Rule=rule, Targets=deployed_targets)
        sqs.delete_queue(QueueUrl=queue_url)


def test_retraining_schedule_starts_the_pipeline(deployed, settings: EnvironmentSettings) -> None:
    schedule = _client(deployed, "scheduler").get_schedule(Name=f"{settings.prefix}-retraining")
    assert schedule["ScheduleExpression"] == settings.retraining_schedule
    assert schedule["Target"]["Arn"].endswith(f":pipeline/{settings.pipeline_name}")


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
