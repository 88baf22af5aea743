"""The platform's command line and data layer, shared by the ML side and the CDK side."""
