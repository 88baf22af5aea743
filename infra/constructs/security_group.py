"""The VPC security group every SageMaker workload of ours gets: no inbound, HTTPS out to the VPC only."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from infra.settings import VpcSettings


def https_to_vpc_only(
    scope: Construct, construct_id: str, *, vpc: VpcSettings, description: str, egress_description: str
) -> ec2.CfnSecurityGroup:
    """A security group in `vpc` with no ingress and one egress rule: HTTPS to the VPC's own CIDR.

    The interface VPC endpoints the workloads call live in that CIDR; nothing else is reachable. One
    place for the rule, so the endpoint's and the jobs' groups cannot drift apart again.
    """
    return ec2.CfnSecurityGroup(
        scope,
        construct_id,
        group_description=description,
        vpc_id=vpc.vpc_id,
        security_group_egress=[
            ec2.CfnSecurityGroup.EgressProperty(
                ip_protocol="tcp",
                from_port=443,
                to_port=443,
                cidr_ip=vpc.cidr,
                description=egress_description,
            )
        ],
    )
