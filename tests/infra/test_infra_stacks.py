"""Each stack's key properties, read from the one synthesized app (all three environments)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aws_cdk.assertions import Match, Template

from infra.pipeline_body import DeployValues, definition_body, mlflow_tracking_server_arn, role_arn
from infra.settings import EnvironmentSettings, parse_environment

from .conftest import Synth, full_context

STAGES = ("Dev", "Staging", "Prod")


def settings_of(stage: str) -> EnvironmentSettings:
    env = stage.lower()
    return parse_environment(env, full_context()["environments"][env])


def resources(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == kind]


@pytest.mark.parametrize("stage", STAGES)
def test_data_key_rotates_and_buckets_are_named_per_environment(synth: Synth, stage: str) -> None:
    s = settings_of(stage)
    template = Template.from_json(synth.template(stage, "Data"))
    template.has_resource_properties("AWS::KMS::Key", {"EnableKeyRotation": True})
    names = {b["BucketName"] for b in resources(synth.template(stage, "Data"), "AWS::S3::Bucket")}
    assert names == {s.bucket_name(p) for p in ("raw", "artifacts", "capture", "access-logs")}
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {"BucketName": s.bucket_name("raw"), "VersioningConfiguration": {"Status": "Enabled"}},
    )


def test_feature_groups_match_the_exporter(synth: Synth) -> None:
    from features.sagemaker import feature_group_specs

    groups = {
        g["FeatureGroupName"]: g
        for g in resources(synth.template("Dev", "Features"), "AWS::SageMaker::FeatureGroup")
    }
    s = settings_of("Dev")
    exported = feature_group_specs()
    assert set(groups) == {s.feature_group_name(spec["FeatureGroupName"]) for spec in exported}
    for spec in exported:
        group = groups[s.feature_group_name(spec["FeatureGroupName"])]
        assert group["FeatureDefinitions"] == spec["FeatureDefinitions"]
        assert group["RecordIdentifierFeatureName"] == spec["RecordIdentifierFeatureName"]
        assert group["OnlineStoreConfig"]["SecurityConfig"]["KmsKeyId"]
        assert group["OfflineStoreConfig"]["TableFormat"] == "Iceberg"


def test_pipeline_body_is_the_builders_output_with_deploy_time_values(synth: Synth) -> None:
    s = settings_of("Dev")
    (pipeline,) = resources(synth.template("Dev", "MlPlatform"), "AWS::SageMaker::Pipeline")
    body, values = pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    assert pipeline["PipelineName"] == s.pipeline_name
    assert set(values) == {"ArtifactBucket", "TrainingImage", "ServingImage", "JobKmsKey"}
    assert values["ArtifactBucket"] == s.bucket_name("artifacts")
    assert s.images is not None and values["TrainingImage"] == s.images.training_uri
    assert "Fn::ImportValue" in values["JobKmsKey"]  # the Data stack's key, known at deploy
    # Fn::Sub resolves the placeholders to exactly what the builder makes for the same values.
    key = "arn:aws:kms:us-east-1:123456789012:key/0000-probe"
    resolved = body
    for name, value in {**values, "JobKmsKey": key}.items():
        resolved = resolved.replace("${" + name + "}", value)
    expected = definition_body(
        s, DeployValues(values["ArtifactBucket"], values["TrainingImage"], values["ServingImage"], key)
    )
    assert resolved == expected
    definition = json.loads(expected)
    assert pipeline["RoleArn"] == {
        "Fn::GetAtt": [
            _role_ids(synth.template("Dev", "MlPlatform"))[f"{s.prefix}-sagemaker-pipeline"],
            "Arn",
        ]
    }
    steps = {step["Name"]: step["Arguments"] for step in definition["Steps"]}
    assert steps["Prepare"]["RoleArn"] == steps["Evaluate"]["RoleArn"] == role_arn(s, "processing")
    assert steps["Train"]["RoleArn"] == role_arn(s, "training")
    assert {p["Name"] for p in definition["Parameters"]} >= {"InputDataUri"}


@pytest.mark.parametrize("stage", STAGES)
def test_deployed_pipeline_trains_the_benchmarked_hyperparameters(synth: Synth, stage: str) -> None:
    from training.hyperparameters import Hyperparameters

    (pipeline,) = resources(synth.template(stage, "MlPlatform"), "AWS::SageMaker::Pipeline")
    body = json.loads(pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"][0])
    (train,) = [step for step in body["Steps"] if step["Name"] == "Train"]
    given = {k: v for k, v in train["Arguments"]["HyperParameters"].items() if isinstance(v, str)}
    assert Hyperparameters.from_sagemaker(given) == Hyperparameters()


def _role_ids(template: dict[str, Any]) -> dict[str, str]:
    """Role name -> logical id, for the roles with a fixed name."""
    return {
        r["Properties"]["RoleName"]: logical
        for logical, r in template["Resources"].items()
        if r["Type"] == "AWS::IAM::Role" and isinstance(r["Properties"].get("RoleName"), str)
    }


def _statements_by_role(template: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Role name (or logical id) -> every statement of every policy attached to it."""
    names = {logical: name for name, logical in _role_ids(template).items()}
    out: dict[str, list[dict[str, Any]]] = {}
    for policy in resources(template, "AWS::IAM::Policy"):
        for ref in policy["Roles"]:
            role = names.get(ref["Ref"], ref["Ref"])
            out.setdefault(role, []).extend(policy["PolicyDocument"]["Statement"])
    return out


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _grants(statements: list[dict[str, Any]], action: str) -> list[Any]:
    """The resources `action` is allowed on (exact or by a wildcard action), over `statements`."""
    out = []
    for statement in statements:
        if statement.get("Effect", "Allow") != "Allow":
            continue
        for granted in _listed(statement["Action"]):
            if granted == action or (granted.endswith("*") and action.startswith(granted[:-1])):
                out.extend(_listed(statement["Resource"]))
    return out


JOB_ROLES = ("pipeline", "processing", "training", "model")


@pytest.mark.parametrize("stage", STAGES)
def test_one_role_per_job_none_may_delete_or_approve(synth: Synth, stage: str) -> None:
    s = settings_of(stage)
    template = synth.template(stage, "MlPlatform")
    by_role = _statements_by_role(template)
    named = {f"{s.prefix}-sagemaker-{job}" for job in JOB_ROLES} | {f"{s.prefix}-model-approver"}
    if s.studio_enabled:
        named.add(f"{s.prefix}-sagemaker-studio")
    assert set(_role_ids(template)) == named
    for role in resources(template, "AWS::IAM::Role"):
        assert "ManagedPolicyArns" not in role
    assert "FullAccess" not in json.dumps(by_role)
    for name, statements in by_role.items():
        for action in ("s3:DeleteObject", "s3:DeleteObjectVersion"):
            deletes = _grants(statements, action)
            # Only the MLflow server's own role deletes (run artifacts under mlflow/, when a run is deleted).
            assert not deletes or "Mlflow" in name, (name, action, deletes)
        approve = _grants(statements, "sagemaker:UpdateModelPackage")
        assert not approve or name == f"{s.prefix}-model-approver", (name, approve)
    # Only statements whose actions have no resource-level permissions may name every resource.
    for name, statements in by_role.items():
        for statement in statements:
            if statement["Resource"] == "*":
                assert set(_listed(statement["Action"])) <= {
                    "ecr:GetAuthorizationToken", "cloudwatch:PutMetricData", "sagemaker:ListModelPackages",
                    "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs", "ec2:DescribeDhcpOptions",
                    "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups",
                }, (name, statement)  # fmt: skip


@pytest.mark.parametrize("stage", STAGES)
def test_the_pipeline_role_passes_only_the_job_roles(synth: Synth, stage: str) -> None:
    s = settings_of(stage)
    template = synth.template(stage, "MlPlatform")
    ids = _role_ids(template)
    by_role = _statements_by_role(template)
    passes = {name: _grants(statements, "iam:PassRole") for name, statements in by_role.items()}
    assert {name for name, passed in passes.items() if passed} == {f"{s.prefix}-sagemaker-pipeline"}
    passed = passes[f"{s.prefix}-sagemaker-pipeline"]
    assert sorted(passed, key=json.dumps) == sorted(
        ({"Fn::GetAtt": [ids[f"{s.prefix}-sagemaker-{job}"], "Arn"]} for job in ("processing", "training")),
        key=json.dumps,
    )
    pipeline = by_role[f"{s.prefix}-sagemaker-pipeline"]
    assert _grants(pipeline, "sagemaker:CreateModelPackage")
    assert not _grants(pipeline, "s3:PutObject"), "the pipeline itself writes nothing; its jobs do"


def _object_arns(resources_: list[Any]) -> set[str]:
    out = set()
    for resource in resources_:
        text = (
            resource
            if isinstance(resource, str)
            else "".join(p for p in resource["Fn::Join"][1] if isinstance(p, str))
        )
        out.add(text.removeprefix("arn:").removeprefix(":s3:::"))
    return out


@pytest.mark.parametrize("stage", STAGES)
def test_job_roles_write_only_their_prefixes(synth: Synth, stage: str) -> None:
    s = settings_of(stage)
    by_role = _statements_by_role(synth.template(stage, "MlPlatform"))
    artifacts, capture = s.bucket_name("artifacts"), s.bucket_name("capture")

    def writes(job: str) -> set[str]:
        return _object_arns(_grants(by_role[f"{s.prefix}-sagemaker-{job}"], "s3:PutObject"))

    assert writes("processing") == {f"{artifacts}/pipelines/*"}
    mlflow = {f"{artifacts}/mlflow/*"} if s.mlflow_enabled else set()
    assert writes("training") == {f"{artifacts}/pipelines/*"} | mlflow
    # SageMaker writes data capture with the model's role; it reads only model artifacts.
    assert writes("model") == {f"{capture}/capture/*"}
    model_reads = _object_arns(_grants(by_role[f"{s.prefix}-sagemaker-model"], "s3:GetObject"))
    assert model_reads == {f"{artifacts}/pipelines/{s.pipeline_name}/models/*"}


def test_studio_users_start_pipelines_and_read_the_registry(synth: Synth) -> None:
    s = settings_of("Prod")
    by_role = _statements_by_role(synth.template("Prod", "MlPlatform"))
    studio = by_role[f"{s.prefix}-sagemaker-studio"]
    assert _grants(studio, "sagemaker:StartPipelineExecution")
    assert _grants(studio, "sagemaker:DescribeModelPackage")
    assert not _grants(studio, "sagemaker:UpdateModelPackage")
    approver = by_role[f"{s.prefix}-model-approver"]
    (approved,) = _grants(approver, "sagemaker:UpdateModelPackage")
    assert approved["Fn::Join"][1][-1].endswith(f":model-package/{s.model_package_group_name}/*")
    (domain,) = resources(synth.template("Prod", "MlPlatform"), "AWS::SageMaker::Domain")
    assert domain["DefaultUserSettings"]["ExecutionRole"] == {
        "Fn::GetAtt": [_role_ids(synth.template("Prod", "MlPlatform"))[f"{s.prefix}-sagemaker-studio"], "Arn"]
    }


@pytest.mark.parametrize("stage", STAGES)
def test_schedule_starts_only_this_pipeline(synth: Synth, stage: str) -> None:
    s = settings_of(stage)
    template = synth.template(stage, "MlPlatform")
    (schedule,) = resources(template, "AWS::Scheduler::Schedule")
    assert schedule["ScheduleExpression"] == s.retraining_schedule
    assert schedule["Target"]["Arn"]["Fn::Join"][1][-1].endswith(f":pipeline/{s.pipeline_name}")
    schedule_policies = [
        p
        for p in resources(template, "AWS::IAM::Policy")
        if "sagemaker:StartPipelineExecution" in json.dumps(p) and "ScheduleRole" in json.dumps(p["Roles"])
    ]
    (policy,) = schedule_policies
    start, dead_letter, key_use = policy["PolicyDocument"]["Statement"]
    assert start["Action"] == "sagemaker:StartPipelineExecution"
    # A start that fails after the retries goes to the schedule's own dead-letter queue, not nowhere.
    (queue_id,) = [k for k, v in template["Resources"].items() if v["Type"] == "AWS::SQS::Queue"]
    assert schedule["Target"]["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue_id, "Arn"]}}
    assert dead_letter["Action"] == "sqs:SendMessage"
    assert key_use["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert dead_letter["Resource"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    queue = template["Resources"][queue_id]["Properties"]
    assert "KmsMasterKeyId" in queue and queue["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_mlflow_and_studio_follow_the_environment(synth: Synth) -> None:
    kinds = {
        stage: {r["Type"] for r in synth.template(stage, "MlPlatform")["Resources"].values()}
        for stage in STAGES
    }
    assert "AWS::SageMaker::MlflowTrackingServer" not in kinds["Dev"]
    assert "AWS::SageMaker::MlflowTrackingServer" in kinds["Staging"]
    assert "AWS::SageMaker::Domain" in kinds["Prod"]
    assert "AWS::SageMaker::Domain" not in kinds["Staging"]
    # Training in the pipeline tracks to the managed server where there is one, and nowhere else.
    for stage in STAGES:
        (server,) = [
            r["Properties"]
            for r in synth.template(stage, "MlPlatform")["Resources"].values()
            if r["Type"] == "AWS::SageMaker::MlflowTrackingServer"
        ] or [None]
        (pipeline,) = resources(synth.template(stage, "MlPlatform"), "AWS::SageMaker::Pipeline")
        body = pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"][0]
        arn = mlflow_tracking_server_arn(settings_of(stage))
        if server is None:
            assert "mlflow-tracking-server" not in body
        else:
            assert arn.endswith("/" + server["TrackingServerName"])
            assert json.dumps(arn) in body
    Template.from_json(synth.template("Prod", "MlPlatform")).has_resource_properties(
        "AWS::SageMaker::Domain", {"AppNetworkAccessType": "VpcOnly", "KmsKeyId": Match.any_value()}
    )


@pytest.mark.parametrize("stage", STAGES)
def test_serving_capture_guardrails_scaling(synth: Synth, stage: str) -> None:
    s = settings_of(stage)
    template = Template.from_json(synth.template(stage, "Serving"))
    template.has_resource_properties(
        "AWS::SageMaker::Model",
        {
            "PrimaryContainer": {"ModelPackageName": s.model_package_arn},
            "EnableNetworkIsolation": True,
            # The model role: reads its artifact, writes data capture; no pipeline or registry rights.
            "ExecutionRoleArn": role_arn(s, "model"),
        },
    )
    template.has_resource_properties(
        "AWS::SageMaker::EndpointConfig",
        {
            "KmsKeyId": Match.any_value(),
            "DataCaptureConfig": {
                "EnableCapture": True,
                "InitialSamplingPercentage": s.data_capture_percent,
                "DestinationS3Uri": f"s3://{s.bucket_name('capture')}/capture",
                "KmsKeyId": Match.any_value(),
                "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            },
        },
    )
    template.has_resource_properties(
        "AWS::SageMaker::Endpoint",
        {
            "EndpointName": s.endpoint_name,
            "DeploymentConfig": {
                "BlueGreenUpdatePolicy": {
                    "TrafficRoutingConfiguration": {
                        "Type": "CANARY",
                        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": s.canary_percent},
                        "WaitIntervalInSeconds": s.canary_wait_seconds,
                    },
                    "TerminationWaitInSeconds": s.termination_wait_seconds,
                },
                "AutoRollbackConfiguration": {
                    "Alarms": [
                        {"AlarmName": f"{s.prefix}-endpoint-5xx"},
                        {"AlarmName": f"{s.prefix}-endpoint-p99-latency"},
                    ]
                },
            },
        },
    )
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalableTarget",
        {
            "ResourceId": f"endpoint/{s.endpoint_name}/variant/AllTraffic",
            "MinCapacity": s.endpoint_min_instances,
            "MaxCapacity": s.endpoint_max_instances,
        },
    )
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": s.invocations_per_instance_target,
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                },
            },
        },
    )


def test_vpc_only_where_the_environment_asks(synth: Synth) -> None:
    prod = settings_of("Prod")
    assert prod.vpc is not None
    Template.from_json(synth.template("Prod", "Serving")).has_resource_properties(
        "AWS::SageMaker::Model",
        {"VpcConfig": {"Subnets": prod.vpc.subnet_ids, "SecurityGroupIds": Match.any_value()}},
    )
    (group,) = resources(synth.template("Prod", "Serving"), "AWS::EC2::SecurityGroup")
    assert "SecurityGroupIngress" not in group
    assert "VpcConfig" not in resources(synth.template("Dev", "Serving"), "AWS::SageMaker::Model")[0]


@pytest.mark.parametrize("stage", STAGES)
def test_alarms_dashboard_topic_and_approved_rule(synth: Synth, stage: str) -> None:
    s = settings_of(stage)
    raw = synth.template(stage, "Observability")
    template = Template.from_json(raw)
    template.has_resource_properties("AWS::SNS::Topic", {"KmsMasterKeyId": Match.any_value()})
    alarms = resources(raw, "AWS::CloudWatch::Alarm")
    assert {a["AlarmName"] for a in alarms} == {
        f"{s.prefix}-endpoint-{x}"
        for x in ("5xx", "4xx-rate", "p99-latency", "invocations-low", "cpu", "memory")
    } | {f"{s.prefix}-pipeline-failed"}
    assert all(a["ActionsEnabled"] is True and a["AlarmActions"] for a in alarms)
    (dashboard,) = resources(raw, "AWS::CloudWatch::Dashboard")
    body = json.dumps(dashboard["DashboardBody"])
    alarm_ids = [lid for lid, r in raw["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"]
    for logical_id in alarm_ids:
        # The status widget and the alarm's own widget both refer to it.
        assert body.count(f'"{logical_id}"') >= 2, logical_id
    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.sagemaker"],
                "detail-type": ["SageMaker Model Package State Change"],
                "detail": {
                    "ModelPackageGroupName": [s.model_package_group_name],
                    "ModelApprovalStatus": ["Approved"],
                },
            },
            "Targets": [Match.object_like({"Arn": Match.any_value()})],
        },
    )


@pytest.mark.parametrize("stage", STAGES)
def test_jobs_are_private_encrypted_and_bounded(synth: Synth, stage: str) -> None:
    s = settings_of(stage)
    template = synth.template(stage, "MlPlatform")
    (pipeline,) = resources(template, "AWS::SageMaker::Pipeline")
    body, values = pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    steps = {step["Name"]: step["Arguments"] for step in json.loads(body)["Steps"]}
    groups = resources(template, "AWS::EC2::SecurityGroup")
    for name in ("Prepare", "Evaluate"):
        assert steps[name]["ProcessingOutputConfig"]["KmsKeyId"] == "${JobKmsKey}"
        assert steps[name]["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == "${JobKmsKey}"
        assert steps[name]["StoppingCondition"] == {"MaxRuntimeInSeconds": s.max_processing_seconds}
    train = steps["Train"]
    assert (
        train["OutputDataConfig"]["KmsKeyId"] == train["ResourceConfig"]["VolumeKmsKeyId"] == "${JobKmsKey}"
    )
    assert train["StoppingCondition"]["MaxRuntimeInSeconds"] == s.max_training_seconds
    assert train["EnableInterContainerTrafficEncryption"] is True
    assert steps["Evaluate"]["NetworkConfig"]["EnableNetworkIsolation"] is True
    # Train is isolated unless it reports to the environment's MLflow server.
    assert train["EnableNetworkIsolation"] is (not s.mlflow_enabled)
    if s.vpc is None:
        assert "JobSecurityGroup" not in values and groups == []
        assert "VpcConfig" not in train and "VpcConfig" not in steps["Prepare"]["NetworkConfig"]
        return
    vpc = {"SecurityGroupIds": ["${JobSecurityGroup}"], "Subnets": s.vpc.subnet_ids}
    assert train["VpcConfig"] == vpc
    assert (
        steps["Prepare"]["NetworkConfig"]["VpcConfig"]
        == steps["Evaluate"]["NetworkConfig"]["VpcConfig"]
        == vpc
    )
    (group,) = groups
    logical = next(k for k, r in template["Resources"].items() if r["Type"] == "AWS::EC2::SecurityGroup")
    assert values["JobSecurityGroup"] == {"Fn::GetAtt": [logical, "GroupId"]}
    assert "SecurityGroupIngress" not in group and group["VpcId"] == s.vpc.vpc_id
    # The only way in: from the same group (the instances of one multi-instance training job).
    (ingress,) = resources(template, "AWS::EC2::SecurityGroupIngress")
    assert ingress["SourceSecurityGroupId"] == ingress["GroupId"] == {"Fn::GetAtt": [logical, "GroupId"]}
