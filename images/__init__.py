"""The project's container images: their specs and build context, without any CLI (the CDK imports it)."""
